"""Backtest benchmark: a whole simulated session on the default universe, in one process on one core.

Why: the backtest driver (``research.backtest``) is how strategies are evaluated at scale, so its
throughput — market events and feed steps per wall second through analytics, strategy, risk,
router and venue — bounds how many sessions a research sweep can afford. The process is pinned to
one CPU (``sched_setaffinity``, where the OS has it) before the private redis-server is started, so
Redis shares that core too and the figure is a true single-core number.

Default: the full 09:30–16:00 session of 2026-11-20 (6.5 h, 23,400 steps), seed 7, every symbol of
``config/system.yaml`` and the shipped ``config/trading.yaml``. ``--duration 2h`` shortens it.
Prints a summary and writes ``bench/results/backtest.json``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from bench.common import write_result
from quanticity.clock import SimulatedClock
from quanticity.config import QuanticityConfig, load_config
from quanticity.session import RunSpec, plan_session
from quanticity.sim.market import SyntheticMarket
from research.backtest import parse_duration, run_backtest

SESSION_DAY = date(2026, 11, 20)
SEED = 7


def _pin_to_one_core() -> tuple[int | None, set[int]]:
    """Pin this process (and the redis-server it starts later) to one CPU; returns it and the old set."""
    if not hasattr(os, "sched_setaffinity"):
        return None, set()
    before = set(os.sched_getaffinity(0))
    cpu = min(before)
    os.sched_setaffinity(0, {cpu})
    return cpu, before


def market_only(config: QuanticityConfig, spec: RunSpec) -> dict[str, float]:
    """Baseline in the same run: only generate the session's market events (the same seeded
    market the backtest steps), with nothing consuming them — the floor any replay pays. The ratio
    backtest wall / baseline wall is what analytics, strategies, risk, router and venue add."""
    symbols = sorted(config.system.universe.symbols)
    market = SyntheticMarket(
        config.market, symbols, date.fromisoformat(spec.session_date), spec.seed, spec.sim_start_ns, spec.step_ns
    )
    events = 0
    started = time.perf_counter()
    while market.now_ns < spec.sim_end_ns:
        for batch in market.step(market.now_ns + spec.step_ns).values():
            events += batch.event_count
    wall = time.perf_counter() - started
    return {"events": events, "wall_s": wall, "events_per_s": events / wall}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the session, print the summary, write the JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.backtest", description=__doc__)
    parser.add_argument("--duration", type=parse_duration, default=None, help="simulated length (default: full)")
    args = parser.parse_args(argv if argv is not None else [])
    config = load_config()
    section = config.system.session.model_copy(update={"date": SESSION_DAY, "speed": 0.0})
    spec = plan_session(section, SEED, speed=0.0, duration_s=args.duration, wall=SimulatedClock(0))
    out = Path(tempfile.mkdtemp(prefix="qbench-backtest-"))
    cpu, before = _pin_to_one_core()
    try:
        baseline = market_only(config, spec)
        result = run_backtest(config, spec, out)
    finally:
        if before:  # `python -m bench backtest pipeline` must not start Ray on one core
            os.sched_setaffinity(0, before)
    s = result.summary
    timing = s["timing"]
    sim_s = (spec.sim_end_ns - spec.sim_start_ns) / 1e9
    payload = {
        "session": {
            "date": spec.session_date,
            "seed": SEED,
            "sim_hours": sim_s / 3600,
            "full_session": args.duration is None,
            "symbols": len(s["symbols"]),
            "steps": s["steps"],
        },
        "pinned_cpu": cpu,
        "wall_s": timing["wall_s"],
        "events": s["events"],
        "events_per_s": timing["events_per_s"],
        "steps_per_s": timing["steps_per_s"],
        "sim_seconds_per_wall_second": sim_s / timing["wall_s"],
        "baseline_market_only": baseline,
        "ratio_backtest_to_market_only": timing["wall_s"] / baseline["wall_s"],
        "counts": {
            "snapshots": s["snapshots"],
            "signals": s["signals"],
            "approvals": s["approvals"],
            "denials": s["denials"],
            "orders": s["orders"],
            "fills": s["fills"],
            "trades": s["trades"],
            "trades_closed": s["trades_closed"],
        },
        "pnl": {
            "realized": s["realized_pnl"],
            "unrealized": s["unrealized_pnl"],
            "return_pct": s["return_pct"],
            "max_drawdown": s["max_drawdown"],
        },
    }
    path = write_result("backtest", payload)
    length = "full session" if args.duration is None else f"{sim_s / 3600:g} h"
    print(f"backtest benchmark ({length}, {len(s['symbols'])} symbols, one core{'' if cpu is None else f' #{cpu}'})")
    print(
        f"  {s['events']:,} market events, {s['steps']:,} steps in {timing['wall_s']:.1f} s: "
        f"{timing['events_per_s']:,.0f} events/s, {timing['steps_per_s']:,.0f} steps/s "
        f"({payload['sim_seconds_per_wall_second']:,.0f}x real time)"
    )
    print(
        f"  {s['snapshots']:,} snapshots, {s['signals']} signals, {s['approvals']} approvals, "
        f"{s['orders']} orders, {s['fills']} fills, {s['trades']} trades ({s['trades_closed']} closed)"
    )
    print(
        f"  baseline, same run: generating the market alone {baseline['events_per_s']:,.0f} events/s "
        f"({baseline['wall_s']:.1f} s) — the full backtest costs {payload['ratio_backtest_to_market_only']:.1f}x that"
    )
    print(f"  P&L realized {s['realized_pnl']:+,.2f}, unrealized {s['unrealized_pnl']:+,.2f}")
    print(f"  outputs in {out}; written to {path}")
    return payload


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
