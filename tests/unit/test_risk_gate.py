"""Risk gate: each rule passes at its limit, denies one step past it, with its reason code."""

from __future__ import annotations

from datetime import datetime

import pytest

from quanticity.calendar import ET
from quanticity.config.models import RiskSection
from quanticity.messages import Direction, OptionContract, Right, Side, Signal, TradingState
from quanticity.risk.gate import Exposure, MemoryRiskStore, Reason, RiskGate, order_ref_for

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
) -> Signal:
    at = at if at is not None else ts("10:00")
    right = Right.CALL if direction is Direction.BULLISH else Right.PUT
    return Signal(
        ts_event=at,
        ts_init=at,
        signal_id=sid,
        strategy="test",
        symbol="SPY",
        direction=direction,
        contract=OptionContract("SPY", expiry, 600.0, right),
        confidence=80,
        reference_bid=bid,
        reference_ask=ask,
        reason="test",
        inputs={"computed_at": float(at)},
        origin_ts_init=at,
        side=side,
        quantity=quantity,
    )


def gate(**overrides: object) -> RiskGate:
    return RiskGate(RiskSection(**overrides), MemoryRiskStore(), limit_offset=0.25)  # type: ignore[arg-type]


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
