"""Order router on real Redis against the real simulated broker: at-most-once, reconcile, fills once."""

from __future__ import annotations

import itertools

import pytest
import redis

from quanticity.config.models import ExecutionSection
from quanticity.execution.router import BrokerError, OrderRouter
from quanticity.execution.store import ExecutionStore
from quanticity.messages import BrokerOrder, Fill, OptionContract, OrderIntent, OrderStatus, Right, Side
from quanticity.sim.broker import SimBroker

pytestmark = pytest.mark.unit
CONTRACT = OptionContract("SPY", "2026-11-20", 600.0, Right.CALL)
NS = 1_000_000_000
_clock = itertools.count(1_000 * NS, NS)


def wall() -> int:
    return next(_clock)


def intent(ref: str = "Q1", qty: int = 4, limit: float = 2.10, side: Side = Side.BUY) -> OrderIntent:
    return OrderIntent(
        ts_event=1,
        ts_init=1,
        order_ref=ref,
        signal_id=f"sig-{ref}",
        strategy="test",
        contract=CONTRACT,
        side=side,
        quantity=qty,
        limit_price=limit,
        origin_ts_init=1,
    )


class LosesAcks:
    """The real SimBroker, but the acknowledgement of ``place`` is lost (as when the link drops)."""

    def __init__(self, broker: SimBroker) -> None:
        self.broker = broker
        self.down = False

    def place(self, order: OrderIntent) -> BrokerOrder:
        if self.down:
            raise BrokerError("link down")
        self.broker.place(order)
        raise BrokerError("ack lost")

    def __getattr__(self, name: str) -> object:
        if self.down:
            raise BrokerError("link down")
        return getattr(self.broker, name)


def quotes(bid: float, ask: float):  # noqa: ANN201
    return lambda contract: (bid, ask)


def make_router(client: redis.Redis, broker: object) -> OrderRouter:
    router = OrderRouter(ExecutionStore(client), broker, ExecutionSection(), wall)  # type: ignore[arg-type]
    router.reconcile()
    return router


def test_refuses_work_before_reconcile(redis_client: redis.Redis) -> None:
    router = OrderRouter(ExecutionStore(redis_client), SimBroker(1), ExecutionSection(), wall)
    with pytest.raises(BrokerError, match="not reconciled"):
        router.submit(intent())


def test_submit_once_and_duplicate_is_not_resent(redis_client: redis.Redis) -> None:
    broker = SimBroker(1)
    router = make_router(redis_client, broker)
    assert router.submit(intent()) is OrderStatus.SUBMITTED
    assert router.submit(intent()) is OrderStatus.SUBMITTED
    assert router.stats.submitted == 1 and router.stats.duplicates == 1
    assert len(broker.open_orders()) == 1


def test_lost_ack_is_adopted_on_reconcile_not_resent(redis_client: redis.Redis) -> None:
    broker = SimBroker(1)
    router = make_router(redis_client, LosesAcks(broker))
    assert router.submit(intent()) is OrderStatus.PENDING_SEND
    assert ExecutionStore(redis_client).pending_send() == ["Q1"]
    restarted = make_router(redis_client, broker)  # a new router process over the same Redis
    assert restarted.stats.reconciled == 1
    assert ExecutionStore(redis_client).pending_send() == []
    assert ExecutionStore(redis_client).status("Q1") is OrderStatus.SUBMITTED
    assert len(broker.open_orders()) == 1  # exactly one order at the broker


def test_intent_never_received_is_sent_on_reconcile(redis_client: redis.Redis) -> None:
    broker = SimBroker(1)
    flaky = LosesAcks(broker)
    flaky.down = True
    router = OrderRouter(ExecutionStore(redis_client), flaky, ExecutionSection(), wall)  # type: ignore[arg-type]
    router.ready = True
    assert router.submit(intent()) is OrderStatus.PENDING_SEND
    assert broker.open_orders() == []
    make_router(redis_client, broker)
    assert [o.order_ref for o in broker.open_orders()] == ["Q1"]


def test_unanswered_reconcile_keeps_router_not_ready(redis_client: redis.Redis) -> None:
    flaky = LosesAcks(SimBroker(1))
    flaky.down = True
    router = OrderRouter(ExecutionStore(redis_client), flaky, ExecutionSection(), wall)  # type: ignore[arg-type]
    with pytest.raises(BrokerError):
        router.reconcile()
    assert not router.ready


def test_fills_book_positions_pnl_once(redis_client: redis.Redis) -> None:
    broker = SimBroker(1, commission_per_contract=0.65, min_commission=1.0)
    router = make_router(redis_client, broker)
    router.submit(intent(qty=4, limit=2.10))
    fills = broker.on_market(quotes(2.00, 2.10), 10 * NS, 10 * NS)
    assert len(fills) == 1 and fills[0].price == 2.10 and fills[0].commission == 2.60
    assert router.on_fills(fills) == 1
    assert router.on_fills(fills) == 0  # replay of the same execution
    store = ExecutionStore(redis_client)
    position = store.positions()[CONTRACT.key]
    assert position.quantity == 4 and position.avg_price == 2.10
    router.submit(intent(ref="Q2", qty=4, limit=2.50, side=Side.SELL))
    router.on_fills(broker.on_market(quotes(2.60, 2.70), 20 * NS, 20 * NS))
    assert store.positions() == {}
    # (2.60 − 2.10) × 4 × 100 − 2.60 − 2.60
    assert store.realized_pnl()["total"] == pytest.approx(200 - 5.20)
    assert redis_client.xlen("trades:fills") == 2


def test_partial_fills_above_max_fill_per_step(redis_client: redis.Redis) -> None:
    broker = SimBroker(1, max_fill_per_step=50)
    router = make_router(redis_client, broker)
    router.submit(intent(qty=120, limit=2.10))
    sizes = []
    for step in range(3):
        fills = broker.on_market(quotes(2.00, 2.10), (step + 1) * NS, 0)
        router.on_fills(fills)
        sizes += [f.quantity for f in fills]
    assert sizes == [50, 50, 20]
    assert broker.lookup("Q1") is not None and broker.lookup("Q1").status is OrderStatus.FILLED  # type: ignore[union-attr]
    store = ExecutionStore(redis_client)
    assert store.positions()[CONTRACT.key].quantity == 120
    assert store.status("Q1") is OrderStatus.FILLED


def test_reconcile_books_fills_missed_while_down(redis_client: redis.Redis) -> None:
    broker = SimBroker(1)
    router = make_router(redis_client, broker)
    router.submit(intent())
    broker.on_market(quotes(2.00, 2.10), NS, 0)  # the push to the router is lost
    assert ExecutionStore(redis_client).positions() == {}
    result = make_router(redis_client, broker).reconcile()
    assert result["fills_booked"] == 0  # the constructor's reconcile already booked it
    assert ExecutionStore(redis_client).positions()[CONTRACT.key].quantity == 4


def test_oversell_fill_is_rejected_not_booked(redis_client: redis.Redis) -> None:
    router = make_router(redis_client, SimBroker(1))
    bad = Fill(
        ts_event=1,
        ts_init=1,
        exec_id="E1",
        order_ref="Q9",
        contract=CONTRACT,
        side=Side.SELL,
        quantity=1,
        price=1.0,
        commission=1.0,
        strategy="test",
    )
    assert router.on_fills([bad]) == 0
    assert ExecutionStore(redis_client).realized_pnl() == {}


SESSION_NS = 1_795_188_600_000_000_000  # 2026-11-20 14:30 UTC (09:30 ET); CONTRACT expires that day


def test_exit_plan_ladder_through_router(redis_client: redis.Redis) -> None:
    """A 0DTE position: 25 % at +50 %, 50 % at +100 %, then the trail; each exit once, through signals."""
    broker = SimBroker(1)
    router = make_router(redis_client, broker)
    router.submit(intent(qty=8, limit=2.00))
    router.on_fills(broker.on_market(quotes(1.90, 2.00), SESSION_NS, 0))
    store = ExecutionStore(redis_client)
    assert store.exit_plans()[CONTRACT.key]["remaining"] == 8
    t = SESSION_NS + 60 * NS
    assert router.exit_signals({CONTRACT.key: (2.40, 2.50)}, t, 0) == []  # +22.5 %: nothing
    (rung1,) = router.exit_signals({CONTRACT.key: (2.95, 3.05)}, t, 0)  # +50 %
    assert rung1.side is Side.SELL and rung1.quantity == 2 and "50" in rung1.reason
    assert router.exit_signals({CONTRACT.key: (2.95, 3.05)}, t, 0) == []  # the same rung is not sold twice
    router.submit(
        OrderIntent(
            ts_event=t,
            ts_init=t,
            order_ref="X1",
            signal_id=rung1.signal_id,
            strategy="test",
            contract=CONTRACT,
            side=Side.SELL,
            quantity=2,
            limit_price=2.95,
            origin_ts_init=t,
        )
    )
    router.on_fills(broker.on_market(quotes(2.95, 3.05), t, 0))
    assert store.positions()[CONTRACT.key].quantity == 6
    assert store.exit_plans()[CONTRACT.key]["remaining"] == 6
    (rung2,) = router.exit_signals({CONTRACT.key: (3.95, 4.05)}, t + NS, 0)  # +100 %: half of the original
    assert rung2.quantity == 4


def test_denied_exit_releases_its_contracts(redis_client: redis.Redis) -> None:
    broker = SimBroker(1)
    router = make_router(redis_client, broker)
    router.submit(intent(qty=4, limit=2.00))
    router.on_fills(broker.on_market(quotes(1.90, 2.00), SESSION_NS, 0))
    t = SESSION_NS + 60 * NS
    (stop,) = router.exit_signals({CONTRACT.key: (0.95, 1.00)}, t, 0)  # −50 % hard stop
    assert stop.quantity == 4 and "stop" in stop.reason
    # the risk gate denied it (no order ever recorded): after the timeout the plan sells again
    assert router.exit_signals({CONTRACT.key: (0.95, 1.00)}, t + NS, 0) == []
    (again,) = router.exit_signals({CONTRACT.key: (0.95, 1.00)}, t + 61 * NS, 0)
    assert again.quantity == 4 and again.signal_id != stop.signal_id  # a new decision, enqueued anew
