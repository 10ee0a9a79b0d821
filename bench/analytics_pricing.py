"""Pricing benchmark: implied vols and greeks of a 10,000-contract chain, numba vs QuantLib.

The chain is seeded and realistic in shape: 20 expiries from 0DTE (three hours to the close) to
60 calendar days, 250 strikes per expiry spanning −6 to +4 at-the-money standard deviations
around a spot of 590 (the put wing is the heavier one in index chains), a call and a put at each
strike, rates and dividend yield of a US index ETF, and a skewed smile. Mid prices are the exact
BSM prices of that smile, so every contract is solvable and the solver does its full work (a
chain rounded to cents would hand it fewer, easier contracts).

Timed, after numba warm-up, ``repeats`` times each (best and median, ``time.perf_counter_ns``):

* (a) ``implied_vol`` of the whole chain from the mids;
* (b) ``bsm_greeks`` of the whole chain at those vols (price, delta, gamma, vega, theta, rho,
  vanna, charm, vomma);
* the SAME work contract by contract with QuantLib's fastest path, its closed-form Black
  functions (no instrument, term-structure or engine objects, which cost far more):
  ``blackFormulaImpliedStdDev`` (accuracy 1e-12 on the std dev) and one ``BlackCalculator``
  per contract for value, delta, gamma, vega, theta, rho, vanna and volga. The QuantLib loop is
  timed on an evenly spaced subset (``ql_subset`` contracts, default 1,000) and scaled to the
  chain, which the result says. This is the headline ratio: the cheapest QuantLib can do.
* for context, the same through QuantLib's instrument API as it is usually used
  (``VanillaOption.impliedVolatility`` + ``AnalyticEuropeanEngine``, ~200 contracts, scaled).

``measure()`` returns the figures in milliseconds and the speed-ups; ``python -m
bench.analytics_pricing`` prints them. ``main()`` (the entry point ``python -m bench`` calls once
``"analytics_pricing"`` is listed in ``bench/__main__.py``) also writes
``bench/results/analytics_pricing.json``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from numpy.typing import NDArray

from quanticity.analytics.bsm import bsm_greeks, bsm_price
from quanticity.analytics.iv import IVReason, implied_vol, implied_vol_detail, reason_counts

SPOT = 590.0
RATE = 0.043
DIV_YIELD = 0.013
N_EXPIRIES = 20
DAYS_PER_YEAR = 365.0
ZERO_DTE_HOURS = 3.0


def build_chain(n: int = 10_000, seed: int = 7) -> dict[str, NDArray[Any]]:
    """A seeded chain of ``n`` contracts (``n`` even; 20 expiries × n/40 strikes × call/put).

    Returns ``spot, strike, t_years, rate, div_yield, vol, is_call, price`` arrays of length n.
    """
    rng = np.random.default_rng(seed)
    per_expiry = n // N_EXPIRIES
    strikes_per_expiry = per_expiry // 2
    days = np.concatenate(([ZERO_DTE_HOURS / 24.0], np.linspace(1.0, 60.0, N_EXPIRIES - 1)))
    t_exp = days / DAYS_PER_YEAR
    atm_vol = 0.13 + 0.05 * np.exp(-days / 10.0)  # short-dated options trade richer
    z = np.linspace(-6.0, 4.0, strikes_per_expiry)
    t_list, k_list = [], []
    for t, v in zip(t_exp, atm_vol, strict=True):
        fwd = SPOT * math.exp((RATE - DIV_YIELD) * t)
        strikes = fwd * np.exp(z * v * math.sqrt(t)) * (1.0 + rng.normal(0.0, 1e-4, z.size))
        t_list.append(np.full(2 * z.size, t))
        k_list.append(np.repeat(strikes, 2))
    t_years = np.concatenate(t_list)
    strike = np.concatenate(k_list)
    is_call = np.tile([True, False], t_years.size // 2)
    pad = n - t_years.size  # n not a multiple of 40: repeat the last contracts
    if pad > 0:
        t_years = np.concatenate((t_years, t_years[-pad:]))
        strike = np.concatenate((strike, strike[-pad:]))
        is_call = np.concatenate((is_call, is_call[-pad:]))
    atm = np.interp(t_years, t_exp, atm_vol)
    log_m = np.log(strike / SPOT) / np.sqrt(np.maximum(t_years, 1e-6) * 12.0)  # smile in σ√T units
    vol = np.clip(atm * (1.0 - 0.35 * log_m + 0.25 * log_m * log_m), 0.05, 1.5)
    spot = np.full(t_years.size, SPOT)
    price = bsm_price(spot, strike, t_years, RATE, DIV_YIELD, vol, is_call)
    return {
        "spot": spot,
        "strike": strike,
        "t_years": t_years,
        "rate": np.full(t_years.size, RATE),
        "div_yield": np.full(t_years.size, DIV_YIELD),
        "vol": vol,
        "is_call": is_call,
        "price": price,
    }


def _time_ns(fn: Any, repeats: int) -> NDArray[np.int64]:
    out = np.empty(repeats, dtype=np.int64)
    for i in range(repeats):
        start = time.perf_counter_ns()
        fn()
        out[i] = time.perf_counter_ns() - start
    return out


def _quantlib_loop(chain: dict[str, NDArray[Any]], idx: NDArray[np.intp]) -> tuple[int, int]:
    """IV + greeks with QuantLib for the contracts ``idx``; returns (elapsed ns, failures)."""
    import QuantLib as ql  # test/bench dependency only, never imported by the library

    spot = chain["spot"][idx].tolist()
    strike = chain["strike"][idx].tolist()
    t_years = chain["t_years"][idx].tolist()
    rate = chain["rate"][idx].tolist()
    div = chain["div_yield"][idx].tolist()
    is_call = chain["is_call"][idx].tolist()
    price = chain["price"][idx].tolist()
    failures = 0
    start = time.perf_counter_ns()
    for s, k, t, r, q, c, p in zip(spot, strike, t_years, rate, div, is_call, price, strict=True):
        kind = ql.Option.Call if c else ql.Option.Put
        disc = math.exp(-r * t)
        fwd = s * math.exp((r - q) * t)
        try:
            std = ql.blackFormulaImpliedStdDev(kind, k, fwd, p, disc, 0.0, ql.nullDouble(), 1e-12, 200)
        except RuntimeError:
            failures += 1
            continue
        calc = ql.BlackCalculator(ql.PlainVanillaPayoff(kind, k), fwd, std, disc)
        calc.value(), calc.delta(s), calc.gamma(s), calc.vega(t), calc.theta(s, t), calc.rho(t)
        calc.vanna(s, t), calc.volga(t)
    return time.perf_counter_ns() - start, failures


def _quantlib_engine_loop(chain: dict[str, NDArray[Any]], idx: NDArray[np.intp]) -> tuple[int, int]:
    """The same with QuantLib's instrument API (how it is usually used); (elapsed ns, failures).

    ``VanillaOption`` + ``AnalyticEuropeanEngine`` on a BSM process with flat curves; the
    expiry is a date, so each contract's time is rounded to whole days (at least one): the
    work per contract is the same, the numbers are not compared.
    """
    import QuantLib as ql

    today = ql.Date(20, ql.November, 2026)
    ql.Settings.instance().evaluationDate = today
    day_count = ql.Actual365Fixed()
    spot, rate, div, vol = (ql.SimpleQuote(x) for x in (SPOT, RATE, DIV_YIELD, 0.2))
    process = ql.BlackScholesMertonProcess(
        ql.QuoteHandle(spot),
        ql.YieldTermStructureHandle(ql.FlatForward(today, ql.QuoteHandle(div), day_count)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, ql.QuoteHandle(rate), day_count)),
        ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), ql.QuoteHandle(vol), day_count)),
    )
    engine = ql.AnalyticEuropeanEngine(process)
    rows = zip(
        chain["strike"][idx].tolist(),
        chain["t_years"][idx].tolist(),
        chain["is_call"][idx].tolist(),
        chain["price"][idx].tolist(),
        strict=True,
    )
    failures = 0
    start = time.perf_counter_ns()
    for k, t, c, p in rows:
        kind = ql.Option.Call if c else ql.Option.Put
        expiry = today + max(1, round(t * DAYS_PER_YEAR))
        option = ql.VanillaOption(ql.PlainVanillaPayoff(kind, k), ql.EuropeanExercise(expiry))
        option.setPricingEngine(engine)
        try:
            iv = option.impliedVolatility(p, process, 1e-12, 200, 1e-4, 10.0)
        except RuntimeError:
            failures += 1
            continue
        vol.setValue(iv)
        option.NPV(), option.delta(), option.gamma(), option.vega(), option.theta(), option.rho()
    return time.perf_counter_ns() - start, failures


def measure(n: int = 10_000, repeats: int = 20, ql_subset: int = 1_000) -> dict[str, Any]:
    """Time IV + greeks of an ``n``-contract chain with numba and with a QuantLib loop.

    Returns milliseconds (best and median over ``repeats``), the solver's evaluation counts,
    the QuantLib figure scaled from ``ql_subset`` contracts, and the speed-up (QuantLib best /
    numba best, IV + greeks together).
    """
    chain = build_chain(n)
    args = (chain["spot"], chain["strike"], chain["t_years"], chain["rate"], chain["div_yield"])
    is_call, price = chain["is_call"], chain["price"]

    result, evals = implied_vol_detail(price, *args, is_call)  # warm-up (JIT or cache load)
    iv = result.iv
    bsm_greeks(*args, iv, is_call)
    solved = result.reason == IVReason.OK
    # Accuracy as the solver sees it: how well the vols reprice the mids (a deep in-the-money
    # contract's vol is only as recoverable as its time value is above the price's rounding).
    again = bsm_price(*args, iv, is_call)
    reprice_err = float(np.max(np.abs(again[solved] - price[solved]) / np.maximum(price[solved], 1e-2)))
    vol_err_median = float(np.median(np.abs(iv[solved] / chain["vol"][solved] - 1.0)))

    iv_ns = _time_ns(lambda: implied_vol(price, *args, is_call), repeats)
    greeks_ns = _time_ns(lambda: bsm_greeks(*args, iv, is_call), repeats)
    both_ns = _time_ns(lambda: bsm_greeks(*args, implied_vol(price, *args, is_call).iv, is_call), repeats)

    subset = np.linspace(0, n - 1, min(ql_subset, n)).round().astype(np.intp)
    _quantlib_loop(chain, subset[:10])  # import and first-call costs out of the timing
    ql_runs = [_quantlib_loop(chain, subset) for _ in range(3)]
    ql_best_ns = min(ns for ns, _ in ql_runs)
    ql_ms = ql_best_ns / 1e6 * n / subset.size
    engine_subset = subset[:: max(1, subset.size // 200)]
    _quantlib_engine_loop(chain, engine_subset[:5])
    engine_ns, engine_failures = min(_quantlib_engine_loop(chain, engine_subset) for _ in range(2))
    engine_ms = engine_ns / 1e6 * n / engine_subset.size
    numba_best_ms = float(both_ns.min()) / 1e6
    return {
        "contracts": n,
        "repeats": repeats,
        "iv_ms_best": float(iv_ns.min()) / 1e6,
        "iv_ms_median": float(np.median(iv_ns)) / 1e6,
        "greeks_ms_best": float(greeks_ns.min()) / 1e6,
        "greeks_ms_median": float(np.median(greeks_ns)) / 1e6,
        "iv_plus_greeks_ms_best": numba_best_ms,
        "iv_plus_greeks_ms_median": float(np.median(both_ns)) / 1e6,
        "iv_evaluations_mean": float(evals[solved].mean()),
        "iv_evaluations_max": int(evals.max()),
        "iv_reasons": reason_counts(result),
        "iv_reprice_max_err_rel_to_price_or_1_cent": reprice_err,
        "iv_median_rel_err_vs_true_vol": vol_err_median,
        "quantlib_ms_scaled": ql_ms,
        "quantlib_note": (
            f"QuantLib blackFormulaImpliedStdDev + BlackCalculator greeks, timed on {subset.size} evenly "
            f"spaced contracts (best of 3) and scaled to {n}; {ql_runs[0][1]} IV failures in the subset"
        ),
        "speedup_vs_quantlib": ql_ms / numba_best_ms,
        "quantlib_engine_ms_scaled": engine_ms,
        "quantlib_engine_note": (
            f"QuantLib VanillaOption.impliedVolatility + AnalyticEuropeanEngine greeks (NPV, delta, gamma, "
            f"vega, theta, rho; expiries rounded to whole days), timed on {engine_subset.size} contracts and "
            f"scaled to {n}; {engine_failures} IV failures"
        ),
        "speedup_vs_quantlib_engine": engine_ms / numba_best_ms,
    }


def main() -> None:
    """Print the figures and write ``bench/results/analytics_pricing.json`` (``make bench``)."""
    from bench.common import write_result

    result = measure()
    for key, value in result.items():
        print(f"{key:>28}: {value}")
    print(f"written to {write_result('analytics_pricing', result)}")


if __name__ == "__main__":
    print(measure())
