"""Exposure benchmark: dealer exposures and zero-gamma level of a 10,000-contract chain on one core.

The analytics budget per issue is 5 ms for IVs, all greeks, exposures and the zero-gamma level of
a symbol; exposures + zero-gamma are allotted ≲ 1.5 ms of it. This measures both separately (best
and median of ``repeats`` calls after the numba warm-up) on a seeded, realistic chain:

* 20 expiries from 0DTE (a quarter of a session left) to 60 calendar days, 250 strikes a $1 apart
  around spot 590, a call and a put at each (20 × 250 × 2 = 10,000 contracts);
* a smile ``iv = vol_T·(1 + 0.8·m² − 0.3·m)``, ``m = ln(K/S)``, with a term structure ``vol_T``
  (the simulator's shape); calls and puts of a strike share the IV, as in the simulator;
* open interest peaked near the money and near expiry, log-normally jittered (the simulator's shape:
  nearly every contract clears the OI ≥ 5 filter, the heavy case).

The ``distinct_iv`` figures repeat the measurement with a small independent IV offset on every
contract — the worst case of a live feed, where no call/put pair shares its greeks.
Run ``python -m bench.analytics_exposure`` to print the dict; :func:`main` (the ``python -m bench``
entry point) also writes ``bench/results/analytics_exposure.json``.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from quanticity.analytics.chain import Chain
from quanticity.analytics.exposure import dealer_exposures, max_pain, zero_gamma_level

SPOT = 590.0
EXPIRIES = 20
MAX_DAYS = 60
SEED = 20261120


def realistic_chain(n: int = 10_000, seed: int = SEED, distinct_iv: bool = False) -> Chain:
    """The benchmark chain: ``n`` contracts (rounded down to 20 expiries × strikes × C/P)."""
    rng = np.random.default_rng(seed)
    per_expiry = max(n // (2 * EXPIRIES), 1)
    days = np.linspace(0.0, MAX_DAYS, EXPIRIES).round()
    # Trading-year time (the simulator's unit): a quarter of today's session, then ~252/365 of
    # the calendar days as sessions.
    t_expiry = (0.25 + days * 252.0 / 365.0) / 252.0
    strikes = SPOT - per_expiry // 2 + np.arange(per_expiry, dtype=np.float64)
    strikes = strikes[strikes > 0]
    base = dt.date(2026, 11, 20)
    labels = np.array([(base + dt.timedelta(days=int(d))).isoformat() for d in days])

    exp_idx = np.repeat(np.arange(EXPIRIES), 2 * len(strikes))
    strike = np.tile(np.repeat(strikes, 2), EXPIRIES)
    is_call = np.tile(np.array([False, True]), EXPIRIES * len(strikes))
    t_years = t_expiry[exp_idx]
    m = np.log(strike / SPOT)
    vol_t = 0.14 + 0.04 * np.exp(-days / 10.0)
    iv = np.maximum(vol_t[exp_idx] * (1.0 + 0.8 * m * m - 0.3 * m), 0.05)
    if distinct_iv:
        iv = iv + rng.normal(0.0, 0.002, iv.shape)
    width = 0.1  # as the simulator: the wings of the listed strikes sit at about two widths
    oi = np.floor(
        20_000 * np.exp(-0.5 * (m / width) ** 2) * rng.lognormal(0.0, 0.5, m.shape) / (1 + 0.1 * days[exp_idx])
    )
    chain, rejects = Chain.from_arrays(
        strike=strike,
        t_years=t_years,
        is_call=is_call,
        iv=iv,
        oi=np.maximum(oi, 1.0),
        spot=SPOT,
        rate=0.045,
        div_yield=0.013,
        expiry=labels[exp_idx],
    )
    assert not any(rejects.values()), rejects
    return chain


def _time_ms(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(best, median) wall time of ``fn`` in ms over ``repeats`` calls."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return min(samples), statistics.median(samples)


def _measure_chain(chain: Chain, repeats: int) -> dict[str, float]:
    exp_best, exp_med = _time_ms(lambda: dealer_exposures(chain), repeats)
    zg_best, zg_med = _time_ms(lambda: zero_gamma_level(chain), repeats)
    both_best, both_med = _time_ms(lambda: (dealer_exposures(chain), zero_gamma_level(chain)), repeats)
    return {
        "exposures_best_ms": round(exp_best, 4),
        "exposures_median_ms": round(exp_med, 4),
        "zero_gamma_best_ms": round(zg_best, 4),
        "zero_gamma_median_ms": round(zg_med, 4),
        "combined_best_ms": round(both_best, 4),
        "combined_median_ms": round(both_med, 4),
    }


def measure(n: int = 10_000, repeats: int = 20) -> dict[str, Any]:
    """Time exposures and zero-gamma (best/median ms after warm-up) on the seeded chain of ``n`` contracts."""
    start = time.perf_counter()
    chain = realistic_chain(n)
    dealer_exposures(chain)  # numba warm-up (compiles, or loads the on-disk cache)
    zero_gamma_level(chain)
    max_pain(chain)
    warmup_s = time.perf_counter() - start

    build_best, build_med = _time_ms(lambda: realistic_chain(n), max(repeats // 4, 3))
    pain_best, pain_med = _time_ms(lambda: max_pain(chain), repeats)
    exposures = dealer_exposures(chain)
    result: dict[str, Any] = {
        "contracts": len(chain),
        "contracts_used": exposures.contracts_used,
        "repeats": repeats,
        "warmup_s": round(warmup_s, 3),
        **_measure_chain(chain, repeats),
        "max_pain_best_ms": round(pain_best, 4),
        "max_pain_median_ms": round(pain_med, 4),
        "chain_build_best_ms": round(build_best, 3),
        "chain_build_median_ms": round(build_med, 3),
        "gex": exposures.gex,
        "zero_gamma": zero_gamma_level(chain),
        "max_abs_gex_strike": exposures.max_abs_gex_strike,
        "call_wall": exposures.call_wall,
        "put_wall": exposures.put_wall,
    }
    noisy = realistic_chain(n, distinct_iv=True)
    dealer_exposures(noisy)
    zero_gamma_level(noisy)
    result["distinct_iv"] = _measure_chain(noisy, repeats)
    return result


def main() -> None:
    """Entry point of ``python -m bench`` (prints and writes ``bench/results/analytics_exposure.json``)."""
    from bench.common import write_result

    result = measure()
    print(result)
    write_result("analytics_exposure", result)


if __name__ == "__main__":
    print(measure())
