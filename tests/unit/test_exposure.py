"""Chain validation and dealer exposures, checked against independent plain-Python arithmetic.

Every expected number here is computed in the test with ``math`` (``math.erf``, finite
differences for vanna and charm), never with the kernels under test, so a wrong closed form or a
wrong sign in :mod:`quanticity.analytics.exposure` cannot cancel out.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quanticity.analytics.bsm import bsm_greeks
from quanticity.analytics.chain import (
    REJECT_REASONS,
    SECONDS_PER_TRADING_YEAR,
    Chain,
    trading_years_to_expiry,
)
from quanticity.analytics.exposure import (
    _gamma_terms,
    _profile_on_grid,
    dealer_exposures,
    gamma_profile,
    max_pain,
    zero_gamma_level,
)
from quanticity.messages import OptionContract, OptionQuote, Right

pytestmark = pytest.mark.unit

ET = ZoneInfo("America/New_York")


# --- independent reference ------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    """One contract of a hand-built chain."""

    strike: float
    t: float
    call: bool
    iv: float
    oi: int
    expiry: str = "E1"


def _ncdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _d1(s: float, k: float, t: float, r: float, q: float, v: float) -> float:
    return (math.log(s / k) + (r - q + 0.5 * v * v) * t) / (v * math.sqrt(t))


def ref_delta(s: float, k: float, t: float, r: float, q: float, v: float, call: bool) -> float:
    d1 = _d1(s, k, t, r, q, v)
    return math.exp(-q * t) * (_ncdf(d1) if call else _ncdf(d1) - 1.0)


def ref_gamma(s: float, k: float, t: float, r: float, q: float, v: float) -> float:
    d1 = _d1(s, k, t, r, q, v)
    return math.exp(-q * t) * math.exp(-0.5 * d1 * d1) / math.sqrt(2 * math.pi) / (s * v * math.sqrt(t))


def ref_vanna(s: float, k: float, t: float, r: float, q: float, v: float, call: bool) -> float:
    """∂Δ/∂σ by central difference (independent of the closed form in the kernel)."""
    h = 1e-5
    return (ref_delta(s, k, t, r, q, v + h, call) - ref_delta(s, k, t, r, q, v - h, call)) / (2 * h)


def ref_charm(s: float, k: float, t: float, r: float, q: float, v: float, call: bool) -> float:
    """∂Δ/∂(calendar time) = −∂Δ/∂T by central difference."""
    h = 1e-6 * t
    return -(ref_delta(s, k, t + h, r, q, v, call) - ref_delta(s, k, t - h, r, q, v, call)) / (2 * h)


def ref_contract(row: Row, s: float, r: float, q: float) -> dict[str, float]:
    """Dealer exposures of one contract (SPEC formulas, dealers long calls / short puts)."""
    sign = 1.0 if row.call else -1.0
    w = row.oi * 100.0
    return {
        "gex": sign * ref_gamma(s, row.strike, row.t, r, q, row.iv) * w * s * s * 0.01,
        "dex": ref_delta(s, row.strike, row.t, r, q, row.iv, row.call) * w * s,
        "vanna_ex": sign * ref_vanna(s, row.strike, row.t, r, q, row.iv, row.call) * w * s * 0.01,
        "charm_ex": sign * ref_charm(s, row.strike, row.t, r, q, row.iv, row.call) * w * s,
    }


def ref_profile(rows: Sequence[Row], x: float, r: float, q: float, min_oi: int = 5) -> float:
    """Total dealer GEX if the spot were ``x`` (each contract's own IV and time)."""
    total = 0.0
    for row in rows:
        if row.oi >= min_oi:
            sign = 1.0 if row.call else -1.0
            total += sign * ref_gamma(x, row.strike, row.t, r, q, row.iv) * row.oi * 100.0 * x * x * 0.01
    return total


def ref_profile_scale(rows: Sequence[Row], x: float, r: float, q: float) -> float:
    """Σ|terms| of :func:`ref_profile`: the scale a cancelling sum is judged against."""
    return sum(abs(ref_profile([row], x, r, q)) for row in rows)


def ref_root(rows: Sequence[Row], lo: float, hi: float, r: float, q: float) -> float:
    """Bisection of :func:`ref_profile` on a bracket with a sign change."""
    f_lo = ref_profile(rows, lo, r, q)
    assert f_lo * ref_profile(rows, hi, r, q) < 0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        f_mid = ref_profile(rows, mid, r, q)
        if (f_mid > 0) == (f_lo > 0):
            lo, f_lo = mid, f_mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def ref_max_pain(rows: Sequence[Row], min_oi: int = 5) -> dict[str, float]:
    """Brute force: payout to holders at every listed strike of each expiry; lowest minimiser."""
    out: dict[str, float] = {}
    for expiry in sorted({row.expiry for row in rows}):
        listed = sorted({row.strike for row in rows if row.expiry == expiry})
        held = [row for row in rows if row.expiry == expiry and row.oi >= min_oi]
        if not held:
            continue

        def pain(settle: float, held: list[Row] = held) -> float:
            return sum(
                row.oi * (max(settle - row.strike, 0.0) if row.call else max(row.strike - settle, 0.0)) for row in held
            )

        out[expiry] = min(listed, key=lambda k: (pain(k), k))
    return out


def make_chain(rows: Sequence[Row], spot: float, rate: float = 0.03, div_yield: float = 0.01) -> Chain:
    chain, rejects = Chain.from_arrays(
        strike=[row.strike for row in rows],
        t_years=[row.t for row in rows],
        is_call=[row.call for row in rows],
        iv=[row.iv for row in rows],
        oi=[row.oi for row in rows],
        expiry=[row.expiry for row in rows],
        spot=spot,
        rate=rate,
        div_yield=div_yield,
    )
    assert not any(rejects.values()), rejects
    return chain


# --- greeks ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("call", [True, False])
def test_kernel_gamma_and_delta_match_bsm_greeks(call: bool) -> None:
    """One contract per (expiry, strike) cell, so each cell's GEX/DEX exposes that contract's Γ/Δ."""
    spot, rate, q = 590.0, 0.045, 0.013
    strikes = np.array([450.0, 560.0, 585.0, 590.0, 600.0, 640.0, 700.0, 590.0, 575.0])
    times = np.array([0.5, 0.1, 0.002, 0.04, 0.25, 1.0, 0.08, 0.0003, 2.0])
    vols = np.array([0.3, 0.2, 0.14, 0.16, 0.18, 0.22, 0.5, 0.12, 0.25])
    oi = np.arange(10, 10 + len(strikes)) * 7
    chain, _ = Chain.from_arrays(
        strike=strikes, t_years=times, is_call=call, iv=vols, oi=oi, spot=spot, rate=rate, div_yield=q
    )
    cells = dealer_exposures(chain).by_strike_expiry
    greeks = bsm_greeks(spot, chain.strike, chain.t_years, rate, q, chain.iv, call)
    sign = 1.0 if call else -1.0
    w = chain.oi.astype(float)
    for i in range(len(chain)):  # cells are sorted like the chain's rows: (expiry, strike)
        assert cells["strike"][i] == chain.strike[i]
    np.testing.assert_allclose(cells["gex"] / (sign * w * spot * spot), greeks.gamma, rtol=1e-10)
    np.testing.assert_allclose(cells["dex"] / (w * 100 * spot), greeks.delta, rtol=1e-9, atol=1e-15)


def test_vanna_and_charm_match_finite_differences() -> None:
    spot, rate, q = 100.0, 0.05, 0.02
    rows = [
        Row(k, t, c, v, 100) for k, t, c, v in [(90, 0.5, True, 0.25), (105, 0.1, False, 0.3), (100, 1.0, True, 0.2)]
    ]
    exposures = dealer_exposures(make_chain(rows, spot, rate, q))
    expected = [ref_contract(row, spot, rate, q) for row in rows]
    assert exposures.vanna_ex == pytest.approx(sum(e["vanna_ex"] for e in expected), rel=1e-6)
    assert exposures.charm_ex == pytest.approx(sum(e["charm_ex"] for e in expected), rel=1e-5)


# --- exposures of a hand-built chain --------------------------------------------------------------
SMALL_SPOT = 100.0
SMALL_ROWS = [
    Row(95.0, 0.05, False, 0.25, 1200, "2026-11-27"),
    Row(95.0, 0.05, True, 0.25, 300, "2026-11-27"),  # shares (K, t, σ) with the put above
    Row(100.0, 0.05, True, 0.20, 900, "2026-11-27"),
    Row(100.0, 0.05, False, 0.21, 400, "2026-11-27"),  # same strike, different σ
    Row(105.0, 0.05, True, 0.18, 2500, "2026-11-27"),
    Row(100.0, 0.30, False, 0.22, 700, "2027-02-19"),
    Row(110.0, 0.30, True, 0.19, 1500, "2027-02-19"),
]


def test_small_chain_totals_by_strike_and_by_cell() -> None:
    rate, q = 0.03, 0.01
    exposures = dealer_exposures(make_chain(SMALL_ROWS, SMALL_SPOT, rate, q))
    per = [ref_contract(row, SMALL_SPOT, rate, q) for row in SMALL_ROWS]

    assert exposures.gex == pytest.approx(sum(p["gex"] for p in per), rel=1e-10)
    assert exposures.dex == pytest.approx(sum(p["dex"] for p in per), rel=1e-10)
    assert exposures.vanna_ex == pytest.approx(sum(p["vanna_ex"] for p in per), rel=1e-6)
    assert exposures.charm_ex == pytest.approx(sum(p["charm_ex"] for p in per), rel=1e-5)
    calls = [p["gex"] for p, row in zip(per, SMALL_ROWS, strict=True) if row.call]
    puts = [p["gex"] for p, row in zip(per, SMALL_ROWS, strict=True) if not row.call]
    assert exposures.call_gex == pytest.approx(sum(calls), rel=1e-10)
    assert exposures.put_gex == pytest.approx(sum(puts), rel=1e-10)
    assert exposures.contracts_used == len(SMALL_ROWS) and exposures.contracts_skipped == 0

    by_strike = exposures.by_strike
    assert by_strike["strike"].tolist() == [95.0, 100.0, 105.0, 110.0]
    for j, strike in enumerate(by_strike["strike"]):
        mine = [(p, row) for p, row in zip(per, SMALL_ROWS, strict=True) if row.strike == strike]
        assert by_strike["gex"][j] == pytest.approx(sum(p["gex"] for p, _ in mine), rel=1e-10)
        assert by_strike["dex"][j] == pytest.approx(sum(p["dex"] for p, _ in mine), rel=1e-10)
        assert by_strike["call_gex"][j] == pytest.approx(sum(p["gex"] for p, r in mine if r.call), rel=1e-10)
        assert by_strike["put_gex"][j] == pytest.approx(sum(p["gex"] for p, r in mine if not r.call), rel=1e-10)
        assert by_strike["call_oi"][j] == sum(r.oi for _, r in mine if r.call)
        assert by_strike["put_oi"][j] == sum(r.oi for _, r in mine if not r.call)

    frame = exposures.by_strike_expiry_frame()
    cells = {(row.expiry, row.strike) for row in SMALL_ROWS}
    assert set(frame.index) == cells
    for expiry, strike in cells:
        mine = [p for p, row in zip(per, SMALL_ROWS, strict=True) if (row.expiry, row.strike) == (expiry, strike)]
        assert frame.loc[(expiry, strike), "gex"] == pytest.approx(sum(p["gex"] for p in mine), rel=1e-10)
        assert frame.loc[(expiry, strike), "charm_ex"] == pytest.approx(sum(p["charm_ex"] for p in mine), rel=1e-5)
    assert exposures.by_strike_frame().loc[105.0, "gex"] == pytest.approx(by_strike["gex"][2])

    # Levels, from the reference per-strike sums.
    pairs = list(zip(per, SMALL_ROWS, strict=True))
    net = {k: sum(p["gex"] for p, r in pairs if r.strike == k) for k in (95.0, 100.0, 105.0, 110.0)}
    call_gex = {k: sum(p["gex"] for p, r in pairs if r.strike == k and r.call) for k in net}
    put_gex = {k: sum(p["gex"] for p, r in pairs if r.strike == k and not r.call) for k in net}
    assert exposures.max_abs_gex_strike == max(net, key=lambda k: abs(net[k]))
    assert exposures.call_wall == max(call_gex, key=lambda k: call_gex[k])
    assert exposures.put_wall == min(put_gex, key=lambda k: put_gex[k])


def test_max_abs_gex_is_the_largest_magnitude_even_when_negative() -> None:
    """Regression: an earlier system returned the *minimum*; a huge put strike must win."""
    rows = [
        Row(96.0, 0.1, False, 0.2, 40_000),  # large negative GEX: the answer
        Row(100.0, 0.1, True, 0.2, 3_000),  # the largest positive GEX (argmax of the signed value)
        Row(100.0, 0.1, False, 0.2, 1_000),
        Row(104.0, 0.1, True, 0.2, 50),  # the smallest |GEX| (argmin of the absolute value)
    ]
    exposures = dealer_exposures(make_chain(rows, 100.0))
    net = {k: sum(ref_contract(r, 100.0, 0.03, 0.01)["gex"] for r in rows if r.strike == k) for k in (96, 100, 104)}
    assert net[96] < 0 < net[100] and abs(net[96]) > abs(net[100]) > abs(net[104])
    assert exposures.max_abs_gex_strike == 96.0
    assert exposures.put_wall == 96.0
    assert exposures.call_wall == 100.0

    # …and a large positive strike wins over a smaller negative one (not "most negative").
    rows2 = [Row(96.0, 0.1, False, 0.2, 2_000), Row(101.0, 0.1, True, 0.2, 30_000)]
    assert dealer_exposures(make_chain(rows2, 100.0)).max_abs_gex_strike == 101.0


def test_oi_below_five_is_ignored() -> None:
    noise = [Row(97.0, 0.05, True, 0.3, 4), Row(99.0, 0.05, False, 0.3, 1), Row(140.0, 0.3, True, 0.4, 3)]
    base = dealer_exposures(make_chain(SMALL_ROWS, SMALL_SPOT))
    noisy = dealer_exposures(make_chain(SMALL_ROWS + noise, SMALL_SPOT))
    for name in ("gex", "dex", "vanna_ex", "charm_ex", "call_gex", "put_gex", "max_abs_gex_strike", "call_wall"):
        assert getattr(noisy, name) == pytest.approx(getattr(base, name), rel=1e-12)
    assert noisy.contracts_used == base.contracts_used == len(SMALL_ROWS)
    assert 97.0 in noisy.by_strike["strike"]  # listed, but with nothing counted
    row97 = noisy.by_strike[noisy.by_strike["strike"] == 97.0][0]
    assert row97["gex"] == 0.0 and row97["call_oi"] == 0
    assert max_pain(make_chain(SMALL_ROWS + noise, SMALL_SPOT)).keys() == max_pain(make_chain(SMALL_ROWS, 100)).keys()
    # Exactly 5 counts; the threshold is a parameter.
    five = dealer_exposures(make_chain([Row(100.0, 0.1, True, 0.2, 5)], 100.0))
    assert five.contracts_used == 1 and five.gex > 0
    assert dealer_exposures(make_chain(SMALL_ROWS, SMALL_SPOT), min_oi=1000).contracts_used == 3


def test_empty_chain_and_bad_spot_do_not_raise() -> None:
    empty, rejects = Chain.from_arrays(strike=[], t_years=[], is_call=[], iv=[], oi=[], spot=100.0)
    assert len(empty) == 0 and sum(rejects.values()) == 0
    exposures = dealer_exposures(empty)
    assert exposures.gex == 0.0 and math.isnan(exposures.max_abs_gex_strike) and math.isnan(exposures.call_wall)
    assert math.isnan(zero_gamma_level(empty))
    assert max_pain(empty) == {}

    for spot in (math.nan, 0.0, -5.0, math.inf):
        chain = make_chain(SMALL_ROWS, spot)
        bad = dealer_exposures(chain)
        assert math.isnan(bad.gex) and math.isnan(bad.max_abs_gex_strike)
        assert math.isnan(zero_gamma_level(chain))


# --- zero gamma -----------------------------------------------------------------------------------
FLIP_ROWS = [
    Row(95.0, 0.1, False, 0.2, 5_000),
    Row(97.0, 0.1, False, 0.22, 2_000),
    Row(103.0, 0.1, True, 0.18, 3_000),
    Row(106.0, 0.2, True, 0.2, 4_000),
]


def test_zero_gamma_on_a_known_flip() -> None:
    rate, q = 0.03, 0.01
    spot = 100.0
    chain = make_chain(FLIP_ROWS, spot, rate, q)
    level = zero_gamma_level(chain)
    # Independent bracket: the reference profile changes sign between 95 and 106 exactly once.
    grid = np.linspace(90.0, 110.0, 201)
    values = [ref_profile(FLIP_ROWS, x, rate, q) for x in grid]
    changes = [i for i in range(len(grid) - 1) if (values[i] > 0) != (values[i + 1] > 0)]
    assert len(changes) == 1
    lo, hi = grid[changes[0]], grid[changes[0] + 1]
    assert lo <= level <= hi
    assert level == pytest.approx(ref_root(FLIP_ROWS, lo, hi, rate, q), abs=1e-6)
    scale = ref_profile_scale(FLIP_ROWS, level, rate, q)
    assert abs(ref_profile(FLIP_ROWS, level, rate, q)) <= 1e-8 * scale
    # gamma_profile is the same curve in the same units.
    np.testing.assert_allclose(
        gamma_profile(chain, grid[::20]), [ref_profile(FLIP_ROWS, x, rate, q) for x in grid[::20]], rtol=1e-10
    )


def test_gamma_profile_keeps_calls_and_puts_of_different_vols_apart() -> None:
    """SMALL_ROWS has a same-strike call/put pair with equal vols (merged) and one with different vols (not)."""
    xs = np.array([92.0, 96.5, 100.0, 103.0, 108.0])
    expected = [ref_profile(SMALL_ROWS, x, 0.03, 0.01) for x in xs]
    np.testing.assert_allclose(gamma_profile(make_chain(SMALL_ROWS, SMALL_SPOT), xs), expected, rtol=1e-10)


def test_grid_recurrence_matches_direct_evaluation() -> None:
    """The zero-gamma grid's Gaussian recurrence equals Σ c·exp(−(a·u + b)²/2) evaluated directly.

    Mixes a one-minute 0DTE contract (|d| leaves the ±10 window within a step), short- and
    long-dated ones, on a grid of 301 points (a long recurrence walk).
    """
    rows = [
        Row(100.0, 60.0 / SECONDS_PER_TRADING_YEAR, True, 0.15, 900),
        Row(99.0, 0.001, False, 0.15, 2_000),
        Row(101.0, 0.004, True, 0.2, 700),
        Row(95.0, 0.1, False, 0.25, 5_000),
        Row(108.0, 0.5, True, 0.3, 3_000),
        Row(80.0, 2.0, False, 0.4, 8_000),
    ]
    chain = make_chain(rows, 100.0)
    a, b, c, n = _gamma_terms(chain.strike, chain.t_years, chain.iv, chain.is_call, chain.oi, 0.03, 0.01, 5)
    assert n == len(rows)
    u0, u1, m = math.log(85.0), math.log(115.0), 301
    grid = _profile_on_grid(a, b, c, n, u0, (u1 - u0) / (m - 1), m)
    u = u0 + (u1 - u0) / (m - 1) * np.arange(m)
    direct = (c[:n, None] * np.exp(-0.5 * (a[:n, None] * u + b[:n, None]) ** 2)).sum(axis=0)
    np.testing.assert_allclose(grid, direct, rtol=1e-11, atol=1e-14 * np.abs(c[:n]).sum())


def test_zero_gamma_picks_the_sign_change_nearest_spot() -> None:
    rate, q = 0.0, 0.0
    rows = [
        Row(90.0, 0.05, False, 0.2, 3_000),
        Row(100.0, 0.05, True, 0.2, 3_000),
        Row(110.0, 0.05, False, 0.2, 3_000),
    ]
    roots = [ref_root(rows, 90.0, 100.0, rate, q), ref_root(rows, 100.0, 110.0, rate, q)]
    for spot in (97.0, 103.0):
        level = zero_gamma_level(make_chain(rows, spot, rate, q), grid_pct=0.15, points=61)
        nearest = min(roots, key=lambda root: abs(root - spot))
        assert level == pytest.approx(nearest, abs=1e-6)


def test_zero_gamma_is_nan_without_a_sign_change() -> None:
    calls_only = [Row(95.0 + i, 0.1, True, 0.2, 1_000) for i in range(10)]
    assert math.isnan(zero_gamma_level(make_chain(calls_only, 100.0)))
    puts_only = [Row(95.0 + i, 0.1, False, 0.2, 1_000) for i in range(10)]
    assert math.isnan(zero_gamma_level(make_chain(puts_only, 100.0)))
    # A flip outside the ±10 % grid is not reported; a wider grid finds it.
    far = [Row(70.0, 0.1, False, 0.1, 50_000), Row(100.0, 0.1, True, 0.2, 1_000)]
    chain = make_chain(far, 100.0)
    assert math.isnan(zero_gamma_level(chain, grid_pct=0.1))
    assert 70.0 < zero_gamma_level(chain, grid_pct=0.4, points=81) < 90.0


# --- max pain -------------------------------------------------------------------------------------
def test_max_pain_matches_brute_force() -> None:
    rows = [
        Row(90.0, 0.1, True, 0.2, 100, "2026-12-18"),
        Row(90.0, 0.1, False, 0.2, 2_000, "2026-12-18"),
        Row(95.0, 0.1, True, 0.2, 800, "2026-12-18"),
        Row(95.0, 0.1, False, 0.2, 900, "2026-12-18"),
        Row(100.0, 0.1, True, 0.2, 3_000, "2026-12-18"),
        Row(100.0, 0.1, False, 0.2, 300, "2026-12-18"),
        Row(105.0, 0.1, True, 0.2, 2_500, "2026-12-18"),
        Row(110.0, 0.1, False, 0.2, 40, "2026-12-18"),
        Row(100.0, 0.4, True, 0.2, 10, "2027-03-19"),
        Row(120.0, 0.4, False, 0.2, 1_000, "2027-03-19"),
        Row(80.0, 0.4, True, 0.2, 1_000, "2027-03-19"),
        Row(150.0, 0.4, True, 0.2, 3, "2027-06-18"),  # only OI < 5: no max pain for this expiry
    ]
    expected = ref_max_pain(rows)
    assert max_pain(make_chain(rows, 100.0)) == expected
    assert set(expected) == {"2026-12-18", "2027-03-19"}
    # The hand computation of the first expiry: payout at 95 = 100·5 + 300·5 + 40·15 = 2,600 (the least).
    assert expected["2026-12-18"] == 95.0


# --- validation -----------------------------------------------------------------------------------
NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=ET)
NOW_NS = int(NOW.timestamp()) * 1_000_000_000


def quote(
    strike: float = 590.0, right: Right = Right.CALL, expiry: str = "2026-11-27", ts: int = 1, **kw: float
) -> OptionQuote:
    """A valid SPY quote unless ``kw`` overrides a field (``open_interest`` included)."""
    fields: dict[str, float] = dict(
        bid=1.0, ask=1.1, iv=0.15, delta=0.5, gamma=0.05, vega=0.3, theta=-0.2, underlying_price=590.0
    )
    fields.update(kw)
    oi = int(fields.pop("open_interest", 100))
    return OptionQuote(
        ts_event=ts,
        ts_init=ts,
        contract=OptionContract("SPY", expiry, strike, right),
        open_interest=oi,
        volume=10,
        **fields,
    )


def test_every_rejection_reason_is_counted() -> None:
    quotes = [
        quote(590.0),  # good
        quote(591.0, Right.PUT),  # good
        quote(0.0),  # bad_strike
        quote(-5.0),  # bad_strike
        quote(590.0, expiry="2026-13-45"),  # bad_expiry
        quote(590.0, expiry="2026-11-19"),  # expired
        quote(592.0, bid=-0.01),  # bad_price (negative)
        quote(593.0, ask=math.nan),  # bad_price (non-finite)
        quote(594.0, bid=1.2, ask=1.1),  # crossed
        quote(595.0, iv=math.nan),  # bad_iv
        quote(596.0, iv=math.inf),  # bad_iv
        quote(597.0, gamma=math.nan),  # bad_greek
        quote(598.0, delta=math.inf),  # bad_greek
        quote(599.0, theta=math.nan),  # bad_greek
        quote(600.0, open_interest=0),  # bad_oi
        quote(601.0, open_interest=-3),  # bad_oi
        quote(590.0, ts=0, open_interest=7),  # duplicate: older than the first good quote
        quote(0.0, bid=-1.0, iv=math.nan),  # several faults: counted once, under the first reason
    ]
    chain, rejects = Chain.from_quotes(quotes, spot=590.0, rate=0.045, div_yield=0.013, now_ns=NOW_NS)
    assert set(rejects) == set(REJECT_REASONS)
    assert rejects == {
        "bad_strike": 3,
        "bad_expiry": 1,
        "expired": 1,
        "bad_price": 2,
        "crossed": 1,
        "bad_iv": 2,
        "bad_greek": 3,
        "bad_oi": 2,
        "duplicate": 1,
    }
    assert len(chain) == 2 and sum(rejects.values()) + len(chain) == len(quotes)
    assert chain.strike.tolist() == [590.0, 591.0]
    assert chain.oi.tolist() == [100, 100]  # the newer duplicate (ts=1, OI 100) was kept
    assert chain.expiries == ("2026-11-27",)
    # Trading time to the 2026-11-27 close (Thanksgiving week): 4 h today, Mon–Wed 6.5 h, Friday half day.
    seconds = 4 * 3600 + 3 * 6.5 * 3600 + 3.5 * 3600
    assert chain.t_years[0] == pytest.approx(seconds / SECONDS_PER_TRADING_YEAR, rel=1e-12)
    assert chain.is_call.tolist() == [True, False]


def test_from_arrays_counts_the_same_reasons_and_never_raises() -> None:
    chain, rejects = Chain.from_arrays(
        strike=[100, 0, 100, 101, 102, 103, 104, 100],
        t_years=[0.1, 0.1, math.nan, -0.01, 0.1, 0.1, 0.1, 0.1],
        is_call=[True] * 8,
        iv=[0.2, 0.2, 0.2, 0.2, math.nan, 0.2, 0.2, 0.2],
        oi=[10, 10, 10, 10, 10, 0, math.nan, 20],
        bid=[1, 1, 1, 1, 1, 1, 1, 1],
        ask=[2, 2, 2, 2, 2, 2, 2, 2],
        spot=100.0,
    )
    assert rejects["bad_strike"] == 1 and rejects["bad_expiry"] == 1 and rejects["expired"] == 1
    assert rejects["bad_iv"] == 1 and rejects["bad_oi"] == 2 and rejects["duplicate"] == 1
    assert len(chain) == 1 and chain.oi.tolist() == [20]  # the last row of a duplicated contract wins
    with pytest.raises(ValueError):
        chain.strike[0] = 1.0  # frozen arrays


def test_default_time_to_expiry_is_trading_time() -> None:
    year = SECONDS_PER_TRADING_YEAR
    assert trading_years_to_expiry("2026-11-20", NOW_NS) == pytest.approx(4 * 3600 / year)
    assert trading_years_to_expiry("2026-11-23", NOW_NS) == pytest.approx(10.5 * 3600 / year)
    assert trading_years_to_expiry("2026-11-19", NOW_NS) == 0.0
    after_close = int(dt.datetime(2026, 11, 20, 17, 0, tzinfo=ET).timestamp()) * 1_000_000_000
    assert trading_years_to_expiry("2026-11-20", after_close) == pytest.approx(60 / year)  # one-minute floor


# --- property -------------------------------------------------------------------------------------
_BAD = {
    "strike": [0.0, -1.0, math.nan, math.inf],
    "t": [0.0, -0.1, math.nan, math.inf],
    "iv": [0.0, -0.2, math.nan, math.inf],
    "oi": [0.0, -3.0, math.nan],
}


@st.composite
def random_chains(draw: st.DrawFn) -> tuple[Chain, dict[str, int], int]:
    """Mostly valid chains (any strikes, times, vols, OI, market) with a few corrupted cells."""
    n = draw(st.integers(0, 40))
    spot = draw(st.floats(5.0, 2_000.0))
    columns: dict[str, list[float]] = {
        "strike": [spot * x for x in draw(st.lists(st.floats(0.05, 3.0), min_size=n, max_size=n))],
        "t": draw(st.lists(st.floats(1e-5, 3.0), min_size=n, max_size=n)),
        "iv": draw(st.lists(st.floats(0.005, 4.0), min_size=n, max_size=n)),
        "oi": [float(x) for x in draw(st.lists(st.integers(1, 200_000), min_size=n, max_size=n))],
    }
    if n:
        # Snap some strikes to a few shared levels so calls/puts/expiries share cells.
        levels = [spot * f for f in (0.9, 1.0, 1.1)]
        for i in draw(st.lists(st.integers(0, n - 1), max_size=n)):
            columns["strike"][i] = levels[i % 3]
        for i, name, which in draw(
            st.lists(st.tuples(st.integers(0, n - 1), st.sampled_from(sorted(_BAD)), st.integers(0, 3)), max_size=4)
        ):
            columns[name][i] = _BAD[name][which % len(_BAD[name])]
    expiry = draw(st.lists(st.sampled_from(["2026-12-18", "2027-01-15", "2027-03-19"]), min_size=n, max_size=n))
    chain, rejects = Chain.from_arrays(
        strike=columns["strike"],
        t_years=columns["t"],
        is_call=draw(st.lists(st.booleans(), min_size=n, max_size=n)),
        iv=columns["iv"],
        oi=columns["oi"],
        expiry=expiry,
        spot=spot,
        rate=draw(st.floats(-0.02, 0.15)),
        div_yield=draw(st.floats(0.0, 0.08)),
    )
    return chain, rejects, n


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_chains())
def test_random_chains_never_raise_and_stay_finite(case: tuple[Chain, dict[str, int], int]) -> None:
    chain, rejects, n = case
    assert sum(rejects.values()) + len(chain) == n
    exposures = dealer_exposures(chain)
    for name in ("gex", "dex", "vanna_ex", "charm_ex", "call_gex", "put_gex"):
        assert math.isfinite(getattr(exposures, name)), name
    assert 0 <= exposures.contracts_skipped <= exposures.contracts_used <= len(chain)
    if not math.isnan(exposures.max_abs_gex_strike):
        assert exposures.max_abs_gex_strike in chain.strikes
    level = zero_gamma_level(chain)
    if not math.isnan(level):
        assert chain.spot * 0.9 * (1 - 1e-9) <= level <= chain.spot * 1.1 * (1 + 1e-9)
    for expiry, strike in max_pain(chain).items():
        assert strike in chain.strike[chain.expiry_idx == chain.expiries.index(expiry)]
