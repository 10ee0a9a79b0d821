"""Realized vol, vol regime, IV rank/percentile, 25Δ risk reversal and the MOC imbalance predictor."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from quanticity.analytics.moc import (
    MocAccumulator,
    MocInputs,
    MocModel,
    moc_inputs,
    moc_score,
    moc_window_ns,
    predict_moc,
)
from quanticity.analytics.volatility import (
    SECONDS_PER_TRADING_YEAR,
    IVHistory,
    RealizedVolState,
    VolRegime,
    iv_rank_percentile,
    iv_rank_series,
    realized_vol,
    realized_vol_bars,
    regime_codes,
    risk_reversal_25d,
    vol_regime,
)

pytestmark = pytest.mark.unit
NS = 1_000_000_000
MINUTE = 60 * NS
BARS_PER_YEAR = SECONDS_PER_TRADING_YEAR / 60


# --- realized volatility ---------------------------------------------------------------------
def test_realized_vol_of_alternating_returns_is_exact() -> None:
    a = 0.001
    returns = np.where(np.arange(100) % 2, a, -a)
    assert realized_vol(returns, bar_s=60) == pytest.approx(a * math.sqrt(BARS_PER_YEAR), rel=1e-12)
    assert BARS_PER_YEAR == 252 * 6.5 * 60


def test_realized_vol_recovers_a_known_gbm_variance() -> None:
    sigma = 0.20
    rng = np.random.default_rng(1)
    returns = rng.normal(0.0, sigma / math.sqrt(BARS_PER_YEAR), 40_000)
    assert realized_vol(returns, bar_s=60) == pytest.approx(sigma, rel=0.02)


def test_bar_sampling_with_empty_bars_by_hand() -> None:
    """A trade every 2 minutes moving ±a: each 2-bar pair holds one ±a return and one empty 0."""
    a = 0.002
    n = 60
    ts = np.arange(n) * 2 * MINUTE + 5 * NS
    prices = 100.0 * np.exp(np.cumsum(np.where(np.arange(n) % 2, a, -a)))
    s = realized_vol_bars(ts, prices, window_bars=30, min_bars=10)
    # bars alternate (empty → 0) and (±a); the window of 30 holds 15 of each: mean r² = a²/2
    assert s.rv[-1] == pytest.approx(a * math.sqrt(BARS_PER_YEAR / 2), rel=1e-9)
    assert s.ret[:4].tolist() == pytest.approx([0.0, a, 0.0, -a])  # the first bar is only the reference
    assert s.bar_end_ns[0] == 2 * MINUTE  # bar 1 (empty) ends at 2 minutes
    assert np.isnan(s.rv[:9]).all() and np.isfinite(s.rv[9])  # min_bars = 10


def test_gap_resets_the_window_and_drops_the_overnight_return() -> None:
    ts = np.array([0, MINUTE, 2 * MINUTE, 2 * MINUTE + 3600 * NS, 3 * MINUTE + 3600 * NS, 4 * MINUTE + 3600 * NS])
    prices = np.array([100.0, 101.0, 102.0, 150.0, 151.0, 152.0])
    s = realized_vol_bars(ts, prices, min_bars=1, min_history=1)
    assert s.rejected == {"gap_reset": 1}
    # returns: bar1 ln(101/100), bar2 ln(102/101), [gap: the 102 → 150 jump is dropped], ln(151/150)
    assert s.ret.tolist() == pytest.approx([math.log(101 / 100), math.log(102 / 101), math.log(151 / 150)])
    assert s.rv[-1] == pytest.approx(abs(math.log(151 / 150)) * math.sqrt(BARS_PER_YEAR))


def test_realized_vol_state_equals_batch_and_checkpoints() -> None:
    rng = np.random.default_rng(2)
    n = 6000
    ts = np.sort(rng.integers(0, 6 * 3600 * NS, n))
    ts[3000:] += 18 * 3600 * NS  # an overnight gap
    prices = 100.0 * np.exp(np.cumsum(rng.normal(0, 3e-4, n)))
    prices[::500] = np.nan
    batch = realized_vol_bars(ts, prices)
    state = RealizedVolState()
    for i in range(n):
        state.update(int(ts[i]), prices[i])
        if i == 4000:
            saved = json.loads(json.dumps(state.state()))
    r = state.value()
    assert r.bars == batch.rv.size
    assert r.rv == pytest.approx(batch.rv[-1], rel=1e-12)
    assert r.rv_mean == pytest.approx(batch.rv_mean[-1], rel=1e-12)
    assert r.ratio == pytest.approx(batch.rv[-1] / batch.rv_mean[-1], rel=1e-12)
    assert state.rejected == batch.rejected == {"bad_price": 12, "gap_reset": 1}
    resumed = RealizedVolState()
    resumed.restore(saved)
    for i in range(4001, n):
        resumed.update(int(ts[i]), prices[i])
    assert resumed.value() == pytest.approx(r)


def test_thin_realized_vol_is_nan() -> None:
    state = RealizedVolState()
    for i in range(5):
        state.update(i * MINUTE, 100.0 + i)
    r = state.value()
    assert math.isnan(r.rv) and math.isnan(r.ratio)
    regime = state.regime()
    assert (regime.regime, regime.source) == (VolRegime.ELEVATED, "none") and math.isnan(regime.level)
    assert state.regime(vix1d=16.0).regime is VolRegime.ELEVATED


# --- regime ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("vix", "ratio", "regime", "source"),
    [
        (14.99, None, VolRegime.NORMAL, "vix1d"),
        (15.0, None, VolRegime.ELEVATED, "vix1d"),
        (24.99, None, VolRegime.ELEVATED, "vix1d"),
        (25.0, None, VolRegime.SHOCK, "vix1d"),
        (12.0, 3.0, VolRegime.NORMAL, "vix1d"),  # VIX1D wins over realized vol
        (math.nan, 1.24, VolRegime.NORMAL, "realized"),
        (None, 1.25, VolRegime.ELEVATED, "realized"),
        (0.0, 1.99, VolRegime.ELEVATED, "realized"),  # a zero VIX1D is not a reading
        (None, 2.0, VolRegime.SHOCK, "realized"),
        (None, None, VolRegime.ELEVATED, "none"),
        (math.inf, math.nan, VolRegime.ELEVATED, "none"),
    ],
)
def test_regime_thresholds(vix: float | None, ratio: float | None, regime: VolRegime, source: str) -> None:
    reading = vol_regime(vix, ratio)
    assert (reading.regime, reading.source) == (regime, source)
    code = regime_codes(np.nan if vix is None else vix, np.nan if ratio is None else ratio)
    assert int(code) == [VolRegime.NORMAL, VolRegime.ELEVATED, VolRegime.SHOCK].index(regime)


def test_regime_thresholds_are_configurable() -> None:
    assert vol_regime(18.0, vix_elevated=20.0, vix_shock=30.0).regime is VolRegime.NORMAL
    assert vol_regime(None, 1.5, ratio_elevated=1.6).regime is VolRegime.NORMAL


# --- IV rank / percentile --------------------------------------------------------------------
def test_iv_rank_and_percentile_by_hand() -> None:
    history = [0.10, 0.20, 0.30, 0.40, 0.50]
    r = iv_rank_percentile(history, 0.35, min_days=5)
    assert r.rank == pytest.approx(62.5) and r.percentile == pytest.approx(60.0) and r.n_days == 5
    assert iv_rank_percentile(history, 0.60, min_days=5)[:2] == (100.0, 100.0)
    assert iv_rank_percentile(history, 0.05, min_days=5)[:2] == (0.0, 0.0)
    assert iv_rank_percentile(history, 0.10, min_days=5)[:2] == (0.0, 0.0)  # none strictly below
    assert iv_rank_percentile([0.2] * 30, 0.2)[:2] == (50.0, 0.0)  # flat history
    thin = iv_rank_percentile(history, 0.3)  # min_days 20
    assert math.isnan(thin.rank) and math.isnan(thin.percentile)
    assert math.isnan(iv_rank_percentile([*history, np.nan, -1.0] * 5, np.nan).rank)


def test_iv_history_equals_series_and_overwrites_same_day() -> None:
    rng = np.random.default_rng(8)
    ivs = 0.15 + 0.05 * rng.random(300)
    rank, pct = iv_rank_series(ivs, window=252, min_days=20)
    hist = IVHistory(window_days=252, min_days=20)
    for day, iv in enumerate(ivs.tolist()):
        r = hist.value(iv)
        if day < 20:
            assert math.isnan(r.rank) and math.isnan(rank[day])
        else:
            assert (r.rank, r.percentile) == pytest.approx((rank[day], pct[day]))
        hist.update(f"d{day:04d}", 0.01)  # an intraday value, overwritten by the close below
        hist.update(f"d{day:04d}", iv)
    assert hist.value(0.3).n_days == 252
    # Asking about a day leaves that day's own close out.
    assert hist.value(0.3, day="d0299").n_days == 251
    restored = IVHistory()
    restored.restore(json.loads(json.dumps(hist.state())))
    assert restored.value(0.17) == hist.value(0.17)


# --- 25Δ risk reversal -----------------------------------------------------------------------
def test_risk_reversal_on_a_constructed_smile() -> None:
    # Calls: IV = 0.18 + 0.1·(0.5 − Δ); puts: IV = 0.20 + 0.2·(0.5 − |Δ|)  (put skew).
    call_d = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.7])
    put_d = -np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.7])
    call_iv = 0.18 + 0.1 * (0.5 - call_d)
    put_iv = 0.20 + 0.2 * (0.5 - np.abs(put_d))
    strikes = np.array([110.0, 106.0, 103.0, 101.0, 100.0, 96.0])
    res = risk_reversal_25d(strikes, call_d, call_iv, strikes[::-1] - 4, put_d, put_iv)
    assert res.call_iv == pytest.approx(0.18 + 0.1 * 0.25)
    assert res.put_iv == pytest.approx(0.20 + 0.2 * 0.25)
    assert res.rr25 == pytest.approx(0.205 - 0.25)  # puts richer: negative risk reversal
    assert res.call_strike == pytest.approx(104.5)  # halfway between the 0.2Δ and 0.3Δ strikes
    assert res.rejected == {}


def test_risk_reversal_needs_bracketing_quotes_and_skips_bad_ones() -> None:
    res = risk_reversal_25d([100, 105], [0.5, 0.3], [0.2, 0.21], [95, 100], [-0.2, -0.5], [0.25, 0.2])
    assert math.isnan(res.call_iv) and math.isnan(res.rr25)  # 0.25 < the lowest call delta
    assert res.put_iv == pytest.approx(0.25 + (0.2 - 0.25) * (0.05 / 0.3))
    assert res.rejected == {"call_out_of_range": 1}
    bad = risk_reversal_25d([1, 2, 3], [0.1, np.nan, 0.4], [0.2, 0.3, -1.0], [1], [-0.25], [0.3])
    assert bad.rejected["bad_call"] == 2 and bad.put_iv == pytest.approx(0.3)


# --- MOC predictor ---------------------------------------------------------------------------
def test_moc_window_is_14_to_1530_eastern() -> None:
    start, end = moc_window_ns(date(2026, 11, 20))  # EST (UTC−5)
    assert datetime.fromtimestamp(start / NS, tz=UTC) == datetime(2026, 11, 20, 19, 0, tzinfo=UTC)
    assert (end - start) == 90 * MINUTE
    start_summer, _ = moc_window_ns(date(2026, 7, 1))  # EDT (UTC−4)
    assert datetime.fromtimestamp(start_summer / NS, tz=UTC).hour == 18


def test_moc_calibration_at_the_spec_thresholds() -> None:
    score, conf = moc_score(0.6, 0.10, 0.0)
    assert float(score) == pytest.approx(1.0) and float(conf) == pytest.approx(70.0)
    _, conf_no_dark = moc_score(0.6, 0.0, 0.0)
    _, conf_book = moc_score(0.6, 0.10, 0.3)
    _, conf_against = moc_score(0.6, 0.10, -0.3)
    assert float(conf_no_dark) < 70.0 < float(conf_book)
    assert float(conf_against) < float(conf_no_dark)


def test_moc_monotonicity_on_a_grid() -> None:
    share = np.linspace(0.0, 1.0, 41)
    for div in (-0.5, 0.0, 0.1, 0.5):
        for book in (-1.0, -0.2, 0.0, 0.4):
            score, conf = moc_score(share, div, book)
            assert np.all(np.diff(score) >= 0)
            assert np.all(np.diff(np.sign(score) * conf) >= -1e-9)
    div = np.linspace(-1.0, 1.0, 41)
    for s in (0.3, 0.5, 0.65):
        _, conf = moc_score(s, div, 0.1)
        assert np.all(np.diff(conf) >= 0)
    score, _ = moc_score(0.55, 0.0, np.linspace(-1, 1, 41))
    assert np.all(np.diff(score) >= 0)


@settings(max_examples=150, deadline=None)
@given(
    f=st.floats(0, 1),
    df=st.floats(0, 1),
    d=st.floats(-2, 2),
    dd=st.floats(0, 2),
    b=st.floats(-1, 1),
    db=st.floats(0, 2),
)
def test_moc_monotone_property(f: float, df: float, d: float, dd: float, b: float, db: float) -> None:
    s0, c0 = moc_score(f, d, b)
    s1, c1 = moc_score(min(f + df, 1.0), d, min(b + db, 1.0))
    assert float(s1) >= float(s0) - 1e-12
    assert float(np.sign(s1) * c1) >= float(np.sign(s0) * c0) - 1e-9
    _, c2 = moc_score(f, d + dd, b)
    assert float(c2) >= float(c0) - 1e-9
    assert 0.0 <= float(c0) <= 100.0


def make_prints(start: int) -> tuple[list[int], list[float], list[float], list[int], list[bool]]:
    ts = [start - MINUTE, start, start + MINUTE, start + 2 * MINUTE, start + 3 * MINUTE, start + 90 * MINUTE]
    price = [50.0, 50.0, 50.1, 50.05, 50.2, 50.3]
    size = [9_999.0, 7_000.0, 2_000.0, 1_000.0, 4_000.0, 9_999.0]
    side = [1, 1, -1, 0, 1, -1]
    dark = [False, True, False, False, True, True]
    return ts, price, size, side, dark


def test_moc_inputs_prediction_and_accumulator() -> None:
    start, end = moc_window_ns(date(2026, 11, 20))
    ts, price, size, side, dark = make_prints(start)
    inp = moc_inputs(ts, price, size, side, dark, start_ns=start, end_ns=end, baseline_dark_lit=1.0)
    # in window: the 2nd..5th prints (the first is before 14:00, the last at 15:30 is excluded)
    assert (inp.buy_volume, inp.sell_volume, inp.unknown_volume) == (11_000.0, 2_000.0, 1_000.0)
    assert (inp.dark_volume, inp.lit_volume) == (11_000.0, 3_000.0)
    assert inp.buy_share == pytest.approx(11 / 13) and inp.flow_asymmetry == pytest.approx(11 / 13)
    assert inp.dark_lit_divergence == pytest.approx(11 / 3 - 1)
    pred = predict_moc(inp, 0.2, price=50.2)
    assert pred.direction == "BUY" and pred.confidence > 70 and pred.passes()
    assert pred.size_shares == pytest.approx(9_000.0 * pred.confidence / 100)
    assert pred.notional == pytest.approx(pred.size_shares * 50.2)

    acc = MocAccumulator(start, end, baseline_dark_lit=1.0)
    for t, p, q, s, d in zip(ts, price, size, side, dark, strict=True):
        acc.update(t, p, q, s, d)
    assert acc.inputs() == inp
    assert acc.predict(0.2) == pred  # the last in-window print's price is 50.2
    restored = MocAccumulator(0, 1, baseline_dark_lit=1.0)  # parameters are configuration, not state
    restored.restore(json.loads(json.dumps(acc.state())))
    assert restored.predict(0.2) == pred


def test_moc_sell_none_and_threshold_gates() -> None:
    start, end = moc_window_ns(date(2026, 11, 20))
    sell = moc_inputs([start] * 2, [10.0] * 2, [300.0, 700.0], [1, -1], [False, True], start_ns=start, end_ns=end)
    assert predict_moc(sell, 0.0).direction == "SELL"
    balanced = moc_inputs([start] * 2, [10.0] * 2, [500.0, 500.0], [1, -1], [False, False], start_ns=start, end_ns=end)
    p = predict_moc(balanced, 0.0)
    assert (p.direction, p.confidence, p.size_shares) == ("NONE", 0.0, 0.0)
    nothing = moc_inputs([], [], [], [], [], start_ns=start, end_ns=end)
    p = predict_moc(nothing, 0.9)
    assert (p.direction, p.confidence, p.size_shares) == ("NONE", 0.0, 0.0)


def gate_inputs(share: float, div: float) -> MocInputs:
    """Inputs with an exact buy share and divergence (10,000 classified shares, baseline 0.7)."""
    lit = 10_000.0
    return MocInputs(
        share * lit, (1 - share) * lit, 0.0, 0.7 * lit * (1 + div), lit, share, max(share, 1 - share), div, {}
    )


@pytest.mark.parametrize(
    ("share", "div", "book", "passes"),
    [
        (0.60, 0.20, 0.5, False),  # asymmetry exactly 60 % is not > 60 %
        (0.61, 0.11, 0.0, True),  # just past both thresholds: confidence ≈ 75
        (0.61, 0.10, 0.5, False),  # divergence exactly 10 % is not > 10 %
        (0.61, 0.11, -0.5, False),  # the book disagrees: confidence < 70
        (0.39, 0.11, 0.0, True),  # the sell side passes symmetrically
        (0.90, 0.05, 1.0, False),  # strong flow but no dark divergence
    ],
)
def test_moc_spec_gates(share: float, div: float, book: float, passes: bool) -> None:
    pred = predict_moc(gate_inputs(share, div), book)
    assert pred.passes() is passes
    assert pred.direction == ("BUY" if share > 0.5 else "SELL")


def test_moc_rejects_bad_prints() -> None:
    inp = moc_inputs(
        [0, 1, 2.0, np.nan], [np.nan, 1.0, 1.0, 1.0], [1, -5, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0], start_ns=0, end_ns=10
    )
    assert inp.rejected == {"bad_price": 1, "bad_size": 1, "bad_time": 1}
    assert inp.buy_volume == 1.0
    acc = MocAccumulator(0, 10)
    for t, p, q in ((0, np.nan, 1), (1, 1.0, -5), ("x", 1.0, 1), (2, 1.0, 1)):
        acc.update(t, p, q, 1, False)  # type: ignore[arg-type]
    assert acc.rejected == {"bad_price": 1, "bad_size": 1, "bad_time": 1}


@settings(max_examples=100, deadline=None)
@given(
    data=hnp.arrays(
        np.float64, st.tuples(st.just(3), st.integers(0, 30)), elements=st.floats(allow_nan=True, allow_infinity=True)
    ),
    ts=hnp.arrays(np.int64, st.integers(0, 30), elements=st.integers(0, 10**12)),
)
def test_volatility_and_moc_never_raise(data: np.ndarray, ts: np.ndarray) -> None:
    a, b, c = data
    s = realized_vol_bars(ts, a, bar_s=1e-6, min_bars=1, min_history=1)
    assert np.all(np.isnan(s.rv) | (s.rv >= 0))
    realized_vol(a)
    iv_rank_percentile(a, float(b[0]) if b.size else math.nan, min_days=1)
    risk_reversal_25d(a, b, c, a, -b, c)
    score, conf = moc_score(a, b, c)
    assert np.all(np.isfinite(score)) and np.all((conf >= 0) & (conf <= 100))
    moc_inputs(ts, a, b, c, a > 0, start_ns=0, end_ns=10**12)
    regime_codes(a, b)
    MocModel()
