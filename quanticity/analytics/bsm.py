"""Vectorised Black–Scholes–Merton prices and greeks of European options on a dividend payer.

Model: the underlying pays a continuous dividend yield ``q``; with ``d1 = (ln(S/K) + (r − q +
σ²/2)·T) / (σ·√T)`` and ``d2 = d1 − σ·√T`` a call is worth ``S·e^{−qT}·N(d1) − K·e^{−rT}·N(d2)``
and a put ``K·e^{−rT}·N(−d2) − S·e^{−qT}·N(−d1)``.

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

Every argument broadcasts (scalars, arrays, ``is_call`` a bool array). The functions never
raise and never warn on bad numbers, because they run inside a market-data pipeline where one
bad quote must not take the actor down:

* any non-finite input, ``spot <= 0`` or ``strike <= 0`` → NaN in every output;
* ``t_years <= 0`` (expired) → intrinsic value, delta 1 / 0 for a call in / out of the money
  (−1 / 0 for a put, ±0.5 exactly at the strike), every other greek 0; the vol is irrelevant at
  expiry, so only its finiteness is checked;
* ``vol <= 0`` with ``t_years > 0`` → NaN.

Only numpy and numba are used: scipy is not a dependency, so the normal CDF is ``erfc``
compiled into a numba ufunc.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import vectorize
from numpy.typing import ArrayLike, NDArray

__all__ = ["Greeks", "bsm_greeks", "bsm_price", "norm_cdf", "norm_pdf"]

_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


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


class Greeks(NamedTuple):
    """Price and greeks of each option, one numpy array per field (units: module docstring)."""

    price: NDArray[np.float64]
    delta: NDArray[np.float64]
    gamma: NDArray[np.float64]
    vega: NDArray[np.float64]
    theta: NDArray[np.float64]
    rho: NDArray[np.float64]


def _inputs(
    spot: ArrayLike,
    strike: ArrayLike,
    t_years: ArrayLike,
    rate: ArrayLike,
    div_yield: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
) -> tuple[NDArray[np.float64], ...]:
    """Broadcast the arguments to float arrays; ``sign`` is +1 for a call, −1 for a put."""
    s, k, t, r, q, v, c = np.broadcast_arrays(
        np.asarray(spot, dtype=np.float64),
        np.asarray(strike, dtype=np.float64),
        np.asarray(t_years, dtype=np.float64),
        np.asarray(rate, dtype=np.float64),
        np.asarray(div_yield, dtype=np.float64),
        np.asarray(vol, dtype=np.float64),
        np.asarray(is_call, dtype=bool),
    )
    sign = np.where(c, 1.0, -1.0)
    return s, k, t, r, q, v, sign


def _masks(
    s: NDArray[np.float64],
    k: NDArray[np.float64],
    t: NDArray[np.float64],
    r: NDArray[np.float64],
    q: NDArray[np.float64],
    v: NDArray[np.float64],
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """``(invalid, expired)``: where the outputs are NaN, and where they are the intrinsic value."""
    finite = np.isfinite(s) & np.isfinite(k) & np.isfinite(t) & np.isfinite(r) & np.isfinite(q) & np.isfinite(v)
    invalid = ~finite | (s <= 0) | (k <= 0)
    expired = ~invalid & (t <= 0)
    invalid |= ~expired & (v <= 0)
    return invalid, expired


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
    """
    s, k, t, r, q, v, sign = _inputs(spot, strike, t_years, rate, div_yield, vol, is_call)
    invalid, expired = _masks(s, k, t, r, q, v)
    with np.errstate(all="ignore"):
        sqrt_t = np.sqrt(t)
        vol_sqrt_t = v * sqrt_t
        d1 = (np.log(s / k) + (r - q + 0.5 * v * v) * t) / vol_sqrt_t
        d2 = d1 - vol_sqrt_t
        fwd_s = s * np.exp(-q * t)
        disc_k = k * np.exp(-r * t)
        price = sign * (fwd_s * norm_cdf(sign * d1) - disc_k * norm_cdf(sign * d2))
        intrinsic = np.maximum(sign * (s - k), 0.0)
    price = np.where(expired, intrinsic, price)
    return np.asarray(np.where(invalid, np.nan, price))


def bsm_greeks(
    spot: ArrayLike,
    strike: ArrayLike,
    t_years: ArrayLike,
    rate: ArrayLike,
    div_yield: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
) -> Greeks:
    """Price, delta, gamma, vega (per 1.00 vol), theta (per year) and rho in one pass.

    One call prices a whole chain: the simulator calls it once per symbol per refresh with one
    element per contract, which is what keeps option refreshes cheap. Expired and invalid
    inputs are handled as described in the module docstring.
    """
    s, k, t, r, q, v, sign = _inputs(spot, strike, t_years, rate, div_yield, vol, is_call)
    invalid, expired = _masks(s, k, t, r, q, v)
    with np.errstate(all="ignore"):
        sqrt_t = np.sqrt(t)
        vol_sqrt_t = v * sqrt_t
        d1 = (np.log(s / k) + (r - q + 0.5 * v * v) * t) / vol_sqrt_t
        d2 = d1 - vol_sqrt_t
        exp_qt = np.exp(-q * t)
        fwd_s = s * exp_qt
        disc_k = k * np.exp(-r * t)
        # N(±d) evaluated directly (not as 1 − N(d)) so deep out-of-the-money puts keep precision.
        n_d1 = norm_cdf(sign * d1)
        n_d2 = norm_cdf(sign * d2)
        pdf_d1 = norm_pdf(d1)
        price = sign * (fwd_s * n_d1 - disc_k * n_d2)
        delta = sign * exp_qt * n_d1
        gamma = exp_qt * pdf_d1 / (s * vol_sqrt_t)
        vega = fwd_s * pdf_d1 * sqrt_t
        theta = -fwd_s * pdf_d1 * v / (2.0 * sqrt_t) - sign * r * disc_k * n_d2 + sign * q * fwd_s * n_d1
        rho = sign * k * t * np.exp(-r * t) * n_d2
        moneyness = sign * (s - k)
        intrinsic = np.maximum(moneyness, 0.0)
        # At expiry: a call's delta is 1 in the money, 0 out of it, 0.5 exactly at the strike; put = call − 1.
        call_delta = np.where(s > k, 1.0, np.where(s < k, 0.0, 0.5))
        expired_delta = np.where(sign > 0, call_delta, call_delta - 1.0)

    def finish(live: NDArray[np.float64], at_expiry: ArrayLike) -> NDArray[np.float64]:
        return np.asarray(np.where(invalid, np.nan, np.where(expired, at_expiry, live)))

    return Greeks(
        price=finish(price, intrinsic),
        delta=finish(delta, expired_delta),
        gamma=finish(gamma, 0.0),
        vega=finish(vega, 0.0),
        theta=finish(theta, 0.0),
        rho=finish(rho, 0.0),
    )
