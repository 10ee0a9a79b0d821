"""VenueHost actor: the TWS/Gateway simulator and the UW + AV loopback twins of a ``tws`` run.

In ``venue.kind: tws`` the system trades through ``ib_async`` and fetches through the REST/WS
fetcher exactly as it would live; what it talks to are the loopback twins of
:mod:`quanticity.sim`, hosted here on 127.0.0.1 with the run's seed and session. The simulator is
paced at the session's speed from the moment the session started and the IBKR feed subscribed
(so start-up time is not skipped in a burst), and stops at the session's end; its market time is
published to ``venue:tws:now`` for the IBKR feed. Ports go to ``venue:ports``; a restarted host
binds the same ports again so the IBKR connections reconnect to the same address (the account
the simulator held is gone then, as after a real TWS crash — the broker reconciles to what the
new one reports). Not created in ``live``.

Fault controls (tests and drills), forwarded to the hosted venues: TWS network drops,
1100/1101/1102, the daily restart and one step of corrupt market data (:meth:`corrupt_next`);
UW/AV REST faults (:meth:`inject_uw`, :meth:`inject_av`: 429, 500, malformed JSON, slow, NaN,
AV Note/Information/Error Message, NaN greeks); raw frames, pushes and drops on the UW socket.
The venue clients must count what they reject and keep going; ``faults_injected_*`` in the
heartbeat says what was sent their way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from datetime import date
from typing import Any

import ray
import redis

from actors.common import ActorShell
from quanticity import keys
from quanticity.clock import AcceleratedClock, FollowClock
from quanticity.config.models import QuanticityConfig
from quanticity.messages import Heartbeat
from quanticity.session import RunSpec
from quanticity.sim.av_server import AvServer
from quanticity.sim.market import SyntheticMarket
from quanticity.sim.tws import BadData, TwsSimConfig, TwsSimulator
from quanticity.sim.uw_server import UwServer
from quanticity.venues.profile import LOOPBACK_TOKEN

VENUES = "quanticity:venues"
MAX_CATCH_UP_STEPS = 10
"""Steps per pacing tick at most: after a slow start the simulator catches up without starving the loop."""
TRADING_KINDS = frozenset({"analytics", "strategy"})
"""Actors the market waits for at the open: the feed sends to the symbol actors, they to the strategies."""


@ray.remote(num_cpus=0, max_restarts=0, max_concurrency=64)
class VenueHostActor(ActorShell):
    """Hosts the loopback venues (module docstring). Servers start on the first ping."""

    kind = "venues"

    def __init__(self, name: str, config: QuanticityConfig, spec: RunSpec, redis_url: str, symbols: list[str]) -> None:
        super().__init__(name, config, spec, redis_url)
        if not spec.paced:
            raise ValueError(f"session.speed: {spec.speed} — venue.kind tws needs a paced session (speed > 0)")
        execution = config.trading.execution
        market = SyntheticMarket(
            config.market,
            list(symbols),
            date.fromisoformat(spec.session_date),
            spec.seed,
            spec.sim_start_ns,
            spec.step_ns,
        )
        saved = {k: int(v) for k, v in self.redis.hgetall(keys.VENUE_PORTS).items()}
        self.restored = bool(saved)
        self._wanted_ports = saved
        self.sim = TwsSimulator(
            market,
            TwsSimConfig(
                port=saved.get("tws", 0),
                commission_per_contract=execution.commission_per_contract,
                min_commission=execution.min_commission,
                fill_seed=spec.seed,
            ),
        )
        # the twins live on the market's time (as the TWS simulator does), not on the planned session
        # clock: the market opens only once the actors are up, and UW/AV data stamped ahead of it would
        # never pair with IBKR's nor look stale; the fetcher reads the same time (keys.VENUE_CLOCK)
        market_clock = FollowClock(lambda: market.now_ns)
        # the UW twin quotes the simulated market's current spot and options, as a real second feed would
        self.uw = UwServer(LOOPBACK_TOKEN, seed=spec.seed, clock=market_clock, universe=list(symbols), market=market)
        self.av = AvServer(LOOPBACK_TOKEN, seed=spec.seed, clock=market_clock)
        self.ports: dict[str, int] = {}
        self._started = asyncio.Lock()
        self._pacer: asyncio.Task[None] | None = None
        self.steps = 0
        self.catch_up_capped = 0
        self.opened_waiting_s = 0.0
        self.session_over = False
        self.faults_injected: Counter[str] = Counter()

    async def _ensure_started(self) -> dict[str, int]:
        async with self._started:
            if not self.ports:
                ports = {
                    "tws": await self.sim.start(),
                    "uw": await self.uw.start("127.0.0.1", self._wanted_ports.get("uw", 0)),
                    "av": await self.av.start("127.0.0.1", self._wanted_ports.get("av", 0)),
                }
                self.redis.hset(keys.VENUE_PORTS, mapping=ports)
                self.redis.set(keys.VENUE_CLOCK, self.sim.now_ns)
                self.ports = ports
                self.log.info("venues listening", extra=ports)
            # one market per host: after the session end it stays closed; a pacer that failed starts again
            if self._pacer is None or (self._pacer.done() and not self.session_over):
                self._pacer = asyncio.get_running_loop().create_task(self._pace())
        return dict(self.ports)

    async def ping(self) -> Heartbeat:  # type: ignore[override]
        """Start the servers (first call), then heartbeat: the supervisor waits for this before the venue clients."""
        await self._ensure_started()
        return super().ping()

    async def endpoints(self) -> dict[str, int]:
        """service → loopback port (``tws``, ``uw``, ``av``)."""
        return await self._ensure_started()

    async def _market_opens(self) -> AcceleratedClock:
        """Wait for the session start, the feed's subscriptions and the symbol and strategy actors;
        the market's clock runs from then.

        The clock is anchored at that moment rather than at planning time, so the minutes the
        actors take to start and subscribe are not skipped in a burst of catch-up steps. The feed
        subscribes while the other actors are still being created (it connects on its first
        ping), so by the session start it is usually ready; what can still be starting on two
        busy cores are the ~25 symbol and strategy workers the supervisor creates in parallel
        (it starts the session after a bounded wait for them). Opening before they answer would
        queue market data behind their start-up and make them miss heartbeats (restarted as
        hung), so the market also waits until each has answered a ping. Both waits share
        ``market_open_wait_s``.
        """
        every_s = self.config.system.venue.venue_clock_every_ms / 1e3
        while self.redis.hget(keys.RUN_INFO, "started") != "1":
            await asyncio.sleep(every_s)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.system.venue.market_open_wait_s
        while not self.redis.exists(keys.VENUE_FEED_READY) and loop.time() < deadline:
            await asyncio.sleep(every_s)
        while not self._trading_actors_up() and loop.time() < deadline:
            await asyncio.sleep(every_s)
        self.opened_waiting_s = loop.time() - deadline + self.config.system.venue.market_open_wait_s
        return AcceleratedClock(self.sim.now_ns, time.time_ns(), self.spec.speed)

    def _trading_actors_up(self) -> bool:
        """Every symbol and strategy actor of the topology has answered a ping (its heartbeat key exists)."""
        try:
            topology = self.redis.hgetall(keys.TOPOLOGY)
            names = [n for n, raw in topology.items() if json.loads(raw).get("kind") in TRADING_KINDS]
            return not names or int(self.redis.exists(*(keys.heartbeat(n) for n in names))) == len(names)
        except (redis.RedisError, ValueError) as exc:  # unknown: do not hold the market on it
            self.log.warning("actor readiness unknown", extra={"error": str(exc)})
            return True

    async def _pace(self) -> None:
        """Step the simulator on the market's accelerated clock until the session ends."""
        every_s = self.config.system.venue.venue_clock_every_ms / 1e3
        step_ns = self.spec.step_ns
        clock = await self._market_opens()
        while self.sim.now_ns + step_ns <= self.spec.sim_end_ns:
            try:
                target = min(clock.now_ns(), self.spec.sim_end_ns)
                taken = 0
                while self.sim.now_ns + step_ns <= target and taken < MAX_CATCH_UP_STEPS:
                    self.sim.step()
                    taken += 1
                self.steps += taken
                self.events += taken
                self.catch_up_capped += taken == MAX_CATCH_UP_STEPS
                if taken:
                    self.redis.set(keys.VENUE_CLOCK, self.sim.now_ns)
            except redis.RedisError as exc:  # the market goes on; the clock key is written on the next step
                self.errors += 1
                self.log.warning("venue clock not written", extra={"error": str(exc)})
            except Exception:
                self.errors += 1
                self.log.exception("simulator step failed")
            await asyncio.sleep(every_s)
        self.session_over = True
        self.log.info("session end reached by the TWS simulator", extra={"sim_now_ns": self.sim.now_ns})

    # --- universe -------------------------------------------------------------------------
    async def add_symbol(self, symbol: str) -> list[str]:
        """List ``symbol`` in the simulator's market at run time (before the feed subscribes to it).

        Runs on the actor's loop between pacing steps, so the market never steps half-changed.
        Raises KeyError naming the symbol when market.yaml has no entry for it (as SimFeed's
        market does); returns the symbols the market simulates.
        """
        self.sim.add_symbol(symbol)
        if symbol not in self.uw.universe:
            self.uw.universe.append(symbol)
        return self.sim.market.symbols

    async def remove_symbol(self, symbol: str) -> list[str]:
        """Stop quoting ``symbol`` (after the feed cancelled its lines); returns the symbols left."""
        self.sim.remove_symbol(symbol)
        if symbol in self.uw.universe:
            self.uw.universe.remove(symbol)
        return self.sim.market.symbols

    # --- fault controls (tests and drills) ------------------------------------------------
    async def drop_connections(self, client_id: int | None = None) -> int:
        """Close the socket of one IBKR client id (or every session), as a TWS network drop would."""
        return self.sim.drop_connections(client_id)

    async def connectivity_lost(self) -> bool:
        """TWS lost IB's servers (1100)."""
        self.sim.connectivity_lost()
        return True

    async def connectivity_restored(self, data_lost: bool = True) -> bool:
        """Back online: 1101 (data lost) or 1102."""
        self.sim.connectivity_restored(data_lost)
        return True

    async def daily_restart(self, refuse_for_s: float) -> bool:
        """TWS's nightly restart: every session is dropped and connects are refused for ``refuse_for_s`` (wall)."""
        if not refuse_for_s >= 0:
            raise ValueError(f"refuse_for_s: {refuse_for_s!r} must be a number ≥ 0")
        self.sim.daily_restart(refuse_for_s)
        self.faults_injected["tws"] += 1
        return True

    async def resume_connections(self) -> bool:
        """End a daily-restart window early."""
        self.sim.resume_connections()
        return True

    async def corrupt_next(self, kind: str, symbol: str) -> bool:
        """The simulator's next market step sends ``kind`` of bad data for ``symbol`` (and its options) once.

        ``kind`` is one of :class:`~quanticity.sim.tws.marketdata.BadData` (``crossed_book``,
        ``nan_greeks``, ``negative_price``); the IBKR feed must reject and count what arrives.
        """
        if symbol not in self.sim.market.symbols:
            raise ValueError(f"symbol: {symbol!r} is not simulated (symbols: {self.sim.market.symbols})")
        try:
            bad = BadData(kind)
        except ValueError as exc:
            raise ValueError(f"kind: {kind!r} is not one of {[k.value for k in BadData]}") from exc
        self.sim.corrupt_next(bad, symbol)
        self.faults_injected["tws"] += 1
        return True

    async def inject_uw(
        self, kind: str, count: int = 1, path: str | None = None, retry_after_s: int = 5, delay_s: float = 2.0
    ) -> int:
        """The next ``count`` UW REST requests (whose path contains ``path``) fail with ``kind``.

        Kinds: ``429``, ``500``, ``malformed`` (a truncated JSON body), ``slow`` (``delay_s`` wall),
        ``nan`` (a NaN in the first record). A bad kind raises ValueError naming it. Returns the
        faults still queued.
        """
        self.uw.inject(kind, count, path, retry_after_s=retry_after_s, delay_s=delay_s)
        self.faults_injected["uw"] += count
        return self.uw.faults.pending()

    async def inject_av(
        self,
        kind: str,
        count: int = 1,
        function: str | None = None,
        delay_s: float = 2.0,
        field: str | None = None,
        value: str = "NaN",
    ) -> int:
        """The next ``count`` AV requests (of ``function``) fail with ``kind``; returns the faults still queued.

        Kinds: ``429``, ``500``, ``malformed``, ``slow``, ``nan`` (a crossed quote), ``nan_greeks``
        (``field`` of one contract says ``value``), ``note``, ``information``, ``error_message``.
        """
        self.av.inject(kind, count, function, delay_s=delay_s, field=field, value=value)
        self.faults_injected["av"] += count
        return self.av.faults.pending()

    async def uw_send_raw(self, text: str) -> int:
        """Send ``text`` as-is on every UW socket (a bad frame); returns the sockets reached."""
        sent = await self.uw.send_raw(text)
        self.faults_injected["uw_socket"] += 1
        return sent

    async def uw_push(self, channel: str | None = None) -> int:
        """One well-formed message on ``channel`` (every joined channel when None); returns messages sent.

        The hosted twin does not push on its own (the session's socket traffic is what tests send),
        so a test proves the socket still delivers after a fault with this.
        """
        return await self.uw.push(channel)

    async def drop_uw_websockets(self) -> int:
        """Close every UW socket from the server side (the client reconnects and re-joins); returns how many."""
        self.faults_injected["uw_socket"] += 1
        return await self.uw.drop_websockets()

    # --- introspection --------------------------------------------------------------------
    async def market_data(self, symbol: str, client_id: int | None = None) -> dict[str, int]:
        """Whether the market simulates ``symbol`` and the lines one client (or all) holds on it and its options.

        Tests and drills check a run-time add/remove against what TWS itself sees, not what the
        feed believes it asked for.
        """
        return {"simulated": int(symbol in self.sim.market.symbols), **self.sim.hub.counts_for(symbol, client_id)}

    async def audit(self) -> dict[str, Any]:
        """The simulator's account: orders by orderRef, executions, positions by contract key."""
        orders = self.sim.engine.orders()
        refs = [o.request.order_ref for o in orders]
        positions = {
            (p.listing.option.key if p.listing.option is not None else p.listing.symbol): p.quantity
            for p in self.sim.engine.positions.values()
            if p.quantity
        }
        return {
            "orders": len(orders),
            "order_refs": refs,
            "duplicate_refs": len(refs) - len(set(refs)),
            "by_client": {str(c): sum(1 for o in orders if o.client_id == c) for c in {o.client_id for o in orders}},
            "executions": len(self.sim.engine.executions),
            "exec_refs": sorted({e.order_ref for e in self.sim.engine.executions}),
            "positions": positions,
            "clients": self.sim.clients,
            "sim_now_ns": self.sim.now_ns,
        }

    def stats(self) -> dict[str, float]:
        uw = self.uw.requests.entries()
        av = self.av.requests.entries()
        return {
            "sim_now_ns": float(self.sim.now_ns),
            "steps": self.steps,
            "catch_up_capped": self.catch_up_capped,
            "tws_clients": len(self.sim.clients),
            "tws_orders": len(self.sim.engine.orders()),
            "tws_executions": len(self.sim.engine.executions),
            "uw_requests": len(uw),
            "uw_429": sum(1 for e in uw if e.status == 429),
            "av_requests": len(av),
            "uw_ws_connections": self.uw.ws_connections,
            "uw_sockets": len(self.uw.sockets()),
            **{f"faults_injected_{k}": float(self.faults_injected[k]) for k in ("tws", "uw", "uw_socket", "av")},
            "restored": float(self.restored),
            "market_open_wait_s": self.opened_waiting_s,
            **{f"tws_{k}": float(v) for k, v in self.sim.stats.items()},
        }

    async def stop(self) -> bool:
        """Stop pacing and close every server (end of the run)."""
        if self._pacer is not None:
            self._pacer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pacer
        await self.sim.stop()
        await self.uw.stop()
        await self.av.stop()
        self.ports = {}
        return True
