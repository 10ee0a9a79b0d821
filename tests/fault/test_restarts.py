"""Fault tests: kill each actor kind mid-session; the supervisor restores it and nothing is lost or doubled."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import ray
import redis

from actors.common import BROKER, FEED, RISK, ROUTER, analytics_name, publisher_name, strategy_name
from quanticity import keys
from quanticity.execution.store import ExecutionStore
from quanticity.messages import Side
from supervisors.launch import feed_progress, start_system, stop_system, wait_until_done, wait_until_quiet
from tests.system_harness import session_spec, system_config, wait_for
from tests.venue_checks import assert_venue_matches_records

pytestmark = pytest.mark.fault


def assert_books_consistent(client: redis.Redis, config, channel_dir: Path) -> None:  # noqa: ANN001
    store = ExecutionStore(client)
    fills = store.fills()
    assert len({f.exec_id for f in fills}) == len(fills), "a fill was booked twice"
    net: dict[str, int] = {}
    for fill in fills:
        net[fill.contract.key] = net.get(fill.contract.key, 0) + (
            fill.quantity if fill.side is Side.BUY else -fill.quantity
        )
    assert {k: v for k, v in net.items() if v} == {k: p.quantity for k, p in store.positions().items()}
    broker = ray.get_actor(BROKER, namespace=config.system.system.namespace)
    assert_venue_matches_records(store, broker)
    audit = ray.get(broker.audit.remote())
    assert audit["executions"] == len(fills), "an execution at the broker was never booked"
    # one premium line per fill and per position event (stop raised) — each in its thread, once;
    # follow-ups go out on the publisher's next tick, so the log is given a moment to settle
    expected = sorted([f.exec_id for f in fills] + [e.event_id for e in store.position_events()])
    log = channel_dir / "local-premium.log"
    with contextlib.suppress(AssertionError):  # the assertion below shows the difference
        wait_for(lambda: _premium_ids(log) == expected, 30, "the premium log to hold every message once")
    assert _premium_ids(log) == expected, "a message was lost or published twice"


def _premium_ids(log: Path) -> list[str]:
    lines = log.read_text().splitlines() if log.exists() else []
    return sorted(line.split()[0].strip("[]") for line in lines)


KINDS = {
    "feed": FEED,
    "analytics": analytics_name("SPY"),
    "strategy": strategy_name("imbalance_momentum"),
    "risk": RISK,
    "router": ROUTER,
    "broker": BROKER,
    "publisher": publisher_name("local"),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_killed_actor_is_restored_and_session_completes(
    kind: str,
    ray_session: None,
    redis_client: redis.Redis,
    embedded_redis,
    tmp_path: Path,  # noqa: ANN001
) -> None:
    config = system_config(tmp_path)
    ns = config.system.system.namespace
    spec = session_spec(config, minutes=40)
    supervisor = start_system(config, spec, embedded_redis.url)
    name = KINDS[kind]
    try:
        # let the session trade a little first, so there is state to lose
        wait_for(lambda: redis_client.xlen(keys.FILLS_STREAM) > 0, 180, "a first fill")
        checkpointed = 0
        if kind == "analytics":
            wait_for(lambda: redis_client.get(keys.analytics_state("SPY")) is not None, 60, "a checkpoint")
            checkpointed = json.loads(redis_client.get(keys.analytics_state("SPY")))["features"]["events"]
        if kind == "risk":
            ray.get(ray.get_actor(RISK, namespace=ns).set_state.remote("REDUCING", "drill"))
        victim = ray.get_actor(name, namespace=ns)
        old_id = victim._actor_id.hex()
        ray.kill(victim, no_restart=True)
        wait_for(lambda: int(redis_client.hget(keys.RESTARTS, name) or 0) >= 1, 60, f"restart of {name}")
        new = ray.get_actor(name, namespace=ns)
        assert new._actor_id.hex() != old_id
        if kind == "analytics":
            after = ray.get(new.snapshot_state.remote())
            assert after["features"]["events"] >= checkpointed > 0  # resumed from the checkpoint, not from zero
            assert ray.get(new.ping.remote()).detail["restored"] == 1.0
        if kind == "risk":
            assert ray.get(new.trading_state.remote()) == "REDUCING"
            ray.get(new.set_state.remote("ACTIVE", "drill over"))
        wait_until_done(config, timeout_s=300)
        assert wait_until_quiet(redis_client, timeout_s=30)
        ray.get(ray.get_actor(ROUTER, namespace=ns).reconcile.remote())
        wait_for(lambda: _publisher_caught_up(redis_client), 30, "publisher to catch up")
        assert_books_consistent(redis_client, config, tmp_path / "channels")
    finally:
        stop_system(supervisor)


def _publisher_caught_up(client: redis.Redis) -> bool:
    """Both of the local channel's followers have handled the last entry of their stream."""
    for stream, cursor in (
        (keys.FILLS_STREAM, keys.publisher_cursor("local")),
        (keys.POSITION_EVENTS_STREAM, keys.publisher_followup_cursor("local")),
    ):
        last = client.xrevrange(stream, count=1)
        if last and client.get(cursor) != last[0][0]:
            return False
    return True


def test_killed_supervisor_readopts_children(
    ray_session: None,
    redis_client: redis.Redis,
    embedded_redis,
    tmp_path: Path,  # noqa: ANN001
) -> None:
    config = system_config(tmp_path)
    spec = session_spec(config, minutes=30)
    supervisor = start_system(config, spec, embedded_redis.url)
    try:
        before = ray.get(supervisor.topology.remote())
        first = ray.get(supervisor.info.remote())
        ray.kill(supervisor, no_restart=False)  # Ray restarts it (max_restarts=-1)
        wait_for(lambda: _incarnation(supervisor) == first["incarnation"] + 1, 60, "supervisor restart")
        info = ray.get(supervisor.info.remote())
        assert info["created"] == [] and set(info["adopted"]) == set(before)
        after = ray.get(supervisor.topology.remote())
        assert {n: t["actor_id"] for n, t in after.items()} == {n: t["actor_id"] for n, t in before.items()}
        assert redis_client.hlen(keys.RESTARTS) == 0
        wait_until_done(config, timeout_s=300)
        assert feed_progress(config)["done"] == 1.0  # type: ignore[index]
    finally:
        stop_system(supervisor)


def _incarnation(supervisor) -> int:  # noqa: ANN001
    try:
        return int(ray.get(supervisor.info.remote(), timeout=5)["incarnation"])
    except Exception:
        return -1


def test_hung_actor_is_killed_and_replaced(
    ray_session: None,
    redis_client: redis.Redis,
    embedded_redis,
    tmp_path: Path,  # noqa: ANN001
) -> None:
    config = system_config(tmp_path)
    ns = config.system.system.namespace
    supervisor = start_system(config, session_spec(config, minutes=20), embedded_redis.url, start=False)
    try:
        broker = ray.get_actor(BROKER, namespace=ns)
        old_id = broker._actor_id.hex()
        broker.freeze.remote(120)
        wait_for(lambda: int(redis_client.hget(keys.RESTARTS, BROKER) or 0) >= 1, 60, "hung broker restart")
        events = [f["detail"] for _, f in redis_client.xrange(keys.SUPERVISOR_EVENTS) if f["actor"] == BROKER]
        assert "hung" in events
        assert ray.get_actor(BROKER, namespace=ns)._actor_id.hex() != old_id
    finally:
        stop_system(supervisor)


def test_redis_killed_mid_session_recovers_without_loss(
    ray_session: None,
    redis_client: redis.Redis,
    embedded_redis,
    tmp_path: Path,  # noqa: ANN001
) -> None:
    config = system_config(tmp_path)
    ns = config.system.system.namespace
    supervisor = start_system(config, session_spec(config, minutes=40), embedded_redis.url)
    try:
        wait_for(lambda: redis_client.xlen(keys.FILLS_STREAM) > 0, 180, "a first fill")
        fills_before = redis_client.xlen(keys.FILLS_STREAM)
        embedded_redis.kill()  # abrupt: the append-only file is all that survives
        embedded_redis.start()  # same port, same data directory
        assert redis_client.xlen(keys.FILLS_STREAM) >= fills_before  # durable state came back
        wait_until_done(config, timeout_s=300)
        assert wait_until_quiet(redis_client, timeout_s=30)
        ray.get(ray.get_actor(ROUTER, namespace=ns).reconcile.remote())
        wait_for(lambda: _publisher_caught_up(redis_client), 30, "publisher to catch up")
        assert_books_consistent(redis_client, config, tmp_path / "channels")
    finally:
        stop_system(supervisor)
