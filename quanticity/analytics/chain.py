"""A validated, columnar snapshot of one underlying's option chain.

The exposure kernels (:mod:`quanticity.analytics.exposure`) want flat numpy arrays, one element per
contract, not ten thousand message objects: :class:`Chain` is that layout. It is built once per
refresh, either from the feed's :class:`~quanticity.messages.OptionQuote` messages
(:meth:`Chain.from_quotes`) or from arrays (:meth:`Chain.from_arrays`, for research, tests and
benchmarks), and both constructors *validate* every row first.

Validation never raises: one bad quote must not take an analytics actor down, and a silently
dropped row hides a feed problem. So a bad row is dropped **and counted** under exactly one reason
(the first that applies, in this order — the order of :data:`REJECT_REASONS`):

``bad_strike``  strike not finite or ``<= 0``;
``bad_expiry``  the expiry cannot be turned into a finite time to expiry;
``expired``     time to expiry ``<= 0`` (the option is gone: it has no gamma and no pain);
``bad_price``   bid or ask not finite or negative (a zero bid is normal far from the money);
``crossed``     bid ``>`` ask;
``bad_iv``      implied vol not finite or ``<= 0`` (no BSM greek exists without it);
``bad_greek``   a vendor greek (delta, gamma, vega, theta) not finite;
``bad_oi``      open interest not finite or ``<= 0`` (a contract nobody holds exposes nobody);
``duplicate``   an earlier or older quote of a contract that appears again in the same snapshot
                (the latest ``ts_event`` wins, then the later row): counting it twice would double
                its open interest.

Rows are stored sorted by (expiry, strike, put before call), so the calls and puts of one strike
sit next to each other: the kernels evaluate the BSM terms of such a pair once when they share the
same time and vol.

Time to expiry must be in the same "year" as the implied vols (the BSM convention of
:mod:`quanticity.analytics.bsm`). The default of :meth:`Chain.from_quotes` is the simulator's:
trading time to the close of the expiry session, in years of 252 × 6.5 h
(:func:`trading_years_to_expiry`). A live feed quoting calendar-annualised vols passes its own
``time_to_expiry``.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeAlias

import numpy as np
from numpy.typing import ArrayLike, NDArray

from quanticity.messages import OptionQuote, Right

__all__ = [
    "REJECT_REASONS",
    "SECONDS_PER_TRADING_YEAR",
    "Chain",
    "ExpiryLabel",
    "RejectCounts",
    "trading_years_to_expiry",
]

RejectCounts: TypeAlias = dict[str, int]
"""Rows dropped by a constructor, by reason; every reason of :data:`REJECT_REASONS` is a key."""

ExpiryLabel: TypeAlias = str | int | float
"""How an expiry is named: an ISO date from the feed, or whatever labels ``from_arrays`` was given."""

REJECT_REASONS: tuple[str, ...] = (
    "bad_strike",
    "bad_expiry",
    "expired",
    "bad_price",
    "crossed",
    "bad_iv",
    "bad_greek",
    "bad_oi",
    "duplicate",
)
"""Rejection reasons in precedence order: a row is counted under the first one that applies."""

SECONDS_PER_TRADING_YEAR = 252 * 6.5 * 3600
"""One trading year (252 sessions of 6.5 h): the simulator's unit of option time and of vol."""

MIN_OPTION_SECONDS = 60.0
"""Floor of the time left on an unexpired option (as in the simulator): keeps 0DTE greeks finite."""

_NS_PER_SECOND = 1_000_000_000

FloatArray: TypeAlias = NDArray[np.float64]
IntArray: TypeAlias = NDArray[np.int64]
BoolArray: TypeAlias = NDArray[np.bool_]


def _readonly(a: NDArray[np.generic]) -> NDArray[np.generic]:
    """Freeze an array in place: a frozen dataclass alone would still let callers mutate the data."""
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class Chain:
    """One underlying's option chain, one array element per contract (rows already validated).

    Fields given by the constructors:

    * ``strike``, ``t_years`` (time to expiry, module docstring), ``is_call``, ``bid``, ``ask``
      (NaN when ``from_arrays`` was given none), ``iv`` (annualised, 0.20 = 20 %), ``oi`` (open
      interest, contracts), ``volume``;
    * ``expiry_idx``: the index of each row's expiry in ``expiries`` (sorted labels: ISO dates
      sort chronologically);
    * ``delta``, ``gamma``: the vendor's greeks when known (only validated; the exposure kernels
      recompute their own so every exposure uses one consistent model);
    * ``spot``, ``rate``, ``div_yield``: scalars of the snapshot (continuously compounded).

    Derived in ``__post_init__`` (grouping codes the kernels aggregate with, computed once per
    snapshot rather than once per kernel call): ``strikes`` (sorted distinct strikes) and
    ``strike_idx``; ``cell_idx`` indexing the distinct (expiry, strike) cells ``cell_expiry_idx`` /
    ``cell_strike``.
    """

    strike: FloatArray
    t_years: FloatArray
    expiry_idx: IntArray
    expiries: tuple[ExpiryLabel, ...]
    is_call: BoolArray
    bid: FloatArray
    ask: FloatArray
    iv: FloatArray
    oi: IntArray
    volume: IntArray
    spot: float
    rate: float = 0.0
    div_yield: float = 0.0
    delta: FloatArray | None = None
    gamma: FloatArray | None = None
    strikes: FloatArray = field(init=False)
    strike_idx: IntArray = field(init=False)
    cell_idx: IntArray = field(init=False)
    cell_expiry_idx: IntArray = field(init=False)
    cell_strike: FloatArray = field(init=False)

    def __post_init__(self) -> None:
        """Store read-only copies of the columns (no caller can mutate a snapshot) and derive the codes."""
        n = len(self.strike)
        set_ = functools.partial(object.__setattr__, self)
        for name, dtype in (
            ("strike", np.float64),
            ("t_years", np.float64),
            ("expiry_idx", np.int64),
            ("is_call", np.bool_),
            ("bid", np.float64),
            ("ask", np.float64),
            ("iv", np.float64),
            ("oi", np.int64),
            ("volume", np.int64),
            ("delta", np.float64),
            ("gamma", np.float64),
        ):
            value = getattr(self, name)
            if value is None:
                continue
            arr = np.array(value, dtype=dtype, copy=True).reshape(-1)
            if len(arr) != n:
                raise ValueError(f"{name}: {len(arr)} rows, strike has {n}")
            set_(name, _readonly(arr))
        set_("expiries", tuple(self.expiries))
        set_("spot", float(self.spot))
        set_("rate", float(self.rate))
        set_("div_yield", float(self.div_yield))
        strikes, strike_idx = np.unique(self.strike, return_inverse=True)
        set_("strikes", _readonly(strikes))
        set_("strike_idx", _readonly(strike_idx.astype(np.int64).reshape(-1)))
        key = self.expiry_idx * max(len(strikes), 1) + self.strike_idx
        _, first, cell_idx = np.unique(key, return_index=True, return_inverse=True)
        set_("cell_idx", _readonly(cell_idx.astype(np.int64).reshape(-1)))
        set_("cell_expiry_idx", _readonly(self.expiry_idx[first].copy()))
        set_("cell_strike", _readonly(self.strike[first].copy()))

    def __len__(self) -> int:
        return len(self.strike)

    @property
    def expiry(self) -> NDArray[np.object_]:
        """Each row's expiry label (``expiries[expiry_idx]``)."""
        labels = np.empty(len(self.expiries), dtype=object)
        labels[:] = list(self.expiries)
        return labels[self.expiry_idx]

    # --- constructors -------------------------------------------------------------------------
    @classmethod
    def from_quotes(
        cls,
        quotes: Iterable[OptionQuote],
        spot: float,
        rate: float,
        div_yield: float,
        now_ns: int,
        *,
        time_to_expiry: Callable[[str, int], float] | None = None,
    ) -> tuple[Chain, RejectCounts]:
        """Build a chain from the feed's quotes; bad rows are dropped and counted (module docstring).

        ``time_to_expiry(expiry_iso, now_ns)`` gives the time to expiry in the unit of the quotes'
        IVs; it is called once per distinct expiry and defaults to
        :func:`trading_years_to_expiry` (the simulator's convention). An expiry it cannot handle
        (it raises or returns a non-finite number) rejects its rows as ``bad_expiry``.
        """
        to_years = time_to_expiry or trading_years_to_expiry
        years_of: dict[str, float] = {}
        strike: list[float] = []
        expiry: list[str] = []
        is_call: list[bool] = []
        bid: list[float] = []
        ask: list[float] = []
        iv: list[float] = []
        oi: list[int] = []
        volume: list[int] = []
        delta: list[float] = []
        gamma: list[float] = []
        greeks_ok: list[bool] = []
        ts: list[int] = []
        isfinite = math.isfinite
        for quote in quotes:
            contract = quote.contract
            strike.append(contract.strike)
            expiry.append(contract.expiry)
            is_call.append(contract.right is Right.CALL)
            bid.append(quote.bid)
            ask.append(quote.ask)
            iv.append(quote.iv)
            oi.append(quote.open_interest)
            volume.append(quote.volume)
            delta.append(quote.delta)
            gamma.append(quote.gamma)
            greeks_ok.append(isfinite(quote.vega) and isfinite(quote.theta))
            ts.append(quote.ts_event)
        for label in set(expiry):
            try:
                years_of[label] = float(to_years(label, now_ns))
            except Exception:  # any failure of the time function is a data problem of this expiry
                years_of[label] = math.nan
        t_years = np.array([years_of[e] for e in expiry], dtype=np.float64)
        return _build(
            strike=np.array(strike, dtype=np.float64),
            t_years=t_years,
            expiry=np.array(expiry, dtype=object) if expiry else np.empty(0, dtype=object),
            is_call=np.array(is_call, dtype=np.bool_),
            bid=np.array(bid, dtype=np.float64),
            ask=np.array(ask, dtype=np.float64),
            iv=np.array(iv, dtype=np.float64),
            oi=np.array(oi, dtype=np.float64),
            volume=np.array(volume, dtype=np.float64),
            delta=np.array(delta, dtype=np.float64),
            gamma=np.array(gamma, dtype=np.float64),
            other_greeks_ok=np.array(greeks_ok, dtype=np.bool_),
            order_key=np.array(ts, dtype=np.int64),
            spot=spot,
            rate=rate,
            div_yield=div_yield,
        )

    @classmethod
    def from_arrays(
        cls,
        *,
        strike: ArrayLike,
        t_years: ArrayLike,
        is_call: ArrayLike,
        iv: ArrayLike,
        oi: ArrayLike,
        spot: float,
        rate: float = 0.0,
        div_yield: float = 0.0,
        expiry: ArrayLike | None = None,
        bid: ArrayLike | None = None,
        ask: ArrayLike | None = None,
        volume: ArrayLike | None = None,
        delta: ArrayLike | None = None,
        gamma: ArrayLike | None = None,
    ) -> tuple[Chain, RejectCounts]:
        """Build a chain from arrays (broadcast to a common length); validated like ``from_quotes``.

        ``expiry`` labels the expiries (ISO strings, day indices, …); without it every distinct
        ``t_years`` is its own expiry, labelled by its rank (0 = nearest). Columns left out are
        not validated: ``bid``/``ask`` become NaN, ``volume`` 0, ``delta``/``gamma`` ``None``.
        Among rows with the same (expiry, strike, right) the last one wins (``duplicate``).
        """
        strike_a, t_a, call_a, iv_a, oi_a = np.broadcast_arrays(
            np.asarray(strike, dtype=np.float64),
            np.asarray(t_years, dtype=np.float64),
            np.asarray(is_call, dtype=np.bool_),
            np.asarray(iv, dtype=np.float64),
            np.asarray(oi, dtype=np.float64),
        )
        shape = strike_a.shape

        def column(values: ArrayLike | None, default: float) -> FloatArray:
            if values is None:
                return np.full(shape, default, dtype=np.float64).reshape(-1)
            return np.broadcast_to(np.asarray(values, dtype=np.float64), shape).reshape(-1)

        if expiry is None:
            ranks = np.unique(t_a.reshape(-1), return_inverse=True)[1].reshape(-1)
            expiry_a = ranks.astype(np.int64)
        else:
            expiry_a = np.broadcast_to(np.asarray(expiry), shape).reshape(-1)
        return _build(
            strike=strike_a.reshape(-1),
            t_years=t_a.reshape(-1),
            expiry=expiry_a,
            is_call=call_a.reshape(-1),
            bid=column(bid, math.nan),
            ask=column(ask, math.nan),
            iv=iv_a.reshape(-1),
            oi=oi_a.reshape(-1),
            volume=column(volume, 0.0),
            delta=None if delta is None else column(delta, math.nan),
            gamma=None if gamma is None else column(gamma, math.nan),
            other_greeks_ok=None,
            order_key=None,
            spot=spot,
            rate=rate,
            div_yield=div_yield,
            prices_given=bid is not None or ask is not None,
        )


def _build(
    *,
    strike: FloatArray,
    t_years: FloatArray,
    expiry: NDArray[np.generic],
    is_call: BoolArray,
    bid: FloatArray,
    ask: FloatArray,
    iv: FloatArray,
    oi: FloatArray,
    volume: FloatArray,
    delta: FloatArray | None,
    gamma: FloatArray | None,
    other_greeks_ok: BoolArray | None,
    order_key: IntArray | None,
    spot: float,
    rate: float,
    div_yield: float,
    prices_given: bool = True,
) -> tuple[Chain, RejectCounts]:
    """Validate the columns, drop and count bad rows and duplicates, sort, and build the Chain."""
    n = len(strike)
    reason = np.full(n, -1, dtype=np.int64)  # index into REJECT_REASONS, −1 = valid

    def reject(code: str, bad: BoolArray) -> None:
        # Only rows still valid get a reason, so each row is counted once, under the first reason.
        reason[(reason < 0) & bad] = REJECT_REASONS.index(code)

    with np.errstate(invalid="ignore"):
        reject("bad_strike", ~(np.isfinite(strike) & (strike > 0)))
        reject("bad_expiry", ~np.isfinite(t_years))
        reject("expired", t_years <= 0)
        if prices_given:
            reject("bad_price", ~(np.isfinite(bid) & np.isfinite(ask) & (bid >= 0) & (ask >= 0)))
            reject("crossed", bid > ask)
        reject("bad_iv", ~(np.isfinite(iv) & (iv > 0)))
        greeks_ok = np.ones(n, dtype=np.bool_)
        for greek in (delta, gamma):
            if greek is not None:
                greeks_ok &= np.isfinite(greek)
        if other_greeks_ok is not None:
            greeks_ok &= other_greeks_ok
        reject("bad_greek", ~greeks_ok)
        reject("bad_oi", ~(np.isfinite(oi) & (oi > 0)))

    valid = np.flatnonzero(reason < 0)
    labels, expiry_codes = _expiry_codes(expiry[valid])
    # Sort the valid rows by (expiry, strike, put/call, arrival): equal contracts become adjacent,
    # the one to keep (latest ts_event, then latest row) last in each run.
    arrival = order_key[valid] if order_key is not None else np.zeros(len(valid), dtype=np.int64)
    order = np.lexsort((np.arange(len(valid)), arrival, is_call[valid], strike[valid], expiry_codes))
    rows = valid[order]
    codes = expiry_codes[order]
    same_as_next = np.zeros(len(rows), dtype=np.bool_)
    if len(rows) > 1:
        a, b = rows[:-1], rows[1:]
        same_as_next[:-1] = (codes[:-1] == codes[1:]) & (strike[a] == strike[b]) & (is_call[a] == is_call[b])
    reason[rows[same_as_next]] = REJECT_REASONS.index("duplicate")
    keep = ~same_as_next
    rows, codes = rows[keep], codes[keep]

    counts = np.bincount(reason[reason >= 0], minlength=len(REJECT_REASONS))
    rejects: RejectCounts = {name: int(counts[i]) for i, name in enumerate(REJECT_REASONS)}
    # Drop expiry labels none of the kept rows use, so ``expiries`` lists only live expiries.
    used, codes = np.unique(codes, return_inverse=True)
    chain = Chain(
        strike=strike[rows],
        t_years=t_years[rows],
        expiry_idx=codes.reshape(-1),
        expiries=tuple(labels[i] for i in used),
        is_call=is_call[rows],
        bid=bid[rows],
        ask=ask[rows],
        iv=iv[rows],
        oi=np.rint(oi[rows]).astype(np.int64),
        volume=np.nan_to_num(volume[rows], nan=0.0, posinf=0.0, neginf=0.0).astype(np.int64),
        spot=spot,
        rate=rate,
        div_yield=div_yield,
        delta=None if delta is None else delta[rows],
        gamma=None if gamma is None else gamma[rows],
    )
    return chain, rejects


def _expiry_codes(expiry: NDArray[np.generic]) -> tuple[list[ExpiryLabel], IntArray]:
    """Sorted distinct expiry labels (as plain Python values) and each row's index among them."""
    if len(expiry) == 0:
        return [], np.zeros(0, dtype=np.int64)
    if expiry.dtype == object:
        distinct = sorted(set(expiry.tolist()))
        index = {label: i for i, label in enumerate(distinct)}
        return distinct, np.fromiter((index[e] for e in expiry.tolist()), dtype=np.int64, count=len(expiry))
    distinct_arr, codes = np.unique(expiry, return_inverse=True)
    return distinct_arr.tolist(), codes.astype(np.int64).reshape(-1)


def trading_years_to_expiry(expiry: str, now_ns: int) -> float:
    """Trading time from ``now_ns`` to the close of the session ``expiry`` (ISO date), in trading years.

    The simulator's convention (:mod:`quanticity.sim.market`), so its IVs price consistently: the
    rest of today's session plus each later session's length up to and including the expiry
    session (6.5 h, 3.5 h on a half day), over 252 × 6.5 h, floored at one minute while the option
    lives; 0 once the expiry date has passed. Raises ``ValueError`` on a malformed date.
    """
    from quanticity.calendar import ET  # deferred: exchange_calendars is slow to import

    expiry_day = dt.date.fromisoformat(expiry)
    now = dt.datetime.fromtimestamp(now_ns / _NS_PER_SECOND, tz=ET)
    today = now.date()
    if expiry_day < today:
        return 0.0
    today_open, today_close = _session_bounds(today)
    remaining_today = 0.0
    if today_close is not None and today_open is not None:
        remaining_today = max((today_close - max(now, today_open)).total_seconds(), 0.0)
    seconds = max(remaining_today + _later_sessions_seconds(today, expiry_day), MIN_OPTION_SECONDS)
    return seconds / SECONDS_PER_TRADING_YEAR


@functools.lru_cache(maxsize=64)
def _session_bounds(day: dt.date) -> tuple[dt.datetime | None, dt.datetime | None]:
    """Open and close of ``day`` in ET, ``(None, None)`` when NYSE does not trade that day."""
    from quanticity.calendar import NyseCalendar

    cal = NyseCalendar()
    if not cal.is_session(day):
        return None, None
    return cal.session_open(day), cal.session_close(day)


@functools.lru_cache(maxsize=1024)
def _later_sessions_seconds(today: dt.date, expiry: dt.date) -> float:
    """Trading seconds of the sessions after ``today`` up to and including ``expiry`` (cached)."""
    if expiry <= today:
        return 0.0
    from quanticity.calendar import NyseCalendar

    cal = NyseCalendar()
    total = 0.0
    for day in cal.sessions_between(today + dt.timedelta(days=1), expiry):
        total += (cal.session_close(day) - cal.session_open(day)).total_seconds()
    return total
