"""Strategy actor: one per strategy; runs it over feature snapshots, enqueues signals atomically once.

Two kinds are hosted: the five SPEC §7 strategies (``quanticity.strategies.registry``, signals
through the hardened ``AtomicEnqueuer``) and the foundation's ``imbalance_momentum`` rule.
"""

from __future__ import annotations

import json
import time

import ray
import redis

from actors.common import ActorShell
from quanticity import keys
from quanticity.config.models import QuanticityConfig
from quanticity.messages import AltDataEvent, FeatureSnapshot, Signal, encode
from quanticity.session import RunSpec
from quanticity.store.client import SignalQueue
from quanticity.strategies.dedupe import AtomicEnqueuer, EnqueueStatus
from quanticity.strategies.imbalance_momentum import ImbalanceMomentumStrategy
from quanticity.strategies.registry import build_strategy

SIGNAL_TTL_S = 24 * 3600
NS = 1_000_000_000
CHECKPOINT_EVERY_S = 30.0


@ray.remote(num_cpus=0, max_restarts=0)
class StrategyActor(ActorShell):
    """Shell over one strategy; its state is checkpointed to Redis and restored on restart."""

    kind = "strategy"

    def __init__(self, name: str, config: QuanticityConfig, spec: RunSpec, redis_url: str, strategy: str) -> None:
        super().__init__(name, config, spec, redis_url)
        self.strategy_name = strategy
        if strategy == config.trading.strategy.name:
            self.legacy: ImbalanceMomentumStrategy | None = ImbalanceMomentumStrategy(config.trading.strategy)
            self.strategy = None
            self.queue = SignalQueue(self.redis)
        else:
            self.legacy = None
            self.strategy = build_strategy(getattr(config.trading.strategies, strategy))
            self.enqueuer = AtomicEnqueuer(self.redis)
        raw = self.redis.get(keys.strategy_state(strategy))
        if raw:
            try:
                (self.legacy or self.strategy).restore(json.loads(raw))  # type: ignore[union-attr]
            except (KeyError, TypeError, ValueError) as exc:
                self.errors += 1
                self.log.error("strategy checkpoint unusable; starting fresh", extra={"error": repr(exc)})
        self.enqueued = 0
        self.duplicates = 0
        self.alt_events = 0
        self._last_checkpoint_ns = 0
        # the admin's run-time enable/disable outlives this actor (the supervisor persists it)
        flag = self.redis.hget(keys.STRATEGY_ENABLED, strategy)
        if flag is not None:
            self.set_enabled(flag == "1")

    def on_features(self, snap: FeatureSnapshot) -> int:
        """Evaluate one snapshot; returns how many signals were enqueued."""
        started = time.perf_counter()
        self.events += 1
        if self.legacy is not None:
            # lock-step stamps with the snapshot's (simulated) ts_init, as the backtest does
            ts_init = snap.ts_init if self.spec.lockstep else time.time_ns()
            signal = self.legacy.on_features(snap, now_ns=snap.ts_event, ts_init=ts_init)
            signals = [signal] if signal is not None else []
        else:
            assert self.strategy is not None
            if snap.symbol not in self.strategy.config.symbols:
                return 0
            signals = self.strategy.on_features(snap, snap.ts_event)
        enqueued = sum(self._enqueue(s) for s in signals)
        if signals or snap.ts_event - self._last_checkpoint_ns >= CHECKPOINT_EVERY_S * NS:
            self._checkpoint(snap.ts_event)
        self.latency.add(time.perf_counter() - started)
        return enqueued

    def on_features_batch(self, snaps: list[FeatureSnapshot]) -> int:
        """Several snapshots in order (one call per analytics batch); returns signals enqueued."""
        return sum(self.on_features(snap) for snap in snaps)

    def on_alt_data(self, events: list[AltDataEvent]) -> int:
        """Alternative data (congress, insiders, dark pool, flow alerts, news, earnings)."""
        if self.strategy is None:
            return 0
        for event in events:
            self.strategy.on_alt_data(event)
        self.alt_events += len(events)
        if events:
            self._checkpoint(max(e.ts_event for e in events))
        return len(events)

    def _enqueue(self, signal: Signal) -> bool:
        """Atomic check-and-enqueue; a Redis outage loses this signal (counted), never duplicates it."""
        try:
            if self.legacy is not None:
                entry = self.queue.enqueue_once(
                    keys.signal_dedupe(signal.signal_id), keys.SIGNALS_STREAM, encode(signal).decode(), SIGNAL_TTL_S
                )
                added = entry is not None
            else:
                added = self.enqueuer.enqueue(signal).status is EnqueueStatus.ENQUEUED
        except redis.RedisError as exc:
            self.errors += 1
            self.log.warning(
                "signal not enqueued: Redis unavailable", extra={"signal_id": signal.signal_id, "error": str(exc)}
            )
            return False
        if added:
            self.enqueued += 1
        else:
            self.duplicates += 1
        return added

    def _checkpoint(self, now_ns: int) -> None:
        try:
            state = (self.legacy or self.strategy).state()  # type: ignore[union-attr]
            self.redis.set(keys.strategy_state(self.strategy_name), json.dumps(state, default=str))
            self._last_checkpoint_ns = now_ns
        except redis.RedisError as exc:
            self.errors += 1
            self.log.warning("strategy checkpoint failed", extra={"error": str(exc)})

    def set_enabled(self, enabled: bool) -> bool:
        """Enable or disable the strategy at run time. Called by the RootSupervisor (admin ``/strategy``),
        which persisted the flag first, and by the constructor restoring it; a disabled strategy
        evaluates nothing and emits no signal."""
        target = self.legacy or self.strategy
        if target is None:
            raise RuntimeError(f"strategy: {self.strategy_name!r} has no strategy object to enable or disable")
        target.config = target.config.model_copy(update={"enabled": enabled})
        self.log.warning("strategy %s", "enabled" if enabled else "disabled", extra={"strategy": self.strategy_name})
        return enabled

    def stats(self) -> dict[str, float]:
        target = self.legacy or self.strategy
        evaluated = getattr(target, "evaluated", 0)
        return {
            "evaluated": evaluated,
            "signals": self.enqueued,
            "duplicate_signals": self.duplicates,
            "alt_events": self.alt_events,
        }
