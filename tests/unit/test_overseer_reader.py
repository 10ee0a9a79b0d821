"""The overseer's Redis side: snapshot reader mapping, alert stream, persisted budget (real Redis)."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis

from quanticity import keys
from quanticity.clock import SimulatedClock
from quanticity.execution.store import ExecutionStore
from quanticity.messages import Fill, OptionContract, OrderIntent, Quote, Right, Side, encode
from quanticity.overseer.alerts import RedisAdminAlerts
from quanticity.overseer.budget import Budget, RedisBudgetStore
from quanticity.overseer.checks import run_checks
from quanticity.overseer.config import ModelConfig, OverseerConfig
from quanticity.overseer.reader import RedisSnapshotReader, classify_metric, to_ns
from quanticity.overseer.snapshot import NS
from quanticity.overseer.sources import REPO_ROOT, load_source_file

pytestmark = pytest.mark.unit

T0 = 1_750_000_000 * NS
CONTRACT = OptionContract("SPY", "2025-07-18", 450.0, Right.CALL)


def _reader(client: redis.Redis, clock: SimulatedClock, symbols: list[str]) -> RedisSnapshotReader:
    uw = load_source_file(REPO_ROOT / "config" / "sources" / "unusual_whales.yaml")
    return RedisSnapshotReader(client, OverseerConfig(), clock, lambda: symbols, uw=uw)


def test_timestamps_in_any_unit_and_metric_families() -> None:
    assert to_ns(1_750_000_000) == T0 and to_ns(1_750_000_000_000) == T0 and to_ns(str(T0)) == T0
    assert to_ns("2025-06-15T15:06:40+00:00") == T0
    assert to_ns("yesterday") is None and to_ns(True) is None and to_ns(-5) is None
    assert [classify_metric(m) for m in ("total_gex", "spot", "bid_ask_spread")] == ["greeks", "price", "spread"]


def test_staleness_sources_absent_fresh_stale_and_malformed(redis_client: redis.Redis) -> None:
    clock = SimulatedClock(T0)
    reader = _reader(redis_client, clock, ["SPY", "QQQ"])
    clock.advance(100)
    redis_client.set(keys.raw_uw("spot_exposures", "SPY"), json.dumps({"fetched_at": clock.now_ns() - 10 * NS}))
    redis_client.set(keys.raw_uw("spot_exposures", "QQQ"), "{broken")
    redis_client.set(keys.raw_depth_heartbeat("SPY"), clock.now_ns() - 40 * NS)
    redis_client.set(keys.raw_depth_heartbeat("QQQ"), clock.now_ns() - 5 * NS)  # the freshest counts
    findings = {(f.rule, f.subject): f for f in run_checks(reader.read_now(), reader._config)}
    assert ("staleness.uw_spot_gex", "SPY") not in findings
    assert findings[("staleness.uw_spot_gex", "QQQ")].value == pytest.approx(100.0)  # malformed = absent
    assert ("staleness.uw_chains", "SPY") not in findings  # never seen, but observed for only 100 s < 180 s
    assert ("staleness.ibkr_heartbeat", "*") not in findings
    assert reader.counters.get("reader.rejected.uw_spot_gex") == 1
    redis_client.delete(keys.raw_uw("spot_exposures", "SPY"))  # the fetcher's key expired
    clock.advance(85)
    findings = {(f.rule, f.subject): f for f in run_checks(reader.read_now(), reader._config)}
    assert findings[("staleness.uw_spot_gex", "SPY")].value == pytest.approx(95.0)  # from when last seen
    assert findings[("staleness.ibkr_heartbeat", "*")].severity.value == "CRITICAL"
    assert findings[("staleness.uw_chains", "SPY")].value == pytest.approx(185.0)  # never seen: since start


def test_divergence_pairs_slippage_and_latency(redis_client: redis.Redis) -> None:
    clock = SimulatedClock(T0)
    reader = _reader(redis_client, clock, ["SPY"])
    now = clock.now_ns()
    row = {"price": 103.0, "time": "2025-06-15 15:06:10+00:00"}  # 30 s before now
    redis_client.set(keys.raw_uw("spot_exposures", "SPY"), json.dumps({"fetched_at": now, "data": [row]}))
    quote = Quote(ts_event=now, ts_init=now, symbol="SPY", bid=99.9, ask=100.1, bid_size=5, ask_size=5)
    redis_client.set(keys.raw_quote_last("SPY"), encode(quote))
    redis_client.set(
        keys.analytics("SPY", "divergence"),
        json.dumps({"total_gex": {"ours": 100.0, "theirs": 111.0, "source": "uw"}, "computed_at": now}),
    )
    intent = OrderIntent(
        ts_event=now,
        ts_init=now,
        order_ref="o1",
        signal_id="s1",
        strategy="moc_imbalance",
        contract=CONTRACT,
        side=Side.BUY,
        quantity=1,
        limit_price=2.0,
        origin_ts_init=now,
    )
    redis_client.hset(keys.order("o1"), mapping={"intent": encode(intent).decode(), "status": "FILLED"})
    fill = Fill(
        ts_event=now,
        ts_init=now,
        exec_id="e1",
        order_ref="o1",
        contract=CONTRACT,
        side=Side.BUY,
        quantity=1,
        price=2.02,
        commission=1.0,
        strategy="moc_imbalance",
    )
    redis_client.xadd(keys.FILLS_STREAM, {"fill": encode(fill).decode()})
    redis_client.xadd(keys.FILLS_STREAM, {"fill": "not a fill"})
    redis_client.set(keys.heartbeat("risk"), json.dumps({"kind": "risk", "ts": now, "p50": 1.0, "p99": 400.0}))
    snapshot = reader.read_now()
    assert {(d.kind, d.subject) for d in snapshot.divergences} == {("price", "SPY"), ("greeks", "SPY total_gex")}
    assert snapshot.slippage[0].recent == pytest.approx((100.0,))  # 2.02 vs limit 2.00 = 100 bps worse
    assert snapshot.latency[0].subject == "risk" and snapshot.latency[0].recent == (400.0,)
    rules = {f.rule for f in run_checks(snapshot, reader._config)}
    assert rules >= {"divergence.price", "divergence.greeks", "spike.slippage", "spike.latency"}
    assert reader.counters.get("reader.rejected.fill") == 1
    second = reader.read_now()
    assert second.latency[0].baseline == (400.0,)  # history accumulates per actor
    # the router chased the order to 2.02: the fill at 2.02 is exactly its working limit, no slippage
    ExecutionStore(redis_client).record_working_limit("o1", 2.02)
    assert reader.read_now().slippage[0].recent == pytest.approx((0.0,))


def test_alerts_go_to_the_alert_stream_and_the_budget_survives_a_restart(redis_client: redis.Redis) -> None:
    clock = SimulatedClock(T0)
    asyncio.run(RedisAdminAlerts(redis_client, clock).alert("WARNING", "feed stale"))
    [(_, fields)] = redis_client.xrange(keys.ALERTS)
    assert fields == {"level": "WARNING", "text": "feed stale", "ts": str(T0), "source": "overseer"}
    config = ModelConfig(daily_request_budget=2)
    Budget(config, RedisBudgetStore(redis_client), clock).record(2, 300)
    restarted = Budget(config, RedisBudgetStore(redis_client), clock)
    assert restarted.used() == (2, 300) and restarted.refusal(100) == "budget_requests"
    clock.advance(24 * 3600)  # a new ET day has a fresh budget
    assert restarted.refusal(100) is None
