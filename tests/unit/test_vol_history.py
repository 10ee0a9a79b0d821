"""Simulated volatility history: deterministic, read off the engine's own chain metrics, and fed
into IV rank and the strategies' skew baselines — including when it arrives late or twice."""

from __future__ import annotations

import math
from datetime import date

import pytest

from quanticity.analytics.engine import AnalyticsEngine
from quanticity.analytics.volatility import IVHistory, vol_close_values
from quanticity.calendar import NyseCalendar
from quanticity.config import load_config
from quanticity.messages import AltDataEvent, AltDataKind
from quanticity.sim.altdata import session_alt_data
from quanticity.sim.vol_history import HISTORY_SESSIONS, vol_close_events, vol_levels
from quanticity.strategies.base import DailySeries, reason_family
from quanticity.strategies.one_dte_overnight import OneDteOvernightStrategy

pytestmark = pytest.mark.unit

SESSION = date(2026, 11, 20)


@pytest.fixture(scope="module")
def events() -> list[AltDataEvent]:
    config = load_config()
    return vol_close_events(config.market, config.trading.analytics, ["SPY", "AAPL"], SESSION, seed=7)


def test_one_event_per_prior_session_and_symbol(events: list[AltDataEvent]) -> None:
    sessions = NyseCalendar().sessions_between(date(2026, 9, 1), date(2026, 11, 19))[-HISTORY_SESSIONS:]
    for symbol in ("SPY", "AAPL"):
        days = [e.when for e in events if e.symbol == symbol]
        assert days == [d.isoformat() for d in sessions]
    assert all(e.kind is AltDataKind.VOL_CLOSE for e in events)
    assert [e.ts_event for e in events] == sorted(e.ts_event for e in events)
    assert max(e.ts_event for e in events) < NyseCalendar().session_open(SESSION).timestamp() * 1e9


def test_readings_follow_the_vol_level(events: list[AltDataEvent]) -> None:
    """ATM IV tracks the day's vol level (the smile's ATM point, solved back by the engine)."""
    config = load_config()
    levels = vol_levels("SPY", config.market.underlyings["SPY"].vol, HISTORY_SESSIONS, seed=7)
    ivs = [vol_close_values(e)[1] for e in events if e.symbol == "SPY"]
    for level, iv in zip(levels, ivs, strict=True):
        assert iv == pytest.approx(level, rel=0.1)
    rr = [vol_close_values(e)[2] for e in events if e.symbol == "SPY"]
    assert all(math.isfinite(x) and abs(x) < 0.05 for x in rr), "a few vol points at most: the smile is mild"


def test_deterministic_and_seed_dependent(events: list[AltDataEvent]) -> None:
    config = load_config()
    again = vol_close_events(config.market, config.trading.analytics, ["SPY", "AAPL"], SESSION, seed=7)
    other = vol_close_events(config.market, config.trading.analytics, ["SPY", "AAPL"], SESSION, seed=8)
    assert again == events
    assert [e.detail for e in other] != [e.detail for e in events]
    alone = vol_close_events(config.market, config.trading.analytics, ["AAPL"], SESSION, seed=7)
    assert alone == [e for e in events if e.symbol == "AAPL"], "a symbol's history ignores the others"


def test_session_alt_data_merges_both_sources_in_time_order() -> None:
    config = load_config()
    merged = session_alt_data(config, ["SPY"], SESSION, seed=7)
    kinds = {e.kind for e in merged}
    assert AltDataKind.VOL_CLOSE in kinds and AltDataKind.DARK_POOL in kinds
    assert [e.ts_event for e in merged] == sorted(e.ts_event for e in merged)


def test_history_gives_the_engine_an_iv_rank(events: list[AltDataEvent]) -> None:
    config = load_config()
    engine = AnalyticsEngine("SPY", config.trading.analytics, min_dte=0, session_date=SESSION)
    assert math.isnan(engine.iv_history.value(0.2).rank), "no history: rank unknown"
    recorded = sum(engine.on_vol_close(e) for e in events)
    assert recorded == HISTORY_SESSIONS  # the AAPL events are not SPY's
    rank = engine.iv_history.value(0.2).rank
    assert 0 <= rank <= 100


def test_malformed_history_is_counted_not_raised() -> None:
    config = load_config()
    engine = AnalyticsEngine("SPY", config.trading.analytics, min_dte=0, session_date=SESSION)
    bad = AltDataEvent(
        ts_event=1, ts_init=1, kind=AltDataKind.VOL_CLOSE, symbol="SPY", direction=0, when="2026-11-19",
        detail={"atm_iv": "-0.2", "rr25": "0.01"},
    )  # fmt: skip
    assert engine.on_vol_close(bad) is False
    assert engine.rejected()["history_vol_close_rejected"] == 1
    with pytest.raises(ValueError, match=r"vol_close.atm_iv = '-0.2'"):
        vol_close_values(bad)
    with pytest.raises(ValueError, match=r"vol_close.when = 'yesterday'"):
        vol_close_values(AltDataEvent(**{**_fields(bad), "when": "yesterday"}))
    strategy = OneDteOvernightStrategy()
    strategy.on_alt_data(AltDataEvent(**{**_fields(bad), "detail": {"atm_iv": "0.2", "rr25": "nan"}}))
    assert strategy.rejections["bad vol_close: vol_close.rr25 = 'nan': must be finite"] == 1


def _fields(event: AltDataEvent) -> dict[str, object]:
    return {f: getattr(event, f) for f in event.__struct_fields__}


def test_iv_history_takes_late_and_repeated_days() -> None:
    history = IVHistory(window_days=3, min_days=1)
    history.update("2026-11-20", 0.30)  # today's reading first
    for day, iv in (("2026-11-17", 0.10), ("2026-11-18", 0.20), ("2026-11-19", 0.25), ("2026-11-18", 0.21)):
        history.update(day, iv)
    assert history.state()["closes"] == [["2026-11-18", 0.21], ["2026-11-19", 0.25], ["2026-11-20", 0.30]]


def test_daily_series_takes_late_days() -> None:
    series = DailySeries(window_days=2)
    series.update("SPY", date(2026, 11, 20), -0.03)
    series.update("SPY", date(2026, 11, 18), -0.01)
    series.update("SPY", date(2026, 11, 19), -0.02)
    assert series.prior("SPY", date(2026, 11, 20)) == [-0.01, -0.02]


def test_one_dte_strategy_builds_its_skew_baseline_from_history(events: list[AltDataEvent]) -> None:
    strategy = OneDteOvernightStrategy()
    for event in events:
        strategy.on_alt_data(event)
    assert len(strategy.rr25.prior("SPY", SESSION)) == min(HISTORY_SESSIONS, strategy.config.skew_window_days)


def test_reason_family_strips_values_not_names() -> None:
    assert reason_family("confidence 42 < 60") == "confidence # < #"
    assert reason_family("rr25 shift +1.25σ within ±1σ") == "rr25 shift # within ±#"
    assert reason_family("net premium +1,234,567 does not agree") == "net premium # does not agree"
