"""Group a venue's validated market messages into per-symbol :class:`MarketBatch`es.

The IBKR feed hands over one message at a time (a quote, a print, a book, an option quote) as
``ib_async`` reports ticker updates; the symbol actors want one call carrying many events, exactly
as the simulated feed sends them. :class:`MarketBatcher` is the sink the feed writes into and the
actor drains on its flush timer. Messages of a kind a symbol actor does not take are refused and
counted (never raised: a bad message must not stop the feed), as are messages of symbols nobody
trades.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from quanticity.messages import BookSnapshot, MarketBatch, Message, OptionQuote, OptionTrade, Quote, Trade

__all__ = ["MarketBatcher"]


@dataclass
class _Pending:
    quotes: list[Quote] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)
    books: list[BookSnapshot] = field(default_factory=list)
    options: list[OptionQuote] = field(default_factory=list)
    option_trades: list[OptionTrade] = field(default_factory=list)


class MarketBatcher:
    """Collects messages per symbol; :meth:`drain` returns one :class:`MarketBatch` per symbol.

    ``symbols`` (None = any) limits what is kept. ``latest_ts`` is the newest ``ts_event`` seen:
    the market's time as the venue reports it, which the feed actor publishes as the system clock.
    ``init_clock`` (wall ns), when given, restamps ``ts_init``: a venue that stamps arrival with the
    market's accelerated time still reports latency (tick-to-order) on the wall clock.
    """

    def __init__(self, symbols: list[str] | None = None, init_clock: Callable[[], int] | None = None) -> None:
        self.symbols = set(symbols) if symbols is not None else None
        self.init_clock = init_clock
        self.rejected: collections.Counter[str] = collections.Counter()
        self.accepted = 0
        self.latest_ts = 0
        self._pending: dict[str, _Pending] = {}

    def add(self, message: Message) -> bool:
        """Keep ``message`` for its symbol's next batch; False (counted by reason) when refused."""
        if isinstance(message, Quote | Trade | BookSnapshot):
            symbol = message.symbol
        elif isinstance(message, OptionQuote | OptionTrade):
            symbol = message.contract.underlying
        else:
            self.rejected[f"kind_{type(message).__name__}"] += 1
            return False
        if self.symbols is not None and symbol not in self.symbols:
            self.rejected["unknown_symbol"] += 1
            return False
        if self.init_clock is not None:
            message = msgspec.structs.replace(message, ts_init=self.init_clock())
        pending = self._pending.setdefault(symbol, _Pending())
        if isinstance(message, Quote):
            pending.quotes.append(message)
        elif isinstance(message, Trade):
            pending.trades.append(message)
        elif isinstance(message, BookSnapshot):
            pending.books.append(message)
        elif isinstance(message, OptionQuote):
            pending.options.append(message)
        else:
            pending.option_trades.append(message)
        self.accepted += 1
        self.latest_ts = max(self.latest_ts, message.ts_event)
        return True

    def add_symbol(self, symbol: str) -> None:
        """Accept ``symbol`` from now on (no-op when every symbol is accepted)."""
        if self.symbols is not None:
            self.symbols.add(symbol)

    def remove_symbol(self, symbol: str) -> None:
        """Refuse ``symbol`` from now on and drop what is pending for it."""
        if self.symbols is not None:
            self.symbols.discard(symbol)
        self._pending.pop(symbol, None)

    @property
    def pending_events(self) -> int:
        """Events waiting for the next :meth:`drain`."""
        return sum(
            len(p.quotes) + len(p.trades) + len(p.books) + len(p.options) + len(p.option_trades)
            for p in self._pending.values()
        )

    def drain(self) -> dict[str, MarketBatch]:
        """One batch per symbol with pending events (events in arrival order per kind); empties the batcher."""
        out: dict[str, MarketBatch] = {}
        for symbol, p in self._pending.items():
            stamps = [m.ts_event for m in (*p.quotes, *p.trades, *p.books, *p.options, *p.option_trades)]
            out[symbol] = MarketBatch(
                ts_event=max(stamps),
                ts_init=min(m.ts_init for m in (*p.quotes, *p.trades, *p.books, *p.options, *p.option_trades)),
                symbol=symbol,
                quotes=tuple(p.quotes),
                trades=tuple(p.trades),
                books=tuple(p.books),
                options=tuple(p.options),
                option_trades=tuple(p.option_trades),
            )
        self._pending = {}
        return out
