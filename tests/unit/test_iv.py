"""Implied vol solver: round trips, QuantLib agreement, reason codes, robustness, a 10k chain.

"Identifiable" below means the vol can be recovered to 1e-8 from a double-precision price at
all: the price's rounding error (~1e-15 of the magnitude of the two BSM terms, S·e^{−qT}·N(±d1)
and K·e^{−rT}·N(±d2)) must move it by less than 1e-9·σ·vega. A deep in-the-money option whose
time value is below that rounding carries no vol information (any vol reprices it), so round
trips there are checked by repricing, not by recovering the vol.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import ArrayLike, NDArray

from quanticity.analytics.bsm import bsm_greeks, bsm_price, norm_cdf
from quanticity.analytics.iv import (
    VOL_MAX,
    VOL_MIN,
    IVReason,
    IVResult,
    implied_vol,
    implied_vol_detail,
    reason_counts,
)

pytestmark = pytest.mark.unit

SPOT = 100.0
TRADING_MINUTE = 1.0 / (252 * 6.5 * 60)  # one minute of a 252 × 6.5 h trading year ≈ 1.0e-5
MONEYNESS = (0.5, 0.6, 0.8, 0.9, 0.97, 1.0, 1.03, 1.1, 1.25, 1.5)
VOLS = (5e-4, 0.01, 0.05, 0.2, 0.6, 1.5, 4.0, 9.0)
RATES = (-0.01, 0.05)
DIVS = (0.0, 0.03)
TIMES = (1e-6, TRADING_MINUTE, 1e-4, 30 * TRADING_MINUTE, 0.01, 0.1, 1.0, 3.0)


class Chain:
    """A deterministic grid of contracts priced at known vols (parallel arrays)."""

    def __init__(self) -> None:
        rows = list(itertools.product(MONEYNESS, VOLS, RATES, DIVS, TIMES, (True, False)))
        m, v, r, q, t, c = (np.array(col) for col in zip(*rows, strict=True))
        self.s = np.full(m.size, SPOT)
        self.k = SPOT * m
        self.v, self.r, self.q, self.t = v, r, q, t
        self.call = c.astype(bool)
        self.price = bsm_price(self.s, self.k, self.t, self.r, self.q, self.v, self.call)

    def solve(self) -> IVResult:
        return implied_vol(self.price, self.s, self.k, self.t, self.r, self.q, self.call)


def identifiable(
    s: ArrayLike,
    k: ArrayLike,
    t: ArrayLike,
    r: ArrayLike,
    q: ArrayLike,
    v: ArrayLike,
    call: ArrayLike,
    price: ArrayLike,
) -> NDArray[np.bool_]:
    """Where a double-precision price pins the vol to 1e-8 (module docstring)."""
    s, k, t, r, q, v, price = (np.asarray(a, dtype=np.float64) for a in (s, k, t, r, q, v, price))
    sign = np.where(call, 1.0, -1.0)
    with np.errstate(all="ignore"):
        d1 = (np.log(s / k) + (r - q + 0.5 * v * v) * t) / (v * np.sqrt(t))
        d2 = d1 - v * np.sqrt(t)
        terms = s * np.exp(-q * t) * norm_cdf(sign * d1) + k * np.exp(-r * t) * norm_cdf(sign * d2)
        vega = bsm_greeks(s, k, t, r, q, v, call).vega
        return np.asarray((1e-15 * terms <= 1e-9 * v * vega) & (price > 1e-300))


CHAIN = Chain()


def _reprice_error_ok(chain: Chain, result: IVResult) -> NDArray[np.bool_]:
    """The recovered vol reprices the input to 1e-10 relative or 1e-12 absolute."""
    ok = result.reason == IVReason.OK
    again = bsm_price(chain.s[ok], chain.k[ok], chain.t[ok], chain.r[ok], chain.q[ok], result.iv[ok], chain.call[ok])
    return np.asarray(np.abs(again - chain.price[ok]) <= np.maximum(1e-10 * chain.price[ok], 1e-12))


def test_round_trip_recovers_the_vol_on_a_grid_with_deep_wings_and_0dte() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = CHAIN.solve()
    ident = identifiable(CHAIN.s, CHAIN.k, CHAIN.t, CHAIN.r, CHAIN.q, CHAIN.v, CHAIN.call, CHAIN.price)
    assert ident.sum() > 0.4 * ident.size  # the grid is mostly identifiable: the test is not vacuous
    # Deep wings and 0DTE are represented among the identifiable contracts.
    assert ident[(CHAIN.t <= TRADING_MINUTE) & (np.abs(np.log(CHAIN.k / CHAIN.s)) > 0.01)].any()
    assert ident[(CHAIN.k == 50.0) & ~CHAIN.call].any() and ident[(CHAIN.k == 150.0) & CHAIN.call].any()
    assert np.all(result.reason[ident] == IVReason.OK)
    rel = np.abs(result.iv[ident] / CHAIN.v[ident] - 1.0)
    assert rel.max() <= 1e-8, rel.max()
    # Every solved contract reprices, identifiable or not; none fails to converge.
    assert _reprice_error_ok(CHAIN, result).all()
    assert not np.any(result.reason == IVReason.NO_CONVERGENCE)
    # What is not solved is a price with no time value left or a vol outside the range.
    unsolved = result.reason != IVReason.OK
    assert set(np.unique(result.reason[unsolved])) <= {
        IVReason.VOL_OUT_OF_RANGE,
        IVReason.NON_FINITE_OR_NON_POSITIVE,  # deep OTM prices that underflow to 0.0
        IVReason.ABOVE_UPPER_BOUND,  # vol 9 for years: the price rounds to the bound
    }


def test_nan_exactly_where_reason_is_not_ok() -> None:
    result = CHAIN.solve()
    assert result.iv.dtype == np.float64 and result.reason.dtype == np.int8
    ok = result.reason == IVReason.OK
    assert np.all(np.isfinite(result.iv[ok])) and np.all(np.isnan(result.iv[~ok]))
    assert np.all((result.iv[ok] >= VOL_MIN) & (result.iv[ok] <= VOL_MAX))


def test_agrees_with_quantlib_implied_vol_where_quantlib_converges() -> None:
    ql = pytest.importorskip("QuantLib")
    result = CHAIN.solve()
    ident = identifiable(CHAIN.s, CHAIN.k, CHAIN.t, CHAIN.r, CHAIN.q, CHAIN.v, CHAIN.call, CHAIN.price)
    compared = 0
    for i in np.flatnonzero(ident)[::3]:  # every third identifiable contract keeps this quick
        s, k, t, r, q = CHAIN.s[i], CHAIN.k[i], CHAIN.t[i], CHAIN.r[i], CHAIN.q[i]
        kind = ql.Option.Call if CHAIN.call[i] else ql.Option.Put
        forward, discount = s * math.exp((r - q) * t), math.exp(-r * t)
        try:
            std = ql.blackFormulaImpliedStdDev(
                kind, k, forward, CHAIN.price[i], discount, 0.0, ql.nullDouble(), 1e-14, 1000
            )
        except RuntimeError:
            continue
        # QuantLib "converged" only if its vol reprices the input (it can return 0 for tiny prices).
        if not (std > 0 and abs(ql.blackFormula(kind, k, forward, std, discount) / CHAIN.price[i] - 1) <= 1e-8):
            continue
        compared += 1
        assert result.iv[i] == pytest.approx(std / math.sqrt(t), rel=1e-6)
    assert compared > 300


def test_hull_implied_vol_example() -> None:
    """Hull: a call worth 1.875 with S=21, K=20, r=10 %, T=0.25 has an implied vol of 23.5 %."""
    result = implied_vol(1.875, 21.0, 20.0, 0.25, 0.1, 0.0, True)
    assert result.reason == IVReason.OK
    assert round(float(result.iv), 3) == 0.235


CASES = [
    # (price, spot, strike, t, rate, div, is_call, reason)
    (21.0, 100.0, 80.0, 0.5, 0.05, 0.0, True, IVReason.BELOW_INTRINSIC),  # intrinsic 21.975
    (5.0, 100.0, 120.0, 0.5, 0.05, 0.02, False, IVReason.BELOW_INTRINSIC),  # intrinsic 18.03
    (100.0 * math.exp(-0.02 * 0.5), 100.0, 80.0, 0.5, 0.05, 0.02, True, IVReason.ABOVE_UPPER_BOUND),
    (150.0, 100.0, 80.0, 0.5, 0.05, 0.02, True, IVReason.ABOVE_UPPER_BOUND),
    (80.0 * math.exp(-0.05 * 0.5), 100.0, 80.0, 0.5, 0.05, 0.02, False, IVReason.ABOVE_UPPER_BOUND),
    (5.0, 100.0, 100.0, 0.0, 0.05, 0.0, True, IVReason.EXPIRED),
    (5.0, 100.0, 100.0, -0.1, 0.05, 0.0, False, IVReason.EXPIRED),
    (np.nan, 100.0, 100.0, 0.5, 0.05, 0.0, True, IVReason.NON_FINITE_OR_NON_POSITIVE),
    (5.0, np.inf, 100.0, 0.5, 0.05, 0.0, True, IVReason.NON_FINITE_OR_NON_POSITIVE),
    (5.0, 100.0, np.nan, 0.5, 0.05, 0.0, True, IVReason.NON_FINITE_OR_NON_POSITIVE),
    (5.0, 100.0, 100.0, np.nan, 0.05, 0.0, True, IVReason.NON_FINITE_OR_NON_POSITIVE),
    (5.0, 100.0, 100.0, 0.5, -np.inf, 0.0, True, IVReason.NON_FINITE_OR_NON_POSITIVE),
    (5.0, 100.0, 100.0, 0.5, 0.05, np.nan, True, IVReason.NON_FINITE_OR_NON_POSITIVE),
    (-1.0, 100.0, 100.0, 0.5, 0.05, 0.0, True, IVReason.NON_FINITE_OR_NON_POSITIVE),
    (0.0, 100.0, 100.0, 0.5, 0.05, 0.0, False, IVReason.NON_FINITE_OR_NON_POSITIVE),
    (5.0, 0.0, 100.0, 0.5, 0.05, 0.0, True, IVReason.NON_FINITE_OR_NON_POSITIVE),
    (5.0, 100.0, -100.0, 0.5, 0.05, 0.0, True, IVReason.NON_FINITE_OR_NON_POSITIVE),
]


@pytest.mark.parametrize(("price", "spot", "strike", "t", "rate", "div", "is_call", "reason"), CASES)
def test_unsolvable_inputs_give_nan_and_the_right_reason(
    price: float, spot: float, strike: float, t: float, rate: float, div: float, is_call: bool, reason: IVReason
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = implied_vol(price, spot, strike, t, rate, div, is_call)
    assert np.isnan(result.iv)
    assert result.reason == reason


def test_vol_outside_the_range_is_reported_as_such() -> None:
    tiny = float(bsm_price(100.0, 100.0, 1.0, 0.0, 0.0, 0.5 * VOL_MIN, True))
    huge = float(bsm_price(100.0, 100.0, 1.0, 0.0, 0.0, 1.5 * VOL_MAX, True))
    at_intrinsic = 100.0 - 50.0 * math.exp(-0.05 * 0.25)  # deep ITM call quoted at intrinsic
    just_below = at_intrinsic * (1.0 - 1e-14)  # below intrinsic by rounding only, not an arbitrage
    result = implied_vol(
        np.array([tiny, huge, at_intrinsic, just_below]),
        100.0,
        np.array([100.0, 100.0, 50.0, 50.0]),
        np.array([1.0, 1.0, 0.25, 0.25]),
        np.array([0.0, 0.0, 0.05, 0.05]),
        0.0,
        True,
    )
    np.testing.assert_array_equal(result.reason, IVReason.VOL_OUT_OF_RANGE)
    assert np.isnan(result.iv).all()
    # The range ends themselves are solvable.
    ends = bsm_price(100.0, 100.0, 1.0, 0.0, 0.0, np.array([1.01 * VOL_MIN, 0.99 * VOL_MAX]), True)
    np.testing.assert_allclose(
        implied_vol(ends, 100.0, 100.0, 1.0, 0.0, 0.0, True).iv, [1.01 * VOL_MIN, 0.99 * VOL_MAX]
    )


def test_reason_counts() -> None:
    valid = [
        (5.0, 100.0, 100.0, 0.5, 0.05, 0.0, True, IVReason.OK),
        (5.0, 100.0, 100.0, 0.5, 0.05, 0.0, False, IVReason.OK),
    ]
    price, spot, strike, t, rate, div, is_call, expected = (np.array(col) for col in zip(*(CASES + valid), strict=True))
    result = implied_vol(price, spot, strike, t, rate, div, is_call.astype(bool))
    np.testing.assert_array_equal(result.reason, expected.astype(np.int8))
    counts = reason_counts(result)
    assert list(counts) == [reason.name for reason in IVReason]
    assert counts == {
        "OK": 2,
        "BELOW_INTRINSIC": 2,
        "ABOVE_UPPER_BOUND": 3,
        "EXPIRED": 2,
        "NON_FINITE_OR_NON_POSITIVE": 10,
        "NO_CONVERGENCE": 0,
        "VOL_OUT_OF_RANGE": 0,
    }
    assert sum(counts.values()) == price.size
    empty = implied_vol(np.array([]), 100.0, 100.0, 0.5, 0.0, 0.0, True)
    assert empty.iv.shape == (0,) and reason_counts(empty) == dict.fromkeys(counts, 0)


def test_broadcasting_and_shapes() -> None:
    strikes = np.linspace(80.0, 120.0, 5)
    is_call = np.array([[True], [False]])
    prices = bsm_price(100.0, strikes, 0.5, 0.03, 0.01, 0.25, is_call)
    result = implied_vol(prices, 100.0, strikes, 0.5, 0.03, 0.01, is_call)
    assert result.iv.shape == (2, 5) and result.reason.shape == (2, 5)
    np.testing.assert_allclose(result.iv, 0.25, rtol=1e-10)
    scalar = implied_vol(float(prices[0, 2]), 100.0, 100.0, 0.5, 0.03, 0.01, True)
    assert scalar.iv.shape == () and float(scalar.iv) == pytest.approx(0.25, rel=1e-10)


def test_vectorised_10k_contract_chain() -> None:
    """A 0DTE-to-60-day index chain: every contract solved, two price evaluations on average."""
    rng = np.random.default_rng(11)
    days = np.concatenate(([3.0 / 24.0], np.linspace(1.0, 60.0, 19)))
    t = np.repeat(days / 365.0, 500)
    z = np.tile(np.repeat(np.linspace(-6.0, 4.0, 250), 2), days.size)
    atm = 0.13 + 0.05 * np.exp(-t * 365.0 / 10.0)
    strike = 590.0 * np.exp(z * atm * np.sqrt(t)) * (1.0 + rng.normal(0.0, 1e-4, t.size))
    vol = atm * (1.0 + 0.1 * z * z / 16.0 - 0.05 * z)
    is_call = np.tile([True, False], t.size // 2)
    price = bsm_price(590.0, strike, t, 0.043, 0.013, vol, is_call)
    assert price.size == 10_000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result, evaluations = implied_vol_detail(price, 590.0, strike, t, 0.043, 0.013, is_call)
    assert reason_counts(result)["OK"] == 10_000
    ident = identifiable(np.full(t.size, 590.0), strike, t, 0.043, 0.013, vol, is_call, price)
    assert ident.mean() > 0.95
    assert np.max(np.abs(result.iv[ident] / vol[ident] - 1.0)) <= 1e-8
    again = bsm_price(590.0, strike, t, 0.043, 0.013, result.iv, is_call)
    assert np.all(np.abs(again - price) <= np.maximum(1e-10 * price, 1e-12))
    # The cost guard: the start is within ~1e-7 and Halley converges cubically: ~1 evaluation each.
    assert evaluations.mean() <= 1.2 and evaluations.max() <= 10


finite = {"allow_nan": False, "allow_infinity": False}


@settings(max_examples=400, deadline=None)
@given(
    price=st.floats(-10.0, 1e4, **finite),
    spot=st.floats(-10.0, 1e4, **finite),
    strike=st.floats(-10.0, 1e4, **finite),
    t=st.floats(-1.0, 30.0, **finite),
    rate=st.floats(-0.5, 0.5, **finite),
    div=st.floats(-0.5, 0.5, **finite),
    is_call=st.booleans(),
)
def test_property_random_finite_inputs_never_raise_and_are_consistent(
    price: float, spot: float, strike: float, t: float, rate: float, div: float, is_call: bool
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = implied_vol(price, spot, strike, t, rate, div, is_call)
    iv, reason = float(result.iv), int(result.reason)
    assert reason in {r.value for r in IVReason}
    if reason == IVReason.OK:
        assert VOL_MIN <= iv <= VOL_MAX
        again = float(bsm_price(spot, strike, t, rate, div, iv, is_call))
        assert abs(again - price) <= max(1e-10 * price, 1e-12)
    else:
        assert math.isnan(iv)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=6, max_size=6),
    is_call=st.booleans(),
)
def test_property_any_floats_never_raise(values: list[float], is_call: bool) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = implied_vol(*values, is_call)
    assert (int(result.reason) == IVReason.OK) == bool(np.isfinite(result.iv))


@settings(max_examples=300, deadline=None)
@given(
    spot=st.floats(1.0, 5000.0),
    moneyness=st.floats(0.5, 1.5),
    t=st.floats(1e-6, 3.0),
    rate=st.floats(-0.02, 0.1),
    div=st.floats(0.0, 0.06),
    vol=st.floats(1e-3, 5.0),
    is_call=st.booleans(),
)
def test_property_round_trip_on_sane_inputs(
    spot: float, moneyness: float, t: float, rate: float, div: float, vol: float, is_call: bool
) -> None:
    strike = spot * moneyness
    price = float(bsm_price(spot, strike, t, rate, div, vol, is_call))
    result = implied_vol(price, spot, strike, t, rate, div, is_call)
    if identifiable(np.array(spot), np.array(strike), t, rate, div, vol, is_call, np.array(price)):
        assert result.reason == IVReason.OK
        assert float(result.iv) == pytest.approx(vol, rel=1e-8)
    if result.reason == IVReason.OK:
        again = float(bsm_price(spot, strike, t, rate, div, result.iv, is_call))
        assert abs(again - price) <= max(1e-10 * price, 1e-12)
    else:  # unidentifiable: no time value left, or the price underflowed
        assert result.reason in (IVReason.VOL_OUT_OF_RANGE, IVReason.NON_FINITE_OR_NON_POSITIVE)
