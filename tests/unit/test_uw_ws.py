"""The UW WebSocket client against the loopback twin's socket: join, messages, drops, bad frames."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import redis

from quanticity import keys
from quanticity.clock import SimulatedClock
from quanticity.feeds.sources import load_source
from quanticity.feeds.uw_ws import Backoff, RedisStreamSink, UwSocketClient, expand_channels, socket_client_for
from quanticity.sim.uw_server import UwServer
from tests.async_helpers import until as wait_until

pytestmark = pytest.mark.unit

TOKEN = "uw-ws-token"
START = 1_741_788_000 * 1_000_000_000  # a Wednesday, 14:00 UTC
CHANNELS = expand_channels(
    [
        "flow-alerts",
        "news",
        "option_trades:{ticker}",
        "gex:{ticker}",
        "gex_strike:{ticker}",
        "gex_strike_expiry:{ticker}",
        "price:{ticker}",
    ],
    ["SPY"],
)
TIMEOUT_S = 10.0


async def until(predicate: Callable[[], bool], what: str) -> None:
    """Wait (on the loop, not a sleep for luck) until ``predicate`` holds; fail after a generous timeout."""
    await wait_until(predicate, TIMEOUT_S, what)


class RecordingSleep:
    """Injected backoff wait: records each delay and returns at once (no wall-clock sleeping)."""

    def __init__(self, stop_after: int | None = None, stop: asyncio.Event | None = None) -> None:
        self.delays: list[float] = []
        self._stop_after = stop_after
        self._stop = stop

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if self._stop is not None and self._stop_after is not None and len(self.delays) >= self._stop_after:
            self._stop.set()
        await asyncio.sleep(0)


@asynccontextmanager
async def running_client(
    server: UwServer, handler: Callable[[str, dict], Awaitable[None] | None], sleep: RecordingSleep
) -> AsyncIterator[tuple[UwSocketClient, asyncio.Event]]:
    stop = asyncio.Event()
    client = UwSocketClient(server.ws_url, TOKEN, CHANNELS, handler, backoff=Backoff(seed=3), sleep=sleep)
    task = asyncio.create_task(client.run(stop))
    try:
        yield client, stop
    finally:
        stop.set()
        await asyncio.wait_for(task, TIMEOUT_S)


def test_join_messages_drop_reconnect_and_rejoin(redis_client: redis.Redis) -> None:
    async def scenario() -> None:
        server = UwServer(TOKEN, clock=SimulatedClock(START))
        await server.start()
        sleep = RecordingSleep()
        try:
            async with running_client(server, RedisStreamSink(redis_client, maxlen=100), sleep) as (client, _):
                await asyncio.wait_for(client.connected.wait(), TIMEOUT_S)
                assert sorted(client.joined) == sorted(CHANNELS) and server.sockets() == [CHANNELS]
                assert await server.push() == len(CHANNELS)
                await until(lambda: sum(client.messages.values()) == len(CHANNELS), "first messages")
                assert client.bad_frames == {}

                assert await server.drop_websockets() == 1
                await until(lambda: client.connects == 2 and client.connected.is_set(), "reconnect + re-join")
                assert [c for _, c in server.joins] == CHANNELS + CHANNELS  # every channel joined again
                assert len(sleep.delays) == 1 and 0.4 <= sleep.delays[0] <= 0.6  # base 0.5 s ± 20 %
                await server.push()
                await until(lambda: sum(client.messages.values()) == 2 * len(CHANNELS), "messages after rejoin")
        finally:
            await server.stop()
        assert client.disconnects == 2 and client.metrics()["joins_acked"] == 2 * len(CHANNELS)

    asyncio.run(scenario())
    for channel in CHANNELS:
        entries = redis_client.xrange(keys.uw_ws_stream(channel))
        assert len(entries) == 2, channel
        assert isinstance(json.loads(entries[0][1]["payload"]), dict)
    price = json.loads(redis_client.xrange(keys.uw_ws_stream("price:SPY"))[0][1]["payload"])
    assert float(price["close"]) > 0


def test_bad_frames_are_counted_and_the_connection_survives() -> None:
    received: list[tuple[str, dict]] = []

    async def handler(channel: str, payload: dict) -> None:
        received.append((channel, payload))
        if payload.get("boom"):
            raise RuntimeError("consumer bug")

    async def scenario() -> None:
        server = UwServer(TOKEN, clock=SimulatedClock(START))
        await server.start()
        try:
            async with running_client(server, handler, RecordingSleep()) as (client, _):
                await asyncio.wait_for(client.connected.wait(), TIMEOUT_S)
                for raw in (
                    "not json",
                    '{"channel": "price:SPY"}',
                    '["price:SPY", [1, 2]]',
                    '["unknown:XYZ", {"a": 1}]',
                    '["price:SPY", {"close": "-1.0", "time": 1726670327692, "vol": 5}]',
                    '["price:SPY", {"close": "NaN", "time": 1726670327692, "vol": 5}]',
                    '["price:SPY", {"close": "562.82", "time": Infinity, "vol": 5}]',
                    '["gex:SPY", {"ticker": "SPY", "price": "562.1"}]',
                    '["news", {"headline": "x", "timestamp": "2025-06-11T21:40:56Z", "boom": true}]',
                ):
                    await server.send_raw(raw)
                await server.push("price:SPY")
                await until(lambda: client.messages["price:SPY"] == 1, "a good message after the bad ones")
                assert client.bad_frames == {
                    "malformed_json": 1,
                    "bad_shape": 2,
                    "unknown_channel": 1,
                    "out_of_range": 1,
                    "non_finite": 2,
                    "missing_field": 1,
                }
                assert client.handler_errors == 1 and client.connects == 1
        finally:
            await server.stop()
        assert [c for c, _ in received] == ["news", "price:SPY"]

    asyncio.run(scenario())


def test_unreachable_server_backs_off_exponentially_with_seeded_jitter() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def scenario() -> list[float]:
        stop = asyncio.Event()
        sleep = RecordingSleep(stop_after=5, stop=stop)
        client = UwSocketClient(
            f"ws://127.0.0.1:{port}/api/socket",
            TOKEN,
            ["news"],
            lambda c, p: None,
            backoff=Backoff(base_s=0.5, cap_s=4.0, jitter=0.2, seed=11),
            sleep=sleep,
        )
        await asyncio.wait_for(client.run(stop), TIMEOUT_S)
        assert client.connect_failures == 5 and client.connects == 0
        return sleep.delays

    delays = asyncio.run(scenario())
    for attempt, delay in enumerate(delays):
        nominal = min(4.0, 0.5 * 2**attempt)
        assert nominal * 0.8 <= delay <= nominal * 1.2
    again = Backoff(base_s=0.5, cap_s=4.0, jitter=0.2, seed=11)
    assert [again.next_delay() for _ in range(5)] == delays  # seeded: the same schedule every run


def test_wrong_token_is_refused_and_retried() -> None:
    async def scenario() -> None:
        server = UwServer(TOKEN, clock=SimulatedClock(START))
        await server.start()
        try:
            stop = asyncio.Event()
            client = UwSocketClient(
                server.ws_url, "wrong", ["news"], lambda c, p: None, sleep=RecordingSleep(stop_after=2, stop=stop)
            )
            await asyncio.wait_for(client.run(stop), TIMEOUT_S)
            assert client.connect_failures == 2 and server.ws_connections == 0
        finally:
            await server.stop()

    asyncio.run(scenario())


def test_universe_change_joins_on_the_open_connection_and_drops_left_channels() -> None:
    received: list[str] = []
    qqq = expand_channels(["gex:{ticker}", "price:{ticker}"], ["QQQ"])

    async def scenario() -> None:
        server = UwServer(TOKEN, clock=SimulatedClock(START))
        await server.start()
        sleep = RecordingSleep()
        try:
            async with running_client(server, lambda c, p: received.append(c), sleep) as (client, _):
                await asyncio.wait_for(client.connected.wait(), TIMEOUT_S)
                assert await client.set_channels(CHANNELS + qqq) == qqq
                await until(lambda: client.joined.issuperset(qqq) and client.connected.is_set(), "QQQ joined")
                assert client.connects == 1 and server.sockets() == [CHANNELS + qqq]  # same connection
                await server.push()
                await until(lambda: len(received) == len(CHANNELS) + len(qqq), "messages of every channel")
                assert await client.set_channels(CHANNELS) == []  # QQQ left: no "leave" in the protocol
                await server.push()
                await until(lambda: len(received) == 2 * len(CHANNELS) + len(qqq), "SPY messages")
                await until(lambda: client.after_leave == len(qqq), "QQQ messages dropped")
                assert client.bad_frames == {} and received.count("gex:QQQ") == 1
                await server.drop_websockets()  # the next connection joins only what is wanted now
                await until(lambda: client.connects == 2 and client.connected.is_set(), "reconnect")
                assert server.sockets() == [CHANNELS]
        finally:
            await server.stop()

    asyncio.run(scenario())


def test_channel_templates_expand_per_symbol() -> None:
    assert expand_channels(["news", "gex:{ticker}", "news"], ["SPY", "QQQ"]) == ["news", "gex:SPY", "gex:QQQ"]
    with pytest.raises(ValueError, match="channels"):
        UwSocketClient("ws://127.0.0.1:1/api/socket", TOKEN, [], lambda c, p: None)


def test_socket_client_built_from_the_shipped_config_streams_into_redis(redis_client: redis.Redis) -> None:
    repo = Path(__file__).resolve().parents[2]

    async def scenario() -> None:
        server = UwServer(TOKEN, clock=SimulatedClock(START))
        await server.start()
        try:
            environ = {"UW_API_TOKEN": TOKEN, "UW_WS_URL": server.ws_url}
            config = load_source(repo / "config/sources/unusual_whales.yaml", environ)
            client = socket_client_for(config, ["SPY"], redis_client, backoff=Backoff(seed=1))
            assert client is not None and "gex_strike_expiry:SPX" in client.channels and "news" in client.channels
            stop = asyncio.Event()
            task = asyncio.create_task(client.run(stop))
            await asyncio.wait_for(client.connected.wait(), TIMEOUT_S)
            await server.push("gex:SPX")
            await until(lambda: client.messages["gex:SPX"] == 1, "a gex message")
            stop.set()
            await asyncio.wait_for(task, TIMEOUT_S)
        finally:
            await server.stop()

    asyncio.run(scenario())
    assert redis_client.xlen(keys.uw_ws_stream("gex:SPX")) == 1
