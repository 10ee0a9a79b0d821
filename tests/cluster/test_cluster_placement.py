"""Cluster tests on ray.cluster_utils.Cluster: symbols spread over nodes; a lost node's actors re-placed.

These start their own multi-node Ray, so they run in a separate pytest process from the
integration tests (``make test`` does that).
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
import redis
from ray.cluster_utils import Cluster

from actors.common import analytics_name
from quanticity import keys
from supervisors.launch import start_system, stop_system
from tests.system_harness import session_spec, system_config

pytestmark = pytest.mark.cluster
SYMBOLS = ("SPY", "QQQ", "IWM", "AAPL", "MSFT", "NVDA")


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "include_dashboard": False,
            "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 3},
        },
    )
    cluster.add_node(num_cpus=1)
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()
    # Cluster writes its address to /tmp/ray/ray_current_cluster and leaves it behind; a later
    # ray.init() without an address would try to attach to this dead cluster.
    current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    if current.exists() and current.read_text().strip() == cluster.gcs_address:
        current.unlink()


def symbol_nodes(namespace: str) -> dict[str, str]:
    return {
        s: ray.get(ray.get_actor(analytics_name(s), namespace=namespace).node_id.remote(), timeout=180) for s in SYMBOLS
    }


def test_symbols_spread_and_lost_node_replaced(
    cluster: Cluster,
    redis_client: redis.Redis,
    embedded_redis,
    tmp_path: Path,  # noqa: ANN001
) -> None:
    config = system_config(tmp_path, symbols=SYMBOLS)
    ns = config.system.system.namespace
    supervisor = start_system(config, session_spec(config, minutes=10), embedded_redis.url, start=False)
    try:
        placed = symbol_nodes(ns)
        alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        assert len(alive) == 3
        assert Counter(placed.values()) == Counter({node: 2 for node in alive}), placed

        worker = next(n for n in cluster.worker_nodes if n.node_id in placed.values())
        lost = worker.node_id
        moved = {s for s, node in placed.items() if node == lost}
        cluster.remove_node(worker)

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            restarted = {s for s in moved if int(redis_client.hget(keys.RESTARTS, analytics_name(s)) or 0) >= 1}
            if restarted == moved:
                break
            time.sleep(0.25)
        events = [(f["action"], f["actor"], f["detail"]) for _, f in redis_client.xrange(keys.SUPERVISOR_EVENTS)]
        assert restarted == moved, f"not re-placed: {moved - restarted}; supervisor events {events[-12:]}"
        after = symbol_nodes(ns)
        survivors = alive - {lost}
        assert set(after.values()) <= survivors
        for symbol in set(SYMBOLS) - moved:
            assert after[symbol] == placed[symbol]  # actors on surviving nodes were not moved
    finally:
        stop_system(supervisor)
