"""The connection manager of one IBKR API client (one role, one client id).

It connects ``ib_async.IB`` with exponential backoff and seeded jitter, reconnects after a drop
or a daily restart, and after every (re)connect — and after TWS reports 1101 "connectivity
restored, data lost" — runs the registered *sync hooks*: the feed re-subscribes, the broker
adapter reconciles executions, open orders and positions. The link is READY only when every hook
succeeded; a hook that fails (an unanswered positions request, say) leaves it UNRECONCILED,
which :meth:`IbkrConnection.trading_state` reports as HALTED — an unanswered request is never
read as "flat". Hooks are retried with backoff while connected.

Health is judged by data freshness, not by the socket: :meth:`IbkrConnection.healthy` is true
only while READY and the last market data (or, for a connection without a feed, the last message
or :meth:`IbkrConnection.probe` answer) is younger than ``stale_after_s`` on the injected clock.

Order ids: ``ib_async`` hands out ids from the ``nextValidId`` TWS sends at connect. A TWS that
rolls that number back below ids already used would make the client reuse an id (error 103);
the manager keeps a floor above every id used (:meth:`next_order_id` allocates and reserves one
before it is sent, :meth:`reserve_order_id` records ids reconciliation finds), applies it to the
client at once and after every connect, and — given an :class:`~.order_ids.OrderIdFloorStore` —
persists it before the order leaves, so a *restarted* process starts above it too.

Malformed messages: ``ib_async``'s decoder logs and drops a TWS message it cannot parse (a price
``"abc"``). The manager counts each one (``malformed_messages``) and keeps the last one's
message id, field position and value in :attr:`IbkrConnection.last_malformed`, so bad input from
TWS is visible in the stats instead of vanishing into a log line.

Handshake failures: a TWS that closes the socket during the handshake (client id in use, 326;
a daily restart refusing connections) would leave ``ib_async`` waiting the whole connect timeout;
the manager notices the close and counts the attempt as failed at once, then backs off.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
import re
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from ib_async import IB, StartupFetchNONE

from quanticity.clock import NS_PER_SECOND, Clock, LiveClock
from quanticity.messages import TradingState
from quanticity.venues.ibkr.backoff import Backoff
from quanticity.venues.ibkr.config import IbkrConfig, Role
from quanticity.venues.ibkr.order_ids import OrderIdFloorStore, OrderIdStoreError

__all__ = ["IbkrConnection", "LinkState", "SyncError", "SyncHook"]

log = logging.getLogger("quanticity.venues.ibkr")

SyncHook = Callable[[str], Awaitable[None]]
"""Called with the reason ("connect", "reconnect", "1101", "1102", "retry") after the link comes up."""

CLIENT_ID_IN_USE = 326
CONNECTIVITY_LOST = 1100
RESTORED_DATA_LOST = 1101
RESTORED_DATA_KEPT = 1102


class LinkState(enum.StrEnum):
    """Where the connection is; only READY allows trading."""

    DISCONNECTED = "DISCONNECTED"
    CONNECTING = "CONNECTING"
    SYNCING = "SYNCING"
    READY = "READY"
    UNRECONCILED = "UNRECONCILED"  # connected, but a sync hook failed: state of the account unknown
    LOST = "LOST"  # TWS reported 1100: connected to TWS, TWS not connected to IB
    STOPPED = "STOPPED"


class SyncError(RuntimeError):
    """A sync hook could not complete (an unanswered request, a broken socket)."""


_QUOTED = re.compile(r"""'((?:[^'\\]|\\.)*)'\s*$""")
"""The offending value at the end of a Python conversion error (``could not convert …: 'abc'``)."""


class _DecoderErrors:
    """Stands in for ``ib_async``'s decoder logger: each exception it logs is a TWS message dropped.

    The decoder catches every parse error itself and only logs it; this proxy sees that log call
    (with the exception still current), reports it to the connection and passes it on unchanged.
    """

    def __init__(self, logger: logging.Logger, on_error: Callable[[str], None]) -> None:
        self._logger = logger
        self._on_error = on_error

    def exception(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self._on_error(str(msg))
        self._logger.exception(msg, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)


class IbkrConnection:
    """One ``ib_async.IB`` session kept alive for one role."""

    def __init__(
        self,
        config: IbkrConfig,
        role: Role,
        clock: Clock | None = None,
        ib: IB | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        order_ids: OrderIdFloorStore | None = None,
    ) -> None:
        self.config = config
        self.role = role
        self.client_id = config.client_ids.for_role(role)
        self.clock = clock or LiveClock()
        self.ib = ib or IB()
        self.ib.RequestTimeout = 0  # every wait is bounded by this module with request_timeout_s
        self.ib.client.MaxRequests = config.pacing_msgs_per_s
        self.ib.client.RequestsInterval = 1.0
        self.state = LinkState.DISCONNECTED
        self.stats: collections.Counter[str] = collections.Counter()
        self.last_error = ""
        self._sleep = sleep
        self._backoff = Backoff(config.reconnect)
        self._hooks: list[tuple[str, SyncHook]] = []
        self._ready = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._id_floor = 0
        self._order_ids = order_ids
        self.last_malformed = ""
        self._decoding: list[str] | None = None
        self._connected_once = False
        self._last_data_ns: int | None = None
        self._last_message_ns: int | None = None
        self.expects_market_data = False
        self.ib.disconnectedEvent += self._on_disconnected
        self.ib.errorEvent += self._on_error
        self.ib.updateEvent += self._on_message
        self._watch_decoder()

    # --- public API -----------------------------------------------------------------------
    def add_sync_hook(self, name: str, hook: SyncHook) -> None:
        """Run ``hook`` (in registration order) after every connect, reconnect and 1101/1102."""
        self._hooks.append((name, hook))

    async def start(self) -> None:
        """Connect (retrying with backoff) and sync; returns once READY or UNRECONCILED.

        Raises ConnectionError after ``max_connect_attempts`` failures in a row (0 = never).
        """
        self._stopping = False
        await self._connect_loop("connect")

    async def stop(self) -> None:
        """Disconnect for good (no reconnect)."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.ib.disconnect()
        self._set_state(LinkState.STOPPED)

    async def wait_ready(self, timeout: float) -> bool:
        """Wait until READY; False on timeout."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            return False
        return True

    @property
    def ready(self) -> bool:
        """Connected and every sync hook succeeded: the account's state is known."""
        return self.state is LinkState.READY

    @property
    def reconciled(self) -> bool:
        """Same as :attr:`ready`; named for the broker's question "may I trust what I know?"."""
        return self.ready

    def trading_state(self) -> TradingState:
        """ACTIVE only while READY; anything else (unreconciled, lost, disconnected) is HALTED."""
        return TradingState.ACTIVE if self.ready else TradingState.HALTED

    def note_data(self) -> None:
        """The feed accepted market data now (freshness is what health is judged by)."""
        self._last_data_ns = self.clock.now_ns()

    def data_age_s(self) -> float | None:
        """Seconds since the freshness source last moved (None = never)."""
        last = self._last_data_ns if self.expects_market_data else self._last_message_ns
        if last is None:
            return None
        return (self.clock.now_ns() - last) / NS_PER_SECOND

    def healthy(self) -> bool:
        """READY and fresh: the last data is younger than ``stale_after_s``."""
        age = self.data_age_s()
        return self.ready and age is not None and age <= self.config.stale_after_s

    async def probe(self) -> bool:
        """Ask TWS the time (a heartbeat for connections without market data); False if unanswered."""
        if not self.ib.isConnected():
            return False
        try:
            await asyncio.wait_for(self.ib.reqCurrentTimeAsync(), self.config.request_timeout_s)
        except (TimeoutError, ConnectionError):
            self.stats["probe_unanswered"] += 1
            return False
        self._last_message_ns = self.clock.now_ns()
        return True

    @property
    def order_id_floor(self) -> int:
        """The lowest order id this connection may still use."""
        return self._id_floor

    def next_order_id(self) -> int:
        """Allocate the id of an order about to be sent, reserved (and persisted) *before* it leaves.

        Persisting first means a crash after the send can never lose the id. Raises
        ConnectionError when not connected (nothing was allocated).
        """
        order_id = int(self.ib.client.getReqId())
        self.reserve_order_id(order_id)
        return order_id

    def reserve_order_id(self, order_id: int) -> None:
        """Record an order id that was used (here or, as reconciliation found, by an earlier process).

        The client's counter is raised at once when connected (not only at the next connect), and
        the floor is written to the store so a restarted process keeps it. A store that cannot be
        written is counted and logged; the in-memory floor still protects this process.
        """
        floor = int(order_id) + 1
        if floor <= self._id_floor:
            return
        self._id_floor = floor
        if self.ib.isConnected():
            self.ib.client.updateReqId(floor)
        if self._order_ids is not None:
            try:
                self._order_ids.save(floor)
            except OrderIdStoreError as exc:
                self.stats["order_id_floor_unsaved"] += 1
                self.last_error = str(exc)
                log.error("ibkr %s: order-id floor not persisted: %s", self.role, exc)

    def _load_id_floor(self) -> None:
        """Raise the floor to the stored one (a restarted process starts above its predecessor's ids)."""
        if self._order_ids is None:
            return
        try:
            stored = self._order_ids.load()
        except OrderIdStoreError as exc:
            self.stats["order_id_floor_unread"] += 1
            self.last_error = str(exc)
            log.error("ibkr %s: order-id floor not read: %s", self.role, exc)
            return
        self._id_floor = max(self._id_floor, stored)

    # --- malformed messages ---------------------------------------------------------------
    def _watch_decoder(self) -> None:
        """Count what ``ib_async``'s decoder drops: remember each message while it is decoded."""
        decoder = self.ib.client.decoder
        interpret = decoder.interpret

        def watched(fields: list[str]) -> None:
            self._decoding = fields
            try:
                interpret(fields)
            finally:
                self._decoding = None

        decoder.interpret = watched  # type: ignore[method-assign]
        decoder.logger = _DecoderErrors(decoder.logger, self._on_malformed)  # type: ignore[assignment]

    def _on_malformed(self, logged: str) -> None:
        """One TWS message the decoder could not parse: count it and name the message, field and value."""
        self.stats["malformed_messages"] += 1
        error = sys.exc_info()[1]
        fields = self._decoding or []
        msg_id = fields[0] if fields else "?"
        detail = f"{type(error).__name__}: {error}" if error is not None else logged
        match = _QUOTED.search(str(error)) if error is not None else None
        if match is not None and match.group(1) in fields[1:]:
            position = fields.index(match.group(1), 1)
            self.last_malformed = f"TWS message {msg_id}: field {position} = {match.group(1)!r} ({detail})"
        else:
            self.last_malformed = f"TWS message {msg_id}: {detail}"
        log.error("ibkr %s: malformed message dropped: %s", self.role, self.last_malformed)

    def health(self) -> dict[str, Any]:
        """State, freshness and counters, for heartbeats and metrics."""
        return {
            "role": self.role,
            "client_id": self.client_id,
            "state": self.state.value,
            "healthy": self.healthy(),
            "data_age_s": self.data_age_s(),
            "malformed_messages": self.stats["malformed_messages"],
            "last_malformed": self.last_malformed,
            "order_id_floor": self._id_floor,
            **{f"count_{k}": v for k, v in self.stats.items()},
        }

    # --- connecting -----------------------------------------------------------------------
    def _set_state(self, state: LinkState) -> None:
        if state is not self.state:
            log.info("ibkr %s (client %d): %s → %s", self.role, self.client_id, self.state.value, state.value)
            self.state = state
        if state is LinkState.READY:
            self._ready.set()
        else:
            self._ready.clear()

    async def _connect_loop(self, reason: str) -> None:
        failures = 0
        while not self._stopping:
            if await self._connect_once():
                self._backoff.reset()
                await self._sync(reason)
                return
            failures += 1
            limit = self.config.max_connect_attempts
            if limit and failures >= limit:
                self._set_state(LinkState.DISCONNECTED)
                raise ConnectionError(
                    f"ibkr {self.role}: {failures} connect attempts to {self.config.host}:"
                    f"{self.config.resolved_port} failed; last error: {self.last_error}"
                )
            delay = self._backoff.next_delay()
            self.stats["reconnect_waits"] += 1
            await self._sleep(delay)

    async def _connect_once(self) -> bool:
        self._set_state(LinkState.CONNECTING)
        self.stats["connect_attempts"] += 1
        try:
            await self._handshake()
        except (TimeoutError, ConnectionError, OSError) as exc:
            self.last_error = repr(exc)
            self.stats["connect_failures"] += 1
            log.warning("ibkr %s: connect failed: %r", self.role, exc)
            self.ib.disconnect()
            self._set_state(LinkState.DISCONNECTED)
            return False
        self.stats["connects"] += 1
        self._last_message_ns = self.clock.now_ns()
        # never reuse an order id, whatever nextValidId this TWS sent (nor what a predecessor used)
        self._load_id_floor()
        self.ib.client.updateReqId(self._id_floor)
        self.ib.reqMarketDataType(self.config.market_data_type)
        return True

    async def _handshake(self) -> None:
        """``IB.connectAsync``, abandoned as soon as TWS closes the socket instead of answering.

        TWS closes at once on a client id in use (326) or while it restarts; ib_async would keep
        waiting for the API to start until the connect timeout. Raises ConnectionError then.
        """
        closed: list[str] = []
        peer_closed = asyncio.Event()

        def on_close(message: str) -> None:
            # ib_async reports a close after the version exchange as an API error; one before it
            # (a TWS that accepts and drops at once, as during its restart) only as a socket event
            closed.append(message or "socket closed by TWS before the API started")
            peer_closed.set()

        self.ib.client.apiError += on_close
        self.ib.client.conn.disconnected += on_close
        connect = asyncio.ensure_future(
            self.ib.connectAsync(
                self.config.host,
                self.config.resolved_port,
                clientId=self.client_id,
                timeout=self.config.connect_timeout_s,
                account=self.config.account,
                fetchFields=StartupFetchNONE,  # the sync hooks fetch what they need, with their own timeouts
            )
        )
        watch = asyncio.ensure_future(peer_closed.wait())
        try:
            await asyncio.wait({connect, watch}, return_when=asyncio.FIRST_COMPLETED)
            if not connect.done():
                connect.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError, TimeoutError, OSError):
                    await connect
                raise ConnectionError(f"TWS closed the connection during the handshake: {closed[0]}")
            connect.result()
        finally:
            watch.cancel()
            if not connect.done():  # this coroutine itself was cancelled (a stop): do not leave it behind
                connect.cancel()
            self.ib.client.apiError -= on_close
            self.ib.client.conn.disconnected -= on_close

    async def _sync(self, reason: str) -> None:
        """Run every hook; READY when all succeed, UNRECONCILED (retried with backoff) otherwise."""
        self._set_state(LinkState.SYNCING)
        for name, hook in self._hooks:
            try:
                await hook(reason)
            except (SyncError, TimeoutError, ConnectionError) as exc:
                self.stats["sync_failures"] += 1
                self.last_error = f"{name}: {exc!r}"
                log.error("ibkr %s: sync hook %s failed (%s): %r", self.role, name, reason, exc)
                if self.ib.isConnected():
                    self._set_state(LinkState.UNRECONCILED)
                    self._spawn(self._retry_sync())
                elif not self._stopping and self.state is LinkState.SYNCING:
                    # the socket closed while we were CONNECTING → SYNCING (after the handshake, before
                    # _on_disconnected would act on it): nobody else will reconnect, so we do
                    self.stats["disconnects"] += 1
                    self._set_state(LinkState.DISCONNECTED)
                    self._spawn(self._reconnect())
                return
        self._connected_once = True
        self.stats["syncs"] += 1
        self._set_state(LinkState.READY)

    async def _retry_sync(self) -> None:
        await self._sleep(self._backoff.next_delay())
        if not self._stopping and self.ib.isConnected() and self.state is LinkState.UNRECONCILED:
            await self._sync("retry")

    def _spawn(self, coro: Awaitable[None]) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = asyncio.ensure_future(coro)

    async def _reconnect(self) -> None:
        try:
            await self._sleep(self._backoff.next_delay())
            await self._connect_loop("reconnect")
        except ConnectionError as exc:
            log.error("ibkr %s: giving up: %s", self.role, exc)

    # --- events ---------------------------------------------------------------------------
    def _on_disconnected(self) -> None:
        if self._stopping or self.state is LinkState.CONNECTING:
            return
        self.stats["disconnects"] += 1
        log.warning("ibkr %s (client %d): disconnected; reconnecting", self.role, self.client_id)
        self._set_state(LinkState.DISCONNECTED)
        self._spawn(self._reconnect())

    def _on_error(self, req_id: int, code: int, message: str, contract: Any) -> None:
        if code == CLIENT_ID_IN_USE:
            self.stats["client_id_in_use"] += 1
            self.last_error = f"326 {message}"
        elif code == CONNECTIVITY_LOST:
            self.stats["connectivity_lost"] += 1
            if self.state is not LinkState.DISCONNECTED:
                self._set_state(LinkState.LOST)
        elif code in (RESTORED_DATA_LOST, RESTORED_DATA_KEPT):
            self.stats[f"restored_{code}"] += 1
            self._spawn(self._sync(str(code)))

    def _on_message(self) -> None:
        self._last_message_ns = self.clock.now_ns()
