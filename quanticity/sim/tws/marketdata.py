"""Market data subscriptions of the simulated TWS: L1, depth and tick-by-tick.

After every market step the server hands the step's batches to :meth:`MarketDataHub.publish`,
which writes to each subscriber what TWS would send for its subscriptions:

- L1 (reqMktData): bid/ask with sizes, last and volume; generic ticks 104 (historical vol),
  106 (implied vol) and 233 (RT volume); for options the model option computation (implied vol,
  delta, gamma, vega, theta, underlying price). Market data type 3/4 switches to the delayed
  tick types (66…, 83) — the values are not actually 15 minutes old (not simulated);
- depth (reqMktDepth): insert/update/delete rows against what this subscriber last received,
  ``updateMktDepthL2`` for smart depth else ``updateMktDepth``, capped at ``max_depth_lines``
  concurrent requests per account (error 309 for one more, cancelMktDepth frees a line);
- tick-by-tick ("Last" without off-exchange prints, "AllLast" with them, "BidAsk", "MidPoint"),
  capped at ``max_tick_by_tick`` (error 10190).

Scripted bad data (:meth:`corrupt_next`) lets tests check that a connector rejects a crossed
book, a NaN greek or a negative price instead of passing it on.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable
from typing import Protocol

from quanticity.messages import BookSnapshot, MarketBatch, OptionQuote, Quote
from quanticity.sim.tws.contracts import Listing
from quanticity.sim.tws.ids import DELAYED_OFFSET, ErrorCode, Out, Tick, error_text

__all__ = ["BadData", "MarketDataHub", "Subscriber"]

NS = 1_000_000_000
OPTION_QUOTE_SIZE = 10
"""Displayed size of simulated option quotes (the synthetic market quotes options without sizes)."""


class Subscriber(Protocol):
    """What the hub needs from a client session."""

    session_id: int
    market_data_type: int

    def send(self, fields: list[object]) -> None: ...


class BadData(enum.StrEnum):
    """Malformed market data the fault script can make the simulator send once."""

    CROSSED_BOOK = "crossed_book"
    NAN_GREEKS = "nan_greeks"
    NEGATIVE_PRICE = "negative_price"


@dataclasses.dataclass(slots=True)
class _L1:
    session: Subscriber
    req_id: int
    listing: Listing
    generic: frozenset[str]
    volume: int = 0


@dataclasses.dataclass(slots=True)
class _Depth:
    session: Subscriber
    req_id: int
    listing: Listing
    rows: int
    smart: bool
    exchange: str
    bids: list[tuple[float, int]] = dataclasses.field(default_factory=list)
    asks: list[tuple[float, int]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(slots=True)
class _TickByTick:
    session: Subscriber
    req_id: int
    listing: Listing
    kind: str  # Last, AllLast, BidAsk, MidPoint


class SubscriptionRefused(ValueError):
    """A subscription the account cannot take; ``code`` is the TWS error code to send."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class MarketDataHub:
    """Every market data subscription of every session, and the per-step publishing."""

    def __init__(
        self,
        option_quote: Callable[[Listing], OptionQuote | None],
        underlying_vol: Callable[[str], float],
        max_depth_lines: int,
        max_tick_by_tick: int,
    ) -> None:
        self._option_quote = option_quote
        self._vol = underlying_vol
        self._max_depth = max_depth_lines
        self._max_tbt = max_tick_by_tick
        self._l1: dict[tuple[int, int], _L1] = {}
        self._depth: dict[tuple[int, int], _Depth] = {}
        self._tbt: dict[tuple[int, int], _TickByTick] = {}
        self._bad: dict[str, set[BadData]] = {}
        self.stalled = False
        self.messages_sent = 0

    # --- subscriptions --------------------------------------------------------------------
    def _check_new(self, session: Subscriber, req_id: int) -> None:
        key = (session.session_id, req_id)
        if key in self._l1 or key in self._depth or key in self._tbt:
            raise SubscriptionRefused(ErrorCode.DUPLICATE_TICKER_ID, error_text(ErrorCode.DUPLICATE_TICKER_ID))

    def add_l1(self, session: Subscriber, req_id: int, listing: Listing, generic_ticks: str) -> None:
        """reqMktData: register, then answer with the marketDataType and tickReqParams messages."""
        self._check_new(session, req_id)
        generic = frozenset(t.strip() for t in generic_ticks.split(",") if t.strip())
        self._l1[(session.session_id, req_id)] = _L1(session, req_id, listing, generic)
        session.send([Out.TICK_REQ_PARAMS, req_id, listing.min_tick, "9c0001", 3])
        session.send([Out.MARKET_DATA_TYPE, 1, req_id, session.market_data_type])

    def add_depth(
        self, session: Subscriber, req_id: int, listing: Listing, rows: int, smart: bool, exchange: str
    ) -> None:
        """reqMktDepth; raises SubscriptionRefused(309) past the account's depth lines."""
        self._check_new(session, req_id)
        if len(self._depth) >= self._max_depth:
            raise SubscriptionRefused(
                ErrorCode.MAX_DEPTH_REQUESTS, error_text(ErrorCode.MAX_DEPTH_REQUESTS, limit=self._max_depth)
            )
        self._depth[(session.session_id, req_id)] = _Depth(session, req_id, listing, max(rows, 1), smart, exchange)

    def add_tick_by_tick(self, session: Subscriber, req_id: int, listing: Listing, kind: str) -> None:
        """reqTickByTickData; raises SubscriptionRefused(10190) past the account's limit."""
        self._check_new(session, req_id)
        if kind not in ("Last", "AllLast", "BidAsk", "MidPoint"):
            raise SubscriptionRefused(
                ErrorCode.ORDER_MESSAGE_ERROR, error_text(ErrorCode.ORDER_MESSAGE_ERROR, detail=f"tickType {kind!r}")
            )
        if len(self._tbt) >= self._max_tbt:
            raise SubscriptionRefused(ErrorCode.MAX_TICK_BY_TICK, error_text(ErrorCode.MAX_TICK_BY_TICK))
        self._tbt[(session.session_id, req_id)] = _TickByTick(session, req_id, listing, kind)

    def cancel_l1(self, session: Subscriber, req_id: int) -> bool:
        return self._l1.pop((session.session_id, req_id), None) is not None

    def cancel_depth(self, session: Subscriber, req_id: int) -> bool:
        return self._depth.pop((session.session_id, req_id), None) is not None

    def cancel_tick_by_tick(self, session: Subscriber, req_id: int) -> bool:
        return self._tbt.pop((session.session_id, req_id), None) is not None

    def drop_session(self, session_id: int) -> int:
        """Forget every subscription of a session (closed, or data lost on 1101); returns how many."""
        dropped = 0
        for table in (self._l1, self._depth, self._tbt):
            for key in [k for k in table if k[0] == session_id]:
                del table[key]
                dropped += 1
        return dropped

    def counts(self) -> dict[str, int]:
        """Live subscriptions by kind (tests and the CLI log read these)."""
        return {"mkt_data": len(self._l1), "depth": len(self._depth), "tick_by_tick": len(self._tbt)}

    def snapshot(self, session: Subscriber, req_id: int, listing: Listing, batch: MarketBatch | None) -> None:
        """Answer reqMktData(snapshot=1): the current L1 once, then tickSnapshotEnd."""
        sub = _L1(session, req_id, listing, frozenset())
        if listing.sec_type == "OPT":
            self._publish_option(sub, set())
        elif batch is not None:
            self._publish_underlying(sub, batch, set())
        self._send(session, [Out.TICK_SNAPSHOT_END, 1, req_id])

    def corrupt_next(self, kind: BadData, symbol: str) -> None:
        """Make the next publish for ``symbol`` carry ``kind`` of bad data (once)."""
        self._bad.setdefault(symbol, set()).add(kind)

    # --- publishing -----------------------------------------------------------------------
    def publish(self, batches: dict[str, MarketBatch], now_ns: int) -> None:
        """Send what every subscription gets for one market step."""
        if self.stalled:
            return
        bad = self._bad
        self._bad = {}
        for sub in list(self._l1.values()):
            symbol = sub.listing.symbol
            flaws = bad.get(symbol, set())
            if sub.listing.sec_type == "OPT":
                self._publish_option(sub, flaws)
            elif symbol in batches:
                self._publish_underlying(sub, batches[symbol], flaws)
        for depth in list(self._depth.values()):
            batch = batches.get(depth.listing.symbol)
            if batch is not None and batch.books and depth.listing.sec_type != "OPT":
                self._publish_depth(depth, batch.books[-1], bad.get(depth.listing.symbol, set()))
        for tbt in list(self._tbt.values()):
            batch = batches.get(tbt.listing.symbol)
            if batch is not None and tbt.listing.sec_type != "OPT":
                self._publish_tick_by_tick(tbt, batch, now_ns)

    def _send(self, session: Subscriber, fields: list[object]) -> None:
        session.send(fields)
        self.messages_sent += 1

    def _tick(self, session: Subscriber, tick: Tick) -> int:
        return int(DELAYED_OFFSET.get(tick, tick)) if session.market_data_type in (3, 4) else int(tick)

    def _price(self, sub: _L1, tick: Tick, price: float, size: float) -> None:
        self._send(sub.session, [Out.TICK_PRICE, 6, sub.req_id, self._tick(sub.session, tick), price, size, 0])

    def _size(self, sub: _L1, tick: Tick, size: float) -> None:
        self._send(sub.session, [Out.TICK_SIZE, 6, sub.req_id, self._tick(sub.session, tick), size])

    def _publish_underlying(self, sub: _L1, batch: MarketBatch, flaws: set[BadData]) -> None:
        if batch.quotes:
            quote: Quote = batch.quotes[-1]
            bid, ask = quote.bid, quote.ask
            if BadData.CROSSED_BOOK in flaws:
                bid = round(ask + 0.05, 2)
            if BadData.NEGATIVE_PRICE in flaws:
                bid = -abs(bid)
            self._price(sub, Tick.BID, bid, quote.bid_size)
            self._price(sub, Tick.ASK, ask, quote.ask_size)
        if sub.generic & {"104", "106"}:
            # the synthetic smile is flat at the money, so the ATM implied vol is the instantaneous vol
            vol = self._vol(sub.listing.symbol)
            if "104" in sub.generic:
                self._send(sub.session, [Out.TICK_GENERIC, 6, sub.req_id, Tick.HIST_VOLATILITY, vol])
            if "106" in sub.generic:
                self._send(sub.session, [Out.TICK_GENERIC, 6, sub.req_id, Tick.IMPLIED_VOLATILITY, vol])
        if sub.listing.sec_type == "IND":
            return  # an index has no tape: TWS sends no last/volume for it
        for trade in batch.trades:
            sub.volume += trade.size
            self._price(sub, Tick.LAST, trade.price, trade.size)
            if "233" in sub.generic:
                ms = trade.ts_event // 1_000_000
                rt = f"{trade.price};{trade.size};{ms};{sub.volume};{trade.price};true"
                self._send(sub.session, [Out.TICK_STRING, 6, sub.req_id, Tick.RT_VOLUME, rt])
        if batch.trades:
            self._size(sub, Tick.VOLUME, sub.volume)

    def _publish_option(self, sub: _L1, flaws: set[BadData]) -> None:
        quote = self._option_quote(sub.listing)
        if quote is None:
            return
        bid = -abs(quote.bid) if BadData.NEGATIVE_PRICE in flaws else quote.bid
        self._price(sub, Tick.BID, bid, OPTION_QUOTE_SIZE)
        self._price(sub, Tick.ASK, quote.ask, OPTION_QUOTE_SIZE)
        self._size(sub, Tick.VOLUME, quote.volume)
        delta = math.nan if BadData.NAN_GREEKS in flaws else quote.delta
        mid = round((quote.bid + quote.ask) / 2, 4)
        self._send(
            sub.session,
            [
                Out.TICK_OPTION_COMPUTATION,
                sub.req_id,
                self._tick(sub.session, Tick.MODEL_OPTION),
                0,  # tickAttrib: return-based
                quote.iv,
                delta,
                mid,
                0.0,  # pvDividend
                quote.gamma,
                quote.vega,
                quote.theta,
                quote.underlying_price,
            ],
        )

    def _publish_depth(self, depth: _Depth, book: BookSnapshot, flaws: set[BadData]) -> None:
        bids = [(p, s) for p, s in book.bids[: depth.rows]]
        asks = [(p, s) for p, s in book.asks[: depth.rows]]
        if BadData.CROSSED_BOOK in flaws and bids and asks:
            bids[0] = (round(asks[0][0] + 0.05, 2), bids[0][1])
        self._depth_side(depth, 1, depth.bids, bids)
        self._depth_side(depth, 0, depth.asks, asks)
        depth.bids, depth.asks = bids, asks

    def _depth_side(
        self, depth: _Depth, side: int, before: list[tuple[float, int]], after: list[tuple[float, int]]
    ) -> None:
        """Rows turning ``before`` into ``after``: updates, then inserts, then deletes from the end."""
        for position, level in enumerate(after):
            if position < len(before):
                if before[position] != level:
                    self._depth_row(depth, position, 1, side, level)
            else:
                self._depth_row(depth, position, 0, side, level)
        for position in range(len(before) - 1, len(after) - 1, -1):
            self._depth_row(depth, position, 2, side, before[position])

    def _depth_row(self, depth: _Depth, position: int, operation: int, side: int, level: tuple[float, int]) -> None:
        price, size = level
        if depth.smart:
            fields: list[object] = [
                Out.MARKET_DEPTH_L2,
                1,
                depth.req_id,
                position,
                depth.exchange,
                operation,
                side,
                price,
                size,
                True,
            ]
        else:
            fields = [Out.MARKET_DEPTH, 1, depth.req_id, position, operation, side, price, size]
        self._send(depth.session, fields)

    def _publish_tick_by_tick(self, tbt: _TickByTick, batch: MarketBatch, now_ns: int) -> None:
        seconds = now_ns // NS
        if tbt.kind in ("Last", "AllLast"):
            code = 1 if tbt.kind == "Last" else 2
            for trade in batch.trades:
                if trade.dark and tbt.kind == "Last":
                    continue
                exchange = "FINRA" if trade.dark else (tbt.listing.primary_exchange or "ISLAND")
                conditions = "" if not trade.dark else "4"
                self._send(
                    tbt.session,
                    [Out.TICK_BY_TICK, tbt.req_id, code, seconds, trade.price, trade.size, 0, exchange, conditions],
                )
        elif batch.quotes:
            quote = batch.quotes[-1]
            if tbt.kind == "BidAsk":
                fields: list[object] = [
                    Out.TICK_BY_TICK,
                    tbt.req_id,
                    3,
                    seconds,
                    quote.bid,
                    quote.ask,
                    quote.bid_size,
                    quote.ask_size,
                    0,
                ]
            else:
                fields = [Out.TICK_BY_TICK, tbt.req_id, 4, seconds, round((quote.bid + quote.ask) / 2, 4)]
            self._send(tbt.session, fields)
