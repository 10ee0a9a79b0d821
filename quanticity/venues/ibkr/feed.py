"""The IBKR market data feed: L1, tick-by-tick trades, rotating depth and option chains.

It subscribes through an :class:`~quanticity.venues.ibkr.connection.IbkrConnection` (whose sync
hook re-subscribes everything after a reconnect or a 1101), turns ``ib_async`` ticker updates
into the platform's messages after validation (:mod:`.validation`), hands each accepted message
to ``sink`` and counts every rejection by reason in :attr:`IbkrFeed.rejected` — bad data never
raises out of the feed.

- L1: ``reqMktData`` with generic ticks ``106,104,233`` on every underlying → :class:`Quote`;
  trades from RT volume (tick 48) unless the symbol streams tick-by-tick.
- Tick-by-tick ``AllLast`` (or ``Last``) on the configured symbols → :class:`Trade`; prints
  reported by FINRA/ADF/TRF are marked ``dark``.
- Depth: :class:`~.depth.DepthRotation` over the depth symbols at explicit exchanges, 10 levels,
  at most 3 lines; error 309 shrinks the rotation instead of failing → :class:`BookSnapshot`.
- Error 354 (no entitlement, e.g. a delayed-only account): a refused depth line takes its symbol
  out of the rotation for ``depth_retry_after_s``; refused tick-by-tick makes the symbol's trades
  come from L1 last ticks until the next (re-)subscription; a refused L1 line is counted and
  named in :meth:`IbkrFeed.stats` (the connection's freshness check reports the silence).
- Options: ``reqSecDefOptParams`` for expirations/strikes, the nearest ``option_expiries``
  expirations and ``option_strikes_each_side`` strikes around the spot, qualified with one
  ``reqContractDetails`` per expiry, then ``reqMktData`` → :class:`OptionQuote` with the model
  greeks.

Depth arrives as row updates and ``ib_async`` reports a ticker after every socket read, so a
read that ends half-way through one update shows a book that is momentarily unordered or
crossed: it is rejected like any inconsistent book (never passed on) and the next complete
update supersedes it.

Timestamps: ``ts_event`` and ``ts_init`` are the injected clock's time at arrival (ib_async
stamps ticks with its arrival time too; TWS does not send an event time for L1 ticks).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
from collections.abc import Callable

from ib_async import Contract, Ticker
from ib_async.objects import TickByTickAllLast

from quanticity.clock import NS_PER_SECOND, Clock
from quanticity.messages import Message, OptionContract, Right
from quanticity.venues.ibkr.config import IbkrConfig
from quanticity.venues.ibkr.connection import IbkrConnection, SyncError
from quanticity.venues.ibkr.contracts import from_ib_option, underlying_contract
from quanticity.venues.ibkr.depth import DepthRotation
from quanticity.venues.ibkr.validation import (
    RejectCounter,
    Rejected,
    make_book,
    make_option_quote,
    make_quote,
    make_trade,
)

__all__ = ["IbkrFeed"]

log = logging.getLogger("quanticity.venues.ibkr.feed")

MAX_DEPTH_REQUESTS = 309
NOT_SUBSCRIBED = 354
NO_SECURITY_DEFINITION = 200
BID_ASK_TICKS = frozenset({0, 1, 2, 3, 66, 67, 69, 70})
LAST_TICKS = frozenset({4, 68})
RT_VOLUME_TICK = 48
DELAYED_DATA_TYPES = frozenset({3, 4})
DARK_VENUES = frozenset({"FINRA", "ADF", "TRF"})


async def _next_update(ticker: Ticker) -> None:
    """Return at the ticker's next update (ib_async emits ``updateEvent`` once per changed ticker)."""
    await ticker.updateEvent


class IbkrFeed:
    """Market data of ``symbols`` through one IBKR connection (module docstring: what and how)."""

    def __init__(
        self,
        connection: IbkrConnection,
        symbols: list[str],
        sink: Callable[[Message], None],
        clock: Clock | None = None,
        option_symbols: list[str] | None = None,
    ) -> None:
        self.conn = connection
        self.config: IbkrConfig = connection.config
        self.ib = connection.ib
        self.symbols = list(dict.fromkeys(symbols))
        self.option_symbols = list(option_symbols) if option_symbols is not None else []
        self.sink = sink
        self.clock = clock or connection.clock
        self.rejected = RejectCounter()
        self.accepted: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[int] = collections.Counter()
        depth_symbols = [s for s in self.config.depth_symbols if s in self.symbols]
        self.depth = DepthRotation(
            depth_symbols, self.config.depth_lines, self.config.depth_dwell_s, self.config.depth_retry_after_s
        )
        self._underlyings: dict[str, Contract] = {}
        self._options: dict[int, tuple[Contract, OptionContract]] = {}
        self._by_con_id: dict[int, str] = {}
        self._last_quote: dict[int, tuple[float, float, float, float]] = {}
        self._depth_contracts: dict[str, Contract] = {}
        self._depth_requests: dict[str, int] = {}
        self.tick_by_tick_refused: set[str] = set()
        self.l1_refused: set[str] = set()
        connection.expects_market_data = True
        connection.add_sync_hook("feed", self._on_sync)
        self.ib.pendingTickersEvent += self._on_tickers
        self.ib.errorEvent += self._on_error

    # --- subscriptions --------------------------------------------------------------------
    async def _on_sync(self, reason: str) -> None:
        """Sync hook: (re-)subscribe everything; a 1102 (data kept) needs nothing."""
        if reason == "1102":
            return
        await self.subscribe_all()

    async def subscribe_all(self) -> None:
        """Qualify (once) and subscribe every stream; raises SyncError if TWS does not answer."""
        await self._qualify_underlyings()
        self.tick_by_tick_refused.clear()  # entitlements may have changed: ask again
        self.l1_refused.clear()
        for symbol, contract in self._underlyings.items():
            self._subscribe_underlying(symbol, contract)
        self.depth.reset()
        self._depth_requests.clear()
        self.rotate_depth()
        # every chain at once (a copy of the list: add/remove_symbol may run meanwhile): the
        # client's pacing (pacing_msgs_per_s) spaces the requests, round trips no longer add up
        await asyncio.gather(*(self.load_options(symbol) for symbol in list(self.option_symbols)))
        for contract, _ in self._options.values():
            self._request_l1(contract, self.config.option_generic_ticks)

    async def add_symbol(self, symbol: str, options: bool = True, subscribe: bool = True) -> int:
        """Stream ``symbol`` from now on (run-time universe change); returns the option lines opened.

        Only the new symbol's requests go out — qualification, L1, tick-by-tick if configured,
        its option chain when ``options`` — instead of :meth:`subscribe_all`, which would cancel
        and re-request every line of the session. It joins the depth rotation if it is a
        configured depth symbol. With ``subscribe`` False (the connection is not ready yet) it is
        only registered: the sync hook subscribes it with the rest. Raises ValueError naming the
        symbol when TWS has no single contract definition for it (nothing is left registered),
        SyncError when TWS does not answer.
        """
        if symbol in self.symbols:
            return 0
        if subscribe:
            await self._qualify([symbol])
            if symbol not in self._underlyings:
                raise ValueError(f"symbol: {symbol} has no single contract definition at IBKR; not subscribed")
        self.symbols.append(symbol)
        if options and symbol not in self.option_symbols:
            self.option_symbols.append(symbol)
        if symbol in self.config.depth_symbols:
            self.depth.add_symbol(symbol)
        if not subscribe:
            return 0
        self._subscribe_underlying(symbol, self._underlyings[symbol])
        self.rotate_depth()
        if not options:
            return 0
        before = set(self._options)
        await self.load_options(symbol)
        opened = [self._options[c][0] for c in self._options if c not in before]
        for contract in opened:
            self._request_l1(contract, self.config.option_generic_ticks)
        return len(opened)

    def remove_symbol(self, symbol: str) -> int:
        """Stop streaming ``symbol``: cancel its L1, tick-by-tick, depth line and option lines.

        Its contracts are forgotten, so a late tick for them is dropped; re-adding it qualifies
        again. Returns how many subscriptions were cancelled (0 for a symbol not streamed).
        """
        if symbol not in self.symbols:
            return 0
        self.symbols.remove(symbol)
        if symbol in self.option_symbols:
            self.option_symbols.remove(symbol)
        cancelled = 0
        connected = self.ib.isConnected()
        if self.depth.remove_symbol(symbol) or symbol in self._depth_contracts:
            contract = self._depth_contracts.pop(symbol, None)
            self._depth_requests.pop(symbol, None)
            if contract is not None and connected:
                self.ib.cancelMktDepth(contract)
                cancelled += 1
        under = self._underlyings.pop(symbol, None)
        if under is not None:
            self._by_con_id.pop(under.conId, None)
            self._last_quote.pop(under.conId, None)
            if connected and self._subscribed(under, self.config.tick_by_tick_type):
                self.ib.cancelTickByTickData(under, self.config.tick_by_tick_type)
                cancelled += 1
            if connected and self._subscribed(under, "mktData"):
                self.ib.cancelMktData(under)
                cancelled += 1
        for con_id in [c for c, (_, o) in self._options.items() if o.underlying == symbol]:
            contract, _ = self._options.pop(con_id)
            self._last_quote.pop(con_id, None)
            if connected and self._subscribed(contract, "mktData"):
                self.ib.cancelMktData(contract)
                cancelled += 1
        return cancelled

    def _subscribe_underlying(self, symbol: str, contract: Contract) -> None:
        """L1 with the generic ticks, plus tick-by-tick prints for the configured symbols (not an index)."""
        self._request_l1(contract, self.config.generic_ticks)
        if symbol in self.config.tick_by_tick_symbols and contract.secType != "IND":
            if self._subscribed(contract, self.config.tick_by_tick_type):
                self.ib.cancelTickByTickData(contract, self.config.tick_by_tick_type)
            self.ib.reqTickByTickData(contract, self.config.tick_by_tick_type, 0, False)

    def _subscribed(self, contract: Contract, kind: str) -> bool:
        """Whether ib_async holds a live ``kind`` request for ``contract`` (after 1101 TWS has dropped it)."""
        ticker = self.ib.ticker(contract)
        return ticker is not None and ticker in self.ib.wrapper.ticker2ReqId.get(kind, {})

    def _request_l1(self, contract: Contract, generic: str) -> None:
        if self._subscribed(contract, "mktData"):
            self.ib.cancelMktData(contract)
        self.ib.reqMktData(contract, generic, False, False)

    async def _qualify_underlyings(self) -> None:
        await self._qualify([s for s in self.symbols if s not in self._underlyings])

    async def _qualify(self, missing: list[str]) -> None:
        """Contract details of ``missing`` in one concurrent round (the client paces the requests)."""
        if not missing:
            return
        timeout = self.config.request_timeout_s
        contracts = [underlying_contract(s) for s in missing]
        try:
            details = await asyncio.wait_for(
                asyncio.gather(*(self.ib.reqContractDetailsAsync(c) for c in contracts)), timeout
            )
        except TimeoutError:
            raise SyncError(f"contract details for {missing} unanswered within {timeout} s") from None
        for symbol, found in zip(missing, details, strict=True):
            if len(found) != 1 or found[0].contract is None:
                log.error("feed: %s has %d contract definitions; not subscribed", symbol, len(found))
                self.rejected["unknown_contract"] += 1
                continue
            contract = found[0].contract
            if contract.secType == "STK":
                contract.exchange = "SMART"
            self._underlyings[symbol] = contract
            self._by_con_id[contract.conId] = symbol

    async def load_options(self, symbol: str) -> int:
        """Qualify the streamed part of ``symbol``'s chain (nearest expiries, strikes around spot)."""
        under = self._underlyings.get(symbol)
        if under is None:
            return 0
        timeout = self.config.request_timeout_s
        try:
            chains, spot = await asyncio.wait_for(
                asyncio.gather(
                    self.ib.reqSecDefOptParamsAsync(symbol, "", under.secType, under.conId), self._spot(under)
                ),
                timeout,
            )
        except TimeoutError:
            raise SyncError(f"option parameters of {symbol} unanswered within {timeout} s") from None
        if symbol not in self.symbols:
            return 0  # removed while its parameters were on the way
        chain = next((c for c in chains if c.exchange == "SMART"), chains[0] if chains else None)
        if chain is None or spot is None:
            log.warning("feed: no option chain or spot for %s", symbol)
            return 0
        strikes = sorted(chain.strikes, key=lambda k: abs(k - spot))[: 2 * self.config.option_strikes_each_side + 1]
        wanted = set(strikes)
        added = 0
        expiries = sorted(chain.expirations)[: self.config.option_expiries]
        queries = [
            Contract(
                secType="OPT",
                symbol=symbol,
                lastTradeDateOrContractMonth=expiry,
                exchange="SMART",
                currency="USD",
                tradingClass=chain.tradingClass,
            )
            for expiry in expiries
        ]
        try:  # every expiry in one concurrent round: the client's pacing spaces the requests
            answers = await asyncio.wait_for(
                asyncio.gather(*(self.ib.reqContractDetailsAsync(q) for q in queries)), timeout
            )
        except TimeoutError:
            raise SyncError(f"option contracts of {symbol} {expiries} unanswered within {timeout} s") from None
        if symbol not in self.symbols:
            return 0
        for details in answers:
            for detail in details:
                contract = detail.contract
                if contract is None or contract.strike not in wanted:
                    continue
                try:
                    platform = from_ib_option(contract)
                except ValueError as exc:
                    self._reject(Rejected("malformed_contract", str(exc)))
                    continue
                contract.exchange = "SMART"
                if contract.conId not in self._options:
                    added += 1
                self._options[contract.conId] = (contract, platform)
        return added

    async def _spot(self, contract: Contract) -> float | None:
        ticker = self.ib.ticker(contract)
        if ticker is not None:
            price = ticker.marketPrice()
            if price == price and price > 0:
                return float(price)
        (snap,) = await self.ib.reqTickersAsync(contract)
        price = snap.marketPrice()
        if price == price and price > 0:
            return float(price)
        return await self._first_price(contract)

    async def _first_price(self, contract: Contract) -> float | None:
        """The streaming line's first price: a symbol listed moments ago has no quote to snapshot yet.

        Waits on the ticker's update event (no polling) up to ``request_timeout_s``; None if the
        line is not subscribed or nothing arrives in time.
        """
        ticker = self.ib.ticker(contract)
        if ticker is None:
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.request_timeout_s
        while (remaining := deadline - loop.time()) > 0:
            price = ticker.marketPrice()
            if price == price and price > 0:
                return float(price)
            try:
                await asyncio.wait_for(_next_update(ticker), remaining)
            except TimeoutError:
                return None
        return None

    def rotate_depth(self) -> None:
        """Apply the depth rotation due now (call on a timer; tests call it after moving the clock)."""
        if not self.ib.isConnected():
            return
        plan = self.depth.plan(self.clock.now_ns() / NS_PER_SECOND)
        for symbol in plan.cancel:
            contract = self._depth_contracts.pop(symbol, None)
            self._depth_requests.pop(symbol, None)
            if contract is not None:
                self.ib.cancelMktDepth(contract)
        for symbol in plan.subscribe:
            under = self._underlyings.get(symbol)
            if under is None:
                continue
            contract = Contract(
                conId=under.conId,
                symbol=under.symbol,
                secType=under.secType,
                exchange=self.config.depth_exchange(symbol),
                currency=under.currency,
            )
            self._depth_contracts[symbol] = contract
            ticker = self.ib.reqMktDepth(contract, self.config.depth_levels, False)
            self._depth_requests[symbol] = self.ib.wrapper.ticker2ReqId["mktDepth"].get(ticker, 0)

    # --- errors ---------------------------------------------------------------------------
    def _on_error(self, req_id: int, code: int, message: str, contract: Contract | None) -> None:
        if code == MAX_DEPTH_REQUESTS:
            self.errors[code] += 1
            symbol = self._drop_refused_depth(req_id)
            if symbol is not None:
                log.warning("feed: depth line refused for %s (309); rotating with fewer lines", symbol)
                self.depth.capacity_error(symbol, self.clock.now_ns() / NS_PER_SECOND)
        elif code == NOT_SUBSCRIBED:
            self.errors[code] += 1
            self._not_subscribed(req_id)
        elif code == NO_SECURITY_DEFINITION:
            self.errors[code] += 1

    def _drop_refused_depth(self, req_id: int) -> str | None:
        """Forget the depth line ``req_id`` that TWS refused; its symbol, or None if not a depth line of ours."""
        symbol = next((s for s, r in self._depth_requests.items() if r == req_id), None)
        if symbol is None:
            return None
        self._depth_requests.pop(symbol, None)
        dropped = self._depth_contracts.pop(symbol, None)
        if dropped is not None:
            self.ib.wrapper.endTicker(self.ib.ticker(dropped), "mktDepth")
        return symbol

    def _not_subscribed(self, req_id: int) -> None:
        """Error 354 on one of our lines: stop expecting data from it (module docstring: how per kind)."""
        depth_symbol = self._drop_refused_depth(req_id)
        if depth_symbol is not None:
            log.warning("feed: no depth entitlement for %s (354); out of the rotation for now", depth_symbol)
            self.depth.not_entitled(depth_symbol, self.clock.now_ns() / NS_PER_SECOND)
            return
        ticker = self.ib.wrapper.reqId2Ticker.get(req_id)
        if ticker is None or ticker.contract is None:
            return
        con_id = ticker.contract.conId
        symbol = self._by_con_id.get(con_id) or (
            self._options[con_id][1].underlying if con_id in self._options else None
        )
        if symbol is None:
            return
        tick_by_tick = self.config.tick_by_tick_type
        if self.ib.wrapper.ticker2ReqId.get(tick_by_tick, {}).get(ticker) == req_id:
            log.warning("feed: no tick-by-tick entitlement for %s (354); trades from L1 last ticks", symbol)
            self.tick_by_tick_refused.add(symbol)
            self.ib.wrapper.endTicker(ticker, tick_by_tick)
        elif self.ib.wrapper.ticker2ReqId.get("mktData", {}).get(ticker) == req_id:
            log.error("feed: market data for %s (conId %s) not subscribed (354)", symbol, con_id)
            self.l1_refused.add(symbol if con_id in self._by_con_id else f"{symbol}:{con_id}")

    # --- data -----------------------------------------------------------------------------
    def _reject(self, exc: Rejected) -> None:
        self.rejected[exc.reason] += 1
        log.debug("feed: rejected %s", exc)

    def _emit(self, message: Message, kind: str) -> None:
        self.accepted[kind] += 1
        self.conn.note_data()
        self.sink(message)

    def _on_tickers(self, tickers: set[Ticker]) -> None:
        now = self.clock.now_ns()
        for ticker in tickers:
            contract = ticker.contract
            if contract is None:
                continue
            try:
                if contract.conId in self._options:
                    self._on_option(ticker, now)
                elif contract.conId in self._by_con_id:
                    self._on_underlying(self._by_con_id[contract.conId], ticker, now)
            except Rejected as exc:
                self._reject(exc)
            except (ValueError, TypeError) as exc:  # anything malformed the validators did not name
                self._reject(Rejected("malformed", repr(exc)))

    def _on_underlying(self, symbol: str, ticker: Ticker, now: int) -> None:
        max_size = self.config.max_trade_size
        if any(t.tickType in BID_ASK_TICKS for t in ticker.ticks):
            key = (ticker.bid, ticker.ask, ticker.bidSize, ticker.askSize)
            if key != self._last_quote.get(ticker.contract.conId):
                self._last_quote[ticker.contract.conId] = key
                self._guard(
                    lambda: self._emit(
                        make_quote(symbol, ticker.bid, ticker.ask, ticker.bidSize, ticker.askSize, now, now, max_size),
                        "quote",
                    )
                )
        if symbol in self.config.tick_by_tick_symbols and symbol not in self.tick_by_tick_refused:
            for tick in ticker.tickByTicks:
                if isinstance(tick, TickByTickAllLast):
                    dark = tick.exchange in DARK_VENUES
                    self._guard(
                        lambda t=tick, d=dark: self._emit(
                            make_trade(symbol, t.price, t.size, now, now, max_size, dark=d), "trade"
                        )
                    )
        else:
            # RT volume (233) has no delayed form: a delayed line's prints are its delayed last ticks
            delayed = ticker.marketDataType in DELAYED_DATA_TYPES
            trade_ticks = {RT_VOLUME_TICK} if "233" in self.config.generic_ticks and not delayed else LAST_TICKS
            for tick in ticker.ticks:
                if tick.tickType in trade_ticks:
                    self._guard(
                        lambda t=tick: self._emit(make_trade(symbol, t.price, t.size, now, now, max_size), "trade")
                    )
        if ticker.domTicks and symbol in self.depth.active:
            bids = [(level.price, level.size) for level in ticker.domBids]
            asks = [(level.price, level.size) for level in ticker.domAsks]
            self._guard(lambda: self._emit(make_book(symbol, bids, asks, now, now, max_size), "book"))

    def _on_option(self, ticker: Ticker, now: int) -> None:
        _, platform = self._options[ticker.contract.conId]
        greeks = ticker.modelGreeks
        if greeks is None:
            return  # no model computation yet: a quote without greeks is not an OptionQuote
        volume = ticker.volume if ticker.volume == ticker.volume else 0.0
        # generic tick 101: an option's own open interest arrives as tick 27 (call) or 28 (put)
        open_interest = ticker.callOpenInterest if platform.right is Right.CALL else ticker.putOpenInterest
        self._emit(
            make_option_quote(
                platform,
                ticker.bid,
                ticker.ask,
                greeks.impliedVol,
                greeks.delta,
                greeks.gamma,
                greeks.vega,
                greeks.theta,
                greeks.undPrice,
                volume if math.isfinite(volume) else 0.0,
                now,
                now,
                open_interest=open_interest,
            ),
            "option_quote",
        )

    def _guard(self, action: Callable[[], None]) -> None:
        """Run one conversion; a rejection is counted and the other events of the update go on."""
        try:
            action()
        except Rejected as exc:
            self._reject(exc)

    # --- introspection --------------------------------------------------------------------
    @property
    def option_contracts(self) -> list[OptionContract]:
        """Option contracts currently streamed."""
        return [platform for _, platform in self._options.values()]

    def stats(self) -> dict[str, int]:
        """Accepted and rejected counts by kind/reason, plus depth rotation counters."""
        return {
            **{f"accepted_{k}": v for k, v in self.accepted.items()},
            **{f"rejected_{k}": v for k, v in self.rejected.items()},
            "depth_capacity_errors": self.depth.capacity_errors,
            "depth_entitlement_errors": self.depth.entitlement_errors,
            "depth_rotations": self.depth.rotations,
            "tick_by_tick_refused": len(self.tick_by_tick_refused),
            "l1_refused": len(self.l1_refused),
        }
