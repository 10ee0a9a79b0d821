"""Prometheus metrics of the whole system, read from what the actors report into Redis.

Every actor publishes its heartbeat (counters and latency percentiles) to ``heartbeat:<name>``
when the supervisor pings it; the supervisor counts restarts in ``system:restarts``. This
collector turns those into Prometheus families at scrape time, so the endpoint works from any
process that can reach Redis (the CLI serves it) and never holds stale per-process counters.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from quanticity import keys


def read_heartbeats(client: redis.Redis) -> dict[str, dict[str, float]]:
    """actor name → its last heartbeat (kind, ts, events, errors, detail counters)."""
    beats = {}
    for key in client.scan_iter(match=keys.HEARTBEAT_PATTERN, count=500):
        raw = client.get(key)
        if raw:
            beats[key.removeprefix("heartbeat:")] = json.loads(raw)
    return beats


class QuanticityCollector(Collector):
    """Collects per-actor events, errors, latencies, restarts and heartbeat ages from Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        events = CounterMetricFamily(
            "quanticity_actor_events", "Events processed by the actor", labels=["actor", "kind"]
        )
        errors = CounterMetricFamily(
            "quanticity_actor_errors", "Rejected inputs and failures", labels=["actor", "kind"]
        )
        restarts = CounterMetricFamily("quanticity_actor_restarts", "Restarts by the supervisor", labels=["actor"])
        latency = GaugeMetricFamily(
            "quanticity_actor_latency_ms", "Per-call processing latency percentiles", labels=["actor", "quantile"]
        )
        age = GaugeMetricFamily("quanticity_actor_heartbeat_age_seconds", "Age of the last heartbeat", labels=["actor"])
        gauges = GaugeMetricFamily("quanticity_actor_stat", "Actor-specific counters", labels=["actor", "stat"])
        now = time.time_ns()
        try:
            beats = read_heartbeats(self._client)
            restart_counts = self._client.hgetall(keys.RESTARTS)
        except redis.RedisError:
            return
        for actor, beat in beats.items():
            kind = str(beat.get("kind", "actor"))
            events.add_metric([actor, kind], float(beat.get("events", 0)))
            errors.add_metric([actor, kind], float(beat.get("errors", 0)))
            age.add_metric([actor], (now - int(beat.get("ts", now))) / 1e9)
            for stat, value in beat.items():
                if stat in ("kind", "ts", "events", "errors") or not isinstance(value, int | float):
                    continue
                if stat in ("p50", "p99"):
                    latency.add_metric([actor, stat], float(value))
                else:
                    gauges.add_metric([actor, stat], float(value))
        for actor, count in restart_counts.items():
            restarts.add_metric([actor], float(count))
        yield from (events, errors, restarts, latency, age, gauges)
