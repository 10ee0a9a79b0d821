"""The risk gate's own view of the account: P&L book, equity high-water marks, underlying returns.

The router books fills into its ledger; the gate needs more than that ledger keeps — today's
mark-to-market P&L for the daily-loss breaker, the equity peak for the drawdown limit, the
underlyings' recent returns for the correlation limit — so it follows ``trades:fills`` and the
marks itself and keeps them here. Everything is library code without Ray; the risk actor feeds it
from Redis and persists it through :class:`~quanticity.execution.pnl_store.RedisPnLStore`.

Fills are persisted the moment they are booked (with the stream cursor, in one transaction);
mark-only changes at most every ``pnl_mark_persist_s`` simulated seconds, because marks are
re-read from the router's positions after a restart anyway. The object is shared by the actor's
threads (signals, fills, the monitor loop), so every method takes one lock.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from quanticity.config.models import RiskSection
from quanticity.execution.pnl import PnLBook, trading_day
from quanticity.execution.pnl_store import START_CURSOR, PnLSnapshot
from quanticity.messages import Fill, Quote, decode
from quanticity.risk.correlation import ReturnCorrelation
from quanticity.risk.drawdown import EquityCurve

NS = 1_000_000_000


class PnLPersistence(Protocol):
    """Where the book goes (``RedisPnLStore``)."""

    def save(self, book: PnLBook, cursor: str | None, equity: Mapping[str, Any]) -> None: ...


class CorrelationPersistence(Protocol):
    """Where the returns window goes (``RedisRiskStore``)."""

    def save_correlation(self, state: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True)
class AccountFigures:
    """The P&L numbers the gate's breakers read."""

    realized: float  # all time, net of commissions
    unrealized: float
    day_pnl: float  # today's (ET) mark-to-market P&L
    equity: float  # account equity + realized + unrealized
    equity_peak: float  # highest equity over the drawdown window (≥ equity)


class AccountMonitor:
    """P&L book + equity curve + returns window, thread-safe, with its persistence cadence."""

    def __init__(
        self,
        config: RiskSection,
        snapshot: PnLSnapshot | None = None,
        pnl_store: PnLPersistence | None = None,
        correlation_store: CorrelationPersistence | None = None,
        correlation_state: Mapping[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.book = snapshot.book if snapshot else PnLBook()
        self.cursor = snapshot.cursor if snapshot else START_CURSOR
        self.equity = EquityCurve(config.drawdown_window_days)
        self.equity.restore(snapshot.equity if snapshot else {})
        self.returns = ReturnCorrelation(
            config.correlation_bar_s, config.correlation_window, config.correlation_min_returns
        )
        self.returns.restore(correlation_state or {})
        self._pnl_store = pnl_store
        self._correlation_store = correlation_store
        self._lock = threading.RLock()
        self._dirty = False
        self._persisted_ns = 0
        self.fills_booked = 0
        self.fills_duplicate = 0
        self.fills_rejected = 0  # malformed records and impossible fills (counted, skipped, never booked)
        self.quotes_rejected = 0

    # --- inputs ------------------------------------------------------------------------------
    def on_fill_record(self, entry_id: str, fields: Mapping[str, str]) -> str:
        """Book one ``trades:fills`` entry; returns "booked", "duplicate" or "rejected: <why>".

        A booked fill is persisted at once with ``entry_id`` as the cursor, so a restart neither
        loses it nor counts it twice (the replay is a duplicate ``exec_id``).
        """
        try:
            fill = decode(fields["fill"], Fill)
        except (KeyError, ValueError) as exc:
            self.fills_rejected += 1
            return f"rejected: fills entry {entry_id} unreadable ({exc})"
        with self._lock:
            try:
                booked = self.book.on_fill(fill)
            except ValueError as exc:
                self.fills_rejected += 1
                return f"rejected: {exc}"
            if not booked:
                self.fills_duplicate += 1
                return "duplicate"
            self.fills_booked += 1
            self.cursor = entry_id
            self._observe_equity(fill.ts_event)
            self.persist(fill.ts_event)
        return "booked"

    def on_marks(self, marks: Mapping[str, float], now_ns: int) -> None:
        """Mark open positions (contract key → price per share); persisted on the mark cadence."""
        with self._lock:
            self.book.marks(marks, now_ns)
            self._observe_equity(now_ns)
            self._dirty = True
            if now_ns - self._persisted_ns >= self.config.pnl_mark_persist_s * NS:
                self.persist(now_ns)

    def on_quote(self, symbol: str, raw: str | bytes) -> bool:
        """Sample an underlying's last quote (JSON :class:`Quote`) into the returns window."""
        try:
            quote = decode(raw, Quote)
        except ValueError:
            self.quotes_rejected += 1
            return False
        if not (math.isfinite(quote.bid) and math.isfinite(quote.ask)) or quote.bid <= 0 or quote.ask < quote.bid:
            self.quotes_rejected += 1
            return False
        with self._lock:  # a late quote (an older bar) is refused and counted by the window itself
            return self.returns.observe(symbol, quote.ts_event, (quote.bid + quote.ask) / 2)

    # --- outputs -----------------------------------------------------------------------------
    def correlation(self, a: str, b: str) -> float | None:
        """:class:`~quanticity.risk.gate.CorrelationProvider` for the gate."""
        with self._lock:
            return self.returns.correlation(a, b)

    def figures(self, now_ns: int) -> AccountFigures:
        """Realized, unrealized, today's P&L, equity and its window peak, as of ``now_ns``."""
        with self._lock:
            total = self.book.total()
            today = trading_day(now_ns)
            day = self.book.day(today)
            equity = self.config.account_equity + total.total
            peak = self.equity.peak(today)
            return AccountFigures(
                realized=total.realized,
                unrealized=total.unrealized,
                day_pnl=day.mtm if day is not None else 0.0,
                equity=equity,
                equity_peak=max(equity, peak) if peak is not None else equity,
            )

    def persist(self, now_ns: int) -> None:
        """Write the book (with its cursor), the equity marks and the returns window."""
        with self._lock:
            if self._pnl_store is not None:
                self._pnl_store.save(self.book, self.cursor, self.equity.state())
            if self._correlation_store is not None:
                self._correlation_store.save_correlation(self.returns.state())
            self._dirty = False
            self._persisted_ns = now_ns

    def flush(self, now_ns: int) -> None:
        """Persist pending mark-only changes (at shutdown)."""
        with self._lock:
            if self._dirty:
                self.persist(now_ns)

    def stats(self) -> dict[str, float]:
        """Counters for the heartbeat."""
        return {
            "pnl_fills_booked": self.fills_booked,
            "pnl_fills_duplicate": self.fills_duplicate,
            "pnl_fills_rejected": self.fills_rejected,
            "quotes_rejected": self.quotes_rejected + self.returns.rejected,
        }

    def _observe_equity(self, ts_ns: int) -> None:
        self.equity.observe(ts_ns, self.config.account_equity + self.book.total().total)
