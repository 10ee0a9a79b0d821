"""Strategy actor: runs one strategy over feature snapshots; enqueues signals atomically once."""

from __future__ import annotations

import json
import time

import ray
import redis

from actors.common import ActorShell
from quanticity import keys
from quanticity.config.models import QuanticityConfig
from quanticity.messages import FeatureSnapshot, Signal, encode
from quanticity.session import RunSpec
from quanticity.store.client import SignalQueue
from quanticity.strategies.imbalance_momentum import ImbalanceMomentumStrategy

SIGNAL_TTL_S = 24 * 3600


@ray.remote(num_cpus=0, max_restarts=0)
class StrategyActor(ActorShell):
    """Shell over a strategy; its cooldowns are checkpointed to Redis after every signal."""

    kind = "strategy"

    def __init__(self, name: str, config: QuanticityConfig, spec: RunSpec, redis_url: str) -> None:
        super().__init__(name, config, spec, redis_url)
        self.strategy = ImbalanceMomentumStrategy(config.trading.strategy)
        raw = self.redis.get(keys.strategy_state(config.trading.strategy.name))
        if raw:
            self.strategy.restore(json.loads(raw))
        self.queue = SignalQueue(self.redis)
        self.enqueued = 0
        self.duplicates = 0

    def on_features(self, snap: FeatureSnapshot) -> str | None:
        """Evaluate one snapshot; returns the stream id of an enqueued signal, if any."""
        started = time.perf_counter()
        self.events += 1
        signal = self.strategy.on_features(snap, now_ns=snap.ts_event, ts_init=time.time_ns())
        entry = None
        if signal is not None:
            entry = self._enqueue(signal)
        self.latency.add(time.perf_counter() - started)
        return entry

    def _enqueue(self, signal: Signal) -> str | None:
        """Atomic check-and-enqueue; a Redis outage loses this signal (counted), never duplicates it."""
        try:
            entry = self.queue.enqueue_once(
                keys.signal_dedupe(signal.signal_id), keys.SIGNALS_STREAM, encode(signal).decode(), SIGNAL_TTL_S
            )
            self.redis.set(keys.strategy_state(self.strategy.config.name), json.dumps(self.strategy.state()))
        except redis.RedisError as exc:
            self.errors += 1
            self.log.warning(
                "signal not enqueued: Redis unavailable", extra={"signal_id": signal.signal_id, "error": str(exc)}
            )
            return None
        if entry is None:
            self.duplicates += 1
        else:
            self.enqueued += 1
        return entry

    def set_enabled(self, enabled: bool) -> bool:
        """Enable or disable the strategy at run time (admin control)."""
        cfg = self.strategy.config.model_copy(update={"enabled": enabled})
        self.strategy.config = cfg
        return enabled

    def stats(self) -> dict[str, float]:
        return {"evaluated": self.strategy.evaluated, "signals": self.enqueued, "duplicate_signals": self.duplicates}
