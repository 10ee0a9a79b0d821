"""Loopback twin of the Unusual Whales API: REST + WebSocket on 127.0.0.1 (SPEC §11).

Speaks the real wire protocol so the real client (``aiohttp``) runs end to end:

- REST under ``/api/...`` (the routes of :data:`quanticity.sim.uw_data.REST_ROUTES`), Bearer
  auth (401 otherwise), ``{"data": [...]}`` bodies with numbers as strings;
- the documented rate limit, 120 requests/minute with a burst of 20 (GCRA on the twin's clock),
  answered with 429 and ``Retry-After`` (whole seconds) when exceeded;
- the socket at ``/api/socket?token=`` (and ``/socket``, the production path): join with
  ``{"channel": C, "msg_type": "join"}``, acknowledged with ``[C, {"response": {}, "status": "ok"}]``,
  then ``[C, payload]`` messages — pushed by :meth:`UwServer.push` (tests) or every
  ``ws_push_interval_s`` (standalone).

Faults on command, from Python (:meth:`UwServer.inject`, :meth:`UwServer.drop_websockets`) or
over HTTP (``POST /_sim/faults`` ``{"kind": "429"|"500"|"malformed"|"slow"|"nan", "count": N,
"path": "darkpool"}``, ``POST /_sim/ws/drop``, ``POST /_sim/ws/push``, ``GET /_sim/requests``).
The ``/_sim`` routes are for the operator of the twin and are neither authenticated nor limited.

Standalone: ``python -m quanticity.sim.uw_server --port 8701 --token dev-token``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from quanticity.clock import Clock, LiveClock
from quanticity.config.models import UnderlyingSpec, UniverseSection
from quanticity.sim.rest_twin import AV_ONLY, FaultKind, FaultQueue, GcraLimiter, RequestLog
from quanticity.sim.twin_common import LoopbackServer
from quanticity.sim.uw_data import REST_ROUTES, WS_FAMILIES, MarketView, UwData

log = logging.getLogger(__name__)

_TICKER = re.compile(r"^[A-Z][A-Z0-9.]{0,9}$")
_UW_FAULTS = frozenset(FaultKind) - AV_ONLY


@dataclass(eq=False)
class _Socket:
    """One connected WebSocket client and the channels it joined."""

    id: int
    ws: web.WebSocketResponse
    joined: list[str] = field(default_factory=list)


def valid_channel(channel: str) -> bool:
    """A channel the UW socket documents (``gex:SPY``, ``flow-alerts``, ``option_trades``, …)."""
    family, sep, ticker = channel.partition(":")
    if family not in WS_FAMILIES:
        return False
    if sep:
        return family not in ("flow-alerts", "news") and bool(_TICKER.match(ticker))
    return family in ("option_trades", "flow-alerts", "news")


class UwServer(LoopbackServer):
    """The UW twin (module docstring). ``clock`` drives rate limiting and data; tests pass a simulated one."""

    def __init__(
        self,
        token: str,
        *,
        seed: int = 7,
        clock: Clock | None = None,
        universe: list[str] | None = None,
        underlyings: Mapping[str, UnderlyingSpec] | None = None,
        requests_per_minute: int = 120,
        burst: int = 20,
        ws_push_interval_s: float | None = None,
        market: MarketView | None = None,
    ) -> None:
        super().__init__()
        if not token:
            raise ValueError("token: the twin needs the token clients must present")
        self.token = token
        self.clock = clock or LiveClock()
        self.data = UwData(seed, underlyings, market=market)  # a market: current values from it (uw_data doc)
        self.universe = universe or UniverseSection().symbols  # market-wide endpoints cover these
        self.limiter = GcraLimiter(requests_per_minute, burst, self.clock)
        self.faults = FaultQueue(allowed=_UW_FAULTS)
        self.requests = RequestLog()
        self.joins: list[tuple[int, str]] = []
        self.ws_connections = 0
        self._sockets: set[_Socket] = set()
        self._ids = itertools.count(1)
        self._messages = itertools.count()
        self._push_interval_s = ws_push_interval_s
        self._pusher: asyncio.Task[None] | None = None

    # --- test/operator controls ------------------------------------------------------------
    def inject(self, kind: FaultKind | str, count: int = 1, path: str | None = None, **options: Any) -> None:
        """Fail the next ``count`` REST requests (whose path contains ``path``) with ``kind``."""
        self.faults.add(kind, count, path, **options)

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:<port>/api/socket`` of the running twin."""
        return self.base_url.replace("http://", "ws://") + "/api/socket"

    def sockets(self) -> list[list[str]]:
        """The channels joined by each connected socket."""
        return [list(s.joined) for s in sorted(self._sockets, key=lambda s: s.id)]

    async def push(self, channel: str | None = None) -> int:
        """Send one synthetic message on ``channel`` (every joined channel when None); returns messages sent."""
        sent = 0
        now = self.clock.now_ns()
        for sock in list(self._sockets):
            for joined in list(sock.joined):
                if channel is not None and joined != channel:
                    continue
                payload = self.data.ws_payload(joined, now, next(self._messages))
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await sock.ws.send_str(json.dumps([joined, payload]))
                    sent += 1
        return sent

    async def send_raw(self, text: str) -> int:
        """Send ``text`` as-is to every socket (bad-frame tests); returns sockets reached."""
        sent = 0
        for sock in list(self._sockets):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await sock.ws.send_str(text)
                sent += 1
        return sent

    async def drop_websockets(self) -> int:
        """Close every socket from the server side (the "WS drop" fault); returns how many."""
        sockets = list(self._sockets)
        for sock in sockets:
            await sock.ws.close(code=WSCloseCode.GOING_AWAY, message=b"dropped by the twin")
        return len(sockets)

    # --- app -------------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application()
        for route, (parser, _) in REST_ROUTES.items():
            app.router.add_get(route, self._rest_handler(route, parser))
        app.router.add_get("/api/socket", self._socket)
        app.router.add_get("/socket", self._socket)
        app.router.add_post("/_sim/faults", self._control_faults)
        app.router.add_post("/_sim/ws/drop", self._control_drop)
        app.router.add_post("/_sim/ws/push", self._control_push)
        app.router.add_get("/_sim/requests", self._control_requests)
        app.on_startup.append(self._start_pusher)
        app.on_cleanup.append(self._stop_pusher)
        app.on_shutdown.append(self._close_sockets)
        return app

    def _rest_handler(self, route: str, parser: str) -> Any:
        _, build = REST_ROUTES[route]

        async def handle(request: web.Request) -> web.StreamResponse:
            response = await self._serve(request, parser, build)
            self.requests.add(self.clock.now_ns(), request.path, response.status)
            return response

        return handle

    async def _serve(self, request: web.Request, parser: str, build: Any) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"code": "unauthorized", "message": "Invalid or missing API token"}, status=401)
        allowed, retry_after = self.limiter.check()
        if not allowed:
            return web.json_response(
                {"code": "too_many_requests", "message": "Rate limit exceeded"},
                status=429,
                headers={"Retry-After": str(retry_after)},
            )
        fault = self.faults.take(request.path)
        if fault is not None and fault.kind is FaultKind.SLOW:
            await asyncio.sleep(fault.delay_s)
        elif fault is not None and fault.kind is FaultKind.HTTP_429:
            return web.json_response(
                {"code": "too_many_requests"}, status=429, headers={"Retry-After": str(fault.retry_after_s)}
            )
        elif fault is not None and fault.kind is FaultKind.HTTP_500:
            return web.Response(status=500, text="Internal Server Error")
        elif fault is not None and fault.kind is FaultKind.MALFORMED:
            return web.Response(status=200, text='{"data": [{"price": "4', content_type="application/json")
        ticker = request.match_info.get("ticker")
        if ticker is not None and not _TICKER.match(ticker):
            return web.json_response(
                {"code": "unprocessable_entity", "message": f"unknown ticker {ticker}"}, status=422
            )
        data = build(self.data, ticker, self.clock.now_ns(), request.query, self.universe)
        if fault is not None and fault.kind is FaultKind.NAN:
            data = _with_nan(data)
        body: dict[str, Any] = {"data": data}
        if parser == "uw.max_pain":
            body["date"] = self.data.today(self.clock.now_ns()).isoformat()
        return web.json_response(body)

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("token") != self.token:
            return web.json_response({"code": "unauthorized", "message": "Invalid or missing API token"}, status=401)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sock = _Socket(next(self._ids), ws)
        self._sockets.add(sock)
        self.ws_connections += 1
        try:
            async for message in ws:
                if message.type is not WSMsgType.TEXT:
                    continue
                try:
                    request_msg = json.loads(message.data)
                except ValueError:
                    await ws.send_str(json.dumps(["error", {"status": "error", "response": "invalid json"}]))
                    continue
                channel = request_msg.get("channel") if isinstance(request_msg, dict) else None
                if not isinstance(request_msg, dict) or request_msg.get("msg_type") != "join" or not channel:
                    await ws.send_str(json.dumps(["error", {"status": "error", "response": "expected a join"}]))
                    continue
                if not valid_channel(channel):
                    await ws.send_str(json.dumps([channel, {"status": "error", "response": "unknown channel"}]))
                    continue
                if channel not in sock.joined:
                    sock.joined.append(channel)
                self.joins.append((sock.id, channel))
                await ws.send_str(json.dumps([channel, {"response": {}, "status": "ok"}]))
        finally:
            self._sockets.discard(sock)
        return ws

    async def _close_sockets(self, app: web.Application) -> None:
        await self.drop_websockets()

    async def _start_pusher(self, app: web.Application) -> None:
        if self._push_interval_s:
            self._pusher = asyncio.create_task(self._push_forever(self._push_interval_s))

    async def _stop_pusher(self, app: web.Application) -> None:
        if self._pusher is not None:
            self._pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pusher

    async def _push_forever(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self.push()

    # --- control routes --------------------------------------------------------------------
    async def _control_faults(self, request: web.Request) -> web.Response:
        try:
            spec = await request.json()
            self.inject(
                spec["kind"],
                int(spec.get("count", 1)),
                spec.get("path"),
                retry_after_s=int(spec.get("retry_after_s", 5)),
                delay_s=float(spec.get("delay_s", 2.0)),
            )
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"pending": self.faults.pending()})

    async def _control_drop(self, request: web.Request) -> web.Response:
        return web.json_response({"dropped": await self.drop_websockets()})

    async def _control_push(self, request: web.Request) -> web.Response:
        channel = request.query.get("channel")
        return web.json_response({"sent": await self.push(channel)})

    async def _control_requests(self, request: web.Request) -> web.Response:
        entries = self.requests.entries()
        return web.json_response(
            {
                "total": len(entries),
                "status_429": sum(1 for e in entries if e.status == 429),
                "max_per_minute": self.requests.max_in_window(60.0),
                "ws_connections": self.ws_connections,
                "joins": len(self.joins),
            }
        )


def _with_nan(data: list[Any]) -> list[Any]:
    """``data`` with the first numeric-string field of the first record replaced by ``"NaN"``."""
    if not data or not isinstance(data[0], dict):
        return ["NaN", *data[1:]] if data else data
    first = dict(data[0])
    for name in ("price", "close", "strike", "max_pain", *first):
        value = first.get(name)
        if isinstance(value, str) and re.fullmatch(r"-?\d+(\.\d+)?", value):
            first[name] = "NaN"
            break
    return [first, *data[1:]]


async def _serve_forever(server: UwServer, host: str, port: int) -> None:
    bound = await server.start(host, port)
    print(f"Unusual Whales twin on http://{host}:{bound}/api (socket ws://{host}:{bound}/api/socket)", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> None:
    """``python -m quanticity.sim.uw_server --port 8701``."""
    parser = argparse.ArgumentParser(description="Loopback Unusual Whales REST + WebSocket twin")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8701)
    parser.add_argument("--token", default="uw-loopback-token", help="Bearer token clients must present")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--push-interval", type=float, default=1.0, help="seconds between socket pushes (0 = off)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    server = UwServer(args.token, seed=args.seed, ws_push_interval_s=args.push_interval or None)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(server, args.host, args.port))


if __name__ == "__main__":
    main()
