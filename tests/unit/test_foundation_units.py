"""Small library units: placement, clock, calendar, keys, features, strategy, channel log, embedded Redis."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import pytest

from quanticity import keys
from quanticity.analytics.features import SymbolFeatures, book_imbalance, reject_reason
from quanticity.calendar import NyseCalendar
from quanticity.clock import AcceleratedClock, SimulatedClock
from quanticity.config.models import AnalyticsSection, SessionSection, StrategySection
from quanticity.distribution.channel_log import ChannelLog, render
from quanticity.messages import (
    BookSnapshot,
    Direction,
    FeatureSnapshot,
    Fill,
    MarketBatch,
    OptionContract,
    OptionQuote,
    Quote,
    Right,
    Side,
    Trade,
)
from quanticity.session import plan_session
from quanticity.store.embedded import EmbeddedRedis
from quanticity.strategies.imbalance_momentum import ImbalanceMomentumStrategy
from supervisors.placement import assign_symbols

pytestmark = pytest.mark.unit
NS = 1_000_000_000


# --- placement -----------------------------------------------------------------------------
def test_placement_spreads_evenly_and_deterministically() -> None:
    symbols = [f"S{i}" for i in range(10)]
    a = assign_symbols(symbols, ["n2", "n1"])
    assert a == assign_symbols(symbols, ["n1", "n2"])
    counts = sorted(list(a.values()).count(n) for n in ("n1", "n2"))
    assert counts == [5, 5]


def test_placement_is_sticky_and_replaces_lost_node() -> None:
    symbols = [f"S{i}" for i in range(9)]
    first = assign_symbols(symbols, ["n1", "n2", "n3"])
    after = assign_symbols(symbols, ["n1", "n2"], first)
    for symbol, node in first.items():
        if node != "n3":
            assert after[symbol] == node  # nothing on a surviving node moved
    assert set(after.values()) == {"n1", "n2"}
    assert sorted(list(after.values()).count(n) for n in ("n1", "n2")) == [4, 5]


def test_placement_without_nodes_fails_clearly() -> None:
    with pytest.raises(ValueError, match="no alive node"):
        assign_symbols(["SPY"], [])


# --- clock, calendar, session --------------------------------------------------------------
def test_simulated_clock_is_monotonic() -> None:
    clock = SimulatedClock(100)
    assert clock.advance(1.5) == 100 + 1_500_000_000
    with pytest.raises(ValueError, match="before"):
        clock.set(5)


def test_accelerated_clock_maps_wall_to_sim() -> None:
    wall = SimulatedClock(1_000)
    clock = AcceleratedClock(sim_start_ns=50_000, wall_start_ns=1_000, speed=60, wall=wall)
    wall.advance(1.0)
    assert clock.now_ns() == 50_000 + 60 * NS
    assert clock.wall_ns_for(50_000 + 120 * NS) == 1_000 + 2 * NS


def test_calendar_holidays_and_half_days() -> None:
    cal = NyseCalendar()
    assert not cal.is_session(date(2026, 11, 26))  # Thanksgiving
    assert cal.is_half_day(date(2026, 11, 27))
    assert cal.session_close(date(2026, 11, 20)).hour == 16
    assert cal.zero_dte_entry_cutoff(date(2026, 11, 20)).strftime("%H:%M") == "15:30"
    assert cal.trading_days_between(date(2026, 11, 25), date(2026, 11, 30)) == 2


def test_plan_session_defaults_to_last_session_and_duration() -> None:
    spec = plan_session(SessionSection(), seed=3, duration_s=600, today=date(2026, 11, 27))
    assert spec.session_date == "2026-11-25"
    assert spec.sim_end_ns - spec.sim_start_ns == 600 * NS and spec.steps == 600
    with pytest.raises(ValueError, match="not an NYSE session"):
        plan_session(SessionSection(date=date(2026, 11, 26)), seed=1)


def test_keys_validate_symbols() -> None:
    assert keys.analytics("SPY", "gex") == "analytics:SPY:gex"
    assert keys.raw_depth_heartbeat("BRK.B") == "raw:ibkr:depth:hb:BRK.B"
    with pytest.raises(ValueError, match="symbol"):
        keys.analytics("spy; DEL *", "gex")


# --- features ------------------------------------------------------------------------------
def _batch(
    t: int, bid: float, ask: float, bid_size: int = 100, ask_size: int = 100, trades=(), options=()
) -> MarketBatch:
    quote = Quote(ts_event=t, ts_init=t, symbol="SPY", bid=bid, ask=ask, bid_size=bid_size, ask_size=ask_size)
    book = BookSnapshot(
        ts_event=t,
        ts_init=t,
        symbol="SPY",
        bids=((bid, bid_size), (bid - 0.01, 100)),
        asks=((ask, ask_size), (ask + 0.01, 100)),
    )
    return MarketBatch(
        ts_event=t,
        ts_init=t,
        symbol="SPY",
        quotes=(quote,),
        books=(book,),
        trades=tuple(trades),
        options=tuple(options),
    )


def test_book_imbalance() -> None:
    assert book_imbalance(((1.0, 300),), ((1.1, 100),), 1) == pytest.approx(0.5)
    assert book_imbalance((), (), 5) == 0.0


def test_features_reject_and_count_bad_events() -> None:
    feats = SymbolFeatures("SPY", AnalyticsSection())
    crossed = Quote(ts_event=1, ts_init=1, symbol="SPY", bid=10.0, ask=9.0, bid_size=1, ask_size=1)
    bad_trade = Trade(ts_event=1, ts_init=1, symbol="SPY", price=-1.0, size=10)
    nan_option = OptionQuote(
        ts_event=1,
        ts_init=1,
        contract=OptionContract("SPY", "2026-11-20", 600, Right.CALL),
        bid=1.0,
        ask=1.1,
        iv=math.nan,
        delta=0.5,
        gamma=0.1,
        vega=0.1,
        theta=-0.1,
        underlying_price=600,
        open_interest=10,
        volume=1,
    )
    feats.on_batch(
        MarketBatch(ts_event=1, ts_init=1, symbol="SPY", quotes=(crossed,), trades=(bad_trade,), options=(nan_option,))
    )
    assert dict(feats.rejected) == {"quote_crossed": 1, "trade_non_positive_price": 1, "option_non_finite": 1}
    assert math.isnan(feats.mid) and feats.chain == {}
    assert reject_reason(Trade(ts_event=1, ts_init=1, symbol="SPY", price=1.0, size=0)) == "trade_impossible_size"


def test_features_snapshot_on_material_change_or_cadence_and_checkpoint() -> None:
    feats = SymbolFeatures("SPY", AnalyticsSection(forward_every_s=5, material_change_bps=5))
    t0 = 1_000 * NS
    trades = [Trade(ts_event=t0 + i, ts_init=t0, symbol="SPY", price=100 + 0.01 * i, size=100) for i in range(5)]
    feats.on_batch(_batch(t0, 99.99, 100.01, 300, 100, trades))
    assert feats.snapshot_due(t0)
    snap = feats.snapshot(t0, t0)
    assert snap.imbalance_l1 == pytest.approx(0.5) and snap.valid_until == t0 + 30 * NS
    feats.on_batch(_batch(t0 + NS, 100.00, 100.02))
    assert not feats.snapshot_due(t0 + NS)  # 1 bp move, 1 s later
    feats.on_batch(_batch(t0 + 2 * NS, 100.05, 100.07))
    assert feats.snapshot_due(t0 + 2 * NS)  # 6 bp move
    assert feats.snapshot_due(t0 + 6 * NS)  # cadence
    restored = SymbolFeatures("SPY", AnalyticsSection())
    restored.restore(feats.state())
    assert restored.state() == feats.state()


def test_first_otm_respects_min_dte() -> None:
    t = int(1_763_650_800 * NS)  # 2025-11-20 15:00 UTC

    def quote(expiry: str, strike: float, right: Right) -> OptionQuote:
        return OptionQuote(
            ts_event=t,
            ts_init=t,
            contract=OptionContract("SPY", expiry, strike, right),
            bid=1.0,
            ask=1.1,
            iv=0.2,
            delta=0.5,
            gamma=0.01,
            vega=0.1,
            theta=-0.1,
            underlying_price=100,
            open_interest=100,
            volume=10,
        )

    opts = [quote(e, k, r) for e in ("2025-11-20", "2025-12-05") for k in (99.0, 101.0, 102.0) for r in Right]
    for min_dte, expiry in ((0, "2025-11-20"), (14, "2025-12-05")):
        feats = SymbolFeatures("SPY", AnalyticsSection(), min_dte=min_dte)
        feats.on_batch(_batch(t, 99.99, 100.01, options=opts))
        call, put = feats.first_otm(Right.CALL, t), feats.first_otm(Right.PUT, t)
        assert call is not None and call.contract.strike == 101.0 and call.contract.expiry == expiry
        assert put is not None and put.contract.strike == 99.0


# --- strategy ------------------------------------------------------------------------------
def _snap(t: int, imbalance: float, momentum: float, spread: float = 2.0) -> FeatureSnapshot:
    call = OptionQuote(
        ts_event=t,
        ts_init=t,
        contract=OptionContract("SPY", "2026-11-20", 601, Right.CALL),
        bid=1.0,
        ask=1.05,
        iv=0.2,
        delta=0.4,
        gamma=0.01,
        vega=0.1,
        theta=-0.1,
        underlying_price=600,
        open_interest=100,
        volume=10,
    )
    return FeatureSnapshot(
        ts_event=t,
        ts_init=t,
        symbol="SPY",
        mid=600,
        spread_bps=spread,
        imbalance_l1=imbalance,
        imbalance_l5=imbalance,
        realized_vol=0.1,
        last_price=600,
        momentum_bps=momentum,
        computed_at=t,
        valid_until=t + 30 * NS,
        origin_ts_init=t,
        atm_call=call,
        atm_put=None,
    )


def test_strategy_fires_with_reason_and_respects_cooldown() -> None:
    strat = ImbalanceMomentumStrategy(StrategySection(imbalance_threshold=0.35, momentum_bps=8, cooldown_s=900))
    t = 1_000 * NS
    sig = strat.on_features(_snap(t, 0.5, 12), t, t)
    assert sig is not None and sig.direction is Direction.BULLISH and sig.contract.strike == 601
    assert sig.inputs["imbalance_l5"] == 0.5 and "L5 imbalance +0.50" in sig.reason
    assert strat.on_features(_snap(t + 10 * NS, 0.5, 12), t + 10 * NS, t) is None  # cooldown
    assert strat.on_features(_snap(t + 901 * NS, 0.5, 12), t + 901 * NS, t) is not None


def test_strategy_near_misses_do_not_fire() -> None:
    strat = ImbalanceMomentumStrategy(StrategySection(imbalance_threshold=0.35, momentum_bps=8))
    t = 1_000 * NS
    assert strat.on_features(_snap(t, 0.34, 12), t, t) is None  # imbalance just below
    assert strat.on_features(_snap(t, 0.5, 7.9), t, t) is None  # momentum just below
    assert strat.on_features(_snap(t, 0.5, 12, spread=10.5), t, t) is None  # illiquid underlying
    assert strat.on_features(_snap(t, -0.5, -12), t, t) is None  # bearish but no put quoted
    assert strat.on_features(_snap(t, 0.5, 12), t + 31 * NS, t) is None  # stale snapshot


# --- channel log ---------------------------------------------------------------------------
def _fill(exec_id: str, side: Side = Side.BUY) -> Fill:
    return Fill(
        ts_event=1_763_650_800 * NS,
        ts_init=0,
        exec_id=exec_id,
        order_ref="Q1",
        contract=OptionContract("SPY", "2025-11-20", 601, Right.CALL),
        side=side,
        quantity=3,
        price=1.25,
        commission=1.95,
        strategy="imbalance_momentum",
    )


def test_render_redacts_by_tier() -> None:
    premium, basic, free = (render(_fill("E1", Side.SELL), t, 42.0) for t in ("premium", "basic", "free"))
    assert "SOLD 3 x SPY 2025-11-20 601.00 C @ 1.25" in premium and "realized +42.00" in premium
    assert "@ 1.25" in basic and "3 x" not in basic and "realized" not in basic
    assert "bullish CALL trade closed" in free and "601" not in free and "1.25" not in free
    with pytest.raises(ValueError, match="tier"):
        render(_fill("E1"), "vip", 0.0)


def test_channel_log_writes_each_message_once_across_restarts(tmp_path: Path) -> None:
    log = ChannelLog(tmp_path, "local", ["premium", "free"])
    log.write("E1", _fill("E1"), 0.0)
    log.write("E1", _fill("E1"), 0.0)
    reopened = ChannelLog(tmp_path, "local", ["premium", "free"])
    assert reopened.delivered_ids() == {"E1"}
    reopened.write("E1", _fill("E1"), 0.0)
    reopened.write("E2", _fill("E2"), 0.0)
    lines = (tmp_path / "local-premium.log").read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["[E1]", "[E2]"]


# --- embedded redis ------------------------------------------------------------------------
def test_embedded_redis_persists_with_aof(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "r")
    server.start()
    from quanticity.store.client import connect

    connect(server.url).hset(keys.POSITIONS, "x", "1")
    server.kill()  # abrupt: only the append-only file can bring the data back
    server.start()
    assert connect(server.url).hget(keys.POSITIONS, "x") == "1"
    server.stop()
    assert (tmp_path / "r").exists()
