"""The config-driven fetcher against the loopback UW / AV twins over real HTTP, on simulated time.

Every scenario runs the real ``aiohttp`` client against :mod:`quanticity.sim.uw_server` /
:mod:`quanticity.sim.av_server` on 127.0.0.1, both driven by one :class:`SimulatedClock`, and
writes to the real (embedded) Redis of the ``redis_client`` fixture.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from quanticity.calendar import ET, NyseCalendar
from quanticity.clock import NS_PER_SECOND, SimulatedClock
from quanticity.config.loader import ConfigError
from quanticity.feeds.breaker import BreakerState, CircuitBreaker
from quanticity.feeds.bucket import TokenBucket
from quanticity.feeds.engine import SourceEngine, retry_after_seconds
from quanticity.feeds.market_state import MarketState, MarketStateResolver
from quanticity.feeds.parse import PARSERS, Rejected, RejectReason, Throttled
from quanticity.feeds.sources import load_source
from quanticity.sim.av_server import AvServer
from quanticity.sim.rest_twin import RequestLog
from quanticity.sim.uw_server import UwServer

pytestmark = pytest.mark.unit

TOKEN = "uw-test-token"
APIKEY = "av-test-key"
ENV = {"UW_API_TOKEN": TOKEN, "ALPHA_VANTAGE_API_KEY": APIKEY}
UNIVERSE = ["SPX", "SPY", "QQQ", "IWM", "AAPL", "MSFT", "GOOGL", "AMZN", "NVDA", "META", "TSLA", "COST", "WMT"]
UNIVERSE += ["DIS", "V", "NFLX", "HOOD", "HIMS", "ORCL"]
REPO = Path(__file__).resolve().parents[2]

_CAL = NyseCalendar()
SESSION = _CAL.session_on_or_before(date.today() - timedelta(days=1))
SATURDAY = SESSION + timedelta(days=(5 - SESSION.weekday()) % 7 or 7)


def at(day: date, hh: int, mm: int = 0) -> int:
    """ns of ``hh:mm`` ET on ``day``."""
    return int(datetime.combine(day, time(hh, mm), tzinfo=ET).timestamp()) * NS_PER_SECOND


RTH = at(SESSION, 10)


def endpoint(
    path: str,
    parser: str,
    key: str,
    *,
    tier: int = 0,
    interval: float | None = 30,
    ttl: int = 3600,
    symbols: list[str] | str | None = None,
    critical: bool = False,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"path": path, "parser": parser, "redis_key": key, "tier": tier, "ttl_s": ttl}
    if interval is not None:
        spec["interval_s"] = interval
    if symbols is not None:
        spec["symbols"] = symbols
    if critical:
        spec["critical"] = True
    if params:
        spec["params"] = params
    return spec


def source(dialect: str = "unusual_whales", **overrides: Any) -> dict[str, Any]:
    uw = dialect == "unusual_whales"
    spec: dict[str, Any] = {
        "name": dialect,
        "dialect": dialect,
        "base_url": "http://127.0.0.1:9/api" if uw else "http://127.0.0.1:9",
        "auth": {"type": "bearer", "token_env": "UW_API_TOKEN"}
        if uw
        else {"type": "query", "token_env": "ALPHA_VANTAGE_API_KEY", "param": "apikey"},
        "rate_limit": {"requests_per_minute": 120 if uw else 590, "burst": 20, "critical_reserve": 4},
        "schedule": {"rth": 1.0, "pre_market": 2.0, "after_hours": 4.0, "overnight": 12.0, "weekend": None},
        "breaker": {"failures_to_open": 3, "cooldown_s": 60},
        "timeout_s": 5,
        "max_in_flight": 32,
    }
    for name, value in overrides.items():
        merge = isinstance(value, dict) and isinstance(spec.get(name), dict)
        spec[name] = {**spec[name], **value} if merge else value
    return spec


def write_yaml(path: Path, data: dict[str, Any], bump: int = 0) -> Path:
    """Write ``data`` and force a distinct mtime (file systems with coarse mtimes must still see the change)."""
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    stamp = 1_700_000_000_000_000_000 + bump * NS_PER_SECOND
    os.utime(path, ns=(stamp, stamp))
    return path


SPOT = endpoint(
    "/stock/{ticker}/spot-exposures",
    "uw.spot_exposures",
    "raw:uw:spot_exposures:{ticker}",
    ttl=180,
    symbols=["SPY"],
    critical=True,
    params={"date": "session"},
)
GEX = endpoint(
    "/stock/{ticker}/greek-exposure",
    "uw.greek_exposure",
    "raw:uw:greek_exposure:{ticker}",
    tier=1,
    interval=300,
    ttl=900,
    symbols=["SPY"],
)
IV_RANK = endpoint(
    "/stock/{ticker}/iv-rank", "uw.iv_rank", "raw:uw:iv_rank:{ticker}", tier=2, interval=900, ttl=7200, symbols=["SPY"]
)
MAX_PAIN = endpoint("/stock/{ticker}/max-pain", "uw.max_pain", "raw:uw:max_pain:{ticker}", symbols=["SPY"])


@asynccontextmanager
async def uw_engine(
    tmp_path: Path, client: redis.Redis, clock: SimulatedClock, spec: dict[str, Any], **server_options: Any
) -> AsyncIterator[tuple[SourceEngine, UwServer, Path]]:
    server = UwServer(TOKEN, clock=clock, universe=UNIVERSE, **server_options)
    await server.start()
    path = write_yaml(tmp_path / "unusual_whales.yaml", spec)
    engine = SourceEngine(
        path, redis=client, clock=clock, universe=UNIVERSE, environ=ENV, base_url=server.base_url + "/api"
    )
    try:
        async with engine:
            yield engine, server, path
    finally:
        await server.stop()


async def run_for(engine: SourceEngine, clock: SimulatedClock, seconds: float, step_s: float = 1.0) -> None:
    """Advance simulated time in ``step_s`` steps, letting the engine dispatch and finish what is due."""
    for _ in range(round(seconds / step_s)):
        clock.advance(step_s)
        await engine.step()
        await engine.drain()


def hits(server: UwServer | AvServer, needle: str) -> list[float]:
    """Simulated times (s after RTH) of the requests whose path contains ``needle``."""
    return [(e.ts_ns - RTH) / NS_PER_SECOND for e in server.requests.entries() if needle in e.path]


# --- cadence, market state, Redis -------------------------------------------------------------
def test_tier_cadence_and_payload_in_redis_with_ttl(tmp_path: Path, redis_client: redis.Redis) -> None:
    clock = SimulatedClock(RTH)
    spec = {"source": source(), "endpoints": {"spot_exposures": SPOT, "greek_exposure": GEX, "iv_rank": IV_RANK}}

    async def scenario() -> None:
        async with uw_engine(tmp_path, redis_client, clock, spec) as (engine, server, _):
            await run_for(engine, clock, 600)
            assert hits(server, "spot-exposures") == list(range(1, 600, 30))  # tier 0 at 30 s
            assert hits(server, "greek-exposure") == [1, 301]  # tier 1 at 5 min
            assert hits(server, "iv-rank") == [1]  # tier 2 hourly (900 s here)
            assert engine.metrics()["errors_total"] == 0

    asyncio.run(scenario())
    doc = json.loads(redis_client.get("raw:uw:spot_exposures:SPY"))
    assert doc["fetched_at"] == RTH + 571 * NS_PER_SECOND and doc["symbol"] == "SPY"
    assert len(doc["data"]) == 30 and isinstance(doc["data"][0]["price"], float) and doc["data"][0]["price"] > 0
    assert 170 <= redis_client.ttl("raw:uw:spot_exposures:SPY") <= 180
    assert 7100 <= redis_client.ttl("raw:uw:iv_rank:SPY") <= 7200


@pytest.mark.parametrize(
    ("start", "expected"),
    [(at(SESSION, 16, 30), list(range(1, 600, 120))), (at(SATURDAY, 11), [])],
    ids=["after_hours_x4", "weekend_paused"],
)
def test_market_state_multiplier(tmp_path: Path, redis_client: redis.Redis, start: int, expected: list[int]) -> None:
    clock = SimulatedClock(start)
    spec = {"source": source(), "endpoints": {"spot_exposures": SPOT}}

    async def scenario() -> None:
        async with uw_engine(tmp_path, redis_client, clock, spec) as (engine, server, _):
            await run_for(engine, clock, 600)
            times = [round((e.ts_ns - start) / NS_PER_SECOND) for e in server.requests.entries()]
            assert times == expected

    asyncio.run(scenario())


def test_market_states_follow_the_nyse_calendar() -> None:
    resolver = MarketStateResolver()
    assert resolver.at(at(SESSION, 10)) is MarketState.RTH
    assert resolver.at(at(SESSION, 7)) is MarketState.PRE_MARKET
    assert resolver.at(at(SESSION, 19)) is MarketState.AFTER_HOURS
    assert resolver.at(at(SESSION, 2)) is MarketState.OVERNIGHT
    assert resolver.at(at(SATURDAY, 11)) is MarketState.WEEKEND


# --- rate limit ----------------------------------------------------------------------------------
def test_never_above_the_rate_limit_over_ten_simulated_minutes(tmp_path: Path, redis_client: redis.Redis) -> None:
    """Demand (≈ 170 req/min) exceeds the 120/min budget; the twin (same limit, same clock) never says 429."""
    clock = SimulatedClock(RTH)
    cheap = {
        name: endpoint(path, parser, f"raw:uw:{name}:{{ticker}}", symbols="universe")
        for name, path, parser in [
            ("max_pain", "/stock/{ticker}/max-pain", "uw.max_pain"),
            ("iv_rank", "/stock/{ticker}/iv-rank", "uw.iv_rank"),
            ("earnings", "/earnings/{ticker}", "uw.earnings"),
            ("gex", "/stock/{ticker}/greek-exposure", "uw.greek_exposure"),
        ]
    }
    spec = {"source": source(), "endpoints": {"spot_exposures": SPOT, **cheap}}

    async def scenario() -> None:
        async with uw_engine(tmp_path, redis_client, clock, spec) as (engine, server, _):
            await run_for(engine, clock, 600, step_s=0.5)
            entries = server.requests.entries()
            assert not [e for e in entries if e.status != 200]  # no 429: the client never over-sent
            assert server.requests.max_in_window(60.0) <= 120 + 20  # a 120/min bucket with a burst of 20
            per_minute = Counter((e.ts_ns - RTH - 1) // (60 * NS_PER_SECOND) for e in entries)
            assert all(per_minute[m] >= 115 for m in range(1, 10)), per_minute  # and it did use the budget
            assert hits(server, "spot-exposures") == [0.5 + 30 * k for k in range(20)]  # critical kept its cadence
            metrics = engine.metrics()
            assert metrics["backlog"] > 0 and metrics["responses_429"] == 0
            assert metrics["requests"] == len(entries)

    asyncio.run(scenario())


def test_av_never_above_its_limit_over_ten_simulated_minutes(tmp_path: Path, redis_client: redis.Redis) -> None:
    """The shipped AV YAML with every endpoint at the fastest cadence (≈ 900 req/min wanted for 590/min).

    The twin enforces AV's premium limit (600/min, GCRA on the same clock) and answers a client
    over it with a ``Note``: the fetcher must never see one, never send more than 600 in any 60 s
    window, stay within its own 590/min budget in every window once its initial burst is spent
    (the first window also holds that burst), and still use the budget.
    """
    clock = SimulatedClock(RTH)
    shipped = yaml.safe_load((REPO / "config/sources/alpha_vantage.yaml").read_text())
    shipped["source"]["schedule"]["rth"] = 0.25  # 30 s × 0.25: every job due every 7.5 s
    for spec in shipped["endpoints"].values():
        spec.update(tier=0, interval_s=30)
    limits = shipped["source"]["rate_limit"]
    rpm, burst = limits["requests_per_minute"], limits["burst"]
    minute = 60 * NS_PER_SECOND

    async def scenario() -> None:
        server = AvServer(APIKEY, clock=clock)
        await server.start()
        engine = SourceEngine(
            write_yaml(tmp_path / "alpha_vantage.yaml", shipped),
            redis=redis_client,
            clock=clock,
            universe=UNIVERSE,
            environ=ENV,
            base_url=server.base_url,
        )
        try:
            async with engine:
                assert len(engine.jobs()) * 60 / 7.5 > 1.4 * rpm  # demand well over the budget
                await run_for(engine, clock, 600, step_s=0.5)
                metrics = engine.metrics()
        finally:
            await server.stop()
        entries = server.requests.entries()
        times = [e.ts_ns for e in entries]
        assert metrics["throttled"] == {} and metrics["errors"] == {}  # the twin never said Note (nor anything bad)
        assert metrics["requests"] == len(entries) and all(e.status == 200 for e in entries)
        busiest = server.requests.max_in_window(60.0)
        # the first window holds the starting burst (measured: 600), still within AV's own 600/min
        assert busiest <= min(rpm + burst, server.limiter.requests_per_minute)
        steady = RequestLog()  # once the burst is spent: within the configured 590 in every window
        for e in entries:
            if e.ts_ns >= RTH + minute:
                steady.add(e.ts_ns, e.path, e.status)
        assert steady.max_in_window(60.0) <= rpm
        per_minute = Counter((t - RTH - 1) // minute for t in times)
        assert all(per_minute[m] >= rpm - 10 for m in range(1, 10)), per_minute  # and it used the budget
        assert metrics["backlog"] > 0

    asyncio.run(scenario())


def test_token_bucket_is_exact_and_keeps_a_reserve_for_critical() -> None:
    clock = SimulatedClock(0)
    bucket = TokenBucket(120, 20, clock, reserve=4)
    assert sum(bucket.try_acquire(critical=False) for _ in range(30)) == 16  # 4 held back
    assert sum(bucket.try_acquire(critical=True) for _ in range(30)) == 4
    assert bucket.seconds_until_available(critical=True) == pytest.approx(0.5)
    clock.advance(0.499999999)
    assert not bucket.try_acquire(critical=True)
    clock.advance(0.000000001)
    assert bucket.try_acquire(critical=True) and not bucket.try_acquire(critical=True)
    clock.advance(3600)
    assert bucket.tokens() == 20
    bucket.reconfigure(60, 5, 0)
    assert bucket.tokens() == 5


# --- hot reload ----------------------------------------------------------------------------------
def test_hot_reload_adds_and_removes_endpoints_and_rejects_a_broken_file(
    tmp_path: Path, redis_client: redis.Redis
) -> None:
    clock = SimulatedClock(RTH)
    first = {"source": source(), "endpoints": {"spot_exposures": SPOT}}

    async def scenario() -> None:
        async with uw_engine(tmp_path, redis_client, clock, first) as (engine, server, path):
            await run_for(engine, clock, 60)
            assert not engine.check_reload()  # unchanged file: nothing to do
            write_yaml(path, {"source": source(), "endpoints": {"spot_exposures": SPOT, "max_pain": MAX_PAIN}}, 1)
            assert engine.check_reload()
            assert engine.jobs() == [("max_pain", "SPY"), ("spot_exposures", "SPY")]
            await run_for(engine, clock, 60)
            assert hits(server, "max-pain") == [61, 91]
            assert hits(server, "spot-exposures") == [1, 31, 61, 91]  # schedule kept across the reload

            write_yaml(path, {"source": source(), "endpoints": {"max_pain": MAX_PAIN}}, 2)
            assert engine.check_reload()
            await run_for(engine, clock, 60)
            assert hits(server, "spot-exposures") == [1, 31, 61, 91]  # removed: no more requests
            assert hits(server, "max-pain") == [61, 91, 121, 151]

            broken = {"source": source(), "endpoints": {"max_pain": MAX_PAIN | {"ttl_s": "soon"}}}
            write_yaml(path, broken, 3)
            assert not engine.check_reload()
            error = engine.metrics()["last_reload_error"]
            assert str(path) in error and "endpoints.max_pain.ttl_s = 'soon'" in error
            path.write_text("endpoints: [unclosed\n")
            os.utime(path, ns=(1_800_000_000_000_000_000,) * 2)
            assert not engine.check_reload()
            assert "not valid YAML" in engine.metrics()["last_reload_error"]
            await run_for(engine, clock, 60)  # the old config is still in force
            assert hits(server, "max-pain") == [61, 91, 121, 151, 181, 211]
            assert engine.metrics()["reloads"] == 2 and engine.metrics()["reload_errors"] == 2

    asyncio.run(scenario())


def test_universe_change_adds_and_ends_jobs_without_touching_the_others(
    tmp_path: Path, redis_client: redis.Redis
) -> None:
    clock = SimulatedClock(RTH)
    per_symbol = SPOT | {"symbols": "universe"}
    spec = {"source": source(), "endpoints": {"spot_exposures": per_symbol, "max_pain": MAX_PAIN}}

    async def scenario() -> None:
        server = UwServer(TOKEN, clock=clock, universe=UNIVERSE)
        await server.start()
        path = write_yaml(tmp_path / "unusual_whales.yaml", spec)
        base_url = server.base_url + "/api"
        engine = SourceEngine(
            path, redis=redis_client, clock=clock, universe=["SPY", "QQQ"], environ=ENV, base_url=base_url
        )
        try:
            async with engine:
                await run_for(engine, clock, 60)
                assert engine.set_universe(["SPY", "QQQ", "IWM"]) == [("spot_exposures", "IWM")]
                assert engine.universe == ["SPY", "QQQ", "IWM"]
                await run_for(engine, clock, 60)
                # the new symbol is due at once; the others keep their 30 s schedule
                assert hits(server, "/IWM/spot-exposures") == [61, 91]
                assert hits(server, "/SPY/spot-exposures") == [1, 31, 61, 91]
                assert hits(server, "max-pain") == [1, 31, 61, 91]  # fixed symbol list: unaffected
                assert engine.set_universe(["SPY", "IWM"]) == []
                assert engine.jobs() == [("max_pain", "SPY"), ("spot_exposures", "IWM"), ("spot_exposures", "SPY")]
                await run_for(engine, clock, 60)
                assert hits(server, "/QQQ/spot-exposures") == [1, 31, 61, 91]  # removed: no more requests
                assert hits(server, "/IWM/spot-exposures") == [61, 91, 121, 151]
                assert redis_client.get("raw:uw:spot_exposures:IWM") is not None
        finally:
            await server.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda s: s["endpoints"]["max_pain"].update(interval_s=5), "endpoints.max_pain.interval_s = 5"),
        (lambda s: s["endpoints"]["max_pain"].update(ttl_s=10), "endpoints.max_pain.ttl_s = 10"),
        (lambda s: s["endpoints"]["max_pain"].update(parser="uw.nope"), "endpoints.max_pain.parser = 'uw.nope'"),
        (lambda s: s["endpoints"]["max_pain"].update(parser="av.macro"), "endpoints.max_pain.parser = 'av.macro'"),
        (lambda s: s["endpoints"]["max_pain"].pop("symbols"), "endpoints.max_pain.symbols"),
        (lambda s: s["endpoints"]["max_pain"].update(redis_key="uw:x:{ticker}"), "redis_key = 'uw:x:{ticker}'"),
        (lambda s: s["endpoints"]["max_pain"].update(sybmols=["SPY"]), "endpoints.max_pain.sybmols"),
        (lambda s: s["source"]["rate_limit"].update(critical_reserve=20), "source.rate_limit.critical_reserve = 20"),
        (lambda s: s["source"]["auth"].update(token_env="NOT_SET_ANYWHERE"), "source.auth.token_env"),
    ],
    ids=["interval", "ttl", "parser", "dialect", "symbols", "key", "typo", "reserve", "token"],
)
def test_config_errors_name_file_key_and_value(tmp_path: Path, edit: Callable[[dict], Any], expected: str) -> None:
    spec = {"source": source(), "endpoints": {"max_pain": dict(MAX_PAIN)}}
    edit(spec)
    path = write_yaml(tmp_path / "src.yaml", spec)
    with pytest.raises(ConfigError) as err:
        load_source(path, ENV)
    assert str(path) in str(err.value) and expected in str(err.value)


def test_shipped_source_files_load() -> None:
    uw = load_source(REPO / "config/sources/unusual_whales.yaml", ENV)
    av = load_source(REPO / "config/sources/alpha_vantage.yaml", ENV)
    assert uw.source.rate_limit.requests_per_minute == 120 and uw.source.rate_limit.burst == 20
    assert av.source.rate_limit.requests_per_minute == 590
    assert {"spot_exposures", "flow_alerts", "darkpool", "congress_trades", "max_pain", "earnings"} <= set(uw.endpoints)
    options = av.endpoints["realtime_options_index"]
    assert options.params["require_greeks"] == "true" and options.critical
    assert not {"SPY", "QQQ", "IWM", "SPX"} & set(av.endpoints["news_sentiment"].symbols_for(UNIVERSE))
    assert uw.ws_url == "wss://api.unusualwhales.com/socket"


# --- faults --------------------------------------------------------------------------------------
def test_500_bad_json_nan_and_429_are_counted_and_survived(tmp_path: Path, redis_client: redis.Redis) -> None:
    clock = SimulatedClock(RTH)
    spec = {"source": source(breaker={"failures_to_open": 10}), "endpoints": {"max_pain": MAX_PAIN}}

    async def scenario() -> None:
        async with uw_engine(tmp_path, redis_client, clock, spec) as (engine, server, _):
            await run_for(engine, clock, 30)  # t=1: good data
            good = redis_client.get("raw:uw:max_pain:SPY")
            for kind in ("500", "malformed", "nan"):
                server.inject(kind, path="max-pain")
            await run_for(engine, clock, 90)  # t=31, 61, 91: three bad answers
            assert redis_client.get("raw:uw:max_pain:SPY") == good  # last good payload kept
            errors = engine.metrics()["errors"]["max_pain"]
            assert errors == {"http_500": 1, "malformed_json": 1, "non_finite": 1}
            assert "'NaN'" in engine.metrics()["last_error"]["max_pain"]  # names the field and value

            server.inject("429", path="max-pain", retry_after_s=7)
            await run_for(engine, clock, 30)  # t=121: 429, source paused 7 s, then retried first
            assert hits(server, "max-pain") == [1, 31, 61, 91, 121, 128]
            assert engine.metrics()["responses_429"] == 1
            assert json.loads(redis_client.get("raw:uw:max_pain:SPY"))["fetched_at"] == RTH + 128 * NS_PER_SECOND
            assert engine.breaker("max_pain").state is BreakerState.CLOSED

    asyncio.run(scenario())


def test_slow_reply_times_out_and_is_counted(tmp_path: Path, redis_client: redis.Redis) -> None:
    clock = SimulatedClock(RTH)
    spec = {"source": source(timeout_s=0.2), "endpoints": {"max_pain": MAX_PAIN}}

    async def scenario() -> None:
        async with uw_engine(tmp_path, redis_client, clock, spec) as (engine, server, _):
            server.inject("slow", path="max-pain", delay_s=0.6)
            await run_for(engine, clock, 1)
            assert engine.metrics()["errors"] == {"max_pain": {"timeout": 1}}
            assert redis_client.get("raw:uw:max_pain:SPY") is None
            await run_for(engine, clock, 30)
            assert redis_client.get("raw:uw:max_pain:SPY") is not None  # next cadence succeeds

    asyncio.run(scenario())


def test_circuit_breaker_opens_then_half_opens_with_one_trial(tmp_path: Path, redis_client: redis.Redis) -> None:
    clock = SimulatedClock(RTH)
    spot = SPOT | {"symbols": ["SPY", "QQQ"]}
    spec = {"source": source(), "endpoints": {"spot_exposures": spot, "max_pain": MAX_PAIN}}

    async def scenario() -> None:
        async with uw_engine(tmp_path, redis_client, clock, spec) as (engine, server, _):
            server.inject("500", count=50, path="max-pain")
            await run_for(engine, clock, 90)  # failures at 1, 31, 61 → open at 61 (3 in a row)
            assert engine.breaker("max_pain").state is BreakerState.OPEN
            await run_for(engine, clock, 30)  # cooling down: no request at 91
            assert hits(server, "max-pain") == [1, 31, 61]
            assert engine.metrics()["skipped_breaker_open"]["max_pain"] >= 1
            await run_for(engine, clock, 30)  # half-open at 121: one trial, fails → open again
            assert hits(server, "max-pain") == [1, 31, 61, 121]
            assert engine.breaker("max_pain").state is BreakerState.OPEN
            server.faults.clear()
            await run_for(engine, clock, 90)  # next trial at 181 succeeds → closed, cadence resumes
            assert hits(server, "max-pain") == [1, 31, 61, 121, 181, 211]
            assert engine.breaker("max_pain").state is BreakerState.CLOSED
            assert engine.metrics()["breaker_opened"]["max_pain"] == 2
            assert len(hits(server, "spot-exposures")) == 2 * 8  # the healthy endpoint never paused

    asyncio.run(scenario())


def test_breaker_unit_transitions() -> None:
    clock = SimulatedClock(0)
    breaker = CircuitBreaker(2, 10.0, clock)
    breaker.record_failure()
    assert breaker.allow() and breaker.state is BreakerState.CLOSED
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and not breaker.allow()
    clock.advance(10)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow() and not breaker.allow()  # exactly one trial
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED and breaker.consecutive_failures == 0


# --- Alpha Vantage -------------------------------------------------------------------------------
def av_endpoints() -> dict[str, Any]:
    return {
        "options": endpoint(
            "/query",
            "av.realtime_options",
            "raw:av:options:{ticker}",
            symbols=["SPY"],
            critical=True,
            params={"function": "REALTIME_OPTIONS", "symbol": "{ticker}", "require_greeks": "true"},
        ),
        "cpi": endpoint("/query", "av.macro", "raw:av:macro:cpi", params={"function": "CPI", "interval": "monthly"}),
    }


def test_av_note_information_and_error_message_are_detected(tmp_path: Path, redis_client: redis.Redis) -> None:
    clock = SimulatedClock(RTH)
    spec = {"source": source("alpha_vantage", rate_limit={"throttle_pause_s": 15}), "endpoints": av_endpoints()}

    async def scenario() -> None:
        server = AvServer(APIKEY, clock=clock)
        await server.start()
        path = write_yaml(tmp_path / "alpha_vantage.yaml", spec)
        engine = SourceEngine(
            path, redis=redis_client, clock=clock, universe=UNIVERSE, environ=ENV, base_url=server.base_url
        )
        try:
            async with engine:
                await run_for(engine, clock, 1)
                doc = json.loads(redis_client.get("raw:av:options:SPY"))
                contract = doc["data"][0]
                assert (
                    isinstance(contract["delta"], float)
                    and contract["strike"] > 0
                    and contract["bid"] <= contract["ask"]
                )
                assert json.loads(redis_client.get("raw:av:macro:cpi"))["data"][-1]["value"] is None  # AV's "."

                server.inject("note", function="REALTIME_OPTIONS")
                await run_for(engine, clock, 30)  # t=31: Note → whole source paused 15 s
                assert engine.metrics()["throttled"] == {"note": 1}
                await run_for(engine, clock, 14)
                assert len(server.requests.entries()) == 4  # nothing during the pause
                await run_for(engine, clock, 2)  # t=46: the throttled job goes first
                assert len(server.requests.entries()) == 5

                server.inject("information", function="CPI")
                server.inject("error_message", function="REALTIME_OPTIONS")
                server.inject("nan", function="REALTIME_OPTIONS")  # crossed quote
                before = redis_client.get("raw:av:options:SPY")
                await run_for(engine, clock, 120)
                metrics = engine.metrics()
                assert metrics["throttled"] == {"note": 1, "information": 1}
                assert metrics["errors"]["options"] == {"av_error": 1, "crossed": 1}
                assert metrics["writes"]["options"] >= 3 and redis_client.get("raw:av:options:SPY") != before
        finally:
            await server.stop()

    asyncio.run(scenario())


# --- parsing -------------------------------------------------------------------------------------
def body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    ("parser", "raw", "reason"),
    [
        ("uw.max_pain", b'{"data": [', RejectReason.MALFORMED_JSON),
        ("uw.max_pain", b'{"data": [{"expiry": "2025-01-17", "max_pain": NaN}]}', RejectReason.NON_FINITE),
        ("uw.max_pain", body({"data": {"expiry": "2025-01-17"}}), RejectReason.BAD_SHAPE),
        ("uw.max_pain", body([1, 2]), RejectReason.BAD_SHAPE),
        ("uw.max_pain", body({"data": [{"expiry": "2025-01-17", "max_pain": "inf"}]}), RejectReason.NON_FINITE),
        ("uw.max_pain", body({"data": [{"expiry": "2025-01-17", "max_pain": "-5"}]}), RejectReason.OUT_OF_RANGE),
        ("uw.max_pain", body({"data": [{"expiry": "2025-01-17", "max_pain": "abc"}]}), RejectReason.BAD_VALUE),
        ("uw.max_pain", body({"data": [{"expiry": "2025-01-17", "max_pain": True}]}), RejectReason.BAD_VALUE),
        ("uw.max_pain", body({"data": [{"max_pain": "470"}]}), RejectReason.MISSING_FIELD),
        ("uw.max_pain", body({"data": [{"expiry": "17/01/2025", "max_pain": "470"}]}), RejectReason.BAD_VALUE),
        (
            "uw.darkpool",
            body({"data": [{"executed_at": "x", "price": "1", "size": 1, "ticker": "A"}]}),
            RejectReason.BAD_VALUE,
        ),
        ("uw.option_chains", body({"data": ["SPY250117C00590000", "garbage"]}), RejectReason.BAD_VALUE),
        ("av.macro", body({"Error Message": "Invalid API call."}), RejectReason.AV_ERROR),
        ("av.time_series", body({"Meta Data": {}}), RejectReason.BAD_SHAPE),
    ],
)
def test_parsers_reject_bad_input_with_a_reason(parser: str, raw: bytes, reason: RejectReason) -> None:
    with pytest.raises(Rejected) as err:
        PARSERS[parser](raw)
    assert err.value.reason is reason


@pytest.mark.parametrize("kind", ["Note", "Information"])
def test_av_throttle_messages_are_throttles_not_data(kind: str) -> None:
    with pytest.raises(Throttled) as err:
        PARSERS["av.realtime_options"](body({kind: "Thank you for using Alpha Vantage!"}))
    assert err.value.kind == kind.lower()


def test_uw_numbers_as_strings_become_typed_values() -> None:
    payload = PARSERS["uw.max_pain"](body({"data": [{"expiry": "2025-01-17", "max_pain": "470.5"}], "date": "x"}))
    assert payload.records == [{"expiry": "2025-01-17", "max_pain": 470.5}] and payload.meta == {"date": "x"}


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    now = 1_700_000_000 * NS_PER_SECOND
    assert retry_after_seconds("7", now) == 7.0
    assert retry_after_seconds("Tue, 14 Nov 2023 22:13:40 GMT", now) == pytest.approx(20.0)
    assert retry_after_seconds(None, now) is None and retry_after_seconds("soon", now) is None


def test_shipped_configs_fetch_every_endpoint_cleanly_from_the_twins(redis_client: redis.Redis) -> None:
    """The real YAMLs against the twins: every job writes typed data, nothing is rejected."""
    clock = SimulatedClock(RTH)
    env = ENV | {"UW_BASE_URL": "set-below", "AV_BASE_URL": "set-below"}

    async def scenario() -> None:
        uw, av = UwServer(TOKEN, clock=clock, universe=UNIVERSE), AvServer(APIKEY, clock=clock)
        files = [REPO / "config/sources/unusual_whales.yaml", REPO / "config/sources/alpha_vantage.yaml"]
        await uw.start()
        await av.start()
        env.update(UW_BASE_URL=uw.base_url + "/api", AV_BASE_URL=av.base_url)
        engines = [
            SourceEngine(path, redis=redis_client, clock=clock, universe=UNIVERSE, environ=env) for path in files
        ]
        try:
            for engine in engines:
                await engine.start()
            for _ in range(150):  # 118 UW jobs at 2 req/s (max 8 in flight): all served within 150 s
                clock.advance(1)
                for engine in engines:
                    await engine.step()
                for engine in engines:
                    await engine.drain()
            for engine in engines:
                metrics = engine.metrics()
                assert metrics["errors"] == {} and metrics["responses_429"] == 0 and metrics["throttled"] == {}
                assert set(metrics["writes"]) == {key[0] for key in engine.jobs()}  # every endpoint landed
                assert sum(metrics["dispatched"].values()) >= len(engine.jobs())
        finally:
            for engine in engines:
                await engine.close()
            await uw.stop()
            await av.stop()

    asyncio.run(scenario())
    assert redis_client.exists("raw:uw:congress", "raw:uw:flow_alerts", "raw:av:macro:cpi") == 3
    assert json.loads(redis_client.get("raw:uw:darkpool:AAPL"))["data"][0]["price"] > 0
    assert json.loads(redis_client.get("raw:av:options:SPY"))["data"][0]["gamma"] is not None


def test_run_loop_fetches_reloads_and_stops(tmp_path: Path, redis_client: redis.Redis) -> None:
    """The production loop: polls, dispatches on the injected clock, picks up a YAML edit, stops on request."""
    clock = SimulatedClock(RTH)
    spec = {"source": source(), "endpoints": {"spot_exposures": SPOT}}

    async def until(predicate: Callable[[], bool], what: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10.0
        while not predicate():
            assert loop.time() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.005)

    async def scenario() -> None:
        async with uw_engine(tmp_path, redis_client, clock, spec) as (engine, server, path):
            stop = asyncio.Event()
            task = asyncio.create_task(engine.run(stop, poll_s=0.01, reload_every_s=0.01))
            await until(lambda: hits(server, "spot-exposures") == [0.0], "the first fetch")
            write_yaml(path, {"source": source(), "endpoints": {"spot_exposures": SPOT, "max_pain": MAX_PAIN}}, 1)
            await until(lambda: hits(server, "max-pain") == [0.0], "the endpoint added by the reload")
            clock.advance(30)
            await until(lambda: len(hits(server, "spot-exposures")) == 2, "the next cadence")
            stop.set()
            await asyncio.wait_for(task, 10.0)
            assert engine.metrics()["reloads"] == 1 and engine.metrics()["in_flight"] == 0

    asyncio.run(scenario())
