"""The single-run backtest driver: trades, is bit-for-bit deterministic, and its files agree with each other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from quanticity.config import QuanticityConfig
from quanticity.session import RunSpec
from quanticity.store.embedded import EmbeddedRedis
from research.backtest import PARQUET_FILES, SESSION_END, BacktestResult, main, parse_duration, run_backtest
from tests.system_harness import session_spec, system_config

pytestmark = pytest.mark.unit

SEED = 11
OTHER_SEED = 12
MINUTES = 30


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[QuanticityConfig, RunSpec, RunSpec]:
    config = system_config(tmp_path_factory.mktemp("cfg"))  # SPY, QQQ, AAPL; aggressive strategy
    return (
        config,
        session_spec(config, minutes=MINUTES, seed=SEED),
        session_spec(config, minutes=MINUTES, seed=OTHER_SEED),
    )


@pytest.fixture(scope="module")
def runs(
    setup: tuple[QuanticityConfig, RunSpec, RunSpec],
    embedded_redis: EmbeddedRedis,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, BacktestResult]:
    """Three runs: the seed twice (shared Redis, then a private one the driver starts), another seed once."""
    config, spec, other = setup
    if not embedded_redis.running:
        embedded_redis.start()
    out = tmp_path_factory.mktemp("backtests")
    return {
        "first": run_backtest(config, spec, out / "first", redis_url=embedded_redis.url),
        "again": run_backtest(config, spec, out / "again"),
        "other": run_backtest(config, other, out / "other", redis_url=embedded_redis.url),
    }


def _read(result: BacktestResult, name: str) -> list[dict[str, Any]]:
    return pq.read_table(result.files[name]).to_pylist()


def _without_timing(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k != "timing"}


def test_short_session_trades(
    runs: dict[str, BacktestResult], setup: tuple[QuanticityConfig, RunSpec, RunSpec]
) -> None:
    result = runs["first"]
    summary = result.summary
    _, spec, _ = setup
    assert summary["steps"] == spec.steps == MINUTES * 60
    assert summary["events"] > 10_000
    assert summary["signals"] > 0 and summary["approvals"] > 0
    assert summary["fills"] > 0, "the aggressive strategy must trade in 30 minutes"
    assert summary["duplicate_places"] == 0 and summary["rejected_fills"] == 0
    config, _, _ = setup
    # every strategy the supervisor would start runs here too, with the session's alternative data
    assert summary["strategies"] == [config.trading.strategy.name] + [
        s.name for s in config.trading.strategies.enabled()
    ]
    assert len(summary["strategies"]) == 6 and summary["alt_data_events"] > 0
    assert set(summary["strategy_rejections"]) == set(summary["strategies"][1:])
    assert summary["ledger_matches_store"] is True
    for name in (*PARQUET_FILES, "summary"):
        assert result.files[name].exists()
    fills = _read(result, "fills")
    assert len(fills) == summary["fills"]
    assert len(_read(result, "signals")) == summary["signals"]
    assert len(_read(result, "trades")) == summary["trades"]
    # nothing is stamped with the wall clock: every time lies inside the simulated session
    for row in fills:
        assert spec.sim_start_ns < row["ts_event"] <= spec.sim_end_ns
    for row in _read(result, "signals"):
        assert spec.sim_start_ns < row["ts_event"] <= spec.sim_end_ns
        assert row["judged_ns"] is None or row["ts_event"] <= row["judged_ns"] <= spec.sim_end_ns


def test_same_seed_is_byte_identical(runs: dict[str, BacktestResult]) -> None:
    first, again = runs["first"], runs["again"]
    for name in PARQUET_FILES:
        assert first.files[name].read_bytes() == again.files[name].read_bytes(), name
    assert _without_timing(first.summary) == _without_timing(again.summary)
    assert first.open_positions == again.open_positions


def test_another_seed_differs(runs: dict[str, BacktestResult]) -> None:
    first, other = runs["first"], runs["other"]
    assert first.files["signals"].read_bytes() != other.files["signals"].read_bytes()
    assert _without_timing(first.summary) != _without_timing(other.summary)


def test_fills_imply_the_final_open_positions(runs: dict[str, BacktestResult]) -> None:
    for result in runs.values():
        net: dict[str, int] = {}
        for row in _read(result, "fills"):
            net[row["contract"]] = net.get(row["contract"], 0) + (
                row["quantity"] if row["side"] == "BUY" else -row["quantity"]
            )
        implied = {k: v for k, v in net.items() if v}
        assert implied == result.open_positions == result.summary["open_positions"]
        open_trades = {r["contract"]: r["quantity"] - r["quantity_closed"] for r in _read(result, "trades")}
        assert {k: v for k, v in open_trades.items() if v} == implied


def test_realized_pnl_agrees_across_files(runs: dict[str, BacktestResult]) -> None:
    for result in runs.values():
        summary = result.summary
        trades = _read(result, "trades")
        assert sum(t["realized"] for t in trades) == pytest.approx(summary["realized_pnl"], abs=1e-6)
        assert sum(f["realized"] for f in _read(result, "fills")) == pytest.approx(summary["realized_pnl"], abs=1e-6)
        assert sum(t["unrealized"] for t in trades) == pytest.approx(summary["unrealized_pnl"], abs=1e-6)
        pnl = _read(result, "pnl")
        assert sum(p["realized"] for p in pnl) == pytest.approx(summary["realized_pnl"], abs=1e-6)
        assert sum(p["unrealized"] for p in pnl) == pytest.approx(summary["unrealized_pnl"], abs=1e-6)
        assert sum(p["fills"] for p in pnl) == summary["fills"]
        closed = [t for t in trades if t["status"] == "CLOSED"]
        assert summary["trades_closed"] == len(closed)
        assert all(t["exit_ns"] >= t["entry_ns"] and t["exit_reason"] for t in closed)
        if closed:
            assert summary["win_rate"] == sum(1 for t in closed if t["realized"] > 0) / len(closed)
        assert summary["max_drawdown"] >= 0


def test_signals_carry_their_decisions(runs: dict[str, BacktestResult]) -> None:
    result = runs["first"]
    signals = _read(result, "signals")
    assert len({s["signal_id"] for s in signals}) == len(signals), "signals are de-duplicated by id"
    assert [s["seq"] for s in signals] == list(range(len(signals)))
    approved = [s for s in signals if s["approved"]]
    assert len(approved) == result.summary["approvals"]
    assert all(s["decision"] == "APPROVED" and s["order_ref"] for s in approved)
    denied: dict[str, int] = {}
    for s in signals:
        if not s["approved"]:
            assert s["decision"] and s["order_ref"] is None
            denied[s["decision"]] = denied.get(s["decision"], 0) + 1
    assert denied == result.summary["denials"]
    refs = {s["order_ref"] for s in approved}
    fills = _read(result, "fills")
    for fill in fills:  # every fill traces back to a judged signal or a protective bracket leg
        if fill["origin"] in ("signal", "entry child"):
            assert fill["order_ref"].split("-c")[0] in refs and fill["signal_id"]
        else:
            assert fill["origin"].startswith("bracket ") and fill["side"] == "SELL" and not fill["signal_id"]
    assert {f["order_ref"] for f in fills if f["origin"] == "signal"} <= refs
    brackets = sum(1 for f in fills if f["origin"].startswith("bracket "))
    assert result.summary["orders"] >= len(refs)
    assert result.summary["fills"] == len(fills) and brackets <= len(fills)
    exits = [s for s in signals if s["side"] == "SELL"]
    assert all(s["signal_quantity"] > 0 for s in exits)
    assert all(s["decision"] != SESSION_END or s["judged_ns"] is None for s in signals)


def test_cli_runs_a_short_session(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    code = main(["--date", "2026-11-20", "--seed", "3", "--duration", "3m", "--symbols", "SPY", "--out", str(out)])
    assert code == 0
    for name in (*PARQUET_FILES, "summary"):
        assert (out / f"{name}.parquet" if name != "summary" else out / "summary.json").exists()
    assert parse_duration("2h") == 7200 and parse_duration("30m") == 1800 and parse_duration("90") == 90
