"""The simulated venue's order types: replace, STP triggered on the bid, OCA groups (IB ocaType 1), persistence."""

from __future__ import annotations

import json

import pytest

from quanticity.messages import OptionContract, OrderIntent, OrderStatus, Right, Side
from quanticity.sim.broker import SimBroker

pytestmark = pytest.mark.unit
CONTRACT = OptionContract("SPY", "2026-11-20", 600.0, Right.CALL)
NS = 1_000_000_000


def order(
    ref: str,
    qty: int = 4,
    limit: float = 2.00,
    side: Side = Side.SELL,
    stop: float = 0.0,
    group: str = "",
) -> OrderIntent:
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
        order_type="STP" if stop else "LMT",
        stop_price=stop,
        oca_group=group,
    )


def market(bid: float, ask: float):  # noqa: ANN201
    return lambda contract: (bid, ask)


def test_replace_moves_the_limit_and_keeps_the_reference() -> None:
    broker = SimBroker(1, passive_fill_rate=0.0)
    broker.place(order("B1", side=Side.BUY, limit=1.90))
    assert broker.on_market(market(2.00, 2.10), NS, 0) == []  # below the bid: no fill
    ack = broker.replace("B1", 2.10)
    assert ack is not None and ack.order_ref == "B1" and ack.status is OrderStatus.SUBMITTED
    (fill,) = broker.on_market(market(2.00, 2.10), 2 * NS, 0)
    assert fill.order_ref == "B1" and fill.price == 2.10 and fill.quantity == 4
    assert len(broker.state()["orders"]) == 1  # modified in place, not a second order


def test_finished_orders_cannot_be_replaced() -> None:
    broker = SimBroker(1)
    broker.place(order("F1", side=Side.BUY, limit=2.10))
    broker.on_market(market(2.00, 2.10), NS, 0)
    broker.place(order("C1", side=Side.BUY, limit=1.00))
    broker.cancel("C1")
    for ref, status in (("F1", OrderStatus.FILLED), ("C1", OrderStatus.CANCELLED)):
        ack = broker.replace(ref, 2.50)
        assert ack is not None and ack.status is status
    assert broker.lookup("F1").avg_price == 2.10  # type: ignore[union-attr]
    assert broker.refused_replaces == 2
    assert broker.replace("nope", 1.0) is None
    with pytest.raises(ValueError, match="new_price"):
        broker.replace("C1", float("nan"))


def test_sell_stop_triggers_on_the_bid_and_fills_at_the_bid() -> None:
    broker = SimBroker(1, max_fill_per_step=3)
    broker.place(order("S1", qty=5, stop=1.50))
    assert broker.on_market(market(1.51, 1.45 + 0.2), NS, 0) == []  # bid above the stop
    assert broker.on_market(market(1.52, 1.60), NS, 0) == []
    (first,) = broker.on_market(market(1.50, 1.60), 2 * NS, 0)  # bid touches the stop
    assert first.price == 1.50 and first.quantity == 3
    (second,) = broker.on_market(market(1.70, 1.80), 3 * NS, 0)  # triggered stays triggered: a market order now
    assert second.price == 1.70 and second.quantity == 2
    assert broker.lookup("S1").status is OrderStatus.FILLED  # type: ignore[union-attr]


def test_stop_replace_moves_the_trigger() -> None:
    broker = SimBroker(1)
    broker.place(order("S1", stop=1.00))
    broker.replace("S1", 1.80)  # a trailing stop moved up
    (fill,) = broker.on_market(market(1.75, 1.85), NS, 0)
    assert fill.price == 1.75


def test_oca_execution_cancels_the_other_members() -> None:
    broker = SimBroker(1, max_fill_per_step=2)
    broker.place(order("T1", qty=4, limit=3.00, group="G1"))
    broker.place(order("S1", qty=4, stop=1.00, group="G1"))
    broker.place(order("X", qty=1, limit=9.00))  # not in the group
    fills = broker.on_market(market(3.00, 3.10), NS, 0)
    assert [(f.order_ref, f.quantity) for f in fills] == [("T1", 2)]  # partial: still cancels the rest
    assert broker.lookup("S1").status is OrderStatus.CANCELLED  # type: ignore[union-attr]
    assert broker.lookup("T1").status is OrderStatus.PARTIALLY_FILLED  # type: ignore[union-attr]
    assert broker.lookup("X").status is OrderStatus.SUBMITTED  # type: ignore[union-attr]
    assert broker.oca_cancels == 1
    assert broker.drain_changed() == ["S1", "T1"]
    # a new member of a group that already executed is refused, as IB refuses it
    assert broker.place(order("T2", qty=1, limit=4.00, group="G1")).status is OrderStatus.REJECTED


def test_oca_members_never_both_execute_in_one_step() -> None:
    """A quote so wide that the stop triggers and the target could fill passively: one leg only."""
    broker = SimBroker(3, passive_fill_rate=1.0)
    broker.place(order("S1", qty=2, stop=1.00, group="G"))
    broker.place(order("T1", qty=2, limit=1.50, group="G"))
    fills = broker.on_market(market(0.90, 2.00), NS, 0)
    assert [f.order_ref for f in fills] == ["S1"]
    assert broker.lookup("T1").status is OrderStatus.CANCELLED  # type: ignore[union-attr]


def test_state_round_trip_keeps_triggers_groups_and_counters() -> None:
    broker = SimBroker(7, max_fill_per_step=1)
    broker.place(order("S1", qty=3, stop=1.50, group="G"))
    broker.place(order("T1", qty=3, limit=5.00, group="G"))
    broker.place(order("L1", qty=3, limit=5.00, group="H"))
    broker.on_market(market(1.40, 1.60), NS, 0)  # S1 triggers and fills 1; T1 cancelled by OCA
    broker.replace("L1", 5.50)
    broker.replace("T1", 4.0)  # refused: cancelled
    state = json.loads(json.dumps(broker.state()))
    restored = SimBroker(0)
    restored.restore(state)
    assert restored.state() == broker.state()
    incremental = SimBroker(0)
    incremental.load(
        [json.loads(json.dumps(broker.order_record(r))) for r in ("S1", "T1", "L1")],
        [json.loads(json.dumps(e)) for e in state["executions"]],
        state["rng"],
    )
    # the restored stop is still triggered: it keeps selling at the bid even above its trigger
    for venue in (broker, restored, incremental):
        (fill,) = venue.on_market(market(1.70, 1.80), 2 * NS, 0)
        assert (fill.order_ref, fill.price) == ("S1", 1.70)
    assert restored.refused_replaces == 1 and restored.oca_cancels == 1


def test_invalid_orders_are_rejected_not_raised() -> None:
    broker = SimBroker(1)
    assert broker.place(order("Z1", stop=-1.0)).status is OrderStatus.REJECTED
    assert broker.place(order("Z2", limit=float("nan"))).status is OrderStatus.REJECTED
    assert broker.open_orders() == []
