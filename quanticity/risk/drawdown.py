"""Equity high-water marks per ET day, for the drawdown limit (SPEC §8, seed 002: HWM, 10 % max).

Equity is ``account equity + realized P&L (all time) + unrealized P&L``. Keeping one high, low and
last value per ET calendar day is enough to answer "peak over the last N days" exactly, keeps the
state small whatever the sampling rate, and makes observing the same value twice (a replay after a
restart) harmless: a max and a min do not double count.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from quanticity.execution.pnl import trading_day


@dataclass
class DayEquity:
    """Equity extremes and last value of one ET day."""

    high: float
    low: float
    last: float


class EquityCurve:
    """Daily equity extremes over a rolling window of ET calendar days."""

    def __init__(self, window_days: int) -> None:
        if window_days <= 0:
            raise ValueError(f"window_days: {window_days} must be positive")
        self.window_days = window_days
        self._days: dict[date, DayEquity] = {}
        self.rejected = 0

    def observe(self, ts_ns: int, equity: float) -> bool:
        """Record ``equity`` at ``ts_ns``; False (counted) for a non-finite value."""
        if not math.isfinite(equity):
            self.rejected += 1
            return False
        day = trading_day(ts_ns)
        record = self._days.get(day)
        if record is None:
            self._days[day] = DayEquity(high=equity, low=equity, last=equity)
        else:
            record.high, record.low, record.last = max(record.high, equity), min(record.low, equity), equity
        oldest = day - timedelta(days=self.window_days - 1)
        for stale in [d for d in self._days if d < oldest]:
            del self._days[stale]
        return True

    def peak(self, today: date) -> float | None:
        """Highest equity seen over the window ending ``today`` (None before any observation)."""
        oldest = today - timedelta(days=self.window_days - 1)
        highs = [r.high for d, r in self._days.items() if oldest <= d <= today]
        return max(highs) if highs else None

    def drawdown_pct(self, today: date, equity: float) -> float:
        """Peak-to-now loss in % of the window's peak (0 at or above the peak, or with no history)."""
        peak = self.peak(today)
        if peak is None or peak <= 0 or not math.isfinite(equity):
            return 0.0
        return max(0.0, (peak - equity) / peak * 100)

    def day(self, day: date) -> DayEquity | None:
        """The record of one day."""
        return self._days.get(day)

    # --- persistence ------------------------------------------------------------------------
    def state(self) -> dict[str, dict[str, float]]:
        """JSON-serialisable snapshot: ISO day → high / low / last."""
        return {d.isoformat(): {"high": r.high, "low": r.low, "last": r.last} for d, r in sorted(self._days.items())}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Reload :meth:`state`; malformed days are skipped and counted."""
        self._days.clear()
        for iso, raw in state.items():
            try:
                record = DayEquity(high=float(raw["high"]), low=float(raw["low"]), last=float(raw["last"]))
                day = date.fromisoformat(iso)
            except (TypeError, ValueError, KeyError):
                self.rejected += 1
                continue
            if all(math.isfinite(v) for v in (record.high, record.low, record.last)):
                self._days[day] = record
            else:
                self.rejected += 1
