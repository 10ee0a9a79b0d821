"""A whole system on the shared local Ray: feed → analytics → strategy → risk → router → broker → publisher."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import ray
import redis
from prometheus_client import CollectorRegistry, start_http_server

from actors.common import BROKER, FEED, RISK, ROUTER, analytics_name, publisher_name
from quanticity import keys
from quanticity.config.models import QuanticityConfig
from quanticity.execution.store import ExecutionStore
from quanticity.messages import FeatureSnapshot, Side, decode
from quanticity.observability.metrics import QuanticityCollector, read_heartbeats
from quanticity.store.client import connect
from quanticity.store.embedded import free_port
from supervisors.launch import start_system, stop_system, wait_until_done, wait_until_quiet
from tests.system_harness import session_spec, system_config
from tests.venue_checks import assert_venue_matches_records

pytestmark = pytest.mark.integration


class FinishedSession(NamedTuple):
    """One session run to its end, shared by the read-only checks of this module."""

    config: QuanticityConfig
    supervisor: Any
    progress: dict[str, float]
    client: redis.Redis
    channels: Path


@pytest.fixture(scope="module")
def finished_session(ray_session: None, embedded_redis, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN001, ANN201
    """Run one 45-minute session once for the module (each check only reads what it left behind).

    Module-scoped, so it takes its own Redis client instead of the per-test ``redis_client``
    (which flushes the database): the checks below must not request that fixture.
    """
    if not embedded_redis.running:  # a fault test may have killed it
        embedded_redis.start()
    client = connect(embedded_redis.url)
    client.flushdb()
    tmp_path = tmp_path_factory.mktemp("session")
    config = system_config(tmp_path)
    spec = session_spec(config, minutes=45)
    supervisor = start_system(config, spec, embedded_redis.url)
    try:
        progress = wait_until_done(config, timeout_s=240)
        assert wait_until_quiet(client)
        ray.get(supervisor.check_children.remote())
        yield FinishedSession(config, supervisor, progress, client, tmp_path / "channels")
    finally:
        stop_system(supervisor)
        client.close()


def test_session_trades_end_to_end(finished_session: FinishedSession) -> None:
    config, _, progress, redis_client, channels = finished_session
    assert progress["done"] == 1.0 and progress["events"] > 10_000
    store = ExecutionStore(redis_client)
    fills = store.fills()
    assert redis_client.xlen(keys.SIGNALS_STREAM) > 0
    assert fills, "the aggressive test strategy must trade in 45 minutes"
    # positions equal the sum of the fills
    net: dict[str, int] = {}
    for fill in fills:
        net[fill.contract.key] = net.get(fill.contract.key, 0) + (
            fill.quantity if fill.side is Side.BUY else -fill.quantity
        )
    assert {k: v for k, v in net.items() if v} == {k: p.quantity for k, p in store.positions().items()}
    # every fill belongs to an order the router recorded, and the venue never saw a reference twice
    refs = set(store.all_refs())
    assert {f.order_ref for f in fills} <= refs
    broker = ray.get_actor(BROKER, namespace=config.system.system.namespace)
    assert_venue_matches_records(store, broker)
    # the publisher wrote exactly one premium line per fill and per position event (stop raised)
    lines = (channels / "local-premium.log").read_text().splitlines()
    expected = [f.exec_id for f in fills] + [e.event_id for e in store.position_events()]
    assert sorted(line.split()[0].strip("[]") for line in lines) == sorted(expected)
    # every risk decision is audited with a reason code
    decisions = [json.loads(f["decision"]) for _, f in redis_client.xrange(keys.RISK_DECISIONS)]
    assert len(decisions) == redis_client.xlen(keys.SIGNALS_STREAM)
    assert all(d["reason_code"] for d in decisions)


def test_every_actor_heartbeats_and_metrics_export(finished_session: FinishedSession) -> None:
    _, supervisor, _, redis_client, _ = finished_session
    topology = ray.get(supervisor.topology.remote())
    expected = {
        FEED,
        BROKER,
        ROUTER,
        RISK,
        publisher_name("local"),
        *(analytics_name(s) for s in ("SPY", "QQQ", "AAPL")),
    }
    assert expected <= set(topology)
    beats = read_heartbeats(redis_client)
    assert expected <= set(beats)
    assert beats[analytics_name("SPY")]["events"] > 0
    families = {f.name: f for f in QuanticityCollector(redis_client).collect()}
    assert {"quanticity_actor_events", "quanticity_actor_latency_ms", "quanticity_actor_heartbeat_age_seconds"} <= set(
        families
    )
    spy = [s for s in families["quanticity_actor_events"].samples if s.labels["actor"] == analytics_name("SPY")]
    assert spy and spy[0].value > 0
    # the same families over HTTP, as Prometheus scrapes them
    registry = CollectorRegistry()
    registry.register(QuanticityCollector(redis_client))
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    finally:
        server.shutdown()
        thread.join(timeout=5)
    assert f'quanticity_actor_events_total{{actor="{analytics_name("SPY")}",kind="analytics"}}' in body
    assert "quanticity_actor_heartbeat_age_seconds" in body


def test_analytics_snapshots_carry_validity(finished_session: FinishedSession) -> None:
    config, _, _, redis_client, _ = finished_session
    state = json.loads(redis_client.get(keys.analytics_state("SPY")))
    assert state["features"]["events"] > 0
    for metric in ("book", "vpin", "volatility", "flow", "chain", "moc", "rejected"):
        raw = redis_client.get(keys.analytics("SPY", metric))
        assert raw is not None, metric
        snapshot = json.loads(raw)
        assert snapshot["valid_until"] > snapshot["computed_at"] > 0, metric
        assert redis_client.ttl(keys.analytics("SPY", metric)) > 0  # hot data expires
    chain = json.loads(redis_client.get(keys.analytics("SPY", "chain")))
    assert chain["contracts"] > 0 and chain["gex"] is not None and chain["max_pain"]
    features = decode(redis_client.get(keys.analytics("SPY", "features")), FeatureSnapshot)
    assert features.metrics["gex"] == pytest.approx(chain["gex"])
    # a value from an outside source is kept next to ours, with the divergence, for the overseer
    actor = ray.get_actor(analytics_name("SPY"), namespace=config.system.system.namespace)
    record = ray.get(actor.on_external.remote("gex", chain["gex"] + abs(chain["gex"]) * 0.1, "unusual_whales"))
    assert record["divergence"] == pytest.approx(0.1)
    assert json.loads(redis_client.get(keys.analytics("SPY", "divergence")))["gex"]["source"] == "unusual_whales"
