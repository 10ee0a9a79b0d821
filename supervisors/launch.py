"""Starting a system under a running Ray and waiting for its session: shared by the CLI, the
tests and the benchmarks, so all three exercise the same path."""

from __future__ import annotations

import time
from typing import Any

import ray
import redis
from ray.exceptions import ActorUnavailableError, GetTimeoutError

from actors.common import FEED
from quanticity import keys
from quanticity.clock import NS_PER_SECOND
from quanticity.config.models import QuanticityConfig
from quanticity.distribution.schedule import Schedule
from quanticity.session import RunSpec
from supervisors.root import RootSupervisor, supervisor_options


def start_system(
    config: QuanticityConfig, spec: RunSpec, redis_url: str, start: bool = True, env: dict[str, str] | None = None
) -> Any:
    """Create (or adopt) the root supervisor; it builds the topology. ``start`` begins the session.

    ``env`` is handed to the children that read secrets (publishers, overseer, admin) as their
    environment — how the embedded run and the tests point them at the loopback twins.
    """
    supervisor = RootSupervisor.options(**supervisor_options(config.system.system.namespace)).remote(
        config, spec, redis_url, env
    )
    ray.get(supervisor.info.remote())  # the constructor built (or adopted) the whole topology
    if start:
        ray.get(supervisor.start.remote())
    return supervisor


def feed_progress(config: QuanticityConfig, timeout_s: float = 10.0) -> dict[str, float] | None:
    """The feed's progress, or None while it is unreachable (being restarted)."""
    try:
        feed = ray.get_actor(FEED, namespace=config.system.system.namespace)
        return ray.get(feed.progress.remote(), timeout=timeout_s)
    except Exception:
        return None


def wait_until_done(config: QuanticityConfig, timeout_s: float, poll_s: float = 0.2) -> dict[str, float]:
    """Block until the feed finished the session; raises TimeoutError with the last progress."""
    deadline = time.monotonic() + timeout_s
    progress: dict[str, float] | None = None
    while time.monotonic() < deadline:
        progress = feed_progress(config) or progress
        if progress and progress.get("done"):
            return progress
        time.sleep(poll_s)
    raise TimeoutError(f"session not done within {timeout_s} s; last progress {progress}")


def wait_until_quiet(client: redis.Redis, timeout_s: float = 15.0) -> bool:
    """Wait until the risk gate consumed every signal and no order is in doubt."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        last = client.xrevrange(keys.SIGNALS_STREAM, count=1)
        drained = not last or client.get(keys.RISK_CURSOR) == last[0][0]
        if drained and not client.smembers(keys.ORDERS_PENDING):
            return True
        time.sleep(0.1)
    return False


def delivery_backlog(client: redis.Redis, channels: list[str]) -> dict[str, int]:
    """Deliveries per channel still scheduled or in flight (the delayed tiers not yet out)."""
    out = {}
    for channel in channels:
        schedule = Schedule(client, channel)
        out[channel] = schedule.pending_count() + len(schedule.inflight())
    return out


AFTER_CLOSE_SPEED = 60.0
"""Simulated seconds per wall second of the after-close clock when the run itself was unpaced."""
RETRY_ROOM_S = 300.0
"""Simulated seconds past the longest tier delay the after-close clock may run, for retries."""


def drain_deliveries(config: QuanticityConfig, spec: RunSpec, client: redis.Redis, cap_s: float = 120.0) -> int:
    """Deliver what the subscribers are still owed after the session's last step; returns how many remain.

    A session that ends still owes the delayed tiers of its last fills (free is due five
    simulated minutes after the fill), and every publisher schedules on the session clock the
    feed publishes — which stops with the market. So the clock runs on past the close, at the
    run's speed (:data:`AFTER_CLOSE_SPEED` for an unpaced run), until nothing is scheduled or in
    flight, for at most the longest tier delay plus :data:`RETRY_ROOM_S` of simulated time and
    ``cap_s`` of wall time. What is still owed then stays scheduled in Redis.
    """
    channels = list(config.distribution.channels)
    longest = max(
        (
            (c.delays_s or config.distribution.delays_s).of(tier)
            for c in config.distribution.channels.values()
            for tier in c.tiers
        ),
        default=0.0,
    )
    rate = spec.speed if spec.paced else AFTER_CLOSE_SPEED
    published = client.get(keys.SIM_CLOCK)
    close_ns = max(spec.sim_end_ns, int(published) if published else 0)
    limit_ns = close_ns + int((longest + RETRY_ROOM_S) * NS_PER_SECOND)
    started = time.monotonic()
    while True:
        owed = sum(delivery_backlog(client, channels).values())
        elapsed = time.monotonic() - started
        if owed == 0 or elapsed > cap_s:
            return owed
        now_ns = min(limit_ns, close_ns + int(elapsed * rate * NS_PER_SECOND))
        client.set(keys.SIM_CLOCK, now_ns)
        time.sleep(0.05)


def stop_system(supervisor: Any, timeout_s: float = 90.0) -> None:
    """Kill the children and the supervisor (end of a session or a test).

    The supervisor may be restarting (its node was lost): wait for the new incarnation, which
    re-adopts the children, and shut that down.
    """
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                ray.get(supervisor.shutdown.remote(), timeout=30)
                return
            except (ActorUnavailableError, GetTimeoutError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        ray.kill(supervisor, no_restart=True)
