"""Unusual Whales WebSocket client: connect, join channels, deliver messages, reconnect forever.

Protocol (UW's socket guide in ``unusual-whales-openapi.yaml``, ``/api/socket``): connect to
``wss://api.unusualwhales.com/socket?token=<TOKEN>``, send ``{"channel": C, "msg_type": "join"}``
per channel; the server acknowledges with ``[C, {"response": {}, "status": "ok"}]`` and then
pushes every message as a two-element JSON array ``[C, payload]``. The guide shows the
``option_trades`` payload without its array for brevity; this client expects the array framing
on every channel (the guide's general rule) and counts anything else as a bad frame.

Every frame is checked before it is delivered: valid JSON, a ``[channel, object]`` pair, a
channel we joined, and the core fields of its channel family typed and sane (a ``price:T``
message with a non-positive close is dropped). Bad frames are counted by reason and never end
the connection. When the connection drops (or cannot be made) the client waits an exponential
backoff with seeded jitter — ``min(cap, base·2ⁿ)·(1 ± jitter)`` — reconnects and re-joins every
channel; ``n`` resets once a join is acknowledged. The wait is an injectable coroutine, so tests
run the reconnect logic without sleeping.

Usage::

    client = UwSocketClient(url, token, ["flow-alerts", "gex:SPY", "price:SPY"], RedisStreamSink(redis))
    await client.run(stop)             # until stop.set()
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import redis
from yarl import URL

from quanticity import keys
from quanticity.backoff import ExponentialBackoff as Backoff
from quanticity.feeds.parse import Rejected, decode_json, parse_record
from quanticity.feeds.schemas import COUNT, INT, NUM, PRICE, PRICE_OPT, STR, STR_REQ, TS_REQ, Field, RecordSchema, Wire
from quanticity.feeds.sources import SourceConfig

log = logging.getLogger(__name__)

MessageHandler = Callable[[str, dict[str, Any]], Awaitable[None] | None]

#: Core fields checked per channel family (the part before ``:``); other fields pass through untouched.
WS_SCHEMAS: dict[str, RecordSchema] = {
    "price": RecordSchema("ws.price", {"close": PRICE, "time": Field(Wire.INT, required=True), "vol": COUNT}),
    "gex": RecordSchema(
        "ws.gex",
        {
            "ticker": STR_REQ,
            "timestamp": Field(Wire.INT, required=True),
            "price": PRICE,
            "gamma_per_one_percent_move_oi": NUM,
        },
    ),
    "gex_strike": RecordSchema(
        "ws.gex_strike",
        {"ticker": STR_REQ, "timestamp": Field(Wire.INT, required=True), "strike": PRICE, "price": PRICE},
    ),
    "gex_strike_expiry": RecordSchema(
        "ws.gex_strike_expiry",
        {"ticker": STR_REQ, "expiry": Field(Wire.DATE, required=True), "strike": PRICE, "price": PRICE},
    ),
    "option_trades": RecordSchema(
        "ws.option_trades",
        {"option_symbol": STR_REQ, "price": PRICE, "size": Field(Wire.INT, required=True), "executed_at": INT},
    ),
    "flow-alerts": RecordSchema(
        "ws.flow_alerts", {"ticker": STR_REQ, "option_chain": STR_REQ, "price": PRICE_OPT, "total_premium": NUM}
    ),
    "news": RecordSchema("ws.news", {"headline": STR_REQ, "timestamp": TS_REQ, "source": STR}),
}


def expand_channels(channels: Sequence[str], symbols: Sequence[str]) -> list[str]:
    """``gex:{ticker}`` → ``gex:SPY``, ``gex:QQQ``, …; plain channels unchanged; order kept, no duplicates."""
    out: list[str] = []
    for channel in channels:
        for name in [channel.replace("{ticker}", s) for s in symbols] if "{ticker}" in channel else [channel]:
            if name not in out:
                out.append(name)
    return out


class RedisStreamSink:
    """Message handler appending each message to ``uw:ws:{channel}:stream`` (capped at ``maxlen``)."""

    def __init__(self, client: redis.Redis, maxlen: int = 10_000) -> None:
        self._client = client
        self._maxlen = maxlen

    def __call__(self, channel: str, payload: dict[str, Any]) -> None:
        self._client.xadd(
            keys.uw_ws_stream(channel),
            {"payload": json.dumps(payload, separators=(",", ":"), allow_nan=False)},
            maxlen=self._maxlen,
            approximate=True,
        )


class UwSocketClient:
    """One UW socket connection that stays joined to ``channels`` (module docstring: protocol, checks)."""

    def __init__(
        self,
        url: str,
        token: str,
        channels: Sequence[str],
        on_message: MessageHandler,
        *,
        backoff: Backoff | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        session: aiohttp.ClientSession | None = None,
        heartbeat_s: float | None = 30.0,
    ) -> None:
        if not channels:
            raise ValueError("channels: at least one channel is required")
        self._url = URL(url).update_query(token=token)
        self._channels = list(channels)
        self._on_message = on_message
        self._backoff = backoff or Backoff()
        self._sleep = sleep
        self._session = session
        self._heartbeat_s = heartbeat_s
        self.joined: set[str] = set()
        self.connected = asyncio.Event()
        self.connects = 0
        self.disconnects = 0
        self.connect_failures = 0
        self.joins_sent = 0
        self.joins_acked = 0
        self.messages: Counter[str] = Counter()
        self.bad_frames: Counter[str] = Counter()
        self.handler_errors = 0
        self.after_leave = 0
        self.delays: list[float] = []
        self._left: set[str] = set()
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    @property
    def channels(self) -> list[str]:
        """Channels this client joins on every connection."""
        return list(self._channels)

    async def set_channels(self, channels: Sequence[str]) -> list[str]:
        """Stay joined to ``channels`` from now on (a run-time universe change); returns the new ones.

        New channels are joined on the open connection at once (every later connection joins
        them all). The socket protocol has no "leave": a dropped channel's messages still
        arriving on this connection are dropped and counted in ``after_leave``, not delivered,
        and the next connection does not join it.
        """
        if not channels:
            raise ValueError("channels: at least one channel is required")
        wanted = list(dict.fromkeys(channels))
        added = [c for c in wanted if c not in self._channels]
        self._left = (self._left | set(self._channels)) - set(wanted)
        self._channels = wanted
        self.joined &= set(wanted)
        ws = self._ws
        if ws is None or ws.closed:
            self.connected.clear()
            return added
        for channel in added:
            await ws.send_json({"channel": channel, "msg_type": "join"})
            self.joins_sent += 1
        if self.joined.issuperset(wanted):  # else the acknowledgements set it
            self.connected.set()
        else:
            self.connected.clear()
        return added

    def metrics(self) -> dict[str, Any]:
        """Plain dict of the client's counters."""
        return {
            "connected": self.connected.is_set(),
            "connects": self.connects,
            "disconnects": self.disconnects,
            "connect_failures": self.connect_failures,
            "joins_sent": self.joins_sent,
            "joins_acked": self.joins_acked,
            "joined": sorted(self.joined),
            "messages": dict(self.messages),
            "bad_frames": dict(self.bad_frames),
            "handler_errors": self.handler_errors,
            "after_leave": self.after_leave,
            "last_backoff_s": self.delays[-1] if self.delays else 0.0,
        }

    async def run(self, stop: asyncio.Event) -> None:
        """Stay connected until ``stop`` is set."""
        session = self._session or aiohttp.ClientSession()
        try:
            while not stop.is_set():
                await self._connect_once(session, stop)
                if stop.is_set():
                    break
                delay = self._backoff.next_delay()
                self.delays.append(delay)
                log.info("UW socket: reconnecting in %.2f s (attempt %d)", delay, self._backoff.attempt)
                await self._sleep(delay)
        finally:
            if self._session is None:
                await session.close()

    async def _connect_once(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        try:
            ws = await session.ws_connect(self._url, heartbeat=self._heartbeat_s)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.connect_failures += 1
            log.warning("UW socket: connect failed: %s", type(exc).__name__)
            return
        self.connects += 1
        self.joined.clear()
        self._left.clear()  # this connection joins only the channels wanted now
        self._ws = ws
        try:
            for channel in list(self._channels):
                await ws.send_json({"channel": channel, "msg_type": "join"})
                self.joins_sent += 1
            receiving = asyncio.create_task(self._receive(ws))
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
            for task in (receiving, stopping):
                task.cancel()
            await asyncio.gather(receiving, stopping, return_exceptions=True)
        except (aiohttp.ClientError, ConnectionResetError) as exc:
            log.warning("UW socket: connection error: %s", type(exc).__name__)
        finally:
            self._ws = None
            self.connected.clear()
            self.joined.clear()
            self.disconnects += 1
            await ws.close()

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                await self._frame(message.data)
            elif message.type is aiohttp.WSMsgType.BINARY:
                self.bad_frames["binary"] += 1
            elif message.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING):
                break

    async def _frame(self, text: str) -> None:
        try:
            frame = decode_json(text.encode("utf-8"))
        except Rejected as reject:  # not JSON, or NaN/Infinity tokens
            self.bad_frames[reject.reason.value] += 1
            return
        if not (isinstance(frame, list) and len(frame) == 2 and isinstance(frame[0], str)):
            self.bad_frames["bad_shape"] += 1
            return
        channel, payload = frame
        if not isinstance(payload, dict):
            self.bad_frames["bad_shape"] += 1
            return
        if channel not in self._channels:
            if channel in self._left:
                self.after_leave += 1
            else:
                self.bad_frames["unknown_channel"] += 1
            return
        if payload.get("status") == "ok" and "response" in payload:
            if channel not in self.joined:
                self.joined.add(channel)
                self.joins_acked += 1
                self._backoff.reset()
                if self.joined.issuperset(self._channels):
                    self.connected.set()
            return
        schema = WS_SCHEMAS.get(channel.split(":", 1)[0])
        if schema is not None:
            try:
                parse_record(channel, payload, schema)
            except Rejected as reject:
                self.bad_frames[reject.reason.value] += 1
                log.debug("UW socket: dropped %s", reject)
                return
        self.messages[channel] += 1
        try:
            result = self._on_message(channel, payload)
            if inspect.isawaitable(result):
                await result
        except Exception:  # a failing consumer must not take the socket down
            self.handler_errors += 1
            log.exception("UW socket: message handler failed on %s", channel)


def socket_channels(config: SourceConfig, universe: Sequence[str]) -> list[str]:
    """The channels a UW source YAML's socket joins for ``universe`` (its own symbol list if it has one)."""
    ws = config.source.websocket
    if ws is None:
        return []
    symbols = list(universe) if ws.symbols == "universe" else list(ws.symbols)
    return expand_channels(ws.channels, symbols)


def socket_client_for(
    config: SourceConfig,
    universe: Sequence[str],
    client: redis.Redis,
    *,
    backoff: Backoff | None = None,
    session: aiohttp.ClientSession | None = None,
) -> UwSocketClient | None:
    """The socket client a UW source YAML describes, writing to Redis streams; None without ``websocket:``."""
    ws = config.source.websocket
    if ws is None or config.ws_url is None:
        return None
    return UwSocketClient(
        config.ws_url,
        config.token,
        socket_channels(config, universe),
        RedisStreamSink(client, ws.stream_maxlen),
        backoff=backoff,
        session=session,
    )
