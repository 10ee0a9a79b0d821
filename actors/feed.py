"""Simulated feed actor: steps the synthetic market and batches its events to the symbol actors.

It plays the role an IBKR or Unusual Whales feed plays live: normalised, typed events, batched
per symbol (one actor call carries many events), raw snapshots written to Redis, and the shared
simulated clock published for every other actor. Backpressure: when the symbol actors fall
behind by ``max_inflight_flushes`` flushes, the feed waits instead of queueing without bound.

Lock-step mode (``RunSpec.lockstep``) replaces the flushes: each step is one batch per symbol and
the feed awaits every stage (alt data, analytics → strategies, the risk desk, the venue's matching
and the router's booking, the router tick) in the canonical order of :mod:`quanticity.lockstep`,
so the run trades exactly like ``research.backtest`` on the same session.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from datetime import date

import msgspec
import ray
import redis
from ray.exceptions import RayActorError

from actors.common import BROKER, RISK, ROUTER, ActorShell, analytics_name, deliver_alt_data, strategy_name
from quanticity import keys
from quanticity.config.models import FeedSection, QuanticityConfig
from quanticity.lockstep import AltDataCursor, TickSchedule, step_quotes
from quanticity.messages import MarketBatch, encode
from quanticity.session import RunSpec
from quanticity.sim.altdata import session_alt_data
from quanticity.sim.market import SyntheticMarket

NS = 1_000_000_000


@ray.remote(num_cpus=0, max_restarts=0, max_concurrency=8)
class SimFeedActor(ActorShell):
    """Shell over :class:`SyntheticMarket`; restores the market checkpoint on restart."""

    kind = "feed"

    def __init__(self, name: str, config: QuanticityConfig, spec: RunSpec, redis_url: str, symbols: list[str]) -> None:
        super().__init__(name, config, spec, redis_url)
        raw = self.redis.get(keys.FEED_STATE)
        if raw:
            self.market = SyntheticMarket.from_state(config.market, json.loads(raw))
            for symbol in set(symbols) - set(self.market.symbols):
                self.market.add_symbol(symbol)
        else:
            self.market = SyntheticMarket(
                config.market,
                list(symbols),
                date.fromisoformat(spec.session_date),
                spec.seed,
                spec.sim_start_ns,
                spec.step_ns,
            )
        self.restored = bool(raw)
        # alternative data of the session (history included), delivered as simulated time passes;
        # after a restart it is re-delivered from the start — strategies drop repeated filings
        self.alt_data = AltDataCursor(
            session_alt_data(config, self.market.symbols, date.fromisoformat(spec.session_date), spec.seed)
        )
        self.alt_targets = [strategy_name(s.name) for s in config.trading.strategies.enabled()]
        self.pending: dict[str, list[MarketBatch]] = {}
        self.inflight: deque[list[ray.ObjectRef]] = deque()
        self.sent_events = 0
        self.flushes = 0
        self.done = self.market.now_ns >= spec.sim_end_ns
        self._task: asyncio.Task | None = None
        self._pending_calls: dict[str, ray.ObjectRef] = {}
        self.coalesced: dict[str, int] = {}
        self._stopping = False
        self._last_raw_ns = self._last_checkpoint_ns = self.market.now_ns
        self.ticks = TickSchedule(config.system.feed.router_tick_every_s, self.market.now_ns)
        self.lockstep_steps = 0

    # --- control --------------------------------------------------------------------------
    async def start(self) -> bool:
        """Start stepping (idempotent)."""
        if self._task is None or self._task.done():
            self._stopping = False
            run = self._run_lockstep() if self.spec.lockstep else self._run()
            self._task = asyncio.get_running_loop().create_task(run)
        return True

    async def stop(self) -> bool:
        """Stop stepping after the current step."""
        self._stopping = True
        if self._task is not None:
            await asyncio.wait([self._task], timeout=10)
        return True

    async def add_symbol(self, symbol: str) -> list[str]:
        """Start generating ``symbol`` (the supervisor creates its analytics actor first)."""
        self.market.add_symbol(symbol)
        return self.market.symbols

    async def remove_symbol(self, symbol: str) -> list[str]:
        """Stop generating ``symbol``."""
        self.market.remove_symbol(symbol)
        self.pending.pop(symbol, None)
        return self.market.symbols

    async def progress(self) -> dict[str, float]:
        """Where the session is: simulated time, steps, events sent, done."""
        return {
            "sim_now_ns": self.market.now_ns,
            "sim_end_ns": self.spec.sim_end_ns,
            "events": self.sent_events,
            "flushes": self.flushes,
            "done": float(self.done),
            "symbols": len(self.market.symbols),
        }

    # --- the stepping loop ----------------------------------------------------------------
    async def _run(self) -> None:
        feed_cfg = self.config.system.feed
        clock = self.spec.clock()
        flush_s = feed_cfg.flush_ms / 1e3
        last_flush = time.perf_counter()
        steps_pending = 0
        try:
            while not self._stopping and self.market.now_ns < self.spec.sim_end_ns:
                if self.spec.paced:
                    next_sim = self.market.now_ns + self.spec.step_ns
                    delay = (clock.wall_ns_for(next_sim) - time.time_ns()) / NS
                    if delay > 0:
                        # ahead of the clock: flush if the batching window closed, then wait
                        if steps_pending and time.perf_counter() - last_flush >= flush_s:
                            await self._flush(feed_cfg)
                            steps_pending, last_flush = 0, time.perf_counter()
                        await asyncio.sleep(min(delay, flush_s))
                        continue
                batches = self.market.step(time.time_ns())
                for symbol, batch in batches.items():
                    self.pending.setdefault(symbol, []).append(batch)
                steps_pending += 1
                if time.perf_counter() - last_flush >= flush_s or steps_pending >= feed_cfg.max_steps_per_flush:
                    await self._flush(feed_cfg)
                    steps_pending, last_flush = 0, time.perf_counter()
                    if not self.spec.paced:
                        await asyncio.sleep(0)  # let progress/stop calls in
            await self._flush(feed_cfg)
            await self._drain()
            self.done = self.market.now_ns >= self.spec.sim_end_ns
            self.redis.set(keys.FEED_STATE, json.dumps(self.market.state()))
        except Exception:
            self.errors += 1
            self.log.exception("feed loop failed")
            raise

    def _side_effects(self, feed_cfg: FeedSection) -> None:
        """Once per flush: publish the clock, marks to the venue, router ticks, raw snapshots, checkpoint."""
        now = self.market.now_ns
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(keys.SIM_CLOCK, now)
        self._deliver_alt_data(now)
        # Marks and ticks are state, not events: while the previous one is still being processed,
        # skip this one (the next carries fresher marks). Queueing them would only grow latency.
        broker = self.peers.get(BROKER)
        if broker is not None and self._idle("marks"):
            self._pending_calls["marks"] = broker.on_marks.remote(self.market.marks(time.time_ns()))
        if self.ticks.due(now):
            router = self.peers.get(ROUTER)
            if router is not None and self._idle("tick"):
                self._pending_calls["tick"] = router.on_tick.remote(now)
                self.ticks.ticked(now)
        self._snapshots(pipe, feed_cfg, {s: b[-1] for s, b in self.pending.items()})
        try:
            pipe.execute()
        except redis.RedisError as exc:  # Redis restarting: market data goes on, snapshots resume after
            self.errors += 1
            self.log.warning("raw snapshot write failed", extra={"error": str(exc)})

    def _snapshots(self, pipe: redis.client.Pipeline, feed_cfg: FeedSection, last: dict[str, MarketBatch]) -> None:
        """Raw snapshots (last quote and book per symbol) and the market checkpoint, on their cadence."""
        now = self.market.now_ns
        if now - self._last_raw_ns >= feed_cfg.raw_snapshot_every_s * NS:
            for symbol, batch in last.items():
                if batch.quotes:
                    pipe.set(
                        keys.raw_quote_last(symbol), encode(batch.quotes[-1]), ex=keys.TTL_SECONDS["raw_depth_last"]
                    )
                if batch.books:
                    pipe.set(
                        keys.raw_depth_last(symbol), encode(batch.books[-1]), ex=keys.TTL_SECONDS["raw_depth_last"]
                    )
                    pipe.set(keys.raw_depth_heartbeat(symbol), now, ex=keys.TTL_SECONDS["raw_depth_hb"])
            self._last_raw_ns = now
        if now - self._last_checkpoint_ns >= feed_cfg.checkpoint_every_s * NS:
            pipe.set(keys.FEED_STATE, json.dumps(self.market.state()))
            self._last_checkpoint_ns = now

    def _deliver_alt_data(self, now: int) -> None:
        """Send the alternative-data events that have happened by ``now`` to every strategy."""
        deliver_alt_data(self.peers, self.alt_targets, self.alt_data.due(now))

    # --- lock-step --------------------------------------------------------------------------
    async def _run_lockstep(self) -> None:
        """Step the session in lock-step: every stage of a step is awaited, in the canonical order of
        :mod:`quanticity.lockstep`, before the next step begins. ``ts_init`` is the step's simulated
        time everywhere the feed stamps it; the wall clock only paces a paced run."""
        feed_cfg = self.config.system.feed
        clock = self.spec.clock()
        try:
            while not self._stopping and self.market.now_ns < self.spec.sim_end_ns:
                ts = self.market.now_ns + self.spec.step_ns
                if self.spec.paced:
                    delay = (clock.wall_ns_for(ts) - time.time_ns()) / NS
                    if delay > 0:
                        await asyncio.sleep(delay)
                await self._lockstep_step(ts, feed_cfg)
            self.done = self.market.now_ns >= self.spec.sim_end_ns
            self.redis.set(keys.FEED_STATE, json.dumps(self.market.state()))
        except Exception:
            self.errors += 1
            self.log.exception("lock-step feed loop failed")
            raise

    async def _lockstep_step(self, ts: int, feed_cfg: FeedSection) -> None:
        """One step, stage by stage (a missing peer is skipped: the supervisor is replacing it)."""
        batches = self.market.step(ts)
        self.redis.set(keys.SIM_CLOCK, ts)
        await self._await_all(deliver_alt_data(self.peers, self.alt_targets, self.alt_data.due(ts)))
        for symbol in sorted(batches):
            handle = self.peers.get(analytics_name(symbol))
            if handle is not None:
                # one batch per call; the analytics actor awaits its strategies' enqueues (lock-step)
                await self._await_all([handle.on_packed.remote(msgspec.msgpack.encode([batches[symbol]]), ts)])
                self.sent_events += batches[symbol].event_count
        risk = self.peers.get(RISK)
        if risk is not None:
            await risk.step.remote(ts, step_quotes(batches))
        broker = self.peers.get(BROKER)
        if broker is not None:
            fills = await broker.match.remote(self.market.marks(ts), ts)
            router = self.peers.get(ROUTER)
            if fills and router is not None:
                await router.on_fills.remote(fills)
        if self.ticks.due(ts):
            router = self.peers.get(ROUTER)
            if router is not None:
                await router.on_tick.remote(ts)
            self.ticks.ticked(ts)
        pipe = self.redis.pipeline(transaction=False)
        self._snapshots(pipe, feed_cfg, batches)
        pipe.execute()
        self.lockstep_steps += 1
        self.flushes += 1
        self.events = self.sent_events

    async def _await_all(self, refs: list[ray.ObjectRef]) -> None:
        """Await ``refs`` in order; a failed call is counted and logged (like a failed batch)."""
        await self._await_refs(refs)

    def _idle(self, call: str) -> bool:
        """True when the last ``call`` (marks to the venue, tick to the router) has completed."""
        ref = self._pending_calls.get(call)
        if ref is None:
            return True
        ready, _ = ray.wait([ref], timeout=0)
        if ready:
            self._pending_calls.pop(call)
            return True
        self.coalesced[call] = self.coalesced.get(call, 0) + 1
        return False

    async def _flush(self, feed_cfg: FeedSection) -> None:
        """Send each symbol's pending batches in one call; apply backpressure."""
        if not self.pending:
            return
        self._side_effects(feed_cfg)
        refs = []
        for symbol, batches in self.pending.items():
            handle = self.peers.get(analytics_name(symbol))
            if handle is None:
                continue
            # msgpack bytes: msgspec encodes the many small event structs faster than pickling them
            refs.append(handle.on_packed.remote(msgspec.msgpack.encode(batches)))
            self.sent_events += sum(b.event_count for b in batches)
        self.pending = {}
        self.flushes += 1
        self.events = self.sent_events
        self.inflight.append(refs)
        while len(self.inflight) > self.config.system.feed.max_inflight_flushes:
            await self._await_refs(self.inflight.popleft())

    async def _drain(self) -> None:
        while self.inflight:
            await self._await_refs(self.inflight.popleft())

    async def _await_refs(self, refs: list[ray.ObjectRef]) -> None:
        for ref in refs:
            try:
                await ref
            except RayActorError:
                # The symbol actor died: the supervisor replaces it under the same name.
                self.errors += 1
                for symbol in self.market.symbols:
                    self.peers.forget(analytics_name(symbol))
            except Exception as exc:  # a failed batch (e.g. Redis down) must not stop the market
                self.errors += 1
                self.log.warning("symbol actor failed a batch", extra={"error": f"{type(exc).__name__}: {exc}"})

    def stats(self) -> dict[str, float]:
        return {
            **{f"coalesced_{k}": float(v) for k, v in self.coalesced.items()},
            "sim_now_ns": float(self.market.now_ns),
            "flushes": self.flushes,
            "done": float(self.done),
            "restored": float(self.restored),
            "lockstep_steps": self.lockstep_steps,
        }
