"""Vectorised Black–Scholes–Merton prices and greeks of European options on a dividend payer.

Model: the underlying pays a continuous dividend yield ``q``; with ``d1 = (ln(S/K) + (r − q +
σ²/2)·T) / (σ·√T)`` and ``d2 = d1 − σ·√T`` a call is worth ``S·e^{−qT}·N(d1) − K·e^{−rT}·N(d2)``
and a put ``K·e^{−rT}·N(−d2) − S·e^{−qT}·N(−d1)`` (Black & Scholes 1973, Merton 1973).

Units and conventions (the same for every function of this module):

* ``spot``, ``strike`` and prices are in currency units; ``rate`` and ``div_yield`` are
  continuously compounded annual rates (0.045 = 4.5 %); ``vol`` is an annualised volatility
  (0.20 = 20 %); ``t_years`` is the time to expiry in years. "A year" is whatever time unit
  ``rate``, ``vol`` and ``t_years`` share: the simulator uses trading years (252 × 6.5 h) for all
  three, so the model variance matches the variance its paths realise.
* ``delta`` = ∂V/∂S, ``gamma`` = ∂²V/∂S², ``vega`` = ∂V/∂σ **per 1.00 of vol** (divide by 100
  for the per-vol-point figure brokers quote), ``theta`` = −∂V/∂T **per year** (the value change
  as calendar time passes, negative for a long option; divide by 252 or 365 for per day),
  ``rho`` = ∂V/∂r per 1.00 of rate.
* second-order greeks (Haug, "The Complete Guide to Option Pricing Formulas"):
  ``vanna`` = ∂Δ/∂σ = ∂vega/∂S (per 1.00 of vol), ``vomma`` = ∂vega/∂σ (per 1.00 of vol, twice),
  ``charm`` = −∂Δ/∂T **per year**: the change of delta as calendar time passes with spot and vol
  fixed (the same sign convention as ``theta``: charm·dt is the delta drift over ``dt`` years).

Every argument broadcasts (scalars, arrays, ``is_call`` a bool array). The functions never
raise and never warn on bad numbers, because they run inside a market-data pipeline where one
bad quote must not take the actor down:

* any non-finite input, ``spot <= 0`` or ``strike <= 0`` → NaN in every output;
* ``t_years <= 0`` (expired) → intrinsic value, delta 1 / 0 for a call in / out of the money
  (−1 / 0 for a put, ±0.5 exactly at the strike), every other greek 0; the vol is irrelevant at
  expiry, so only its finiteness is checked;
* ``vol <= 0`` with ``t_years > 0`` → NaN.

The hot path is one numba kernel per function (``@njit``, one core, ``fastmath=False`` so the
results are IEEE-exact and reproducible) that walks the contracts once and computes the price
and every greek from the same ``d1``, ``d2``, ``N(±d)`` and ``n(d1)``: a 10,000-contract chain
takes well under a millisecond. Only numpy and numba are used (scipy is not a dependency), so the
normal CDF is ``erfc``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit, vectorize
from numpy.typing import ArrayLike, NDArray

__all__ = ["Greeks", "bsm_greeks", "bsm_price", "norm_cdf", "norm_pdf"]

_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

# Row order of the greeks kernel's output block; equal to the field order of ``Greeks``.
_N_GREEKS = 9


@vectorize(["float64(float64)"], nopython=True, cache=True)
def _norm_cdf_ufunc(x: float) -> float:  # pragma: no cover - compiled by numba
    # erfc keeps full relative precision in the lower tail, where 0.5·(1 + erf) cancels to 0.
    return 0.5 * math.erfc(-x * _INV_SQRT_2)


@vectorize(["float64(float64)"], nopython=True, cache=True)
def _norm_pdf_ufunc(x: float) -> float:  # pragma: no cover - compiled by numba
    return _INV_SQRT_2PI * math.exp(-0.5 * x * x)


def norm_cdf(x: ArrayLike) -> NDArray[np.float64]:
    """Standard normal CDF, elementwise; accurate in both tails (via ``erfc``). NaN stays NaN."""
    return np.asarray(_norm_cdf_ufunc(np.asarray(x, dtype=np.float64)))


def norm_pdf(x: ArrayLike) -> NDArray[np.float64]:
    """Standard normal density, elementwise. NaN stays NaN."""
    return np.asarray(_norm_pdf_ufunc(np.asarray(x, dtype=np.float64)))


@njit(cache=True, fastmath=False, error_model="numpy")
def ncdf(x: float) -> float:  # pragma: no cover - compiled by numba
    """Scalar standard normal CDF for other numba kernels (``erfc``: exact lower tail)."""
    return 0.5 * math.erfc(-x * _INV_SQRT_2)


@njit(cache=True, fastmath=False, error_model="numpy")
def npdf(x: float) -> float:  # pragma: no cover - compiled by numba
    """Scalar standard normal density for other numba kernels."""
    return _INV_SQRT_2PI * math.exp(-0.5 * x * x)


class Greeks(NamedTuple):
    """Price and greeks of each option, one numpy array per field (units: module docstring).

    ``vanna``, ``charm`` and ``vomma`` were appended after the first six, so positional
    unpacking of the first six fields keeps working.
    """

    price: NDArray[np.float64]
    delta: NDArray[np.float64]
    gamma: NDArray[np.float64]
    vega: NDArray[np.float64]
    theta: NDArray[np.float64]
    rho: NDArray[np.float64]
    vanna: NDArray[np.float64]
    charm: NDArray[np.float64]
    vomma: NDArray[np.float64]


def broadcast_flat(*args: ArrayLike, dtypes: tuple[type, ...]) -> tuple[tuple[int, ...], list[NDArray]]:
    """The broadcast shape of ``args`` and each argument as a 1-D array of length 1 or ``n``.

    Length-1 arrays are read with stride 0 by the kernels, so scalars (rates, dividend yield,
    spot of a whole chain) are never materialised to ``n`` copies; only arguments whose shape
    differs from the broadcast shape and is not a scalar are copied by ``broadcast_to``.
    """
    arrays = [np.asarray(a, dtype=dt) for a, dt in zip(args, dtypes, strict=True)]
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    flat: list[NDArray] = []
    for a in arrays:
        if a.size == 1:
            flat.append(np.ascontiguousarray(a.reshape(1)))
        elif a.shape == shape:
            flat.append(np.ascontiguousarray(a.reshape(-1)))
        else:
            flat.append(np.ascontiguousarray(np.broadcast_to(a, shape).reshape(-1)))
    return shape, flat


@njit(cache=True, fastmath=False)
def _strides(
    a: int, b: int, c: int, d: int, e: int, f: int, g: int
) -> tuple[int, int, int, int, int, int, int]:  # pragma: no cover - compiled by numba
    """Read stride of each argument: 0 for a broadcast scalar (length 1), 1 otherwise."""
    return int(a > 1), int(b > 1), int(c > 1), int(d > 1), int(e > 1), int(f > 1), int(g > 1)


_BSM_DTYPES = (np.float64, np.float64, np.float64, np.float64, np.float64, np.float64, np.bool_)


@njit(cache=True, fastmath=False, error_model="numpy")
def _price_kernel(
    s: NDArray[np.float64],
    k: NDArray[np.float64],
    t: NDArray[np.float64],
    r: NDArray[np.float64],
    q: NDArray[np.float64],
    v: NDArray[np.float64],
    c: NDArray[np.bool_],
    out: NDArray[np.float64],
) -> None:  # pragma: no cover - compiled by numba
    """Price only (no density): what ``bsm_price`` needs, a little cheaper than the greeks."""
    # Stride 0 for length-1 (scalar) arguments, 1 for per-contract ones.
    ss, ks, ts, rs, qs, vs, cs = _strides(s.size, k.size, t.size, r.size, q.size, v.size, c.size)
    for i in range(out.size):
        spot = s[i * ss]
        strike = k[i * ks]
        tt = t[i * ts]
        rate = r[i * rs]
        div = q[i * qs]
        vol = v[i * vs]
        sign = 1.0 if c[i * cs] else -1.0
        finite = (
            math.isfinite(spot)
            and math.isfinite(strike)
            and math.isfinite(tt)
            and math.isfinite(rate)
            and math.isfinite(div)
            and math.isfinite(vol)
        )
        if not finite or spot <= 0.0 or strike <= 0.0:
            out[i] = np.nan
        elif tt <= 0.0:
            out[i] = max(sign * (spot - strike), 0.0)
        elif vol <= 0.0:
            out[i] = np.nan
        else:
            sqrt_t = math.sqrt(tt)
            vol_sqrt_t = vol * sqrt_t
            d1 = (math.log(spot / strike) + (rate - div + 0.5 * vol * vol) * tt) / vol_sqrt_t
            d2 = d1 - vol_sqrt_t
            # N(±d) evaluated directly (not as 1 − N(d)) so deep out-of-the-money puts keep precision.
            out[i] = sign * (
                spot * math.exp(-div * tt) * ncdf(sign * d1) - strike * math.exp(-rate * tt) * ncdf(sign * d2)
            )


@njit(cache=True, fastmath=False, error_model="numpy")
def _greeks_kernel(
    s: NDArray[np.float64],
    k: NDArray[np.float64],
    t: NDArray[np.float64],
    r: NDArray[np.float64],
    q: NDArray[np.float64],
    v: NDArray[np.float64],
    c: NDArray[np.bool_],
    out: NDArray[np.float64],
) -> None:  # pragma: no cover - compiled by numba
    """Price and all eight greeks in one pass; ``out`` is ``(9, n)`` in ``Greeks`` field order."""
    # Stride 0 for length-1 (scalar) arguments, 1 for per-contract ones.
    ss, ks, ts, rs, qs, vs, cs = _strides(s.size, k.size, t.size, r.size, q.size, v.size, c.size)
    n = out.shape[1]
    # e^{−qT}, e^{−rT} and √T are reused while (T, r, q) repeat, as they do along a sorted chain.
    t_prev = np.nan
    r_prev = np.nan
    q_prev = np.nan
    exp_qt = np.nan
    disc = np.nan
    sqrt_t = np.nan
    for i in range(n):
        spot = s[i * ss]
        strike = k[i * ks]
        tt = t[i * ts]
        rate = r[i * rs]
        div = q[i * qs]
        vol = v[i * vs]
        is_call = c[i * cs]
        sign = 1.0 if is_call else -1.0
        finite = (
            math.isfinite(spot)
            and math.isfinite(strike)
            and math.isfinite(tt)
            and math.isfinite(rate)
            and math.isfinite(div)
            and math.isfinite(vol)
        )
        if not finite or spot <= 0.0 or strike <= 0.0 or (tt > 0.0 and vol <= 0.0):
            for j in range(_N_GREEKS):
                out[j, i] = np.nan
            continue
        if tt <= 0.0:
            # At expiry: a call's delta is 1 in the money, 0 out of it, 0.5 exactly at the strike; put = call − 1.
            call_delta = 1.0 if spot > strike else (0.0 if spot < strike else 0.5)
            out[0, i] = max(sign * (spot - strike), 0.0)
            out[1, i] = call_delta if is_call else call_delta - 1.0
            for j in range(2, _N_GREEKS):
                out[j, i] = 0.0
            continue
        if tt != t_prev or rate != r_prev or div != q_prev:
            t_prev = tt
            r_prev = rate
            q_prev = div
            exp_qt = math.exp(-div * tt)
            disc = math.exp(-rate * tt)
            sqrt_t = math.sqrt(tt)
        vol_sqrt_t = vol * sqrt_t
        inv_vst = 1.0 / vol_sqrt_t  # divisions are the slowest arithmetic here: share them
        inv_vol = inv_vst * sqrt_t
        d1 = (math.log(spot / strike) + (rate - div + 0.5 * vol * vol) * tt) * inv_vst
        d2 = d1 - vol_sqrt_t
        fwd_s = spot * exp_qt
        disc_k = strike * disc
        # N(±d) evaluated directly (not as 1 − N(d)) so deep out-of-the-money puts keep precision.
        n_d1 = ncdf(sign * d1)
        n_d2 = ncdf(sign * d2)
        pdf_d1 = npdf(d1)
        q_pdf = exp_qt * pdf_d1  # e^{−qT}·n(d1)
        vega = fwd_s * pdf_d1 * sqrt_t
        out[0, i] = sign * (fwd_s * n_d1 - disc_k * n_d2)
        out[1, i] = sign * exp_qt * n_d1
        out[2, i] = q_pdf * inv_vst / spot
        out[3, i] = vega
        out[4, i] = -0.5 * fwd_s * pdf_d1 * vol / sqrt_t - sign * rate * disc_k * n_d2 + sign * div * fwd_s * n_d1
        out[5, i] = sign * disc_k * tt * n_d2
        # vanna = ∂Δ/∂σ = −e^{−qT}·n(d1)·d2/σ (calls and puts alike: their deltas differ by e^{−qT}).
        out[6, i] = -q_pdf * d2 * inv_vol
        # charm = −∂Δ/∂T = ±q·e^{−qT}·N(±d1) − e^{−qT}·n(d1)·((r − q)/(σ√T) − d2/(2T)).
        out[7, i] = sign * div * exp_qt * n_d1 - q_pdf * ((rate - div) * inv_vst - 0.5 * d2 / tt)
        # vomma = ∂vega/∂σ = vega·d1·d2/σ.
        out[8, i] = vega * d1 * d2 * inv_vol


def bsm_price(
    spot: ArrayLike,
    strike: ArrayLike,
    t_years: ArrayLike,
    rate: ArrayLike,
    div_yield: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
) -> NDArray[np.float64]:
    """BSM value of European calls (``is_call`` true) and puts; arguments broadcast.

    Expired options are worth their intrinsic value; invalid inputs give NaN (module docstring).
    Returns an array of the broadcast shape (0-d for all-scalar arguments).
    """
    shape, flat = broadcast_flat(spot, strike, t_years, rate, div_yield, vol, is_call, dtypes=_BSM_DTYPES)
    out = np.empty(math.prod(shape), dtype=np.float64)
    _price_kernel(*flat, out)
    return out.reshape(shape)


def bsm_greeks(
    spot: ArrayLike,
    strike: ArrayLike,
    t_years: ArrayLike,
    rate: ArrayLike,
    div_yield: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
) -> Greeks:
    """Price, delta, gamma, vega, theta, rho, vanna, charm and vomma in one pass.

    One call prices a whole chain: the simulator calls it once per symbol per refresh with one
    element per contract, which is what keeps option refreshes cheap. Units are in the module
    docstring (vega/vanna/vomma per 1.00 vol, theta/charm per year as calendar time passes).
    Expired and invalid inputs are handled as described there. The nine fields are rows of one
    ``(9, n)`` block, reshaped to the broadcast shape of the arguments.
    """
    shape, flat = broadcast_flat(spot, strike, t_years, rate, div_yield, vol, is_call, dtypes=_BSM_DTYPES)
    out = np.empty((_N_GREEKS, math.prod(shape)), dtype=np.float64)
    _greeks_kernel(*flat, out)
    return Greeks(*(out[j].reshape(shape) for j in range(_N_GREEKS)))
