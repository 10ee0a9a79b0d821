"""The generic REST fetcher of one source: schedule, rate-limit, fetch, validate, store.

One :class:`SourceEngine` per source YAML (Unusual Whales, Alpha Vantage), one
``aiohttp.ClientSession`` per engine. Each step it finds the (endpoint, symbol) jobs that are
due — cadence of the endpoint's tier × the schedule multiplier of the current market state —
orders them critical first then most overdue, and dispatches as many as the source's token
bucket and each endpoint's circuit breaker allow. A response is validated as a whole
(:mod:`quanticity.feeds.parse`); accepted data is written to Redis under the endpoint's key with
its TTL, rejected data is counted and the last good value stays (a record a parser may drop on
its own — an AV contract with a NaN greek — is counted by reason too, the rest of its response is
kept). A time-stamped payload too far ahead of the clock, or (regular hours, per-minute series)
too old, is rejected as ``future``/``stale`` when the YAML's ``source.freshness`` asks for it.
A 429 (``Retry-After`` honoured) or an Alpha Vantage throttle note pauses the whole source.
Nothing that arrives from the network can raise out of the engine.

Usage (a feed actor wires it like this)::

    engine = SourceEngine(
        "config/sources/unusual_whales.yaml",
        redis=connect(redis_url),
        clock=LiveClock(),
        universe=config.system.universe.symbols,
    )                                  # ConfigError (file, key, value) if the YAML is bad
    stop = asyncio.Event()
    async with engine:                 # opens the ClientSession
        await engine.run(stop)         # until stop.set(); hot-reloads the YAML while running
    engine.metrics()                   # plain dict: requests, 2xx, 429, errors by reason, tokens, breakers

Tests (and backtests) drive it step by step on a :class:`~quanticity.clock.SimulatedClock`::

    async with engine:
        for _ in range(600):
            clock.advance(1.0)
            await engine.step()        # dispatch what is due now
            await engine.drain()       # wait for those requests to finish

Consumers of fresh data (the alt-data bridge, :mod:`quanticity.feeds.altdata`) pass
``on_payload(endpoint, spec, document)``: it runs after each accepted payload is in Redis, with
the stored document; an exception in it is counted (``errors["hook"]``) and never costs a fetch.

Hot reload: :meth:`check_reload` (called by :meth:`run`) re-reads the YAML when its stamp
(mtime, size; injectable) changes. A valid file replaces endpoints, symbols, limits and
breaker settings without a restart — surviving jobs keep their schedule; a broken file is
rejected with the named error (``metrics()["last_reload_error"]``) and the old config stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import redis

from quanticity.calendar import NyseCalendar
from quanticity.clock import NS_PER_SECOND, Clock
from quanticity.config.loader import ConfigError
from quanticity.feeds.breaker import BreakerState, CircuitBreaker
from quanticity.feeds.bucket import TokenBucket
from quanticity.feeds.market_state import MarketState, MarketStateResolver
from quanticity.feeds.metrics import SourceMetrics
from quanticity.feeds.parse import AGE_CHECKED, PARSERS, Payload, Rejected, RejectReason, Throttled
from quanticity.feeds.sink import write_payload
from quanticity.feeds.sources import EndpointSpec, SourceConfig, load_source
from quanticity.feeds.templating import build_request

log = logging.getLogger(__name__)

JobKey = tuple[str, str | None]
PayloadHook = Callable[[str, EndpointSpec, dict[str, Any]], None]
"""``on_payload(endpoint, spec, document)``: called after each accepted payload is in Redis, with the
stored document (``{source, endpoint, symbol, fetched_at, meta, data}``); e.g. the alt-data bridge."""


def file_stamp(path: Path) -> Hashable:
    """Default change detector for hot reload: (mtime ns, size)."""
    stat = path.stat()
    return (stat.st_mtime_ns, stat.st_size)


def _iso(ts_ns: int) -> str:
    """A time stamp for an error message (UTC, seconds)."""
    return datetime.fromtimestamp(ts_ns / NS_PER_SECOND, tz=UTC).isoformat(timespec="seconds")


def retry_after_seconds(value: str | None, now_ns: int) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None when absent/unreadable."""
    if not value:
        return None
    if re.fullmatch(r"\s*\d+(\.\d+)?\s*", value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now_ns / NS_PER_SECOND)


@dataclass
class _Job:
    """One (endpoint, symbol) to keep fresh."""

    key: JobKey
    spec: EndpointSpec
    last_fetch_ns: int | None = None
    in_flight: bool = False

    @property
    def endpoint(self) -> str:
        return self.key[0]

    @property
    def symbol(self) -> str | None:
        return self.key[1]


class SourceEngine:
    """Config-driven fetcher of one source (module docstring: usage, scheduling, reload)."""

    def __init__(
        self,
        path: Path | str,
        *,
        redis: redis.Redis,
        clock: Clock,
        universe: Sequence[str],
        environ: Mapping[str, str] | None = None,
        base_url: str | None = None,
        calendar: NyseCalendar | None = None,
        stamp: Callable[[Path], Hashable] = file_stamp,
        session: aiohttp.ClientSession | None = None,
        on_payload: PayloadHook | None = None,
    ) -> None:
        self._path = Path(path)
        self._on_payload = on_payload
        self._environ = environ
        self._redis = redis
        self._clock = clock
        self._universe = list(universe)
        self._base_url_override = base_url
        self._calendar = calendar or NyseCalendar()
        self._resolver = MarketStateResolver(self._calendar)
        self._stamp_fn = stamp
        self._stamp = stamp(self._path) if self._path.exists() else None
        self._config = load_source(self._path, environ)
        limits = self._config.source.rate_limit
        self._bucket = TokenBucket(limits.requests_per_minute, limits.burst, clock, limits.critical_reserve)
        self._breakers: dict[str, CircuitBreaker] = {}
        self._jobs: dict[JobKey, _Job] = {}
        self._apply_jobs(self._config)
        self._session = session
        self._owns_session = session is None
        self._inflight: set[asyncio.Task[None]] = set()
        self._paused_until_ns = 0
        self._metrics = SourceMetrics()

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the source's ClientSession (idempotent)."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._owns_session = True

    async def close(self) -> None:
        """Wait for in-flight requests and close the session this engine opened."""
        await self.drain()
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> SourceEngine:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def run(self, stop: asyncio.Event, poll_s: float = 0.2, reload_every_s: float = 2.0) -> None:
        """Fetch until ``stop`` is set, checking the YAML for changes every ``reload_every_s``.

        Polling and reload pacing use the event loop's monotonic time (they pace I/O); every
        scheduling decision uses the injected clock.
        """
        await self.start()
        loop = asyncio.get_running_loop()
        next_reload = loop.time() + reload_every_s
        while not stop.is_set():
            if loop.time() >= next_reload:
                self.check_reload()
                next_reload = loop.time() + reload_every_s
            await self.step()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_s)
        await self.drain()

    # --- state -----------------------------------------------------------------------------
    @property
    def config(self) -> SourceConfig:
        """The configuration in force."""
        return self._config

    @property
    def base_url(self) -> str:
        """Where requests go: the constructor override, else the YAML (or its ``base_url_env``)."""
        return self._base_url_override or self._config.base_url

    @property
    def universe(self) -> list[str]:
        """The symbols ``symbols: universe`` endpoints are fetched for."""
        return list(self._universe)

    def set_universe(self, universe: Sequence[str]) -> list[JobKey]:
        """Run-time universe change: the jobs of ``symbols: universe`` endpoints follow it.

        Jobs of symbols that stay keep their schedule; a new symbol's jobs are due at once; a
        dropped symbol's jobs end (a request already in flight still completes and is stored).
        Returns the jobs added.
        """
        before = set(self._jobs)
        self._universe = list(dict.fromkeys(universe))
        self._apply_jobs(self._config)
        return sorted(set(self._jobs) - before, key=lambda k: (k[0], k[1] or ""))

    def jobs(self) -> list[JobKey]:
        """Current (endpoint, symbol) jobs, sorted."""
        return sorted(self._jobs, key=lambda k: (k[0], k[1] or ""))

    def breaker(self, endpoint: str) -> CircuitBreaker:
        """The circuit breaker of ``endpoint``."""
        return self._breakers[endpoint]

    def tokens(self) -> float:
        """Tokens left in the source's bucket."""
        return self._bucket.tokens()

    def metrics(self) -> dict[str, Any]:
        """Every counter plus tokens left, pause and breaker states, as a plain dict."""
        out = self._metrics.as_dict()
        out.update(
            source=self._config.source.name,
            jobs=len(self._jobs),
            in_flight=len(self._inflight),
            tokens=round(self._bucket.tokens(), 3),
            paused_until_ns=self._paused_until_ns,
            breakers={name: b.state.value for name, b in sorted(self._breakers.items())},
            breaker_opened={name: b.opened_count for name, b in sorted(self._breakers.items())},
        )
        return out

    # --- hot reload ------------------------------------------------------------------------
    def check_reload(self) -> bool:
        """Reload the YAML if its stamp changed; True when a new config took effect."""
        try:
            stamp = self._stamp_fn(self._path)
        except OSError as exc:
            self._reload_failed(f"{self._path}: cannot stat source file: {exc}")
            return False
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            config = load_source(self._path, self._environ)
        except ConfigError as exc:
            self._reload_failed(str(exc))
            return False
        self._apply(config)
        self._metrics.reloads += 1
        self._metrics.last_reload_error = None
        log.info("%s: reloaded %s (%d jobs)", config.source.name, self._path, len(self._jobs))
        return True

    def _reload_failed(self, message: str) -> None:
        self._metrics.reload_errors += 1
        self._metrics.last_reload_error = message
        log.warning("source reload rejected, previous config stays in force: %s", message)

    def _apply(self, config: SourceConfig) -> None:
        limits = config.source.rate_limit
        self._bucket.reconfigure(limits.requests_per_minute, limits.burst, limits.critical_reserve)
        self._apply_jobs(config)
        self._config = config

    def _apply_jobs(self, config: SourceConfig) -> None:
        """Rebuild the job set: unchanged jobs are kept as they are, changed ones keep their last fetch time."""
        spec = config.source.breaker
        jobs: dict[JobKey, _Job] = {}
        for name, endpoint in config.endpoints.items():
            if not endpoint.enabled:
                continue
            for symbol in endpoint.symbols_for(self._universe):
                key = (name, symbol)
                old = self._jobs.get(key)
                if old is not None and old.spec == endpoint:
                    jobs[key] = old
                else:
                    jobs[key] = _Job(key, endpoint, last_fetch_ns=old.last_fetch_ns if old else None)
        breakers = {}
        for name in {key[0] for key in jobs}:
            breaker = self._breakers.get(name) or CircuitBreaker(spec.failures_to_open, spec.cooldown_s, self._clock)
            breaker.configure(spec.failures_to_open, spec.cooldown_s)
            breakers[name] = breaker
        self._jobs = jobs
        self._breakers = breakers

    # --- scheduling ------------------------------------------------------------------------
    async def step(self) -> int:
        """Dispatch every job that is due now and allowed; returns how many requests were sent."""
        if self._session is None:
            raise RuntimeError("SourceEngine.start() (or 'async with engine') must come before step()")
        now = self._clock.now_ns()
        if now < self._paused_until_ns:
            return 0
        multiplier = self._config.source.schedule.multiplier(self._resolver.at(now))
        if multiplier is None:
            return 0
        due: list[tuple[bool, int, str, str, _Job]] = []
        for job in self._jobs.values():
            if job.in_flight:
                continue
            due_at = -1 if job.last_fetch_ns is None else job.last_fetch_ns + int(job.spec.cadence_s * multiplier * 1e9)
            if due_at <= now:
                due.append((not job.spec.critical, due_at, job.endpoint, job.symbol or "", job))
        due.sort(key=lambda item: item[:4])
        dispatched = 0
        max_in_flight = self._config.source.max_in_flight
        for *_, job in due:
            if len(self._inflight) >= max_in_flight:
                break
            breaker = self._breakers[job.endpoint]
            if breaker.state is BreakerState.OPEN:
                self._metrics.skipped_breaker_open[job.endpoint] += 1
                continue
            if not self._bucket.available(job.spec.critical):
                break  # sorted critical first: if this one cannot have a token, no later one can
            if not breaker.allow():  # half-open and its single trial is already out
                self._metrics.skipped_breaker_open[job.endpoint] += 1
                continue
            self._bucket.try_acquire(job.spec.critical)
            job.in_flight = True
            job.last_fetch_ns = now
            self._metrics.dispatched[job.endpoint] += 1
            task = asyncio.create_task(self._fetch(job), name=f"fetch:{job.endpoint}:{job.symbol}")
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
            dispatched += 1
        self._metrics.backlog = len(due) - dispatched
        return dispatched

    async def drain(self) -> None:
        """Wait until every dispatched request has been handled."""
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)

    def _pause(self, seconds: float) -> None:
        until = self._clock.now_ns() + int(seconds * NS_PER_SECOND)
        self._paused_until_ns = max(self._paused_until_ns, until)

    # --- one request -----------------------------------------------------------------------
    async def _fetch(self, job: _Job) -> None:
        config = self._config
        try:
            await self._fetch_once(job, config)
        except Exception as exc:  # a bug must cost one fetch, never the fetcher
            log.exception("%s: unexpected error fetching %s", config.source.name, job.key)
            self._failed(job, "internal", repr(exc))
        finally:
            job.in_flight = False

    async def _fetch_once(self, job: _Job, config: SourceConfig) -> None:
        assert self._session is not None
        source = config.source
        url, params = build_request(
            self.base_url, job.spec.path, job.spec.params, job.symbol, self._clock.now_ns(), self._calendar
        )
        headers = {"Accept": "application/json"}
        if source.auth.type == "bearer":
            headers["Authorization"] = f"Bearer {config.token}"
        else:
            params[source.auth.param] = config.token
        self._metrics.requests += 1
        timeout = aiohttp.ClientTimeout(total=source.timeout_s)
        try:
            async with self._session.get(url, params=params, headers=headers, timeout=timeout) as response:
                status = response.status
                retry_after = response.headers.get("Retry-After")
                body = await response.read()
        except TimeoutError:
            self._failed(job, "timeout", f"no answer within {source.timeout_s} s")
            return
        except aiohttp.ClientError as exc:
            self._failed(job, "connection", repr(exc))
            return
        self._handle(job, config, status, retry_after, body)

    def _handle(self, job: _Job, config: SourceConfig, status: int, retry_after: str | None, body: bytes) -> None:
        limits = config.source.rate_limit
        breaker = self._breakers.get(job.endpoint)
        if status == 429:
            self._metrics.responses_429 += 1
            wait = retry_after_seconds(retry_after, self._clock.now_ns())
            self._pause(limits.throttle_pause_s if wait is None else wait)
            self._requeue(job, breaker)
            return
        if not 200 <= status < 300:
            self._failed(job, f"http_{status}", body[:120].decode("utf-8", "replace"))
            return
        self._metrics.responses_2xx += 1
        try:
            payload = PARSERS[job.spec.parser](body)
        except Throttled as throttle:
            self._metrics.throttled[throttle.kind] += 1
            self._pause(limits.throttle_pause_s)
            self._requeue(job, breaker)
            return
        except Rejected as reject:
            self._failed(job, reject.reason.value, reject.detail)
            return
        problem = self._freshness_problem(job, config, payload)
        if problem is not None:
            self._failed(job, problem.reason.value, problem.detail)
            return
        for reject in payload.dropped:  # records left out of an accepted response: counted, by reason
            self._metrics.records_dropped += 1
            self._metrics.error(job.endpoint, reject.reason.value, reject.detail)
            log.debug("%s %s: record dropped: %s", job.endpoint, job.symbol, reject)
        if self._jobs.get(job.key) is not job:  # removed or changed by a reload while in flight
            self._metrics.discarded_stale += 1
            return
        if breaker is not None:
            breaker.record_success()
        fetched_at_ns = self._clock.now_ns()
        try:
            write_payload(
                self._redis,
                job.spec.redis_key,
                job.spec.ttl_s,
                source=config.source.name,
                endpoint=job.endpoint,
                symbol=job.symbol,
                fetched_at_ns=fetched_at_ns,
                payload=payload,
            )
        except redis.RedisError as exc:
            self._metrics.error(job.endpoint, "redis", repr(exc))
            return
        self._metrics.writes[job.endpoint] += 1
        if self._on_payload is not None:
            document = {
                "source": config.source.name,
                "endpoint": job.endpoint,
                "symbol": job.symbol,
                "fetched_at": fetched_at_ns,
                "meta": payload.meta,
                "data": payload.records,
            }
            try:
                self._on_payload(job.endpoint, job.spec, document)
            except Exception as exc:  # a consumer's bug must not cost the fetch (the data is stored)
                log.exception("%s: on_payload hook failed for %s", config.source.name, job.key)
                self._metrics.error(job.endpoint, "hook", repr(exc))

    def _freshness_problem(self, job: _Job, config: SourceConfig, payload: Payload) -> Rejected | None:
        """Why a time-stamped payload is too far ahead or (in regular hours) too old, per ``source.freshness``."""
        freshness = config.source.freshness
        newest = payload.newest_ns
        if newest is None:
            return None
        now = self._clock.now_ns()
        ahead_s = (newest - now) / NS_PER_SECOND
        if freshness.max_future_s is not None and ahead_s > freshness.max_future_s:
            return Rejected(
                RejectReason.FUTURE,
                f"{payload.time_field} = {_iso(newest)}: {ahead_s:.0f} s ahead of now {_iso(now)} "
                f"(max_future_s {freshness.max_future_s:g})",
            )
        if (
            freshness.max_age_s is not None
            and job.spec.parser in AGE_CHECKED
            and -ahead_s > freshness.max_age_s
            and self._resolver.at(now) is MarketState.RTH
        ):
            return Rejected(
                RejectReason.STALE,
                f"newest {payload.time_field} = {_iso(newest)}: {-ahead_s:.0f} s old at {_iso(now)} "
                f"(max_age_s {freshness.max_age_s:g})",
            )
        return None

    def _requeue(self, job: _Job, breaker: CircuitBreaker | None) -> None:
        """Rate limited, not failed: fetch this job first once the source's pause is over."""
        job.last_fetch_ns = None
        if breaker is not None:
            breaker.release_trial()

    def _failed(self, job: _Job, reason: str, detail: str = "") -> None:
        self._metrics.error(job.endpoint, reason, detail)
        breaker = self._breakers.get(job.endpoint)
        if breaker is None or self._jobs.get(job.key) is not job:
            return
        was_open = breaker.state is not BreakerState.CLOSED
        breaker.record_failure()
        if breaker.state is BreakerState.OPEN and not was_open:
            log.warning(
                "%s: circuit breaker of %s opened after %d failures (last: %s %s)",
                self._config.source.name,
                job.endpoint,
                breaker.consecutive_failures,
                reason,
                detail,
            )
        log.debug("%s %s: %s %s", job.endpoint, job.symbol, reason, detail)
