"""SymbolAnalytics actor: one per symbol; keeps the symbol's market state, forwards features."""

from __future__ import annotations

import json
import time
from datetime import date

import msgspec
import ray
import redis
from ray.exceptions import GetTimeoutError, RayActorError

from actors.common import ActorShell, strategy_names
from quanticity import keys
from quanticity.analytics.engine import AnalyticsEngine, warm_up_chain_kernels
from quanticity.config.models import QuanticityConfig
from quanticity.messages import AltDataEvent, AltDataKind, FeatureSnapshot, MarketBatch, encode
from quanticity.session import RunSpec

NS = 1_000_000_000
LOCKSTEP_STRATEGY_TIMEOUT_S = 30.0
"""Lock-step: how long one strategy may take over a snapshot batch before it is reported and skipped."""


@ray.remote(num_cpus=0, max_restarts=0)
class SymbolAnalyticsActor(ActorShell):
    """Shell over :class:`SymbolFeatures`; restores its checkpoint from Redis on (re)start."""

    kind = "analytics"

    def __init__(self, name: str, config: QuanticityConfig, spec: RunSpec, redis_url: str, symbol: str) -> None:
        super().__init__(name, config, spec, redis_url)
        self.symbol = symbol
        underlying = config.market.underlyings.get(symbol)
        self.engine = AnalyticsEngine(
            symbol,
            config.trading.analytics,
            min_dte=0 if symbol in config.system.universe.zero_dte else 14,
            rate=config.market.chain.risk_free_rate,
            div_yield=underlying.dividend_yield if underlying else 0.0,
            session_date=date.fromisoformat(spec.session_date),
        )
        self.features = self.engine.features
        warm_up_chain_kernels(self.engine.rate, self.engine.div_yield)  # before the open, not at it
        raw = self.redis.get(keys.analytics_state(symbol))
        self.restored = False
        if raw:
            try:
                self.engine.restore(json.loads(raw))
                self.restored = True
            except (KeyError, TypeError, ValueError) as exc:  # an incompatible checkpoint: start clean, say so
                self.errors += 1
                self.log.error("analytics checkpoint unusable; starting fresh", extra={"error": repr(exc)})
        self.forwarded = 0
        self.redis_errors = 0
        self._last_checkpoint_ns = self.features.last_event_ns
        self._last_write_ns = 0
        self._strategies = strategy_names(config, symbol)
        self._in_flight: dict[str, ray.ObjectRef] = {}  # the last unawaited call per strategy (not lock-step)

    def on_packed(self, data: bytes, ts_init: int | None = None) -> int:
        """Batches as msgpack bytes (what the feed sends); malformed data is counted, not raised.

        ``ts_init`` (lock-step: the step's simulated time) stamps the snapshots instead of the wall clock."""
        try:
            batches = msgspec.msgpack.decode(data, type=list[MarketBatch])
        except msgspec.DecodeError as exc:
            self.errors += 1
            self.log.error("malformed batch payload dropped", extra={"symbol": self.symbol, "error": str(exc)})
            return 0
        return self.on_batches(batches, ts_init)

    def on_batches(self, batches: list[MarketBatch], ts_init: int | None = None) -> int:
        """Apply feed batches in order, deciding after each one whether a snapshot is due.

        Deciding per batch (not per call) makes what the strategies see independent of how the
        feed grouped its batches — the same session gives the same snapshots, live or replayed.
        """
        started = time.perf_counter()
        before = self.features.events
        snapshots: list[FeatureSnapshot] = []
        try:
            for batch in batches:
                self.engine.on_batch(batch)
                now = self.features.last_event_ns
                if now and self.features.snapshot_due(now):
                    snapshots.append(self._snapshot(now, ts_init))
            self._send(snapshots)
            now = self.features.last_event_ns
            if now - self._last_checkpoint_ns >= self.config.trading.analytics.checkpoint_every_s * NS:
                self.checkpoint()
        except redis.RedisError as exc:  # Redis restarting: state stays in memory, next checkpoint catches up
            self.redis_errors += 1
            self.log.warning("analytics write failed", extra={"symbol": self.symbol, "error": str(exc)})
        self.events = self.features.events
        self.errors = sum(self.engine.rejected().values())
        self.latency.add(time.perf_counter() - started)
        return self.features.events - before

    def on_alt_data(self, events: list[AltDataEvent]) -> int:
        """Prior sessions' closing vol readings (``VOL_CLOSE``) into the IV-rank history; returns
        how many were recorded (malformed ones are counted by the engine and dropped)."""
        return sum(self.engine.on_vol_close(e) for e in events if e.kind is AltDataKind.VOL_CLOSE)

    def _send(self, snapshots: list[FeatureSnapshot]) -> None:
        """One call per strategy for all snapshots of this batch call (batching keeps Ray calls few).

        In lock-step each strategy's call is awaited before the next strategy's (legacy rule first,
        then config order), so the signals reach the stream in the backtest's order."""
        if not snapshots:
            return
        for name in self._strategies:
            strategy = self.peers.get(name)
            if strategy is None:
                continue
            ref = strategy.on_features_batch.remote(snapshots)
            if self.spec.lockstep:
                try:
                    ray.get(ref, timeout=LOCKSTEP_STRATEGY_TIMEOUT_S)
                except (RayActorError, GetTimeoutError) as exc:  # the supervisor replaces it; count, go on
                    self.errors += 1
                    self.peers.forget(name)
                    self.log.warning("strategy call failed", extra={"strategy": name, "error": type(exc).__name__})
            else:
                self._check_previous_call(name, ref)
        self.forwarded += len(snapshots)

    def _check_previous_call(self, name: str, ref: ray.ObjectRef) -> None:
        """Calls to strategies are not awaited outside lock-step, so a strategy that died is noticed
        here: its previous call failed. The cached handle is dropped, so the next batch goes to the
        actor the supervisor recreated under the same name instead of to the dead one for ever."""
        previous = self._in_flight.get(name)
        self._in_flight[name] = ref
        if previous is None or not ray.wait([previous], timeout=0)[0]:
            return
        try:
            ray.get(previous, timeout=0)
        except RayActorError as exc:
            self.errors += 1
            self.peers.forget(name)
            self._in_flight.pop(name, None)  # the call just made went to the same dead actor
            self.log.warning("strategy call failed", extra={"strategy": name, "error": type(exc).__name__})
        except Exception:  # the strategy raised on a batch: its own error count says so, not a dead actor
            self.log.debug("strategy call raised", extra={"strategy": name})

    def _snapshot(self, now: int, ts_init: int | None = None) -> FeatureSnapshot:
        snap, metrics = self.engine.snapshot(now, time.time_ns() if ts_init is None else ts_init)
        if now - self._last_write_ns >= self.config.trading.analytics.write_every_s * NS:
            # Redis snapshots are for readers that poll (overseer, reports, status): at most one
            # write per write_every_s keeps the hot path free; strategies get every snapshot.
            ttl = int(self.config.trading.analytics.snapshot_ttl_s) + 1
            pipe = self.redis.pipeline(transaction=False)
            pipe.set(keys.analytics(self.symbol, "features"), encode(snap), ex=ttl)
            for metric, values in metrics.items():
                pipe.set(keys.analytics(self.symbol, metric), json.dumps(values), ex=ttl)
            pipe.execute()
            self._last_write_ns = now
        return snap

    def on_external(self, metric: str, value: float, source: str) -> dict:
        """A value an outside source (Unusual Whales) computed for us: keep both and the divergence."""
        record = self.engine.record_external(metric, value, source, self.features.last_event_ns)
        self.redis.set(keys.analytics(self.symbol, "divergence"), json.dumps(self.engine.external, default=str))
        return record

    def metrics(self) -> dict:
        """Every metric snapshot now (tests and the CLI read it)."""
        return self.engine.metrics(self.features.last_event_ns)

    def checkpoint(self) -> None:
        """Persist the state a restarted actor resumes from."""
        self.redis.set(keys.analytics_state(self.symbol), json.dumps(self.engine.state()))
        self._last_checkpoint_ns = self.features.last_event_ns

    def snapshot_state(self) -> dict:
        """The current state (tests compare it across a restart)."""
        return self.engine.state()

    def stats(self) -> dict[str, float]:
        return {
            "forwarded": self.forwarded,
            "restored": float(self.restored),
            "redis_errors": self.redis_errors,
            **{f"rejected_{k}": float(v) for k, v in self.engine.rejected().items()},
        }
