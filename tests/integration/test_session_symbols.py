"""Symbols added before the start and removed after the session, on the embedded sim venue."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray
import redis

from actors.common import analytics_name
from quanticity.observability.metrics import read_heartbeats
from supervisors.launch import start_system, stop_system, wait_until_done
from tests.system_harness import session_spec, system_config

pytestmark = pytest.mark.integration


def test_add_and_remove_symbol_at_run_time(
    ray_session: None,
    redis_client: redis.Redis,
    embedded_redis,  # noqa: ANN001
    tmp_path: Path,
) -> None:
    config = system_config(tmp_path, symbols=("SPY",))
    spec = session_spec(config, minutes=20)
    supervisor = start_system(config, spec, embedded_redis.url, start=False)
    try:
        ray.get(supervisor.add_symbol.remote("IWM"))
        assert analytics_name("IWM") in ray.get(supervisor.topology.remote())
        ray.get(supervisor.start.remote())
        wait_until_done(config, timeout_s=180)
        ray.get(supervisor.check_children.remote())
        beats = read_heartbeats(redis_client)
        assert beats[analytics_name("IWM")]["events"] > 0
        assert ray.get(supervisor.remove_symbol.remote("IWM"))
        assert analytics_name("IWM") not in ray.get(supervisor.topology.remote())
        with pytest.raises(ValueError):
            ray.get_actor(analytics_name("IWM"), namespace=config.system.system.namespace)
    finally:
        stop_system(supervisor)
