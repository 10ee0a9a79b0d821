"""Order-book metrics: spread, imbalance, depth, micro-price, order-flow imbalance, liquidity grade.

Definitions (per book; sizes in shares, prices in currency units):

* **Levels.** A level is *valid* when its price is finite and > 0 and its size finite and ≥ 0.
  A level of size 0 is empty (padding: any price, e.g. NaN or 0, with size 0 is simply ignored).
  A level with a negative or non-finite size, or a positive size at a non-finite/non-positive
  price, is *bad*: ignored and counted (``rejected["bad_level"]``).
* **Best bid / ask** = price and size of the first valid non-empty level of each side (books are
  best first). A side without one is empty (``empty_side``): mid, spread, micro-price are NaN.
* ``mid = (bid + ask) / 2``; ``spread_bps = (ask − bid) · 10⁴ / mid`` (negative when crossed).
* **Imbalance** ``(Q_bid − Q_ask) / (Q_bid + Q_ask)`` in [−1, 1], 0 when both are 0: at L1 with
  the best-level sizes, at L5 with the valid sizes of the first ``depth_levels`` (5) level slots.
  Positive means more resting bids (buy pressure); same sign as ``features.book_imbalance``.
* **Depth** = sum of valid sizes over the first ``depth_levels`` slots, per side.
* **Micro-price** ``(bid · Q_ask + ask · Q_bid) / (Q_bid + Q_ask)`` (size-weighted mid, Stoikov
  2018 "The micro-price"), at L1.
* **OFI** — order-flow imbalance at L1 between consecutive usable books (Cont, Kukanov & Stoikov
  2014, "The price impact of order book events", J. Financial Econometrics 12(1)):
  ``e = 1{B ≥ B'}·q_B − 1{B ≤ B'}·q_B' − 1{A ≤ A'}·q_A + 1{A ≥ A'}·q_A'`` with primes for the
  previous book; positive = net buying pressure. 0 for the first usable book; books with an
  empty side or crossed are skipped (OFI 0 and the previous book is kept).
* **Liquidity grade** (SPEC §6), evaluated in this order:
  ``D`` — stale (age > ``max_age_s``), crossed or locked (bid ≥ ask), or an empty side;
  ``A`` — spread < 5 bps **and** min(bid depth, ask depth) > 1000;
  ``B`` — spread < 10 bps **and** min depth > 500;
  ``C`` — otherwise. Strict inequalities: exactly 5 bps is not A, a depth of exactly 1000 is not A.
  Grades are ``int8`` codes 0–3 in the arrays (``GRADES[code]`` gives the letter).

Nothing raises on bad numbers; shape mismatches are truncated to the common shape and counted.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from numba import njit
from numpy.typing import ArrayLike, NDArray

from quanticity.messages import BookSnapshot

__all__ = [
    "GRADES",
    "GRADE_A",
    "GRADE_B",
    "GRADE_C",
    "GRADE_D",
    "BookMetrics",
    "BookReading",
    "BookState",
    "book_metrics",
    "liquidity_grade",
]

GRADES = ("A", "B", "C", "D")
GRADE_A, GRADE_B, GRADE_C, GRADE_D = 0, 1, 2, 3
NS = 1_000_000_000
DEFAULT_MAX_AGE_S = 5.0
DEFAULT_DEPTH_LEVELS = 5
DEFAULT_A_SPREAD_BPS = 5.0
DEFAULT_A_MIN_DEPTH = 1000.0
DEFAULT_B_SPREAD_BPS = 10.0
DEFAULT_B_MIN_DEPTH = 500.0


class BookMetrics(NamedTuple):
    """Metrics of ``n`` books, one array of length ``n`` per field (definitions: module docstring)."""

    mid: NDArray[np.float64]
    spread_bps: NDArray[np.float64]
    microprice: NDArray[np.float64]
    imbalance_l1: NDArray[np.float64]
    imbalance_l5: NDArray[np.float64]
    bid_depth: NDArray[np.float64]
    ask_depth: NDArray[np.float64]
    ofi: NDArray[np.float64]
    grade: NDArray[np.int8]
    rejected: dict[str, int]

    def grade_letters(self) -> list[str]:
        """The grades as letters A–D."""
        return [GRADES[g] for g in self.grade.tolist()]


class BookReading(NamedTuple):
    """Metrics of the latest book of one symbol (see the module docstring)."""

    mid: float
    spread_bps: float
    microprice: float
    imbalance_l1: float
    imbalance_l5: float
    bid_depth: float
    ask_depth: float
    ofi: float  # of the latest book vs the previous usable one
    ofi_window: float  # sum of OFI over the last ofi_window_s seconds
    grade: str  # "A" | "B" | "C" | "D"
    age_s: float  # now − book time (NaN when unknown)


@njit(cache=True)
def _liquidity_grade_nb(
    spread_bps: float,
    bid_depth: float,
    ask_depth: float,
    unusable: bool,
    a_spread: float,
    a_depth: float,
    b_spread: float,
    b_depth: float,
) -> int:  # pragma: no cover - compiled by numba
    """Grade code of one book; ``unusable`` = stale, crossed or an empty side (→ D)."""
    if unusable or not math.isfinite(spread_bps) or spread_bps <= 0.0:
        return GRADE_D
    depth = min(bid_depth, ask_depth)
    if spread_bps < a_spread and depth > a_depth:
        return GRADE_A
    if spread_bps < b_spread and depth > b_depth:
        return GRADE_B
    return GRADE_C


def liquidity_grade(
    spread_bps: float,
    bid_depth: float,
    ask_depth: float,
    *,
    stale: bool = False,
    crossed: bool = False,
    a_spread_bps: float = DEFAULT_A_SPREAD_BPS,
    a_min_depth: float = DEFAULT_A_MIN_DEPTH,
    b_spread_bps: float = DEFAULT_B_SPREAD_BPS,
    b_min_depth: float = DEFAULT_B_MIN_DEPTH,
) -> str:
    """Grade letter A–D of one book from its spread and 5-level depths (SPEC §6 thresholds).

    A non-finite or non-positive spread (empty side, crossed, locked) is D.
    """
    unusable = stale or crossed or not math.isfinite(spread_bps) or spread_bps <= 0
    if unusable:
        return "D"
    depth = min(bid_depth, ask_depth)
    if spread_bps < a_spread_bps and depth > a_min_depth:
        return "A"
    if spread_bps < b_spread_bps and depth > b_min_depth:
        return "B"
    return "C"


@njit(cache=True)
def _side(
    px: NDArray[np.float64], sz: NDArray[np.float64], depth_levels: int
) -> tuple[float, float, float, int]:  # pragma: no cover - compiled by numba
    """(best price, best size, depth over the first depth_levels slots, bad levels) of one side."""
    best_px = np.nan
    best_sz = 0.0
    depth = 0.0
    bad = 0
    for j in range(px.shape[0]):
        p = px[j]
        q = sz[j]
        if not math.isfinite(q) or q < 0.0:
            bad += 1
            continue
        if q == 0.0:
            continue
        if not (math.isfinite(p) and p > 0.0):
            bad += 1
            continue
        if j < depth_levels:
            depth += q
        if best_px != best_px:
            best_px = p
            best_sz = q
    return best_px, best_sz, depth, bad


@njit(cache=True)
def _book_kernel(
    bid_px: NDArray[np.float64],
    bid_sz: NDArray[np.float64],
    ask_px: NDArray[np.float64],
    ask_sz: NDArray[np.float64],
    stale: NDArray[np.bool_],
    depth_levels: int,
    thresholds: NDArray[np.float64],
    prev: NDArray[np.float64],
    out: NDArray[np.float64],
    grade: NDArray[np.int8],
) -> tuple[int, int, int]:  # pragma: no cover - compiled by numba
    """Fill ``out`` (8, n) and ``grade`` (n); ``prev`` carries the last usable L1 for OFI.

    Returns (bad levels, books with an empty side, crossed books).
    """
    a_spread, a_depth, b_spread, b_depth = thresholds[0], thresholds[1], thresholds[2], thresholds[3]
    bad_total = 0
    empty_total = 0
    crossed_total = 0
    for i in range(bid_px.shape[0]):
        bp, bq, bdepth, bad_b = _side(bid_px[i], bid_sz[i], depth_levels)
        ap, aq, adepth, bad_a = _side(ask_px[i], ask_sz[i], depth_levels)
        bad_total += bad_b + bad_a
        empty = bp != bp or ap != ap
        crossed = (not empty) and bp >= ap
        if empty:
            empty_total += 1
        if crossed:
            crossed_total += 1
        mid = 0.5 * (bp + ap)
        spread = (ap - bp) * 1e4 / mid if not empty else np.nan
        l1 = bq + aq
        micro = (bp * aq + ap * bq) / l1 if (not empty and l1 > 0.0) else np.nan
        tot5 = bdepth + adepth
        out[0, i] = mid
        out[1, i] = spread
        out[2, i] = micro
        out[3, i] = (bq - aq) / l1 if l1 > 0.0 else 0.0
        out[4, i] = (bdepth - adepth) / tot5 if tot5 > 0.0 else 0.0
        out[5, i] = bdepth
        out[6, i] = adepth
        ofi = 0.0
        if not empty and not crossed:
            pb, pbq, pa, paq = prev[0], prev[1], prev[2], prev[3]
            if pb == pb:
                if bp >= pb:
                    ofi += bq
                if bp <= pb:
                    ofi -= pbq
                if ap <= pa:
                    ofi -= aq
                if ap >= pa:
                    ofi += paq
            prev[0], prev[1], prev[2], prev[3] = bp, bq, ap, aq
        out[7, i] = ofi
        grade[i] = _liquidity_grade_nb(
            spread, bdepth, adepth, empty or crossed or stale[i], a_spread, a_depth, b_spread, b_depth
        )
    return bad_total, empty_total, crossed_total


def _as_2d(x: ArrayLike) -> NDArray[np.float64]:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 0:
        a = a.reshape(1, 1)
    elif a.ndim == 1:
        a = a.reshape(1, -1)
    elif a.ndim > 2:
        a = a.reshape(a.shape[0], -1)
    return a


def book_metrics(
    bid_px: ArrayLike,
    bid_sz: ArrayLike,
    ask_px: ArrayLike,
    ask_sz: ArrayLike,
    *,
    ts_ns: ArrayLike | None = None,
    now_ns: ArrayLike | None = None,
    max_age_s: float = DEFAULT_MAX_AGE_S,
    depth_levels: int = DEFAULT_DEPTH_LEVELS,
    a_spread_bps: float = DEFAULT_A_SPREAD_BPS,
    a_min_depth: float = DEFAULT_A_MIN_DEPTH,
    b_spread_bps: float = DEFAULT_B_SPREAD_BPS,
    b_min_depth: float = DEFAULT_B_MIN_DEPTH,
) -> BookMetrics:
    """Metrics of ``n`` books given as ``(n, levels)`` arrays, best level first (1-D = one book).

    ``ts_ns`` (book times) and ``now_ns`` (scalar or per book), both in ns, enable the staleness
    check (age > ``max_age_s`` → grade D); without both no book is stale. OFI is computed between
    consecutive rows, so rows must be one symbol's books in time order.
    """
    bp, bq, ap, aq = _as_2d(bid_px), _as_2d(bid_sz), _as_2d(ask_px), _as_2d(ask_sz)
    rejected: dict[str, int] = {}
    n = min(bp.shape[0], bq.shape[0], ap.shape[0], aq.shape[0])
    lb = min(bp.shape[1], bq.shape[1])
    la = min(ap.shape[1], aq.shape[1])
    mismatch = (
        sum(a.shape[0] - n for a in (bp, bq, ap, aq)) + (bp.shape[1] != bq.shape[1]) + (ap.shape[1] != aq.shape[1])
    )
    if mismatch:
        rejected["shape_mismatch"] = int(mismatch)
    bp, bq = np.ascontiguousarray(bp[:n, :lb]), np.ascontiguousarray(bq[:n, :lb])
    ap, aq = np.ascontiguousarray(ap[:n, :la]), np.ascontiguousarray(aq[:n, :la])
    stale = np.zeros(n, dtype=np.bool_)
    if ts_ns is not None and now_ns is not None and n:
        ts = np.asarray(ts_ns, dtype=np.float64).reshape(-1)
        now = np.asarray(now_ns, dtype=np.float64).reshape(-1)
        if ts.size in (1, n) and now.size in (1, n):
            with np.errstate(invalid="ignore", over="ignore"):
                stale = np.broadcast_to(~((now - ts) / NS <= max_age_s), (n,)).copy()  # NaN age → stale
        else:
            rejected["shape_mismatch"] = rejected.get("shape_mismatch", 0) + 1
    out = np.empty((8, n))
    grade = np.empty(n, dtype=np.int8)
    thresholds = np.array([a_spread_bps, a_min_depth, b_spread_bps, b_min_depth], dtype=np.float64)
    prev = np.full(4, np.nan)
    bad, empty, crossed = _book_kernel(bp, bq, ap, aq, stale, depth_levels, thresholds, prev, out, grade)
    for key, count in (("bad_level", bad), ("empty_side", empty), ("crossed", crossed)):
        if count:
            rejected[key] = int(count)
    return BookMetrics(out[0], out[1], out[2], out[3], out[4], out[5], out[6], out[7], grade, rejected)


def _side_py(levels: Sequence[tuple[float, float]], depth_levels: int) -> tuple[float, float, float, int]:
    """Pure-Python twin of :func:`_side` for one incremental update (same rules)."""
    best_px = math.nan
    best_sz = 0.0
    depth = 0.0
    bad = 0
    for j, level in enumerate(levels):
        try:
            p, q = float(level[0]), float(level[1])
        except (TypeError, ValueError, IndexError, OverflowError):
            bad += 1
            continue
        if not math.isfinite(q) or q < 0.0:
            bad += 1
            continue
        if q == 0.0:
            continue
        if not (math.isfinite(p) and p > 0.0):
            bad += 1
            continue
        if j < depth_levels:
            depth += q
        if best_px != best_px:
            best_px, best_sz = p, q
    return best_px, best_sz, depth, bad


class BookState:
    """Latest book metrics of one symbol plus a rolling OFI sum, fed book by book.

    Same definitions and numbers as :func:`book_metrics`; the staleness check happens at read
    time (:meth:`value` with ``now_ns``) because a book ages while no new one arrives.
    """

    def __init__(
        self,
        *,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        depth_levels: int = DEFAULT_DEPTH_LEVELS,
        ofi_window_s: float = 10.0,
        a_spread_bps: float = DEFAULT_A_SPREAD_BPS,
        a_min_depth: float = DEFAULT_A_MIN_DEPTH,
        b_spread_bps: float = DEFAULT_B_SPREAD_BPS,
        b_min_depth: float = DEFAULT_B_MIN_DEPTH,
    ) -> None:
        self.max_age_s = max_age_s
        self.depth_levels = depth_levels
        self.ofi_window_ns = int(ofi_window_s * NS)
        self.thresholds = (a_spread_bps, a_min_depth, b_spread_bps, b_min_depth)
        self._metrics: tuple[float, ...] = (math.nan, math.nan, math.nan, 0.0, 0.0, 0.0, 0.0, 0.0)
        self._crossed_or_empty = True
        self._ts_ns = 0
        self._prev = (math.nan, 0.0, math.nan, 0.0)
        self._ofi: deque[tuple[int, float]] = deque()
        self._ofi_sum = 0.0
        self.books = 0
        self.rejected: dict[str, int] = {}

    def _reject(self, reason: str, count: int = 1) -> None:
        if count:
            self.rejected[reason] = self.rejected.get(reason, 0) + count

    def update_snapshot(self, book: BookSnapshot) -> None:
        """Apply a :class:`BookSnapshot` (its ``ts_event`` is the book time)."""
        self.update(book.bids, book.asks, book.ts_event)

    def update(self, bids: Sequence[tuple[float, float]], asks: Sequence[tuple[float, float]], ts_ns: int) -> None:
        """Apply one book: ``(price, size)`` levels per side, best first; ``ts_ns`` its time."""
        bp, bq, bdepth, bad_b = _side_py(bids, self.depth_levels)
        ap, aq, adepth, bad_a = _side_py(asks, self.depth_levels)
        self._reject("bad_level", bad_b + bad_a)
        empty = bp != bp or ap != ap
        crossed = (not empty) and bp >= ap
        if empty:
            self._reject("empty_side")
        if crossed:
            self._reject("crossed")
        mid = 0.5 * (bp + ap)
        spread = (ap - bp) * 1e4 / mid if not empty else math.nan
        l1 = bq + aq
        micro = (bp * aq + ap * bq) / l1 if (not empty and l1 > 0.0) else math.nan
        tot5 = bdepth + adepth
        ofi = 0.0
        if not empty and not crossed:
            pb, pbq, pa, paq = self._prev
            if pb == pb:
                if bp >= pb:
                    ofi += bq
                if bp <= pb:
                    ofi -= pbq
                if ap <= pa:
                    ofi -= aq
                if ap >= pa:
                    ofi += paq
            self._prev = (bp, bq, ap, aq)
        try:
            ts = int(ts_ns)
        except (TypeError, ValueError, OverflowError):
            ts = 0
            self._reject("bad_time")
        self._metrics = (
            mid,
            spread,
            micro,
            (bq - aq) / l1 if l1 > 0.0 else 0.0,
            (bdepth - adepth) / tot5 if tot5 > 0.0 else 0.0,
            bdepth,
            adepth,
            ofi,
        )
        self._crossed_or_empty = empty or crossed
        self._ts_ns = ts
        self.books += 1
        if ofi:
            self._ofi.append((ts, ofi))
            self._ofi_sum += ofi
        self._expire(ts)

    def _expire(self, now_ns: int) -> None:
        cutoff = now_ns - self.ofi_window_ns
        while self._ofi and self._ofi[0][0] <= cutoff:
            self._ofi_sum -= self._ofi.popleft()[1]
        if not self._ofi:
            self._ofi_sum = 0.0  # drop accumulated rounding whenever the window empties

    def value(self, now_ns: int | None = None) -> BookReading:
        """The latest book's metrics; stale (grade D) when ``now_ns`` is more than ``max_age_s`` later."""
        mid, spread, micro, l1, l5, bdepth, adepth, ofi = self._metrics
        if self.books == 0:
            return BookReading(math.nan, math.nan, math.nan, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, "D", math.nan)
        age = math.nan if now_ns is None else (now_ns - self._ts_ns) / NS
        stale = now_ns is not None and not (age <= self.max_age_s)
        a_s, a_d, b_s, b_d = self.thresholds
        grade = liquidity_grade(
            spread,
            bdepth,
            adepth,
            stale=stale,
            crossed=self._crossed_or_empty,
            a_spread_bps=a_s,
            a_min_depth=a_d,
            b_spread_bps=b_s,
            b_min_depth=b_d,
        )
        if now_ns is not None:
            self._expire(now_ns)
        window = self._ofi_sum
        return BookReading(mid, spread, micro, l1, l5, bdepth, adepth, ofi, window, grade, age)

    def state(self) -> dict[str, Any]:
        """JSON-serialisable checkpoint."""
        return {
            "metrics": list(self._metrics),
            "crossed_or_empty": self._crossed_or_empty,
            "ts_ns": self._ts_ns,
            "prev": list(self._prev),
            "ofi": [list(x) for x in self._ofi],
            "books": self.books,
            "rejected": dict(self.rejected),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Load a checkpoint written by :meth:`state`."""
        self._metrics = tuple(float(x) for x in state["metrics"])
        self._crossed_or_empty = bool(state["crossed_or_empty"])
        self._ts_ns = int(state["ts_ns"])
        self._prev = tuple(float(x) for x in state["prev"])  # type: ignore[assignment]
        self._ofi = deque((int(t), float(e)) for t, e in state["ofi"])
        self._ofi_sum = sum(e for _, e in self._ofi)
        self.books = int(state["books"])
        self.rejected = {str(k): int(c) for k, c in state["rejected"].items()}
