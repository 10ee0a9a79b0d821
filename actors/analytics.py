"""SymbolAnalytics actor: one per symbol; keeps the symbol's market state, forwards features."""

from __future__ import annotations

import json
import time

import ray
import redis

from actors.common import ActorShell, strategy_name
from quanticity import keys
from quanticity.analytics.features import SymbolFeatures
from quanticity.config.models import QuanticityConfig
from quanticity.messages import MarketBatch, encode
from quanticity.session import RunSpec

NS = 1_000_000_000


@ray.remote(num_cpus=0, max_restarts=0)
class SymbolAnalyticsActor(ActorShell):
    """Shell over :class:`SymbolFeatures`; restores its checkpoint from Redis on (re)start."""

    kind = "analytics"

    def __init__(self, name: str, config: QuanticityConfig, spec: RunSpec, redis_url: str, symbol: str) -> None:
        super().__init__(name, config, spec, redis_url)
        self.symbol = symbol
        min_dte = 0 if symbol in config.system.universe.zero_dte else 14
        self.features = SymbolFeatures(symbol, config.trading.analytics, min_dte=min_dte)
        raw = self.redis.get(keys.analytics_state(symbol))
        self.restored = bool(raw)
        if raw:
            self.features.restore(json.loads(raw))
        self.forwarded = 0
        self.redis_errors = 0
        self._last_checkpoint_ns = self.features.last_event_ns
        self._strategies = [strategy_name(config.trading.strategy.name)]

    def on_batches(self, batches: list[MarketBatch]) -> int:
        """Apply feed batches in order; forward a snapshot when due. Returns events applied."""
        started = time.perf_counter()
        before = self.features.events
        for batch in batches:
            self.features.on_batch(batch)
        self.events = self.features.events
        self.errors = sum(self.features.rejected.values())
        now = self.features.last_event_ns
        try:
            if now and self.features.snapshot_due(now):
                self._forward(now)
            if now - self._last_checkpoint_ns >= self.config.trading.analytics.checkpoint_every_s * NS:
                self.checkpoint()
        except redis.RedisError as exc:  # Redis restarting: state stays in memory, next checkpoint catches up
            self.redis_errors += 1
            self.log.warning("analytics write failed", extra={"symbol": self.symbol, "error": str(exc)})
        self.latency.add(time.perf_counter() - started)
        return self.features.events - before

    def _forward(self, now: int) -> None:
        snap = self.features.snapshot(now, time.time_ns())
        self.redis.set(
            keys.analytics(self.symbol, "features"),
            encode(snap),
            ex=int(self.config.trading.analytics.snapshot_ttl_s) + 1,
        )
        for name in self._strategies:
            strategy = self.peers.get(name)
            if strategy is None:
                continue
            strategy.on_features.remote(snap)
        self.forwarded += 1

    def checkpoint(self) -> None:
        """Persist the state a restarted actor resumes from."""
        self.redis.set(keys.analytics_state(self.symbol), json.dumps(self.features.state()))
        self._last_checkpoint_ns = self.features.last_event_ns

    def snapshot_state(self) -> dict:
        """The current state (tests compare it across a restart)."""
        return self.features.state()

    def stats(self) -> dict[str, float]:
        return {
            "forwarded": self.forwarded,
            "restored": float(self.restored),
            "redis_errors": self.redis_errors,
            **{f"rejected_{k}": float(v) for k, v in self.features.rejected.items()},
        }
