"""The UW and Alpha Vantage loopback twins: documented shapes, auth, rate limits, faults, standalone start.

The UW shapes are checked against the official OpenAPI file (``docs/reference/
unusual-whales-openapi.yaml``, SPEC §5): the fetcher's schemas and the twin's records must carry
exactly the documented field names with the documented JSON types.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from quanticity.clock import NS_PER_SECOND, SimulatedClock
from quanticity.feeds.parse import PARSERS, Rejected
from quanticity.feeds.schemas import UW_SCHEMAS, Wire
from quanticity.sim.av_server import AvServer
from quanticity.sim.rest_twin import FaultQueue, GcraLimiter, RequestLog
from quanticity.sim.uw_data import REST_ROUTES, UwData
from quanticity.sim.uw_server import UwServer

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
OPENAPI = REPO / "docs" / "reference" / "unusual-whales-openapi.yaml"  # vendored from ../shared/reference
TOKEN = "uw-loop-token"
APIKEY = "av-loop-key"
START = 1_741_788_000 * NS_PER_SECOND  # a Wednesday in RTH (10:00 ET)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON_TYPE = {
    Wire.NUMSTR: "string",
    Wire.STR: "string",
    Wire.DATE: "string",
    Wire.TIMESTAMP: "string",
    Wire.INT: "integer",
    Wire.NUMBER: "number",
    Wire.BOOL: "boolean",
    Wire.LIST: "array",
    Wire.OBJECT: "object",
}
#: Fields whose OpenAPI ``type`` contradicts the OpenAPI's own example (the example is the wire truth).
OPENAPI_TYPE_ERRATA = {("Senate Stock", "member_type"), ("Senate Stock", "is_active")}
SAMPLE_PATHS = {route: route.replace("{ticker}", "SPY") for route in REST_ROUTES}


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    return yaml.load(OPENAPI.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = spec["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def test_fetcher_schemas_match_the_openapi_field_names_and_types(openapi: dict[str, Any]) -> None:
    components = openapi["components"]["schemas"]
    for schema in UW_SCHEMAS.values():
        assert schema.openapi in components, schema.name
        props = components[schema.openapi]["properties"]
        assert set(schema.fields) == set(props), (schema.name, set(schema.fields) ^ set(props))
        for name, field in schema.fields.items():
            declared = _resolve(openapi, props[name]).get("type")
            if declared is None or (schema.openapi, name) in OPENAPI_TYPE_ERRATA:
                continue
            assert JSON_TYPE[field.wire] == declared, (schema.name, name, field.wire, declared)


def test_every_twin_route_is_a_documented_path_with_its_schema(openapi: dict[str, Any]) -> None:
    for route, (parser, _) in REST_ROUTES.items():
        assert route in openapi["paths"], route
        if parser in UW_SCHEMAS:
            ok = openapi["paths"][route]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
            assert ok["$ref"].rsplit("/", 1)[-1] == UW_SCHEMAS[parser].openapi, route


def test_openapi_examples_parse_with_the_fetcher(openapi: dict[str, Any]) -> None:
    """The official examples are valid data for our parsers (date-times normalised as YAML loads them)."""
    for name, schema in UW_SCHEMAS.items():
        example = openapi["components"]["schemas"][schema.openapi].get("example")
        if example is None:
            continue
        raw = json.dumps(example, default=lambda v: v.isoformat(sep=" ") if hasattr(v, "hour") else v.isoformat())
        payload = PARSERS[name](raw.encode())
        assert payload.records, name


async def _get(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
    async with session.get(url, **kwargs) as response:
        return response.status, dict(response.headers), await response.read()


def test_uw_twin_serves_every_route_in_the_documented_shapes() -> None:
    async def scenario() -> None:
        clock = SimulatedClock(START)
        server = UwServer(TOKEN, clock=clock, requests_per_minute=10_000, burst=1_000)
        await server.start()
        try:
            async with aiohttp.ClientSession() as session:
                for route, (parser, _) in REST_ROUTES.items():
                    status, _, body = await _get(session, server.base_url + SAMPLE_PATHS[route], headers=AUTH)
                    assert status == 200, route
                    payload = PARSERS[parser](body)  # raises Rejected if the twin broke its own contract
                    assert payload.records, route
                    raw = json.loads(body)["data"][0]
                    if parser in UW_SCHEMAS:
                        assert set(raw) == set(UW_SCHEMAS[parser].fields), route
                        for name, field in UW_SCHEMAS[parser].fields.items():
                            if raw[name] is not None:
                                expected = JSON_TYPE[field.wire]
                                assert _json_type(raw[name]) == expected, (route, name, raw[name])
        finally:
            await server.stop()

    asyncio.run(scenario())


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return {str: "string", float: "number", list: "array", dict: "object"}[type(value)]


def test_uw_twin_is_deterministic_from_its_seed() -> None:
    a, b, c = UwData(seed=7), UwData(seed=7), UwData(seed=8)
    assert a.spot_exposures("SPY", START) == b.spot_exposures("SPY", START)
    assert a.darkpool("AAPL", START) == b.darkpool("AAPL", START)
    assert a.spot_exposures("SPY", START) != c.spot_exposures("SPY", START)
    assert a.spot("SPY", START) == b.spot("SPY", START) > 0


def test_uw_twin_checks_the_token_and_enforces_120_per_minute_burst_20() -> None:
    async def scenario() -> None:
        clock = SimulatedClock(START)
        server = UwServer(TOKEN, clock=clock)
        await server.start()
        url = server.base_url + "/api/stock/SPY/max-pain"
        try:
            async with aiohttp.ClientSession() as session:
                assert (await _get(session, url))[0] == 401
                assert (await _get(session, url, headers={"Authorization": "Bearer nope"}))[0] == 401
                statuses = [(await _get(session, url, headers=AUTH))[0] for _ in range(25)]
                assert statuses == [200] * 20 + [429] * 5
                status, headers, _ = await _get(session, url, headers=AUTH)
                assert status == 429 and headers["Retry-After"] == "1"
                clock.advance(0.5)  # one token every 0.5 s
                assert [(await _get(session, url, headers=AUTH))[0] for _ in range(2)] == [200, 429]
        finally:
            await server.stop()
        assert server.requests.max_in_window(60.0, statuses={200}) == 21

    asyncio.run(scenario())


def test_uw_twin_faults_on_command_over_http() -> None:
    async def scenario() -> None:
        server = UwServer(TOKEN, clock=SimulatedClock(START), requests_per_minute=10_000, burst=1_000)
        await server.start()
        base = server.base_url
        try:
            async with aiohttp.ClientSession() as session:
                async with session.post(
                    base + "/_sim/faults", json={"kind": "500", "count": 2, "path": "max-pain"}
                ) as r:
                    assert r.status == 200 and (await r.json()) == {"pending": 2}
                async with session.post(base + "/_sim/faults", json={"kind": "note"}) as r:
                    assert r.status == 400  # an Alpha Vantage-only fault
                darkpool = (await _get(session, base + "/api/darkpool/SPY", headers=AUTH))[0]
                pain = [(await _get(session, base + "/api/stock/SPY/max-pain", headers=AUTH))[0] for _ in range(3)]
                assert darkpool == 200 and pain == [500, 500, 200]
                assert (await _get(session, base + "/api/stock/spy!/max-pain", headers=AUTH))[0] == 422
                server.inject("malformed", path="iv-rank")
                _, _, body = await _get(session, base + "/api/stock/SPY/iv-rank", headers=AUTH)
                with pytest.raises(Rejected):
                    PARSERS["uw.iv_rank"](body)
                server.inject("nan", path="iv-rank")
                _, _, body = await _get(session, base + "/api/stock/SPY/iv-rank", headers=AUTH)
                with pytest.raises(Rejected, match="NaN"):
                    PARSERS["uw.iv_rank"](body)
                async with session.get(base + "/_sim/requests") as r:
                    summary = await r.json()
                assert summary["total"] == 7 and summary["status_429"] == 0
        finally:
            await server.stop()

    asyncio.run(scenario())


def test_av_twin_shapes_auth_note_and_errors() -> None:
    functions: list[tuple[dict[str, str], str]] = [
        ({"function": "REALTIME_OPTIONS", "symbol": "SPY", "require_greeks": "true"}, "av.realtime_options"),
        ({"function": "TIME_SERIES_INTRADAY", "symbol": "AAPL", "interval": "5min"}, "av.time_series"),
        ({"function": "RSI", "symbol": "AAPL", "interval": "5min", "time_period": "14"}, "av.indicator"),
        ({"function": "MACD", "symbol": "AAPL", "interval": "daily"}, "av.indicator"),
        ({"function": "BBANDS", "symbol": "AAPL", "interval": "daily"}, "av.indicator"),
        ({"function": "NEWS_SENTIMENT", "tickers": "AAPL"}, "av.news_sentiment"),
        ({"function": "TREASURY_YIELD", "interval": "monthly", "maturity": "10year"}, "av.macro"),
        ({"function": "CPI", "interval": "monthly"}, "av.macro"),
    ]

    async def scenario() -> None:
        clock = SimulatedClock(START)
        server = AvServer(APIKEY, clock=clock, requests_per_minute=600, burst=10)
        await server.start()
        url = server.base_url + "/query"
        try:
            async with aiohttp.ClientSession() as session:
                for params, parser in functions:
                    status, _, body = await _get(session, url, params=params | {"apikey": APIKEY})
                    assert status == 200 and PARSERS[parser](body).records, params["function"]
                clock.advance(60)
                no_greeks = {"function": "REALTIME_OPTIONS", "symbol": "SPY", "apikey": APIKEY}
                with pytest.raises(Rejected, match="implied_volatility"):
                    PARSERS["av.realtime_options"]((await _get(session, url, params=no_greeks))[2])
                etf = {"function": "NEWS_SENTIMENT", "tickers": "SPY", "apikey": APIKEY}
                assert json.loads((await _get(session, url, params=etf))[2])["feed"] == []
                bad_key = json.loads((await _get(session, url, params={"function": "CPI", "apikey": "x"}))[2])
                unknown = json.loads((await _get(session, url, params={"function": "NOPE", "apikey": APIKEY}))[2])
                assert "Error Message" in bad_key and "Error Message" in unknown
                answers = [json.loads((await _get(session, url, params=no_greeks))[2]) for _ in range(12)]
                assert ["Note" in a for a in answers] == [False] * 7 + [True] * 5  # burst 10, 3 already used
        finally:
            await server.stop()

    asyncio.run(scenario())


def test_gcra_limiter_and_request_log_are_exact() -> None:
    clock = SimulatedClock(0)
    limiter = GcraLimiter(120, 20, clock)
    verdicts = [limiter.check() for _ in range(21)]
    assert verdicts[:20] == [(True, 0)] * 20 and verdicts[20] == (False, 1)
    clock.advance(0.5)
    assert limiter.check() == (True, 0) and limiter.check()[0] is False
    log = RequestLog()
    for second in (0, 10, 59.999, 60, 61):
        log.add(int(second * NS_PER_SECOND), "/x", 200)
    assert log.max_in_window(60.0) == 4
    queue = FaultQueue()
    queue.add("500", count=2, path="a")
    assert queue.take("/b") is None and queue.take("/a") is not None and queue.pending() == 1
    with pytest.raises(ValueError, match="kind"):
        queue.add("teapot")


@pytest.fixture
def standalone() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


def _bound_port(proc: subprocess.Popen[str], deadline: float) -> int:
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "twin on http://" in line:
            return int(line.split("http://127.0.0.1:")[1].split("/")[0])
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"twin did not start: rc={proc.poll()}")


def test_each_twin_starts_alone_from_the_command_line(standalone: list[subprocess.Popen[str]]) -> None:
    commands = [
        [sys.executable, "-m", "quanticity.sim.uw_server", "--port", "0", "--token", TOKEN, "--push-interval", "0"],
        [sys.executable, "-m", "quanticity.sim.av_server", "--port", "0", "--apikey", APIKEY],
    ]
    for command in commands:  # both import in parallel (2 cores)
        standalone.append(subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True))
    deadline = time.monotonic() + 45
    uw_port, av_port = (_bound_port(proc, deadline) for proc in standalone)

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            status, _, body = await _get(session, f"http://127.0.0.1:{uw_port}/api/stock/SPY/iv-rank", headers=AUTH)
            assert status == 200 and PARSERS["uw.iv_rank"](body).records
            params = {"function": "CPI", "apikey": APIKEY}
            status, _, body = await _get(session, f"http://127.0.0.1:{av_port}/query", params=params)
            assert status == 200 and PARSERS["av.macro"](body).records

    asyncio.run(scenario())
