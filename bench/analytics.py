"""Analytics benchmark: a whole 10,000-contract chain, against QuantLib in the same run.

Measured on one core, after numba warm-up:
1. **chain** — IV solve from mid prices + all greeks (price, Δ, Γ, vega, θ, ρ, vanna, charm,
   vomma) + dealer exposures (GEX, DEX, vanna/charm exposure, by strike and strike×expiry, walls,
   max |GEX|) + zero-gamma, end to end; and the same work contract by contract with QuantLib
   (implied vol + ``BlackCalculator`` greeks + a Python aggregation + gamma re-evaluated on the
   same 41-point spot grid), timed on an evenly spaced subset and scaled to 10,000. Ratio reported.
2. **pricing / exposure / flow** — the component benchmarks (``bench.analytics_pricing``,
   ``bench.analytics_exposure``, ``bench.analytics_flow``: VPIN and book metrics per second).
3. **actor** — the end-to-end cost per market event inside a real SymbolAnalytics Ray actor
   (batches sent as the feed sends them, metrics and snapshots written to a real Redis).

Targets (issue): chain ≤ 5 ms and ≥ 50× QuantLib; VPIN and book metrics ≥ 1,000,000 /s.
"""

from __future__ import annotations

import math
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from bench import analytics_exposure, analytics_flow, analytics_pricing
from bench.common import write_result
from quanticity.analytics.bsm import bsm_greeks
from quanticity.analytics.chain import Chain
from quanticity.analytics.exposure import dealer_exposures, zero_gamma_level
from quanticity.analytics.iv import implied_vol

GRID_POINTS = 41
GRID_PCT = 0.1


def _open_interest(chain: dict[str, np.ndarray]) -> np.ndarray:
    moneyness = np.log(chain["strike"] / chain["spot"])
    return np.maximum(np.floor(20_000 * np.exp(-0.5 * (moneyness / 0.1) ** 2)), 1.0)


def _pipeline(chain: dict[str, np.ndarray], oi: np.ndarray, expiry: np.ndarray) -> tuple[float, float]:
    """IV → greeks → exposures → zero-gamma, exactly as the engine runs it."""
    args = (chain["spot"], chain["strike"], chain["t_years"], chain["rate"], chain["div_yield"])
    solved = implied_vol(chain["price"], *args, chain["is_call"])
    bsm_greeks(*args, solved.iv, chain["is_call"])
    frame, _ = Chain.from_arrays(
        strike=chain["strike"],
        t_years=chain["t_years"],
        is_call=chain["is_call"],
        iv=solved.iv,
        oi=oi,
        spot=float(chain["spot"][0]),
        rate=float(chain["rate"][0]),
        div_yield=float(chain["div_yield"][0]),
        expiry=expiry,
    )
    exposures = dealer_exposures(frame)
    return exposures.gex, zero_gamma_level(frame, grid_pct=GRID_PCT, points=GRID_POINTS)


def _quantlib_pipeline(chain: dict[str, np.ndarray], oi: np.ndarray, idx: np.ndarray) -> float:
    """The same work contract by contract with QuantLib; returns elapsed seconds for ``idx``."""
    import QuantLib as ql  # bench/test dependency only

    spots = np.linspace(chain["spot"][0] * (1 - GRID_PCT), chain["spot"][0] * (1 + GRID_PCT), GRID_POINTS)
    started = time.perf_counter()
    gex = 0.0
    profile = np.zeros(GRID_POINTS)
    for i in idx:
        s, k, t = float(chain["spot"][i]), float(chain["strike"][i]), float(chain["t_years"][i])
        r, q, call = float(chain["rate"][i]), float(chain["div_yield"][i]), bool(chain["is_call"][i])
        kind = ql.Option.Call if call else ql.Option.Put
        discount, growth = math.exp(-r * t), math.exp(-q * t)
        forward = s * growth / discount
        try:
            std = ql.blackFormulaImpliedStdDev(kind, k, forward, float(chain["price"][i]), discount)
        except RuntimeError:
            continue
        payoff = ql.PlainVanillaPayoff(kind, k)
        calc = ql.BlackCalculator(payoff, forward, std, discount)
        greeks = (calc.value(), calc.delta(s), calc.gamma(s), calc.vega(t), calc.theta(s, t), calc.rho(t))
        sign = 1.0 if call else -1.0
        gex += sign * greeks[2] * oi[i] * 100 * s * s * 0.01
        for j, x in enumerate(spots):  # zero-gamma: gamma re-evaluated at every grid spot
            fwd_x = x * growth / discount
            profile[j] += sign * ql.BlackCalculator(payoff, fwd_x, std, discount).gamma(x) * oi[i] * x * x
    return time.perf_counter() - started


def chain_benchmark(n: int = 10_000, repeats: int = 20, ql_subset: int = 300) -> dict[str, Any]:
    """End-to-end chain analytics vs QuantLib (see the module docstring)."""
    chain = analytics_pricing.build_chain(n)
    oi = _open_interest(chain)
    expiry = np.array([f"T{round(t * 1e6)}" for t in chain["t_years"]])
    _pipeline(chain, oi, expiry)  # warm-up
    samples = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        _pipeline(chain, oi, expiry)
        samples.append((time.perf_counter_ns() - start) / 1e6)
    subset = np.linspace(0, n - 1, ql_subset).round().astype(np.intp)
    _quantlib_pipeline(chain, oi, subset[:5])
    ql_s = min(_quantlib_pipeline(chain, oi, subset) for _ in range(2))
    ql_ms = ql_s * 1e3 * n / subset.size
    best = min(samples)
    return {
        "contracts": n,
        "ms_best": best,
        "ms_median": float(np.median(samples)),
        "quantlib_ms_scaled": ql_ms,
        "quantlib_note": f"timed on {subset.size} evenly spaced contracts (best of 2), scaled to {n}",
        "speedup_vs_quantlib": ql_ms / best,
        "zero_gamma_grid_points": GRID_POINTS,
    }


def actor_benchmark(minutes: float = 20.0) -> dict[str, Any]:
    """Per-event cost inside a real SymbolAnalytics actor (real Redis, local Ray, num_cpus=2)."""
    import ray

    from actors.analytics import SymbolAnalyticsActor
    from quanticity.config import load_config
    from quanticity.session import plan_session
    from quanticity.sim.market import SyntheticMarket
    from quanticity.store.embedded import EmbeddedRedis

    tmp = Path(tempfile.mkdtemp(prefix="qbench-analytics-"))
    server = EmbeddedRedis(tmp / "redis")
    url = server.start()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        config = load_config(
            overrides={
                "system": {
                    "system": {"namespace": "bench-analytics", "log_level": "WARNING"},
                    "session": {"date": "2026-11-20"},
                    "venue": {"kind": "sim"},
                }
            }
        )
        spec = plan_session(config.system.session, seed=7, duration_s=minutes * 60, speed=0)
        actor = SymbolAnalyticsActor.options(name="bench:analytics:SPY", namespace="bench-analytics").remote(
            "bench:analytics:SPY", config, spec, url, "SPY"
        )
        market = SyntheticMarket(config.market, ["SPY"], date(2026, 11, 20), 7, spec.sim_start_ns, spec.step_ns)
        batches = [market.step(0)["SPY"] for _ in range(int(minutes * 60))]
        events = sum(b.event_count for b in batches)
        ray.get(actor.on_batches.remote(batches[:60]))  # warm-up: numba, Redis connections
        groups = [batches[i : i + 20] for i in range(60, len(batches), 20)]
        started = time.perf_counter()
        refs = [actor.on_batches.remote(group) for group in groups]
        ray.get(refs)
        elapsed = time.perf_counter() - started
        measured_events = sum(b.event_count for b in batches[60:])
        beat = ray.get(actor.ping.remote())
        ray.kill(actor)
    finally:
        ray.shutdown()
        server.stop()
    return {
        "events": measured_events,
        "events_generated": events,
        "wall_s": elapsed,
        "us_per_event": elapsed / measured_events * 1e6,
        "events_per_s": measured_events / elapsed,
        "batches_per_call": 20,
        "forwarded_snapshots": beat.detail.get("forwarded"),
    }


def main() -> dict[str, Any]:
    """Run everything, print the summary, write ``bench/results/analytics.json``."""
    result = {
        "chain": chain_benchmark(),
        "pricing": analytics_pricing.measure(),
        "exposure": analytics_exposure.measure(),
        "flow": analytics_flow.measure(),
        "actor": actor_benchmark(),
        "targets": {"chain_ms": 5.0, "speedup_vs_quantlib": 50.0, "vpin_trades_per_s": 1e6, "books_per_s": 1e6},
    }
    path = write_result("analytics", result)
    chain, actor = result["chain"], result["actor"]
    print("analytics benchmark (one core, after warm-up)")
    print(
        f"  10k-contract chain, IV + greeks + exposures + zero-gamma: {chain['ms_best']:.2f} ms best, "
        f"{chain['ms_median']:.2f} ms median; QuantLib {chain['quantlib_ms_scaled']:,.0f} ms → "
        f"{chain['speedup_vs_quantlib']:.0f}x"
    )
    print(
        f"  IV + greeks alone: {result['pricing']['iv_plus_greeks_ms_best']:.2f} ms "
        f"({result['pricing']['speedup_vs_quantlib']:.0f}x QuantLib's fastest loop)"
    )
    flow = result["flow"]
    print(
        f"  VPIN {flow.get('vpin_trades_per_s', float('nan')):,.0f} trades/s, book metrics "
        f"{flow.get('book_metrics_books_per_s', float('nan')):,.0f} books/s"
    )
    print(
        f"  SymbolAnalytics actor: {actor['us_per_event']:.2f} µs per market event "
        f"({actor['events_per_s']:,.0f} events/s)"
    )
    print(f"  written to {path}")
    return result


if __name__ == "__main__":
    main()
