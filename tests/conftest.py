"""Shared fixtures: one private redis-server per test session, a clean database per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from hypothesis import settings

from quanticity.config import QuanticityConfig, load_config
from quanticity.store.client import connect
from quanticity.store.embedded import EmbeddedRedis

# Property tests draw the same examples on every run (seeded from each test's name): CI must not
# pass or fail by luck. Widen the search locally with HYPOTHESIS_PROFILE=explore.
settings.register_profile("deterministic", derandomize=True, print_blob=True)
settings.register_profile("explore", max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))


@pytest.fixture(scope="session")
def embedded_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_client(embedded_redis: EmbeddedRedis) -> Iterator[redis.Redis]:
    if not embedded_redis.running:  # a fault test may have killed it
        embedded_redis.start()
    client = connect(embedded_redis.url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="session")
def config() -> QuanticityConfig:
    return load_config()


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray (num_cpus=2) shared by every integration and fault test (never under xdist)."""
    import ray

    # "local" always starts a private instance: a stale /tmp/ray/ray_current_cluster (written by
    # ray.cluster_utils.Cluster, say) must never make the tests attach to a cluster that is gone.
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        namespace="quanticity-tests",
    )
    yield
    ray.shutdown()
