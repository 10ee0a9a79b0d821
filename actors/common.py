"""What every actor shell shares: naming, Redis, heartbeats, and finding its peers by name.

Actors find each other by name (``<namespace>`` Ray namespace, ``quanticity:<kind>[:<key>]``),
never by a handle captured at start: when the supervisor replaces a dead actor under the same
name, its peers reach the new one on their next call.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import ray
import redis

from quanticity import keys
from quanticity.config.models import QuanticityConfig
from quanticity.lockstep import vol_close_by_symbol
from quanticity.messages import AltDataEvent, Heartbeat
from quanticity.observability.latency import LatencyWindow
from quanticity.observability.logs import configure_logging
from quanticity.session import RunSpec
from quanticity.store.client import StoreClock, connect

FEED = "quanticity:feed"
BROKER = "quanticity:broker"
ROUTER = "quanticity:router"
RISK = "quanticity:risk"
SUPERVISOR = "quanticity:root"


def analytics_name(symbol: str) -> str:
    """Actor name of the SymbolAnalytics actor of ``symbol``."""
    return f"quanticity:analytics:{symbol}"


def strategy_name(strategy: str) -> str:
    """Actor name of a strategy actor."""
    return f"quanticity:strategy:{strategy}"


def strategy_names(config: QuanticityConfig, symbol: str | None = None) -> list[str]:
    """Actor names of the enabled strategies (those trading ``symbol`` when given)."""
    names = []
    if config.trading.strategy.enabled:
        names.append(strategy_name(config.trading.strategy.name))
    for strategy in config.trading.strategies.enabled():
        if symbol is None or symbol in strategy.symbols:
            names.append(strategy_name(strategy.name))
    return names


def send_alt_data(peers: Peers, targets: list[str], events: list[AltDataEvent]) -> list[ray.ObjectRef]:
    """Call ``on_alt_data(events)`` on every target actor alive now; returns the calls' refs.

    Shared by the feeds (simulated alt data) and the fetcher (the UW bridge), so both reach the
    strategies the same way. The callers fire and forget, except the lock-step feed, which awaits
    the refs. A strategy that is down misses the batch, and its AltDataBook drops the repeat if a
    later fetch sends the same events again.
    """
    return [handle.on_alt_data.remote(events) for handle in map(peers.get, targets) if handle is not None]


def deliver_alt_data(peers: Peers, strategies: list[str], events: list[AltDataEvent]) -> list[ray.ObjectRef]:
    """A simulated feed's due alternative data: all of it to the strategies, and the prior
    sessions' closing vol readings to each symbol's analytics actor (they seed its IV-rank
    history). Returns the calls' refs (the lock-step feed awaits them)."""
    if not events:
        return []
    refs = send_alt_data(peers, strategies, events)
    for symbol, closes in vol_close_by_symbol(events).items():
        refs += send_alt_data(peers, [analytics_name(symbol)], closes)
    return refs


def publisher_name(channel: str) -> str:
    """Actor name of the publisher of ``channel``."""
    return f"quanticity:publisher:{channel}"


class Peers:
    """Looks up actors by name and caches the handles until a call to one fails."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._cache: dict[str, Any] = {}

    def get(self, name: str) -> Any | None:
        """Handle of ``name``, or None when no such actor is alive right now."""
        handle = self._cache.get(name)
        if handle is None:
            try:
                handle = ray.get_actor(name, namespace=self.namespace)
            except ValueError:
                return None
            self._cache[name] = handle
        return handle

    def forget(self, name: str) -> None:
        """Drop a cached handle (after a call to it failed), so the next get looks it up again."""
        self._cache.pop(name, None)


class StreamFollower:
    """A background thread that reads a Redis stream from a persisted cursor, entry by entry.

    ``handle(entry_id, fields)`` is called in order; the cursor is saved after each entry, so a
    restarted actor resumes after the last entry it finished. A handler that returns ``False``
    means "not yet" (what the entry depends on has not arrived): the cursor stays, and the same
    entry is offered again after :data:`RETRY_WAIT_S`, while the loop still counts as alive.
    ``last_loop_ns`` lets the actor report a stalled loop as unhealthy (the supervisor then
    replaces it).
    """

    RETRY_WAIT_S = 0.1

    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        cursor_key: str,
        handle: Callable[[str, dict[str, str]], bool | None],
        log: logging.Logger,
        name: str,
    ) -> None:
        self._client = client
        self._stream = stream
        self._cursor_key = cursor_key
        self._handle = handle
        self._log = log
        self.cursor = client.get(cursor_key) or "0-0"
        self.read_errors = 0
        self.retries = 0
        self.last_loop_ns = time.time_ns()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.last_loop_ns = time.time_ns()
            try:
                batch = self._client.xread({self._stream: self.cursor}, count=64, block=200)
            except redis.RedisError as exc:
                self.read_errors += 1
                self._log.warning("stream unreadable; retrying", extra={"stream": self._stream, "error": str(exc)})
                self._stop.wait(0.2)
                continue
            if not self._handle_batch(batch or []):
                self.retries += 1
                self._stop.wait(self.RETRY_WAIT_S)

    def _handle_batch(self, batch: list[tuple[str, list[tuple[str, dict[str, str]]]]]) -> bool:
        """Handle entries in order; ``False`` at the first one that is not ready (cursor left before it)."""
        for _, entries in batch:
            for entry_id, fields in entries:
                if self._handle(entry_id, fields) is False:
                    return False
                self.cursor = entry_id
                self._client.set(self._cursor_key, entry_id)
        return True

    def stalled_for_s(self) -> float:
        """Seconds since the loop last came round (0 while it is healthy)."""
        return (time.time_ns() - self.last_loop_ns) / 1e9

    def stop(self) -> None:
        """Stop after the current entry."""
        self._stop.set()

    def join(self, timeout_s: float = 5.0) -> bool:
        """Wait for a stopped follower's thread to end (a read blocks for at most 200 ms); whether it did."""
        self._thread.join(timeout_s)
        return not self._thread.is_alive()


STALL_LIMIT_S = 30.0
"""A follower loop that has not come round for this long makes its actor report unhealthy."""


class ActorShell:
    """Base of every actor: config, Redis client, clock, counters and the heartbeat."""

    kind = "actor"

    def __init__(self, name: str, config: QuanticityConfig, spec: RunSpec, redis_url: str) -> None:
        self.name = name
        self.config = config
        self.spec = spec
        self.redis: redis.Redis = connect(redis_url)
        self.clock = StoreClock(self.redis, keys.SIM_CLOCK, spec.sim_start_ns)
        self.peers = Peers(config.system.system.namespace)
        self.log: logging.Logger = configure_logging(config.system.system.log_level, self.kind)
        self.events = 0
        self.errors = 0
        self.latency = LatencyWindow()
        self.started_ns = time.time_ns()

    def stats(self) -> dict[str, float]:
        """Actor-specific counters for the heartbeat; subclasses extend."""
        return {}

    def ping(self) -> Heartbeat:
        """Answer the supervisor and publish the heartbeat to Redis for ``quanticity status``."""
        now = time.time_ns()
        detail = {**self.stats(), **self.latency.percentiles(0.5, 0.99)}
        beat = Heartbeat(
            ts_event=now, ts_init=now, actor=self.name, events=self.events, errors=self.errors, detail=detail
        )
        try:
            self.redis.set(
                keys.heartbeat(self.name),
                json.dumps({"kind": self.kind, "ts": now, "events": self.events, "errors": self.errors, **detail}),
                ex=keys.TTL_SECONDS["heartbeat"],
            )
        except redis.RedisError as exc:
            self.errors += 1
            self.log.warning("heartbeat not written", extra={"actor": self.name, "error": str(exc)})
        return beat

    def freeze(self, seconds: float) -> bool:
        """Fault injection for drills and tests: block this actor's thread, as a hung actor would."""
        time.sleep(seconds)
        return True

    def node_id(self) -> str:
        """The Ray node this actor runs on (the supervisor and tests check placement)."""
        return ray.get_runtime_context().get_node_id()
