"""Risk gate: each rule passes at its limit, denies one step past it, with its reason code."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
import redis

from quanticity import keys
from quanticity.calendar import ET, NyseCalendar
from quanticity.config.models import RiskSection
from quanticity.messages import CancelRequest, Direction, OptionContract, Right, Side, Signal, TradingState, decode
from quanticity.messages import RiskDecision as Decision
from quanticity.risk.correlation import ReturnCorrelation
from quanticity.risk.gate import CorrelationProvider, Exposure, MemoryRiskStore, Reason, RiskGate, order_ref_for
from quanticity.risk.store import RedisRiskStore

pytestmark = pytest.mark.unit
NS = 1_000_000_000
SESSION = "2026-11-20"  # a Friday, full session


def ts(hhmm: str, day: str = SESSION) -> int:
    return int(datetime.fromisoformat(f"{day}T{hhmm}").replace(tzinfo=ET).timestamp() * NS)


def signal(
    *,
    expiry: str = "2026-12-04",
    bid: float = 2.00,
    ask: float = 2.10,
    at: int | None = None,
    direction: Direction = Direction.BULLISH,
    side: Side = Side.BUY,
    quantity: int = 0,
    sid: str = "s1",
    underlying: str = "SPY",
) -> Signal:
    at = at if at is not None else ts("10:00")
    right = Right.CALL if direction is Direction.BULLISH else Right.PUT
    return Signal(
        ts_event=at,
        ts_init=at,
        signal_id=sid,
        strategy="test",
        symbol=underlying,
        direction=direction,
        contract=OptionContract(underlying, expiry, 600.0, right),
        confidence=80,
        reference_bid=bid,
        reference_ask=ask,
        reason="test",
        inputs={"computed_at": float(at)},
        origin_ts_init=at,
        side=side,
        quantity=quantity,
    )


CALENDAR = NyseCalendar()


def gate(correlation: CorrelationProvider | None = None, **overrides: object) -> RiskGate:
    return RiskGate(
        RiskSection(**overrides),  # type: ignore[arg-type]
        MemoryRiskStore(),
        calendar=CALENDAR,
        limit_offset=0.25,
        correlation=correlation,
    )


def test_approval_sizes_from_risk_budget_and_premium() -> None:
    g = gate(account_equity=100_000, risk_per_trade_pct=1.0)
    decision, intent = g.evaluate(signal(bid=2.00, ask=2.10), Exposure(), ts("10:00"))
    assert decision.approved and decision.reason_code == Reason.APPROVED
    assert intent is not None
    # limit = mid + 25 % of the half spread = 2.05 + 0.0125 → 2.06; budget 1000 / 206 → 4 contracts
    assert intent.limit_price == pytest.approx(2.06) and intent.quantity == 4
    assert intent.order_ref == order_ref_for("s1") and intent.side is Side.BUY


def test_order_ref_is_deterministic_per_signal() -> None:
    assert order_ref_for("a") == order_ref_for("a") != order_ref_for("b")


def test_halted_denies_entries_and_exits() -> None:
    g = gate()
    g.set_state(TradingState.HALTED, "admin", ts("10:00"))
    assert g.evaluate(signal(), Exposure(), ts("10:00"))[0].reason_code == Reason.STATE_HALTED
    exit_signal = signal(side=Side.SELL, quantity=1)
    exposure = Exposure(position_qty={exit_signal.contract.key: 1})
    assert g.evaluate(exit_signal, exposure, ts("10:00"))[0].reason_code == Reason.STATE_HALTED


def test_reducing_allows_only_exits() -> None:
    g = gate()
    g.set_state(TradingState.REDUCING, "admin", ts("10:00"))
    assert g.evaluate(signal(), Exposure(), ts("10:00"))[0].reason_code == Reason.STATE_REDUCING
    exit_signal = signal(side=Side.SELL, quantity=2, sid="x")
    decision, intent = g.evaluate(exit_signal, Exposure(position_qty={exit_signal.contract.key: 2}), ts("10:00"))
    assert decision.approved and intent is not None and intent.side is Side.SELL and intent.quantity == 2


def test_exit_larger_than_position_is_denied() -> None:
    exit_signal = signal(side=Side.SELL, quantity=3)
    decision, _ = gate().evaluate(exit_signal, Exposure(position_qty={exit_signal.contract.key: 2}), ts("10:00"))
    assert decision.reason_code == Reason.NO_POSITION


def test_state_survives_restart_through_store() -> None:
    store = MemoryRiskStore()
    RiskGate(RiskSection(), store).set_state(TradingState.HALTED, "loss", ts("10:00"))
    assert RiskGate(RiskSection(), store).state is TradingState.HALTED


def test_stale_input_at_limit_and_past_it() -> None:
    g = gate(max_input_age_s=60)
    at = ts("10:00")
    assert g.evaluate(signal(at=at, sid="a"), Exposure(), at + 60 * NS)[0].approved
    assert g.evaluate(signal(at=at, sid="b"), Exposure(), at + 61 * NS)[0].reason_code == Reason.STALE_INPUT


def test_zero_dte_cutoff_at_1530() -> None:
    g = gate()
    before, after = ts("15:29:59"), ts("15:30")
    assert g.evaluate(signal(expiry=SESSION, at=before, sid="a"), Exposure(), before)[0].approved
    decision = g.evaluate(signal(expiry=SESSION, at=after, sid="b"), Exposure(), after)[0]
    assert decision.reason_code == Reason.ZERO_DTE_CUTOFF
    # a 14-day contract is not subject to the 0DTE cut-off
    assert g.evaluate(signal(at=after, sid="c"), Exposure(), after)[0].approved


def test_zero_dte_cutoff_moves_earlier_on_half_day() -> None:
    day = "2026-11-27"  # day after Thanksgiving, closes 13:00
    at = ts("12:45", day)
    decision = gate().evaluate(signal(expiry=day, at=at), Exposure(), at)[0]
    assert decision.reason_code == Reason.ZERO_DTE_CUTOFF


def test_option_spread_limit() -> None:
    g = gate(max_option_spread_pct=10.0)
    # spread 0.20 on mid 2.00 = 10 % → passes; 0.22 on 2.00 → 11 % → denied
    assert g.evaluate(signal(bid=1.90, ask=2.10, sid="a"), Exposure(), ts("10:00"))[0].approved
    decision = g.evaluate(signal(bid=1.89, ask=2.11, sid="b"), Exposure(), ts("10:00"))[0]
    assert decision.reason_code == Reason.SPREAD_TOO_WIDE


def test_max_open_positions_per_direction() -> None:
    g = gate(max_open_per_direction=3)
    assert g.evaluate(signal(sid="a"), Exposure(open_by_direction={Direction.BULLISH: 2}), ts("10:00"))[0].approved
    denied = g.evaluate(signal(sid="b"), Exposure(open_by_direction={Direction.BULLISH: 3}), ts("10:00"))[0]
    assert denied.reason_code == Reason.MAX_OPEN_DIRECTION
    other = Exposure(open_by_direction={Direction.BULLISH: 3})
    assert g.evaluate(signal(sid="c", direction=Direction.BEARISH), other, ts("10:00"))[0].approved


def test_order_rate_limit_over_a_sliding_minute() -> None:
    g = gate(max_orders_per_minute=2)
    at = ts("10:00")
    assert g.evaluate(signal(sid="a"), Exposure(), at)[0].approved
    assert g.evaluate(signal(sid="b"), Exposure(), at + NS)[0].approved
    assert g.evaluate(signal(sid="c", at=at + 2 * NS), Exposure(), at + 2 * NS)[0].reason_code == Reason.ORDER_RATE
    later = at + 61 * NS
    assert g.evaluate(signal(sid="d", at=later), Exposure(), later)[0].approved


def test_notional_cap_limits_size_and_size_zero_denies() -> None:
    g = gate(account_equity=1_000_000, risk_per_trade_pct=5.0, max_notional_per_order=1_000)
    decision, intent = g.evaluate(signal(bid=2.00, ask=2.10), Exposure(), ts("10:00"))
    assert intent is not None and intent.quantity == 4  # 1000 / 206 → 4
    g2 = gate(account_equity=10_000, risk_per_trade_pct=1.0)  # budget 100 < 206 per contract
    assert g2.evaluate(signal(), Exposure(), ts("10:00"))[0].reason_code == Reason.SIZE_ZERO


def test_max_contracts_per_order() -> None:
    g = gate(account_equity=10_000_000, risk_per_trade_pct=5.0, max_notional_per_order=1e9, max_contracts_per_order=100)
    _, intent = g.evaluate(signal(bid=1.00, ask=1.02), Exposure(), ts("10:00"))
    assert intent is not None and intent.quantity == 100


def test_buying_power() -> None:
    g = gate(account_equity=100_000)
    ok = Exposure(premium_at_risk=100_000 - 824)  # 4 contracts × 206 = 824 fits exactly
    assert g.evaluate(signal(sid="a"), ok, ts("10:00"))[0].approved
    short = Exposure(premium_at_risk=100_000 - 823)
    assert g.evaluate(signal(sid="b"), short, ts("10:00"))[0].reason_code == Reason.BUYING_POWER


def test_daily_loss_warning_then_halt() -> None:
    g = gate(account_equity=100_000, daily_loss_warn_pct=4, daily_loss_halt_pct=6)
    assert g.daily_loss_check(Exposure(realized_pnl=-3_999), ts("10:00")) is None
    assert g.daily_loss_check(Exposure(realized_pnl=-4_000), ts("10:00")) == "WARN"
    assert g.state is TradingState.ACTIVE
    decision = g.evaluate(signal(), Exposure(realized_pnl=-5_000, unrealized_pnl=-1_000), ts("10:00"))[0]
    assert decision.reason_code == Reason.DAILY_LOSS_HALT
    assert g.state is TradingState.HALTED and g.store.load_state()[0] is TradingState.HALTED


def test_bad_market_input_is_denied_not_raised() -> None:
    for bid, ask in [(float("nan"), 1.0), (2.0, 1.0), (-1.0, 1.0), (0.0, 0.0)]:
        decision = gate().evaluate(signal(bid=bid, ask=ask), Exposure(), ts("10:00"))[0]
        assert decision.reason_code == Reason.NO_MARKET


def test_risk_pct_from_strategy_capped_by_dte_band() -> None:
    g = gate(account_equity=100_000, max_notional_per_order=1e9)
    at = ts("10:00")
    asks_five = signal(at=at, sid="a")
    asks_five = Signal(
        **{
            **{f: getattr(asks_five, f) for f in asks_five.__struct_fields__},
            "inputs": {"computed_at": float(at), "risk_pct": 5.0},
        }
    )
    # 14-day band tops out at 5 %: 5000 / 206 → 24 contracts
    assert g.evaluate(asks_five, Exposure(), at)[1].quantity == 24  # type: ignore[union-attr]
    zero_dte = Signal(
        **{
            **{f: getattr(asks_five, f) for f in asks_five.__struct_fields__},
            "signal_id": "b",
            "contract": OptionContract("SPY", SESSION, 600.0, Right.CALL),
        }
    )
    # the same request on a 0DTE contract is capped at the 0DTE band's 2 %: 2000 / 206 → 9
    assert g.evaluate(zero_dte, Exposure(), at)[1].quantity == 9  # type: ignore[union-attr]


def test_moc_is_exempt_from_the_zero_dte_cutoff() -> None:
    g = gate()
    at = ts("15:30")
    moc = signal(expiry=SESSION, at=at, sid="moc")
    moc = Signal(**{**{f: getattr(moc, f) for f in moc.__struct_fields__}, "strategy": "moc_imbalance"})
    assert g.evaluate(moc, Exposure(), at)[0].approved
    assert g.evaluate(signal(expiry=SESSION, at=at, sid="x"), Exposure(), at)[0].reason_code == Reason.ZERO_DTE_CUTOFF


# --- rules added with the P&L wiring: notional, correlation, drawdown, day-based loss ----------------
def test_max_notional_per_order_at_the_limit_and_one_cent_past() -> None:
    # limit 2.06: one contract costs 206.00
    at_limit = gate(max_notional_per_order=206.0).evaluate(signal(sid="a"), Exposure(), ts("10:00"))
    assert at_limit[0].approved and at_limit[1] is not None and at_limit[1].quantity == 1  # capped from 4 to 1
    past = gate(max_notional_per_order=205.99).evaluate(signal(sid="b"), Exposure(), ts("10:00"))[0]
    assert past.reason_code == Reason.MAX_NOTIONAL and "205.99" in past.detail


def test_risk_budget_at_exactly_one_contract_and_one_cent_short() -> None:
    # 1 % of 20,600 = 206.00 = one contract at 2.06; 1 % of 20,599 = 205.99 buys nothing
    _, intent = gate(account_equity=20_600).evaluate(signal(sid="a"), Exposure(), ts("10:00"))
    assert intent is not None and intent.quantity == 1
    short = gate(account_equity=20_599).evaluate(signal(sid="b"), Exposure(), ts("10:00"))[0]
    assert short.reason_code == Reason.SIZE_ZERO and "risk budget 205.99" in short.detail


class TableCorrelation:
    """A correlation provider with fixed answers: the rule's boundary, independent of estimation noise."""

    def __init__(self, table: dict[tuple[str, str], float | None]) -> None:
        self.table = {frozenset(k): v for k, v in table.items()}
        self.asked: list[tuple[str, str]] = []

    def correlation(self, a: str, b: str) -> float | None:
        self.asked.append((a, b))
        return self.table.get(frozenset((a, b)))


def held(direction: Direction, *underlyings: str) -> Exposure:
    return Exposure(
        open_by_direction={direction: len(underlyings)}, held_underlyings={direction: frozenset(underlyings)}
    )


def test_correlation_limit_at_0_7_passes_and_just_above_denies() -> None:
    at_limit = gate(TableCorrelation({("QQQ", "SPY"): 0.7}), max_correlation=0.7)
    assert at_limit.evaluate(signal(underlying="QQQ"), held(Direction.BULLISH, "SPY"), ts("10:00"))[0].approved
    above = gate(TableCorrelation({("QQQ", "SPY"): 0.7001}), max_correlation=0.7)
    decision = above.evaluate(signal(underlying="QQQ"), held(Direction.BULLISH, "SPY"), ts("10:00"))[0]
    assert decision.reason_code == Reason.CORRELATION_LIMIT
    assert decision.detail == "QQQ return correlation 0.700 with held BULLISH SPY > 0.7"


def test_correlation_allows_hedges_and_does_not_judge_the_same_underlying() -> None:
    table = TableCorrelation({("QQQ", "SPY"): 0.95})
    g = gate(table)
    # a bearish QQQ entry against a bullish SPY holding is a hedge (seed 002): allowed, never asked
    assert g.evaluate(
        signal(underlying="QQQ", direction=Direction.BEARISH), held(Direction.BULLISH, "SPY"), ts("10:00")
    )[0].approved
    # more SPY while SPY is held: bounded by max-open-per-direction, not by correlation with itself
    assert g.evaluate(signal(sid="b"), held(Direction.BULLISH, "SPY"), ts("10:00"))[0].approved
    assert table.asked == []


def test_thin_correlation_history_is_allowed_and_counted() -> None:
    g = gate(TableCorrelation({}))  # every pair unknown
    exposure = held(Direction.BULLISH, "IWM", "SPY")
    assert g.evaluate(signal(underlying="QQQ"), exposure, ts("10:00"))[0].approved
    assert g.correlation_unknown == 2


def test_correlation_rule_on_returns_estimated_from_prices() -> None:
    rng = np.random.default_rng(11)
    window = ReturnCorrelation(bar_s=60, window=30, min_returns=20)
    common = rng.normal(0, 0.001, 31)
    spy = 600 * np.exp(np.cumsum(common))
    qqq = 500 * np.exp(np.cumsum(common + rng.normal(0, 0.0002, 31)))  # ρ ≈ 0.98
    aapl = 230 * np.exp(np.cumsum(rng.normal(0, 0.001, 31)))  # independent
    start = ts("10:00")
    for i in range(31):
        for name, series in (("SPY", spy), ("QQQ", qqq), ("AAPL", aapl)):
            window.observe(name, start + i * 60 * NS + 5 * NS, float(series[i]))
    g = gate(window)
    assert window.correlation("QQQ", "SPY") == pytest.approx(
        np.corrcoef(np.diff(np.log(qqq)), np.diff(np.log(spy)))[0, 1]
    )
    now = ts("10:31")
    denied = g.evaluate(signal(underlying="QQQ", sid="q", at=now), held(Direction.BULLISH, "SPY"), now)[0]
    assert denied.reason_code == Reason.CORRELATION_LIMIT
    assert g.evaluate(signal(underlying="AAPL", sid="a", at=now), held(Direction.BULLISH, "SPY"), now)[0].approved


def test_drawdown_exactly_at_the_limit_passes_and_past_it_reduces() -> None:
    g = gate(max_drawdown_pct=10.0)
    at_limit = Exposure(equity=99_000.0, equity_peak=110_000.0)  # 10.00 % below the peak
    assert g.evaluate(signal(sid="a"), at_limit, ts("10:00"))[0].approved
    assert g.state is TradingState.ACTIVE
    past = Exposure(equity=98_989.0, equity_peak=110_000.0)  # 10.01 %
    decision = g.evaluate(signal(sid="b"), past, ts("10:00"))[0]
    assert decision.reason_code == Reason.DRAWDOWN_LIMIT and decision.detail.startswith("drawdown 10.01% > 10.0%")
    assert g.state is TradingState.REDUCING and g.store.load_state()[0] is TradingState.REDUCING
    # REDUCING: entries denied, exits still go out
    assert g.evaluate(signal(sid="c"), past, ts("10:00"))[0].reason_code == Reason.STATE_REDUCING
    exit_signal = signal(side=Side.SELL, quantity=1, sid="d")
    exposure = Exposure(position_qty={exit_signal.contract.key: 1}, equity=98_989.0, equity_peak=110_000.0)
    assert g.evaluate(exit_signal, exposure, ts("10:00"))[0].approved


def test_drawdown_state_is_configurable_and_never_loosens_a_halt() -> None:
    g = gate(drawdown_state="HALTED")
    assert g.drawdown_check(Exposure(equity=89_000.0, equity_peak=100_000.0), ts("10:00")) == "DRAWDOWN"
    assert g.state is TradingState.HALTED
    reducing = gate()
    reducing.set_state(TradingState.HALTED, "daily loss", ts("10:00"))
    assert reducing.drawdown_check(Exposure(equity=50_000.0, equity_peak=100_000.0), ts("10:00")) is None
    assert reducing.state is TradingState.HALTED and reducing.state_reason == "daily loss"
    assert gate().drawdown_check(Exposure(), ts("10:00")) is None  # no equity figures: nothing to judge


def test_daily_loss_uses_today_pnl_not_the_cumulative_ledger() -> None:
    g = gate(account_equity=100_000, daily_loss_halt_pct=6)
    # 10,000 lost on earlier days; today only 5,999.99: no halt
    old_losses = Exposure(realized_pnl=-10_000, day_pnl=-5_999.99)
    assert g.evaluate(signal(sid="a"), old_losses, ts("10:00"))[0].approved
    at_limit = Exposure(realized_pnl=-10_000, day_pnl=-6_000)
    assert g.evaluate(signal(sid="b"), at_limit, ts("10:00"))[0].reason_code == Reason.DAILY_LOSS_HALT
    assert g.state is TradingState.HALTED


def test_halted_allows_cancels() -> None:
    g = gate()
    g.set_state(TradingState.HALTED, "daily loss", ts("10:00"))
    request = CancelRequest(ts_event=ts("10:01"), ts_init=ts("10:01"), order_ref="Qabc", reason="halt clean-up")
    decision = g.evaluate_cancel(request, ts("10:01"))
    assert decision.approved and decision.reason_code == Reason.CANCEL_ALLOWED and decision.order_ref == "Qabc"
    assert "HALTED" in decision.detail
    assert g.evaluate(signal(), Exposure(), ts("10:01"))[0].reason_code == Reason.STATE_HALTED


def redis_gate(client: redis.Redis, **overrides: object) -> RiskGate:
    return RiskGate(RiskSection(**overrides), RedisRiskStore(client), calendar=CALENDAR)  # type: ignore[arg-type]


def test_state_and_rate_window_survive_a_restart_on_redis(redis_client: redis.Redis) -> None:
    first = redis_gate(redis_client, max_orders_per_minute=2)
    at = ts("10:00")
    assert first.evaluate(signal(sid="a"), Exposure(), at)[0].approved
    assert first.evaluate(signal(sid="b"), Exposure(), at + NS)[0].approved
    first.drawdown_check(Exposure(equity=80_000.0, equity_peak=100_000.0), at + NS)
    assert first.state is TradingState.REDUCING
    # a new gate on the same Redis: the state, its reason and the last minute's approvals are back
    second = redis_gate(redis_client, max_orders_per_minute=2)
    assert second.state is TradingState.REDUCING and second.state_reason.startswith("drawdown 20.00%")
    assert second.evaluate(signal(sid="c"), Exposure(), at + 2 * NS)[0].reason_code == Reason.STATE_REDUCING
    second.set_state(TradingState.ACTIVE, "admin resume", at + 2 * NS)
    second.restore_rate_window(at + 2 * NS)
    assert second.evaluate(signal(sid="d"), Exposure(), at + 2 * NS)[0].reason_code == Reason.ORDER_RATE
    third = redis_gate(redis_client)
    assert third.state is TradingState.ACTIVE and third.state_reason == "admin resume"


def test_decisions_land_in_the_audit_stream(redis_client: redis.Redis) -> None:
    store = RedisRiskStore(redis_client)
    g = RiskGate(RiskSection(), store, calendar=CALENDAR)
    for sid, bid in (("ok", 2.00), ("wide", 1.00)):
        store.audit(g.evaluate(signal(sid=sid, bid=bid), Exposure(), ts("10:00"))[0])
    audited = [decode(f["decision"], Decision) for _, f in redis_client.xrange(keys.RISK_DECISIONS)]
    assert [(d.signal_id, d.reason_code) for d in audited] == [("ok", Reason.APPROVED), ("wide", "SPREAD_TOO_WIDE")]
