"""Every message that crosses an actor boundary, in one module.

Each type is a frozen ``msgspec.Struct``: immutable (a message cannot be changed after it was
sent, so an actor can never see a half-updated value), typed, cheap to build and to pickle for
Ray. Every event carries ``ts_event`` (when it happened, in the venue's or the simulator's time)
and ``ts_init`` (when this process created the object, wall-clock), both integer nanoseconds since
the epoch, so latencies can be measured end to end and replays keep the original event time.
"""

from __future__ import annotations

import enum
from typing import Literal, TypeVar

import msgspec

T = TypeVar("T")


class Right(enum.StrEnum):
    """Option right. The platform only ever buys calls or puts (SPEC §1)."""

    CALL = "C"
    PUT = "P"


class Side(enum.StrEnum):
    """Order side. SELL only ever closes a long option position."""

    BUY = "BUY"
    SELL = "SELL"


class Direction(enum.StrEnum):
    """Market view of a signal; a bullish signal buys calls, a bearish one buys puts."""

    BULLISH = "BULLISH"
    BEARISH = "BEARISH"


class TradingState(enum.StrEnum):
    """Risk-gate trading state (SPEC §8): ACTIVE trades, REDUCING only exits, HALTED only cancels."""

    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


class OrderStatus(enum.StrEnum):
    """Lifecycle of an order as the router records it in Redis."""

    PENDING_SEND = "PENDING_SEND"  # intent durable in Redis, not yet confirmed by the broker
    SUBMITTED = "SUBMITTED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every event: event time and creation time, ns since the epoch."""

    ts_event: int
    ts_init: int


class OptionContract(msgspec.Struct, frozen=True):
    """A listed equity/index option. ``expiry`` is an ISO date (YYYY-MM-DD)."""

    underlying: str
    expiry: str
    strike: float
    right: Right

    @property
    def key(self) -> str:
        """Stable, human-readable identifier (OCC-like): ``SPY 2026-11-20 450.00 C``."""
        return f"{self.underlying} {self.expiry} {self.strike:.2f} {self.right.value}"


class Quote(Message, frozen=True, kw_only=True):
    """Top of book of an underlying."""

    symbol: str
    bid: float
    ask: float
    bid_size: int
    ask_size: int


class Trade(Message, frozen=True, kw_only=True):
    """One print on the tape of an underlying; ``dark`` marks an off-exchange (dark-pool) print."""

    symbol: str
    price: float
    size: int
    dark: bool = False


class OptionTrade(Message, frozen=True, kw_only=True):
    """One option print with the quote it traded against (for aggressor classification)."""

    contract: OptionContract
    price: float
    size: int
    bid: float
    ask: float


class BookSnapshot(Message, frozen=True, kw_only=True):
    """Level-2 book of an underlying: ``(price, size)`` levels, best first."""

    symbol: str
    bids: tuple[tuple[float, int], ...]
    asks: tuple[tuple[float, int], ...]


class OptionQuote(Message, frozen=True, kw_only=True):
    """Quote of one option contract with the model greeks the venue supplies."""

    contract: OptionContract
    bid: float
    ask: float
    iv: float
    delta: float
    gamma: float
    vega: float
    theta: float
    underlying_price: float
    open_interest: int
    volume: int


class AltDataKind(enum.StrEnum):
    """Non-price information the 14-day+ and 1DTE strategies confirm with (SPEC §7)."""

    CONGRESS = "congress"  # a member of Congress traded the stock
    INSIDER = "insider"  # an officer/director traded the stock
    DARK_POOL = "dark_pool"  # a large off-exchange print, above/below the market
    FLOW_ALERT = "flow_alert"  # an unusual options flow alert (sweep, block, repeated hits)
    NEWS = "news"  # a headline with a sentiment score
    EARNINGS = "earnings"  # the next earnings date
    VOL_CLOSE = "vol_close"  # a prior session's closing ATM IV and 25Δ risk reversal (history)


class AltDataEvent(Message, frozen=True, kw_only=True):
    """One alternative-data event for ``symbol``.

    ``direction`` is +1 bullish (buying, accumulation, positive news), −1 bearish, 0 neutral;
    ``amount`` is the dollar size where one exists (trade value, premium), else 0; ``when`` is an
    ISO date for EARNINGS (the report date), else the event date.
    """

    kind: AltDataKind
    symbol: str
    direction: int
    amount: float = 0.0
    when: str = ""
    detail: dict[str, str] = msgspec.field(default_factory=dict)


class MarketBatch(Message, frozen=True, kw_only=True):
    """All events of one symbol over one feed step, sent as one actor call.

    Batching is what makes the actor graph fast: one Ray call carries many events
    (a plain one-message-per-tick chain saturates near 1,300 ticks/s on two cores).
    """

    symbol: str
    quotes: tuple[Quote, ...] = ()
    trades: tuple[Trade, ...] = ()
    books: tuple[BookSnapshot, ...] = ()
    options: tuple[OptionQuote, ...] = ()
    option_trades: tuple[OptionTrade, ...] = ()

    @property
    def event_count(self) -> int:
        """How many market events the batch carries."""
        return len(self.quotes) + len(self.trades) + len(self.books) + len(self.options) + len(self.option_trades)


class UnderlyingMark(Message, frozen=True, kw_only=True):
    """Spot and volatility of an underlying, sent by the feed to the simulated broker for pricing."""

    symbol: str
    spot: float
    vol: float


class FeatureSnapshot(Message, frozen=True, kw_only=True):
    """What a SymbolAnalytics actor tells the strategies about one symbol.

    ``origin_ts_init`` is the ``ts_init`` of the batch whose events made this snapshot due (the
    triggering tick), so the tick-to-order latency can be measured at the router.
    """

    symbol: str
    mid: float
    spread_bps: float
    imbalance_l1: float
    imbalance_l5: float
    realized_vol: float
    last_price: float
    momentum_bps: float
    computed_at: int
    valid_until: int
    origin_ts_init: int
    atm_call: OptionQuote | None = None
    atm_put: OptionQuote | None = None
    metrics: dict[str, float | None] = msgspec.field(default_factory=dict)  # SPEC §6 scalars; null = unknown


class Signal(Message, frozen=True, kw_only=True):
    """A decision to trade one contract, with the inputs that triggered it.

    Strategies emit entries (BUY); the position manager emits exits (SELL) through the same
    stream, so the risk gate sees every order before the router does.
    """

    signal_id: str
    strategy: str
    symbol: str
    direction: Direction
    contract: OptionContract
    confidence: int
    reference_bid: float
    reference_ask: float
    reason: str
    inputs: dict[str, float]
    origin_ts_init: int
    side: Side = Side.BUY
    quantity: int = 0  # 0 = sized by the risk gate (entries); exits name the contracts to sell

    @property
    def is_exit(self) -> bool:
        """True for a signal that closes (part of) a position."""
        return self.side is Side.SELL


class OrderIntent(Message, frozen=True, kw_only=True):
    """An order approved by the risk gate; ``order_ref`` is its idempotency reference."""

    order_ref: str
    signal_id: str
    strategy: str
    contract: OptionContract
    side: Side
    quantity: int
    limit_price: float
    origin_ts_init: int
    order_type: Literal["LMT", "STP"] = "LMT"
    """LMT: a limit at ``limit_price``. STP: a stop — a market order once the bid (sells) or the
    ask (buys) trades at or through ``stop_price``; protective bracket legs use it."""
    stop_price: float = 0.0
    oca_group: str = ""
    """One-cancels-all group at the broker ("" = none); the venue applies IB ocaType 1: an execution
    of one member cancels every other working member."""


class CancelRequest(Message, frozen=True, kw_only=True):
    """Request to cancel a working order; the risk gate lets it through in every state."""

    order_ref: str
    reason: str


class RiskDecision(Message, frozen=True, kw_only=True):
    """The risk gate's verdict on one signal; every denial carries a reason code."""

    signal_id: str
    approved: bool
    reason_code: str
    detail: str
    order_ref: str | None = None
    quantity: int = 0


class Fill(Message, frozen=True, kw_only=True):
    """One execution reported by the broker; ``exec_id`` de-duplicates replays."""

    exec_id: str
    order_ref: str
    contract: OptionContract
    side: Side
    quantity: int
    price: float
    commission: float
    strategy: str


class PositionEventKind(enum.StrEnum):
    """Position events subscribers hear about that are not fills."""

    STOP_MOVED = "stop_moved"
    EXPLANATION = "explanation"


class PositionEvent(Message, frozen=True, kw_only=True):
    """Something happened to an open position that is not a fill, for the subscribers' threads.

    ``event_id`` is deterministic (the plan and its revision, or the fill it explains), so the
    same event emitted again after a restart is recognised and never published twice.
    ``STOP_MOVED`` carries ``new_stop`` and why it moved (``reason``: trailing stop, break-even);
    ``EXPLANATION`` carries the overseer's ``text`` about the fill ``event_id`` names and who
    wrote it (``source``: model or template). ``thread`` is the exec id of the fill that opened the
    position — the entry alert the event replies to — so an event read after the position has
    closed (the streams are followed separately) still lands in the right thread; empty means the
    contract's open thread.
    """

    event_id: str
    contract_key: str
    kind: PositionEventKind
    thread: str = ""
    new_stop: float | None = None
    reason: str = ""
    text: str = ""
    source: str = ""


class BrokerOrder(msgspec.Struct, frozen=True, kw_only=True):
    """The broker's view of one order, as returned when the router reconciles."""

    order_ref: str
    status: OrderStatus
    filled: int
    remaining: int
    avg_price: float


class Heartbeat(Message, frozen=True, kw_only=True):
    """An actor's answer to the supervisor's ping, with its counters."""

    actor: str
    events: int
    errors: int
    detail: dict[str, float] = msgspec.field(default_factory=dict)


def encode(message: msgspec.Struct) -> bytes:
    """Serialise a message to JSON bytes for Redis and logs."""
    return _ENCODER.encode(message)


def decode(data: bytes | str, message_type: type[T]) -> T:
    """Parse JSON bytes written by :func:`encode` back into ``message_type``."""
    return msgspec.json.decode(data, type=message_type)


_ENCODER = msgspec.json.Encoder()
