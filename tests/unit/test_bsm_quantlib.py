"""BSM price and greeks against QuantLib 1.44 on a generated grid, plus Hull's textbook numbers.

The grid (``itertools.product``, deterministic) spans moneyness 0.5–1.5, vol 5 %–150 %, rates
−1 %–8 %, dividend yields 0–5 % and expiries from 5 minutes to one year. Time is measured in
years of 365 days (Actual/365 Fixed): an intraday expiry of ``m`` minutes is ``m / (365·24·60)``.

* Every expiry is compared with QuantLib's closed form, ``BlackCalculator(payoff, forward,
  stdDev, discount)`` built from the same ``T`` (forward ``S·e^{(r−q)T}``, stdDev ``σ√T``,
  discount ``e^{−rT}``): price, delta, gamma, vega, theta, rho and vanna.
* Whole-day expiries are also priced through QuantLib's date machinery (evaluation date ``D``,
  expiry ``D + n``, ``Actual365Fixed``, flat continuous curves, ``AnalyticEuropeanEngine``),
  which pins our ``t_years`` to QuantLib's own year fraction ``n/365``.
* Vanna, charm and vomma are compared with central finite differences of QuantLib's own delta
  and vega (Richardson-extrapolated), and with finite differences of our own closed forms.

Tolerances: 1e-6 relative for price and first-order greeks, 1e-5 relative for the
finite-difference comparisons. An absolute floor applies only where the value itself is ~0:
``|x| < 1e-10`` for QuantLib's closed forms; for finite differences the floor is 1e-9 of the
greek's natural scale (e.g. ``e^{−qT}·n(0)/σ`` for vanna), because a difference quotient's
rounding error is relative to that scale, not to the (possibly vanishing) value.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import pytest
from numpy.typing import NDArray

from quanticity.analytics.bsm import bsm_greeks, bsm_price

ql = pytest.importorskip("QuantLib")

pytestmark = pytest.mark.unit

MINUTES_PER_YEAR = 365.0 * 24.0 * 60.0
SPOT = 100.0
MONEYNESS = (0.5, 0.7, 0.85, 0.95, 1.0, 1.05, 1.2, 1.5)
VOLS = (0.05, 0.2, 0.6, 1.5)
RATES = (-0.01, 0.03, 0.08)
DIVS = (0.0, 0.05)
MINUTES = (5.0, 30.0, 120.0)
DAYS = (1, 7, 30, 91, 365)
TIMES = tuple(m / MINUTES_PER_YEAR for m in MINUTES) + tuple(d / 365.0 for d in DAYS)
RTOL = 1e-6
ATOL_ZERO = 1e-10


class Grid:
    """The contracts of the grid as parallel numpy arrays (``k`` strike, ``t`` years, …)."""

    def __init__(self, times: tuple[float, ...]) -> None:
        rows = list(itertools.product(MONEYNESS, VOLS, RATES, DIVS, times, (True, False)))
        cols = list(zip(*rows, strict=True))
        self.k = SPOT * np.array(cols[0])
        self.v = np.array(cols[1])
        self.r = np.array(cols[2])
        self.q = np.array(cols[3])
        self.t = np.array(cols[4])
        self.call = np.array(cols[5], dtype=bool)
        self.s = np.full(self.k.size, SPOT)

    def __len__(self) -> int:
        return self.k.size


GRID = Grid(TIMES)


def _calculator(s: float, k: float, t: float, r: float, q: float, v: float, call: bool) -> ql.BlackCalculator:
    kind = ql.Option.Call if call else ql.Option.Put
    return ql.BlackCalculator(
        ql.PlainVanillaPayoff(kind, k), s * math.exp((r - q) * t), v * math.sqrt(t), math.exp(-r * t)
    )


def _assert_close(
    ours: NDArray[np.float64], ref: NDArray[np.float64], rtol: float, atol: float | NDArray[np.float64], what: str
) -> None:
    err = np.abs(ours - ref)
    bad = ~(err <= rtol * np.abs(ref) + atol)
    assert not bad.any(), (
        f"{what}: {bad.sum()} of {bad.size} differ; worst "
        f"{[(float(a), float(b)) for a, b in zip(ours[bad][:5], ref[bad][:5], strict=True)]}"
    )


def _quantlib_closed_forms(grid: Grid) -> dict[str, NDArray[np.float64]]:
    out: dict[str, list[float]] = {f: [] for f in ("price", "delta", "gamma", "vega", "theta", "rho", "vanna")}
    for s, k, t, r, q, v, c in zip(grid.s, grid.k, grid.t, grid.r, grid.q, grid.v, grid.call, strict=True):
        calc = _calculator(s, k, t, r, q, v, c)
        out["price"].append(calc.value())
        out["delta"].append(calc.delta(s))
        out["gamma"].append(calc.gamma(s))
        out["vega"].append(calc.vega(t))
        out["theta"].append(calc.theta(s, t))
        out["rho"].append(calc.rho(t))
        out["vanna"].append(calc.vanna(s, t))
    return {key: np.array(vals) for key, vals in out.items()}


def test_grid_covers_the_requested_ranges() -> None:
    moneyness = GRID.k / GRID.s
    assert moneyness.min() == 0.5 and moneyness.max() == 1.5
    assert GRID.v.min() == 0.05 and GRID.v.max() == 1.5
    assert GRID.r.min() == -0.01 and GRID.r.max() == 0.08
    assert GRID.q.min() == 0.0 and GRID.q.max() == 0.05
    assert GRID.t.min() == pytest.approx(5.0 / MINUTES_PER_YEAR) and GRID.t.max() == 1.0
    assert len(GRID) == 8 * 4 * 3 * 2 * 8 * 2


def test_price_and_greeks_match_quantlib_black_calculator() -> None:
    ref = _quantlib_closed_forms(GRID)
    ours = bsm_greeks(GRID.s, GRID.k, GRID.t, GRID.r, GRID.q, GRID.v, GRID.call)
    for field in ("price", "delta", "gamma", "vega", "theta", "rho", "vanna"):
        _assert_close(getattr(ours, field), ref[field], RTOL, ATOL_ZERO, field)
    # Sanity: the comparison is not vacuous (most values are far above the absolute floor).
    assert np.mean(np.abs(ref["price"]) > 1e-3) > 0.6


def test_quantlib_volga_is_vomma_per_unit_of_std_dev() -> None:
    """QuantLib 1.44's ``BlackCalculator.volga(T)`` is ∂vega/∂(σ√T) = vomma/√T, not ∂vega/∂σ.

    Checked here so that a QuantLib change of convention shows up; our vomma (∂vega/∂σ, the
    Haug definition) is checked against finite differences of QuantLib's vega below.
    """
    ours = bsm_greeks(GRID.s, GRID.k, GRID.t, GRID.r, GRID.q, GRID.v, GRID.call)
    volga = np.array(
        [
            _calculator(s, k, t, r, q, v, c).volga(t)
            for s, k, t, r, q, v, c in zip(GRID.s, GRID.k, GRID.t, GRID.r, GRID.q, GRID.v, GRID.call, strict=True)
        ]
    )
    _assert_close(ours.vomma, volga * np.sqrt(GRID.t), RTOL, ATOL_ZERO, "vomma vs QuantLib volga·√T")


def test_whole_day_expiries_match_quantlib_engine_with_dates() -> None:
    """``t_years = n/365`` equals QuantLib's Actual/365 year fraction from D to D + n days."""
    today = ql.Date(15, ql.June, 2026)
    ql.Settings.instance().evaluationDate = today
    day_count = ql.Actual365Fixed()
    spot = ql.SimpleQuote(SPOT)
    rate = ql.SimpleQuote(0.0)
    div = ql.SimpleQuote(0.0)
    vol = ql.SimpleQuote(0.2)
    process = ql.BlackScholesMertonProcess(
        ql.QuoteHandle(spot),
        ql.YieldTermStructureHandle(ql.FlatForward(today, ql.QuoteHandle(div), day_count)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, ql.QuoteHandle(rate), day_count)),
        ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), ql.QuoteHandle(vol), day_count)),
    )
    engine = ql.AnalyticEuropeanEngine(process)
    options = {}
    for days, m, c in itertools.product(DAYS, MONEYNESS, (True, False)):
        kind = ql.Option.Call if c else ql.Option.Put
        option = ql.VanillaOption(ql.PlainVanillaPayoff(kind, SPOT * m), ql.EuropeanExercise(today + days))
        option.setPricingEngine(engine)
        options[(days, m, c)] = option
    assert day_count.yearFraction(today, today + 91) == 91 / 365.0
    rows: list[tuple[float, ...]] = []
    ref: list[tuple[float, ...]] = []
    for r, q, v in itertools.product(RATES, DIVS, VOLS):
        rate.setValue(r)
        div.setValue(q)
        vol.setValue(v)
        for (days, m, c), option in options.items():
            rows.append((SPOT * m, days / 365.0, r, q, v, c))
            ref.append((option.NPV(), option.delta(), option.gamma(), option.vega(), option.theta(), option.rho()))
    k, t, r_, q_, v_, c_ = (np.array(col) for col in zip(*rows, strict=True))
    ours = bsm_greeks(SPOT, k, t, r_, q_, v_, c_.astype(bool))
    expected = np.array(ref).T
    for field, values in zip(("price", "delta", "gamma", "vega", "theta", "rho"), expected, strict=True):
        _assert_close(getattr(ours, field), values, RTOL, ATOL_ZERO, f"engine {field}")


def _richardson(fn: Callable[[float], float], x: float, h: float) -> float:
    """Central difference with one Richardson step: error O(h⁴) instead of O(h²)."""
    d_h = (fn(x + h) - fn(x - h)) / (2.0 * h)
    d_half = (fn(x + h / 2) - fn(x - h / 2)) / h
    return (4.0 * d_half - d_h) / 3.0


def _quantlib_second_order_fd(grid: Grid) -> dict[str, NDArray[np.float64]]:
    """vanna, charm, vomma from finite differences of QuantLib's own delta and vega."""
    vanna, charm, vomma = [], [], []
    for s, k, t, r, q, v, c in zip(grid.s, grid.k, grid.t, grid.r, grid.q, grid.v, grid.call, strict=True):
        hv = 1e-3 * v
        ht = 1e-3 * t
        vanna.append(
            _richardson(lambda vv, s=s, k=k, t=t, r=r, q=q, c=c: _calculator(s, k, t, r, q, vv, c).delta(s), v, hv)
        )
        vomma.append(
            _richardson(lambda vv, s=s, k=k, t=t, r=r, q=q, c=c: _calculator(s, k, t, r, q, vv, c).vega(t), v, hv)
        )
        # charm = −∂Δ/∂T: the forward, the discount and the std dev all move with T.
        charm.append(
            -_richardson(lambda tt, s=s, k=k, r=r, q=q, v=v, c=c: _calculator(s, k, tt, r, q, v, c).delta(s), t, ht)
        )
    return {"vanna": np.array(vanna), "charm": np.array(charm), "vomma": np.array(vomma)}


def _scales(grid: Grid) -> dict[str, NDArray[np.float64]]:
    """Natural size of each second-order greek (its value at d1 = d2 = 1): the FD noise floor."""
    eq = np.exp(-grid.q * grid.t)
    n0 = 1.0 / math.sqrt(2.0 * math.pi)
    return {
        "vanna": eq * n0 / grid.v,
        "charm": eq * n0 * (np.abs(grid.r - grid.q) / (grid.v * np.sqrt(grid.t)) + 1.0 / grid.t + grid.q),
        "vomma": grid.s * eq * n0 * np.sqrt(grid.t) / grid.v,
    }


def test_vanna_charm_vomma_match_finite_differences_of_quantlib() -> None:
    ref = _quantlib_second_order_fd(GRID)
    ours = bsm_greeks(GRID.s, GRID.k, GRID.t, GRID.r, GRID.q, GRID.v, GRID.call)
    scales = _scales(GRID)
    for field in ("vanna", "charm", "vomma"):
        _assert_close(getattr(ours, field), ref[field], 1e-5, 1e-9 * scales[field], f"{field} vs QuantLib FD")
    # Not vacuous: most comparisons are decided by the relative tolerance, not by the floor.
    assert np.mean(np.abs(ref["vanna"]) > 1e-3 * scales["vanna"]) > 0.4


def test_second_order_closed_forms_match_own_finite_differences() -> None:
    """vanna is both ∂Δ/∂σ and ∂vega/∂S; charm = −∂Δ/∂T; vomma = ∂vega/∂σ (our own first order)."""
    g = GRID
    ours = bsm_greeks(g.s, g.k, g.t, g.r, g.q, g.v, g.call)
    hs = 1e-3 * g.s * g.v * np.sqrt(g.t)  # small against the distribution's width S·σ·√T
    hv = 1e-3 * g.v
    ht = 1e-3 * g.t

    def fd(field: str, bump: str, h: NDArray[np.float64]) -> NDArray[np.float64]:
        def at(scale: float) -> NDArray[np.float64]:
            args = {"s": g.s, "t": g.t, "v": g.v}
            args[bump] = args[bump] + scale * h
            return getattr(bsm_greeks(args["s"], g.k, args["t"], g.r, g.q, args["v"], g.call), field)

        d_h = (at(1.0) - at(-1.0)) / (2.0 * h)
        d_half = (at(0.5) - at(-0.5)) / h
        return (4.0 * d_half - d_h) / 3.0

    scales = _scales(g)
    _assert_close(ours.vanna, fd("delta", "v", hv), 1e-5, 1e-9 * scales["vanna"], "vanna = dDelta/dvol")
    _assert_close(ours.vanna, fd("vega", "s", hs), 1e-5, 1e-9 * scales["vanna"], "vanna = dVega/dS")
    _assert_close(ours.charm, -fd("delta", "t", ht), 1e-5, 1e-9 * scales["charm"], "charm = -dDelta/dT")
    _assert_close(ours.vomma, fd("vega", "v", hv), 1e-5, 1e-9 * scales["vomma"], "vomma = dVega/dvol")


def test_charm_sign_convention_is_delta_drift_as_time_passes() -> None:
    """An OTM call loses delta as expiry approaches (charm < 0); an ITM call gains (charm > 0)."""
    otm = bsm_greeks(100.0, 110.0, 30 / 365, 0.0, 0.0, 0.2, True)
    itm = bsm_greeks(100.0, 90.0, 30 / 365, 0.0, 0.0, 0.2, True)
    assert otm.charm < 0 < itm.charm
    one_day = 1.0 / 365.0
    later = bsm_greeks(100.0, 110.0, 30 / 365 - one_day, 0.0, 0.0, 0.2, True)
    assert float(later.delta - otm.delta) == pytest.approx(float(otm.charm) * one_day, rel=0.02)


def test_expired_and_invalid_second_order_greeks() -> None:
    expired = bsm_greeks(np.array([110.0, 90.0]), 100.0, 0.0, 0.05, 0.02, 0.2, True)
    for field in (expired.vanna, expired.charm, expired.vomma):
        np.testing.assert_array_equal(field, 0.0)
    invalid = bsm_greeks(100.0, 100.0, 0.5, 0.05, 0.02, np.array([0.0, np.nan]), False)
    for field in (invalid.vanna, invalid.charm, invalid.vomma):
        assert np.isnan(field).all()


def _phi_lower_longdouble(z: np.longdouble) -> np.longdouble:
    """N(−z) for z > 2 in 80-bit precision: erfc's continued fraction, evaluated backwards."""
    x = z / np.sqrt(np.longdouble(2.0))
    frac = x
    for n in range(400, 0, -1):
        frac = x + np.longdouble(n) / np.longdouble(2.0) / frac
    return np.exp(-x * x) / np.sqrt(np.longdouble(np.pi)) / frac / np.longdouble(2.0)


@pytest.mark.skipif(np.finfo(np.longdouble).eps > 1e-18, reason="needs x87 extended precision")
@pytest.mark.parametrize(
    ("strike", "vol", "rate", "div", "t"),
    [
        (70.0, 0.2, -0.01, 0.0, 30 / 365),
        (70.0, 0.2, 0.03, 0.0, 30 / 365),
        (85.0, 0.05, -0.01, 0.05, 91 / 365),
        (95.0, 0.6, 0.03, 0.0, 120 / MINUTES_PER_YEAR),
    ],
)
def test_tiny_prices_are_right_where_quantlib_tail_is_not(
    strike: float, vol: float, rate: float, div: float, t: float
) -> None:
    """Deep out-of-the-money puts worth ~1e-10: we agree with an 80-bit reference to 1e-11.

    QuantLib's normal CDF switches to an asymptotic series below 1e-8, good to ~1e-7 there, and
    the put's two terms cancel, so its price is off by up to 5e-5 relative; these values sit under
    the 1e-10 absolute floor of the grid comparison, and this test shows which side is right.
    """
    s = np.longdouble(SPOT)
    k, v, r, q, tt = (np.longdouble(a) for a in (strike, vol, rate, div, t))
    vst = v * np.sqrt(tt)
    d1 = (np.log(s / k) + (r - q + v * v / 2) * tt) / vst
    d2 = d1 - vst
    reference = k * np.exp(-r * tt) * _phi_lower_longdouble(d2) - s * np.exp(-q * tt) * _phi_lower_longdouble(d1)
    ours = float(bsm_price(SPOT, strike, t, rate, div, vol, False))
    theirs = _calculator(SPOT, strike, t, rate, div, vol, False).value()
    assert 1e-11 < float(reference) < 1e-8
    assert abs(ours / float(reference) - 1.0) < 1e-11
    assert abs(theirs / float(reference) - 1.0) > 1e-6  # QuantLib's tail: why the grid needs its floor


# --- Hull, "Options, Futures and Other Derivatives" (values as printed, to their precision) ---
def test_hull_call_and_put_prices() -> None:
    """S=42, K=40, r=10 %, σ=20 %, T=0.5: c = 4.76, p = 0.81."""
    price = bsm_price(42.0, 40.0, 0.5, 0.1, 0.0, 0.2, np.array([True, False]))
    assert round(float(price[0]), 2) == 4.76
    assert round(float(price[1]), 2) == 0.81


def test_hull_greeks_example() -> None:
    """S=49, K=50, r=5 %, σ=20 %, T=20 weeks: c = 2.40, Δ = 0.522, Γ = 0.066, vega = 12.1,
    Θ = −4.31 per year, ρ = 8.91 (vega and ρ per 1.00 of vol / rate)."""
    g = bsm_greeks(49.0, 50.0, 20 / 52, 0.05, 0.0, 0.2, True)
    assert round(float(g.price), 2) == 2.40
    assert round(float(g.delta), 3) == 0.522
    assert round(float(g.gamma), 3) == 0.066
    assert round(float(g.vega), 1) == 12.1
    assert round(float(g.theta), 2) == -4.31
    assert round(float(g.rho), 2) == 8.91


def test_hull_index_option_with_dividend_yield() -> None:
    """Index 930, K=900, r=8 %, q=3 %, σ=20 %, T=2 months: c = 51.83."""
    assert round(float(bsm_price(930.0, 900.0, 2 / 12, 0.08, 0.03, 0.2, True)), 2) == 51.83
