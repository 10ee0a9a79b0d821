"""The simulated TWS/Gateway: an asyncio TCP server over a deterministic synthetic market.

It owns the account (:class:`~.orders.OrderEngine`), the security master
(:class:`~.contracts.ContractBook`), the market data subscriptions
(:class:`~.marketdata.MarketDataHub`) and the connected sessions. The market moves only when
:meth:`TwsSimulator.advance` (tests, explicit simulated time) or :meth:`TwsSimulator.run_paced`
(the CLI, simulated time at a speed factor) steps it, so every test is deterministic.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
import math
import time
from collections.abc import Callable, Sequence

from quanticity.calendar import NyseCalendar
from quanticity.clock import NS_PER_SECOND
from quanticity.config.models import QuanticityConfig
from quanticity.messages import MarketBatch, OptionQuote
from quanticity.sim.market import SyntheticMarket
from quanticity.sim.tws import wire
from quanticity.sim.tws.config import TwsSimConfig
from quanticity.sim.tws.contracts import ContractBook, Listing
from quanticity.sim.tws.faults import FaultState
from quanticity.sim.tws.ids import ErrorCode, In, Out, error_text
from quanticity.sim.tws.marketdata import BadData, MarketDataHub
from quanticity.sim.tws.orders import ExecutionRecord, OrderEngine, PnlValues, PositionRecord, SimOrder
from quanticity.sim.tws.pnl import PnlSubscriptions
from quanticity.sim.tws.session import ClientSession

__all__ = ["TwsSimulator"]

log = logging.getLogger("quanticity.sim.tws")


class TwsSimulator:
    """TWS on 127.0.0.1 speaking the real API protocol (module docstring of the package: usage)."""

    def __init__(
        self,
        market: SyntheticMarket,
        config: TwsSimConfig | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.market = market
        self.config = config or TwsSimConfig()
        self.contracts = ContractBook(market)
        self.engine = OrderEngine(self.config, self)
        self.hub = MarketDataHub(
            self._option_quote,
            market.vol,
            self.config.max_depth_lines,
            self.config.max_tick_by_tick,
            delayed_s=self.config.delayed_data_s,
        )
        self.pnl = PnlSubscriptions(self.config.pnl_interval_s)
        self.faults = FaultState()
        self.stats: collections.Counter[str] = collections.Counter()
        self._monotonic = monotonic
        self._server: asyncio.Server | None = None
        self._sessions: dict[int, ClientSession] = {}
        self._by_client: dict[int, ClientSession] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._next_session = 1
        self._last: dict[str, MarketBatch] = {}
        self._option_cache: dict[int, OptionQuote] = {}
        self._announced_cancel: set[tuple[int, int]] = set()
        self._step_s = market.state()["step_ns"] / NS_PER_SECOND
        self.port = 0

    @classmethod
    def from_config(
        cls,
        config: QuanticityConfig,
        seed: int | None = None,
        symbols: Sequence[str] | None = None,
        session_date: dt.date | None = None,
        step_ms: int | None = None,
        sim_config: TwsSimConfig | None = None,
    ) -> TwsSimulator:
        """A simulator over the configured market: the universe's symbols, opening at 09:30 ET.

        ``session_date`` defaults to the last NYSE session before today (as ``quanticity run``).
        """
        calendar = NyseCalendar()
        day = session_date or calendar.session_on_or_before(dt.date.today() - dt.timedelta(days=1))
        start_ns = int(calendar.session_open(day).timestamp()) * NS_PER_SECOND
        step_ns = (step_ms or config.system.session.step_ms) * 1_000_000
        market = SyntheticMarket(
            config.market,
            list(symbols) if symbols is not None else config.system.universe.symbols,
            day,
            config.system.system.seed if seed is None else seed,
            start_ns,
            step_ns,
        )
        return cls(market, sim_config)

    # --- lifecycle ------------------------------------------------------------------------
    async def start(self) -> int:
        """Listen on ``config.host:config.port`` (0 = any free port); returns the bound port."""
        self._server = await asyncio.start_server(self._accept, self.config.host, self.config.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        self.step()  # books and quotes exist before the first request (snapshots answer from them)
        log.info("TWS simulator listening on %s:%d (account %s)", self.config.host, self.port, self.config.account)
        return self.port

    async def stop(self) -> None:
        """Close every session and the listening socket, and wait for the sessions to end."""
        for session in list(self._sessions.values()):
            session.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        pending = list(self._tasks)
        if pending:
            # a closed transport ends its reader, so every session task finishes on its own
            _, late = await asyncio.wait(pending, timeout=2.0)
            for task in late:
                task.cancel()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._monotonic() < self.faults.refuse_until:
            self.faults.refused_connections += 1
            writer.close()
            return
        session = ClientSession(self, self._next_session, reader, writer, self._monotonic)
        self._next_session += 1
        self._sessions[session.session_id] = session
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)  # type: ignore[arg-type]
        try:
            await session.run()
        except asyncio.CancelledError:
            # the loop is shutting down under us: close quietly (re-raising makes 3.11's stream
            # callback log a spurious "exception was never retrieved" for the cancelled handler)
            session.close()
        finally:
            if task is not None:
                self._tasks.discard(task)  # type: ignore[arg-type]

    def register_client(self, session: ClientSession, client_id: int) -> bool:
        """Bind a client id to a session; False when a live session already uses it (error 326)."""
        holder = self._by_client.get(client_id)
        if holder is not None and not holder.closed:
            self.stats["client_id_in_use"] += 1
            return False
        self._by_client[client_id] = session
        log.info("client %d connected (session %d)", client_id, session.session_id)
        return True

    def session_closed(self, session: ClientSession) -> None:
        """Forget a closed session: its client id is free and its subscriptions end."""
        self._sessions.pop(session.session_id, None)
        if session.client_id is not None and self._by_client.get(session.client_id) is session:
            del self._by_client[session.client_id]
            log.info("client %d disconnected", session.client_id)
        self.hub.drop_session(session.session_id)
        self.pnl.drop_session(session.session_id)

    @property
    def clients(self) -> list[int]:
        """Client ids connected now."""
        return sorted(cid for cid, s in self._by_client.items() if not s.closed)

    # --- time -----------------------------------------------------------------------------
    @property
    def now_ns(self) -> int:
        """Simulated time (the market's)."""
        return self.market.now_ns

    def step(self) -> dict[str, MarketBatch]:
        """One market step: publish market data, match orders against the new quotes, then P&L.

        P&L goes last so an update reflects the step's fills and marks; like market data it
        stops while TWS has lost IB (1100).
        """
        batches = self.market.step(ts_init_ns=self.market.now_ns)
        self._last.update(batches)
        self._option_cache = {}
        self.hub.publish(batches, self.now_ns)
        self.engine.on_market(self._quote, self.now_ns)
        if not self.hub.stalled:
            self.pnl.publish(self.now_ns, self.account_pnl, self.position_pnl)
        return batches

    def advance(self, seconds: float) -> int:
        """Advance simulated time by at least ``seconds`` (whole steps); returns the steps taken."""
        step_s = self.market_step_s
        steps = max(1, math.ceil(seconds / step_s - 1e-9))
        for _ in range(steps):
            self.step()
        return steps

    @property
    def market_step_s(self) -> float:
        """Simulated seconds per market step."""
        return self._step_s

    async def run_paced(self, speed: float, stop: asyncio.Event | None = None, max_catch_up: int = 50) -> None:
        """Step the market so simulated time runs ``speed`` × the wall clock, until ``stop`` is set.

        Steps are scheduled on absolute wall times, so time spent stepping does not slow the
        session down; when the process falls behind it catches up by at most ``max_catch_up``
        steps at once (and then drops the backlog rather than bursting forever).
        """
        if speed <= 0:
            raise ValueError(f"speed: {speed} must be positive")
        loop = asyncio.get_running_loop()
        interval = self.market_step_s / speed
        stop = stop or asyncio.Event()
        next_at = loop.time()
        while not stop.is_set():
            due = int((loop.time() - next_at) / interval) + 1
            if due > max_catch_up:
                self.stats["paced_steps_dropped"] += due - max_catch_up
                next_at += (due - max_catch_up) * interval
                due = max_catch_up
            for _ in range(max(due, 0)):
                self.step()
                next_at += interval
            try:
                await asyncio.wait_for(stop.wait(), timeout=max(next_at - loop.time(), 0.0))
            except TimeoutError:
                continue

    # --- universe -------------------------------------------------------------------------
    def add_symbol(self, symbol: str) -> Listing:
        """List ``symbol`` at run time: the market simulates it and the security master lists its chain.

        The market refuses a symbol without an entry under ``underlyings`` in market.yaml
        (KeyError naming it), before anything is listed. Its path depends only on (seed,
        symbol), so adding it leaves every other symbol's path unchanged. Its first quote (and
        full option chain) comes with the next market step, as for every symbol at the open.
        Returns the underlying's listing; a no-op for a listed symbol.
        """
        self.market.add_symbol(symbol)
        listing = self.contracts.list_symbol(symbol, self.market.chain(symbol))
        self.stats["symbols_added"] += 1
        log.info("symbol %s listed (conId %d, %d options)", symbol, listing.con_id, len(self.contracts.options(symbol)))
        return listing

    def remove_symbol(self, symbol: str) -> bool:
        """Stop simulating ``symbol``: no more quotes, depth or prints for it or its options.

        Subscriptions a client still holds stay registered (TWS does not cancel them for the
        client) but publish nothing; contract ids keep resolving for orders and positions.
        Returns False when ``symbol`` was not simulated.
        """
        if symbol not in self.market.symbols:
            return False
        self.market.remove_symbol(symbol)
        self.contracts.delist(symbol)
        self._last.pop(symbol, None)
        self.stats["symbols_removed"] += 1
        log.info("symbol %s removed", symbol)
        return True

    # --- pricing --------------------------------------------------------------------------
    def _option_quote(self, listing: Listing) -> OptionQuote | None:
        if listing.option is None or self.contracts.underlying(listing.symbol) is None:
            return None  # a removed symbol's options are no longer quoted (nor priced for fills)
        cached = self._option_cache.get(listing.con_id)
        if cached is None:
            cached = self.market.option_quote(listing.option, ts_init_ns=self.now_ns)
            self._option_cache[listing.con_id] = cached
        return cached

    def _quote(self, listing: Listing) -> tuple[float, float] | None:
        if listing.sec_type == "OPT":
            quote = self._option_quote(listing)
            return (quote.bid, quote.ask) if quote is not None else None
        batch = self._last.get(listing.symbol)
        if batch is None or not batch.quotes:
            return None
        return batch.quotes[-1].bid, batch.quotes[-1].ask

    def _mark(self, listing: Listing) -> float | None:
        quote = self._quote(listing)
        return (quote[0] + quote[1]) / 2 if quote is not None else None

    def snapshot(self, session: ClientSession, req_id: int, listing: Listing) -> None:
        """A one-time L1 snapshot (reqMktData with snapshot=1), ended by tickSnapshotEnd."""
        self.hub.snapshot(session, req_id, listing, self._last.get(listing.symbol))

    # --- account (OrderSink) --------------------------------------------------------------
    def next_valid_id(self) -> int:
        """The id handed to clients: above every used id, unless a rollback fault overrides it."""
        if self.faults.next_valid_id_override is not None:
            return self.faults.next_valid_id_override
        return max(self.engine.max_order_id() + 1, self.config.first_order_id)

    def account_values(self) -> dict[str, float]:
        return self.engine.account_values(self._mark)

    def account_pnl(self) -> PnlValues:
        """The account's P&L at the current marks (what reqPnL streams)."""
        return self.engine.pnl(self._mark)

    def position_pnl(self, con_id: int) -> PnlValues:
        """One contract's P&L at the current mark (what reqPnLSingle streams)."""
        return self.engine.position_pnl(con_id, self._mark)

    def subscribe_pnl(self, session: ClientSession, req_id: int, con_id: int | None) -> None:
        """reqPnL (``con_id`` None) or reqPnLSingle: the current values now, then periodic updates."""
        values = self.account_pnl() if con_id is None else self.position_pnl(con_id)
        self.pnl.add(session, req_id, con_id, values, self.now_ns)

    def order_changed(self, order: SimOrder) -> None:
        session = self._by_client.get(order.client_id)
        if session is None or session.closed:
            return
        session.send(wire.open_order(order, self.config.account))
        session.send(wire.order_status(order))
        key = (order.client_id, order.order_id)
        if order.status == "Cancelled" and key not in self._announced_cancel:
            self._announced_cancel.add(key)
            session.error(order.order_id, ErrorCode.ORDER_CANCELLED, error_text(ErrorCode.ORDER_CANCELLED, reason=""))

    def executed(self, order: SimOrder, execution: ExecutionRecord) -> None:
        log.info(
            "fill %s %s %g %s @ %.2f (order %d/%d, ref %s)",
            execution.exec_id,
            execution.side,
            execution.shares,
            execution.listing.local_symbol,
            execution.price,
            order.client_id,
            order.order_id,
            execution.order_ref,
        )
        session = self._by_client.get(order.client_id)
        if session is None or session.closed:
            return
        session.send(wire.execution(-1, execution, self.config.account))
        session.send(wire.commission_report(execution))

    def position_changed(self, position: PositionRecord) -> None:
        account = self.config.account
        for session in list(self._sessions.values()):
            if session.positions_subscribed:
                session.send(wire.position(account, position))
            if session.account_subscribed:
                self.send_account_update(session, only=position)

    def send_account_update(self, session: ClientSession, only: PositionRecord | None = None) -> None:
        """Account values and portfolio lines of reqAccountUpdates (all positions, or one changed)."""
        account = self.config.account
        for tag, value in self.account_values().items():
            session.send([Out.ACCT_VALUE, 2, tag, value, "USD", account])
        for pos in [only] if only is not None else list(self.engine.positions.values()):
            mark = self._mark(pos.listing)
            session.send(wire.portfolio_value(account, pos, mark if mark is not None else 0.0))
        moment = dt.datetime.fromtimestamp(self.now_ns / NS_PER_SECOND, tz=wire.ET)
        session.send([Out.ACCT_UPDATE_TIME, 1, f"{moment:%H:%M}"])

    def global_cancel(self) -> None:
        self.engine.global_cancel(self.now_ns)

    # --- control API: faults --------------------------------------------------------------
    def drop_connections(self, client_id: int | None = None) -> int:
        """Close the socket of one client (or every session); returns how many were dropped."""
        targets = [s for s in self._sessions.values() if client_id is None or s.client_id == client_id]
        for session in targets:
            session.close()
            self.session_closed(session)
        log.warning("fault: dropped %d connection(s)", len(targets))
        return len(targets)

    def connectivity_lost(self) -> None:
        """TWS lost IB's servers: error 1100 to every client, market data stops."""
        self.hub.stalled = True
        self._broadcast_error(ErrorCode.CONNECTIVITY_LOST)

    def connectivity_restored(self, data_lost: bool) -> None:
        """Back online: 1101 (subscriptions were lost: clients must re-subscribe) or 1102 (kept)."""
        self.hub.stalled = False
        if data_lost:
            for session in self._sessions.values():
                self.hub.drop_session(session.session_id)
                self.pnl.drop_session(session.session_id)
            self._broadcast_error(ErrorCode.CONNECTIVITY_RESTORED_DATA_LOST)
        else:
            self._broadcast_error(ErrorCode.CONNECTIVITY_RESTORED_DATA_KEPT)

    def _broadcast_error(self, code: ErrorCode) -> None:
        for session in self._sessions.values():
            if session.client_id is not None:
                session.error(-1, code, error_text(code))

    def daily_restart(self, refuse_for_s: float) -> None:
        """TWS's nightly restart: everyone is disconnected and connects are refused for a while."""
        self.faults.refuse_until = self._monotonic() + refuse_for_s
        self.drop_connections()

    def resume_connections(self) -> None:
        """End a daily-restart window early."""
        self.faults.refuse_until = 0.0

    def rollback_next_order_id(self, value: int) -> None:
        """Hand out ``value`` as nextValidId (now and on every handshake) though higher ids were used."""
        self.faults.next_valid_id_override = value
        for session in self._sessions.values():
            if session.client_id is not None:
                session.send([Out.NEXT_VALID_ID, 1, value])

    def silence(self, *requests: In) -> None:
        """Never answer these requests (e.g. ``In.REQ_POSITIONS``)."""
        self.faults.silenced.update(int(r) for r in requests)

    def corrupt_next(self, kind: BadData | str, symbol: str) -> None:
        """Send ``kind`` of malformed market data for ``symbol`` on the next step."""
        self.hub.corrupt_next(BadData(kind), symbol)

    def clear_faults(self) -> None:
        """Back to a healthy TWS (counters of past faults are kept in ``stats``)."""
        self.faults = FaultState()
        self.hub.stalled = False

    # --- introspection --------------------------------------------------------------------
    def positions(self) -> dict[int, float]:
        """Net position by contract id (zero positions omitted)."""
        return {cid: p.quantity for cid, p in self.engine.positions.items() if p.quantity}
