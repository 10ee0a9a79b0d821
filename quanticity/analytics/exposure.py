"""Dealer exposures of an option chain: GEX, DEX, vanna and charm, zero-gamma level, walls, max pain.

Public API (all functions take a validated :class:`~quanticity.analytics.chain.Chain`)::

    dealer_exposures(chain, min_oi=5) -> Exposures
    zero_gamma_level(chain, grid_pct=0.1, points=41, min_oi=5) -> float
    gamma_profile(chain, spots, min_oi=5) -> NDArray[float64]
    max_pain(chain, min_oi=5) -> dict[ExpiryLabel, float]

Sign convention (SqueezeMetrics, "Gamma Exposure", 2017): dealers are assumed **long the calls
and short the puts** of the open interest (customers sell calls for income and buy puts for
protection), so a contract's dealer sign is ``+1`` for a call and ``−1`` for a put. Per contract,
with ``w = OI × 100`` shares (the multiplier) and the BSM greeks evaluated at the chain's spot
``S`` with the contract's own IV and time (:mod:`quanticity.analytics.bsm` conventions):

* ``gex      = sign × Γ × w × S² × 0.01``: $ of dealer delta gained per **1 % rise** of spot;
* ``dex      = Δ × w × S`` (SPEC formula, *no* dealer sign: calls +, puts − through Δ itself):
  the $ delta notional of the open interest as its holders see it;
* ``vanna_ex = sign × ∂Δ/∂σ × w × S × 0.01``: $ of dealer delta gained per **+1 vol point**;
* ``charm_ex = sign × ∂Δ/∂t × w × S``: $ of dealer delta gained per **year** of elapsed time
  (∂Δ/∂t = −∂Δ/∂T, the drift of delta as the calendar moves; divide by 252 for a trading day).

Contracts with ``OI < min_oi`` (5) are ignored everywhere: a handful of contracts is noise, not
positioning. The greeks are written out here (closed forms below) rather than taken from
``bsm_greeks``, so gamma, delta, vanna, charm and the zero-gamma profile come from one consistent
evaluation and can be fused into single numba loops.

Performance: a 10,000-contract chain takes well under a millisecond per call on one core after
the numba warm-up (``bench/analytics_exposure.py``). The tricks: calls and puts of one strike that
share time and vol (adjacent in a :class:`Chain`) are evaluated once; the zero-gamma grid uses a
Gaussian recurrence (two multiplications per grid point instead of an ``exp``) and skips grid
points where a contract's ``|d1| > 10``; the root is then polished on exact evaluations restricted
to the contracts alive in the bracket.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numba import njit
from numpy.typing import ArrayLike, NDArray

from quanticity.analytics.chain import Chain, ExpiryLabel

__all__ = [
    "BY_STRIKE_DTYPE",
    "BY_STRIKE_EXPIRY_DTYPE",
    "DEFAULT_MIN_OI",
    "Exposures",
    "dealer_exposures",
    "gamma_profile",
    "max_pain",
    "zero_gamma_level",
]

DEFAULT_MIN_OI = 5
"""Contracts with less open interest than this are ignored (SPEC)."""

BY_STRIKE_DTYPE = np.dtype(
    [
        ("strike", np.float64),
        ("gex", np.float64),
        ("dex", np.float64),
        ("vanna_ex", np.float64),
        ("charm_ex", np.float64),
        ("call_gex", np.float64),
        ("put_gex", np.float64),
        ("call_oi", np.int64),
        ("put_oi", np.int64),
    ]
)
"""Row of :attr:`Exposures.by_strike`: one per listed strike, summed over expiries."""

BY_STRIKE_EXPIRY_DTYPE = np.dtype(
    [
        ("expiry_idx", np.int64),
        ("strike", np.float64),
        ("gex", np.float64),
        ("dex", np.float64),
        ("vanna_ex", np.float64),
        ("charm_ex", np.float64),
        ("call_gex", np.float64),
        ("put_gex", np.float64),
        ("call_oi", np.int64),
        ("put_oi", np.int64),
    ]
)
"""Row of :attr:`Exposures.by_strike_expiry`: one per listed (expiry, strike) cell."""

# Accumulator rows of the kernel (shared by the per-strike and the per-cell tables).
_GEX, _DEX, _VANNA, _CHARM, _CALL_GEX, _PUT_GEX, _CALL_OI, _PUT_OI = range(8)
_N_ACC = 8

# Fast-math without "no NaNs / no infs": reductions may be reordered and FMAs fused, but the
# non-finite checks that keep bad rows out must still work.
_FASTMATH = {"nsz", "arcp", "contract", "reassoc"}
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_D_CUT = 10.0
"""|d1| beyond which a contract's gamma is dropped from the profile: φ(10)/φ(0) = e^{−50} ≈ 2e−22."""


# --- result ---------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Exposures:
    """Dealer exposures of one chain snapshot (units and signs: module docstring).

    ``by_strike`` (dtype :data:`BY_STRIKE_DTYPE`) and ``by_strike_expiry``
    (:data:`BY_STRIKE_EXPIRY_DTYPE`, ``expiry_idx`` indexing ``expiries``) are numpy structured
    arrays rather than DataFrames: they cost microseconds to build on the hot path and pickle
    compactly between actors; :meth:`by_strike_frame` / :meth:`by_strike_expiry_frame` give the
    pandas view when one is wanted. Both list every strike (cell) of the chain, with zeros where
    all contracts were filtered out; ``call_oi``/``put_oi`` count only contracts that were used.

    * ``max_abs_gex_strike``: strike whose net GEX (calls + puts, all expiries) is largest in
      **absolute value** — a big negative put strike counts as much as a big positive call strike;
    * ``call_wall``: strike with the largest call GEX (gamma-weighted open interest: the strike
      where dealers' long-call hedging — sell rallies — is heaviest, i.e. resistance);
    * ``put_wall``: strike with the most negative put GEX (largest put gamma: support).

    Each level is NaN when no contract qualifies; ties go to the lowest strike. ``contracts_used``
    counts contracts with ``OI >= min_oi``; ``contracts_skipped`` those among them whose greeks
    came out non-finite (e.g. an absurdly small σ√t), left out of every sum.
    """

    spot: float
    gex: float
    dex: float
    vanna_ex: float
    charm_ex: float
    call_gex: float
    put_gex: float
    max_abs_gex_strike: float
    call_wall: float
    put_wall: float
    by_strike: NDArray[np.void]
    by_strike_expiry: NDArray[np.void]
    expiries: tuple[ExpiryLabel, ...]
    contracts_used: int
    contracts_skipped: int

    def by_strike_frame(self) -> pd.DataFrame:
        """``by_strike`` as a DataFrame indexed by strike."""
        return pd.DataFrame(self.by_strike).set_index("strike")

    def by_strike_expiry_frame(self) -> pd.DataFrame:
        """``by_strike_expiry`` as a DataFrame indexed by (expiry label, strike)."""
        frame = pd.DataFrame(self.by_strike_expiry)
        labels = np.empty(len(self.expiries), dtype=object)
        labels[:] = list(self.expiries)
        frame.insert(0, "expiry", labels[frame.pop("expiry_idx").to_numpy()])
        return frame.set_index(["expiry", "strike"])

    def totals(self) -> dict[str, float]:
        """The scalar results, e.g. for a metrics snapshot."""
        names = ("gex", "dex", "vanna_ex", "charm_ex", "call_gex", "put_gex")
        names += ("max_abs_gex_strike", "call_wall", "put_wall")
        return {name: float(getattr(self, name)) for name in names}


# --- kernels --------------------------------------------------------------------------------------
@njit(cache=True, fastmath=_FASTMATH)
def _exposure_kernel(
    strike: NDArray[np.float64],
    t_years: NDArray[np.float64],
    iv: NDArray[np.float64],
    is_call: NDArray[np.bool_],
    oi: NDArray[np.int64],
    strike_idx: NDArray[np.int64],
    cell_idx: NDArray[np.int64],
    n_strikes: int,
    n_cells: int,
    spot: float,
    rate: float,
    div_yield: float,
    min_oi: int,
) -> tuple[NDArray[np.float64], NDArray[np.float64], int, int]:  # pragma: no cover - compiled by numba
    """Per-strike and per-cell sums of GEX, DEX, vanna, charm and OI (rows: the ``_GEX``… indices).

    Closed forms (BSM with dividend yield q, d1/d2 as in bsm.py, φ/N the normal pdf/cdf):
    Γ = e^{−qt} φ(d1) / (S σ√t); Δ_call = e^{−qt} N(d1), Δ_put = −e^{−qt} N(−d1);
    vanna = ∂Δ/∂σ = −e^{−qt} φ(d1) d2 / σ (calls and puts alike);
    charm = ∂Δ/∂t = ±q e^{−qt} N(±d1) − e^{−qt} φ(d1) (2(r−q)t − d2 σ√t) / (2 t σ√t).
    """
    per_strike = np.zeros((_N_ACC, n_strikes))
    per_cell = np.zeros((_N_ACC, n_cells))
    used = 0
    skipped = 0
    prev_k = math.nan
    prev_t = math.nan
    prev_v = math.nan
    gamma = delta_c = delta_p = vanna = charm_c = charm_p = 0.0
    carry = rate - div_yield
    dollar_gamma = spot * spot  # 100 shares × S² × 1 %
    dollar_delta = 100.0 * spot
    for i in range(strike.shape[0]):
        w = oi[i]
        if w < min_oi:
            continue
        used += 1
        k = strike[i]
        t = t_years[i]
        v = iv[i]
        if k != prev_k or t != prev_t or v != prev_v:
            # A new (strike, time, vol): the call and put of a strike usually share it, so the
            # transcendental functions run once per pair.
            sqrt_t = math.sqrt(t)
            vst = v * sqrt_t
            d1 = (math.log(spot / k) + (carry + 0.5 * v * v) * t) / vst
            d2 = d1 - vst
            eqt = math.exp(-div_yield * t)
            pdf = _INV_SQRT_2PI * math.exp(-0.5 * d1 * d1)
            # N(d1) and N(−d1) from one erfc, each accurate where it is the small one.
            if d1 >= 0.0:
                n_minus = 0.5 * math.erfc(d1 * _INV_SQRT_2)
                n_plus = 1.0 - n_minus
            else:
                n_plus = 0.5 * math.erfc(-d1 * _INV_SQRT_2)
                n_minus = 1.0 - n_plus
            gamma = eqt * pdf / (spot * vst)
            delta_c = eqt * n_plus
            delta_p = -eqt * n_minus
            vanna = -eqt * pdf * d2 / v
            charm_common = -eqt * pdf * (2.0 * carry * t - d2 * vst) / (2.0 * t * vst)
            charm_c = div_yield * eqt * n_plus + charm_common
            charm_p = -div_yield * eqt * n_minus + charm_common
            prev_k = k
            prev_t = t
            prev_v = v
        wf = float(w)
        if is_call[i]:
            gex = gamma * wf * dollar_gamma
            dex = delta_c * wf * dollar_delta
            vex = vanna * wf * spot  # 100 shares × S × 0.01 per vol point
            cex = charm_c * wf * dollar_delta
        else:
            gex = -gamma * wf * dollar_gamma
            dex = delta_p * wf * dollar_delta
            vex = -vanna * wf * spot
            cex = -charm_p * wf * dollar_delta
        if not math.isfinite(gex + dex + vex + cex):
            skipped += 1
            continue
        s = strike_idx[i]
        c = cell_idx[i]
        per_strike[_GEX, s] += gex
        per_strike[_DEX, s] += dex
        per_strike[_VANNA, s] += vex
        per_strike[_CHARM, s] += cex
        per_cell[_GEX, c] += gex
        per_cell[_DEX, c] += dex
        per_cell[_VANNA, c] += vex
        per_cell[_CHARM, c] += cex
        if is_call[i]:
            per_strike[_CALL_GEX, s] += gex
            per_strike[_CALL_OI, s] += wf
            per_cell[_CALL_GEX, c] += gex
            per_cell[_CALL_OI, c] += wf
        else:
            per_strike[_PUT_GEX, s] += gex
            per_strike[_PUT_OI, s] += wf
            per_cell[_PUT_GEX, c] += gex
            per_cell[_PUT_OI, c] += wf
    return per_strike, per_cell, used, skipped


@njit(cache=True, fastmath=_FASTMATH)
def _gamma_terms(
    strike: NDArray[np.float64],
    t_years: NDArray[np.float64],
    iv: NDArray[np.float64],
    is_call: NDArray[np.bool_],
    oi: NDArray[np.int64],
    rate: float,
    div_yield: float,
    min_oi: int,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], int]:  # pragma: no cover
    """Spot-independent constants of each contract's dealer gamma, as a function of ``u = ln S``.

    ``sign × OI × Γ(S) × S = c × φ(a·u + b)`` with ``a = 1/(σ√t)``,
    ``b = (−ln K + (r − q + σ²/2) t)/(σ√t)`` and ``c = sign × OI × e^{−qt}/(σ√t)``: computed once,
    so each grid point costs one Gaussian per term. Adjacent rows with the same (K, t, σ) — a
    call and a put — merge into one term (their c's add). Returns ``(a, b, c, n_terms)``.
    """
    n = strike.shape[0]
    a = np.empty(n)
    b = np.empty(n)
    c = np.empty(n)
    m = -1
    prev_k = math.nan
    prev_t = math.nan
    prev_v = math.nan
    carry = rate - div_yield
    for i in range(n):
        if oi[i] < min_oi:
            continue
        k = strike[i]
        t = t_years[i]
        v = iv[i]
        vst = v * math.sqrt(t)
        weight = float(oi[i]) * math.exp(-div_yield * t) / vst
        if not is_call[i]:
            weight = -weight
        ai = 1.0 / vst
        bi = (-math.log(k) + (carry + 0.5 * v * v) * t) / vst
        if not (math.isfinite(weight) and math.isfinite(ai) and math.isfinite(bi)):
            continue
        if m >= 0 and k == prev_k and t == prev_t and v == prev_v:
            c[m] += weight
            continue
        m += 1
        a[m] = ai
        b[m] = bi
        c[m] = weight
        prev_k = k
        prev_t = t
        prev_v = v
    # Drop terms whose call and put weights cancelled exactly.
    n_terms = 0
    for j in range(m + 1):
        if c[j] != 0.0:
            a[n_terms] = a[j]
            b[n_terms] = b[j]
            c[n_terms] = c[j]
            n_terms += 1
    return a, b, c, n_terms


@njit(cache=True, fastmath=_FASTMATH)
def _profile_on_grid(
    a: NDArray[np.float64],
    b: NDArray[np.float64],
    c: NDArray[np.float64],
    n_terms: int,
    u0: float,
    h: float,
    m: int,
) -> NDArray[np.float64]:  # pragma: no cover - compiled by numba
    """``f(u_j) = Σ c·exp(−d²/2)``, ``d = a·u_j + b``, on the grid ``u_j = u0 + j·h``, j < m.

    Along the grid ``d`` moves by ``s = a·h`` per step, so ``E_{j+1} = E_j·R_j`` with
    ``R_j = exp(−d_j·s − s²/2)`` and ``R_{j+1} = R_j·exp(−s²)``: three ``exp`` per term instead of
    one per grid point. The walk starts where ``d ≥ −10`` and stops past ``d > 10`` (the
    Gaussian is < e^{−50} outside), so the numbers stay in range — ``R ≤ e^{50}`` since a walk of
    ≥ 4 steps has ``s ≤ 5`` — and short-dated contracts touch only the few points near their
    strike. The relative error grows by a few ulps per step: negligible for a few hundred points.
    """
    out = np.zeros(m)
    last = float(m - 1)
    for i in range(n_terms):
        ai = a[i]
        ci = c[i]
        d0 = ai * u0 + b[i]
        s = ai * h
        lo = (-_D_CUT - d0) / s
        hi = (_D_CUT - d0) / s
        if lo > last or hi < 0.0:
            continue
        j_lo = int(math.ceil(max(lo, 0.0)))
        j_hi = int(math.floor(min(hi, last)))
        if j_hi < j_lo:
            continue
        if j_hi - j_lo < 4:
            for j in range(j_lo, j_hi + 1):
                d = d0 + j * s
                out[j] += ci * math.exp(-0.5 * d * d)
            continue
        d = d0 + j_lo * s
        e = ci * math.exp(-0.5 * d * d)
        r = math.exp(-d * s - 0.5 * s * s)
        q = math.exp(-s * s)
        for j in range(j_lo, j_hi + 1):
            out[j] += e
            e *= r
            r *= q
    return out


@njit(cache=True, fastmath=_FASTMATH)
def _profile_and_slope(
    a: NDArray[np.float64], b: NDArray[np.float64], c: NDArray[np.float64], active: NDArray[np.int64], u: float
) -> tuple[float, float]:  # pragma: no cover - compiled by numba
    """Exact ``f(u) = Σ c·exp(−d²/2)``, ``d = a·u + b``, and ``f'(u) = −Σ c·a·d·exp(−d²/2)``.

    Over the ``active`` terms only; the slope costs two flops per term on top of the ``exp``.
    """
    total = 0.0
    slope = 0.0
    for j in range(active.shape[0]):
        i = active[j]
        d = a[i] * u + b[i]
        e = c[i] * math.exp(-0.5 * d * d)
        total += e
        slope -= e * a[i] * d
    return total, slope


@njit(cache=True, fastmath=_FASTMATH)
def _zero_gamma_kernel(
    a: NDArray[np.float64],
    b: NDArray[np.float64],
    c: NDArray[np.float64],
    n_terms: int,
    spot: float,
    u_lo: float,
    u_hi: float,
    points: int,
) -> float:  # pragma: no cover - compiled by numba
    """Root of the dealer-gamma profile nearest ``spot`` in ``[u_lo, u_hi]`` (log spot), or NaN.

    1. Evaluate the profile on ``points`` log-spaced grid points (:func:`_profile_on_grid`).
    2. Every pair of consecutive non-zero values of opposite sign brackets a root (exact zeros
       between them — regions where no contract has gamma — are skipped); the bracket whose
       linear-interpolation root is nearest ``spot`` is kept.
    3. The root in that bracket is polished by safeguarded Newton (quadratic, never leaves the
       bracket) on exact evaluations over the terms with ``|d| <= 10`` somewhere in it, to
       ~1e−10 in log spot.
    """
    if n_terms == 0 or points < 2:
        return math.nan
    h = (u_hi - u_lo) / (points - 1)
    f = _profile_on_grid(a, b, c, n_terms, u_lo, h, points)
    best_dist = math.inf
    best_j = -1
    best_k = -1
    prev = -1
    for j in range(points):
        if f[j] == 0.0 or not math.isfinite(f[j]):
            continue
        if prev >= 0 and (f[prev] > 0.0) != (f[j] > 0.0):
            ua = u_lo + prev * h
            ub = u_lo + j * h
            guess = ua + (ub - ua) * f[prev] / (f[prev] - f[j])
            dist = abs(math.exp(guess) - spot)
            if dist < best_dist:
                best_dist = dist
                best_j = prev
                best_k = j
        prev = j
    if best_j < 0:
        return math.nan
    ua = u_lo + best_j * h
    ub = u_lo + best_k * h
    # Terms alive somewhere in [ua, ub]: d is linear in u, so check the ends.
    active = np.empty(n_terms, dtype=np.int64)
    n_active = 0
    for i in range(n_terms):
        da = a[i] * ua + b[i]
        db = a[i] * ub + b[i]
        if (da <= _D_CUT and db >= -_D_CUT) or (db <= _D_CUT and da >= -_D_CUT):
            active[n_active] = i
            n_active += 1
    active = active[:n_active]
    # Safeguarded Newton ("rtsafe"): Newton steps from the grid's linear interpolation, kept inside
    # a bracket that shrinks at every evaluation; a bisection whenever Newton would leave the
    # bracket or fails to halve the step. The grid values serve as the bracket's ends (no exact
    # re-evaluation), so typically 2–3 passes over the active terms reach the tolerance.
    lo = ua
    f_lo = f[best_j]
    hi = ub
    x = ua + (ub - ua) * f_lo / (f_lo - f[best_k])
    tol = 1e-10 * max(abs(ua), abs(ub), 1.0)
    step_old = ub - ua
    step = step_old
    for _ in range(100):
        fx, dfx = _profile_and_slope(a, b, c, active, x)
        if fx == 0.0 or not math.isfinite(fx):
            break
        if (fx > 0.0) == (f_lo > 0.0):
            lo = x
            f_lo = fx
        else:
            hi = x
        newton = x - fx / dfx if dfx != 0.0 else math.nan
        inside = (lo < newton < hi) or (hi < newton < lo)
        if not inside or abs(2.0 * fx) > abs(step_old * dfx):
            step_old = step
            step = 0.5 * (hi - lo)
            x_new = lo + step
        else:
            step_old = step
            step = x - newton
            x_new = newton
        done = abs(x_new - x) <= tol or abs(hi - lo) <= tol
        x = x_new
        if done:
            break
    return math.exp(x)


@njit(cache=True, fastmath=_FASTMATH)
def _gamma_profile_kernel(
    a: NDArray[np.float64], b: NDArray[np.float64], c: NDArray[np.float64], n_terms: int, spots: NDArray[np.float64]
) -> NDArray[np.float64]:  # pragma: no cover - compiled by numba
    """Dealer GEX at each spot x: ``x · Σ c·φ(a·ln x + b)`` (all terms, exact)."""
    out = np.empty(spots.shape[0])
    for j in range(spots.shape[0]):
        x = spots[j]
        u = math.log(x)
        total = 0.0
        for i in range(n_terms):
            d = a[i] * u + b[i]
            total += c[i] * math.exp(-0.5 * d * d)
        out[j] = x * total * _INV_SQRT_2PI
    return out


@njit(cache=True)
def _max_pain_kernel(
    oi: NDArray[np.int64],
    is_call: NDArray[np.bool_],
    cell_idx: NDArray[np.int64],
    cell_expiry_idx: NDArray[np.int64],
    cell_strike: NDArray[np.float64],
    n_expiries: int,
    min_oi: int,
) -> NDArray[np.float64]:  # pragma: no cover - compiled by numba
    """Max-pain strike per expiry (cells — the listed strikes — sorted by expiry, then strike).

    Payout to holders if the underlying settles at candidate ``K*`` (per 1 share of multiplier):
    ``Σ_calls OI·max(K* − K, 0) + Σ_puts OI·max(K − K*, 0)``. Left-to-right running sums of call
    OI and OI·K give the call part at every listed strike, right-to-left sums the put part: O(m)
    per expiry instead of O(m²). NaN for an expiry without open interest.
    """
    out = np.full(n_expiries, np.nan)
    n = cell_strike.shape[0]
    call_oi = np.zeros(n)
    put_oi = np.zeros(n)
    for i in range(oi.shape[0]):
        if oi[i] >= min_oi:
            if is_call[i]:
                call_oi[cell_idx[i]] += oi[i]
            else:
                put_oi[cell_idx[i]] += oi[i]
    start = 0
    while start < n:
        e = cell_expiry_idx[start]
        end = start
        while end < n and cell_expiry_idx[end] == e:
            end += 1
        m = end - start
        total_oi = 0.0
        for j in range(start, end):
            total_oi += call_oi[j] + put_oi[j]
        if total_oi > 0.0:
            pain = np.zeros(m)
            cum_oi = 0.0
            cum_oik = 0.0
            for j in range(m):  # calls struck below K*
                k = cell_strike[start + j]
                pain[j] += k * cum_oi - cum_oik
                cum_oi += call_oi[start + j]
                cum_oik += call_oi[start + j] * k
            cum_oi = 0.0
            cum_oik = 0.0
            for j in range(m - 1, -1, -1):  # puts struck above K*
                k = cell_strike[start + j]
                pain[j] += cum_oik - k * cum_oi
                cum_oi += put_oi[start + j]
                cum_oik += put_oi[start + j] * k
            best = 0
            for j in range(1, m):
                # Strictly smaller beyond rounding: exact ties keep the lowest strike.
                if pain[j] < pain[best] - 1e-12 * abs(pain[best]):
                    best = j
            out[e] = cell_strike[start + best]
        start = end
    return out


# --- public API -----------------------------------------------------------------------------------
def _market_ok(chain: Chain) -> bool:
    """Spot, rate and dividend yield usable: without them no greek exists (→ NaN results)."""
    return math.isfinite(chain.spot) and chain.spot > 0 and math.isfinite(chain.rate) and math.isfinite(chain.div_yield)


def _argmax_level(strikes: NDArray[np.float64], values: NDArray[np.float64]) -> float:
    """Strike of the largest strictly positive value (first on ties), NaN when none is positive."""
    if len(values) == 0:
        return math.nan
    j = int(np.argmax(values))
    return float(strikes[j]) if values[j] > 0 else math.nan


def dealer_exposures(chain: Chain, min_oi: int = DEFAULT_MIN_OI) -> Exposures:
    """GEX, DEX, vanna and charm exposure of ``chain``: totals, by strike, by (expiry, strike), levels.

    Signs, units and level definitions: module docstring and :class:`Exposures`. Never raises on
    data: a non-finite or non-positive spot (or non-finite rate/yield) gives NaN totals and levels.
    """
    n_strikes = len(chain.strikes)
    n_cells = len(chain.cell_strike)
    if _market_ok(chain):
        per_strike, per_cell, used, skipped = _exposure_kernel(
            chain.strike,
            chain.t_years,
            chain.iv,
            chain.is_call,
            chain.oi,
            chain.strike_idx,
            chain.cell_idx,
            n_strikes,
            n_cells,
            chain.spot,
            chain.rate,
            chain.div_yield,
            int(min_oi),
        )
    else:
        per_strike = np.full((_N_ACC, n_strikes), np.nan)
        per_cell = np.full((_N_ACC, n_cells), np.nan)
        per_strike[_CALL_OI:] = 0.0
        per_cell[_CALL_OI:] = 0.0
        used, skipped = 0, 0

    by_strike = np.empty(n_strikes, dtype=BY_STRIKE_DTYPE)
    by_strike["strike"] = chain.strikes
    by_cell = np.empty(n_cells, dtype=BY_STRIKE_EXPIRY_DTYPE)
    by_cell["expiry_idx"] = chain.cell_expiry_idx
    by_cell["strike"] = chain.cell_strike
    for name, row in (
        ("gex", _GEX),
        ("dex", _DEX),
        ("vanna_ex", _VANNA),
        ("charm_ex", _CHARM),
        ("call_gex", _CALL_GEX),
        ("put_gex", _PUT_GEX),
        ("call_oi", _CALL_OI),
        ("put_oi", _PUT_OI),
    ):
        by_strike[name] = per_strike[row]
        by_cell[name] = per_cell[row]

    totals = per_strike[:_CALL_OI].sum(axis=1) if n_strikes else np.zeros(_CALL_OI)
    if not _market_ok(chain):
        totals = np.full(_CALL_OI, np.nan)
    strikes = chain.strikes
    net = per_strike[_GEX]
    abs_net = np.abs(net)
    return Exposures(
        spot=chain.spot,
        gex=float(totals[_GEX]),
        dex=float(totals[_DEX]),
        vanna_ex=float(totals[_VANNA]),
        charm_ex=float(totals[_CHARM]),
        call_gex=float(totals[_CALL_GEX]),
        put_gex=float(totals[_PUT_GEX]),
        max_abs_gex_strike=_argmax_level(strikes, abs_net),
        call_wall=_argmax_level(strikes, per_strike[_CALL_GEX]),
        put_wall=_argmax_level(strikes, -per_strike[_PUT_GEX]),
        by_strike=by_strike,
        by_strike_expiry=by_cell,
        expiries=chain.expiries,
        contracts_used=int(used),
        contracts_skipped=int(skipped),
    )


def zero_gamma_level(chain: Chain, grid_pct: float = 0.1, points: int = 41, min_oi: int = DEFAULT_MIN_OI) -> float:
    """Spot at which the dealers' total gamma changes sign (the "gamma flip"), nearest the spot.

    Total dealer gamma ``G(x) = Σ sign × OI × Γ_i(x)`` is re-evaluated at hypothetical spots
    ``x`` — each contract's gamma recomputed at ``x`` with its own IV and time (IVs are held
    fixed: sticky-strike) — on ``points`` log-spaced points over ``[S(1 − grid_pct),
    S(1 + grid_pct)]``. The sign change nearest the spot is bracketed and refined to ~1e−10 in
    log spot (the zero of GEX(x), which only differs from G by the positive factor ``100·x²·1 %``).

    Returns NaN when the grid shows no sign change (gamma one-signed over the whole range, no
    usable contract, or bad spot/rate/yield). Two sign changes within one grid step cancel out
    and go unseen: raise ``points`` for very short-dated chains with tightly spaced strikes.
    """
    if not _market_ok(chain) or not (math.isfinite(grid_pct) and 0.0 < grid_pct < 1.0) or points < 2:
        return math.nan
    a, b, c, n_terms = _gamma_terms(
        chain.strike, chain.t_years, chain.iv, chain.is_call, chain.oi, chain.rate, chain.div_yield, int(min_oi)
    )
    spot = chain.spot
    u_lo = math.log(spot * (1.0 - grid_pct))
    u_hi = math.log(spot * (1.0 + grid_pct))
    return float(_zero_gamma_kernel(a, b, c, n_terms, spot, u_lo, u_hi, int(points)))


def gamma_profile(chain: Chain, spots: ArrayLike, min_oi: int = DEFAULT_MIN_OI) -> NDArray[np.float64]:
    """Total dealer GEX (``gex`` units: $ per 1 % move) if the spot were each of ``spots``.

    Same model as :func:`zero_gamma_level` (IVs and times held fixed), evaluated exactly: for
    charts of the gamma profile and for checking a flip level. Non-positive spots give NaN.
    """
    x = np.atleast_1d(np.asarray(spots, dtype=np.float64))
    if not _market_ok(chain):
        return np.full(x.shape, np.nan)
    a, b, c, n_terms = _gamma_terms(
        chain.strike, chain.t_years, chain.iv, chain.is_call, chain.oi, chain.rate, chain.div_yield, int(min_oi)
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        safe = np.where(np.isfinite(x) & (x > 0), x, np.nan)
    return np.asarray(_gamma_profile_kernel(a, b, c, n_terms, safe))


def max_pain(chain: Chain, min_oi: int = DEFAULT_MIN_OI) -> dict[ExpiryLabel, float]:
    """Max-pain strike of each expiry: the listed strike minimising what option holders are paid.

    Candidates are the strikes listed for that expiry; the payout at a candidate settlement
    ``K*`` is ``Σ_calls OI·max(K* − K, 0) + Σ_puts OI·max(K − K*, 0)`` over contracts with
    ``OI >= min_oi``; ties keep the lowest strike. Expiries without such open interest are left
    out of the result.
    """
    levels = _max_pain_kernel(
        chain.oi,
        chain.is_call,
        chain.cell_idx,
        chain.cell_expiry_idx,
        chain.cell_strike,
        len(chain.expiries),
        int(min_oi),
    )
    return {label: float(levels[i]) for i, label in enumerate(chain.expiries) if math.isfinite(levels[i])}
