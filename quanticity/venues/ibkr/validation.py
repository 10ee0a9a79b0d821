"""Validation and conversion of IBKR market data into the platform's messages.

Whatever TWS sends is checked before it becomes a :class:`~quanticity.messages.Quote`,
:class:`~quanticity.messages.Trade`, :class:`~quanticity.messages.BookSnapshot` or
:class:`~quanticity.messages.OptionQuote`: a crossed book, a non-positive price, a NaN or
infinite greek, an impossible size is rejected with a :class:`Rejected` naming the field and the
value, and counted by reason in a :class:`RejectCounter` — never raised to the caller's caller,
never passed to a strategy.

Conventions: ``ib_async`` marks "no value" as NaN (and −1 for some prices); a side without a
quote is rejected as ``missing``, which is counted separately from malformed data so a quiet
market does not look like a broken feed. Option bids of zero are legal (a deep out-of-the-money
option with no bid); every other price must be positive.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Sequence

from quanticity.messages import BookSnapshot, OptionContract, OptionQuote, Quote, Trade

__all__ = ["RejectCounter", "Rejected", "make_book", "make_option_quote", "make_quote", "make_trade"]


class Rejected(ValueError):
    """Market data that must not reach a strategy; ``reason`` is the counter key."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class RejectCounter(collections.Counter[str]):
    """Rejections by reason (``crossed_book``, ``non_positive_price``, ``non_finite_greek`` …)."""

    def total(self) -> int:  # type: ignore[override]
        return sum(self.values())


def _price(name: str, value: float, allow_zero: bool = False) -> float:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise Rejected("missing", f"{name} is not set")
    if not math.isfinite(value):
        raise Rejected("non_finite_price", f"{name}={value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise Rejected("non_positive_price", f"{name}={value!r}")
    return float(value)


def _size(name: str, value: float, max_size: int) -> int:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise Rejected("missing", f"{name} is not set")
    if not math.isfinite(value) or value < 0 or value > max_size or not float(value).is_integer():
        raise Rejected("impossible_size", f"{name}={value!r}")
    return int(value)


def make_quote(
    symbol: str, bid: float, ask: float, bid_size: float, ask_size: float, ts_event: int, ts_init: int, max_size: int
) -> Quote:
    """A validated top of book (bid < ask, both positive, sizes whole and bounded)."""
    b = _price(f"{symbol}.bid", bid)
    a = _price(f"{symbol}.ask", ask)
    if b >= a:
        raise Rejected("crossed_book", f"{symbol} bid {b} >= ask {a}")
    return Quote(
        ts_event=ts_event,
        ts_init=ts_init,
        symbol=symbol,
        bid=b,
        ask=a,
        bid_size=_size(f"{symbol}.bid_size", bid_size, max_size),
        ask_size=_size(f"{symbol}.ask_size", ask_size, max_size),
    )


def make_trade(
    symbol: str, price: float, size: float, ts_event: int, ts_init: int, max_size: int, dark: bool = False
) -> Trade:
    """A validated print (positive price, positive whole size)."""
    p = _price(f"{symbol}.trade_price", price)
    s = _size(f"{symbol}.trade_size", size, max_size)
    if s == 0:
        raise Rejected("impossible_size", f"{symbol}.trade_size=0")
    return Trade(ts_event=ts_event, ts_init=ts_init, symbol=symbol, price=p, size=s, dark=dark)


def make_book(
    symbol: str,
    bids: Sequence[tuple[float, float]],
    asks: Sequence[tuple[float, float]],
    ts_event: int,
    ts_init: int,
    max_size: int,
) -> BookSnapshot:
    """A validated L2 book: positive prices, bids strictly falling, asks rising, not crossed."""
    clean_bids = tuple(
        (_price(f"{symbol}.bid[{i}]", p), _size(f"{symbol}.bid_size[{i}]", s, max_size))
        for i, (p, s) in enumerate(bids)
    )
    clean_asks = tuple(
        (_price(f"{symbol}.ask[{i}]", p), _size(f"{symbol}.ask_size[{i}]", s, max_size))
        for i, (p, s) in enumerate(asks)
    )
    if not clean_bids or not clean_asks:
        raise Rejected("missing", f"{symbol} book has {len(clean_bids)} bids and {len(clean_asks)} asks")
    if clean_bids[0][0] >= clean_asks[0][0]:
        raise Rejected("crossed_book", f"{symbol} best bid {clean_bids[0][0]} >= best ask {clean_asks[0][0]}")
    if any(b[0] <= c[0] for b, c in zip(clean_bids, clean_bids[1:], strict=False)):
        raise Rejected("unordered_book", f"{symbol} bids not strictly falling: {clean_bids}")
    if any(a[0] >= c[0] for a, c in zip(clean_asks, clean_asks[1:], strict=False)):
        raise Rejected("unordered_book", f"{symbol} asks not strictly rising: {clean_asks}")
    return BookSnapshot(ts_event=ts_event, ts_init=ts_init, symbol=symbol, bids=clean_bids, asks=clean_asks)


def _greek(name: str, value: float | None) -> float:
    if value is None:
        raise Rejected("missing", f"{name} is not set")
    if not math.isfinite(value):
        raise Rejected("non_finite_greek", f"{name}={value!r}")
    return float(value)


def make_option_quote(
    contract: OptionContract,
    bid: float,
    ask: float,
    iv: float | None,
    delta: float | None,
    gamma: float | None,
    vega: float | None,
    theta: float | None,
    underlying_price: float | None,
    volume: float,
    ts_event: int,
    ts_init: int,
    open_interest: float = 0.0,
) -> OptionQuote:
    """A validated option quote with model greeks (finite; |delta| ≤ 1, gamma ≥ 0, iv > 0)."""
    key = contract.key
    b = _price(f"{key}.bid", bid, allow_zero=True)
    a = _price(f"{key}.ask", ask)
    if b > a:
        raise Rejected("crossed_book", f"{key} bid {b} > ask {a}")
    values = {
        "iv": _greek(f"{key}.iv", iv),
        "delta": _greek(f"{key}.delta", delta),
        "gamma": _greek(f"{key}.gamma", gamma),
        "vega": _greek(f"{key}.vega", vega),
        "theta": _greek(f"{key}.theta", theta),
    }
    if values["iv"] <= 0 or abs(values["delta"]) > 1.0 or values["gamma"] < 0:
        raise Rejected("impossible_greek", f"{key} iv={values['iv']} delta={values['delta']} gamma={values['gamma']}")
    und = _price(f"{key}.underlying_price", underlying_price if underlying_price is not None else math.nan)
    vol = 0 if volume is None or math.isnan(volume) else volume
    oi = 0 if open_interest is None or math.isnan(open_interest) else open_interest
    return OptionQuote(
        ts_event=ts_event,
        ts_init=ts_init,
        contract=contract,
        bid=b,
        ask=a,
        underlying_price=und,
        open_interest=_size(f"{key}.open_interest", oi, 10**9),
        volume=_size(f"{key}.volume", vol, 10**9),
        **values,
    )
