"""Counters of everything the overseer does, flattened for the actor heartbeat and Prometheus.

The actor shell publishes ``stats()`` in its heartbeat and the metrics collector turns every
numeric field into a ``quanticity_actor_stat`` gauge, so a counter added here is visible in
Grafana without further wiring.
"""

from __future__ import annotations

import threading


class Counters:
    """Thread-safe named counters: ``checks``, ``findings.<rule>``, ``model.calls``, ``fallback.<why>`` …"""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, float] = {}

    def add(self, name: str, amount: float = 1.0) -> None:
        """Increase ``name`` by ``amount``."""
        with self._lock:
            self._values[name] = self._values.get(name, 0.0) + amount

    def get(self, name: str) -> float:
        """Current value of ``name`` (0 when never counted)."""
        with self._lock:
            return self._values.get(name, 0.0)

    def snapshot(self) -> dict[str, float]:
        """A copy of every counter."""
        with self._lock:
            return dict(self._values)
