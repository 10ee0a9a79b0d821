"""``venue.kind: tws``: the whole system trades through ib_async against the TWS simulator (SPEC §5, §11)."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray
import redis

from actors.common import BROKER
from actors.venues import VENUES
from quanticity import keys
from quanticity.execution.store import ExecutionStore
from quanticity.messages import Side
from supervisors.launch import start_system, stop_system, wait_until_done, wait_until_quiet
from tests.system_harness import session_spec, system_config, wait_for

pytestmark = pytest.mark.integration

SPEED = 24.0
MINUTES = 12


def _net(fills: list) -> dict[str, int]:  # noqa: ANN001 - list of Fill
    net: dict[str, int] = {}
    for fill in fills:
        net[fill.contract.key] = net.get(fill.contract.key, 0) + (
            fill.quantity if fill.side is Side.BUY else -fill.quantity
        )
    return {k: v for k, v in net.items() if v}


def assert_venue_matches_router(config, client: redis.Redis) -> list:  # noqa: ANN001 - QuanticityConfig
    """Orders reached the simulator once by orderRef, fills were booked once, positions agree."""
    ns = config.system.system.namespace
    venues = ray.get_actor(VENUES, namespace=ns)
    broker = ray.get_actor(BROKER, namespace=ns)
    store = ExecutionStore(client)
    wait_for(lambda: ray.get(broker.audit.remote())["executions"] == len(store.fills()), 30, "fills booked")
    audit = ray.get(venues.audit.remote())
    fills = store.fills()
    assert audit["duplicate_refs"] == 0, "an orderRef reached the simulator twice"
    assert set(audit["order_refs"]) <= set(store.all_refs())
    assert {f.order_ref for f in fills} <= set(audit["order_refs"])
    assert len({f.exec_id for f in fills}) == len(fills) == audit["executions"], "an execution booked twice or lost"
    assert _net(fills) == audit["positions"] == {k: p.quantity for k, p in store.positions().items() if p.quantity}
    assert not store.pending_send()
    return fills


@pytest.fixture
def tws_session(ray_session: None, redis_client: redis.Redis, embedded_redis, tmp_path: Path):  # noqa: ANN001, ANN201
    # the fetcher has its own test (tests/fault/test_tws_reconnect.py runs it): two cores keep one heavy thing at a time
    config = system_config(tmp_path, venue="tws", extra={"system": {"venue": {"fetcher": False}}})
    spec = session_spec(config, minutes=MINUTES, speed=SPEED, lead_s=0)
    supervisor = start_system(config, spec, embedded_redis.url)
    yield config, spec
    stop_system(supervisor)


def test_tws_session_trades_through_ib_async(tws_session, redis_client: redis.Redis) -> None:  # noqa: ANN001
    config, spec = tws_session
    progress = wait_until_done(config, timeout_s=MINUTES * 60 / SPEED + 240)
    assert progress["done"] == 1.0 and progress["events"] > 1_000
    assert wait_until_quiet(redis_client, timeout_s=30)
    fills = assert_venue_matches_router(config, redis_client)
    assert fills, "the aggressive test strategy must trade through the TWS simulator"
    # the market's time (the simulator's accelerated clock) drove the system clock to the session end
    assert int(redis_client.get(keys.SIM_CLOCK)) >= spec.sim_end_ns - 2 * spec.step_ns
