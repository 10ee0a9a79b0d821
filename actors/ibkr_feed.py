"""IBKR feed actor: market data through ``ib_async`` → per-symbol batches for the analytics actors.

The ``tws``/``live`` counterpart of :class:`actors.feed.SimFeedActor`, under the same name and
with the same control surface (``start``/``stop``/``progress``/``add_symbol``/``remove_symbol``),
so the supervisor, the CLI and the launch helpers drive it unchanged:

- one :class:`IbkrConnection` (ingestion client id) + :class:`IbkrFeed` (L1, tick-by-tick, option
  chains with greeks, depth rotated on a timer); validated messages go into a
  :class:`MarketBatcher` and leave every ``feed.flush_ms`` as one msgpack call per symbol actor
  (``on_packed``, as SimFeed sends), with the same backpressure (``max_inflight_flushes``);
- the market's time — the hosted simulator's accelerated clock in ``tws``, the wall in ``live`` —
  stamps the data and is published as ``system:clock`` once per flush, so risk staleness,
  strategy windows and router ticks run on it; router ticks every ``router_tick_every_s``;
- in ``tws`` the session's simulated alternative data (:func:`session_alt_data`) is delivered as
  SimFeed delivers it; in ``live`` alternative data comes from the fetcher's Redis keys instead;
- the heartbeat carries the link state, data age, accepted/rejected counts, reconnects and the
  TWS messages ``ib_async`` could not parse (``malformed_messages``: dropped by the library, counted here).

A restarted feed reconnects (the connection's sync hook re-subscribes everything).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from datetime import date

import msgspec
import ray
import redis
from ray.exceptions import RayActorError

from actors.common import ROUTER, ActorShell, analytics_name, deliver_alt_data, strategy_name
from actors.venue_link import VenueClock, resolve_ibkr
from quanticity import keys
from quanticity.config.models import QuanticityConfig
from quanticity.feeds.altdata import simulated_history
from quanticity.lockstep import AltDataCursor
from quanticity.messages import AltDataEvent, Heartbeat, MarketBatch, encode
from quanticity.session import RunSpec
from quanticity.sim.altdata import session_alt_data
from quanticity.venues.batcher import MarketBatcher
from quanticity.venues.ibkr import IbkrConnection, IbkrFeed

NS = 1_000_000_000


@ray.remote(num_cpus=0, max_restarts=0, max_concurrency=16)
class IbkrFeedActor(ActorShell):
    """Shell over :class:`IbkrFeed` (module docstring)."""

    kind = "feed"

    def __init__(self, name: str, config: QuanticityConfig, spec: RunSpec, redis_url: str, symbols: list[str]) -> None:
        super().__init__(name, config, spec, redis_url)
        venue = config.system.venue
        self.live = venue.kind == "live"
        self.symbols = list(dict.fromkeys(symbols))
        self.option_symbols = [s for s in (venue.option_symbols or self.symbols) if s in self.symbols]
        self.venue_clock = VenueClock(self.redis, follow_venue=not self.live, start_ns=spec.sim_start_ns)
        self.batcher = MarketBatcher(self.symbols, init_clock=time.time_ns)
        # live: the UW bridge in the fetcher is the strategies' only alt data. tws: the simulated
        # history (and vol closes, earnings) from here; the session day's flow alerts, dark-pool
        # prints, congress and insider trades come twin → fetcher → bridge, as they would live
        # (all of it from here when the fetcher is switched off, or the strategies would get none)
        events: list[AltDataEvent] = []
        if not self.live:
            session_day = date.fromisoformat(spec.session_date)
            simulated = session_alt_data(config, self.symbols, session_day, spec.seed)
            events = simulated_history(simulated, session_day) if venue.fetcher else simulated
        self.alt_data = AltDataCursor(events)
        self.alt_targets = [strategy_name(s.name) for s in config.trading.strategies.enabled()]
        self.conn: IbkrConnection | None = None
        self.feed: IbkrFeed | None = None
        self.inflight: deque[list[ray.ObjectRef]] = deque()
        self.sent_events = 0
        self.flushes = 0
        self.done = False
        self.now_ns = spec.sim_start_ns
        self.coalesced_ticks = 0
        self._tick_ref: ray.ObjectRef | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_tick_ns = self._last_raw_ns = spec.sim_start_ns
        self._last_batches: dict[str, MarketBatch] = {}
        self._connecting: asyncio.Task[None] | None = None  # connect + subscribe; the first ping starts it in tws

    # --- control --------------------------------------------------------------------------
    async def ping(self) -> Heartbeat:  # type: ignore[override]
        """Heartbeat; in ``tws`` the first one also starts connecting and subscribing.

        The hosted market opens only when this feed has subscribed, so subscribing while the
        supervisor is still starting the other actors (it pings each one it creates) takes the
        subscription off the start-up path. Nothing is delivered before :meth:`start`, and the
        simulated market does not step before the session starts, so there is nothing to miss.
        In ``live`` the real market moves: it connects in :meth:`start` as before.
        """
        if not self.live:
            self._connect_in_background()
        return super().ping()

    def _connect_in_background(self) -> asyncio.Task[None]:
        """The running or finished connection attempt; a new one when the last one failed."""
        task = self._connecting
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = self._connecting = asyncio.get_running_loop().create_task(self._connect())
        return task

    async def start(self) -> bool:
        """Connect and start delivering (idempotent)."""
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(self._run())
        return True

    async def stop(self) -> bool:
        """Stop delivering and disconnect."""
        self._stopping = True
        if self._task is not None:
            await asyncio.wait([self._task], timeout=10)
        if self.conn is not None:
            await self.conn.stop()
        self._connecting = None  # a later start connects again
        return True

    async def add_symbol(self, symbol: str) -> list[str]:
        """Subscribe ``symbol`` (L1, tick-by-tick and depth as configured, its option chain if
        ``venue.option_symbols`` streams it); the supervisor created its analytics actor first.

        Only the new symbol's requests go out (:meth:`IbkrFeed.add_symbol`), so the other lines
        keep streaming. Raises ValueError naming the symbol when IBKR has no contract for it.
        Before the connection is up it is only registered; the connect-time sync subscribes it.
        """
        if symbol in self.symbols:
            return list(self.symbols)
        configured = self.config.system.venue.option_symbols
        options = configured is None or symbol in configured
        if self.feed is not None:
            ready = self.conn is not None and self.conn.ready
            await self.feed.add_symbol(symbol, options=options, subscribe=ready)
        self.symbols.append(symbol)
        if options and symbol not in self.option_symbols:
            self.option_symbols.append(symbol)
        self.batcher.add_symbol(symbol)
        return list(self.symbols)

    async def remove_symbol(self, symbol: str) -> list[str]:
        """Stop delivering ``symbol``: its market data lines are cancelled at TWS now."""
        if symbol in self.symbols:
            self.symbols.remove(symbol)
            if symbol in self.option_symbols:
                self.option_symbols.remove(symbol)
            self.batcher.remove_symbol(symbol)
            self._last_batches.pop(symbol, None)
            if self.feed is not None:
                self.feed.remove_symbol(symbol)
        return list(self.symbols)

    async def progress(self) -> dict[str, float]:
        """Where the session is (same keys as SimFeed's): market time, events sent, done."""
        return {
            "sim_now_ns": self.now_ns,
            "sim_end_ns": self.spec.sim_end_ns,
            "events": self.sent_events,
            "flushes": self.flushes,
            "done": float(self.done),
            "symbols": len(self.symbols),
        }

    # --- the delivery loop ----------------------------------------------------------------
    async def _connect(self) -> None:
        settings = await resolve_ibkr(self.config, self.redis)
        self.conn = IbkrConnection(settings, "ingestion", clock=self.venue_clock)
        self.feed = IbkrFeed(self.conn, self.symbols, sink=self.batcher.add, option_symbols=self.option_symbols)
        await self.conn.start()
        self.redis.set(keys.VENUE_FEED_READY, 1)  # the hosted market opens now (tws)

    async def _run(self) -> None:
        feed_cfg = self.config.system.feed
        flush_s = feed_cfg.flush_ms / 1e3
        rotate_s = self.config.system.venue.depth_rotate_every_s
        try:
            await self._connect_in_background()  # in tws usually done already (ping)
            next_rotate = time.monotonic()
            while not self._stopping:
                self.now_ns = max(self.now_ns, self.venue_clock.refresh())
                if self.feed is not None and time.monotonic() >= next_rotate:
                    self.feed.rotate_depth()
                    next_rotate = time.monotonic() + rotate_s
                await self._flush()
                if not self.live and self.now_ns >= self.spec.sim_end_ns:
                    break
                await asyncio.sleep(flush_s)
            await self._flush()
            await self._drain()
            self.done = self.now_ns >= self.spec.sim_end_ns
        except Exception:
            self.errors += 1
            self.log.exception("ibkr feed loop failed")
            raise

    async def _flush(self) -> None:
        """Publish the clock and side effects, then send each symbol's batch in one call; backpressure."""
        self._side_effects()
        batches = self.batcher.drain()
        if not batches:
            return
        refs = []
        for symbol, batch in batches.items():
            self._last_batches[symbol] = batch
            handle = self.peers.get(analytics_name(symbol))
            if handle is None:
                continue
            refs.append(handle.on_packed.remote(msgspec.msgpack.encode([batch])))
            self.sent_events += batch.event_count
        self.flushes += 1
        self.events = self.sent_events
        self.inflight.append(refs)
        while len(self.inflight) > self.config.system.feed.max_inflight_flushes:
            await self._await_refs(self.inflight.popleft())

    def _side_effects(self) -> None:
        """Clock, alternative data, router tick, raw snapshots: once per flush, on the market's time."""
        feed_cfg = self.config.system.feed
        now = self.now_ns
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(keys.SIM_CLOCK, now)
        self._deliver_alt_data(now)
        if now - self._last_tick_ns >= feed_cfg.router_tick_every_s * NS:
            router = self.peers.get(ROUTER)
            if router is not None and self._tick_idle():
                self._tick_ref = router.on_tick.remote(now)
                self._last_tick_ns = now
        if now - self._last_raw_ns >= feed_cfg.raw_snapshot_every_s * NS:
            for symbol, last in self._last_batches.items():
                ttl = keys.TTL_SECONDS["raw_depth_last"]
                if last.quotes:
                    pipe.set(keys.raw_quote_last(symbol), encode(last.quotes[-1]), ex=ttl)
                if last.books:
                    pipe.set(keys.raw_depth_last(symbol), encode(last.books[-1]), ex=ttl)
                    pipe.set(keys.raw_depth_heartbeat(symbol), now, ex=keys.TTL_SECONDS["raw_depth_hb"])
            self._last_batches = {}
            self._last_raw_ns = now
        try:
            pipe.execute()
        except redis.RedisError as exc:  # Redis restarting: market data goes on
            self.errors += 1
            self.log.warning("clock/snapshot write failed", extra={"error": str(exc)})

    def _tick_idle(self) -> bool:
        """A router tick is state, not an event: skip this one while the previous is still running."""
        if self._tick_ref is None:
            return True
        ready, _ = ray.wait([self._tick_ref], timeout=0)
        if ready:
            self._tick_ref = None
            return True
        self.coalesced_ticks += 1
        return False

    def _deliver_alt_data(self, now: int) -> None:
        """The simulated alternative data up to ``now`` (history, vol closes, earnings), to the strategies.

        The session day's UW kinds are not in ``alt_data`` (:func:`simulated_history`): the
        fetcher's bridge delivers them from the UW twin.
        """
        deliver_alt_data(self.peers, self.alt_targets, self.alt_data.due(now))

    async def _drain(self) -> None:
        while self.inflight:
            await self._await_refs(self.inflight.popleft())

    async def _await_refs(self, refs: list[ray.ObjectRef]) -> None:
        for ref in refs:
            try:
                await ref
            except RayActorError:  # the symbol actor died: the supervisor replaces it under the same name
                self.errors += 1
                for symbol in self.symbols:
                    self.peers.forget(analytics_name(symbol))
            except Exception as exc:  # a failed batch must not stop the feed
                self.errors += 1
                self.log.warning("symbol actor failed a batch", extra={"error": f"{type(exc).__name__}: {exc}"})

    def stats(self) -> dict[str, float]:
        out: dict[str, float] = {
            "sim_now_ns": float(self.now_ns),
            "flushes": self.flushes,
            "done": float(self.done),
            "coalesced_tick": self.coalesced_ticks,
            **{f"batcher_rejected_{k}": float(v) for k, v in self.batcher.rejected.items()},
        }
        if self.conn is not None:
            health = self.conn.health()
            age = health.get("data_age_s")
            out["link_ready"] = float(self.conn.ready)
            out["data_age_s"] = float(age) if age is not None else -1.0
            out["malformed_messages"] = float(self.conn.stats["malformed_messages"])
            out.update({k: float(v) for k, v in health.items() if k.startswith("count_")})
        if self.feed is not None:
            out.update({k: float(v) for k, v in self.feed.stats().items()})
        return out
