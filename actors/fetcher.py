"""Fetcher actor: the Unusual Whales and Alpha Vantage REST fetchers plus the UW WebSocket client.

One :class:`SourceEngine` per source YAML (``venue.sources``) and the UW socket client, all in
this actor's event loop, writing to Redis (SPEC §5). Where requests go:

- ``tws``: the loopback twins of the venue host (``venue:ports``), with the twins' loopback token;
  scheduling runs on the hosted market's time (:func:`~actors.venue_link.fetch_clock`: market
  state, cadence and rate limits are in simulated time, as the twins' rate limiters are);
- ``live``: the real APIs (the YAMLs' base URLs) with the credentials from the environment, on
  the wall clock.

The universe is the one the supervisor passes (run-time additions included, so a restarted fetcher
keeps them); ``add_symbol``/``remove_symbol`` change it while running: the ``symbols: universe``
endpoints gain or lose the symbol's jobs, the socket joins its channels, the bridge delivers its
events.

Request, 429, error and breaker counters of each source are in :meth:`metrics` (nested, with the
last error texts) and in the heartbeat, flattened to numbers with the reason in the name
(``unusual_whales_errors_malformed_json``, ``alpha_vantage_throttled_note``,
``uw_socket_bad_frames_bad_shape``), whence Prometheus' ``quanticity_actor_stat``.
A source YAML edited while running is hot-reloaded by its engine.

Alternative data: every accepted payload of an endpoint with ``alt_data: <kind>`` in its YAML goes
through the :class:`~quanticity.feeds.altdata.AltDataBridge` (records → ``AltDataEvent``, only the
ones never delivered before) to every enabled strategy's ``on_alt_data``. In ``live`` that is
the strategies' only alt data; in ``tws`` the bridge delivers the session day's events (those
before the session date come from the IBKR feed's simulated history), so ``make run`` exercises
the live path end to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from datetime import date
from pathlib import Path
from typing import Any

import ray
import redis

from actors.common import ActorShell, send_alt_data, strategy_name
from actors.venue_link import fetch_clock
from quanticity import keys
from quanticity.config.models import QuanticityConfig
from quanticity.feeds import SourceEngine, UwSocketClient, socket_channels, socket_client_for
from quanticity.feeds.altdata import AltDataBridge
from quanticity.feeds.metrics import flat_counters
from quanticity.feeds.sources import EndpointSpec
from quanticity.messages import AltDataEvent, Heartbeat
from quanticity.session import RunSpec
from quanticity.venues.profile import source_environment, twin_environment

FETCHER = "quanticity:fetcher"
REPO_ROOT = Path(__file__).resolve().parent.parent


@ray.remote(num_cpus=0, max_restarts=0, max_concurrency=16)
class FetcherActor(ActorShell):
    """Shell over the source engines (module docstring). Starts on the first ping."""

    kind = "fetcher"

    def __init__(
        self, name: str, config: QuanticityConfig, spec: RunSpec, redis_url: str, symbols: list[str] | None = None
    ) -> None:
        super().__init__(name, config, spec, redis_url)
        self.live = config.system.venue.kind == "live"
        self.universe = list(symbols) if symbols is not None else list(config.system.universe.symbols)
        self.engines: list[SourceEngine] = []
        self.socket: UwSocketClient | None = None
        self.bridge: AltDataBridge | None = None
        self.alt_targets = [strategy_name(s.name) for s in config.trading.strategies.enabled()]
        self.start_failures = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def ping(self) -> Heartbeat:  # type: ignore[override]
        """Heartbeat; the first one starts the fetchers in the background."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return super().ping()

    async def _environment(self) -> dict[str, str]:
        if self.live:
            return source_environment(os.environ)
        while True:
            try:
                ports = self.redis.hgetall(keys.VENUE_PORTS)
            except redis.RedisError:
                ports = {}
            if "uw" in ports and "av" in ports:
                return twin_environment(int(ports["uw"]), int(ports["av"]))
            await asyncio.sleep(0.1)

    async def _run(self) -> None:
        try:
            environ = await self._environment()
            clock = fetch_clock(self.live, self.redis, self.spec.sim_start_ns)
            universe = list(self.universe)
            session_day = None if self.live else date.fromisoformat(self.spec.session_date)
            self.bridge = AltDataBridge(self.redis, symbols=universe, not_before=session_day)
            self.engines = [
                SourceEngine(
                    _resolve(path),
                    redis=self.redis,
                    clock=clock,
                    universe=universe,
                    environ=environ,
                    on_payload=self._on_payload,
                )
                for path in self.config.system.venue.sources
            ]
        except Exception:  # a bad YAML or a missing token: counted, reported in the heartbeat
            self.start_failures += 1
            self.errors += 1
            self.log.exception("fetcher not started")
            return
        uw = self._socket_engine()
        if uw is not None:
            self.socket = socket_client_for(uw.config, universe, self.redis)
        runs: list[Any] = [e.run(self._stop) for e in self.engines]
        if self.socket is not None:
            runs.append(self.socket.run(self._stop))
        try:
            await asyncio.gather(*runs)
        except Exception:
            self.errors += 1
            self.log.exception("fetcher loop failed")
        finally:
            for engine in self.engines:
                with contextlib.suppress(Exception):
                    await engine.close()

    def _socket_engine(self) -> SourceEngine | None:
        """The engine whose source YAML describes the UW socket (None without one)."""
        return next((e for e in self.engines if e.config.source.websocket is not None), None)

    def _on_payload(self, endpoint: str, spec: EndpointSpec, document: dict[str, Any]) -> None:
        """Engine hook: an accepted payload of an ``alt_data`` endpoint → new events → the strategies."""
        if spec.alt_data is None or self.bridge is None:
            return
        self.bridge.process(spec.alt_data, document, send=self._send_alt_data)

    def _send_alt_data(self, events: list[AltDataEvent]) -> None:
        send_alt_data(self.peers, self.alt_targets, events)

    async def add_symbol(self, symbol: str) -> dict[str, Any]:
        """Fetch ``symbol`` too from now on; returns the jobs and socket channels added."""
        if symbol in self.universe:
            return {"jobs": [], "channels": []}
        return await self._set_universe([*self.universe, symbol])

    async def remove_symbol(self, symbol: str) -> dict[str, Any]:
        """Stop fetching ``symbol`` (its jobs end, its channels are left); returns what was added: nothing."""
        if symbol not in self.universe:
            return {"jobs": [], "channels": []}
        return await self._set_universe([s for s in self.universe if s != symbol])

    async def _set_universe(self, universe: list[str]) -> dict[str, Any]:
        """Apply a universe change to every part (before the start, only remembered)."""
        self.universe = universe
        jobs = [job for engine in self.engines for job in engine.set_universe(universe)]
        channels: list[str] = []
        uw = self._socket_engine()
        if self.socket is not None and uw is not None:
            channels = await self.socket.set_channels(socket_channels(uw.config, universe))
        if self.bridge is not None:
            self.bridge.set_symbols(universe)
        self.log.info("universe changed", extra={"symbols": len(universe), "jobs_added": len(jobs)})
        return {"jobs": [list(job) for job in jobs], "channels": channels}

    async def stop(self) -> bool:
        """Stop fetching (the engines finish their in-flight requests)."""
        self._stop.set()
        if self._task is not None:
            await asyncio.wait([self._task], timeout=10)
        return True

    async def metrics(self) -> dict[str, Any]:
        """Each source's full metrics (requests, 429s, errors, breakers) and the socket's."""
        out: dict[str, Any] = {e.config.source.name: e.metrics() for e in self.engines}
        if self.socket is not None:
            out["uw_socket"] = self.socket.metrics()
        if self.bridge is not None:
            out["alt_data"] = self.bridge.metrics()
        return out

    def stats(self) -> dict[str, float]:
        """Every counter of the sources, the socket and the bridge, flattened to numbers (heartbeat → Prometheus).

        Counters by reason or kind keep their label in the name (``alpha_vantage_errors_non_finite``,
        ``alpha_vantage_throttled_note``, ``uw_socket_bad_frames_malformed_json``; see
        :func:`~quanticity.feeds.metrics.flat_counters`): a heartbeat carries only numbers, and
        a nested counter would never reach the operator.
        """
        out: dict[str, float] = {"start_failures": self.start_failures}
        for engine in self.engines:
            out.update(flat_counters(engine.config.source.name, engine.metrics()))
        if self.socket is not None:
            out.update(flat_counters("uw_socket", self.socket.metrics()))
        if self.bridge is not None:
            bridge = self.bridge.metrics()
            out["alt_delivered"] = float(bridge["delivered_total"])
            out["alt_rejected"] = float(bridge["rejected_total"])
            out.update(flat_counters("alt", {"rejected": bridge["rejected"]}))
        return out


def _resolve(path: str) -> Path:
    """A source YAML path: absolute, relative to the working directory, or to the repository."""
    candidate = Path(path)
    if candidate.is_absolute() or candidate.exists():
        return candidate
    return REPO_ROOT / candidate
