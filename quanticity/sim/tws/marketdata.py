"""Market data subscriptions of the simulated TWS: L1, depth and tick-by-tick.

After every market step the server hands the step's batches to :meth:`MarketDataHub.publish`,
which writes to each subscriber what TWS would send for its subscriptions:

- L1 (reqMktData): bid/ask with sizes, last and volume; generic ticks 104 (historical vol),
  106 (implied vol) and 233 (RT volume); for options the model option computation (implied vol,
  delta, gamma, vega, theta, underlying price);
- delayed L1 (reqMktData after reqMarketDataType 3 or 4): the simulated account has no live
  market data permissions once it asks for delayed data, so — as TWS does for such an account —
  the request gets notice 10167, the ticker's marketDataType is 3, and the ticks are the delayed
  types (66–76, 83) carrying what was live ``delayed_s`` (900) simulated seconds earlier: the hub
  keeps a per-contract history ring of every step's top of book, prints, cumulative volume and
  session open/high/low (underlyings from the first step, options from their first L1
  subscription) and replays it ``delayed_s`` late, step by step. Until that much history exists
  nothing is sent (a real delayed feed shows nothing of today's session in its first 15
  minutes either). Generic ticks 104/106/233 and the prior close have no delayed form here and
  are not sent. Type 2/4 (frozen) only differ from 1/3 after the close, and the simulated market
  never closes, so they stream like 1/3 and the ticker reports 1 or 3, as TWS does in trading
  hours. Depth and tick-by-tick do not exist delayed: while the session's type is 3 or 4 they
  are refused with error 354 (market data not subscribed), as TWS refuses a delayed-only account;
- depth (reqMktDepth): insert/update/delete rows against what this subscriber last received,
  ``updateMktDepthL2`` for smart depth else ``updateMktDepth``, capped at ``max_depth_lines``
  concurrent requests per account (error 309 for one more, cancelMktDepth frees a line);
- tick-by-tick ("Last" without off-exchange prints, "AllLast" with them, "BidAsk", "MidPoint"),
  capped at ``max_tick_by_tick`` (error 10190).

Scripted bad data (:meth:`corrupt_next`) lets tests check that a connector rejects a crossed
book, a NaN greek or a negative price instead of passing it on — and, with a malformed price
(the text ``"abc"`` where a number belongs), that a message the client library cannot even
parse is counted rather than silently dropped.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import math
from collections.abc import Callable
from typing import Protocol

from quanticity.messages import BookSnapshot, MarketBatch, OptionQuote, Quote, Right
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

    def error(self, req_id: int, code: int, text: str) -> None: ...


DELAYED_TYPES = frozenset({3, 4})
"""Market data types that stream delayed data (3 delayed, 4 delayed-frozen)."""


class BadData(enum.StrEnum):
    """Malformed market data the fault script can make the simulator send once."""

    CROSSED_BOOK = "crossed_book"
    NAN_GREEKS = "nan_greeks"
    NEGATIVE_PRICE = "negative_price"
    MALFORMED_PRICE = "malformed_price"
    """The bid tick's price field carries ``"abc"``: not a number at all (a broken feed or proxy)."""


@dataclasses.dataclass(slots=True)
class _L1:
    session: Subscriber
    req_id: int
    listing: Listing
    generic: frozenset[str]
    volume: int = 0
    delayed: bool = False
    cursor_ns: int = 0
    """Delayed only: time of the last history frame sent (0 = nothing sent yet)."""
    sent_hlo: tuple[float, float, float] | None = None
    sent_open_interest: int | None = None
    """Options with generic tick 101: the open interest last sent (TWS sends it when it changes)."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Frame:
    """What was live for one contract after one market step (the delayed stream replays these)."""

    ts_ns: int
    quoted: bool = False
    """Whether the step carried a new top of book (live sends bid/ask only then)."""
    bid: float = math.nan
    ask: float = math.nan
    bid_size: float = 0.0
    ask_size: float = 0.0
    trades: tuple[tuple[float, float], ...] = ()
    last: float = math.nan
    last_size: float = 0.0
    volume: float = 0.0
    open: float = math.nan
    high: float = math.nan
    low: float = math.nan
    option: OptionQuote | None = None


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
        delayed_s: float = 900.0,
    ) -> None:
        self._option_quote = option_quote
        self._vol = underlying_vol
        self._max_depth = max_depth_lines
        self._max_tbt = max_tick_by_tick
        self._delay_ns = int(delayed_s * NS)
        self._history: dict[str | int, collections.deque[_Frame]] = {}
        """Per underlying symbol (str) or option conId (int): frames, oldest first."""
        self._now_ns = 0
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
        delayed = session.market_data_type in DELAYED_TYPES
        self._l1[(session.session_id, req_id)] = _L1(session, req_id, listing, generic, delayed=delayed)
        if delayed:
            session.error(req_id, ErrorCode.DELAYED_DATA_DISPLAYED, error_text(ErrorCode.DELAYED_DATA_DISPLAYED))
        session.send([Out.TICK_REQ_PARAMS, req_id, listing.min_tick, "9c0001", 3])
        session.send([Out.MARKET_DATA_TYPE, 1, req_id, 3 if delayed else 1])

    def _refuse_delayed(self, session: Subscriber, what: str) -> None:
        """Depth and tick-by-tick have no delayed form: a delayed-only session gets error 354."""
        if session.market_data_type in DELAYED_TYPES:
            raise SubscriptionRefused(
                ErrorCode.MARKET_DATA_NOT_SUBSCRIBED,
                error_text(ErrorCode.MARKET_DATA_NOT_SUBSCRIBED, detail=f" {what} is not available delayed."),
            )

    def add_depth(
        self, session: Subscriber, req_id: int, listing: Listing, rows: int, smart: bool, exchange: str
    ) -> None:
        """reqMktDepth; raises SubscriptionRefused(309) past the account's depth lines, 354 when delayed."""
        self._check_new(session, req_id)
        self._refuse_delayed(session, "Market depth")
        if len(self._depth) >= self._max_depth:
            raise SubscriptionRefused(
                ErrorCode.MAX_DEPTH_REQUESTS, error_text(ErrorCode.MAX_DEPTH_REQUESTS, limit=self._max_depth)
            )
        self._depth[(session.session_id, req_id)] = _Depth(session, req_id, listing, max(rows, 1), smart, exchange)

    def add_tick_by_tick(self, session: Subscriber, req_id: int, listing: Listing, kind: str) -> None:
        """reqTickByTickData; raises SubscriptionRefused(10190) past the account's limit, 354 when delayed."""
        self._check_new(session, req_id)
        self._refuse_delayed(session, "Tick-by-tick data")
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

    def counts_for(self, symbol: str, client_id: int | None = None) -> dict[str, int]:
        """Live subscriptions on ``symbol`` and its options by kind, of one API client or all.

        Tests check that a removed symbol's lines were cancelled by the client that held them.
        """

        def held(sub: _L1 | _Depth | _TickByTick) -> bool:
            mine = client_id is None or getattr(sub.session, "client_id", None) == client_id
            return mine and sub.listing.symbol == symbol

        return {
            "mkt_data": sum(1 for s in self._l1.values() if held(s)),
            "depth": sum(1 for s in self._depth.values() if held(s)),
            "tick_by_tick": sum(1 for s in self._tbt.values() if held(s)),
        }

    def snapshot(self, session: Subscriber, req_id: int, listing: Listing, batch: MarketBatch | None) -> None:
        """Answer reqMktData(snapshot=1): the current (or, when delayed, the delayed) L1 once, then tickSnapshotEnd."""
        sub = _L1(session, req_id, listing, frozenset(), delayed=session.market_data_type in DELAYED_TYPES)
        if sub.delayed:
            self._publish_delayed(sub, self._now_ns)
        elif listing.sec_type == "OPT":
            self._publish_option(sub, set())
        elif batch is not None:
            self._publish_underlying(sub, batch, set())
        self._send(session, [Out.TICK_SNAPSHOT_END, 1, req_id])

    def corrupt_next(self, kind: BadData, symbol: str) -> None:
        """Make the next publish for ``symbol`` carry ``kind`` of bad data (once)."""
        self._bad.setdefault(symbol, set()).add(kind)

    # --- publishing -----------------------------------------------------------------------
    def publish(self, batches: dict[str, MarketBatch], now_ns: int) -> None:
        """Send what every subscription gets for one market step (history is kept even while stalled)."""
        self._now_ns = now_ns
        self._record(batches, now_ns)
        if self.stalled:
            return
        bad = self._bad
        self._bad = {}
        for sub in list(self._l1.values()):
            symbol = sub.listing.symbol
            flaws = bad.get(symbol, set())
            if sub.delayed:
                self._publish_delayed(sub, now_ns)
            elif sub.listing.sec_type == "OPT":
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
        self._prune(now_ns)

    # --- delayed data ---------------------------------------------------------------------
    def _record(self, batches: dict[str, MarketBatch], now_ns: int) -> None:
        """Append this step's live state of every underlying and of every L1-subscribed option."""
        for symbol, batch in batches.items():
            ring = self._history.setdefault(symbol, collections.deque())
            ring.append(_next_frame(ring[-1] if ring else None, batch, now_ns))
        options = {s.listing.con_id: s.listing for s in self._l1.values() if s.listing.sec_type == "OPT"}
        for key in [k for k in self._history if isinstance(k, int) and k not in options]:
            del self._history[key]  # nobody streams it: a later subscription must not see a stale gap
        for con_id, listing in options.items():
            quote = self._option_quote(listing)
            if quote is not None:
                self._history.setdefault(con_id, collections.deque()).append(_Frame(now_ns, option=quote))

    def _prune(self, now_ns: int) -> None:
        """Keep, per contract, the newest frame at or before the delay cutoff and everything after it."""
        cutoff = now_ns - self._delay_ns
        for ring in self._history.values():
            while len(ring) >= 2 and ring[1].ts_ns <= cutoff:
                ring.popleft()

    def _publish_delayed(self, sub: _L1, now_ns: int) -> None:
        """Send the frames that became ``delayed_s`` old since the last send (the newest only at first)."""
        key: str | int = sub.listing.con_id if sub.listing.sec_type == "OPT" else sub.listing.symbol
        ring = self._history.get(key)
        if not ring:
            return
        cutoff = now_ns - self._delay_ns
        due: list[_Frame] = []
        for frame in ring:  # oldest first; pruning keeps the due frames at the front
            if frame.ts_ns > cutoff:
                break
            if frame.ts_ns > sub.cursor_ns:
                due.append(frame)
        if not due:
            return
        if sub.cursor_ns == 0 or key == sub.listing.con_id:
            self._send_frame_state(sub, due[-1])
        else:
            for frame in due:
                self._replay_frame(sub, frame)
        sub.cursor_ns = due[-1].ts_ns

    def _send_frame_state(self, sub: _L1, frame: _Frame) -> None:
        """The whole delayed state at ``frame``: what a new delayed subscription (or an option) gets."""
        if frame.option is not None:
            self._publish_option_quote(sub, frame.option, set())
            return
        if math.isfinite(frame.bid) and math.isfinite(frame.ask):
            self._price(sub, Tick.BID, frame.bid, frame.bid_size)
            self._price(sub, Tick.ASK, frame.ask, frame.ask_size)
        if sub.listing.sec_type == "IND":
            return
        if math.isfinite(frame.last):
            self._price(sub, Tick.LAST, frame.last, frame.last_size)
            self._size(sub, Tick.VOLUME, frame.volume)
        self._send_hlo(sub, frame)

    def _replay_frame(self, sub: _L1, frame: _Frame) -> None:
        """One step of the delayed stream: the same ticks the live stream sent for that step."""
        if frame.quoted:
            self._price(sub, Tick.BID, frame.bid, frame.bid_size)
            self._price(sub, Tick.ASK, frame.ask, frame.ask_size)
        if sub.listing.sec_type == "IND" or not frame.trades:
            return
        for price, size in frame.trades:
            self._price(sub, Tick.LAST, price, size)
        self._size(sub, Tick.VOLUME, frame.volume)
        self._send_hlo(sub, frame)

    def _send_hlo(self, sub: _L1, frame: _Frame) -> None:
        hlo = (frame.high, frame.low, frame.open)
        if not math.isfinite(frame.open) or hlo == sub.sent_hlo:
            return
        sub.sent_hlo = hlo
        self._price(sub, Tick.HIGH, frame.high, 0)
        self._price(sub, Tick.LOW, frame.low, 0)
        self._price(sub, Tick.OPEN, frame.open, 0)

    def _send(self, session: Subscriber, fields: list[object]) -> None:
        session.send(fields)
        self.messages_sent += 1

    @staticmethod
    def _tick(sub: _L1, tick: Tick) -> int:
        """The tick type on the wire: the delayed counterpart for a delayed subscription."""
        return int(DELAYED_OFFSET.get(tick, tick)) if sub.delayed else int(tick)

    def _price(self, sub: _L1, tick: Tick, price: float, size: float) -> None:
        self._send(sub.session, [Out.TICK_PRICE, 6, sub.req_id, self._tick(sub, tick), price, size, 0])

    def _size(self, sub: _L1, tick: Tick, size: float) -> None:
        self._send(sub.session, [Out.TICK_SIZE, 6, sub.req_id, self._tick(sub, tick), size])

    def _publish_underlying(self, sub: _L1, batch: MarketBatch, flaws: set[BadData]) -> None:
        if batch.quotes:
            quote: Quote = batch.quotes[-1]
            bid, ask = quote.bid, quote.ask
            if BadData.CROSSED_BOOK in flaws:
                bid = round(ask + 0.05, 2)
            if BadData.NEGATIVE_PRICE in flaws:
                bid = -abs(bid)
            if BadData.MALFORMED_PRICE in flaws:
                self._send(sub.session, [Out.TICK_PRICE, 6, sub.req_id, self._tick(sub, Tick.BID), "abc", 1, 0])
            else:
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
        if quote is not None:
            self._publish_option_quote(sub, quote, flaws)

    def _publish_option_quote(self, sub: _L1, quote: OptionQuote, flaws: set[BadData]) -> None:
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
                self._tick(sub, Tick.MODEL_OPTION),
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
        if "101" in sub.generic and quote.open_interest != sub.sent_open_interest:
            # generic tick 101 on an option: its open interest as tick 27 (call) or 28 (put); the
            # exposures (GEX, walls, max pain) weight every contract by it
            call = quote.contract.right is Right.CALL
            tick = Tick.OPTION_CALL_OPEN_INTEREST if call else Tick.OPTION_PUT_OPEN_INTEREST
            self._size(sub, tick, quote.open_interest)
            sub.sent_open_interest = quote.open_interest

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


def _next_frame(prev: _Frame | None, batch: MarketBatch, now_ns: int) -> _Frame:
    """The frame after ``prev`` for one underlying's step.

    Quotes and the last print carry forward (the live ticker keeps them too); volume and the
    session's open/high/low accumulate from the prints.
    """
    base = prev or _Frame(0)
    quote = batch.quotes[-1] if batch.quotes else None
    trades = tuple((t.price, float(t.size)) for t in batch.trades)
    last, last_size = trades[-1] if trades else (base.last, base.last_size)
    prices = [p for p, _ in trades]
    first = base.open if math.isfinite(base.open) else (prices[0] if prices else math.nan)
    return _Frame(
        ts_ns=now_ns,
        quoted=quote is not None,
        bid=quote.bid if quote is not None else base.bid,
        ask=quote.ask if quote is not None else base.ask,
        bid_size=float(quote.bid_size) if quote is not None else base.bid_size,
        ask_size=float(quote.ask_size) if quote is not None else base.ask_size,
        trades=trades,
        last=last,
        last_size=last_size,
        volume=base.volume + sum(size for _, size in trades),
        open=first,
        high=max([base.high, *prices]) if math.isfinite(base.high) else max(prices, default=math.nan),
        low=min([base.low, *prices]) if math.isfinite(base.low) else min(prices, default=math.nan),
    )
