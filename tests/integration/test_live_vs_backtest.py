"""Issue 4: the live actor system in lock-step trades exactly like the backtest of the same session.

One fixed synthetic session (SPY, QQQ, AAPL; the aggressive test configuration; seed 11, 20 minutes from 14:00 ET) runs
through the whole actor system with ``RunSpec.lockstep`` and through ``research.backtest``. The
fills (order ref, exec id, contract, side, quantity, price, simulated ``ts_event``, commission) are
equal in booking order, the positions and realized P&L are equal, and so are the judged signals
and their decisions (in judging order) and the exits the final tick left unjudged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pyarrow.parquet as pq
import pytest
import ray
import redis

from actors.common import FEED, RISK
from quanticity import keys
from quanticity.execution.store import ExecutionStore
from quanticity.messages import Side, Signal, decode
from quanticity.store.client import connect
from research.backtest import SESSION_END, run_backtest
from supervisors.launch import start_system, stop_system, wait_until_done
from tests.system_harness import session_spec, system_config

pytestmark = pytest.mark.integration

SEED = 11
MINUTES = 20
START = "14:00"  # this seed's afternoon: entries, and bracket stops and rungs that close trades


def _fill_rows(store: ExecutionStore) -> list[tuple[Any, ...]]:
    return [
        (f.order_ref, f.exec_id, f.contract.key, f.side.value, f.quantity, f.price, f.ts_event, f.commission)
        for f in store.fills()
    ]


def _book(store: ExecutionStore) -> tuple[dict[str, tuple[int, float]], float]:
    positions = {k: (p.quantity, p.avg_price) for k, p in sorted(store.positions().items())}
    return positions, store.realized_pnl().get("total", 0.0)


def _live_decisions(client: redis.Redis) -> list[tuple[Any, ...]]:
    rows = []
    for _, fields in client.xrange(keys.RISK_DECISIONS):
        d = msgspec.json.decode(fields["decision"])
        rows.append((d["signal_id"], d["approved"], d["reason_code"], d["order_ref"], d["quantity"], d["ts_event"]))
    return rows


def _unjudged(client: redis.Redis) -> list[str]:
    cursor = client.get(keys.RISK_CURSOR) or "0-0"
    return [decode(f["signal"], Signal).signal_id for _, f in client.xrange(keys.SIGNALS_STREAM, min=f"({cursor}")]


def test_lockstep_live_trades_equal_the_backtest(
    ray_session: None,
    redis_client: redis.Redis,
    embedded_redis,  # noqa: ANN001
    tmp_path: Path,
) -> None:
    config = system_config(tmp_path)
    spec = msgspec.structs.replace(session_spec(config, minutes=MINUTES, start=START, seed=SEED), lockstep=True)

    # (b) the backtest, on database 1 of the same server (it flushes its database first)
    backtest_url = embedded_redis.url.rsplit("/", 1)[0] + "/1"
    result = run_backtest(config, spec, tmp_path / "backtest", redis_url=backtest_url)
    bt_client = connect(backtest_url)
    try:
        bt_store = ExecutionStore(bt_client)
        bt_fills, bt_book = _fill_rows(bt_store), _book(bt_store)
    finally:
        bt_client.close()
    signals = pq.read_table(result.files["signals"]).to_pylist()
    bt_decisions = [
        (r["signal_id"], r["approved"], r["decision"], r["order_ref"], r["order_quantity"], r["judged_ns"])
        for r in signals
        if r["decision"] != SESSION_END
    ]
    bt_unjudged = [r["signal_id"] for r in signals if r["decision"] == SESSION_END]

    # the session must trade, or equality proves nothing: entries, and exits (bracket legs or plan exits)
    summary = result.summary
    assert summary["approvals"] > 0 and summary["fills"] > 0, summary
    assert any(row[3] == Side.BUY.value for row in bt_fills) and any(row[3] == Side.SELL.value for row in bt_fills)
    assert summary["trades_closed"] > 0, summary

    # (a) the live actor system in lock-step, on database 0
    supervisor = start_system(config, spec, embedded_redis.url)
    try:
        progress = wait_until_done(config, timeout_s=900)  # generous: CI machines may be loaded
        assert progress["done"] == 1.0
        namespace = config.system.system.namespace
        feed_stats = ray.get(ray.get_actor(FEED, namespace=namespace).stats.remote())
        risk_stats = ray.get(ray.get_actor(RISK, namespace=namespace).stats.remote())
        assert feed_stats["lockstep_steps"] == spec.steps == summary["steps"]
        assert risk_stats["lockstep_steps"] == spec.steps
        live_store = ExecutionStore(redis_client)
        live_fills, live_book = _fill_rows(live_store), _book(live_store)
        live_decisions = _live_decisions(redis_client)
        live_unjudged = _unjudged(redis_client)
    finally:
        stop_system(supervisor)

    assert live_fills == bt_fills
    assert live_book == bt_book
    assert live_book[1] == pytest.approx(summary["realized_pnl"], abs=1e-6)
    assert {k: q for k, (q, _) in live_book[0].items()} == result.open_positions
    assert live_decisions == bt_decisions
    assert set(live_decisions) == set(bt_decisions)
    assert live_unjudged == bt_unjudged
