"""The live router's lifecycle on real Redis and the real SimBroker, on a simulated clock.

Entries worked by the entry policy (chase at 30 s, spread cancel, chunks), children durable and
reconciled, protective OCA brackets rebuilt on every change, no double exit, 0DTE flat before the
close (half days too), emergency flatten and cancel-all.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import datetime

import pytest
import redis

from quanticity import keys
from quanticity.calendar import ET
from quanticity.clock import SimulatedClock
from quanticity.config.models import ExecutionSection
from quanticity.execution.router import BrokerError, OrderRouter
from quanticity.execution.store import ExecutionStore
from quanticity.messages import BrokerOrder, OptionContract, OrderIntent, OrderStatus, Right, Side, TradingState
from quanticity.risk.gate import order_ref_for
from quanticity.sim.broker import SimBroker

pytestmark = pytest.mark.unit
NS = 1_000_000_000
ZERO_DTE = OptionContract("SPY", "2026-11-20", 600.0, Right.CALL)  # 2026-11-20 is a full session (Friday)
ONE_DTE = OptionContract("SPY", "2026-11-23", 600.0, Right.CALL)
HALF_DAY = OptionContract("SPY", "2026-11-27", 600.0, Right.CALL)  # day after Thanksgiving: 13:00 close
_wall = itertools.count(1, 1000)


def et_ns(day: str, hhmmss: str) -> int:
    return int(datetime.fromisoformat(f"{day}T{hhmmss}").replace(tzinfo=ET).timestamp() * NS)


def entry(ref: str = "Q1", qty: int = 8, limit: float = 2.03, contract: OptionContract = ZERO_DTE) -> OrderIntent:
    return OrderIntent(
        ts_event=1,
        ts_init=1,
        order_ref=ref,
        signal_id=f"sig-{ref}",
        strategy="test",
        contract=contract,
        side=Side.BUY,
        quantity=qty,
        limit_price=limit,
        origin_ts_init=1,
    )


class LosesAcks:
    """The real SimBroker behind a link that drops: ``lost`` loses acks, ``down`` loses requests."""

    def __init__(self, broker: SimBroker, mode: str) -> None:
        self.broker = broker
        self.mode = mode

    def place(self, intent: OrderIntent) -> BrokerOrder:
        if self.mode == "lost":
            self.broker.place(intent)
        raise BrokerError(f"link {self.mode}")

    def __getattr__(self, name: str) -> object:
        return getattr(self.broker, name)


class Desk:
    """A router with brackets over a SimBroker, stepped on a simulated clock."""

    def __init__(self, client: redis.Redis, start_ns: int, contract: OptionContract = ZERO_DTE, **broker: object):
        self.client = client
        self.clock = SimulatedClock(start_ns)
        self.contract = contract
        self.broker = SimBroker(1, passive_fill_rate=0.0, **broker)  # type: ignore[arg-type]
        self.store = ExecutionStore(client)
        self.router = self.new_router(self.broker)

    def new_router(self, broker: object) -> OrderRouter:
        router = self.unreconciled_router(broker)
        router.reconcile()
        return router

    def unreconciled_router(self, broker: object) -> OrderRouter:
        return OrderRouter(
            self.store,
            broker,  # type: ignore[arg-type]
            ExecutionSection(),
            lambda: next(_wall),
            clock=self.clock,
            brackets=True,
        )

    def step(self, bid: float, ask: float, seconds: float = 1.0) -> list:  # noqa: ANN401
        now = self.clock.advance(seconds)
        quotes = {self.contract.key: (bid, ask)}
        self.router.on_fills(self.broker.on_market(lambda c: quotes.get(c.key), now, now))
        signals = self.router.on_tick(quotes, now, now)
        assert_no_double_exit(self)
        return signals

    def approve(self, signal) -> OrderStatus:  # noqa: ANN001
        """What the risk gate does with an approved exit: a SELL at the bid, referenced by the signal."""
        now = self.clock.now_ns()
        return self.router.submit(
            OrderIntent(
                ts_event=now,
                ts_init=now,
                order_ref=order_ref_for(signal.signal_id),
                signal_id=signal.signal_id,
                strategy=signal.strategy,
                contract=signal.contract,
                side=Side.SELL,
                quantity=signal.quantity,
                limit_price=signal.reference_bid,
                origin_ts_init=now,
            )
        )

    def held(self) -> int:
        position = self.store.positions().get(self.contract.key)
        return position.quantity if position else 0

    def open_sells(self) -> list[OrderIntent]:
        orders = {o["intent"]["order_ref"]: o for o in self.broker.state()["orders"]}
        return [
            OrderIntent(**{**orders[o.order_ref]["intent"], "contract": self.contract, "side": Side.SELL})
            for o in self.broker.open_orders()
            if orders[o.order_ref]["intent"]["side"] == "SELL"
        ]

    def limit_of(self, ref: str) -> float:
        intent = next(o["intent"] for o in self.broker.state()["orders"] if o["intent"]["order_ref"] == ref)
        return intent["stop_price"] if intent["order_type"] == "STP" else intent["limit_price"]


def assert_no_double_exit(desk: Desk) -> None:
    """Working sells at the broker can never sell more than is held: an OCA group counts once (its
    largest leg's remainder — only one leg executes), every other sell counts in full."""
    remaining = {o.order_ref: o.remaining for o in desk.broker.open_orders()}
    groups: dict[str, int] = defaultdict(int)
    loose = 0
    for intent in desk.open_sells():
        left = remaining[intent.order_ref]
        if intent.oca_group:
            groups[intent.oca_group] = max(groups[intent.oca_group], left)
        else:
            loose += left
    assert sum(groups.values()) + loose <= desk.held()


def buy_position(desk: Desk, qty: int = 8) -> None:
    """Enter ``qty`` at 2.00: placed at the mid of 1.95/2.05, filled when the ask comes down to it."""
    assert desk.router.submit_entry(entry(qty=qty, contract=desk.contract), (1.95, 2.05)) is OrderStatus.SUBMITTED
    for _ in range(60):
        if desk.held() == qty:
            break
        desk.step(1.90, 2.00)
    assert desk.held() == qty


# --- entries ------------------------------------------------------------------------------------
def test_entry_rests_at_mid_and_chases_after_30_simulated_seconds(redis_client: redis.Redis) -> None:
    desk = Desk(redis_client, et_ns("2026-11-20", "10:00:00"))
    assert desk.router.submit_entry(entry(qty=4), (2.00, 2.10)) is OrderStatus.SUBMITTED
    assert desk.limit_of("Q1") == 2.05  # mid
    desk.step(2.00, 2.10, 29.0)
    assert desk.limit_of("Q1") == 2.05 and desk.router.stats.chases == 0  # 29 s: still resting
    desk.step(2.00, 2.10, 1.0)  # 30 s: mid + 25 % of the spread
    assert desk.limit_of("Q1") == 2.07 and desk.router.stats.chases == 1
    assert redis_client.hget(keys.order("Q1"), "limit") == "2.07"  # the working limit, for slippage checks
    desk.step(2.10, 2.20, 1.0)  # the market moves: re-pegged to the new quote, same reference
    assert desk.limit_of("Q1") == 2.17
    saved = desk.store.entries()["Q1"]["children"][0]
    assert saved["limit"] == 2.17 and saved["replaces"] == 2
    assert len(desk.broker.state()["orders"]) == 1 and desk.broker.duplicate_places == 0


def test_entry_is_cancelled_when_the_spread_passes_10_percent(redis_client: redis.Redis) -> None:
    desk = Desk(redis_client, et_ns("2026-11-20", "10:00:00"))
    desk.router.submit_entry(entry(qty=4), (2.00, 2.10))
    desk.step(2.00, 2.20)  # 9.5 %: kept
    assert [o.order_ref for o in desk.broker.open_orders()] == ["Q1"]
    desk.step(1.90, 2.20)  # 14.6 %: cancelled at the broker
    assert desk.broker.open_orders() == []
    assert desk.store.status("Q1") is OrderStatus.CANCELLED
    assert desk.store.entries()["Q1"]["children"][0]["state"] == "CANCELLED"
    assert desk.router.entries.working() == [] and desk.router.stats.spread_cancels == 1
    # a spread already too wide at submission sends nothing at all
    assert desk.router.submit_entry(entry("Q2"), (1.00, 2.00)) is OrderStatus.CANCELLED
    assert desk.broker.lookup("Q2") is None and desk.store.status("Q2") is None


def test_large_entry_goes_out_in_children_of_at_most_100(redis_client: redis.Redis) -> None:
    desk = Desk(redis_client, et_ns("2026-11-20", "10:00:00"))
    desk.router.submit_entry(entry("Q9", qty=250), (1.95, 2.05))
    children = {o["intent"]["order_ref"]: o["intent"]["quantity"] for o in desk.broker.state()["orders"]}
    assert children == {"Q9-c1": 100, "Q9-c2": 100, "Q9-c3": 50}
    assert set(desk.store.all_refs()) == set(children)
    assert desk.router.submit_entry(entry("Q9", qty=250), (1.95, 2.05)) is OrderStatus.SUBMITTED  # replay
    assert desk.broker.duplicate_places == 0 and desk.router.stats.duplicates == 1
    for _ in range(2):
        desk.step(1.90, 2.00)
    assert desk.held() == 250
    assert desk.store.entries()["Q9"]["children"][2]["state"] == "FILLED"
    assert desk.router.entries.working() == []


@pytest.mark.parametrize("mode", ["lost", "down"])
def test_children_in_doubt_are_reconciled_never_sent_twice(redis_client: redis.Redis, mode: str) -> None:
    """The router dies between durable intent and ack for every child (ack lost, or request lost)."""
    desk = Desk(redis_client, et_ns("2026-11-20", "10:00:00"))
    first = desk.new_router(LosesAcks(desk.broker, mode))
    assert first.submit_entry(entry("Q7", qty=230), (1.95, 2.05)) is OrderStatus.PENDING_SEND
    assert desk.store.pending_send() == ["Q7-c1", "Q7-c2", "Q7-c3"]
    assert len(desk.broker.state()["orders"]) == (3 if mode == "lost" else 0)
    restarted = desk.unreconciled_router(desk.broker)  # a new router process over the same Redis
    result = restarted.reconcile()
    expected = {"adopted": 3, "resent": 0} if mode == "lost" else {"adopted": 0, "resent": 3}
    assert {k: result[k] for k in expected} == expected
    assert desk.store.pending_send() == []
    assert sorted(o.order_ref for o in desk.broker.open_orders()) == ["Q7-c1", "Q7-c2", "Q7-c3"]
    assert desk.broker.duplicate_places == 0
    (order,) = restarted.entries.working()
    assert [c.state.value for c in order.children] == ["SUBMITTED"] * 3
    assert restarted.submit_entry(entry("Q7", qty=230), (1.95, 2.05)) is OrderStatus.SUBMITTED
    assert desk.broker.duplicate_places == 0 and len(desk.broker.state()["orders"]) == 3


# --- brackets -----------------------------------------------------------------------------------
def test_bracket_follows_fills_partial_exits_and_the_trail(redis_client: redis.Redis) -> None:
    desk = Desk(redis_client, et_ns("2026-11-20", "10:00:00"))
    buy_position(desk, 8)
    legs = {i.order_ref: i for i in desk.open_sells()}
    assert {(i.order_type, i.quantity, desk.limit_of(r)) for r, i in legs.items()} == {
        ("STP", 8, 1.00),  # hard stop −50 %
        ("LMT", 2, 3.00),  # 25 % at +50 %
        ("LMT", 4, 4.00),  # 50 % at +100 %
    }
    assert len({i.oca_group for i in legs.values()}) == 1
    # +50 %: the first target fills at the broker; OCA cancels the rest; rebuilt for 6 at once,
    # and the mark locks the gain: the stop moves to break-even (a price modification, same leg)
    desk.step(3.00, 3.10)
    assert desk.held() == 6
    legs = {i.order_ref: i for i in desk.open_sells()}
    assert {(i.order_type, i.quantity, desk.limit_of(r)) for r, i in legs.items()} == {
        ("STP", 6, 2.00),
        ("LMT", 4, 4.00),
    }
    stop_ref = next(r for r, i in legs.items() if i.order_type == "STP")
    assert desk.router.stats.bracket_replaces == 1
    plan = desk.store.exit_plans()[ZERO_DTE.key]
    assert plan["rungs_done"] == [0] and plan["pending"] == 0
    # +100 %: the second target fills; the trail starts; the rest (2) is protected by the trail
    desk.step(4.00, 4.10)
    assert desk.held() == 2
    ((stop_ref, stop),) = [(i.order_ref, i) for i in desk.open_sells()]
    assert (stop.order_type, stop.quantity, desk.limit_of(stop_ref)) == ("STP", 2, 3.04)  # 4.05 × 0.75 ↑ tick
    desk.step(4.90, 5.00)  # the trail moves up: the same stop order is modified
    assert [i.order_ref for i in desk.open_sells()] == [stop_ref] and desk.limit_of(stop_ref) == 3.72
    # every raise of the stop was announced once for the subscribers' threads, in order, with why
    moves = [(e.kind.value, e.new_stop, e.reason) for e in desk.store.position_events()]
    assert moves == [
        ("stop_moved", 2.00, "break-even stop"),
        ("stop_moved", 3.04, "trailing stop"),
        ("stop_moved", 3.72, "trailing stop"),
    ]
    ids = [e.event_id for e in desk.store.position_events()]
    assert len(set(ids)) == 3 and all(e.contract_key == ZERO_DTE.key for e in desk.store.position_events())
    opening = desk.store.fills()[0].exec_id  # the entry alert every raise replies to
    assert {e.thread for e in desk.store.position_events()} == {opening}
    desk.step(3.70, 3.80)  # the bid falls through the trailing stop: out at the bid
    assert len(desk.store.position_events()) == 3  # the stop executing is a fill, not a move
    assert desk.held() == 0 and desk.broker.open_orders() == []
    assert desk.store.bracket(ZERO_DTE.key) is None and desk.store.exit_plans() == {}
    realized = desk.store.realized_pnl()["total"]
    assert realized == pytest.approx(
        (2 * 1.00 + 4 * 2.00 + 2 * 1.70) * 100 - sum(f.commission for f in desk.store.fills())
    )


def test_a_stop_fill_shrinks_the_bracket_to_what_is_left(redis_client: redis.Redis) -> None:
    desk = Desk(redis_client, et_ns("2026-11-20", "10:00:00"), max_fill_per_step=3)
    buy_position(desk, 8)
    desk.step(1.00, 1.10)  # bid at the hard stop: the STP sells 3 (venue limit per step), OCA cancels the targets
    assert desk.held() == 5
    (stop,) = [i for i in desk.open_sells() if i.order_type == "STP"]
    assert stop.quantity == 5 and desk.limit_of(stop.order_ref) == 1.00  # rebuilt for what is left
    assert {i.oca_group for i in desk.open_sells()} == {stop.oca_group}  # one new group, targets resized
    desk.step(0.95, 1.05)
    desk.step(0.95, 1.05)
    assert desk.held() == 0 and desk.broker.open_orders() == []


def test_an_exit_beyond_the_position_is_refused_before_the_broker(redis_client: redis.Redis) -> None:
    desk = Desk(redis_client, et_ns("2026-11-20", "10:00:00"))
    buy_position(desk, 4)
    extra = OrderIntent(
        ts_event=1,
        ts_init=1,
        order_ref="X1",
        signal_id="manual",
        strategy="test",
        contract=ZERO_DTE,
        side=Side.SELL,
        quantity=1,
        limit_price=1.90,
        origin_ts_init=1,
    )
    assert desk.router.submit(extra) is OrderStatus.REJECTED  # the bracket's stop already covers all 4
    assert desk.broker.lookup("X1") is None and desk.router.stats.exit_guard_rejects == 1


def test_halted_places_no_new_legs_and_resumes_with_a_fresh_bracket(redis_client: redis.Redis) -> None:
    desk = Desk(redis_client, et_ns("2026-11-20", "10:00:00"))
    redis_client.hset("system:trading_state", mapping={"state": TradingState.HALTED.value, "reason": "test"})
    buy_position(desk, 4)  # an entry already working fills while HALTED
    assert desk.open_sells() == []  # HALTED allows only cancels: no bracket is placed
    redis_client.hset("system:trading_state", mapping={"state": TradingState.REDUCING.value, "reason": "test"})
    desk.step(1.95, 2.05)
    assert {i.order_type for i in desk.open_sells()} == {"STP", "LMT"}  # REDUCING allows exits: protected


# --- 0DTE flat before the close -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("contract", "day", "before", "at"),
    [(ZERO_DTE, "2026-11-20", "15:49:59", "15:50:00"), (HALF_DAY, "2026-11-27", "12:49:59", "12:50:00")],
)
def test_zero_dte_is_closed_before_the_close(
    redis_client: redis.Redis, contract: OptionContract, day: str, before: str, at: str
) -> None:
    desk = Desk(redis_client, et_ns(day, "11:00:00"), contract=contract)
    buy_position(desk, 4)
    assert len(desk.open_sells()) == 3
    desk.clock.set(et_ns(day, before) - NS)
    assert desk.step(1.95, 2.05) == []
    assert len(desk.open_sells()) == 3
    (signal,) = desk.step(1.95, 2.05)  # the flat time: bracket down first, then one exit for everything
    assert desk.clock.now_ns() == et_ns(day, at)
    assert signal.quantity == 4 and "0DTE flat" in signal.reason
    assert desk.open_sells() == []  # the bracket was cancelled before the signal left
    assert desk.approve(signal) is OrderStatus.SUBMITTED
    desk.step(1.95, 2.05)
    assert desk.held() == 0 and desk.broker.open_orders() == []


def test_one_dte_is_held_overnight(redis_client: redis.Redis) -> None:
    desk = Desk(redis_client, et_ns("2026-11-20", "15:30:00"), contract=ONE_DTE)
    buy_position(desk, 4)
    desk.clock.set(et_ns("2026-11-20", "15:55:00"))
    assert desk.step(1.95, 2.05) == []
    assert desk.held() == 4 and len(desk.open_sells()) == 3


# --- emergency ------------------------------------------------------------------------------------
def test_flatten_leaves_no_order_and_no_position(redis_client: redis.Redis) -> None:
    desk = Desk(redis_client, et_ns("2026-11-20", "11:00:00"))
    buy_position(desk, 130)
    other = OptionContract("QQQ", "2026-11-20", 500.0, Right.PUT)
    desk.router.submit_entry(entry("Q5", qty=3, contract=other), (1.00, 1.05))  # still working
    assert len(desk.broker.open_orders()) == 4
    quotes = {ZERO_DTE.key: (1.95, 2.05), other.key: (1.00, 1.05)}
    report = desk.router.flatten(quotes, desk.clock.now_ns(), "E1", "test")
    assert report.cancelled == 4 and len(report.orders) == 2 and report.unflattened == []  # 130 → 100 + 30
    assert all(i.limit_price == 1.95 and not i.oca_group for i in desk.open_sells())
    again = desk.router.flatten(quotes, desk.clock.now_ns(), "E1", "test")  # the same emergency, twice
    assert again.orders == [] and desk.broker.duplicate_places == 0
    for _ in range(4):
        desk.step(1.95, 2.05)
    assert desk.store.positions() == {} and desk.broker.open_orders() == []
    assert desk.router.entries.working() == []


def test_cancel_all_cancels_every_order_including_those_in_doubt(redis_client: redis.Redis) -> None:
    desk = Desk(redis_client, et_ns("2026-11-20", "11:00:00"))
    buy_position(desk, 4)
    flaky = desk.new_router(LosesAcks(desk.broker, "down"))
    flaky.submit_entry(entry("Q6", qty=2), (1.95, 2.05))  # never reached the broker: in doubt
    assert desk.store.pending_send() == ["Q6"]
    assert flaky.cancel_all() == 4  # three bracket legs + the order in doubt
    assert desk.broker.open_orders() == [] and desk.store.pending_send() == []
    desk.new_router(desk.broker)  # a restart never sends the cancelled order
    assert desk.broker.lookup("Q6") is None
