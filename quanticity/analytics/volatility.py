"""Realized volatility, volatility regime, IV rank / percentile and the 25-delta risk reversal.

**Realized volatility** (intraday, annualised). Trade prices are sampled on a grid of ``bar_s``
(60 s) bars with the previous-tick rule (a bar's close is its last trade price; a bar without
trades keeps the previous close). Each completed bar contributes the log return
``r_b = ln(c_b / c_{b−1})`` (0 for an empty bar). Over the last ``window_bars`` (30) returns:

    RV = sqrt( mean(r²) · bars_per_year ),   bars_per_year = 252 · 6.5 · 3600 / bar_s,

i.e. the realized-variance estimator (sum of squared returns, not demeaned; Andersen, Bollerslev,
Diebold & Labys 2001) scaled to a *trading* year of 252 days × 6.5 h, the same time unit the BSM
module and ``SymbolFeatures.realized_vol`` use, so RV compares directly with implied vols.
NaN until ``min_bars`` (10) returns exist. A bar is complete when a trade of a later bar arrives.
A gap of more than ``max_gap_s`` (900 s) between trades (overnight, halt) starts a new session:
the return window is cleared and the return across the gap is dropped (counted ``gap_reset``).
At most ``window_bars + history_bars`` empty bars are emitted for one gap (the rest change nothing).

**Volatility regime** (NORMAL / ELEVATED / SHOCK), first source available:

1. VIX1D (index points): NORMAL < 15 ≤ ELEVATED < 25 ≤ SHOCK;
2. realized vol relative to its rolling mean (``ratio = RV / mean(RV over the last history_bars
   readings)``, needing ``min_history`` readings): NORMAL < 1.25 ≤ ELEVATED < 2.0 ≤ SHOCK;
3. neither → **ELEVATED** with ``source = "none"``: unknown volatility is treated with caution
   (not as calm, and not as a shock that would stop everything at the open); check ``source``.

**IV rank / percentile** of an IV against a history of daily closing IVs (the last ``window``
= 252 closes before the day): ``rank = (iv − min) / (max − min) · 100`` clipped to [0, 100]
(a flat history gives 0 / 50 / 100 for below / equal / above); ``percentile = 100 · #(h < iv) /
#h`` (% of days below). NaN with fewer than ``min_days`` (20) closes or a bad IV.

**25Δ risk reversal** of one expiry: ``RR25 = IV(25Δ call) − IV(25Δ put)``; each side's IV is
linearly interpolated in |delta| (put deltas may be given negative or as absolute values) between
the bracketing quotes — no extrapolation (NaN if 0.25 is outside the quoted range). The 25Δ
strikes are interpolated the same way. Negative RR (puts richer) is the usual equity-index skew.

Bad numbers never raise: they are skipped and counted in ``rejected``.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from datetime import date
from typing import Any, NamedTuple

import numpy as np
from numba import njit
from numpy.typing import ArrayLike, NDArray

from quanticity.analytics.coerce import as_1d as _as_1d
from quanticity.analytics.coerce import timestamps as _timestamps
from quanticity.analytics.coerce import to_float as _to_float
from quanticity.messages import AltDataEvent

__all__ = [
    "SECONDS_PER_TRADING_YEAR",
    "IVHistory",
    "IVRank",
    "RealizedVolReading",
    "RealizedVolSeries",
    "RealizedVolState",
    "RegimeReading",
    "SkewResult",
    "VolRegime",
    "iv_rank_percentile",
    "iv_rank_series",
    "realized_vol",
    "realized_vol_bars",
    "regime_codes",
    "risk_reversal_25d",
    "vol_regime",
]

NS = 1_000_000_000
TRADING_DAYS_PER_YEAR = 252
TRADING_HOURS_PER_DAY = 6.5
SECONDS_PER_TRADING_YEAR = TRADING_DAYS_PER_YEAR * TRADING_HOURS_PER_DAY * 3600
DEFAULT_BAR_S = 60.0
DEFAULT_WINDOW_BARS = 30
DEFAULT_MIN_BARS = 10
DEFAULT_MAX_GAP_S = 900.0
DEFAULT_HISTORY_BARS = 390
DEFAULT_MIN_HISTORY = 30
VIX_ELEVATED = 15.0
VIX_SHOCK = 25.0
RATIO_ELEVATED = 1.25
RATIO_SHOCK = 2.0


class VolRegime(enum.StrEnum):
    """Volatility regime (codes 0, 1, 2 in :func:`regime_codes`)."""

    NORMAL = "NORMAL"
    ELEVATED = "ELEVATED"
    SHOCK = "SHOCK"


_REGIMES = (VolRegime.NORMAL, VolRegime.ELEVATED, VolRegime.SHOCK)


class RealizedVolSeries(NamedTuple):
    """One entry per completed bar (see the module docstring)."""

    bar_end_ns: NDArray[np.int64]  # end of the bar the return belongs to
    ret: NDArray[np.float64]  # log return of the bar
    rv: NDArray[np.float64]  # annualised RV over the window ending with this bar (NaN while thin)
    rv_mean: NDArray[np.float64]  # mean of the last history_bars finite RV readings (NaN while thin)
    rejected: dict[str, int]


class RealizedVolReading(NamedTuple):
    """Current realized vol of :class:`RealizedVolState`."""

    rv: float
    rv_mean: float
    ratio: float  # rv / rv_mean (NaN when either is)
    n_returns: int  # returns in the current window
    bars: int  # completed bars so far


class RegimeReading(NamedTuple):
    """Volatility regime and what it was based on."""

    regime: VolRegime
    source: str  # "vix1d" | "realized" | "none"
    level: float  # the VIX1D level or the RV ratio used; NaN for "none"


class IVRank(NamedTuple):
    """IV rank and percentile, both in [0, 100] (NaN when the history is too short)."""

    rank: float
    percentile: float
    n_days: int


class SkewResult(NamedTuple):
    """25-delta risk reversal of one expiry (vols as decimals, like the inputs)."""

    rr25: float
    call_iv: float
    put_iv: float
    call_strike: float
    put_strike: float
    rejected: dict[str, int]


def bars_per_year(bar_s: float) -> float:
    """Number of ``bar_s``-second bars in a trading year (252 × 6.5 h)."""
    return SECONDS_PER_TRADING_YEAR / bar_s


# --- realized volatility -------------------------------------------------------------------
def realized_vol(returns: ArrayLike, bar_s: float = DEFAULT_BAR_S) -> float:
    """``sqrt(mean(r²) · bars_per_year)`` of per-bar log returns; non-finite returns are skipped."""
    r = _as_1d(returns)
    r = r[np.isfinite(r)]
    if r.size == 0 or not (math.isfinite(bar_s) and bar_s > 0):
        return math.nan
    with np.errstate(over="ignore"):
        return float(math.sqrt(float(np.mean(r * r)) * bars_per_year(bar_s)))


@njit(cache=True)
def _rv_kernel(
    ts: NDArray[np.int64],
    px: NDArray[np.float64],
    bar_ns: int,
    bar_s: float,
    window: int,
    min_bars: int,
    max_gap_s: float,
    zero_cap: int,
    history: int,
    min_history: int,
    bpy: float,
) -> tuple[
    NDArray[np.int64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], int, int, int
]:  # pragma: no cover - compiled by numba
    """Emit one (bar, return, RV, mean RV) per completed bar; returns them + (bad, out of order, resets)."""
    ring_r = np.zeros(window)
    r_count = 0
    r_pos = 0
    ring_h = np.zeros(history)
    h_count = 0
    h_pos = 0
    cap = 64
    o_bar = np.empty(cap, np.int64)
    o_ret = np.empty(cap, np.float64)
    o_rv = np.empty(cap, np.float64)
    o_mean = np.empty(cap, np.float64)
    k = 0
    started = False
    cur = np.int64(0)
    close = np.nan
    ref = np.nan
    bad = 0
    ooo = 0
    resets = 0
    for i in range(px.shape[0]):
        p = px[i]
        if not (math.isfinite(p) and p > 0.0):
            bad += 1
            continue
        b = ts[i] // bar_ns
        if not started:
            started = True
            cur = b
            close = p
            continue
        if b < cur:
            ooo += 1
            continue
        if b == cur:
            close = p
            continue
        gap = b - cur
        n_emit = 0
        if ref == ref:
            n_emit = 1
        drop = gap * bar_s > max_gap_s
        zeros = 0 if drop else min(gap - 1, zero_cap)
        for e in range(n_emit + zeros):
            r = math.log(close / ref) if (e == 0 and n_emit == 1) else 0.0
            bar = cur + e + (1 - n_emit)
            ring_r[r_pos] = r
            r_pos = (r_pos + 1) % window
            if r_count < window:
                r_count += 1
            rv = np.nan
            if r_count >= min_bars:
                acc = 0.0
                for j in range(r_count):
                    acc += ring_r[j] * ring_r[j]
                rv = math.sqrt(acc / r_count * bpy)
            if math.isfinite(rv):
                ring_h[h_pos] = rv
                h_pos = (h_pos + 1) % history
                if h_count < history:
                    h_count += 1
            mean = np.nan
            if h_count >= min_history and h_count > 0:
                acc = 0.0
                for j in range(h_count):
                    acc += ring_h[j]
                mean = acc / h_count
            if k == o_bar.shape[0]:
                nb = np.empty(2 * k, np.int64)
                nb[:k] = o_bar
                o_bar = nb
                nr = np.empty(2 * k, np.float64)
                nr[:k] = o_ret
                o_ret = nr
                nv = np.empty(2 * k, np.float64)
                nv[:k] = o_rv
                o_rv = nv
                nm = np.empty(2 * k, np.float64)
                nm[:k] = o_mean
                o_mean = nm
            o_bar[k] = bar
            o_ret[k] = r
            o_rv[k] = rv
            o_mean[k] = mean
            k += 1
        ref = close
        if drop:
            resets += 1
            ref = np.nan
            r_count = 0
            r_pos = 0
        cur = b
        close = p
    return o_bar[:k].copy(), o_ret[:k].copy(), o_rv[:k].copy(), o_mean[:k].copy(), bad, ooo, resets


def realized_vol_bars(
    ts_ns: ArrayLike,
    prices: ArrayLike,
    *,
    bar_s: float = DEFAULT_BAR_S,
    window_bars: int = DEFAULT_WINDOW_BARS,
    min_bars: int = DEFAULT_MIN_BARS,
    max_gap_s: float = DEFAULT_MAX_GAP_S,
    history_bars: int = DEFAULT_HISTORY_BARS,
    min_history: int = DEFAULT_MIN_HISTORY,
) -> RealizedVolSeries:
    """Bar returns and rolling annualised RV of trades in time order (estimator: module docstring)."""
    if not (bar_s > 0 and window_bars >= 1 and history_bars >= 1 and min_bars >= 1):
        raise ValueError("bar_s, window_bars, history_bars and min_bars must be positive")
    t, t_ok = _timestamps(ts_ns)
    p = _as_1d(prices)
    n = min(t.size, p.size)
    rejected: dict[str, int] = {}
    if t.size + p.size - 2 * n:
        rejected["length_mismatch"] = t.size + p.size - 2 * n
    p = np.where(t_ok[:n], p[:n], np.nan)
    bar_ns = max(int(bar_s * NS), 1)
    bars, ret, rv, mean, bad, ooo, resets = _rv_kernel(
        t[:n],
        p,
        bar_ns,
        float(bar_s),
        int(window_bars),
        int(min_bars),
        float(max_gap_s),
        int(window_bars + history_bars),
        int(history_bars),
        int(min_history),
        bars_per_year(bar_s),
    )
    for key, count in (("bad_price", bad), ("out_of_order", ooo), ("gap_reset", resets)):
        if count:
            rejected[key] = int(count)
    return RealizedVolSeries((bars + 1) * bar_ns, ret, rv, mean, rejected)


class RealizedVolState:
    """Incremental intraday realized vol of one symbol (same numbers as :func:`realized_vol_bars`)."""

    def __init__(
        self,
        *,
        bar_s: float = DEFAULT_BAR_S,
        window_bars: int = DEFAULT_WINDOW_BARS,
        min_bars: int = DEFAULT_MIN_BARS,
        max_gap_s: float = DEFAULT_MAX_GAP_S,
        history_bars: int = DEFAULT_HISTORY_BARS,
        min_history: int = DEFAULT_MIN_HISTORY,
    ) -> None:
        if not (bar_s > 0 and window_bars >= 1 and history_bars >= 1 and min_bars >= 1):
            raise ValueError("bar_s, window_bars, history_bars and min_bars must be positive")
        self.bar_s = float(bar_s)
        self.bar_ns = max(int(bar_s * NS), 1)
        self.min_bars = min_bars
        self.max_gap_s = float(max_gap_s)
        self.min_history = min_history
        self.zero_cap = window_bars + history_bars
        self.bpy = bars_per_year(bar_s)
        self._returns: deque[float] = deque(maxlen=window_bars)
        self._rv_history: deque[float] = deque(maxlen=history_bars)
        self._cur: int | None = None
        self._close = math.nan
        self._ref = math.nan
        self._rv = math.nan
        self.bars = 0
        self.rejected: dict[str, int] = {}

    def _count(self, key: str) -> None:
        self.rejected[key] = self.rejected.get(key, 0) + 1

    def update(self, ts_ns: int, price: float) -> None:
        """Add one trade (time order); bad prices and out-of-order trades are counted and skipped."""
        p = _to_float(price)
        try:
            ts = int(ts_ns)
        except (TypeError, ValueError, OverflowError):
            p = math.nan
            ts = 0
        if not (math.isfinite(p) and p > 0):
            self._count("bad_price")
            return
        b = ts // self.bar_ns
        cur = self._cur
        if cur is None:
            self._cur, self._close = b, p
            return
        if b < cur:
            self._count("out_of_order")
            return
        if b == cur:
            self._close = p
            return
        gap = b - cur
        drop = gap * self.bar_s > self.max_gap_s
        if self._ref == self._ref:
            self._emit(math.log(self._close / self._ref))
        if not drop:
            for _ in range(min(gap - 1, self.zero_cap)):
                self._emit(0.0)
        self._ref = self._close
        if drop:
            self._count("gap_reset")
            self._ref = math.nan
            self._returns.clear()
            self._rv = math.nan  # a new session is thin until min_bars returns exist again
        self._cur, self._close = b, p

    def _emit(self, r: float) -> None:
        self._returns.append(r)
        self.bars += 1
        n = len(self._returns)
        if n >= self.min_bars:
            acc = 0.0
            for x in self._returns:
                acc += x * x
            self._rv = math.sqrt(acc / n * self.bpy)
        else:
            self._rv = math.nan
        if math.isfinite(self._rv):
            self._rv_history.append(self._rv)

    def value(self) -> RealizedVolReading:
        """Current RV (NaN while fewer than ``min_bars`` returns), its rolling mean and their ratio."""
        h = len(self._rv_history)
        mean = math.nan
        if h >= self.min_history and h > 0:
            acc = 0.0
            for x in self._rv_history:
                acc += x
            mean = acc / h
        ratio = self._rv / mean if math.isfinite(self._rv) and mean > 0 else math.nan
        return RealizedVolReading(self._rv, mean, ratio, len(self._returns), self.bars)

    def regime(self, vix1d: float | None = None, **thresholds: float) -> RegimeReading:
        """Volatility regime from VIX1D when given, else from this RV's ratio to its mean."""
        return vol_regime(vix1d, self.value().ratio, **thresholds)

    def state(self) -> dict[str, Any]:
        """JSON-serialisable checkpoint."""
        return {
            "returns": list(self._returns),
            "rv_history": list(self._rv_history),
            "cur": self._cur,
            "close": self._close,
            "ref": self._ref,
            "rv": self._rv,
            "bars": self.bars,
            "rejected": dict(self.rejected),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Load a checkpoint written by :meth:`state`."""
        self._returns.clear()
        self._returns.extend(float(x) for x in state["returns"])
        self._rv_history.clear()
        self._rv_history.extend(float(x) for x in state["rv_history"])
        self._cur = None if state["cur"] is None else int(state["cur"])
        self._close, self._ref, self._rv = float(state["close"]), float(state["ref"]), float(state["rv"])
        self.bars = int(state["bars"])
        self.rejected = {str(k): int(c) for k, c in state["rejected"].items()}


# --- regime --------------------------------------------------------------------------------
def regime_codes(
    vix1d: ArrayLike,
    rv_ratio: ArrayLike,
    *,
    vix_elevated: float = VIX_ELEVATED,
    vix_shock: float = VIX_SHOCK,
    ratio_elevated: float = RATIO_ELEVATED,
    ratio_shock: float = RATIO_SHOCK,
) -> NDArray[np.int8]:
    """Vectorised regime codes (0 NORMAL, 1 ELEVATED, 2 SHOCK); inputs broadcast together.

    VIX1D where finite and > 0, else the RV ratio where finite and > 0, else ELEVATED (1).
    """
    v = np.asarray(vix1d, dtype=np.float64)
    r = np.asarray(rv_ratio, dtype=np.float64)
    v, r = np.broadcast_arrays(v, r)
    with np.errstate(invalid="ignore"):
        use_v = np.isfinite(v) & (v > 0)
        use_r = ~use_v & np.isfinite(r) & (r > 0)
        from_v = np.where(v >= vix_shock, 2, np.where(v >= vix_elevated, 1, 0))
        from_r = np.where(r >= ratio_shock, 2, np.where(r >= ratio_elevated, 1, 0))
    return np.where(use_v, from_v, np.where(use_r, from_r, 1)).astype(np.int8)


def vol_regime(
    vix1d: float | None = None,
    rv_ratio: float | None = None,
    *,
    vix_elevated: float = VIX_ELEVATED,
    vix_shock: float = VIX_SHOCK,
    ratio_elevated: float = RATIO_ELEVATED,
    ratio_shock: float = RATIO_SHOCK,
) -> RegimeReading:
    """Regime of one symbol from VIX1D (preferred) or the RV ratio; ELEVATED/"none" without either."""
    v = _to_float(vix1d) if vix1d is not None else math.nan
    r = _to_float(rv_ratio) if rv_ratio is not None else math.nan
    if math.isfinite(v) and v > 0:
        code = 2 if v >= vix_shock else 1 if v >= vix_elevated else 0
        return RegimeReading(_REGIMES[code], "vix1d", v)
    if math.isfinite(r) and r > 0:
        code = 2 if r >= ratio_shock else 1 if r >= ratio_elevated else 0
        return RegimeReading(_REGIMES[code], "realized", r)
    return RegimeReading(VolRegime.ELEVATED, "none", math.nan)


# --- IV rank / percentile ------------------------------------------------------------------
def iv_rank_percentile(history: ArrayLike, iv: float, min_days: int = 20) -> IVRank:
    """IV rank and percentile of ``iv`` against daily closing IVs ``history`` (bad closes skipped)."""
    h = _as_1d(history)
    h = h[np.isfinite(h) & (h > 0)]
    x = _to_float(iv)
    if h.size < max(min_days, 1) or not (math.isfinite(x) and x > 0):
        return IVRank(math.nan, math.nan, int(h.size))
    lo, hi = float(h.min()), float(h.max())
    if hi > lo:
        rank = min(max((x - lo) / (hi - lo) * 100.0, 0.0), 100.0)
    else:
        rank = 50.0 if x == lo else (100.0 if x > hi else 0.0)
    percentile = 100.0 * float(np.count_nonzero(h < x)) / h.size
    return IVRank(rank, percentile, int(h.size))


def iv_rank_series(
    daily_iv: ArrayLike, window: int = 252, min_days: int = 20
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Rank and percentile of each day's IV against the previous ``window`` valid closes."""
    iv = _as_1d(daily_iv)
    rank = np.full(iv.size, np.nan)
    pct = np.full(iv.size, np.nan)
    past: deque[float] = deque(maxlen=window)
    for i, x in enumerate(iv.tolist()):
        res = iv_rank_percentile(np.fromiter(past, dtype=np.float64, count=len(past)), x, min_days)
        rank[i], pct[i] = res.rank, res.percentile
        if math.isfinite(x) and x > 0:
            past.append(x)
    return rank, pct


class IVHistory:
    """Daily closing IVs of one symbol (one per day, the last update of a day wins)."""

    def __init__(self, window_days: int = 252, min_days: int = 20) -> None:
        self.window_days = window_days
        self.min_days = min_days
        self._closes: deque[tuple[str, float]] = deque(maxlen=window_days)
        self.rejected: dict[str, int] = {}

    def update(self, day: object, iv: float) -> None:
        """Record ``iv`` as the close of ``day`` (an ISO date or any key ordered by time)."""
        x = _to_float(iv)
        if not (math.isfinite(x) and x > 0):
            self.rejected["bad_iv"] = self.rejected.get("bad_iv", 0) + 1
            return
        key = str(day)
        if self._closes and self._closes[-1][0] == key:
            self._closes[-1] = (key, x)
        elif not self._closes or self._closes[-1][0] < key:
            self._closes.append((key, x))
        else:  # an older day: history delivered late, or re-delivered after a restart
            merged = dict(self._closes)
            merged[key] = x
            self._closes.clear()
            self._closes.extend(sorted(merged.items())[-self.window_days :])

    def value(self, iv: float, day: object | None = None) -> IVRank:
        """Rank/percentile of ``iv`` against the stored closes, leaving out ``day``'s own close."""
        key = None if day is None else str(day)
        hist = np.fromiter((x for d, x in self._closes if d != key), dtype=np.float64)
        return iv_rank_percentile(hist, iv, self.min_days)

    def state(self) -> dict[str, Any]:
        """JSON-serialisable checkpoint."""
        return {"closes": [list(c) for c in self._closes], "rejected": dict(self.rejected)}

    def restore(self, state: dict[str, Any]) -> None:
        """Load a checkpoint written by :meth:`state`."""
        self._closes.clear()
        self._closes.extend((str(d), float(x)) for d, x in state["closes"])
        self.rejected = {str(k): int(c) for k, c in state["rejected"].items()}


# --- skew ----------------------------------------------------------------------------------
def _interp_at_delta(
    strikes: ArrayLike, deltas: ArrayLike, ivs: ArrayLike, target: float, rejected: dict[str, int], side: str
) -> tuple[float, float]:
    k = _as_1d(strikes)
    d = np.abs(_as_1d(deltas))
    v = _as_1d(ivs)
    n = min(k.size, d.size, v.size)
    if k.size + d.size + v.size - 3 * n:
        rejected["length_mismatch"] = rejected.get("length_mismatch", 0) + k.size + d.size + v.size - 3 * n
    k, d, v = k[:n], d[:n], v[:n]
    ok = np.isfinite(d) & (d > 0) & (d < 1) & np.isfinite(v) & (v > 0)
    if np.count_nonzero(~ok):
        rejected[f"bad_{side}"] = rejected.get(f"bad_{side}", 0) + int(np.count_nonzero(~ok))
    d, v, k = d[ok], v[ok], k[ok]
    if d.size == 0:
        return math.nan, math.nan
    order = np.argsort(d, kind="stable")
    d, v, k = d[order], v[order], k[order]
    keep = np.concatenate(([True], np.diff(d) > 0))  # first quote of a duplicated delta wins
    d, v, k = d[keep], v[keep], k[keep]
    if not (d[0] <= target <= d[-1]):
        rejected[f"{side}_out_of_range"] = rejected.get(f"{side}_out_of_range", 0) + 1
        return math.nan, math.nan
    iv = float(np.interp(target, d, v))
    finite_k = np.isfinite(k)
    strike = float(np.interp(target, d[finite_k], k[finite_k])) if np.count_nonzero(finite_k) else math.nan
    if np.count_nonzero(finite_k) and not (d[finite_k][0] <= target <= d[finite_k][-1]):
        strike = math.nan
    return iv, strike


def risk_reversal_25d(
    call_strikes: ArrayLike,
    call_deltas: ArrayLike,
    call_ivs: ArrayLike,
    put_strikes: ArrayLike,
    put_deltas: ArrayLike,
    put_ivs: ArrayLike,
    target_delta: float = 0.25,
) -> SkewResult:
    """``IV(25Δ call) − IV(25Δ put)`` of one expiry's smile, interpolated linearly in |delta|."""
    rejected: dict[str, int] = {}
    target = abs(_to_float(target_delta))
    c_iv, c_k = _interp_at_delta(call_strikes, call_deltas, call_ivs, target, rejected, "call")
    p_iv, p_k = _interp_at_delta(put_strikes, put_deltas, put_ivs, target, rejected, "put")
    return SkewResult(c_iv - p_iv, c_iv, p_iv, c_k, p_k, rejected)


# --- history from outside ---------------------------------------------------------------------
def vol_close_values(event: AltDataEvent) -> tuple[date, float, float]:
    """(day, ATM IV, rr25) of a ``VOL_CLOSE`` event; ValueError naming the field when malformed."""
    try:
        day = date.fromisoformat(event.when)
    except ValueError as exc:
        raise ValueError(f"vol_close.when = {event.when!r}: not an ISO date") from exc
    values = []
    for name in ("atm_iv", "rr25"):
        raw = event.detail.get(name)
        try:
            value = float(raw) if raw is not None else math.nan
        except ValueError as exc:
            raise ValueError(f"vol_close.{name} = {raw!r}: not a number") from exc
        if not math.isfinite(value) or (name == "atm_iv" and value <= 0):
            raise ValueError(f"vol_close.{name} = {raw!r}: must be finite{' and positive' if name == 'atm_iv' else ''}")
        values.append(value)
    return day, values[0], values[1]
