"""The five SPEC §7 strategies: each trigger fires on its scenario and stays silent one step short."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import date, timedelta

import msgspec
import pytest

from quanticity.calendar import NyseCalendar
from quanticity.messages import (
    AltDataEvent,
    AltDataKind,
    Direction,
    FeatureSnapshot,
    OptionContract,
    OptionQuote,
    Right,
    Side,
    Signal,
    decode,
    encode,
)
from quanticity.strategies.base import (
    NS,
    DailySeries,
    DteBand,
    DteUnit,
    SessionClock,
    StrikeRule,
    confidence_score,
    excess,
    ns_at,
    select_contract,
)
from quanticity.strategies.fourteen_day_directional import (
    FourteenDayDirectionalConfig,
    FourteenDayDirectionalStrategy,
)
from quanticity.strategies.fourteen_day_high_iv import FourteenDayHighIvConfig, FourteenDayHighIvStrategy
from quanticity.strategies.moc_imbalance import MocImbalanceConfig, MocImbalanceStrategy
from quanticity.strategies.one_dte_overnight import OneDteOvernightConfig, OneDteOvernightStrategy
from quanticity.strategies.zero_dte_gamma import ZeroDteGammaConfig, ZeroDteGammaStrategy

pytestmark = pytest.mark.unit

WED = date(2026, 3, 4)  # an ordinary Wednesday session
THU = date(2026, 3, 5)
FRI_BEFORE_MLK = date(2026, 1, 16)  # Monday 2026-01-19 is a holiday: the next session is Tuesday
HALF_DAY = date(2026, 11, 27)  # day after Thanksgiving: close 13:00, 0DTE cut-off 12:30

STANDARD_INPUTS = {"mid", "computed_at", "risk_pct", "confidence", "strike", "dte", "option_spread_pct"}


@pytest.fixture(scope="module")
def calendar() -> NyseCalendar:
    return NyseCalendar()


# --- builders --------------------------------------------------------------------------------
def call_delta(strike: float, spot: float) -> float:
    """A smooth stand-in for a BSM delta: 0.5 at the money, −0.036 per 1 % OTM (clipped)."""
    return min(0.98, max(0.02, 0.5 - (strike - spot) / spot * 5))


def make_quote(
    symbol: str,
    expiry: date,
    strike: float,
    right: Right,
    spot: float,
    now: int,
    *,
    mid: float = 2.0,
    spread_pct: float = 4.0,
    oi: int = 2_000,
) -> OptionQuote:
    half = mid * spread_pct / 200
    delta = call_delta(strike, spot)
    return OptionQuote(
        ts_event=now,
        ts_init=now,
        contract=OptionContract(symbol, expiry.isoformat(), float(strike), right),
        bid=round(mid - half, 4),
        ask=round(mid + half, 4),
        iv=0.2,
        delta=delta if right is Right.CALL else delta - 1,
        gamma=0.05,
        vega=0.1,
        theta=-0.05,
        underlying_price=spot,
        open_interest=oi,
        volume=100,
    )


def make_chain(
    symbol: str, spot: float, now: int, expiries: Iterable[date], strikes: Iterable[float]
) -> list[OptionQuote]:
    listed = list(strikes)
    return [make_quote(symbol, e, k, r, spot, now) for e in expiries for k in listed for r in Right]


def make_snap(
    symbol: str, mid: float, now: int, metrics: dict[str, float | None] | None = None, *, imbalance_l5: float = 0.0
) -> FeatureSnapshot:
    return FeatureSnapshot(
        ts_event=now,
        ts_init=now,
        symbol=symbol,
        mid=mid,
        spread_bps=1.5,
        imbalance_l1=imbalance_l5 / 2,
        imbalance_l5=imbalance_l5,
        realized_vol=0.15,
        last_price=mid,
        momentum_bps=0.0,
        computed_at=now,
        valid_until=now + 30 * NS,
        origin_ts_init=now,
        metrics=dict(metrics or {}),
    )


def alt(kind: AltDataKind, symbol: str, direction: int, amount: float, when: date, **detail: str) -> AltDataEvent:
    ts = ns_at(when, 9, 0)
    return AltDataEvent(
        ts_event=ts,
        ts_init=ts,
        kind=kind,
        symbol=symbol,
        direction=direction,
        amount=amount,
        when=when.isoformat(),
        detail=dict(detail),
    )


def reason_parts(signal: Signal) -> list[str]:
    return signal.reason.split("; ")


def assert_common(signal: Signal, strategy: str, symbol: str, direction: Direction, risk_pct: float) -> None:
    """What every strategy's signal must satisfy, whatever its rule."""
    assert signal.strategy == strategy and signal.symbol == symbol
    assert signal.direction is direction and signal.side is Side.BUY and signal.quantity == 0
    assert signal.contract.right is (Right.CALL if direction is Direction.BULLISH else Right.PUT)
    assert set(signal.inputs) >= STANDARD_INPUTS
    assert signal.inputs["risk_pct"] == risk_pct
    assert signal.inputs["confidence"] == signal.confidence
    assert all(math.isfinite(v) for v in signal.inputs.values())
    assert decode(encode(signal), Signal) == signal  # survives the stream (no NaN in inputs)


# --- shared helpers ----------------------------------------------------------------------------
def test_confidence_and_excess_are_clipped() -> None:
    assert excess(0.5, 0.25, 1.0) == pytest.approx(1 / 3)
    assert excess(0.0, 0.1, 0.0) == 1.0 and excess(0.2, 0.1, 0.0) == 0.0  # "smaller is better"
    assert excess(math.nan, 0.1, 0.0) == 0.0
    assert confidence_score(50, [(30, 2.0), (30, 1.0)]) == 100
    assert confidence_score(50, [(20, -1.0), (10, math.nan)]) == 50


def test_select_contract_rules_and_liquidity(calendar: NyseCalendar) -> None:
    now = ns_at(WED, 11, 0)
    spot = 100.4
    expiries = [WED, WED + timedelta(days=16), WED + timedelta(days=23)]
    chain = make_chain("XYZ", spot, now, expiries, [97, 98, 99, 100, 101, 102, 103])
    sessions = SessionClock(calendar)
    kw = {"spot": spot, "today": WED, "sessions": sessions, "max_spread_pct": 10.0, "min_open_interest": 100}
    band = DteBand(min_dte=14, max_dte=21, unit=DteUnit.CALENDAR)
    first_otm = select_contract(chain, right=Right.CALL, band=band, rule=StrikeRule.FIRST_OTM, **kw)
    assert first_otm.quote is not None and first_otm.quote.contract.key == "XYZ 2026-03-20 101.00 C"
    assert first_otm.dte == 16 and first_otm.strike_step == 1.0
    atm_put = select_contract(chain, right=Right.PUT, band=band, rule=StrikeRule.ATM, **kw)
    assert atm_put.quote is not None and atm_put.quote.contract.strike == 100.0
    otm_put = select_contract(chain, right=Right.PUT, band=band, rule=StrikeRule.FIRST_OTM, **kw)
    assert otm_put.quote is not None and otm_put.quote.contract.strike == 100.0
    by_delta = select_contract(chain, right=Right.CALL, band=band, rule=StrikeRule.DELTA, target_delta=0.40, **kw)
    assert by_delta.quote is not None and by_delta.quote.contract.strike == 102.0  # delta 0.4203
    zero = select_contract(chain, right=Right.CALL, band=DteBand(min_dte=0, max_dte=0), rule=StrikeRule.ATM, **kw)
    assert zero.quote is not None and zero.quote.contract.expiry == "2026-03-04"
    # the chosen strike is illiquid: rejected, never silently replaced by a further OTM one
    wide = [q for q in chain if q.contract.key != "XYZ 2026-03-20 101.00 C"]
    wide.append(make_quote("XYZ", expiries[1], 101, Right.CALL, spot, now, spread_pct=12.0))
    rejected = select_contract(wide, right=Right.CALL, band=band, rule=StrikeRule.FIRST_OTM, **kw)
    assert rejected.quote is None and "spread 12.0% > 10%" in rejected.reason
    thin = [q for q in chain if q.contract.key != "XYZ 2026-03-20 101.00 C"]
    thin.append(make_quote("XYZ", expiries[1], 101, Right.CALL, spot, now, oi=99))
    rejected = select_contract(thin, right=Right.CALL, band=band, rule=StrikeRule.FIRST_OTM, **kw)
    assert rejected.quote is None and "OI 99 < 100" in rejected.reason
    far = DteBand(min_dte=30, max_dte=45, unit=DteUnit.CALENDAR)
    none = select_contract(chain, right=Right.CALL, band=far, rule=StrikeRule.ATM, **kw)
    assert none.quote is None and "no CALL expiry" in none.reason


def test_daily_series_keeps_one_close_per_day() -> None:
    series = DailySeries(window_days=3)
    for i, value in enumerate([1.0, 2.0, 3.0, 4.0]):
        series.update("X", WED + timedelta(days=i), value)
        series.update("X", WED + timedelta(days=i), value * 10)  # the last reading of a day wins
    today = WED + timedelta(days=4)
    assert series.prior("X", today) == [20.0, 30.0, 40.0]
    z, mean, sd, n = series.zscore("X", today, 50.0, min_days=3)
    assert (mean, sd, n) == (30.0, 10.0, 3) and z == pytest.approx(2.0)
    restored = DailySeries(window_days=3)
    restored.restore(msgspec.json.decode(msgspec.json.encode(series.state())))
    assert restored.prior("X", today) == series.prior("X", today)


# --- 0DTE gamma scalp --------------------------------------------------------------------------
def gamma_setup(
    day: date = WED, hh: int = 11, mm: int = 0, *, spot: float = 590.30, imbalance: float = 0.42, grade: float = 3.0
) -> tuple[FeatureSnapshot, list[OptionQuote], int]:
    now = ns_at(day, hh, mm)
    chain = make_chain("SPY", spot, now, [day, day + timedelta(days=1)], range(584, 597))
    metrics = {"max_abs_gex_strike": 590.0, "liquidity_grade": grade, "gex": 2.5e9, "zero_gamma": 583.0, "vpin": None}
    return make_snap("SPY", spot, now, metrics, imbalance_l5=imbalance), chain, now


def test_zero_dte_gamma_fires_at_the_max_gamma_strike(calendar: NyseCalendar) -> None:
    strategy = ZeroDteGammaStrategy(calendar=calendar)
    snap, chain, now = gamma_setup()
    (signal,) = strategy.on_features(snap, now, chain)
    assert_common(signal, "zero_dte_gamma", "SPY", Direction.BULLISH, 2.0)
    assert signal.contract == OptionContract("SPY", "2026-03-04", 591.0, Right.CALL)  # first OTM, 0DTE
    assert signal.reference_bid == pytest.approx(1.96) and signal.reference_ask == pytest.approx(2.04)
    assert 70 <= signal.confidence <= 80  # 50 + 9.8 (closeness) + 4.5 (imbalance) + 10 (grade A)
    assert {"max_abs_gex_strike", "distance_pct", "liquidity_grade", "imbalance_l5", "minutes_to_cutoff"} <= set(
        signal.inputs
    )
    assert "vpin" not in signal.inputs  # unknown (None) inputs are left out, never sent as NaN
    assert signal.inputs["distance_pct"] == pytest.approx(0.30 / 590 * 100)
    parts = reason_parts(signal)
    assert parts[0].startswith("spot 590.30 within 0.051% of max-gamma strike 590 (≤ 0.1%")
    assert parts[1] == "liquidity A ≥ B"
    assert parts[2].startswith("L5 imbalance +0.42 supports CALL")
    assert parts[3] == "270 min before the 0DTE cut-off 15:30 ET"
    assert parts[4].startswith("first otm SPY 2026-03-04 591.00 C (0DTE, dte 0)")


def test_zero_dte_gamma_bearish_buys_the_first_otm_put(calendar: NyseCalendar) -> None:
    strategy = ZeroDteGammaStrategy(calendar=calendar)
    snap, chain, now = gamma_setup(spot=589.70, imbalance=-0.6, grade=2.0)
    (signal,) = strategy.on_features(snap, now, chain)
    assert_common(signal, "zero_dte_gamma", "SPY", Direction.BEARISH, 2.0)
    assert signal.contract == OptionContract("SPY", "2026-03-04", 589.0, Right.PUT)
    assert 60 <= signal.confidence <= 70  # no grade-A bonus
    assert "liquidity B ≥ B" in signal.reason and "supports PUT" in signal.reason


@pytest.mark.parametrize(
    ("kw", "why"),
    [
        ({"spot": 590.65}, "0.110% from max-gamma 590 > 0.1%"),  # 0.11 % away
        ({"grade": 1.0}, "liquidity grade C below minimum"),
        ({"imbalance": 0.24}, "weaker than ±0.25"),
        ({"hh": 15, "mm": 30}, "outside the 0DTE entry window"),  # at the cut-off: too late
        ({"hh": 9, "mm": 29}, "outside the 0DTE entry window"),  # before the open
    ],
)
def test_zero_dte_gamma_near_misses(calendar: NyseCalendar, kw: dict[str, float], why: str) -> None:
    strategy = ZeroDteGammaStrategy(calendar=calendar)
    snap, chain, now = gamma_setup(**kw)  # type: ignore[arg-type]
    assert strategy.on_features(snap, now, chain) == []
    assert why in strategy.last_reason["SPY"]


def test_zero_dte_gamma_half_day_cutoff_and_staleness(calendar: NyseCalendar) -> None:
    strategy = ZeroDteGammaStrategy(calendar=calendar)
    snap, chain, now = gamma_setup(HALF_DAY, 12, 29)
    assert len(strategy.on_features(snap, now, chain)) == 1
    snap, chain, now = gamma_setup(HALF_DAY, 12, 31)  # cut-off 12:30 on a 13:00 close
    assert strategy.on_features(snap, now, chain) == []
    assert "12:30 ET" in strategy.last_reason["SPY"]
    snap, chain, now = gamma_setup()
    assert strategy.on_features(snap, now + 31 * NS, chain) == []  # the snapshot expired
    assert strategy.last_reason["SPY"] == "stale snapshot"
    off = ZeroDteGammaStrategy(ZeroDteGammaConfig(enabled=False), calendar=calendar)
    assert off.on_features(snap, now, chain) == [] and off.last_reason["SPY"] == "disabled"


def test_strategy_configs_forbid_unknown_keys() -> None:
    with pytest.raises(ValueError, match="max_distance_pc"):
        ZeroDteGammaConfig(max_distance_pc=0.2)  # type: ignore[call-arg]
    cfg = ZeroDteGammaConfig()
    with pytest.raises(ValueError):
        cfg.max_distance_pct = 0.5  # type: ignore[misc]


# --- 1DTE overnight -----------------------------------------------------------------------------
SKEW_HISTORY = [-0.040 if i % 2 else -0.030 for i in range(20)]  # mean −0.035, σ 0.00513


def overnight_with_history(calendar: NyseCalendar, day: date) -> OneDteOvernightStrategy:
    """A strategy that has watched the previous 20 sessions' rr25 (one midday snapshot each)."""
    strategy = OneDteOvernightStrategy(OneDteOvernightConfig(), calendar=calendar)
    sessions = calendar.sessions_between(day - timedelta(days=40), day - timedelta(days=1))[-20:]
    for past, rr25 in zip(sessions, SKEW_HISTORY, strict=True):
        now = ns_at(past, 12, 0)
        assert strategy.on_features(make_snap("SPY", 590.0, now, {"rr25": rr25}), now) == []
    return strategy


Scenario = tuple[FeatureSnapshot, list[OptionQuote], int]


def overnight_snap(day: date, hh: int = 15, mm: int = 30, ss: int = 5, **metrics: float) -> Scenario:
    now = ns_at(day, hh, mm, ss)
    base = {"rr25": -0.025, "net_premium": 250_000.0, "flow_momentum": 10_000.0, "iv_rank": 35.0, "regime": 0.0}
    base.update(metrics)
    spot = 590.4
    expiries = calendar_days_after(day, 6)
    return make_snap("SPY", spot, now, base), make_chain("SPY", spot, now, expiries, range(586, 595)), now


def calendar_days_after(day: date, n: int) -> list[date]:
    return [day + timedelta(days=i) for i in range(n)]


@pytest.mark.parametrize(("day", "expiry"), [(THU, "2026-03-06"), (FRI_BEFORE_MLK, "2026-01-20")])
def test_one_dte_overnight_fires_at_the_1530_check(calendar: NyseCalendar, day: date, expiry: str) -> None:
    strategy = overnight_with_history(calendar, day)
    snap, chain, now = overnight_snap(day)
    (signal,) = strategy.on_features(snap, now, chain)
    assert_common(signal, "one_dte_overnight", "SPY", Direction.BULLISH, 2.0)
    assert signal.contract == OptionContract("SPY", expiry, 591.0, Right.CALL)  # next session's expiry
    assert signal.inputs["dte"] == 1.0
    assert 72 <= signal.confidence <= 82  # 50 + 11.9 (z 1.95) + 15 (momentum agrees)
    assert signal.inputs["rr25_z"] == pytest.approx(0.010 / 0.005129891760425771)
    assert {"rr25", "rr25_mean", "rr25_std", "rr25_z", "net_premium", "flow_momentum", "congress_opposing"} <= set(
        signal.inputs
    )
    parts = reason_parts(signal)
    assert parts[0] == "15:30 ET check"
    assert parts[1].startswith("rr25 -0.0250 is +1.95σ from its 20-day mean -0.0350")
    assert parts[2] == "net premium +250,000 and flow momentum +10,000 agree with CALL"
    assert parts[3] == "no opposing congress trades (30d)"
    # one check per session: a second snapshot in the window does nothing
    snap2, chain2, now2 = overnight_snap(day, ss=50)
    assert strategy.on_features(snap2, now2, chain2) == []
    assert strategy.last_reason["SPY"] == "already checked this session"


def test_one_dte_overnight_bearish_with_supporting_congress(calendar: NyseCalendar) -> None:
    strategy = overnight_with_history(calendar, THU)
    strategy.on_alt_data(alt(AltDataKind.CONGRESS, "SPY", -1, 50_000, THU - timedelta(days=10)))
    snap, chain, now = overnight_snap(THU, rr25=-0.050, net_premium=-400_000.0, flow_momentum=0.0)
    (signal,) = strategy.on_features(snap, now, chain)
    assert_common(signal, "one_dte_overnight", "SPY", Direction.BEARISH, 2.0)
    assert signal.contract == OptionContract("SPY", "2026-03-06", 590.0, Right.PUT)
    assert 80 <= signal.confidence <= 88  # 50 + 24 (z −2.9) + 0 (momentum flat) + 10 (congress agrees)
    assert "1 congress trade(s) agree, none oppose (30d)" in signal.reason


@pytest.mark.parametrize(
    ("metrics", "why"),
    [
        ({"rr25": -0.0304}, "within ±1σ"),  # z = +0.90: one step short of 1σ
        ({"net_premium": -1.0}, "does not agree with BULLISH"),
        ({"flow_momentum": -5_000.0}, "opposes BULLISH"),
    ],
)
def test_one_dte_overnight_near_misses(calendar: NyseCalendar, metrics: dict[str, float], why: str) -> None:
    strategy = overnight_with_history(calendar, THU)
    snap, chain, now = overnight_snap(THU, **metrics)
    assert strategy.on_features(snap, now, chain) == []
    assert why in strategy.last_reason["SPY"]


def test_one_dte_overnight_opposing_congress_blocks(calendar: NyseCalendar) -> None:
    strategy = overnight_with_history(calendar, THU)
    strategy.on_alt_data(alt(AltDataKind.CONGRESS, "SPY", -1, 15_000, THU - timedelta(days=29)))
    snap, chain, now = overnight_snap(THU)
    assert strategy.on_features(snap, now, chain) == []
    assert "1 opposing congress trade(s)" in strategy.last_reason["SPY"]
    older = overnight_with_history(calendar, THU)
    older.on_alt_data(alt(AltDataKind.CONGRESS, "SPY", -1, 15_000, THU - timedelta(days=31)))  # out of the window
    assert len(older.on_features(snap, now, chain)) == 1


@pytest.mark.parametrize(("hh", "mm", "ss"), [(15, 29, 59), (15, 35, 0), (12, 0, 0)])
def test_one_dte_overnight_only_at_the_check(calendar: NyseCalendar, hh: int, mm: int, ss: int) -> None:
    strategy = overnight_with_history(calendar, THU)
    snap, chain, now = overnight_snap(THU, hh, mm, ss)
    assert strategy.on_features(snap, now, chain) == []
    assert strategy.last_reason["SPY"] == "not the 15:30 ET check"


def test_one_dte_overnight_retries_when_the_chain_lacks_the_contract(calendar: NyseCalendar) -> None:
    strategy = overnight_with_history(calendar, THU)
    snap, chain, now = overnight_snap(THU)
    today_only = [q for q in chain if q.contract.expiry == THU.isoformat()]
    assert strategy.on_features(snap, now, today_only) == []
    assert strategy.last_reason["SPY"].startswith("no CALL expiry in 1DTE")
    later, chain, now = overnight_snap(THU, ss=20)
    assert len(strategy.on_features(later, now, chain)) == 1


def test_one_dte_overnight_needs_history_and_survives_restore(calendar: NyseCalendar) -> None:
    fresh = OneDteOvernightStrategy(calendar=calendar)
    snap, chain, now = overnight_snap(THU)
    assert fresh.on_features(snap, now, chain) == []
    assert "incomplete data" in fresh.last_reason["SPY"]
    trained = overnight_with_history(calendar, THU)
    restored = OneDteOvernightStrategy(calendar=calendar)
    restored.restore(msgspec.json.decode(msgspec.json.encode(trained.state())))
    (signal,) = restored.on_features(snap, now, chain)
    assert signal.contract.expiry == "2026-03-06"


# --- MOC imbalance -------------------------------------------------------------------------------
MOC_METRICS = {
    "moc_direction": -1.0,
    "moc_confidence": 82.0,
    "moc_flow_asymmetry": 0.68,
    "moc_dark_lit_divergence": 0.18,
    "liquidity_grade": 3.0,
}


def moc_snap(day: date, hh: int, mm: int, ss: int = 0, **metrics: float | None) -> Scenario:
    now = ns_at(day, hh, mm, ss)
    spot = 590.4
    values = {**MOC_METRICS, **metrics}
    return (
        make_snap("SPY", spot, now, values, imbalance_l5=-0.2),
        make_chain("SPY", spot, now, [day], range(586, 595)),
        now,
    )


def moc_detected(calendar: NyseCalendar, day: date = WED, hh: int = 14, mm: int = 45) -> MocImbalanceStrategy:
    strategy = MocImbalanceStrategy(calendar=calendar)
    snap, chain, now = moc_snap(day, hh, mm)
    assert strategy.on_features(snap, now, chain) == []  # detection phase: never an entry
    assert strategy.last_reason["SPY"].startswith("detection phase")
    return strategy


def test_moc_enters_at_1530_after_detection(calendar: NyseCalendar) -> None:
    strategy = moc_detected(calendar)
    snap, chain, now = moc_snap(WED, 15, 30, 10)
    (signal,) = strategy.on_features(snap, now, chain)
    assert_common(signal, "moc_imbalance", "SPY", Direction.BEARISH, 1.0)
    assert signal.contract == OptionContract("SPY", "2026-03-04", 590.0, Right.PUT)  # 0DTE first OTM put
    assert 68 <= signal.confidence <= 72  # 50 + 8 + 6 + 6
    assert {"moc_direction", "moc_confidence", "moc_flow_asymmetry", "moc_dark_lit_divergence"} <= set(signal.inputs)
    parts = reason_parts(signal)
    assert parts[:6] == [
        "MOC entry at 15:30:10 ET (cut-off 15:30)",
        "predicted sell imbalance → PUT",
        "flow asymmetry 68.0% > 60%",
        "dark/lit divergence +18.0% > 10%",
        "predictor confidence 82.0 > 70",
        "1 detection-phase reading(s) agree since 14:00 ET",
    ]
    snap2, chain2, now2 = moc_snap(WED, 15, 31)
    assert strategy.on_features(snap2, now2, chain2) == []  # once per symbol and session
    assert strategy.last_reason["SPY"] == "already entered this session"


def test_moc_reads_asymmetry_and_divergence_from_the_moc_mapping(calendar: NyseCalendar) -> None:
    strategy = moc_detected(calendar)
    snap, chain, now = moc_snap(WED, 15, 30, 10, moc_flow_asymmetry=None, moc_dark_lit_divergence=None)
    assert strategy.on_features(snap, now, chain) == []  # unknown fails closed
    (signal,) = strategy.on_features(snap, now, chain, moc={"flow_asymmetry": 0.8, "dark_lit_divergence": 0.3})
    assert signal.inputs["moc_flow_asymmetry"] == 0.8 and signal.inputs["moc_dark_lit_divergence"] == 0.3
    assert 85 <= signal.confidence <= 90  # 50 + 8 + 15 + 15: both at full strength


@pytest.mark.parametrize(
    ("metrics", "why"),
    [
        ({"moc_flow_asymmetry": 0.60}, "flow asymmetry 0.600 ≤ 0.6"),  # strictly greater is required
        ({"moc_dark_lit_divergence": 0.10}, "dark/lit divergence 0.100 ≤ 0.1"),
        ({"moc_confidence": 70.0}, "predictor confidence 70.0 ≤ 70"),
        ({"moc_direction": 1.0}, "direction not seen in the detection phase"),  # flipped at the entry
    ],
)
def test_moc_near_misses(calendar: NyseCalendar, metrics: dict[str, float], why: str) -> None:
    strategy = moc_detected(calendar)
    snap, chain, now = moc_snap(WED, 15, 30, 10, **metrics)
    assert strategy.on_features(snap, now, chain) == []
    assert strategy.last_reason["SPY"] == why


def test_moc_time_windows(calendar: NyseCalendar) -> None:
    strategy = moc_detected(calendar)
    snap, chain, now = moc_snap(WED, 15, 29, 59)
    assert strategy.on_features(snap, now, chain) == []  # still detecting: no entry before 15:30
    snap, chain, now = moc_snap(WED, 15, 32, 0)
    assert strategy.on_features(snap, now, chain) == []  # the entry window is 15:30–15:32
    assert strategy.last_reason["SPY"] == "outside the MOC detection and entry windows"
    undetected = MocImbalanceStrategy(calendar=calendar)
    early, chain, now = moc_snap(WED, 13, 59)  # before 14:00: not a detection reading
    assert undetected.on_features(early, now, chain) == []
    snap, chain, now = moc_snap(WED, 15, 30, 10)
    assert undetected.on_features(snap, now, chain) == []
    assert undetected.last_reason["SPY"] == "direction not seen in the detection phase"
    half = moc_detected(calendar, HALF_DAY, 11, 30)  # 13:00 close: detect 11:00–12:30, enter 12:30
    snap, chain, now = moc_snap(HALF_DAY, 12, 30, 5)
    (signal,) = half.on_features(snap, now, chain)
    assert "cut-off 12:30" in signal.reason and "since 11:00 ET" in signal.reason
    assert MocImbalanceConfig().symbols == ("SPY", "QQQ", "IWM")


# --- 14-day+ directional ------------------------------------------------------------------------
AAPL_SPOT = 230.4
AAPL_EXPIRIES = [WED + timedelta(days=d) for d in (2, 9, 16, 23, 30)]  # Fridays; 16 days → 2026-03-20


def aapl_snap(now: int, **metrics: float) -> tuple[FeatureSnapshot, list[OptionQuote]]:
    values = {"iv_rank": 35.0, "flow_momentum": 50_000.0, "rr25": -0.02, **metrics}
    strikes = [220 + 2.5 * i for i in range(9)]
    return make_snap("AAPL", AAPL_SPOT, now, values), make_chain("AAPL", AAPL_SPOT, now, AAPL_EXPIRIES, strikes)


def bullish_alt_data(strategy: FourteenDayDirectionalStrategy, congress: Sequence[float] = (300_000, 350_000)) -> None:
    for i, amount in enumerate(congress):
        strategy.on_alt_data(alt(AltDataKind.CONGRESS, "AAPL", 1, amount, WED - timedelta(days=5 + i), member=f"m{i}"))
    for i, amount in enumerate((2e6, 1.5e6, 1e6)):
        strategy.on_alt_data(alt(AltDataKind.DARK_POOL, "AAPL", 1, amount, WED - timedelta(days=i), print=str(i)))
    strategy.on_alt_data(alt(AltDataKind.DARK_POOL, "AAPL", -1, 5e5, WED - timedelta(days=1), print="x"))


def test_fourteen_day_directional_calls(calendar: NyseCalendar) -> None:
    strategy = FourteenDayDirectionalStrategy(calendar=calendar)
    bullish_alt_data(strategy)
    strategy.on_alt_data(alt(AltDataKind.EARNINGS, "AAPL", 0, 0, WED + timedelta(days=40)))
    now = ns_at(WED, 10, 30)
    snap, chain = aapl_snap(now)
    (signal,) = strategy.on_features(snap, now, chain)
    assert_common(signal, "fourteen_day_directional", "AAPL", Direction.BULLISH, 3.0)
    assert signal.contract == OptionContract("AAPL", "2026-03-20", 232.5, Right.CALL)  # 16 DTE, first OTM
    assert 60 <= signal.confidence < 75  # below high conviction → first OTM, not ATM
    assert {"congress_buying", "dark_pool_net", "dark_pool_prints", "flow_momentum", "iv_rank"} <= set(signal.inputs)
    assert "dark_pool_z" not in signal.inputs  # the print-count fallback has no σ
    assert signal.inputs["congress_buying"] == 650_000 and signal.inputs["dark_pool_net"] == 4_000_000
    parts = reason_parts(signal)
    assert parts[0] == "congress buying $650,000 in 30d (2 trade(s)) > $500,000"
    assert parts[1].startswith("dark-pool accumulation $+4,000,000 over 5d with 3 prints ≥ 3")
    assert parts[2] == "flow momentum +50,000 > 0"
    assert parts[3] == "IV rank 35 ≤ 80"
    assert parts[4] == "earnings 2026-04-13 more than 7d away"
    assert parts[5].startswith("confidence") and "first OTM" in parts[5]


def test_fourteen_day_directional_high_conviction_buys_atm(calendar: NyseCalendar) -> None:
    strategy = FourteenDayDirectionalStrategy(calendar=calendar)
    for i in range(6, 66):  # 60 days of two-way dark-pool history: a real baseline for σ
        strategy.on_alt_data(
            alt(AltDataKind.DARK_POOL, "AAPL", 1 if i % 3 else -1, 1e5 * (1 + i % 4), WED - timedelta(days=i))
        )
    strategy.on_alt_data(alt(AltDataKind.CONGRESS, "AAPL", 1, 2_500_000, WED - timedelta(days=3)))
    for i in range(3):
        strategy.on_alt_data(alt(AltDataKind.DARK_POOL, "AAPL", 1, 5e6, WED - timedelta(days=i), print=f"big{i}"))
    now = ns_at(WED, 10, 30)
    snap, chain = aapl_snap(now, iv_rank=15.0)
    (signal,) = strategy.on_features(snap, now, chain)
    assert signal.confidence >= 95
    assert signal.contract == OptionContract("AAPL", "2026-03-20", 230.0, Right.CALL)  # ATM
    assert signal.inputs["dark_pool_z"] > 4 and signal.inputs["high_conviction"] == 1.0
    assert "σ (beyond 2σ)" in signal.reason and "ATM" in signal.reason


def test_fourteen_day_directional_puts(calendar: NyseCalendar) -> None:
    strategy = FourteenDayDirectionalStrategy(calendar=calendar)
    for past in calendar.sessions_between(WED - timedelta(days=10), WED - timedelta(days=1))[-5:]:
        now = ns_at(past, 12, 0)
        snap, _ = aapl_snap(now, iv_rank=95.0, rr25=-0.02)  # IV too rich: records rr25 only
        assert strategy.on_features(snap, now) == []
    for i, insider in enumerate(("ceo", "cfo", "coo")):
        event = alt(AltDataKind.INSIDER, "AAPL", -1, 2e6, WED - timedelta(days=3 * i), insider=insider)
        strategy.on_alt_data(event)
        strategy.on_alt_data(event)  # a re-delivered filing counts once
    for i in range(3):
        strategy.on_alt_data(alt(AltDataKind.DARK_POOL, "AAPL", -1, 1e6, WED - timedelta(days=i), print=str(i)))
    now = ns_at(WED, 14, 0)
    snap, chain = aapl_snap(now, rr25=-0.03, flow_momentum=-1.0)
    (signal,) = strategy.on_features(snap, now, chain)
    assert_common(signal, "fourteen_day_directional", "AAPL", Direction.BEARISH, 3.0)
    assert signal.contract == OptionContract("AAPL", "2026-03-20", 230.0, Right.PUT)  # first OTM put below 230.4
    assert 55 <= signal.confidence < 75
    assert signal.inputs["insider_sales"] == 3 and signal.inputs["rr25_change"] == pytest.approx(-0.01)
    parts = reason_parts(signal)
    assert parts[0] == "insider selling cluster: 3 sales in 30d ≥ 3"
    assert parts[1].startswith("dark-pool distribution $-3,000,000 over 5d with 3 prints")
    assert parts[2] == "put skew increasing: rr25 -0.0300 is -0.0100 vs its 5-day mean"


@pytest.mark.parametrize(
    ("congress", "metrics", "earnings_in", "why"),
    [
        ((250_000, 250_000), {}, None, "congress buying $500,000 ≤ $500,000"),  # exactly at, not above
        ((300_000, 350_000), {"iv_rank": 81.0}, None, "IV rank 81 > 80"),
        ((300_000, 350_000), {"iv_rank": None}, None, "IV rank unknown"),
        ((300_000, 350_000), {"flow_momentum": 0.0}, None, "flow momentum +0 not positive"),
        ((300_000, 350_000), {}, 7, "within 7d: no new 14-day entries"),
    ],
)
def test_fourteen_day_directional_near_misses(
    calendar: NyseCalendar, congress: tuple[float, ...], metrics: dict, earnings_in: int | None, why: str
) -> None:
    strategy = FourteenDayDirectionalStrategy(calendar=calendar)
    bullish_alt_data(strategy, congress)
    if earnings_in is not None:
        strategy.on_alt_data(alt(AltDataKind.EARNINGS, "AAPL", 0, 0, WED + timedelta(days=earnings_in)))
    now = ns_at(WED, 10, 30)
    snap, chain = aapl_snap(now, **metrics)
    assert strategy.on_features(snap, now, chain) == []
    assert why in strategy.last_reason["AAPL"]


def test_fourteen_day_directional_insider_cluster_short_by_one(calendar: NyseCalendar) -> None:
    strategy = FourteenDayDirectionalStrategy(FourteenDayDirectionalConfig(min_skew_days=1), calendar=calendar)
    strategy.restore({"rr25": {"AAPL": [[(WED - timedelta(days=1)).isoformat(), -0.02]]}})
    for i in range(2):
        strategy.on_alt_data(alt(AltDataKind.INSIDER, "AAPL", -1, 2e6, WED - timedelta(days=i), insider=str(i)))
    for i in range(3):
        strategy.on_alt_data(alt(AltDataKind.DARK_POOL, "AAPL", -1, 1e6, WED - timedelta(days=i), print=str(i)))
    now = ns_at(WED, 14, 0)
    snap, chain = aapl_snap(now, rr25=-0.03, flow_momentum=-1.0)
    assert strategy.on_features(snap, now, chain) == []
    assert "puts: 2 insider sale(s) < cluster of 3" in strategy.last_reason["AAPL"]


# --- 14-day+ high IV ----------------------------------------------------------------------------
NVDA_SPOT = 140.2


def high_iv_strategy(calendar: NyseCalendar, rr25_history: float = -0.03, earnings_in: int | None = 8):
    strategy = FourteenDayHighIvStrategy(calendar=calendar)
    for past in calendar.sessions_between(WED - timedelta(days=10), WED - timedelta(days=1))[-5:]:
        now = ns_at(past, 12, 0)
        assert strategy.on_features(make_snap("NVDA", NVDA_SPOT, now, {"rr25": rr25_history}), now) == []
    if earnings_in is not None:
        strategy.on_alt_data(alt(AltDataKind.EARNINGS, "NVDA", 0, 0, WED + timedelta(days=earnings_in)))
    return strategy


def nvda_snap(**metrics: float) -> tuple[FeatureSnapshot, list[OptionQuote], int]:
    now = ns_at(WED, 11, 0)
    values = {"iv_rank": 65.0, "rr25": -0.02, "put_wall": 135.0, "call_wall": 150.0, "zero_gamma": 137.0, **metrics}
    chain = make_chain("NVDA", NVDA_SPOT, now, [WED + timedelta(days=d) for d in (9, 16, 23)], range(134, 148))
    return make_snap("NVDA", NVDA_SPOT, now, values), chain, now


def test_fourteen_day_high_iv_calls_through_earnings(calendar: NyseCalendar) -> None:
    strategy = high_iv_strategy(calendar)
    strategy.on_alt_data(alt(AltDataKind.CONGRESS, "NVDA", 1, 100_000, WED - timedelta(days=12)))
    snap, chain, now = nvda_snap()
    (signal,) = strategy.on_features(snap, now, chain)
    assert_common(signal, "fourteen_day_high_iv", "NVDA", Direction.BULLISH, 2.0)
    # nearest 14–21 DTE expiry after the 2026-03-12 earnings; delta 0.40 → 143 (0.400)
    assert signal.contract == OptionContract("NVDA", "2026-03-20", 143.0, Right.CALL)
    assert 60 <= signal.confidence <= 70  # 50 + 6.7 (skew) + 1.5 (congress) + 7.5 (IV room)
    assert {"congress_net", "gamma_support", "rr25", "rr25_change", "iv_rank", "days_to_earnings"} <= set(signal.inputs)
    assert signal.inputs["days_to_earnings"] == 8 and signal.inputs["gamma_support"] == 135.0
    parts = reason_parts(signal)
    assert parts[:5] == [
        "congress net buying $+100,000 in 30d",
        "call skew rising: rr25 -0.0200 is +0.0100 vs its 5-day mean",
        "spot 140.20 above gamma support (put wall) 135.00",
        "earnings 2026-03-12 before expiry 2026-03-20",
        "IV rank 65 in [50, 80]",
    ]
    assert parts[5].startswith("delta NVDA 2026-03-20 143.00 C")


def test_fourteen_day_high_iv_puts_below_resistance(calendar: NyseCalendar) -> None:
    strategy = high_iv_strategy(calendar, rr25_history=-0.02)
    strategy.on_alt_data(alt(AltDataKind.INSIDER, "NVDA", -1, 3e6, WED - timedelta(days=2), insider="cfo"))
    snap, chain, now = nvda_snap(rr25=-0.035, call_wall=None)  # no call wall known → zero gamma 137
    snap = msgspec.structs.replace(snap, mid=136.5)
    (signal,) = strategy.on_features(snap, now, chain)
    assert_common(signal, "fourteen_day_high_iv", "NVDA", Direction.BEARISH, 2.0)
    assert signal.contract.right is Right.PUT and signal.contract.expiry == "2026-03-20"
    assert "spot 136.50 below gamma resistance (zero gamma) 137.00" in signal.reason
    assert signal.inputs["gamma_resistance"] == 137.0 and signal.inputs["rr25_change"] == pytest.approx(-0.015)


@pytest.mark.parametrize(
    ("earnings_in", "metrics", "why"),
    [
        (None, {}, "no earnings catalyst known"),
        (21, {}, "beyond the 21-day expiry band"),
        (8, {"iv_rank": 81.0}, "IV rank 81 > 80"),
        (8, {"iv_rank": 49.0}, "IV not elevated"),
        (8, {"put_wall": 140.5}, "not above gamma support put wall 140.50"),
        (8, {"rr25": -0.0255}, "call skew not rising"),  # +0.0045: short of +0.005
    ],
)
def test_fourteen_day_high_iv_near_misses(
    calendar: NyseCalendar, earnings_in: int | None, metrics: dict[str, float], why: str
) -> None:
    strategy = high_iv_strategy(calendar, earnings_in=earnings_in)
    strategy.on_alt_data(alt(AltDataKind.CONGRESS, "NVDA", 1, 100_000, WED - timedelta(days=12)))
    snap, chain, now = nvda_snap(**metrics)
    assert strategy.on_features(snap, now, chain) == []
    assert why in strategy.last_reason["NVDA"]


def test_fourteen_day_high_iv_requires_expiry_after_earnings(calendar: NyseCalendar) -> None:
    strategy = high_iv_strategy(calendar, earnings_in=16)  # earnings on the 16-DTE expiry day itself
    strategy.on_alt_data(alt(AltDataKind.CONGRESS, "NVDA", 1, 100_000, WED - timedelta(days=12)))
    snap, chain, now = nvda_snap()
    assert strategy.on_features(snap, now, chain) == []  # the 23-DTE expiry is outside 14–21
    assert "after earnings 2026-03-20" in strategy.last_reason["NVDA"]
    wide = FourteenDayHighIvStrategy(
        FourteenDayHighIvConfig(dte_band=DteBand(min_dte=14, max_dte=30, unit=DteUnit.CALENDAR)), calendar=calendar
    )
    wide.restore(strategy.state())
    (signal,) = wide.on_features(snap, now, chain)
    assert signal.contract.expiry == "2026-03-27"


def test_every_strategy_checkpoint_round_trips_through_json(calendar: NyseCalendar) -> None:
    """Strategy actors persist ``state()`` as JSON in Redis and restore it after a restart."""
    one_dte = overnight_with_history(calendar, THU)
    one_dte.on_alt_data(alt(AltDataKind.CONGRESS, "SPY", 1, 10_000, THU))
    moc = moc_detected(calendar)
    directional = FourteenDayDirectionalStrategy(calendar=calendar)
    bullish_alt_data(directional)
    high_iv = high_iv_strategy(calendar)
    for strategy in (ZeroDteGammaStrategy(calendar=calendar), one_dte, moc, directional, high_iv):
        state = msgspec.json.decode(msgspec.json.encode(strategy.state()))
        fresh = type(strategy)(calendar=calendar)  # type: ignore[call-arg]
        fresh.restore(state)
        assert fresh.state() == state
