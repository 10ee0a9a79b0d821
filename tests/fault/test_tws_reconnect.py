"""Fault: the TWS simulator drops the IBKR connections mid-session (``venue.kind: tws``, full topology).

Both clients reconnect with backoff, the feed re-subscribes, the broker reconciles by orderRef
before it takes new work, no order reaches the simulator twice, and the session completes. The
fetcher actor runs alongside (the UW/AV REST + WS fetcher against the loopback twins) and must have
written UW and AV keys to Redis.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import ray
import redis

from actors.common import BROKER, analytics_name
from actors.fetcher import FETCHER
from actors.venues import VENUES
from quanticity import keys
from supervisors.launch import start_system, stop_system, wait_until_done, wait_until_quiet
from tests.integration.test_tws_venue import assert_venue_matches_router
from tests.system_harness import session_spec, system_config, wait_for

pytestmark = pytest.mark.fault

SPEED = 30.0
MINUTES = 10


def test_dropped_ibkr_connections_reconnect_and_reconcile(
    ray_session: None,
    redis_client: redis.Redis,
    embedded_redis,  # noqa: ANN001
    tmp_path: Path,
) -> None:
    config = system_config(tmp_path, venue="tws")
    spec = session_spec(config, minutes=MINUTES, speed=SPEED)
    supervisor = start_system(config, spec, embedded_redis.url)
    ns = config.system.system.namespace
    try:
        venues = ray.get_actor(VENUES, namespace=ns)
        broker = ray.get_actor(BROKER, namespace=ns)
        wait_for(lambda: ray.get(venues.audit.remote())["orders"] > 0, 240, "a first order at the simulator")
        before = ray.get(broker.audit.remote())
        assert ray.get(venues.drop_connections.remote()) == 2  # the feed's and the broker's sessions
        wait_for(
            lambda: (
                ray.get(broker.audit.remote())["reconciles"] > before["reconciles"]
                and ray.get(broker.audit.remote())["state"] == "READY"
            ),
            60,
            "the broker reconnected and reconciled",
        )
        after = ray.get(broker.audit.remote())
        assert after["disconnects"] > before["disconnects"] and after["connects"] > before["connects"]
        # a symbol added mid-session is fetched too: the universe endpoints gain its jobs at once
        assert ray.get(supervisor.add_symbol.remote("MSFT")) == analytics_name("MSFT")
        wait_for(lambda: redis_client.get("raw:uw:darkpool:MSFT") is not None, 60, "UW data of the added symbol")
        progress = wait_until_done(config, timeout_s=MINUTES * 60 / SPEED + 240)
        assert progress["done"] == 1.0
        assert wait_until_quiet(redis_client, timeout_s=30)
        assert_venue_matches_router(config, redis_client)
        assert len(ray.get(venues.audit.remote())["clients"]) == 2, "both clients are connected again"
        # the fetcher wrote data of both sources from the twins; its counters are in its metrics
        for dialect in ("unusual_whales", "alpha_vantage"):
            prefix = keys.RAW_SOURCE_PREFIXES[dialect]
            wait_for(lambda p=prefix: next(redis_client.scan_iter(match=f"{p}*", count=500), None), 60, f"{prefix}*")
        metrics = ray.get(ray.get_actor(FETCHER, namespace=ns).metrics.remote())
        assert metrics["unusual_whales"]["responses_2xx"] > 0 and metrics["alpha_vantage"]["responses_2xx"] > 0
    finally:
        stop_system(supervisor)
