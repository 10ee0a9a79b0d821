"""Trade flow: aggressor side, option premium flow and momentum, blocks, sweeps, odd lots, unusual activity.

Conventions (SPEC §6; units: prices in currency, option sizes in contracts, equity sizes in shares,
times in integer ns since the epoch):

* **Aggressor side** (+1 buy, −1 sell, 0 unknown), Lee & Ready (1991) style:
  1. quote rule — with a usable quote (finite, ``0 ≤ bid ≤ ask``, ``ask > 0``): price ≥ ask → buy,
     price ≤ bid → sell; inside the spread, above the mid → buy, below → sell;
  2. tick rule — a print exactly at the mid, or without a usable quote: up-tick vs the previous
     valid print *of the same contract* → buy, down-tick → sell, zero tick → the direction of the
     last non-zero tick; no history → 0 (unknown).
* **Premium** = price × size × multiplier (100 for listed equity options), in currency.
* **Net premium** (bullish positive) = (calls bought − calls sold) − (puts bought − puts sold),
  each a premium sum: bought calls and sold puts are bullish, sold calls and bought puts bearish.
  Prints of unknown side count in ``gross`` only.
* **Windows** are epoch-aligned ``[k·W, (k+1)·W)`` of ``window_s`` seconds; only windows with
  prints are returned. A print whose window is earlier than the current one is counted
  ``out_of_order`` and left out of the window sums (it still updates the tick-rule state).
  **Flow momentum** of a window = its net premium − the net premium of the calendar window just
  before it (0 if that one had no prints). In :class:`FlowWindow` the current window is the
  one still filling, so its momentum is "so far".
* **Premium burst**: the window's gross premium > ``k`` × the mean gross premium of the
  ``lookback`` calendar windows before it (windows without prints count as 0), needing at least
  ``min_windows`` windows of history (since the first print) and a gross premium ≥ ``min_premium``.
* **Block**: one print with size ≥ ``block_size`` or notional (premium for options) ≥
  ``block_notional``. Defaults: options 100 contracts or $250,000 premium; equities 10,000 shares
  or $200,000 (the traditional NYSE block definition).
* **Sweep**: our messages carry no exchange, so a sweep is detected from successive price levels:
  a run of prints of the same contract, same (known) side, each within ``sweep_window_s`` (0.5 s)
  of the run's first print, at successively *worse or equal* prices for the aggressor (buys
  non-decreasing, sells non-increasing), with ≥ ``sweep_min_prints`` (3) prints over ≥
  ``sweep_min_levels`` (2) distinct prices. A print that breaks any rule starts a new run; a print
  of unknown side ends the contract's run. In batch (:func:`detect_prints`) every print of a
  qualifying run is flagged; incrementally (:class:`PrintDetector`) prints are flagged from the
  one that qualifies the run onwards (``new_sweep`` marks that one).
* **Odd lot**: equities only, 0 < size < ``round_lot`` (100 shares). Options have no odd lots.
* **Unusual volume/OI**: ``volume / open_interest > threshold`` (1.0). Open interest ≤ 0 or not
  finite gives ratio NaN and is not flagged (a brand-new listing has no OI: no baseline).

Bad numbers never raise: non-finite/non-positive prices and sizes are skipped and counted in
``rejected`` (``bad_price``, ``bad_size``); arrays of unequal length are truncated to the shortest.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Hashable
from typing import Any, Literal, NamedTuple

import numpy as np
from numba import njit
from numpy.typing import ArrayLike, NDArray

from quanticity.analytics.coerce import as_1d as _as_1d
from quanticity.analytics.coerce import timestamps as _timestamps
from quanticity.analytics.coerce import to_float as _to_float

__all__ = [
    "FlowReading",
    "FlowWindow",
    "OptionFlow",
    "PrintDetector",
    "PrintEvent",
    "PrintFlags",
    "UnusualActivity",
    "classify_aggressor",
    "detect_prints",
    "option_flow",
    "premium_bursts",
    "unusual_volume_oi",
]

NS = 1_000_000_000
OPTION_MULTIPLIER = 100.0
DEFAULT_WINDOW_S = 60.0
DEFAULT_BURST_K = 3.0
DEFAULT_BURST_LOOKBACK = 20
DEFAULT_BURST_MIN_WINDOWS = 5
DEFAULT_BURST_MIN_PREMIUM = 50_000.0
DEFAULT_SWEEP_WINDOW_S = 0.5
DEFAULT_SWEEP_MIN_PRINTS = 3
DEFAULT_SWEEP_MIN_LEVELS = 2
DEFAULT_ROUND_LOT = 100
BLOCK_DEFAULTS = {"option": (100.0, 250_000.0, OPTION_MULTIPLIER), "equity": (10_000.0, 200_000.0, 1.0)}
"""asset → (block size, block notional, multiplier)."""


# --- results -------------------------------------------------------------------------------
class OptionFlow(NamedTuple):
    """Per-print classification and per-window premium flow (see the module docstring)."""

    side: NDArray[np.int8]  # per print: +1 buy, −1 sell, 0 unknown or rejected
    premium: NDArray[np.float64]  # per print, NaN when rejected
    net_contribution: NDArray[np.float64]  # per print: side × premium × (+1 call, −1 put)
    window_start_ns: NDArray[np.int64]  # one entry per window with prints
    call_bought: NDArray[np.float64]
    call_sold: NDArray[np.float64]
    put_bought: NDArray[np.float64]
    put_sold: NDArray[np.float64]
    net: NDArray[np.float64]
    momentum: NDArray[np.float64]
    gross: NDArray[np.float64]
    burst: NDArray[np.bool_]
    rejected: dict[str, int]


class FlowReading(NamedTuple):
    """Premium flow of the current (still filling) window of :class:`FlowWindow`."""

    window_start_ns: int
    call_bought: float
    call_sold: float
    put_bought: float
    put_sold: float
    net: float
    momentum: float  # net − net of the previous calendar window
    gross: float
    burst: bool
    prev_net: float  # net of the previous calendar window (0 if it had no prints)


class PrintFlags(NamedTuple):
    """Per-print block / sweep / odd-lot flags from :func:`detect_prints`."""

    block: NDArray[np.bool_]
    sweep: NDArray[np.bool_]
    sweep_id: NDArray[np.int64]  # −1 outside sweeps; ids count sweeps in the order they qualify
    odd_lot: NDArray[np.bool_]
    rejected: dict[str, int]


class PrintEvent(NamedTuple):
    """What :meth:`PrintDetector.update` found in one print."""

    block: bool
    odd_lot: bool
    sweep: bool  # the print belongs to a run that qualifies as a sweep (from this print on)
    new_sweep: bool  # this print made the run qualify
    sweep_id: int  # −1 outside sweeps
    sweep_prints: int  # prints in the run so far
    sweep_notional: float  # notional (premium) of the run so far


class UnusualActivity(NamedTuple):
    """Volume / open-interest ratio per contract and the threshold flag."""

    ratio: NDArray[np.float64]
    unusual: NDArray[np.bool_]
    rejected: dict[str, int]


# --- helpers -------------------------------------------------------------------------------
def _broadcast(x: ArrayLike | None, n: int, fill: float = math.nan) -> NDArray[np.float64]:
    """``x`` as a float64 array of length ``n`` (scalars broadcast; wrong lengths → ``fill``)."""
    if x is None:
        return np.full(n, fill)
    a = _as_1d(x)
    if a.size == n:
        return a
    if a.size == 1:
        return np.full(n, a[0])
    return np.full(n, fill)


def _codes(contract: ArrayLike | None, n: int) -> tuple[NDArray[np.int64], int]:
    """Dense integer codes 0..m−1 of the contract identifiers (any hashable dtype numpy sorts)."""
    if contract is None:
        return np.zeros(n, dtype=np.int64), 1
    arr = np.asarray(contract).reshape(-1)[:n]
    if arr.size < n:
        arr = np.concatenate([arr, np.repeat(arr[-1:] if arr.size else np.array([0]), n - arr.size)])
    try:
        _, inverse = np.unique(arr, return_inverse=True)
    except TypeError:  # unorderable mix of types: fall back to first-seen order
        seen: dict[Any, int] = {}
        inverse = np.array([seen.setdefault(x, len(seen)) for x in arr.tolist()], dtype=np.int64)
    inverse = np.ascontiguousarray(inverse.reshape(-1), dtype=np.int64)
    return inverse, int(inverse.max()) + 1 if n else 1


def _to_int(x: object) -> int | None:
    try:
        return int(x)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return None


def _count(rejected: dict[str, int], key: str, value: int) -> None:
    if value:
        rejected[key] = rejected.get(key, 0) + int(value)


def _quote_side(price: float, bid: float, ask: float) -> int:
    """Quote rule (+1/−1), or 0 without a usable quote or exactly at the mid."""
    if math.isfinite(bid) and math.isfinite(ask) and 0.0 <= bid <= ask and ask > 0.0:
        if price >= ask:
            return 1
        if price <= bid:
            return -1
        mid = 0.5 * (bid + ask)
        if price > mid:
            return 1
        if price < mid:
            return -1
    return 0


_quote_side_nb = njit(cache=True)(_quote_side)


# --- kernels -------------------------------------------------------------------------------
@njit(cache=True)
def _classify_kernel(
    price: NDArray[np.float64],
    size: NDArray[np.float64],
    bid: NDArray[np.float64],
    ask: NDArray[np.float64],
    codes: NDArray[np.int64],
    n_codes: int,
    side: NDArray[np.int8],
) -> tuple[int, int]:  # pragma: no cover - compiled by numba
    """Aggressor side per print (quote rule, then per-contract tick rule); returns (bad price, bad size)."""
    last_px = np.full(n_codes, np.nan)
    last_dir = np.zeros(n_codes, np.int8)
    bad_price = 0
    bad_size = 0
    for i in range(price.shape[0]):
        p = price[i]
        side[i] = 0
        if not (math.isfinite(p) and p > 0.0):
            bad_price += 1
            continue
        q = size[i]
        if not (math.isfinite(q) and q > 0.0):
            bad_size += 1
            continue
        s = _quote_side_nb(p, bid[i], ask[i])
        c = codes[i]
        lp = last_px[c]
        if lp == lp:
            if p > lp:
                last_dir[c] = 1
            elif p < lp:
                last_dir[c] = -1
        last_px[c] = p
        if s == 0:
            s = last_dir[c]
        side[i] = s
    return bad_price, bad_size


@njit(cache=True)
def _window_kernel(
    ts: NDArray[np.int64],
    premium: NDArray[np.float64],
    side: NDArray[np.int8],
    is_call: NDArray[np.bool_],
    window_ns: int,
    ids: NDArray[np.int64],
    sums: NDArray[np.float64],
) -> tuple[int, int]:  # pragma: no cover - compiled by numba
    """Aggregate valid prints (finite premium) into windows; returns (windows, out-of-order prints).

    ``sums`` is (5, n): call bought, call sold, put bought, put sold, gross.
    """
    m = -1
    out_of_order = 0
    for i in range(ts.shape[0]):
        prem = premium[i]
        if prem != prem:
            continue
        w = ts[i] // window_ns
        if m >= 0 and w < ids[m]:
            out_of_order += 1
            continue
        if m < 0 or w > ids[m]:
            m += 1
            ids[m] = w
            for f in range(5):
                sums[f, m] = 0.0
        s = side[i]
        row = (0 if s > 0 else 1) if is_call[i] else (2 if s > 0 else 3)
        if s != 0:
            sums[row, m] += prem
        sums[4, m] += prem
    return m + 1, out_of_order


@njit(cache=True)
def _burst_kernel(
    ids: NDArray[np.int64],
    gross: NDArray[np.float64],
    first_id: int,
    k: float,
    lookback: int,
    min_windows: int,
    min_premium: float,
    out: NDArray[np.bool_],
) -> None:  # pragma: no cover - compiled by numba
    """Burst flag per (sparse, increasing) window id, empty windows counting as zero premium."""
    lo = 0
    run = 0.0
    for j in range(ids.shape[0]):
        w = ids[j]
        while lo < j and ids[lo] < w - lookback:
            lo += 1
        run = 0.0
        for t in range(lo, j):
            run += gross[t]
        h = min(lookback, w - first_id)
        out[j] = h >= min_windows and h > 0 and gross[j] >= min_premium and gross[j] > k * (run / h)


@njit(cache=True)
def _prints_kernel(
    ts: NDArray[np.int64],
    price: NDArray[np.float64],
    size: NDArray[np.float64],
    side: NDArray[np.int8],
    codes: NDArray[np.int64],
    n_codes: int,
    params: NDArray[np.float64],
    block: NDArray[np.bool_],
    odd_lot: NDArray[np.bool_],
    sweep_id: NDArray[np.int64],
) -> tuple[int, int]:  # pragma: no cover - compiled by numba
    """Block / odd-lot flags and sweep runs per print; returns (bad price, bad size)."""
    block_size, block_notional, multiplier, window_ns, min_prints, min_levels, round_lot, equity = (
        params[0],
        params[1],
        params[2],
        params[3],
        params[4],
        params[5],
        params[6],
        params[7] > 0.0,
    )
    n = price.shape[0]
    run_of = np.full(n_codes, -1, np.int64)
    run_side = np.zeros(n_codes, np.int8)
    run_first = np.zeros(n_codes, np.int64)
    run_last = np.zeros(n_codes, np.float64)
    n_prints = np.zeros(n, np.int64)
    n_levels = np.zeros(n, np.int64)
    qual = np.full(n, -1, np.int64)
    trade_run = np.full(n, -1, np.int64)
    next_run = 0
    next_sweep = 0
    bad_price = 0
    bad_size = 0
    for i in range(n):
        p = price[i]
        q = size[i]
        block[i] = False
        odd_lot[i] = False
        if not (math.isfinite(p) and p > 0.0):
            bad_price += 1
            continue
        if not (math.isfinite(q) and q > 0.0):
            bad_size += 1
            continue
        block[i] = q >= block_size or p * q * multiplier >= block_notional
        odd_lot[i] = equity and q < round_lot
        c = codes[i]
        s = side[i]
        if s == 0:
            run_of[c] = -1
            continue
        r = run_of[c]
        dt = ts[i] - run_first[c]
        worse = (p >= run_last[c]) if s > 0 else (p <= run_last[c])
        if r >= 0 and s == run_side[c] and 0 <= dt <= window_ns and worse:
            n_prints[r] += 1
            if p != run_last[c]:
                n_levels[r] += 1
            run_last[c] = p
        else:
            r = next_run
            next_run += 1
            run_of[c] = r
            run_side[c] = s
            run_first[c] = ts[i]
            run_last[c] = p
            n_prints[r] = 1
            n_levels[r] = 1
        trade_run[i] = r
        if qual[r] < 0 and n_prints[r] >= min_prints and n_levels[r] >= min_levels:
            qual[r] = next_sweep
            next_sweep += 1
    for i in range(n):
        r = trade_run[i]
        sweep_id[i] = qual[r] if r >= 0 else -1
    return bad_price, bad_size


# --- batch API -----------------------------------------------------------------------------
def classify_aggressor(
    price: ArrayLike, bid: ArrayLike | None = None, ask: ArrayLike | None = None, contract: ArrayLike | None = None
) -> NDArray[np.int8]:
    """Aggressor side per print (+1 buy, −1 sell, 0 unknown/invalid), prints in time order.

    ``bid``/``ask`` are the quote at each print (arrays or scalars; None/NaN = no quote);
    ``contract`` identifies the instrument per print for the tick rule (None = one instrument).
    """
    p = _as_1d(price)
    n = p.size
    codes, n_codes = _codes(contract, n)
    side = np.zeros(n, dtype=np.int8)
    _classify_kernel(p, np.ones(n), _broadcast(bid, n), _broadcast(ask, n), codes, n_codes, side)
    return side


def premium_bursts(
    premium: ArrayLike,
    window_ids: ArrayLike | None = None,
    *,
    k: float = DEFAULT_BURST_K,
    lookback: int = DEFAULT_BURST_LOOKBACK,
    min_windows: int = DEFAULT_BURST_MIN_WINDOWS,
    min_premium: float = DEFAULT_BURST_MIN_PREMIUM,
) -> NDArray[np.bool_]:
    """Burst flag per window: premium > ``k`` × mean of the previous ``lookback`` windows.

    ``premium`` is gross premium per window; ``window_ids`` (increasing integers) give each
    entry's calendar window when empty windows are left out (default: consecutive windows).
    Non-finite premiums count as 0.
    """
    g = _as_1d(premium)
    g = np.where(np.isfinite(g), g, 0.0)
    ids = np.arange(g.size, dtype=np.int64) if window_ids is None else _as_1d(window_ids, np.int64)[: g.size]
    g = g[: ids.size]
    out = np.zeros(ids.size, dtype=np.bool_)
    if ids.size and np.all(np.diff(ids) > 0):
        _burst_kernel(ids, g, int(ids[0]), float(k), int(lookback), int(min_windows), float(min_premium), out)
    return out


def option_flow(
    ts_ns: ArrayLike,
    price: ArrayLike,
    size: ArrayLike,
    bid: ArrayLike | None,
    ask: ArrayLike | None,
    is_call: ArrayLike,
    contract: ArrayLike | None = None,
    *,
    window_s: float = DEFAULT_WINDOW_S,
    multiplier: float = OPTION_MULTIPLIER,
    burst_k: float = DEFAULT_BURST_K,
    burst_lookback: int = DEFAULT_BURST_LOOKBACK,
    burst_min_windows: int = DEFAULT_BURST_MIN_WINDOWS,
    burst_min_premium: float = DEFAULT_BURST_MIN_PREMIUM,
) -> OptionFlow:
    """Premium flow of option prints (time order): side, premium, per-window net flow and momentum.

    ``bid``, ``ask`` and ``is_call`` may be scalars (the same for every print).
    """
    t, t_ok = _timestamps(ts_ns)
    p = _as_1d(price)
    q = _as_1d(size)
    n = min(t.size, p.size, q.size)
    calls = _as_1d(is_call, np.bool_)
    if calls.size == 1:  # one right for every print
        calls = np.full(n, calls[0])
    n = min(n, calls.size)
    rejected: dict[str, int] = {}
    _count(rejected, "length_mismatch", t.size + p.size + q.size + calls.size - 4 * n)
    t, t_ok, p, q, calls = t[:n], t_ok[:n], p[:n], q[:n], calls[:n]
    codes, n_codes = _codes(contract, n)
    side = np.zeros(n, dtype=np.int8)
    bad_price, bad_size = _classify_kernel(p, q, _broadcast(bid, n), _broadcast(ask, n), codes, n_codes, side)
    _count(rejected, "bad_price", bad_price)
    _count(rejected, "bad_size", bad_size)
    with np.errstate(invalid="ignore", over="ignore"):
        valid = np.isfinite(p) & (p > 0) & np.isfinite(q) & (q > 0)
        premium = np.where(valid, p * q * multiplier, np.nan)
        premium_in_window = np.where(t_ok, premium, np.nan)
        _count(rejected, "bad_time", int(np.count_nonzero(valid & ~t_ok)))
        sign = np.where(calls, 1.0, -1.0) * side
        net_contribution = np.where(valid, sign * np.nan_to_num(premium), 0.0)
    window_ns = max(int(window_s * NS), 1)
    ids = np.empty(n, dtype=np.int64)
    sums = np.empty((5, n))
    m, out_of_order = _window_kernel(t, premium_in_window, side, calls, window_ns, ids, sums)
    _count(rejected, "out_of_order", out_of_order)
    ids, sums = ids[:m], sums[:, :m]
    with np.errstate(invalid="ignore", over="ignore"):  # only absurd (overflowing) premiums get here
        net = (sums[0] - sums[1]) - (sums[2] - sums[3])
        prev = np.zeros(m)
        if m > 1:
            consecutive = ids[1:] == ids[:-1] + 1
            prev[1:] = np.where(consecutive, net[:-1], 0.0)
        momentum = net - prev
    burst = premium_bursts(
        sums[4],
        ids,
        k=burst_k,
        lookback=burst_lookback,
        min_windows=burst_min_windows,
        min_premium=burst_min_premium,
    )
    return OptionFlow(
        side=side,
        premium=premium,
        net_contribution=net_contribution,
        window_start_ns=ids * window_ns,
        call_bought=sums[0].copy(),
        call_sold=sums[1].copy(),
        put_bought=sums[2].copy(),
        put_sold=sums[3].copy(),
        net=net,
        momentum=momentum,
        gross=sums[4].copy(),
        burst=burst,
        rejected=rejected,
    )


def _block_params(
    asset: str, block_size: float | None, block_notional: float | None, multiplier: float | None
) -> tuple[float, float, float]:
    if asset not in BLOCK_DEFAULTS:
        raise ValueError(f"asset must be 'option' or 'equity', got {asset!r}")
    d_size, d_notional, d_mult = BLOCK_DEFAULTS[asset]
    return (
        d_size if block_size is None else float(block_size),
        d_notional if block_notional is None else float(block_notional),
        d_mult if multiplier is None else float(multiplier),
    )


def detect_prints(
    ts_ns: ArrayLike,
    price: ArrayLike,
    size: ArrayLike,
    side: ArrayLike,
    contract: ArrayLike | None = None,
    *,
    asset: Literal["option", "equity"] = "option",
    block_size: float | None = None,
    block_notional: float | None = None,
    multiplier: float | None = None,
    sweep_window_s: float = DEFAULT_SWEEP_WINDOW_S,
    sweep_min_prints: int = DEFAULT_SWEEP_MIN_PRINTS,
    sweep_min_levels: int = DEFAULT_SWEEP_MIN_LEVELS,
    round_lot: int = DEFAULT_ROUND_LOT,
) -> PrintFlags:
    """Block, sweep and odd-lot flags per print (time order); ``side`` from :func:`classify_aggressor`."""
    size_t, notional_t, mult = _block_params(asset, block_size, block_notional, multiplier)
    t, t_ok = _timestamps(ts_ns)
    p = _as_1d(price)
    q = _as_1d(size)
    s = np.sign(np.nan_to_num(_as_1d(side), nan=0.0, posinf=0.0, neginf=0.0)).astype(np.int8)
    n = min(t.size, p.size, q.size, s.size)
    rejected: dict[str, int] = {}
    _count(rejected, "length_mismatch", t.size + p.size + q.size + s.size - 4 * n)
    t, p, q, s = t[:n], np.where(t_ok[:n], p[:n], np.nan), q[:n], np.ascontiguousarray(s[:n])
    _count(rejected, "bad_time", int(np.count_nonzero(~t_ok[:n])))
    codes, n_codes = _codes(contract, n)
    params = np.array(
        [
            size_t,
            notional_t,
            mult,
            float(int(sweep_window_s * NS)),
            float(sweep_min_prints),
            float(sweep_min_levels),
            float(round_lot),
            1.0 if asset == "equity" else 0.0,
        ]
    )
    block = np.zeros(n, dtype=np.bool_)
    odd = np.zeros(n, dtype=np.bool_)
    sweep_id = np.full(n, -1, dtype=np.int64)
    bad_price, bad_size = _prints_kernel(t, p, q, s, codes, n_codes, params, block, odd, sweep_id)
    _count(rejected, "bad_price", bad_price)
    _count(rejected, "bad_size", bad_size)
    return PrintFlags(block, sweep_id >= 0, sweep_id, odd, rejected)


def unusual_volume_oi(volume: ArrayLike, open_interest: ArrayLike, threshold: float = 1.0) -> UnusualActivity:
    """``volume / open_interest`` per contract and the flag ``ratio > threshold`` (strict)."""
    v = _as_1d(volume)
    oi = _as_1d(open_interest)
    n = min(v.size, oi.size)
    rejected: dict[str, int] = {}
    _count(rejected, "length_mismatch", v.size + oi.size - 2 * n)
    v, oi = v[:n], oi[:n]
    good_v = np.isfinite(v) & (v >= 0)
    good_oi = np.isfinite(oi) & (oi > 0)
    _count(rejected, "bad_volume", int(np.count_nonzero(~good_v)))
    _count(rejected, "no_oi", int(np.count_nonzero(good_v & ~good_oi)))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratio = np.where(good_v & good_oi, v / np.where(good_oi, oi, 1.0), np.nan)
    return UnusualActivity(ratio, np.nan_to_num(ratio, nan=-np.inf) > threshold, rejected)


# --- incremental API -----------------------------------------------------------------------
class _TickRule:
    """Per-contract last price and last non-zero tick direction (shared by the state classes)."""

    def __init__(self) -> None:
        self.last: dict[Hashable, tuple[float, int]] = {}

    def side(self, contract: Hashable, price: float, bid: float, ask: float) -> int:
        """Classify one valid print and advance the contract's tick state."""
        s = _quote_side(price, bid, ask)
        last_px, last_dir = self.last.get(contract, (math.nan, 0))
        if last_px == last_px:
            if price > last_px:
                last_dir = 1
            elif price < last_px:
                last_dir = -1
        self.last[contract] = (price, last_dir)
        return s if s != 0 else last_dir


class FlowWindow:
    """Incremental premium flow of one underlying's option prints (same numbers as :func:`option_flow`).

    Feed prints in time order with :meth:`update`; :meth:`value` reports the current window.
    """

    def __init__(
        self,
        window_s: float = DEFAULT_WINDOW_S,
        *,
        multiplier: float = OPTION_MULTIPLIER,
        burst_k: float = DEFAULT_BURST_K,
        burst_lookback: int = DEFAULT_BURST_LOOKBACK,
        burst_min_windows: int = DEFAULT_BURST_MIN_WINDOWS,
        burst_min_premium: float = DEFAULT_BURST_MIN_PREMIUM,
    ) -> None:
        self.window_ns = max(int(window_s * NS), 1)
        self.multiplier = multiplier
        self.burst = (burst_k, burst_lookback, burst_min_windows, burst_min_premium)
        self._tick = _TickRule()
        self._window = -1  # current window id (−1: none yet)
        self._first = -1
        self._sums = [0.0, 0.0, 0.0, 0.0, 0.0]  # call bought, call sold, put bought, put sold, gross
        self._prev: tuple[int, float] = (-1, 0.0)  # (id, net) of the last completed window
        self._history: deque[tuple[int, float]] = deque()  # (id, gross) of completed windows
        self.rejected: dict[str, int] = {}

    def update(
        self,
        ts_ns: int,
        price: float,
        size: float,
        bid: float,
        ask: float,
        is_call: bool,
        contract: Hashable = None,
    ) -> int:
        """Add one option print; returns its aggressor side (+1/−1/0). Bad prints return 0."""
        price, size = _to_float(price), _to_float(size)
        if not (math.isfinite(price) and price > 0):
            _count(self.rejected, "bad_price", 1)
            return 0
        if not (math.isfinite(size) and size > 0):
            _count(self.rejected, "bad_size", 1)
            return 0
        s = self._tick.side(contract, price, _to_float(bid), _to_float(ask))
        premium = price * size * self.multiplier
        ts = _to_int(ts_ns)
        if ts is None:
            _count(self.rejected, "bad_time", 1)
            return s
        w = ts // self.window_ns
        if self._window >= 0 and w < self._window:
            _count(self.rejected, "out_of_order", 1)
            return s
        if w != self._window:
            self._roll(w)
        sums = self._sums
        if s != 0:
            sums[(0 if s > 0 else 1) if is_call else (2 if s > 0 else 3)] += premium
        sums[4] += premium
        return s

    def _roll(self, w: int) -> None:
        if self._window >= 0:
            sums = self._sums
            self._prev = (self._window, (sums[0] - sums[1]) - (sums[2] - sums[3]))
            self._history.append((self._window, sums[4]))
        else:
            self._first = w
        self._window = w
        self._sums = [0.0, 0.0, 0.0, 0.0, 0.0]
        lookback = self.burst[1]
        while self._history and self._history[0][0] < w - lookback:
            self._history.popleft()

    def value(self) -> FlowReading:
        """Flow of the current window (partial until the next window starts)."""
        cb, cs, pb, ps, gross = self._sums
        net = (cb - cs) - (pb - ps)
        w = self._window
        if w < 0:
            return FlowReading(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, False, 0.0)
        prev_net = self._prev[1] if self._prev[0] == w - 1 else 0.0
        k, lookback, min_windows, min_premium = self.burst
        run = 0.0
        for wid, g in self._history:
            if wid >= w - lookback:
                run += g
        h = min(lookback, w - self._first)
        burst = h >= min_windows and h > 0 and gross >= min_premium and gross > k * (run / h)
        return FlowReading(w * self.window_ns, cb, cs, pb, ps, net, net - prev_net, gross, bool(burst), prev_net)

    def state(self) -> dict[str, Any]:
        """JSON-serialisable checkpoint (tick-rule state keyed by ``str(contract)``)."""
        return {
            "tick": [[str(c), p, d] for c, (p, d) in self._tick.last.items()],
            "window": self._window,
            "first": self._first,
            "sums": list(self._sums),
            "prev": list(self._prev),
            "history": [list(x) for x in self._history],
            "rejected": dict(self.rejected),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Load a checkpoint written by :meth:`state` (contracts come back as strings)."""
        self._tick.last = {c: (float(p), int(d)) for c, p, d in state["tick"]}
        self._window, self._first = int(state["window"]), int(state["first"])
        self._sums = [float(x) for x in state["sums"]]
        self._prev = (int(state["prev"][0]), float(state["prev"][1]))
        self._history = deque((int(w), float(g)) for w, g in state["history"])
        self.rejected = {str(k): int(c) for k, c in state["rejected"].items()}


class PrintDetector:
    """Incremental block / sweep / odd-lot detection (same rules as :func:`detect_prints`).

    ``side`` of each print comes from the caller (e.g. :func:`classify_aggressor` or the return
    value of :meth:`FlowWindow.update`).
    """

    def __init__(
        self,
        asset: Literal["option", "equity"] = "option",
        *,
        block_size: float | None = None,
        block_notional: float | None = None,
        multiplier: float | None = None,
        sweep_window_s: float = DEFAULT_SWEEP_WINDOW_S,
        sweep_min_prints: int = DEFAULT_SWEEP_MIN_PRINTS,
        sweep_min_levels: int = DEFAULT_SWEEP_MIN_LEVELS,
        round_lot: int = DEFAULT_ROUND_LOT,
    ) -> None:
        self.asset = asset
        self.block_size, self.block_notional, self.multiplier = _block_params(
            asset, block_size, block_notional, multiplier
        )
        self.window_ns = int(sweep_window_s * NS)
        self.min_prints = sweep_min_prints
        self.min_levels = sweep_min_levels
        self.round_lot = round_lot
        # contract → [side, first_ts, last_px, prints, levels, sweep_id (−1), notional]
        self._runs: dict[Hashable, list[Any]] = {}
        self._sweeps = 0
        self.rejected: dict[str, int] = {}

    def update(self, ts_ns: int, price: float, size: float, side: int, contract: Hashable = None) -> PrintEvent:
        """Flags of one print (time order); a bad print is counted and flags nothing."""
        price, size, ts = _to_float(price), _to_float(size), _to_int(ts_ns)
        if ts is None:  # the batch path counts it as a bad price too
            _count(self.rejected, "bad_time", 1)
            _count(self.rejected, "bad_price", 1)
            return PrintEvent(False, False, False, False, -1, 0, 0.0)
        if not (math.isfinite(price) and price > 0):
            _count(self.rejected, "bad_price", 1)
            return PrintEvent(False, False, False, False, -1, 0, 0.0)
        if not (math.isfinite(size) and size > 0):
            _count(self.rejected, "bad_size", 1)
            return PrintEvent(False, False, False, False, -1, 0, 0.0)
        notional = price * size * self.multiplier
        block = size >= self.block_size or notional >= self.block_notional
        odd = self.asset == "equity" and size < self.round_lot
        side_f = _to_float(side)
        s = (1 if side_f > 0 else -1 if side_f < 0 else 0) if math.isfinite(side_f) else 0
        if s == 0:
            self._runs.pop(contract, None)
            return PrintEvent(block, odd, False, False, -1, 0, 0.0)
        run = self._runs.get(contract)
        if (
            run is not None
            and s == run[0]
            and 0 <= ts - run[1] <= self.window_ns
            and (price >= run[2] if s > 0 else price <= run[2])
        ):
            run[3] += 1
            if price != run[2]:
                run[4] += 1
            run[2] = price
            run[6] += notional
        else:
            run = [s, ts, price, 1, 1, -1, notional]
            self._runs[contract] = run
        new = False
        if run[5] < 0 and run[3] >= self.min_prints and run[4] >= self.min_levels:
            run[5] = self._sweeps
            self._sweeps += 1
            new = True
        return PrintEvent(block, odd, run[5] >= 0, new, run[5], run[3], run[6])

    def state(self) -> dict[str, Any]:
        """JSON-serialisable checkpoint (open runs keyed by ``str(contract)``)."""
        return {
            "runs": [[str(c), *r] for c, r in self._runs.items()],
            "sweeps": self._sweeps,
            "rejected": self.rejected,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Load a checkpoint written by :meth:`state` (contracts come back as strings)."""
        self._runs = {
            c: [int(s), int(t), float(p), int(n), int(lv), int(sid), float(no)]
            for c, s, t, p, n, lv, sid, no in state["runs"]
        }
        self._sweeps = int(state["sweeps"])
        self.rejected = {str(k): int(c) for k, c in state["rejected"].items()}
