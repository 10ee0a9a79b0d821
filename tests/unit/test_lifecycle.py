"""Order lifecycle state machine, entry policy (mid, chase, wide-spread cancel, chunking) and emergency actions."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from quanticity.execution.emergency import (
    CANCEL_ALL_REASON,
    Unflattened,
    cancel_all_actions,
    flatten_actions,
    flatten_ref,
)
from quanticity.execution.lifecycle import (
    ALLOWED_TRANSITIONS,
    Cancel,
    EntryManager,
    ExecutionPolicy,
    LifecycleError,
    OrderState,
    Place,
    Replace,
    WorkingOrder,
    child_refs,
    chunk_quantities,
    floor_to_tick,
)
from quanticity.messages import BrokerOrder, Fill, OptionContract, OrderIntent, OrderStatus, Right, Side

pytestmark = pytest.mark.unit

NS = 1_000_000_000
T0 = 1_780_000_000 * NS
CONTRACT = OptionContract("SPY", "2026-11-20", 600.0, Right.CALL)
KEY = CONTRACT.key
OTHER = OptionContract("QQQ", "2026-11-20", 500.0, Right.PUT)


def intent(ref: str = "Q1", qty: int = 10, side: Side = Side.BUY, limit: float = 2.12) -> OrderIntent:
    return OrderIntent(
        ts_event=T0,
        ts_init=T0,
        order_ref=ref,
        signal_id=f"sig-{ref}",
        strategy="test",
        contract=CONTRACT,
        side=side,
        quantity=qty,
        limit_price=limit,
        origin_ts_init=T0 - 5,
    )


def fill(ref: str, qty: int, exec_id: str, price: float = 2.10, contract: OptionContract = CONTRACT) -> Fill:
    return Fill(
        ts_event=T0,
        ts_init=T0,
        exec_id=exec_id,
        order_ref=ref,
        contract=contract,
        side=Side.BUY,
        quantity=qty,
        price=price,
        commission=1.0,
        strategy="test",
    )


def placed(manager: EntryManager, qty: int = 10, bid: float = 2.00, ask: float = 2.20) -> list[Place]:
    """Submit and acknowledge every child, as the router does after a successful send."""
    places = [a for a in manager.submit(intent(qty=qty), bid, ask, T0) if isinstance(a, Place)]
    for action in places:
        manager.on_submitted(action.intent.order_ref)
    return places


def order_of(manager: EntryManager, ref: str = "Q1") -> WorkingOrder:
    order = manager.order(ref)
    assert order is not None
    return order


# --- chunking -----------------------------------------------------------------------------
def test_chunking_250_is_100_100_50_with_deterministic_child_refs() -> None:
    assert chunk_quantities(250, 100) == [100, 100, 50]
    assert chunk_quantities(100, 100) == [100]
    assert chunk_quantities(1, 100) == [1]
    assert child_refs("Q1", 3) == ["Q1-c1", "Q1-c2", "Q1-c3"]
    assert child_refs("Q1", 1) == ["Q1"]  # one chunk keeps the parent reference
    actions = EntryManager().submit(intent(qty=250), 2.00, 2.20, T0)
    again = EntryManager().submit(intent(qty=250), 2.00, 2.20, T0)
    assert actions == again  # same parent → same children, whatever the process
    intents = [a.intent for a in actions if isinstance(a, Place)]
    assert [(i.order_ref, i.quantity) for i in intents] == [("Q1-c1", 100), ("Q1-c2", 100), ("Q1-c3", 50)]
    assert all(i.signal_id == "sig-Q1" and i.origin_ts_init == T0 - 5 and i.side is Side.BUY for i in intents)


def test_chunk_validation() -> None:
    with pytest.raises(ValueError, match="total"):
        chunk_quantities(0, 100)
    with pytest.raises(ValueError, match="max_chunk"):
        chunk_quantities(5, 0)


def test_submit_is_idempotent_per_reference() -> None:
    manager = EntryManager()
    assert len(manager.submit(intent(qty=250), 2.00, 2.20, T0)) == 3
    assert manager.submit(intent(qty=250), 2.00, 2.20, T0 + NS) == []
    assert manager.order("Q1-c2") is manager.order("Q1")


# --- entry pricing ------------------------------------------------------------------------
def test_initial_limit_is_mid_rounded_down_to_the_tick() -> None:
    (place,) = EntryManager().submit(intent(), 2.00, 2.20, T0)
    assert isinstance(place, Place) and place.intent.limit_price == 2.10
    (place,) = EntryManager().submit(intent(), 1.00, 1.05, T0)
    assert isinstance(place, Place) and place.intent.limit_price == 1.02  # 1.025 → never pay above mid
    assert floor_to_tick(1.03, 0.01) == 1.03 and floor_to_tick(1.0299999999, 0.01) == 1.03


def test_chase_after_exactly_30_seconds_not_at_29_999() -> None:
    manager = EntryManager()
    placed(manager)
    assert manager.on_quote(KEY, 2.00, 2.20, T0 + 29_999_000_000) == []
    actions = manager.on_quote(KEY, 2.00, 2.20, T0 + 30 * NS)
    assert actions == [Replace("Q1", 2.15, "chase")]  # mid 2.10 + 25 % × spread 0.20
    assert order_of(manager).children[0].limit == 2.15
    assert manager.on_quote(KEY, 2.00, 2.20, T0 + 31 * NS) == []  # unchanged target: no replace spam


def test_chased_order_follows_the_quote_never_crossing_more_than_25_pct() -> None:
    manager = EntryManager()
    placed(manager)
    manager.on_quote(KEY, 2.00, 2.20, T0 + 30 * NS)
    assert manager.on_quote(KEY, 2.10, 2.30, T0 + 35 * NS) == [Replace("Q1", 2.25, "re-peg")]
    assert manager.on_quote(KEY, 1.90, 2.10, T0 + 40 * NS) == [Replace("Q1", 2.05, "re-peg")]
    assert manager.on_quote(KEY, 1.902, 2.10, T0 + 41 * NS) == []  # target moved less than a tick


def test_chase_waits_for_the_acknowledgement() -> None:
    manager = EntryManager()
    manager.submit(intent(), 2.00, 2.20, T0)  # ack not seen: placement in doubt
    assert manager.on_quote(KEY, 2.00, 2.20, T0 + 60 * NS) == []
    manager.on_broker(BrokerOrder(order_ref="Q1", status=OrderStatus.SUBMITTED, filled=0, remaining=10, avg_price=0))
    assert manager.on_quote(KEY, 2.00, 2.20, T0 + 61 * NS) == [Replace("Q1", 2.15, "chase")]


def test_quotes_of_other_contracts_and_unusable_quotes_do_nothing() -> None:
    manager = EntryManager()
    placed(manager)
    assert manager.on_quote(OTHER.key, 2.00, 9.00, T0 + 60 * NS) == []
    assert manager.on_quote(KEY, 2.30, 2.20, T0 + 60 * NS) == []  # crossed
    assert manager.on_quote(KEY, float("nan"), 2.20, T0 + 60 * NS) == []
    assert manager.on_quotes({KEY: (2.00, 2.20), OTHER.key: (1.0, 1.1)}, T0 + 60 * NS) == [Replace("Q1", 2.15)]


def test_cancel_when_spread_exceeds_10_pct_of_mid_not_at_exactly_10() -> None:
    manager = EntryManager()
    placed(manager)
    assert manager.on_quote(KEY, 0.95, 1.05, T0 + NS) == []  # spread 0.10 / mid 1.00 = 10 % exactly
    actions = manager.on_quote(KEY, 0.94, 1.05, T0 + 2 * NS)  # 11.06 %
    assert len(actions) == 1 and isinstance(actions[0], Cancel)
    assert actions[0].order_ref == "Q1" and actions[0].at_broker and "spread" in actions[0].reason
    assert manager.on_quote(KEY, 0.90, 1.10, T0 + 3 * NS) == []  # cancel requested once
    assert manager.on_quote(KEY, 2.00, 2.20, T0 + 60 * NS) == []  # no chase of an order being cancelled
    manager.on_cancelled("Q1")
    assert order_of(manager).state is OrderState.CANCELLED


def test_cancel_wins_over_chase_and_covers_every_live_child() -> None:
    manager = EntryManager()
    placed(manager, qty=250)
    manager.on_fill(fill("Q1-c1", 100, "e1"))  # c1 done: nothing left to cancel there
    actions = manager.on_quote(KEY, 1.00, 1.50, T0 + 30 * NS)
    assert [(type(a), a.order_ref) for a in actions] == [(Cancel, "Q1-c2"), (Cancel, "Q1-c3")]
    manager.on_cancelled("Q1-c2")
    manager.on_cancelled("Q1-c3")
    order = manager.order("Q1")
    assert order is not None and order.state is OrderState.CANCELLED and order.filled == 100 and order.done


def test_submit_into_a_wide_spread_sends_nothing() -> None:
    manager = EntryManager()
    actions = manager.submit(intent(qty=150), 1.00, 1.50, T0)
    reason = "spread 40.00% of mid > 10%"
    assert actions == [Cancel("Q1-c1", reason, at_broker=False), Cancel("Q1-c2", reason, at_broker=False)]
    assert order_of(manager).state is OrderState.CANCELLED
    (no_market,) = EntryManager().submit(intent(), 0.0, 0.0, T0)
    assert isinstance(no_market, Cancel) and not no_market.at_broker and "no usable market" in no_market.reason


def test_entry_manager_only_works_buys() -> None:
    with pytest.raises(ValueError, match="BUY"):
        EntryManager().submit(intent(side=Side.SELL), 2.0, 2.1, T0)
    with pytest.raises(ValueError, match="chase_fraction"):
        ExecutionPolicy(chase_fraction=1.5)
    with pytest.raises(ValueError, match="max_chunk"):
        ExecutionPolicy(max_chunk=0)
    assert ExecutionPolicy().chase_after_ns == 30 * NS


def test_custom_policy() -> None:
    manager = EntryManager(ExecutionPolicy(chase_after_s=5, chase_fraction=0.5, max_spread_pct=20, max_chunk=4))
    actions = manager.submit(intent(qty=10), 2.00, 2.20, T0)
    assert [a.intent.quantity for a in actions if isinstance(a, Place)] == [4, 4, 2]
    for a in actions:
        assert isinstance(a, Place)
        manager.on_submitted(a.intent.order_ref)
    assert manager.on_quote(KEY, 1.90, 2.20, T0 + 5 * NS) == [Replace(f"Q1-c{n}", 2.20) for n in (1, 2, 3)]


# --- state machine ------------------------------------------------------------------------
def test_happy_path_with_partial_fills_and_duplicate_exec_ids() -> None:
    manager = EntryManager()
    manager.submit(intent(qty=10), 2.00, 2.20, T0)
    order = manager.order("Q1")
    assert order is not None and order.state is OrderState.NEW
    manager.on_submitted("Q1")
    manager.on_submitted("Q1")  # repeated ack
    assert order.state is OrderState.SUBMITTED
    assert manager.on_fill(fill("Q1", 4, "x1", 2.10))
    assert order.state is OrderState.PARTIALLY_FILLED and order.filled == 4
    assert not manager.on_fill(fill("Q1", 4, "x1", 2.10))  # replay: no-op
    assert manager.on_fills([fill("Q1", 4, "x1"), fill("Q1", 3, "x2", 2.20)]) == 1
    assert order.state is OrderState.PARTIALLY_FILLED and order.filled == 7
    assert manager.on_fill(fill("Q1", 3, "x3", 2.20))
    assert order.state is OrderState.FILLED and order.done
    assert order.avg_price == pytest.approx((4 * 2.10 + 6 * 2.20) / 10)
    assert not manager.on_fill(fill("Q1", 3, "x3"))  # duplicate after FILLED is still a no-op
    assert manager.on_quote(KEY, 1.0, 2.0, T0 + 60 * NS) == []  # finished orders get no actions
    assert manager.drop_finished() == ["Q1"] and manager.order("Q1") is None


def test_parent_state_is_derived_from_chunks() -> None:
    manager = EntryManager()
    manager.submit(intent(qty=250), 2.00, 2.20, T0)
    order = manager.order("Q1")
    assert order is not None
    manager.on_submitted("Q1-c1")
    assert order.state is OrderState.SUBMITTED
    manager.on_fill(fill("Q1-c3", 50, "a"))  # a fill before the ack proves the order reached the broker
    assert order.child("Q1-c3").state is OrderState.FILLED
    assert order.state is OrderState.PARTIALLY_FILLED and order.filled == 50
    manager.on_fill(fill("Q1-c1", 100, "b"))
    manager.on_fill(fill("Q1-c2", 100, "c"))
    assert order.state is OrderState.FILLED and order.quantity == 250
    manager.on_submitted("Q1-c3")  # a late ack of a filled child is harmless


def test_fill_on_new_child_is_allowed_and_rejected_parent() -> None:
    manager = EntryManager()
    manager.submit(intent(qty=150), 2.00, 2.20, T0)
    manager.on_rejected("Q1-c1", "no permission")
    manager.on_broker(BrokerOrder(order_ref="Q1-c2", status=OrderStatus.REJECTED, filled=0, remaining=50, avg_price=0))
    assert order_of(manager).state is OrderState.REJECTED


@pytest.mark.parametrize(
    ("setup", "event", "match"),
    [
        ("filled", lambda m: m.on_cancelled("Q1"), r"order Q1: illegal transition FILLED → CANCELLED"),
        ("filled", lambda m: m.on_rejected("Q1"), r"order Q1: illegal transition FILLED → REJECTED"),
        (
            "rejected",
            lambda m: m.on_fill(fill("Q1", 1, "z")),
            r"order Q1: illegal transition REJECTED → PARTIALLY_FILLED",
        ),
        ("rejected", lambda m: m.on_submitted("Q1"), r"order Q1: illegal transition REJECTED → SUBMITTED"),
        ("rejected", lambda m: m.on_cancelled("Q1"), r"order Q1: illegal transition REJECTED → CANCELLED"),
        ("partial", lambda m: m.on_rejected("Q1"), r"illegal transition PARTIALLY_FILLED → REJECTED"),
        ("partial", lambda m: m.on_fill(fill("Q1", 9, "over")), r"order Q1: fill over of 9 overfills"),
        ("partial", lambda m: m.on_fill(fill("Q1", 1, "w", contract=OTHER)), r"order Q1: fill w is BUY QQQ"),
        ("partial", lambda m: m.on_submitted("nope"), r"order nope: unknown"),
    ],
)
def test_illegal_transitions_raise_naming_order_and_states(
    setup: str, event: Callable[[EntryManager], object], match: str
) -> None:
    manager = EntryManager()
    manager.submit(intent(qty=10), 2.00, 2.20, T0)
    manager.on_submitted("Q1")
    if setup == "filled":
        manager.on_fill(fill("Q1", 10, "f"))
    elif setup == "rejected":
        manager.on_rejected("Q1")
    else:
        manager.on_fill(fill("Q1", 2, "p"))
    with pytest.raises(LifecycleError, match=match):
        event(manager)


def test_transition_table_is_explicit_and_terminal_states_are_final() -> None:
    for state in (OrderState.FILLED, OrderState.CANCELLED, OrderState.REJECTED):
        assert ALLOWED_TRANSITIONS[state] == frozenset()
    assert OrderState.SUBMITTED not in ALLOWED_TRANSITIONS[OrderState.PARTIALLY_FILLED]
    assert set(ALLOWED_TRANSITIONS) == set(OrderState)


def test_late_fill_after_cancel_is_booked_and_state_stays_cancelled() -> None:
    manager = EntryManager()
    placed(manager)
    manager.on_fill(fill("Q1", 2, "a"))
    manager.on_cancelled("Q1")
    manager.on_cancelled("Q1")  # repeat confirmation
    assert manager.on_fill(fill("Q1", 3, "b"))
    order = manager.order("Q1")
    assert order is not None and order.state is OrderState.CANCELLED and order.filled == 5
    assert order.children[0].late_fills == 1
    manager.on_submitted("Q1")  # stale ack after the cancel changes nothing
    assert order.state is OrderState.CANCELLED


def test_partial_fill_keeps_working_and_is_chased() -> None:
    manager = EntryManager()
    placed(manager)
    manager.on_fill(fill("Q1", 4, "a"))
    assert manager.on_quote(KEY, 2.00, 2.20, T0 + 30 * NS) == [Replace("Q1", 2.15)]
    assert order_of(manager).children[0].remaining == 6


def test_fill_for_unknown_order_is_not_ours() -> None:
    manager = EntryManager()
    placed(manager)
    assert not manager.on_fill(fill("ELSEWHERE", 1, "q"))


def test_state_restore_round_trips_through_json() -> None:
    manager = EntryManager()
    placed(manager, qty=250)
    manager.on_fill(fill("Q1-c1", 30, "a"))
    saved = json.loads(json.dumps(manager.state()))
    restored = EntryManager.restore(saved)
    assert restored.state() == manager.state()
    assert not restored.on_fill(fill("Q1-c1", 30, "a"))  # exec ids survive the restart
    assert restored.on_quote(KEY, 2.00, 2.20, T0 + 30 * NS) == manager.on_quote(KEY, 2.00, 2.20, T0 + 30 * NS)


# --- emergency ----------------------------------------------------------------------------
def test_flatten_sells_every_position_at_the_bid_in_chunks() -> None:
    positions = {KEY: (CONTRACT, 150), OTHER.key: (OTHER, 3), "ZERO": (OTHER, 0)}
    actions = flatten_actions(
        positions, {KEY: (2.05, 2.15), OTHER.key: (0.40, 0.45)}, now_ns=T0, strategies={KEY: "momentum"}
    )
    places = [a for a in actions if isinstance(a, Place)]
    assert len(places) == len(actions) == 3
    qqq, spy1, spy2 = (p.intent for p in places)  # contract-key order
    ref = flatten_ref("emergency", KEY)
    assert (spy1.order_ref, spy1.quantity, spy2.order_ref, spy2.quantity) == (f"{ref}-c1", 100, f"{ref}-c2", 50)
    assert all(i.side is Side.SELL for i in (qqq, spy1, spy2))
    assert spy1.limit_price == 2.05 and qqq.limit_price == 0.40  # marketable: at the bid
    assert spy1.strategy == "momentum" and qqq.strategy == "emergency"
    assert flatten_actions(positions, {KEY: (2.05, 2.15), OTHER.key: (0.40, 0.45)}, now_ns=T0 + NS) != actions
    again = flatten_actions(positions, {KEY: (2.00, 2.15), OTHER.key: (0.40, 0.45)}, now_ns=T0)
    assert [a.intent.order_ref for a in again if isinstance(a, Place)] == [p.intent.order_ref for p in places]


def test_flatten_reports_positions_it_cannot_price() -> None:
    actions = flatten_actions({KEY: (CONTRACT, 5), OTHER.key: (OTHER, 2)}, {OTHER.key: (0.0, 0.05)})
    assert actions == [Unflattened(OTHER.key, 2, "no bid (0.0)"), Unflattened(KEY, 5, "no quote")]


def test_cancel_all_cancels_each_working_order_once() -> None:
    def report(ref: str, status: OrderStatus) -> BrokerOrder:
        return BrokerOrder(order_ref=ref, status=status, filled=0, remaining=1, avg_price=0)

    actions = cancel_all_actions(
        [
            report("B", OrderStatus.SUBMITTED),
            report("A", OrderStatus.PARTIALLY_FILLED),
            report("C", OrderStatus.FILLED),
            report("D", OrderStatus.CANCELLED),
            report("E", OrderStatus.PENDING_SEND),
            "B",
        ]
    )
    assert actions == [Cancel("A", CANCEL_ALL_REASON), Cancel("B", CANCEL_ALL_REASON), Cancel("E", CANCEL_ALL_REASON)]
    assert cancel_all_actions([]) == []
