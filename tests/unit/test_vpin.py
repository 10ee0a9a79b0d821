"""VPIN with bulk-volume classification: known buy/sell splits, thin flow, batch = incremental, bad data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from quanticity.analytics.vpin import (
    STATE_NO_ADV,
    STATE_OK,
    STATE_THIN,
    VpinState,
    bucket_volume_from_adv,
    bvc_buy_fraction,
    vpin_from_trades,
)

pytestmark = pytest.mark.unit


def phi(x: float) -> float:
    """Standard normal CDF, written out for the hand computations."""
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def random_tape(n: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    prices = np.round(100.0 * np.exp(np.cumsum(rng.normal(0.0, 2e-4, n))), 2)
    sizes = rng.integers(1, 800, n).astype(np.float64)
    return prices, sizes


# --- known splits ----------------------------------------------------------------------------
def test_all_up_tick_buckets_give_vpin_one() -> None:
    """Every trade an up-tick of the same size: σ_ΔP → 0, every bar fully buy, |V_B − V_S| = V."""
    n = 6000
    prices = 100.0 + 0.01 * np.arange(n)
    sizes = np.full(n, 100.0)
    res = vpin_from_trades(prices, sizes, bucket_volume=1000.0)
    assert res.state == STATE_OK
    assert res.vpin == pytest.approx(1.0, abs=1e-3)
    assert res.buckets == n * 100 // 1000


def test_all_down_tick_buckets_also_give_vpin_one() -> None:
    """VPIN measures |imbalance|: one-sided selling is as toxic as one-sided buying."""
    n = 6000
    res = vpin_from_trades(500.0 - 0.01 * np.arange(n), np.full(n, 100.0), bucket_volume=1000.0)
    assert res.vpin == pytest.approx(1.0, abs=1e-3)


def test_alternating_balanced_flow_gives_vpin_zero() -> None:
    """Up, down, up, down with equal sizes: the buy fractions Z(±1) cancel inside each bucket."""
    n = 6000
    prices = 100.0 + 0.01 * (np.arange(n) % 2)
    res = vpin_from_trades(prices, np.full(n, 100.0), bucket_volume=1000.0)
    assert res.state == STATE_OK
    assert res.vpin == pytest.approx(0.0, abs=1e-3)


def test_hand_computed_buckets_with_a_split_trade() -> None:
    """σ fixed at 1, V = 10, window of 2 buckets; the 8-lot is split 5 / 3 across buckets 1 and 2."""
    prices = [100.0, 101.0, 101.0, 100.0]
    sizes = [5.0, 8.0, 7.0, 10.0]
    p1 = phi(1.0)
    # bucket 1: 5 @ z=½ (first trade) + 5 @ Φ(1);   V_B = 2.5 + 5Φ(1)
    imb1 = abs(2 * (2.5 + 5 * p1) - 10)
    # bucket 2: 3 @ Φ(1) + 7 @ ½ (zero tick);        V_B = 3Φ(1) + 3.5
    imb2 = abs(2 * (3 * p1 + 3.5) - 10)
    # bucket 3: 10 @ Φ(−1) = 1 − Φ(1)
    imb3 = abs(2 * (10 * (1 - p1)) - 10)
    res = vpin_from_trades(prices, sizes, bucket_volume=10.0, n_buckets=2, sigma=1.0)
    assert res.bucket_end.tolist() == [1, 2, 3]
    assert math.isnan(res.series[0])  # one bucket: window of 2 not full yet
    assert res.series[1] == pytest.approx((imb1 + imb2) / 20, rel=1e-12)
    assert res.series[2] == pytest.approx((imb2 + imb3) / 20, rel=1e-12)
    assert res.vpin == pytest.approx((imb2 + imb3) / 20, rel=1e-12)
    assert res.state == STATE_OK and res.buckets == 3
    # CDF over the two valid readings: the current one is the larger → 1.0
    assert (imb2 + imb3) > (imb1 + imb2)
    assert res.cdf == 1.0


def test_bvc_buy_fraction_matches_the_normal_cdf_and_sigma_zero_limit() -> None:
    z = bvc_buy_fraction([10.0, 10.5, 10.5, 9.5], sigma=0.5)
    assert z.tolist() == pytest.approx([0.5, phi(1.0), 0.5, phi(-2.0)], rel=1e-12)
    # Causal EW σ starts at 0: the first move is classified fully (limit of Z at σ → 0).
    z = bvc_buy_fraction([10.0, 10.1, np.nan, 10.1])
    assert z[0] == 0.5 and z[1] == 1.0 and math.isnan(z[2]) and z[3] == 0.5


def test_one_print_larger_than_the_whole_window() -> None:
    """A block of 200 buckets emits n + 1 of them; the count includes all; the reading is valid."""
    prices = [100.0, 100.5, 101.0]
    sizes = [5.0, 2000.0, 3.0]
    res = vpin_from_trades(prices, sizes, bucket_volume=10.0, n_buckets=5, sigma=1.0)
    assert res.buckets == 200  # (5 + 2000 + 3) // 10
    assert res.series.size == 6  # n + 1 emitted from the block
    assert res.state == STATE_OK
    z = phi(0.5)
    assert res.vpin == pytest.approx(abs(2 * z - 1), rel=1e-12)  # window = 5 identical block buckets


# --- neutral readings ------------------------------------------------------------------------
def test_thin_flow_is_nan_with_state_thin() -> None:
    prices, sizes = random_tape(200)
    res = vpin_from_trades(prices, sizes, bucket_volume=sizes.sum() / 10)  # ~10 buckets < 50
    assert res.state == STATE_THIN
    assert math.isnan(res.vpin) and math.isnan(res.cdf)
    assert not (res.vpin > 0.5) and not (res.vpin < 0.5)  # NaN neither triggers nor clears a gate
    assert 0 < res.buckets < 50


@pytest.mark.parametrize("adv", [None, math.nan, 0.0, -1e6, math.inf, "x"])
def test_unknown_adv_is_no_adv(adv: object) -> None:
    assert math.isnan(bucket_volume_from_adv(adv))  # type: ignore[arg-type]
    prices, sizes = random_tape(500)
    res = vpin_from_trades(prices, sizes, bucket_volume_from_adv(adv))  # type: ignore[arg-type]
    assert res.state == STATE_NO_ADV and math.isnan(res.vpin) and res.series.size == 0
    state = VpinState(adv)  # type: ignore[arg-type]
    for p, s in zip(prices[:50], sizes[:50], strict=True):
        state.update(p, s)
    reading = state.value()
    assert reading.state == STATE_NO_ADV and math.isnan(reading.vpin) and not reading.ok


def test_bucket_volume_is_adv_over_fifty() -> None:
    assert bucket_volume_from_adv(5_000_000) == 100_000.0
    assert VpinState(5_000_000).bucket_volume == 100_000.0


# --- incremental = batch ---------------------------------------------------------------------
def test_incremental_state_equals_batch_kernel() -> None:
    prices, sizes = random_tape(30_000)
    adv = float(sizes.sum()) / 3  # → 150 buckets over the tape
    batch = vpin_from_trades(prices, sizes, bucket_volume_from_adv(adv))
    assert batch.state == STATE_OK

    one_by_one = VpinState(adv)
    for p, s in zip(prices.tolist(), sizes.tolist(), strict=True):
        one_by_one.update(p, s)
    chunked = VpinState(adv)
    for lo in range(0, prices.size, 7_777):
        chunked.update_many(prices[lo : lo + 7_777], sizes[lo : lo + 7_777])
    for state in (one_by_one, chunked):
        r = state.value()
        assert r.state == STATE_OK and r.buckets == batch.buckets
        assert r.vpin == pytest.approx(batch.vpin, rel=1e-12)
        assert r.cdf == pytest.approx(batch.cdf, rel=1e-12)


def test_checkpoint_roundtrip_through_json() -> None:
    prices, sizes = random_tape(20_000, seed=11)
    adv = float(sizes.sum()) / 2
    full = VpinState(adv)
    full.update_many(prices, sizes)
    first = VpinState(adv)
    first.update_many(prices[:9_000], sizes[:9_000])
    second = VpinState(adv)
    second.restore(json.loads(json.dumps(first.state())))
    for p, s in zip(prices[9_000:].tolist(), sizes[9_000:].tolist(), strict=True):
        second.update(p, s)
    assert second.value().vpin == pytest.approx(full.value().vpin, rel=1e-12)
    assert second.value().buckets == full.value().buckets


def test_set_adv_changes_the_bucket_size_going_forward() -> None:
    prices, sizes = random_tape(20_000, seed=3)
    state = VpinState(float(sizes.sum()) / 2)
    state.update_many(prices[:10_000], sizes[:10_000])
    before = state.value().buckets
    state.set_adv(float(sizes.sum()))  # twice the bucket size
    state.update_many(prices[10_000:], sizes[10_000:])
    after = state.value()
    assert after.bucket_volume == pytest.approx(float(sizes.sum()) / 50)
    assert after.ok and 0.0 <= after.vpin <= 1.0
    assert after.buckets - before < before  # bigger buckets fill more slowly


# --- bad data --------------------------------------------------------------------------------
def test_bad_numbers_are_skipped_and_counted() -> None:
    prices, sizes = random_tape(5_000)
    dirty_p = prices.copy()
    dirty_s = sizes.copy()
    dirty_p[[10, 20]] = [np.nan, -1.0]
    dirty_s[[30, 40, 50]] = [np.inf, 0.0, -5.0]
    keep = np.ones(prices.size, dtype=bool)
    keep[[10, 20, 30, 40, 50]] = False
    v = float(sizes.sum()) / 80
    res = vpin_from_trades(dirty_p, dirty_s, v)
    clean = vpin_from_trades(prices[keep], sizes[keep], v)
    assert res.rejected == {"bad_price": 2, "bad_size": 3}
    assert res.vpin == pytest.approx(clean.vpin, rel=1e-12)
    state = VpinState(v, buckets_per_day=1)
    for p, s in zip(dirty_p.tolist(), dirty_s.tolist(), strict=True):
        state.update(p, s)
    state.update("abc", 5)  # type: ignore[arg-type]
    assert state.rejected == {"bad_price": 3, "bad_size": 3}
    assert state.value().vpin == pytest.approx(clean.vpin, rel=1e-12)


def test_unequal_lengths_are_truncated_and_counted() -> None:
    res = vpin_from_trades([100.0, 101.0, 102.0], [10.0, 10.0], 5.0, n_buckets=2)
    assert res.rejected == {"length_mismatch": 1}
    assert res.buckets == 4


def test_invalid_configuration_raises() -> None:
    with pytest.raises(ValueError):
        vpin_from_trades([1.0], [1.0], 1.0, n_buckets=0)
    with pytest.raises(ValueError):
        VpinState(1e6, sigma_halflife=0.0)


# --- properties ------------------------------------------------------------------------------
_any_floats = hnp.arrays(np.float64, st.integers(0, 300), elements=st.floats(allow_nan=True, allow_infinity=True))


@settings(max_examples=150, deadline=None)
@given(prices=_any_floats, sizes=_any_floats, v=st.floats(allow_nan=True, allow_infinity=True), n=st.integers(1, 8))
def test_never_raises_and_outputs_are_in_range_or_nan(prices: np.ndarray, sizes: np.ndarray, v: float, n: int) -> None:
    res = vpin_from_trades(prices, sizes, v, n_buckets=n)
    if res.state == STATE_OK:
        assert 0.0 <= res.vpin <= 1.0 + 1e-12 and 0.0 < res.cdf <= 1.0
    else:
        assert math.isnan(res.vpin) and math.isnan(res.cdf)
    finite = res.series[np.isfinite(res.series)]
    assert np.all((finite >= 0.0) & (finite <= 1.0 + 1e-12))
    assert sum(res.rejected.values()) <= max(prices.size, sizes.size)


@settings(max_examples=60, deadline=None)
@given(
    prices=hnp.arrays(np.float64, st.integers(1, 200), elements=st.floats(1.0, 1000.0)),
    seed=st.integers(0, 2**16),
    n=st.integers(1, 6),
)
def test_incremental_equals_batch_property(prices: np.ndarray, seed: int, n: int) -> None:
    sizes = np.random.default_rng(seed).integers(1, 50, prices.size).astype(np.float64)
    v = max(float(sizes.sum()) / 20, 1.0)
    batch = vpin_from_trades(prices, sizes, v, n_buckets=n)
    state = VpinState(v, n_buckets=n, buckets_per_day=1)
    for p, s in zip(prices.tolist(), sizes.tolist(), strict=True):
        state.update(p, s)
    r = state.value()
    assert r.state == batch.state and r.buckets == batch.buckets
    if batch.state == STATE_OK:
        assert r.vpin == pytest.approx(batch.vpin, rel=1e-9, abs=1e-12)
