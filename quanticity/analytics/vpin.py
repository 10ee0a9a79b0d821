"""VPIN — volume-synchronised probability of informed trading — with bulk-volume classification.

Source: Easley, López de Prado & O'Hara (2012), "Flow Toxicity and Liquidity in a High-Frequency
World", Review of Financial Studies 25(5), 1457–1493 (ELO). Procedure, as implemented here:

1. **Volume clock.** Trades fill buckets of exactly ``V = ADV / 50`` shares (ELO: 50 buckets a
   day). A print larger than the room left in the current bucket is split: the first part closes
   the bucket, the rest opens the next one(s).
2. **Bulk-volume classification (BVC).** Each *bar* is classified as a fraction
   ``Z(ΔP / σ_ΔP)`` buy and ``1 − Z(ΔP / σ_ΔP)`` sell, ``Z`` the standard normal CDF.
   *Bar definition used here: one trade* (trade-level bars, the finest "trade aggregation within
   buckets"): ``ΔP`` is the price change from the previous valid trade, so a bucket's buy volume
   is ``V_B = Σ v_i · Z(ΔP_i / σ_ΔP)`` over the (parts of) trades it holds. ELO used one-minute
   time bars; trade bars need no timestamps, make the batch kernel and the incremental state
   produce the same numbers, and still let balanced up/down moves inside a bucket cancel.
   A zero price change classifies 50/50.
3. **σ_ΔP.** ELO estimate it over the sample; a live system cannot look ahead, so σ_ΔP is a
   *causal* exponentially weighted standard deviation of the trade-to-trade ΔP (half-life
   ``sigma_halflife`` trades; West's EW mean/variance recursion), updated *after* classifying each
   trade — or a fixed ``sigma`` supplied by the caller (e.g. yesterday's estimate). With
   ``σ_ΔP = 0`` the limit of ``Z`` is used: 1 for ΔP > 0, 0 for ΔP < 0, 0.5 for ΔP = 0.
4. **VPIN** over the last ``n = 50`` full buckets: ``Σ |V_B − V_S| / (n · V)``, with
   ``V_S = V − V_B``. (When :meth:`VpinState.set_adv` changes ``V`` mid-window the general
   form ``Σ|V_B − V_S| / Σ V_τ`` is used; with equal buckets it is the same number.)
5. **CDF.** ELO gate on the empirical CDF of VPIN rather than on its level; ``cdf`` is the
   fraction of the last ``cdf_window`` valid readings (at bucket closes) ≤ the current one.

**Neutral reading.** While fewer than ``n`` full buckets exist ("thin" flow) or the ADV is unknown
(non-finite or ≤ 0, state "no_adv"), ``vpin`` and ``cdf`` are **NaN** and ``state`` says why.
NaN is the safe neutral: every comparison with NaN is False, so a thin reading can neither
trigger nor clear a toxicity condition (``vpin > 0.7`` and ``vpin < 0.3`` are both False); a
strategy must check ``state == "ok"`` (or :attr:`VpinReading.ok`) to act on VPIN.

**Bad data** never raises: non-finite or non-positive prices (``bad_price``) and sizes
(``bad_size``) are skipped and counted; arrays of unequal length are truncated to the shortest
(``length_mismatch`` counts the dropped elements). A single print of more than ``n + 1`` buckets
emits only ``n + 1`` of them to ``series`` (the rest are identical and leave the window
unchanged); ``buckets`` still counts them all.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, NamedTuple

import numpy as np
from numba import njit
from numpy.typing import ArrayLike, NDArray

from quanticity.analytics.coerce import as_1d as _as_1d
from quanticity.analytics.coerce import to_float as _to_float

__all__ = [
    "STATE_NO_ADV",
    "STATE_OK",
    "STATE_THIN",
    "VpinReading",
    "VpinResult",
    "VpinState",
    "bucket_volume_from_adv",
    "bvc_buy_fraction",
    "vpin_from_trades",
]

STATE_OK = "ok"
STATE_THIN = "thin"
STATE_NO_ADV = "no_adv"
DEFAULT_BUCKETS_PER_DAY = 50
DEFAULT_WINDOW_BUCKETS = 50
DEFAULT_SIGMA_HALFLIFE = 1000.0
DEFAULT_CDF_WINDOW = 250
MAX_TRADE_SIZE = 1e12
"""A print larger than this many shares is impossible (the whole US market trades ~1e10 a day):
rejected as ``bad_size``. The bound also keeps bucket arithmetic far from float overflow."""
MAX_BUCKET_VOLUME = 1e13
"""A bucket volume (ADV / 50) above this is treated like no ADV: no real security trades that much."""
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)

# Layout of the carry vector shared by the kernel and VpinState.
_LAST, _MEAN, _VAR, _FILL, _BUY, _POS, _COUNT, _TOTAL = range(8)
_CARRY_LEN = 8


class VpinReading(NamedTuple):
    """Current VPIN of one symbol (see the module docstring for the NaN convention)."""

    vpin: float  # in [0, 1]; NaN unless state == "ok"
    state: str  # "ok" | "thin" | "no_adv"
    cdf: float  # empirical CDF of vpin over the last cdf_window readings; NaN unless ok
    buckets: int  # full buckets completed so far
    bucket_volume: float  # V, shares (NaN when the ADV is unknown)
    fill: float  # volume in the current, incomplete bucket

    @property
    def ok(self) -> bool:
        """True when ``vpin`` is a real reading (window full, ADV known)."""
        return self.state == STATE_OK


class VpinResult(NamedTuple):
    """Batch VPIN: the final reading plus the series at every bucket close."""

    vpin: float
    state: str
    cdf: float
    buckets: int
    bucket_volume: float
    series: NDArray[np.float64]  # VPIN after each emitted bucket; NaN while the window is not full
    bucket_end: NDArray[np.int64]  # index (into the input arrays) of the trade closing each bucket
    rejected: dict[str, int]


def bucket_volume_from_adv(adv: float, buckets_per_day: int = DEFAULT_BUCKETS_PER_DAY) -> float:
    """``V = ADV / buckets_per_day`` (ELO: 50); NaN when the ADV is unknown or not positive."""
    adv_f = _to_float(adv)
    if not math.isfinite(adv_f) or adv_f <= 0 or buckets_per_day <= 0:
        return math.nan
    return adv_f / buckets_per_day


def _halflife_alpha(halflife: float) -> float:
    """EW weight of the newest observation for a half-life in observations."""
    if not math.isfinite(halflife) or halflife <= 0:
        raise ValueError(f"sigma_halflife must be positive, got {halflife}")
    return 1.0 - 0.5 ** (1.0 / halflife)


def _bvc_z(dp: float, sigma: float) -> float:
    """Buy fraction Z(ΔP/σ) of one bar, with the σ → 0 limit (1, 0 or ½)."""
    if sigma > 0.0:
        return 0.5 * math.erfc(-(dp / sigma) * _INV_SQRT_2)
    if dp > 0.0:
        return 1.0
    if dp < 0.0:
        return 0.0
    return 0.5


_bvc_z_nb = njit(cache=True)(_bvc_z)


@njit(cache=True)
def _window_vpin(ring_imb: NDArray[np.float64], ring_vol: NDArray[np.float64]) -> float:  # pragma: no cover
    """Σ|V_B − V_S| / Σ V over the full ring (index order, the same in Python and numba)."""
    num = 0.0
    den = 0.0
    for j in range(ring_imb.shape[0]):
        num += ring_imb[j]
        den += ring_vol[j]
    return num / den if den > 0.0 else np.nan


@njit(cache=True)
def _vpin_kernel(
    prices: NDArray[np.float64],
    sizes: NDArray[np.float64],
    bucket_volume: float,
    fixed_sigma: float,
    alpha: float,
    carry: NDArray[np.float64],
    ring_imb: NDArray[np.float64],
    ring_vol: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.int64], int, int]:  # pragma: no cover - compiled by numba
    """Classify and bucket ``prices``/``sizes`` from the carried state; updates ``carry`` and the ring.

    Returns (VPIN at each emitted bucket close, index of the closing trade, bad prices, bad sizes).
    """
    n = ring_imb.shape[0]
    max_per_trade = n + 1
    cap = 64
    series = np.empty(cap, np.float64)
    ends = np.empty(cap, np.int64)
    k = 0
    bad_price = 0
    bad_size = 0
    v = bucket_volume
    have_v = 0.0 < v <= MAX_BUCKET_VOLUME
    for i in range(prices.shape[0]):
        p = prices[i]
        s = sizes[i]
        if not (math.isfinite(p) and p > 0.0):
            bad_price += 1
            continue
        if not (math.isfinite(s) and 0.0 < s <= MAX_TRADE_SIZE):
            bad_size += 1
            continue
        last = carry[_LAST]
        if last == last:
            dp = p - last
            sigma = fixed_sigma if fixed_sigma > 0.0 else math.sqrt(carry[_VAR])
            z = _bvc_z_nb(dp, sigma)
            diff = dp - carry[_MEAN]
            incr = alpha * diff
            carry[_MEAN] += incr
            carry[_VAR] = (1.0 - alpha) * (carry[_VAR] + diff * incr)
        else:
            z = 0.5
        carry[_LAST] = p
        if not have_v:
            continue
        remaining = s
        emitted = 0
        while remaining > 0.0:
            room = v - carry[_FILL]
            if remaining < room:
                carry[_FILL] += remaining
                carry[_BUY] += z * remaining
                break
            buy = carry[_BUY] + z * room
            pos = int(carry[_POS])
            ring_imb[pos] = abs(2.0 * buy - v)
            ring_vol[pos] = v
            carry[_POS] = (pos + 1) % n
            if carry[_COUNT] < n:
                carry[_COUNT] += 1.0
            carry[_TOTAL] += 1.0
            if k == series.shape[0]:
                grown = np.empty(2 * k, np.float64)
                grown[:k] = series
                series = grown
                grown_i = np.empty(2 * k, np.int64)
                grown_i[:k] = ends
                ends = grown_i
            series[k] = _window_vpin(ring_imb, ring_vol) if carry[_COUNT] >= n else np.nan
            ends[k] = i
            k += 1
            carry[_FILL] = 0.0
            carry[_BUY] = 0.0
            remaining -= room
            emitted += 1
            if emitted >= max_per_trade and remaining >= v:
                # The window now holds only identical buckets of this print: more change nothing.
                extra = math.floor(remaining / v)
                carry[_TOTAL] += extra
                remaining -= extra * v
                if not (0.0 <= remaining < v):
                    remaining = 0.0
                carry[_FILL] = remaining
                carry[_BUY] = z * remaining
                break
    return series[:k].copy(), ends[:k].copy(), bad_price, bad_size


def _aligned(*arrays: ArrayLike) -> tuple[list[NDArray[np.float64]], int]:
    """Flatten to float64 and truncate to the shortest; returns (arrays, elements dropped)."""
    flat = [_as_1d(a) for a in arrays]
    n = min(a.shape[0] for a in flat)
    dropped = sum(a.shape[0] - n for a in flat)
    return [a[:n] for a in flat], dropped


def _cdf(history: NDArray[np.float64] | deque[float], current: float) -> float:
    """Fraction of ``history`` (which includes ``current``) at or below ``current``."""
    hist = np.asarray(history, dtype=np.float64)
    if hist.size == 0 or not math.isfinite(current):
        return math.nan
    return float(np.count_nonzero(hist <= current)) / hist.size


def bvc_buy_fraction(
    prices: ArrayLike, sigma: float | None = None, sigma_halflife: float = DEFAULT_SIGMA_HALFLIFE
) -> NDArray[np.float64]:
    """Per-trade BVC buy fraction ``Z(ΔP/σ_ΔP)`` (½ for the first trade); NaN for a bad price.

    Same classification as :func:`vpin_from_trades` (causal EW σ, or the fixed ``sigma``).
    """
    p = _as_1d(prices)
    out = np.full(p.shape[0], np.nan)
    alpha = _halflife_alpha(sigma_halflife)
    fixed = float(sigma) if sigma is not None else math.nan
    last, mean, var = math.nan, 0.0, 0.0
    for i, price in enumerate(p.tolist()):
        if not (math.isfinite(price) and price > 0):
            continue
        if last == last:
            dp = price - last
            out[i] = _bvc_z(dp, fixed if fixed > 0 else math.sqrt(var))
            diff = dp - mean
            incr = alpha * diff
            mean += incr
            var = (1.0 - alpha) * (var + diff * incr)
        else:
            out[i] = 0.5
        last = price
    return out


def vpin_from_trades(
    prices: ArrayLike,
    sizes: ArrayLike,
    bucket_volume: float,
    n_buckets: int = DEFAULT_WINDOW_BUCKETS,
    *,
    sigma: float | None = None,
    sigma_halflife: float = DEFAULT_SIGMA_HALFLIFE,
    cdf_window: int = DEFAULT_CDF_WINDOW,
) -> VpinResult:
    """VPIN of a trade sequence (time order) with buckets of ``bucket_volume`` shares.

    ``bucket_volume`` is ``ADV / 50`` (:func:`bucket_volume_from_adv`); NaN or ≤ 0 means the ADV
    is unknown → state "no_adv". ``sigma`` fixes σ_ΔP (price units); by default it is the causal
    EW estimate of half-life ``sigma_halflife`` trades. Raises ``ValueError`` only for an invalid
    configuration (``n_buckets < 1``, ``sigma_halflife ≤ 0``), never for bad data.
    """
    if n_buckets < 1:
        raise ValueError(f"n_buckets must be ≥ 1, got {n_buckets}")
    (p, s), dropped = _aligned(prices, sizes)
    v = _to_float(bucket_volume)
    alpha = _halflife_alpha(sigma_halflife)
    fixed = float(sigma) if sigma is not None and math.isfinite(sigma) else math.nan
    carry = np.zeros(_CARRY_LEN)
    carry[_LAST] = math.nan
    ring_imb = np.zeros(n_buckets)
    ring_vol = np.zeros(n_buckets)
    series, ends, bad_price, bad_size = _vpin_kernel(p, s, v, fixed, alpha, carry, ring_imb, ring_vol)
    rejected = {k: c for k, c in (("bad_price", bad_price), ("bad_size", bad_size), ("length_mismatch", dropped)) if c}
    total = int(carry[_TOTAL])
    valid_v = 0 < v <= MAX_BUCKET_VOLUME
    if not valid_v:
        return VpinResult(math.nan, STATE_NO_ADV, math.nan, 0, math.nan, series, ends, rejected)
    if total < n_buckets or series.size == 0:
        return VpinResult(math.nan, STATE_THIN, math.nan, total, v, series, ends, rejected)
    current = float(series[-1])
    valid = series[np.isfinite(series)][-max(cdf_window, 1) :]
    return VpinResult(current, STATE_OK, _cdf(valid, current), total, v, series, ends, rejected)


class VpinState:
    """Incremental VPIN of one symbol, fed trade by trade (:meth:`update`) or by arrays.

    Produces the same readings as :func:`vpin_from_trades` on the same trades: :meth:`update_many`
    runs the same compiled kernel from the carried state, :meth:`update` is its line-by-line Python
    twin (cheaper than a kernel call for one trade). ``adv`` is the average daily volume in shares;
    NaN/None/≤ 0 means unknown (readings are "no_adv" until :meth:`set_adv`).
    """

    def __init__(
        self,
        adv: float | None,
        n_buckets: int = DEFAULT_WINDOW_BUCKETS,
        buckets_per_day: int = DEFAULT_BUCKETS_PER_DAY,
        *,
        sigma: float | None = None,
        sigma_halflife: float = DEFAULT_SIGMA_HALFLIFE,
        cdf_window: int = DEFAULT_CDF_WINDOW,
    ) -> None:
        if n_buckets < 1 or buckets_per_day < 1:
            raise ValueError("n_buckets and buckets_per_day must be ≥ 1")
        self.n_buckets = n_buckets
        self.buckets_per_day = buckets_per_day
        self.alpha = _halflife_alpha(sigma_halflife)
        self.fixed_sigma = float(sigma) if sigma is not None and math.isfinite(sigma) else math.nan
        self.bucket_volume = math.nan
        self.set_adv(adv)
        self._last = math.nan
        self._mean = 0.0
        self._var = 0.0
        self._fill = 0.0
        self._buy = 0.0
        self._pos = 0
        self._count = 0
        self._total = 0
        self._ring_imb = np.zeros(n_buckets)
        self._ring_vol = np.zeros(n_buckets)
        self._vpin = math.nan
        self._history: deque[float] = deque(maxlen=max(cdf_window, 1))
        self.rejected: dict[str, int] = {}

    def set_adv(self, adv: float | None) -> None:
        """New ADV (e.g. each morning): ``V`` changes for the buckets that close from now on."""
        self.adv = math.nan if adv is None else _to_float(adv)
        self.bucket_volume = bucket_volume_from_adv(self.adv, self.buckets_per_day)

    def _reject(self, reason: str, count: int = 1) -> None:
        if count:
            self.rejected[reason] = self.rejected.get(reason, 0) + count

    def update(self, price: float, size: float) -> None:
        """Add one trade (time order). Bad numbers are counted in :attr:`rejected` and skipped."""
        price = _to_float(price)
        size = _to_float(size)
        if not (math.isfinite(price) and price > 0):
            self._reject("bad_price")
            return
        if not (math.isfinite(size) and 0 < size <= MAX_TRADE_SIZE):
            self._reject("bad_size")
            return
        last = self._last
        if last == last:
            dp = price - last
            fixed = self.fixed_sigma
            z = _bvc_z(dp, fixed if fixed > 0 else math.sqrt(self._var))
            diff = dp - self._mean
            incr = self.alpha * diff
            self._mean += incr
            self._var = (1.0 - self.alpha) * (self._var + diff * incr)
        else:
            z = 0.5
        self._last = price
        if not 0 < self.bucket_volume <= MAX_BUCKET_VOLUME:
            return
        if size < self.bucket_volume - self._fill:  # the common case: the trade stays in the bucket
            self._fill += size
            self._buy += z * size
            return
        self._bucket_trade(size, z)

    def _bucket_trade(self, size: float, z: float) -> None:
        """Bucket a trade that closes at least one bucket (mirrors the kernel's loop exactly)."""
        v = self.bucket_volume
        n = self.n_buckets
        remaining = size
        emitted = 0
        while remaining > 0.0:
            room = v - self._fill
            if remaining < room:
                self._fill += remaining
                self._buy += z * remaining
                break
            buy = self._buy + z * room
            self._ring_imb[self._pos] = abs(2.0 * buy - v)
            self._ring_vol[self._pos] = v
            self._pos = (self._pos + 1) % n
            self._count = min(self._count + 1, n)
            self._total += 1
            self._close_bucket()
            self._fill = 0.0
            self._buy = 0.0
            remaining -= room
            emitted += 1
            if emitted >= n + 1 and remaining >= v:
                extra = math.floor(remaining / v)
                self._total += int(extra)
                remaining -= extra * v
                if not (0.0 <= remaining < v):
                    remaining = 0.0
                self._fill = remaining
                self._buy = z * remaining
                break

    def _close_bucket(self) -> None:
        if self._count >= self.n_buckets:
            self._vpin = float(_window_vpin(self._ring_imb, self._ring_vol))
            if math.isfinite(self._vpin):
                self._history.append(self._vpin)
        else:
            self._vpin = math.nan

    def update_many(self, prices: ArrayLike, sizes: ArrayLike) -> None:
        """Add a batch of trades (time order) through the compiled kernel."""
        (p, s), dropped = _aligned(prices, sizes)
        self._reject("length_mismatch", dropped)
        carry = np.array(
            [self._last, self._mean, self._var, self._fill, self._buy, self._pos, self._count, self._total],
            dtype=np.float64,
        )
        series, _, bad_price, bad_size = _vpin_kernel(
            p, s, self.bucket_volume, self.fixed_sigma, self.alpha, carry, self._ring_imb, self._ring_vol
        )
        self._reject("bad_price", bad_price)
        self._reject("bad_size", bad_size)
        self._last, self._mean, self._var, self._fill, self._buy = (float(x) for x in carry[:5])
        self._pos, self._count, self._total = int(carry[_POS]), int(carry[_COUNT]), int(carry[_TOTAL])
        if series.size:
            self._vpin = float(series[-1])
            self._history.extend(float(x) for x in series[np.isfinite(series)])

    def value(self) -> VpinReading:
        """The current reading; NaN + state "thin"/"no_adv" when VPIN is not meaningful."""
        v = self.bucket_volume
        if not 0 < v <= MAX_BUCKET_VOLUME:
            return VpinReading(math.nan, STATE_NO_ADV, math.nan, self._total, math.nan, self._fill)
        if self._total < self.n_buckets or not math.isfinite(self._vpin):
            return VpinReading(math.nan, STATE_THIN, math.nan, self._total, v, self._fill)
        return VpinReading(self._vpin, STATE_OK, _cdf(self._history, self._vpin), self._total, v, self._fill)

    def state(self) -> dict[str, Any]:
        """JSON-serialisable checkpoint (restore it with :meth:`restore`)."""
        return {
            "adv": self.adv,
            "last": self._last,
            "mean": self._mean,
            "var": self._var,
            "fill": self._fill,
            "buy": self._buy,
            "pos": self._pos,
            "count": self._count,
            "total": self._total,
            "ring_imb": self._ring_imb.tolist(),
            "ring_vol": self._ring_vol.tolist(),
            "vpin": self._vpin,
            "history": list(self._history),
            "rejected": dict(self.rejected),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Load a checkpoint written by :meth:`state` (same ``n_buckets`` and parameters)."""
        self.set_adv(float(state["adv"]))
        self._last, self._mean, self._var = float(state["last"]), float(state["mean"]), float(state["var"])
        self._fill, self._buy = float(state["fill"]), float(state["buy"])
        self._pos, self._count, self._total = int(state["pos"]), int(state["count"]), int(state["total"])
        ring_imb = np.asarray(state["ring_imb"], dtype=np.float64)
        ring_vol = np.asarray(state["ring_vol"], dtype=np.float64)
        if ring_imb.shape != (self.n_buckets,) or ring_vol.shape != (self.n_buckets,):
            raise ValueError("checkpoint was written with a different n_buckets")
        self._ring_imb, self._ring_vol = ring_imb.copy(), ring_vol.copy()
        self._vpin = float(state["vpin"])
        self._history.clear()
        self._history.extend(float(x) for x in state["history"])
        self.rejected = {str(k): int(c) for k, c in state["rejected"].items()}
