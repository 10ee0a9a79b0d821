"""Realized and unrealized P&L per position, per strategy and per ET trading day (SPEC §9).

Pure bookkeeping over fills and marks: no I/O, no clock (days come from each event's
``ts_event``). Conventions, shared with :mod:`quanticity.execution.positions` so the numbers agree
with the router's Redis ledger:

* prices are per share, one contract is 100 shares;
* realized P&L is net of commissions, and a commission is realized when it is paid (a buy's
  commission is a realized cost at once, not folded into the average price);
* a position is keyed by contract; its strategy is the strategy of the fill that opened it, and
  every later fill of that contract (an exit, an emergency flatten) is attributed to it — so
  per-strategy P&L does not depend on what strategy name an exit order carried;
* the trading day of a fill is its calendar date in America/New_York (a fill at 00:05 ET belongs
  to the new day); the day's unrealized P&L is the open P&L after the last event of that day, and
  its mark-to-market P&L is ``realized + unrealized(day) − unrealized(previous day with events)``.

Fills are de-duplicated by ``exec_id``, like the store: a replayed execution changes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from quanticity.messages import Fill, Side

ET = ZoneInfo("America/New_York")
NS_PER_SECOND = 1_000_000_000
MULTIPLIER = 100


def commission(contracts: int, per_contract: float = 0.65, minimum: float = 1.0) -> float:
    """IBKR-like commission of one order execution: ``max(minimum, per_contract × contracts)``.

    Rounded to the cent like a broker statement (and like the simulated broker); zero contracts
    cost nothing. IBKR's further cap (a share of the trade value) is not modelled.
    """
    if contracts < 0:
        raise ValueError(f"contracts: {contracts} must not be negative")
    if contracts == 0:
        return 0.0
    return round(max(minimum, per_contract * contracts), 2)


def trading_day(ts_ns: int) -> date:
    """The ET calendar date of an epoch-ns timestamp (the day a fill is booked on)."""
    return datetime.fromtimestamp(ts_ns / NS_PER_SECOND, tz=UTC).astimezone(ET).date()


class _Pos(msgspec.Struct, kw_only=True):
    """Ledger of one contract (kept after it closes, for its realized P&L)."""

    key: str
    strategy: str
    quantity: int = 0
    avg_price: float = 0.0
    mark: float = 0.0
    mark_ns: int = 0
    realized: float = 0.0
    commissions: float = 0.0


class _Day(msgspec.Struct, kw_only=True):
    """Ledger of one ET trading day."""

    realized: float = 0.0
    commissions: float = 0.0
    fills: int = 0
    unrealized: float = 0.0  # open P&L after the day's last event
    by_strategy: dict[str, float] = msgspec.field(default_factory=dict)


@dataclass(frozen=True)
class PositionPnL:
    """P&L of one contract position (open or closed)."""

    key: str
    strategy: str
    quantity: int
    avg_price: float
    mark: float
    realized: float
    unrealized: float
    commissions: float

    @property
    def total(self) -> float:
        """Realized plus unrealized."""
        return self.realized + self.unrealized


@dataclass(frozen=True)
class PnLSummary:
    """Realized (net of commissions), unrealized and commissions of a group of positions."""

    realized: float
    unrealized: float
    commissions: float

    @property
    def total(self) -> float:
        """Realized plus unrealized."""
        return self.realized + self.unrealized


@dataclass(frozen=True)
class DayPnL:
    """P&L of one ET trading day; ``mtm`` is the day's mark-to-market P&L."""

    day: date
    realized: float
    commissions: float
    fills: int
    unrealized: float
    mtm: float
    by_strategy: Mapping[str, float]


class PnLBook:
    """Consumes fills and marks; reports P&L per position, strategy and ET day."""

    def __init__(self) -> None:
        self._positions: dict[str, _Pos] = {}
        self._strategies: dict[str, float] = {}
        self._strategy_commissions: dict[str, float] = {}
        self._days: dict[date, _Day] = {}
        self._seen: set[str] = set()

    # --- inputs -------------------------------------------------------------------------------
    def on_fill(self, fill: Fill) -> bool:
        """Book ``fill`` once; False for a seen ``exec_id``.

        Raises ``ValueError`` (and books nothing) for a non-positive quantity or a sell of more
        than is held: long options only, a short position is a bookkeeping error.
        """
        if fill.exec_id in self._seen:
            return False
        if fill.quantity <= 0:
            raise ValueError(f"fill.quantity: {fill.quantity} must be positive ({fill.exec_id})")
        key = fill.contract.key
        pos = self._positions.get(key)
        if fill.side is Side.BUY:
            if pos is None or pos.quantity == 0:
                pos = self._positions[key] = _Pos(
                    key=key,
                    strategy=fill.strategy,
                    realized=pos.realized if pos else 0.0,
                    commissions=pos.commissions if pos else 0.0,
                )
            qty = pos.quantity + fill.quantity
            pos.avg_price = (pos.avg_price * pos.quantity + fill.price * fill.quantity) / qty
            pos.quantity = qty
            realized = -fill.commission
        else:
            held = pos.quantity if pos else 0
            if pos is None or fill.quantity > held:
                raise ValueError(f"fill.quantity: sell {fill.quantity} of {key} but hold {held} ({fill.exec_id})")
            realized = (fill.price - pos.avg_price) * fill.quantity * MULTIPLIER - fill.commission
            pos.quantity -= fill.quantity
        if fill.ts_event >= pos.mark_ns:
            pos.mark, pos.mark_ns = fill.price, fill.ts_event
        pos.realized += realized
        pos.commissions += fill.commission
        self._seen.add(fill.exec_id)
        self._strategies[pos.strategy] = self._strategies.get(pos.strategy, 0.0) + realized
        self._strategy_commissions[pos.strategy] = self._strategy_commissions.get(pos.strategy, 0.0) + fill.commission
        day = self._day(fill.ts_event)
        day.realized += realized
        day.commissions += fill.commission
        day.fills += 1
        day.by_strategy[pos.strategy] = day.by_strategy.get(pos.strategy, 0.0) + realized
        day.unrealized = self._unrealized_total()
        return True

    def on_fills(self, fills: Iterable[Fill]) -> int:
        """Book many fills; returns how many were new."""
        return sum(1 for f in fills if self.on_fill(f))

    def mark(self, contract_key: str, price: float, now_ns: int) -> None:
        """Mark an open position at ``price`` (per share); unusable prices and unknown keys are ignored."""
        pos = self._positions.get(contract_key)
        if pos is None or pos.quantity == 0 or not (math.isfinite(price) and price > 0):
            return
        pos.mark, pos.mark_ns = price, now_ns
        self._day(now_ns).unrealized = self._unrealized_total()

    def marks(self, prices: Mapping[str, float], now_ns: int) -> None:
        """:meth:`mark` for every ``contract key → price``."""
        for key in sorted(prices):
            self.mark(key, prices[key], now_ns)

    # --- reports ------------------------------------------------------------------------------
    def position(self, contract_key: str) -> PositionPnL | None:
        """P&L of one contract (open or closed), or None if it never traded."""
        pos = self._positions.get(contract_key)
        return self._view(pos) if pos else None

    def positions(self, open_only: bool = False) -> dict[str, PositionPnL]:
        """P&L of every contract traded (``open_only``: the open ones)."""
        return {k: self._view(p) for k, p in sorted(self._positions.items()) if p.quantity or not open_only}

    def by_strategy(self) -> dict[str, PnLSummary]:
        """Realized (all time), unrealized (open now) and commissions per strategy."""
        names = sorted(set(self._strategies) | {p.strategy for p in self._positions.values()})
        return {
            name: PnLSummary(
                realized=self._strategies.get(name, 0.0),
                unrealized=sum(self._unrealized(p) for p in self._positions.values() if p.strategy == name),
                commissions=self._strategy_commissions.get(name, 0.0),
            )
            for name in names
        }

    def by_day(self) -> dict[date, DayPnL]:
        """P&L per ET trading day with events, in date order."""
        out: dict[date, DayPnL] = {}
        previous_unrealized = 0.0
        for day in sorted(self._days):
            ledger = self._days[day]
            out[day] = DayPnL(
                day=day,
                realized=ledger.realized,
                commissions=ledger.commissions,
                fills=ledger.fills,
                unrealized=ledger.unrealized,
                mtm=ledger.realized + ledger.unrealized - previous_unrealized,
                by_strategy=dict(ledger.by_strategy),
            )
            previous_unrealized = ledger.unrealized
        return out

    def day(self, day: date) -> DayPnL | None:
        """P&L of one ET trading day (None when nothing happened that day)."""
        return self.by_day().get(day)

    def total(self) -> PnLSummary:
        """Account-wide realized, unrealized and commissions."""
        return PnLSummary(
            realized=sum(self._strategies.values()),
            unrealized=self._unrealized_total(),
            commissions=sum(self._strategy_commissions.values()),
        )

    # --- persistence --------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """JSON-serialisable snapshot."""
        raw = {
            "positions": list(self._positions.values()),
            "strategies": self._strategies,
            "strategy_commissions": self._strategy_commissions,
            "days": {d.isoformat(): v for d, v in self._days.items()},
            "seen": self._seen,
        }
        return msgspec.json.decode(msgspec.json.encode(raw, order="deterministic"))

    @classmethod
    def restore(cls, state: Mapping[str, Any]) -> PnLBook:
        """Rebuild a book from :meth:`state`."""
        book = cls()
        for raw in state.get("positions", []):
            pos = msgspec.convert(raw, _Pos)
            book._positions[pos.key] = pos
        book._strategies = {k: float(v) for k, v in state.get("strategies", {}).items()}
        book._strategy_commissions = {k: float(v) for k, v in state.get("strategy_commissions", {}).items()}
        book._days = {date.fromisoformat(k): msgspec.convert(v, _Day) for k, v in state.get("days", {}).items()}
        book._seen = set(state.get("seen", []))
        return book

    # --- internals ----------------------------------------------------------------------------
    def _day(self, ts_ns: int) -> _Day:
        day = trading_day(ts_ns)
        ledger = self._days.get(day)
        if ledger is None:
            ledger = self._days[day] = _Day()
        return ledger

    @staticmethod
    def _unrealized(pos: _Pos) -> float:
        return (pos.mark - pos.avg_price) * pos.quantity * MULTIPLIER if pos.quantity and pos.mark > 0 else 0.0

    def _unrealized_total(self) -> float:
        return sum(self._unrealized(p) for p in self._positions.values())

    def _view(self, pos: _Pos) -> PositionPnL:
        return PositionPnL(
            key=pos.key,
            strategy=pos.strategy,
            quantity=pos.quantity,
            avg_price=pos.avg_price if pos.quantity else 0.0,
            mark=pos.mark,
            realized=pos.realized,
            unrealized=self._unrealized(pos),
            commissions=pos.commissions,
        )
