"""Rolling return correlation between underlyings, for the correlation limit (SPEC §8, seed 002).

Seed 002's risk manager kept a "matrix-based correlation" with a 0.7 limit that "allows hedging
(opposite direction)": a second position that moves with one already held in the same direction
adds the same risk twice. The gate asks :meth:`ReturnCorrelation.correlation` for each pair it
cares about, so only the pairs that matter are ever computed (no full matrix per tick).

Prices are sampled into fixed bars (``bar_s`` of event time) so two underlyings are compared on
the same instants: a bar's close is the last price seen in it. Returns are log returns between
consecutive *common* bars of the pair, the last ``window`` of them. Fewer than ``min_returns``
common returns, or a flat series (zero variance: correlation undefined), is *thin history*: the
answer is ``None`` and the gate lets the entry through and counts it — refusing every entry of a
fresh session because nothing is known yet would turn the rule into a trading halt.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np

NS_PER_SECOND = 1_000_000_000


class ReturnCorrelation:
    """Bar closes per underlying over a rolling window; Pearson correlation of their log returns."""

    def __init__(self, bar_s: float, window: int, min_returns: int) -> None:
        if not (math.isfinite(bar_s) and bar_s > 0):
            raise ValueError(f"bar_s: {bar_s} must be a positive number of seconds")
        if window < 2 or not 2 <= min_returns <= window:
            raise ValueError(f"window/min_returns: {window}/{min_returns} need 2 ≤ min_returns ≤ window")
        self.bar_ns = int(bar_s * NS_PER_SECOND)
        self.window = window
        self.min_returns = min_returns
        self._closes: dict[str, OrderedDict[int, float]] = {}
        self.rejected = 0  # unusable or out-of-order prices (counted, never raised)

    def observe(self, symbol: str, ts_ns: int, price: float) -> bool:
        """Record ``price`` of ``symbol`` at ``ts_ns``; False (and counted) for an unusable or stale price."""
        if not (isinstance(price, int | float) and math.isfinite(price) and price > 0):
            self.rejected += 1
            return False
        bucket = ts_ns // self.bar_ns
        closes = self._closes.setdefault(symbol, OrderedDict())
        if closes:
            last = next(reversed(closes))
            if bucket < last:  # an older bar is closed: a late price must not rewrite history
                self.rejected += 1
                return False
        closes[bucket] = float(price)
        closes.move_to_end(bucket)
        while len(closes) > self.window + 1:
            closes.popitem(last=False)
        return True

    def symbols(self) -> list[str]:
        """Underlyings with at least one bar."""
        return sorted(self._closes)

    def common_returns(self, a: str, b: str) -> tuple[np.ndarray, np.ndarray]:
        """Log returns of ``a`` and ``b`` between their consecutive common bars (the last ``window``)."""
        ca, cb = self._closes.get(a), self._closes.get(b)
        if not ca or not cb:
            return np.empty(0), np.empty(0)
        common = sorted(set(ca) & set(cb))
        pa = np.log(np.array([ca[k] for k in common]))
        pb = np.log(np.array([cb[k] for k in common]))
        return np.diff(pa)[-self.window :], np.diff(pb)[-self.window :]

    def correlation(self, a: str, b: str) -> float | None:
        """Correlation of the returns of ``a`` and ``b``; None on thin history (see the module doc)."""
        if a == b:
            return 1.0
        ra, rb = self.common_returns(a, b)
        if len(ra) < self.min_returns:
            return None
        da, db = ra - ra.mean(), rb - rb.mean()
        denominator = math.sqrt(float(da @ da) * float(db @ db))
        if denominator == 0.0 or not math.isfinite(denominator):
            return None
        return max(-1.0, min(1.0, float(da @ db) / denominator))

    # --- persistence ------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """JSON-serialisable snapshot (bar index → close per symbol)."""
        return {s: [[k, v] for k, v in closes.items()] for s, closes in sorted(self._closes.items())}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Reload :meth:`state`; entries that are not ``[bar, price]`` pairs are skipped and counted."""
        self._closes.clear()
        for symbol, rows in state.items():
            for row in rows if isinstance(rows, list) else []:
                try:
                    bucket, price = int(row[0]), float(row[1])
                except (TypeError, ValueError, IndexError):
                    self.rejected += 1
                    continue
                self.observe(symbol, bucket * self.bar_ns, price)
