"""Black–Scholes–Merton pricer: textbook values, parity, greeks vs finite differences, edge cases."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quanticity.analytics.bsm import Greeks, bsm_greeks, bsm_price, norm_cdf, norm_pdf

pytestmark = pytest.mark.unit

# A grid of calls and puts: in/at/out of the money, short and long dated, with and without dividends.
SPOTS = np.array([100.0, 100.0, 100.0, 42.0, 590.0, 28.0, 5900.0, 100.0])
STRIKES = np.array([90.0, 100.0, 115.0, 40.0, 585.0, 31.5, 5950.0, 100.0])
TIMES = np.array([0.5, 1.0, 0.25, 0.5, 0.002, 0.08, 0.0005, 2.0])
RATES = np.array([0.05, 0.03, 0.0, 0.1, 0.045, 0.045, 0.045, -0.01])
DIVS = np.array([0.02, 0.0, 0.03, 0.0, 0.013, 0.0, 0.013, 0.05])
VOLS = np.array([0.2, 0.35, 0.15, 0.2, 0.14, 0.85, 0.12, 0.6])


def test_norm_cdf_and_pdf_known_values() -> None:
    x = np.array([0.0, 1.0, -1.0, 1.959963984540054, -10.0])
    cdf = norm_cdf(x)
    assert cdf[0] == 0.5
    assert cdf[1] == pytest.approx(0.8413447460685429, rel=1e-14)
    assert cdf[1] + cdf[2] == pytest.approx(1.0, rel=1e-15)
    assert cdf[3] == pytest.approx(0.975, rel=1e-12)
    # erfc keeps relative precision deep in the lower tail (1 + erf would round to 0 here).
    assert cdf[4] == pytest.approx(7.61985302416047e-24, rel=1e-12)
    assert norm_pdf(np.array([0.0]))[0] == pytest.approx(1 / math.sqrt(2 * math.pi), rel=1e-15)
    assert np.isnan(norm_cdf(np.array([np.nan]))[0])


def test_hull_textbook_example() -> None:
    """Hull, Options Futures and Other Derivatives: S=42, K=40, r=10 %, σ=20 %, T=0.5."""
    price = bsm_price(42.0, 40.0, 0.5, 0.1, 0.0, 0.2, np.array([True, False]))
    assert round(float(price[0]), 2) == 4.76
    assert round(float(price[1]), 2) == 0.81


def test_put_call_parity_with_dividends() -> None:
    calls = bsm_price(SPOTS, STRIKES, TIMES, RATES, DIVS, VOLS, True)
    puts = bsm_price(SPOTS, STRIKES, TIMES, RATES, DIVS, VOLS, False)
    forward_leg = SPOTS * np.exp(-DIVS * TIMES) - STRIKES * np.exp(-RATES * TIMES)
    assert np.all(np.abs((calls - puts) - forward_leg) <= 1e-10 * SPOTS)


def test_greeks_price_matches_bsm_price() -> None:
    for is_call in (True, False):
        greeks = bsm_greeks(SPOTS, STRIKES, TIMES, RATES, DIVS, VOLS, is_call)
        assert isinstance(greeks, Greeks)
        np.testing.assert_allclose(greeks.price, bsm_price(SPOTS, STRIKES, TIMES, RATES, DIVS, VOLS, is_call))


@pytest.mark.parametrize("is_call", [True, False])
def test_greeks_match_central_finite_differences(is_call: bool) -> None:
    def price(
        s: np.ndarray = SPOTS, t: np.ndarray = TIMES, r: np.ndarray = RATES, v: np.ndarray | float = VOLS
    ) -> np.ndarray:
        return bsm_price(s, STRIKES, t, r, DIVS, v, is_call)

    g = bsm_greeks(SPOTS, STRIKES, TIMES, RATES, DIVS, VOLS, is_call)
    hs = SPOTS * VOLS * np.sqrt(TIMES) * 1e-3  # small against the distribution's width S·σ·√T
    ht = TIMES * 1e-4
    hv = 1e-5
    hr = 1e-6
    fd_delta = (price(s=SPOTS + hs) - price(s=SPOTS - hs)) / (2 * hs)
    fd_gamma = (price(s=SPOTS + hs) - 2 * price() + price(s=SPOTS - hs)) / hs**2
    fd_vega = (price(v=VOLS + hv) - price(v=VOLS - hv)) / (2 * hv)
    fd_theta = -(price(t=TIMES + ht) - price(t=TIMES - ht)) / (2 * ht)  # theta = −∂V/∂T
    fd_rho = (price(r=RATES + hr) - price(r=RATES - hr)) / (2 * hr)

    def close(analytic: np.ndarray, numeric: np.ndarray, rtol: float = 1e-5) -> None:
        # Relative, with an absolute floor for greeks that are ~0 (deep out of the money).
        err = np.abs(analytic - numeric)
        assert np.all(err <= rtol * np.abs(numeric) + 1e-9 * SPOTS), (
            analytic,
            numeric,
            err / np.abs(numeric),
        )

    close(g.delta, fd_delta)
    close(g.gamma, fd_gamma, rtol=1e-4)  # a second difference loses a few more digits
    close(g.vega, fd_vega)
    close(g.theta, fd_theta)
    close(g.rho, fd_rho)


def test_greek_signs_and_call_put_delta_relation() -> None:
    call = bsm_greeks(SPOTS, STRIKES, TIMES, RATES, DIVS, VOLS, True)
    put = bsm_greeks(SPOTS, STRIKES, TIMES, RATES, DIVS, VOLS, False)
    assert np.all((call.delta >= 0) & (call.delta <= 1))
    assert np.all((put.delta >= -1) & (put.delta <= 0))
    np.testing.assert_allclose(call.delta - put.delta, np.exp(-DIVS * TIMES), rtol=1e-12)
    np.testing.assert_allclose(call.gamma, put.gamma, rtol=1e-12)
    np.testing.assert_allclose(call.vega, put.vega, rtol=1e-12)
    assert np.all(call.gamma > 0) and np.all(call.vega > 0)


def test_broadcasting_scalars_and_arrays() -> None:
    strikes = np.linspace(80, 120, 5)
    is_call = np.array([[True], [False]])
    out = bsm_greeks(100.0, strikes, 0.5, 0.03, 0.01, 0.25, is_call)
    for field in out:
        assert field.shape == (2, 5)
    scalar = bsm_price(100.0, 100.0, 1.0, 0.0, 0.0, 0.2, True)
    assert isinstance(scalar, np.ndarray) and scalar.shape == ()
    assert float(scalar) == pytest.approx(7.965567455405804, rel=1e-12)


def test_expiry_gives_intrinsic_without_warnings() -> None:
    spot = np.array([110.0, 90.0, 100.0, 110.0, 90.0, 100.0])
    is_call = np.array([True, True, True, False, False, False])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for t in (0.0, -0.5):
            # The vol is irrelevant at expiry: even 0 gives the intrinsic value.
            for vol in (0.2, 0.0):
                g = bsm_greeks(spot, 100.0, t, 0.05, 0.02, vol, is_call)
                np.testing.assert_array_equal(g.price, [10.0, 0.0, 0.0, 0.0, 10.0, 0.0])
                np.testing.assert_array_equal(g.delta, [1.0, 0.0, 0.5, 0.0, -1.0, -0.5])
                for field in (g.gamma, g.vega, g.theta, g.rho):
                    np.testing.assert_array_equal(field, 0.0)
                np.testing.assert_array_equal(bsm_price(spot, 100.0, t, 0.05, 0.02, vol, is_call), g.price)


@pytest.mark.parametrize(
    ("spot", "strike", "t", "rate", "div", "vol"),
    [
        (100.0, 100.0, 0.5, 0.03, 0.0, 0.0),  # zero vol before expiry
        (100.0, 100.0, 0.5, 0.03, 0.0, -0.2),  # negative vol
        (np.nan, 100.0, 0.5, 0.03, 0.0, 0.2),
        (100.0, np.inf, 0.5, 0.03, 0.0, 0.2),
        (100.0, 100.0, np.inf, 0.03, 0.0, 0.2),
        (100.0, 100.0, 0.5, np.nan, 0.0, 0.2),
        (100.0, 100.0, 0.5, 0.03, np.nan, 0.2),
        (100.0, 100.0, 0.5, 0.03, 0.0, np.inf),
        (100.0, 100.0, 0.0, 0.03, 0.0, np.nan),  # expired, but a NaN input is still NaN
        (0.0, 100.0, 0.5, 0.03, 0.0, 0.2),  # non-positive spot / strike
        (100.0, -5.0, 0.5, 0.03, 0.0, 0.2),
    ],
)
def test_invalid_inputs_give_nan_without_warnings(
    spot: float, strike: float, t: float, rate: float, div: float, vol: float
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for is_call in (True, False):
            assert np.isnan(bsm_price(spot, strike, t, rate, div, vol, is_call))
            for field in bsm_greeks(spot, strike, t, rate, div, vol, is_call):
                assert np.isnan(field)


def test_invalid_elements_do_not_contaminate_valid_ones() -> None:
    vols = np.array([0.2, 0.0, np.nan, 0.2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prices = bsm_price(100.0, 100.0, np.array([0.5, 0.5, 0.5, 0.0]), 0.0, 0.0, vols, True)
    assert np.isfinite(prices[0]) and prices[0] > 0
    assert np.isnan(prices[1]) and np.isnan(prices[2])
    assert prices[3] == 0.0


def test_deep_out_of_the_money_put_keeps_precision() -> None:
    # N(−d) computed directly, not as 1 − N(d): the put is tiny but positive, not rounded to 0.
    put = float(bsm_price(200.0, 100.0, 0.1, 0.0, 0.0, 0.2, False))
    assert 0.0 < put < 1e-20


@settings(max_examples=300, deadline=None)
@given(
    spot=st.floats(1.0, 5000.0),
    moneyness=st.floats(0.5, 2.0),
    t=st.floats(1e-5, 3.0),
    rate=st.floats(-0.02, 0.15),
    div=st.floats(0.0, 0.1),
    vol=st.floats(0.01, 2.0),
)
def test_property_sane_inputs_give_finite_outputs_within_no_arbitrage_bounds(
    spot: float, moneyness: float, t: float, rate: float, div: float, vol: float
) -> None:
    strike = spot * moneyness
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        call = bsm_greeks(spot, strike, t, rate, div, vol, True)
        put = bsm_greeks(spot, strike, t, rate, div, vol, False)
    for field in (*call, *put):
        assert np.isfinite(field)
    fwd_s, disc_k = spot * math.exp(-div * t), strike * math.exp(-rate * t)
    tol = 1e-9 * max(spot, strike)
    assert max(0.0, fwd_s - disc_k) - tol <= float(call.price) <= fwd_s + tol
    assert max(0.0, disc_k - fwd_s) - tol <= float(put.price) <= disc_k + tol
    assert -tol <= float(call.delta) <= 1.0 + 1e-12
