"""Exit plans: 0/1DTE and 14d+ ladders, stops, time and earnings exits, break-even lock, brackets."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quanticity.execution.exits import (
    LONG_RULES,
    SHORT_RULES,
    Bracket,
    BracketTarget,
    ExitAction,
    ExitPlan,
    ExitReason,
    ExitRules,
    Rung,
    bracket,
    classify_dte,
    last_session_before,
)
from quanticity.execution.lifecycle import ceil_to_tick

pytestmark = pytest.mark.unit

NS = 1_000_000_000
T0 = 1_780_000_000 * NS


def run(
    plan: ExitPlan, marks: list[float], days: int = 0, session: date | None = None, fill: bool = True
) -> list[ExitAction]:
    """Feed ``marks``; fill every action at once (as a marketable exit would); return the actions."""
    out: list[ExitAction] = []
    for i, mark in enumerate(marks):
        actions = plan.on_mark(mark, T0 + i * NS, days, session)
        for action in actions:
            if fill:
                plan.on_fill(action.quantity)
        out.extend(actions)
    return out


def sold(actions: list[ExitAction]) -> list[tuple[int, str]]:
    return [(a.quantity, a.reason) for a in actions]


# --- 0/1DTE -------------------------------------------------------------------------------
def test_short_rung_plus_50_fires_exactly_at_threshold_not_a_tick_before() -> None:
    plan = ExitPlan(2.00, 8, "short", T0)
    assert run(plan, [2.50, 2.99]) == []
    (action,) = run(plan, [3.00])
    assert (action.quantity, action.reason, action.trigger_price, action.in_bracket) == (2, "rung +50%", 3.0, True)
    assert run(plan, [3.00, 3.50]) == []  # a rung fires once
    assert plan.remaining == 6 and plan.rungs_done == ["rung +50%"]


def test_short_rung_plus_100_fires_exactly_at_threshold_not_a_tick_before() -> None:
    plan = ExitPlan(2.00, 8, "short", T0)
    run(plan, [3.00])
    assert run(plan, [3.99]) == []
    assert sold(run(plan, [4.00])) == [(4, "rung +100%")]
    assert plan.remaining == 2 and plan.trail_high == 4.00


@pytest.mark.parametrize("entry", [1.37, 0.85, 2.00, 12.41, 0.05])
@pytest.mark.parametrize("gain", [50, 100])
def test_rung_boundaries_for_odd_entry_prices(entry: float, gain: int) -> None:
    level = ceil_to_tick(entry * (1 + gain / 100), 0.01)  # first tick price at or above the threshold
    plan = ExitPlan(entry, 100, "short", T0)
    if gain == 100:
        run(plan, [entry * 1.5])  # the +50 % rung first
    assert run(plan, [round(level - 0.01, 2)]) == []
    actions = run(plan, [level])
    assert [a.reason for a in actions] == [f"rung +{gain}%"]


def test_short_hard_stop_at_minus_50_pct() -> None:
    plan = ExitPlan(2.00, 8, "short", T0)
    assert run(plan, [1.50, 1.01]) == []
    (action,) = run(plan, [1.00])
    assert (action.quantity, action.reason, action.trigger_price, action.in_bracket) == (8, "hard stop", 1.0, True)
    assert plan.remaining == 0 and run(plan, [0.50]) == []


def test_hard_stop_on_a_gap_reports_the_stop_level_and_the_mark() -> None:
    plan = ExitPlan(2.00, 8, "short", T0)
    (action,) = run(plan, [0.60])
    assert action.reason == "hard stop" and action.trigger_price == 1.00 and action.mark == 0.60


def test_short_trailing_stop_after_plus_100_follows_high_water_and_fires_on_25_pct_giveback() -> None:
    plan = ExitPlan(2.00, 8, "short", T0)
    run(plan, [3.00, 4.00])
    assert plan.stop_level == pytest.approx(3.00)  # 25 % below the first trail high (4.00)
    assert run(plan, [4.60, 5.00, 4.20, 3.76]) == []
    assert plan.trail_high == 5.00 and plan.stop_level == pytest.approx(3.75)
    (action,) = run(plan, [3.75])
    assert (action.quantity, action.reason, action.trigger_price) == (2, "trailing stop", pytest.approx(3.75))
    assert plan.remaining == 0


def test_short_break_even_stop_after_first_rung() -> None:
    plan = ExitPlan(2.00, 8, "short", T0)
    run(plan, [3.00])
    assert plan.locked and plan.stop_level == 2.00
    assert run(plan, [2.50, 2.01]) == []
    (action,) = run(plan, [2.00])
    assert (action.quantity, action.reason, action.trigger_price) == (6, "break-even stop", 2.00)


def test_gap_through_both_rungs_fires_both_in_order() -> None:
    plan = ExitPlan(2.00, 8, "short", T0)
    assert sold(run(plan, [4.50])) == [(2, "rung +50%"), (4, "rung +100%")]
    assert plan.trail_high == 4.50


def test_single_contract_never_sells_at_a_rung_it_trails() -> None:
    plan = ExitPlan(2.00, 1, "short", T0)
    assert run(plan, [3.00, 4.00, 6.00]) == []
    assert sold(run(plan, [4.50])) == [(1, "trailing stop")]


def test_rung_quantities_round_down_and_leftovers_trail() -> None:
    plan = ExitPlan(1.00, 10, "short", T0)
    assert sold(run(plan, [1.50, 2.00])) == [(2, "rung +50%"), (5, "rung +100%")]  # floor(2.5), floor(7.5) − 2
    assert plan.remaining == 3


def test_never_sells_more_than_held_and_uncommitted() -> None:
    plan = ExitPlan(2.00, 8, "short", T0)
    (rung,) = run(plan, [3.00], fill=False)
    assert plan.pending == 2 and plan.available == 6
    (stop,) = run(plan, [1.90], fill=False)  # break-even stop while the rung sale is still working
    assert (stop.quantity, stop.reason) == (6, "break-even stop")
    assert run(plan, [1.80], fill=False) == []  # everything is committed
    plan.on_fill(6)
    plan.release(2)  # the rung order expired unfilled: the stop decision is final, sell them too
    (again,) = run(plan, [2.50], fill=False)
    assert (again.quantity, again.reason, again.trigger_price) == (2, "break-even stop", 2.00)
    plan.on_fill(2)
    assert plan.remaining == 0 and plan.available == 0
    with pytest.raises(ValueError, match="held"):
        plan.on_fill(1)
    with pytest.raises(ValueError, match="pending"):
        plan.release(1)


def test_fills_are_deduplicated_by_exec_id() -> None:
    plan = ExitPlan(2.00, 8, "short", T0)
    run(plan, [3.00], fill=False)
    assert plan.on_fill(2, exec_id="x1")
    assert not plan.on_fill(2, exec_id="x1")
    assert plan.remaining == 6 and plan.pending == 0


def test_broker_side_target_fill_counts_as_the_rung() -> None:
    plan = ExitPlan(2.00, 8, "short", T0)
    plan.on_fill(2, exec_id="b1", rung="rung +50%")  # the resting target filled at the broker
    assert plan.rungs_done == ["rung +50%"]
    assert run(plan, [3.10]) == []  # not sold a second time
    with pytest.raises(ValueError, match="not a rung"):
        plan.on_fill(1, rung="rung +70%")


def test_unusable_marks_change_nothing() -> None:
    plan = ExitPlan(2.00, 8, "short", T0)
    before = plan.state()
    assert run(plan, [float("nan"), 0.0, -1.0, float("inf")]) == []
    assert plan.state() == before


# --- 14 days+ -----------------------------------------------------------------------------
def test_long_ladder_trail_after_plus_50_then_rung_at_plus_100() -> None:
    plan = ExitPlan(2.00, 10, "long", T0)
    assert run(plan, [2.99]) == [] and plan.trail_high is None and plan.stop_level is None
    assert run(plan, [3.00]) == []  # up 50 %: the trail activates, nothing is sold
    assert plan.trail_high == 3.00 and plan.stop_level == pytest.approx(2.25)
    assert run(plan, [3.99]) == []
    assert sold(run(plan, [4.00])) == [(5, "rung +100%")]
    assert run(plan, [5.00, 3.76]) == []
    assert sold(run(plan, [3.75])) == [(5, "trailing stop")]


def test_long_trail_protects_the_whole_position_before_the_rung() -> None:
    plan = ExitPlan(2.00, 10, "long", T0)
    run(plan, [3.20])
    assert run(plan, [2.41]) == []
    (action,) = run(plan, [2.40])  # 25 % below 3.20
    assert (action.quantity, action.reason) == (10, "trailing stop")
    assert action.trigger_price == pytest.approx(2.40) and action.trigger_price > plan.entry_price


def test_long_has_no_price_hard_stop() -> None:
    plan = ExitPlan(2.00, 10, "long", T0)
    assert run(plan, [1.00, 0.20], days=4) == []


@pytest.mark.parametrize(
    ("days", "mark", "fires"),
    [(5, 1.40, True), (6, 1.00, True), (4, 1.40, False), (4, 0.50, False), (5, 1.42, False), (5, 2.50, False)],
)
def test_long_time_stop_down_30_pct_after_5_trading_days(days: int, mark: float, fires: bool) -> None:
    plan = ExitPlan(2.00, 10, "long", T0)
    actions = run(plan, [mark], days=days)
    assert sold(actions) == ([(10, "time stop")] if fires else [])
    if fires:
        assert actions[0].in_bracket is False and actions[0].trigger_price == mark


def test_pre_earnings_exit_on_the_session_before_earnings() -> None:
    plan = ExitPlan(2.00, 10, "long", T0, date(2026, 5, 14))  # Thursday
    assert run(plan, [2.50], session=date(2026, 5, 12)) == []
    (action,) = run(plan, [2.50], session=date(2026, 5, 13))
    assert (action.quantity, action.reason, action.in_bracket) == (10, "pre-earnings", False)


def test_pre_earnings_fires_late_if_the_session_before_was_missed_and_skips_weekends() -> None:
    plan = ExitPlan(2.00, 10, "long", T0, "2026-05-18")  # Monday → exit by Friday 15th
    assert run(plan, [2.50], session=date(2026, 5, 14)) == []
    assert sold(run(plan, [2.50], session=date(2026, 5, 18))) == [(10, "pre-earnings")]
    assert last_session_before(date(2026, 5, 18)) == date(2026, 5, 15)
    memorial_day = date(2026, 5, 25)
    assert last_session_before(date(2026, 5, 26), lambda d: d != memorial_day) == date(2026, 5, 22)


def test_explicit_exit_session_from_the_exchange_calendar_wins() -> None:
    plan = ExitPlan(2.00, 10, "long", T0, "2026-05-26", exit_session="2026-05-22")
    assert sold(run(plan, [2.50], session=date(2026, 5, 22))) == [(10, "pre-earnings")]


def test_rules_and_classes() -> None:
    assert classify_dte(0) == classify_dte(1) == "short"
    assert classify_dte(14) == classify_dte(45) == "long"
    with pytest.raises(ValueError, match="neither"):
        classify_dte(7)
    with pytest.raises(ValueError, match="strictly increasing"):
        ExitRules(rungs=(Rung(gain_pct=100, fraction=0.5), Rung(gain_pct=50, fraction=0.25)))
    with pytest.raises(ValueError, match="fractions"):
        ExitRules(rungs=(Rung(gain_pct=50, fraction=0.75), Rung(gain_pct=100, fraction=0.5)))
    with pytest.raises(ValueError, match="entry_price"):
        ExitPlan(0.0, 1, "short", T0)
    with pytest.raises(ValueError, match="dte_class"):
        ExitPlan(1.0, 1, "medium", T0)  # type: ignore[arg-type]
    assert SHORT_RULES.hard_stop_pct == 50 and LONG_RULES.time_stop_days == 5


# --- brackets -----------------------------------------------------------------------------
def test_bracket_contents() -> None:
    plan = ExitPlan(2.00, 8, "short", T0, plan_id="P1")
    assert bracket(plan) == Bracket(
        group="P1-oca1",
        revision=1,
        quantity=8,
        stop_price=1.00,
        stop_reason="hard stop",
        targets=(BracketTarget(3.00, 2, "rung +50%"), BracketTarget(4.00, 4, "rung +100%")),
    )
    run(plan, [3.00])
    assert bracket(plan) == Bracket("P1-oca2", 2, 6, 2.00, "break-even stop", (BracketTarget(4.00, 4, "rung +100%"),))
    run(plan, [1.99])
    assert bracket(plan) == Bracket("P1-oca3", 3, 0, None, None, ())  # nothing left to protect


def test_bracket_is_rebuilt_on_every_change_and_not_otherwise() -> None:
    plan = ExitPlan(2.00, 8, "short", T0)
    steps: list[tuple[str, bool]] = []

    def step(name: str, event: Callable[[], object]) -> None:
        before = bracket(plan)
        event()
        after = bracket(plan)
        assert (after != before) == (after.revision != before.revision)
        steps.append((name, after != before))

    step("quiet mark", lambda: plan.on_mark(2.10, T0))
    step("new high below first rung", lambda: plan.on_mark(2.90, T0))
    step("entry partial fill", lambda: plan.on_entry_fill(4, 2.00, exec_id="buy2"))
    step("duplicate entry fill", lambda: plan.on_entry_fill(4, 2.00, exec_id="buy2"))
    step("rung executed", lambda: plan.on_mark(3.00, T0))
    step("rung sale filled", lambda: plan.on_fill(3, exec_id="s1"))
    step("duplicate sale fill", lambda: plan.on_fill(3, exec_id="s1"))
    step("quiet mark after lock", lambda: plan.on_mark(2.50, T0))
    step("second rung", lambda: plan.on_mark(4.00, T0))
    step("second rung filled", lambda: plan.on_fill(6))
    step("trail moved", lambda: plan.on_mark(4.41, T0))  # stop 3.3075 → rests at 3.31
    step("trail moved less than a tick", lambda: plan.on_mark(4.412, T0))  # stop 3.309 → still 3.31
    step("fall without firing", lambda: plan.on_mark(3.32, T0))
    step("trail fires", lambda: plan.on_mark(3.309, T0))
    step("trail filled", lambda: plan.on_fill(3))
    assert steps == [
        ("quiet mark", False),
        ("new high below first rung", False),
        ("entry partial fill", True),
        ("duplicate entry fill", False),
        ("rung executed", True),
        ("rung sale filled", False),  # the contracts were already off the bracket while pending
        ("duplicate sale fill", False),
        ("quiet mark after lock", False),
        ("second rung", True),
        ("second rung filled", False),
        ("trail moved", True),
        ("trail moved less than a tick", False),
        ("fall without firing", False),
        ("trail fires", True),
        ("trail filled", False),
    ]
    assert plan.quantity == 12 and plan.remaining == 0


def test_entry_fill_grows_the_plan_at_the_average_price() -> None:
    plan = ExitPlan(2.00, 4, "short", T0)
    plan.on_entry_fill(4, 2.20)
    assert plan.entry_price == pytest.approx(2.10) and plan.quantity == plan.remaining == 8
    assert bracket(plan).stop_price == 1.05 and bracket(plan).targets[0] == BracketTarget(3.15, 2, "rung +50%")


def test_state_restore_resumes_the_plan_exactly() -> None:
    path = [2.4, 3.1, 2.8, 4.2, 4.9, 4.5, 3.9, 3.6, 3.5]
    plan = ExitPlan(2.00, 9, "short", T0, "2026-06-01", plan_id="P9")
    first = run(plan, path[:4])
    saved = json.loads(json.dumps(plan.state()))
    restored = ExitPlan.restore(saved)
    assert restored.state() == plan.state() and bracket(restored) == bracket(plan)
    assert run(restored, path[4:]) == run(plan, path[4:])
    assert sold(first) == [(2, "rung +50%"), (4, "rung +100%")]
    assert restored.remaining == plan.remaining == 0


# --- "a locked gain never reverses into a loss" -------------------------------------------
@settings(max_examples=300, deadline=None)
@given(
    entry=st.floats(min_value=0.05, max_value=25.0),
    quantity=st.integers(min_value=1, max_value=300),
    dte_class=st.sampled_from(["short", "long"]),
    steps=st.lists(st.floats(min_value=-0.35, max_value=0.45), min_size=1, max_size=80),
    fill_now=st.booleans(),
)
def test_locked_gain_never_reverses_into_a_loss(
    entry: float, quantity: int, dte_class: str, steps: list[float], fill_now: bool
) -> None:
    entry = round(entry, 2)
    plan = ExitPlan(entry, quantity, dte_class, T0)  # type: ignore[arg-type]
    first_rung = plan.rung_level(0)
    mark = entry
    sold_total = 0
    realized = 0.0
    for i, step in enumerate(steps):
        mark = max(0.01, round(mark * (1 + step), 2))
        was_locked = plan.locked
        actions = plan.on_mark(mark, T0 + i * NS)
        assert plan.locked == (plan.high_water >= first_rung - 1e-9)
        for action in actions:
            assert 0 < action.quantity <= plan.remaining
            if plan.locked:
                assert action.trigger_price >= entry, (action, plan.state())
            if was_locked and action.reason in ("trailing stop", "break-even stop", "hard stop"):
                assert (action.trigger_price - entry) * action.quantity * 100 >= 0
            realized += (action.trigger_price - entry) * action.quantity * 100
            sold_total += action.quantity
        stop_price = bracket(plan).stop_price
        if plan.locked and stop_price is not None:
            assert stop_price >= entry
        if fill_now or plan.closing_reason:
            for action in actions:
                plan.on_fill(action.quantity)
        assert sold_total <= quantity and plan.remaining >= 0 and plan.pending <= plan.remaining
    if plan.locked:
        assert realized >= 0  # every contract sold after the lock went at or above entry


def test_broker_bracket_mode_leaves_rungs_and_stops_to_the_broker() -> None:
    """With the bracket at the broker, marks move the bracket but never sell a rung or a stop themselves."""
    plan = ExitPlan(2.00, 8, "short", 0, broker_bracket=True)
    assert plan.on_mark(3.00, 1) == [] and plan.on_mark(4.00, 2) == [] and plan.on_mark(0.90, 3) == []
    assert plan.pending == 0 and plan.closing_reason is None
    bracket = plan.bracket()
    assert bracket.quantity == 8 and bracket.stop_price == 3.0  # trail: high 4.00 × 0.75
    assert plan.on_fill(2, "e1", rung="rung +50%") and plan.bracket().quantity == 6
    restored = ExitPlan.restore(json.loads(json.dumps(plan.state())))
    assert restored.broker_bracket and restored.on_mark(5.0, 4) == []


def test_broker_bracket_mode_still_decides_the_time_stop() -> None:
    plan = ExitPlan(2.00, 4, "long", 0, broker_bracket=True)
    (action,) = plan.on_mark(1.40, 1, trading_days_held=5)
    assert action.reason == ExitReason.TIME_STOP and not action.in_bracket and action.quantity == 4
    assert plan.bracket().quantity == 0  # closing: the bracket comes down


def test_close_sells_everything_available_once_and_empties_the_bracket() -> None:
    plan = ExitPlan(2.00, 5, "short", 0, broker_bracket=True)
    revision = plan.revision
    (action,) = plan.close(ExitReason.SESSION_CLOSE, 2.10, 7)
    assert (action.quantity, action.reason, action.in_bracket) == (5, ExitReason.SESSION_CLOSE, False)
    assert plan.close(ExitReason.SESSION_CLOSE, 2.10, 8) == []  # nothing left to commit
    assert plan.bracket().quantity == 0 and plan.revision == revision + 1
    plan.release(2)  # the exit order filled only 3: the rest goes on the next mark, same reason
    (again,) = plan.on_mark(2.20, 9)
    assert again.quantity == 2 and again.reason == ExitReason.SESSION_CLOSE
