"""A seeded, deterministic synthetic market: underlyings, L2 books, tapes and option chains.

:class:`SyntheticMarket` is what the simulated feed publishes and what the simulated broker
fills against. Everything it emits is a message of :mod:`quanticity.messages`.

Determinism
    Each symbol owns a ``numpy.random.Generator(PCG64)`` seeded from ``SeedSequence([seed,
    crc32(symbol)])`` (crc32 rather than ``hash()``, which is salted per process), and draws a
    fixed number of random numbers per step whatever happens. The same ``(seed, symbols,
    config)`` therefore yields bit-identical batches, and adding or removing a symbol never
    changes another symbol's path. Random numbers are drawn in blocks of :data:`BLOCK_STEPS`
    steps (a numpy call per step would cost more than the whole step); a checkpoint stores the
    generator state at the start of the current block plus the position in it, so
    :meth:`SyntheticMarket.from_state` regenerates the block and resumes exactly.

Dynamics (per symbol, per step of ``step_ns``)
    Heston-style stochastic variance discretised with full-truncation Euler: with ``v⁺ =
    max(v, 0)``, ``S ← S·exp((μ − v⁺/2)·Δt + √v⁺·√Δt·(z₁ + e·I))`` and ``v ← v + κ(θ − v⁺)Δt +
    ξ√v⁺√Δt(ρ z₁ + √(1−ρ²) z₂)``, where κ, ξ, ρ, μ come from :class:`HestonSpec`, ``θ`` and the
    start variance are ``UnderlyingSpec.vol²`` and ``Δt`` is the step in *trading* years (252
    sessions × 6.5 h), so a one-second step moves prices like one second of a real session. The
    step is split into ``quotes_per_step`` sub-steps, one quote each.

Order-flow imbalance (the edge a book-imbalance strategy can find)
    A latent imbalance ``I ∈ [−1, 1]`` per symbol follows an AR(1) with a
    :data:`IMBALANCE_HALF_LIFE_S` half-life (in simulated seconds) and a stationary standard
    deviation of :data:`IMBALANCE_STD`, clipped to [−1, 1]. It is visible in three places:
    book sizes (bid sizes × ``1 + BOOK_SKEW·I``, ask sizes × ``1 − BOOK_SKEW·I``), the tape (a
    print is at the ask with probability ``0.5 + TRADE_SIDE_SKEW·I``) and the *next* steps'
    drift: the return from step t to t+1 carries ``e·I_t`` standard deviations of drift with
    ``e = IMBALANCE_EDGE`` (5 % of the per-step volatility at ``I = 1``). The imbalance a
    book shows at step t therefore predicts the following returns with a correlation of about
    0.02 per step, a real but small edge that costs and noise can easily eat.

Books and tapes
    Bid/ask are ``spread_ticks`` ticks apart around the spot (never crossed, bid ≥ one tick);
    ``levels`` levels per side one tick apart (the bid side stops at one tick, so a price within
    ``levels`` ticks of zero shows fewer bid levels), sizes log-normal around ``base_size``
    growing :data:`DEPTH_GROWTH` per level; the last quote of a step equals the book's top level.
    ``Poisson(trades_per_step)`` prints per step at the bid or the ask in round-ish lots.

Option chains
    Expiries come from the NYSE calendar: the next ``expiries`` sessions from the session date
    for the 0/1DTE index products (:data:`INDEX_PRODUCTS`); for the other names Friday expiries
    (the session before when Friday is a holiday) from the first one at least 7 calendar days
    away up to ``max_dte`` days. Strikes are the session's starting spot rounded to the
    strike step ± ``strikes_each_side`` steps (only positive strikes), fixed for the session.
    Quotes are BSM (:func:`quanticity.analytics.bsm.bsm_greeks`, one vectorised call per symbol)
    with ``iv = vol·(1 + 0.8·m² − 0.3·m)``, ``m = ln(K/S)``, floored at 0.05, and a half spread
    of ``max(option_half_spread_pct % · price, 0.01)`` rounded to cents.

    Time to expiry is measured to the close (16:00 ET, the early close on a half day) of the
    expiry session **in trading time** — the rest of today's session plus 6.5 h (3.5 h on half
    days) per later session, in years of 252 × 6.5 h — with a floor of one minute so 0DTE near
    the close stays finite. The path only moves during simulated trading time, so pricing with
    calendar time would make 0DTE options √(24·365 / (6.5·252)) ≈ 2.3× too cheap against the
    moves they are exposed to. The market models one session: past the close, option time
    stops at the close (build a new market for the next session).

    Greek units in :class:`OptionQuote` follow the broker convention (Interactive Brokers'
    model greeks), so the simulated feed is a drop-in for a live one: ``vega`` per 1 vol point
    (∂V/∂σ / 100), ``theta`` per trading day (∂V/∂t / 252, negative for a long option);
    ``delta`` and ``gamma`` per 1.00 of underlying. Open interest is fixed for the session and
    volume grows through it; both are deterministic and largest near the money and near expiry.
"""

from __future__ import annotations

import datetime as dt
import math
import time
import zlib
from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from quanticity.analytics.bsm import bsm_greeks
from quanticity.calendar import NyseCalendar
from quanticity.config.models import MarketFile, UnderlyingSpec
from quanticity.messages import (
    BookSnapshot,
    MarketBatch,
    OptionContract,
    OptionQuote,
    OptionTrade,
    Quote,
    Right,
    Trade,
    UnderlyingMark,
)

__all__ = ["INDEX_PRODUCTS", "SECONDS_PER_TRADING_YEAR", "SyntheticMarket"]

NS_PER_SECOND = 1_000_000_000
SECONDS_PER_TRADING_YEAR = 252 * 6.5 * 3600
"""One trading year: 252 sessions of 6.5 hours. The unit of Δt, of the vols and of option time."""

INDEX_PRODUCTS = ("SPX", "SPY", "QQQ", "IWM")
"""Symbols listed with daily (0DTE, 1DTE, …) expiries; every other name gets Friday weeklies."""

BLOCK_STEPS = 256
"""Steps of random numbers drawn per generator call (amortises numpy's per-call overhead)."""

IMBALANCE_HALF_LIFE_S = 30.0
"""Half-life of the latent order-flow imbalance, in simulated seconds."""
IMBALANCE_STD = 0.4
"""Stationary standard deviation of the imbalance before clipping to [−1, 1]."""
IMBALANCE_EDGE = 0.05
"""Drift of the next step, in per-step standard deviations, per unit of imbalance."""
BOOK_SKEW = 0.6
"""Bid sizes scale by ``1 + BOOK_SKEW·I``, ask sizes by ``1 − BOOK_SKEW·I``."""
TRADE_SIDE_SKEW = 0.35
"""A print is at the ask with probability ``0.5 + TRADE_SIDE_SKEW·I``."""
SIZE_NOISE = 0.3
"""Log-normal dispersion of book sizes."""
DEPTH_GROWTH = 0.15
"""Level ``l`` (0 = touch) of the book holds ``1 + DEPTH_GROWTH·l`` times ``base_size`` on average."""
TRADE_LOTS = (10, 25, 50, 100, 100, 100, 100, 200, 200, 300, 500, 1000)
"""Print sizes, drawn uniformly: mostly round lots, some odd lots and blocks."""

MIN_VOL = 0.01
#: Share of underlying prints that print off-exchange (dark pools), for dark-vs-lit analytics.
DARK_SHARE = 0.35
#: Mean option prints per symbol per step (Poisson), sizes in contracts; 3 % blocks, 5 % sweeps.
OPTION_PRINTS_PER_STEP = 0.3
OPTION_LOTS = (1, 1, 1, 2, 2, 3, 5, 5, 10, 10, 20, 25, 50)
BLOCK_LOTS = (100, 150, 250, 500)
BLOCK_SHARE = 0.03
SWEEP_SHARE = 0.05
SWEEP_LEGS = 3
#: How strongly the latent imbalance tilts option flow: bullish flow buys calls and sells puts.
OPTION_SIDE_SKEW = 0.3
"""Floor of the reported instantaneous vol: full truncation lets the variance touch 0."""
MIN_OPTION_SECONDS = 60.0
"""Floor of an unexpired option's time to expiry (keeps 0DTE greeks finite near the close)."""
MIN_IV = 0.05
SMILE_CURVATURE = 0.8
SMILE_SKEW = 0.3
OPTION_TICK = 0.01
BASE_OPEN_INTEREST_INDEX = 20_000
BASE_OPEN_INTEREST_SINGLE = 4_000
DAILY_TURNOVER = 0.6
"""A contract at the money trades about this fraction of its open interest over a session."""


def _decimals(tick: float) -> int:
    """Decimal places of ``tick`` (0.01 → 2, 0.05 → 2, 0.5 → 1), at most 8."""
    for places in range(9):
        scaled = tick * 10**places
        if abs(scaled - round(scaled)) < 1e-9 * max(1.0, scaled):
            return places
    return 8


def _symbol_seed(seed: int, symbol: str) -> np.random.SeedSequence:
    """Seed of one symbol's generator: independent of every other symbol and of the process."""
    return np.random.SeedSequence([seed, zlib.crc32(symbol.encode("utf-8"))])


def _jitter(key: str) -> float:
    """Deterministic per-contract factor in [0.75, 1.25) so open interest is not a smooth curve."""
    return 0.75 + 0.5 * (zlib.crc32(key.encode("utf-8")) / 2**32)


def _rng_state_to_json(state: dict[str, Any]) -> dict[str, Any]:
    """PCG64 state with its 128-bit integers as strings (JSON readers other than Python's lose them)."""
    inner = state["state"]
    return {
        "bit_generator": state["bit_generator"],
        "state": str(inner["state"]),
        "inc": str(inner["inc"]),
        "has_uint32": int(state["has_uint32"]),
        "uinteger": int(state["uinteger"]),
    }


def _rng_state_from_json(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "bit_generator": data["bit_generator"],
        "state": {"state": int(data["state"]), "inc": int(data["inc"])},
        "has_uint32": int(data["has_uint32"]),
        "uinteger": int(data["uinteger"]),
    }


class _Chain:
    """The contracts listed for one symbol and their session-constant arrays."""

    __slots__ = ("anchor", "contracts", "expiry_idx", "expiry_after_s", "is_call", "open_interest", "strikes")

    def __init__(
        self,
        anchor: float,
        contracts: list[OptionContract],
        strikes: NDArray[np.float64],
        is_call: NDArray[np.bool_],
        expiry_idx: NDArray[np.intp],
        expiry_after_s: NDArray[np.float64],
        open_interest: NDArray[np.float64],
    ) -> None:
        self.anchor = anchor
        self.contracts = contracts
        self.strikes = strikes
        self.is_call = is_call
        self.expiry_idx = expiry_idx
        self.expiry_after_s = expiry_after_s
        self.open_interest = open_interest


class _Symbol:
    """Mutable state of one simulated underlying plus its current block of random numbers."""

    __slots__ = (
        "ask_raw",
        "bid_raw",
        "block_state",
        "chain",
        "cursor",
        "extra_raw",
        "flow_rng",
        "imbalance",
        "imbalance_z",
        "n_trades",
        "name",
        "options_pending",
        "rng",
        "scale",
        "side_u",
        "spec",
        "spot",
        "tick_units",
        "trade_sizes",
        "variance",
        "z_path",
    )

    def __init__(self, name: str, spec: UnderlyingSpec, seed: int) -> None:
        self.name = name
        self.spec = spec
        self.rng = np.random.Generator(np.random.PCG64(_symbol_seed(seed, name)))
        # a separate stream for dark flags and option prints, so the price path never depends on them
        self.flow_rng = np.random.Generator(np.random.PCG64(_symbol_seed(seed, name).spawn(1)[0]))
        self.spot = float(spec.spot)
        self.variance = float(spec.vol) ** 2
        self.imbalance = 0.0
        places = _decimals(spec.tick)
        self.scale = float(10**places)
        self.tick_units = round(spec.tick * 10**places)
        self.options_pending = True
        self.block_state: dict[str, Any] = {}
        self.cursor = BLOCK_STEPS
        self.z_path: list[list[float]] = []
        self.imbalance_z: list[float] = []
        self.bid_raw: list[list[float]] = []
        self.ask_raw: list[list[float]] = []
        self.extra_raw: list[list[float]] = []
        self.n_trades: list[int] = []
        self.side_u: list[list[float]] = []
        self.trade_sizes: list[list[int]] = []
        self.chain: _Chain | None = None

    def price(self, ticks: int) -> float:
        """Price of ``ticks`` ticks, exactly the double nearest the decimal (integer / power of ten)."""
        return ticks * self.tick_units / self.scale

    def mark(self) -> float:
        """The spot rounded to the tick: what marks, option pricing and ``spot()`` report."""
        return self.price(max(1, round(self.spot * self.scale / self.tick_units)))

    def inst_vol(self) -> float:
        """Instantaneous vol √v⁺, floored at :data:`MIN_VOL`."""
        return max(math.sqrt(self.variance) if self.variance > 0 else 0.0, MIN_VOL)


class SyntheticMarket:
    """Seeded synthetic market of one session (module docstring: dynamics, chains, units).

    ``start_ns`` is the simulated time before the first step; each :meth:`step` advances it by
    ``step_ns`` and stamps every event of the step with the new time as ``ts_event``.
    ``session_date`` must be an NYSE session: it anchors the expiries and option time.
    """

    def __init__(
        self,
        market: MarketFile,
        symbols: list[str],
        session_date: dt.date,
        seed: int,
        start_ns: int,
        step_ns: int,
    ) -> None:
        if step_ns <= 0:
            raise ValueError(f"step_ns: {step_ns} must be positive")
        if seed < 0:
            raise ValueError(f"seed: {seed} must not be negative (numpy SeedSequence entropy)")
        dupes = sorted({s for s in symbols if symbols.count(s) > 1})
        if dupes:
            raise ValueError(f"symbols listed twice: {dupes}")
        self._market = market
        self._seed = int(seed)
        self._session_date = session_date
        self._start_ns = int(start_ns)
        self._step_ns = int(step_ns)
        self._now_ns = int(start_ns)
        self._steps = 0

        calendar = NyseCalendar()
        if not calendar.is_session(session_date):
            raise ValueError(f"session_date: {session_date} is not an NYSE session")
        self._calendar = calendar
        self._open_ns = round(calendar.session_open(session_date).timestamp()) * NS_PER_SECOND
        self._close_ns = round(calendar.session_close(session_date).timestamp()) * NS_PER_SECOND
        self._after_s_cache: dict[dt.date, float] = {}
        self._index_expiries = self._daily_expiries()
        self._weekly_expiries = self._friday_expiries()

        heston, book, chain = market.heston, market.book, market.chain
        self._quotes_per_step = book.quotes_per_step
        self._levels = book.levels
        self._spread_ticks = book.spread_ticks
        self._half_spread_ticks = book.spread_ticks / 2
        self._refresh_steps = chain.refresh_steps
        sub_dt = self._step_ns / NS_PER_SECOND / SECONDS_PER_TRADING_YEAR / book.quotes_per_step
        self._dt = sub_dt
        self._sqrt_dt = math.sqrt(sub_dt)
        self._kappa = heston.kappa
        self._xi = heston.vol_of_vol
        self._rho = heston.rho
        self._rho_c = math.sqrt(max(0.0, 1.0 - heston.rho**2))
        self._mu = heston.drift
        step_s = self._step_ns / NS_PER_SECOND
        self._phi = 0.5 ** (step_s / IMBALANCE_HALF_LIFE_S)
        self._imb_sigma = IMBALANCE_STD * math.sqrt(1.0 - self._phi**2)
        # Poisson(λ) by inversion of a precomputed CDF, truncated far in the tail, so every step
        # consumes the same number of uniforms whatever the count.
        lam = book.trades_per_step
        self._max_trades = int(lam + 10 * math.sqrt(lam) + 10) if lam > 0 else 0
        pmf = [math.exp(-lam)]
        for k in range(1, self._max_trades + 1):
            pmf.append(pmf[-1] * lam / k)
        self._poisson_cdf = np.cumsum(pmf)
        self._poisson_cdf[-1] = np.inf
        self._lots = np.array(TRADE_LOTS, dtype=np.int64)
        self._depth = np.array([book.base_size * (1 + DEPTH_GROWTH * level) for level in range(book.levels)])

        self._symbols: dict[str, _Symbol] = {}
        for symbol in symbols:
            self.add_symbol(symbol)

    # --- public state ---------------------------------------------------------------------
    @property
    def now_ns(self) -> int:
        """Simulated time of the last step (``start_ns`` before the first)."""
        return self._now_ns

    @property
    def symbols(self) -> list[str]:
        """Symbols currently simulated, in the order they were added."""
        return list(self._symbols)

    @property
    def session_date(self) -> dt.date:
        """The session this market simulates."""
        return self._session_date

    @property
    def steps(self) -> int:
        """Number of steps taken so far."""
        return self._steps

    def spot(self, symbol: str) -> float:
        """Current spot of ``symbol`` rounded to its tick."""
        return self._get(symbol).mark()

    def vol(self, symbol: str) -> float:
        """Current instantaneous (annualised, trading-time) vol of ``symbol``, floored at 1 %."""
        return self._get(symbol).inst_vol()

    def imbalance(self, symbol: str) -> float:
        """Current latent order-flow imbalance of ``symbol`` in [−1, 1] (for tests and research)."""
        return self._get(symbol).imbalance

    def chain(self, symbol: str) -> list[OptionContract]:
        """Contracts listed on ``symbol`` for this session (expiry, strike, call before put)."""
        chain = self._get(symbol).chain
        return list(chain.contracts) if chain is not None else []

    def marks(self, ts_init_ns: int | None = None) -> list[UnderlyingMark]:
        """Spot and instantaneous vol of every symbol, for the simulated broker's pricing."""
        ts_init = time.time_ns() if ts_init_ns is None else int(ts_init_ns)
        return [
            UnderlyingMark(ts_event=self._now_ns, ts_init=ts_init, symbol=name, spot=sym.mark(), vol=sym.inst_vol())
            for name, sym in self._symbols.items()
        ]

    def apply_marks(self, marks: Iterable[UnderlyingMark]) -> None:
        """Adopt another market's state from its marks: spot, vol and simulated time.

        This makes a pricing-only twin (the simulated broker builds one with no symbols and
        feeds it the feed's marks): a symbol is added on its first mark, and afterwards
        :meth:`option_quote` returns what the feed's own market quotes at that mark, because
        the listing, the smile and the time to expiry are functions of the same config, session
        date and time. Time never moves backwards. A non-finite or non-positive mark is refused.
        """
        for mark in marks:
            if not (math.isfinite(mark.spot) and math.isfinite(mark.vol)) or mark.spot <= 0 or mark.vol <= 0:
                raise ValueError(f"mark of {mark.symbol}: spot {mark.spot}, vol {mark.vol} must be positive")
            if mark.symbol not in self._symbols:
                self.add_symbol(mark.symbol)
            sym = self._symbols[mark.symbol]
            sym.spot = float(mark.spot)
            sym.variance = float(mark.vol) ** 2  # √(v²) == v exactly in IEEE doubles
            self._now_ns = max(self._now_ns, int(mark.ts_event))

    # --- universe -------------------------------------------------------------------------
    def add_symbol(self, symbol: str) -> None:
        """Start simulating ``symbol`` from its configured spot (a no-op if already simulated).

        Its path depends only on (seed, symbol), so it is the same whenever it is added; its
        first step carries a full option chain.
        """
        self._add(symbol, anchor=None)

    def remove_symbol(self, symbol: str) -> None:
        """Stop simulating ``symbol``; raises KeyError if it is not simulated."""
        if symbol not in self._symbols:
            raise KeyError(f"symbol: {symbol} is not simulated")
        del self._symbols[symbol]

    # --- stepping -------------------------------------------------------------------------
    def step(self, ts_init_ns: int | None = None) -> dict[str, MarketBatch]:
        """Advance by ``step_ns`` and return one batch per symbol.

        ``ts_event`` is the new simulated time, ``ts_init`` is ``ts_init_ns`` or the wall clock.
        Option quotes ride along on the first step and every ``refresh_steps`` steps after it.
        """
        ts_init = time.time_ns() if ts_init_ns is None else int(ts_init_ns)
        self._steps += 1
        self._now_ns += self._step_ns
        refresh = (self._steps - 1) % self._refresh_steps == 0
        return {name: self._step_symbol(sym, ts_init, refresh) for name, sym in self._symbols.items()}

    def _step_symbol(self, sym: _Symbol, ts_init: int, refresh: bool) -> MarketBatch:
        if sym.cursor >= BLOCK_STEPS:
            sym.block_state = sym.rng.bit_generator.state
            self._fill_block(sym)
        row = sym.cursor
        sym.cursor = row + 1
        now = self._now_ns
        name = sym.name
        n_quotes = self._quotes_per_step

        # Price path: the drift carries the imbalance shown by the *previous* book (its edge).
        z = sym.z_path[row]
        spot, var = sym.spot, sym.variance
        edge = IMBALANCE_EDGE * sym.imbalance
        dt_, sqrt_dt, kappa, theta = self._dt, self._sqrt_dt, self._kappa, sym.spec.vol * sym.spec.vol
        inv_tick = sym.scale / sym.tick_units
        half = self._half_spread_ticks
        bid_ticks: list[int] = []
        for j in range(n_quotes):
            z1 = z[2 * j]
            vp = var if var > 0.0 else 0.0
            sv_dt = math.sqrt(vp) * sqrt_dt
            spot *= math.exp((self._mu - 0.5 * vp) * dt_ + sv_dt * (z1 + edge))
            var += kappa * (theta - vp) * dt_ + self._xi * sv_dt * (self._rho * z1 + self._rho_c * z[2 * j + 1])
            bt = round(spot * inv_tick - half)
            bid_ticks.append(bt if bt >= 1 else 1)
        sym.spot, sym.variance = spot, var

        imb = self._phi * sym.imbalance + self._imb_sigma * sym.imbalance_z[row]
        imb = 1.0 if imb > 1.0 else (-1.0 if imb < -1.0 else imb)
        sym.imbalance = imb
        bid_mult, ask_mult = 1.0 + BOOK_SKEW * imb, 1.0 - BOOK_SKEW * imb

        bid_sizes = [int(x * bid_mult) or 1 for x in sym.bid_raw[row]]
        ask_sizes = [int(x * ask_mult) or 1 for x in sym.ask_raw[row]]
        spread = self._spread_ticks
        last_bt = bid_ticks[-1]
        bid = sym.price(last_bt)
        ask = sym.price(last_bt + spread)

        if n_quotes == 1:
            quote = Quote(
                ts_event=now,
                ts_init=ts_init,
                symbol=name,
                bid=bid,
                ask=ask,
                bid_size=bid_sizes[0],
                ask_size=ask_sizes[0],
            )
            quotes: tuple[Quote, ...] = (quote,)
        else:
            quotes = self._sub_quotes(sym, row, bid_ticks, bid_sizes[0], ask_sizes[0], bid_mult, ask_mult, ts_init)

        levels = min(self._levels, last_bt)
        price = sym.price
        bids = tuple(zip([price(last_bt - lv) for lv in range(levels)], bid_sizes[:levels], strict=True))
        ask_bt = last_bt + spread
        asks = tuple(zip([price(ask_bt + lv) for lv in range(self._levels)], ask_sizes, strict=True))
        book = BookSnapshot(ts_event=now, ts_init=ts_init, symbol=name, bids=bids, asks=asks)

        trades: tuple[Trade, ...] = ()
        n_trades = sym.n_trades[row]
        if n_trades:
            p_ask = 0.5 + TRADE_SIDE_SKEW * imb
            sides = sym.side_u[row]
            sizes = sym.trade_sizes[row]
            dark = (sym.flow_rng.random(n_trades) < DARK_SHARE).tolist()
            trades = tuple(
                Trade(
                    ts_event=now,
                    ts_init=ts_init,
                    symbol=name,
                    price=ask if sides[k] < p_ask else bid,
                    size=sizes[k],
                    dark=dark[k],
                )
                for k in range(n_trades)
            )
        option_trades = self._option_prints(sym, imb, ts_init)

        options: tuple[OptionQuote, ...] = ()
        if refresh or sym.options_pending:
            sym.options_pending = False
            chain = sym.chain
            if chain is not None and chain.contracts:
                t_years = self._chain_t_years(chain)
                options = self._quote_options(
                    sym, chain.contracts, chain.strikes, chain.is_call, t_years, chain.open_interest, ts_init
                )
        return MarketBatch(
            ts_event=now,
            ts_init=ts_init,
            symbol=name,
            quotes=quotes,
            trades=trades,
            books=(book,),
            options=options,
            option_trades=option_trades,
        )

    def _option_prints(self, sym: _Symbol, imb: float, ts_init: int) -> tuple[OptionTrade, ...]:
        """This step's option prints of ``sym``: near-the-money weighted, tilted by the latent imbalance.

        Bullish imbalance buys calls and sells puts; 3 % of prints are blocks, 5 % sweep three
        successively worse price levels. Prints trade at the current simulated quote.
        """
        chain = sym.chain
        rng = sym.flow_rng
        n = int(rng.poisson(OPTION_PRINTS_PER_STEP))
        if n == 0 or chain is None or not chain.contracts:
            return ()
        weights = chain.open_interest / chain.open_interest.sum()
        picks = rng.choice(len(chain.contracts), size=n, p=weights)
        u = rng.random((n, 3))
        idx = np.asarray(picks)
        t_years = self._chain_t_years(chain)[idx]
        contracts = [chain.contracts[i] for i in idx]
        quotes = self._quote_options(
            sym, contracts, chain.strikes[idx], chain.is_call[idx], t_years, chain.open_interest[idx], ts_init
        )
        prints: list[OptionTrade] = []
        now = self._now_ns
        for k, quote in enumerate(quotes):
            call = quote.contract.right is Right.CALL
            p_buy = 0.5 + OPTION_SIDE_SKEW * (imb if call else -imb)
            buy = u[k, 0] < p_buy
            if u[k, 1] < BLOCK_SHARE:
                size = BLOCK_LOTS[int(u[k, 2] * len(BLOCK_LOTS))]
            else:
                size = OPTION_LOTS[int(u[k, 2] * len(OPTION_LOTS))]
            legs = SWEEP_LEGS if BLOCK_SHARE <= u[k, 1] < BLOCK_SHARE + SWEEP_SHARE else 1
            for leg in range(legs):
                step = OPTION_TICK * leg
                price = quote.ask + step if buy else max(quote.bid - step, OPTION_TICK)
                prints.append(
                    OptionTrade(
                        ts_event=now,
                        ts_init=ts_init,
                        contract=quote.contract,
                        price=round(price, 2),
                        size=size,
                        bid=quote.bid,
                        ask=quote.ask,
                    )
                )
        return tuple(prints)

    def _sub_quotes(
        self,
        sym: _Symbol,
        row: int,
        bid_ticks: list[int],
        last_bid_size: int,
        last_ask_size: int,
        bid_mult: float,
        ask_mult: float,
        ts_init: int,
    ) -> tuple[Quote, ...]:
        """Quotes of a step split into ``quotes_per_step`` sub-steps, evenly spaced in time."""
        n = len(bid_ticks)
        extra = sym.extra_raw[row]
        start = self._now_ns - self._step_ns
        quotes = []
        for j, bt in enumerate(bid_ticks):
            last = j == n - 1
            quotes.append(
                Quote(
                    ts_event=self._now_ns if last else start + (j + 1) * self._step_ns // n,
                    ts_init=ts_init,
                    symbol=sym.name,
                    bid=sym.price(bt),
                    ask=sym.price(bt + self._spread_ticks),
                    bid_size=last_bid_size if last else int(extra[2 * j] * bid_mult) or 1,
                    ask_size=last_ask_size if last else int(extra[2 * j + 1] * ask_mult) or 1,
                )
            )
        return tuple(quotes)

    def _fill_block(self, sym: _Symbol) -> None:
        """Draw the random numbers of the next :data:`BLOCK_STEPS` steps (fixed shapes → determinism)."""
        q, levels, max_trades = self._quotes_per_step, self._levels, self._max_trades
        normals = sym.rng.standard_normal((BLOCK_STEPS, 2 * q + 1 + 2 * levels + 2 * (q - 1)))
        uniforms = sym.rng.random((BLOCK_STEPS, 1 + 2 * max_trades))
        col = 2 * q
        sym.z_path = normals[:, :col].tolist()
        sym.imbalance_z = normals[:, col].tolist()
        col += 1
        size_factor = np.exp(SIZE_NOISE * normals[:, col:] - 0.5 * SIZE_NOISE**2)
        base = float(self._market.book.base_size)
        sym.bid_raw = (size_factor[:, :levels] * self._depth).tolist()
        sym.ask_raw = (size_factor[:, levels : 2 * levels] * self._depth).tolist()
        sym.extra_raw = (size_factor[:, 2 * levels :] * base).tolist()
        sym.n_trades = np.searchsorted(self._poisson_cdf, uniforms[:, 0], side="right").tolist()
        sym.side_u = uniforms[:, 1 : 1 + max_trades].tolist()
        lot_idx = (uniforms[:, 1 + max_trades :] * len(TRADE_LOTS)).astype(np.intp)
        sym.trade_sizes = self._lots[lot_idx].tolist()
        sym.cursor = 0

    # --- options --------------------------------------------------------------------------
    def option_quote(self, contract: OptionContract, ts_init_ns: int | None = None) -> OptionQuote:
        """Quote any contract on a simulated underlying at the current state (listed or not).

        The simulated broker fills against this; for a listed contract it is the quote the
        chain would show now. An expired contract is quoted at its intrinsic value.
        """
        sym = self._get(contract.underlying)
        ts_init = time.time_ns() if ts_init_ns is None else int(ts_init_ns)
        expiry = dt.date.fromisoformat(contract.expiry)
        t_years = np.array([self._t_years(expiry)])
        strike = np.array([float(contract.strike)])
        oi = self._open_interest(sym, strike, [expiry], [contract.key])
        (quote,) = self._quote_options(
            sym, [contract], strike, np.array([contract.right is Right.CALL]), t_years, oi, ts_init
        )
        return quote

    def _quote_options(
        self,
        sym: _Symbol,
        contracts: list[OptionContract],
        strikes: NDArray[np.float64],
        is_call: NDArray[np.bool_],
        t_years: NDArray[np.float64],
        open_interest: NDArray[np.float64],
        ts_init: int,
    ) -> tuple[OptionQuote, ...]:
        """Price ``contracts`` in one vectorised BSM call and wrap them as OptionQuotes."""
        chain_cfg = self._market.chain
        spot = sym.mark()
        vol = sym.inst_vol()
        log_m = np.log(strikes / spot)
        iv = np.maximum(vol * (1.0 + SMILE_CURVATURE * log_m * log_m - SMILE_SKEW * log_m), MIN_IV)
        greeks = bsm_greeks(spot, strikes, t_years, chain_cfg.risk_free_rate, sym.spec.dividend_yield, iv, is_call)
        price = greeks.price
        half = np.maximum(price * (chain_cfg.option_half_spread_pct / 100.0), OPTION_TICK)
        bid_c = np.maximum(np.rint((price - half) / OPTION_TICK), 1.0)
        ask_c = np.maximum(np.rint((price + half) / OPTION_TICK), bid_c + 1.0)
        cents = round(1 / OPTION_TICK)
        width = self._activity_width(sym)
        near_money = np.exp(-0.5 * (log_m / width) ** 2)
        session_s = (self._close_ns - self._open_ns) / NS_PER_SECOND
        elapsed = 1.0 - self._remaining_today_s() / session_s
        volume = np.maximum(open_interest * (DAILY_TURNOVER * elapsed) * near_money, 1.0).astype(np.int64)
        now = self._now_ns
        rows = zip(
            contracts,
            (bid_c / cents).tolist(),
            (ask_c / cents).tolist(),
            iv.tolist(),
            greeks.delta.tolist(),
            greeks.gamma.tolist(),
            (greeks.vega / 100.0).tolist(),
            (greeks.theta / 252.0).tolist(),
            open_interest.astype(np.int64).tolist(),
            volume.tolist(),
            strict=True,
        )
        return tuple(
            OptionQuote(
                ts_event=now,
                ts_init=ts_init,
                contract=c,
                bid=b,
                ask=a,
                iv=v,
                delta=d,
                gamma=g,
                vega=ve,
                theta=th,
                underlying_price=spot,
                open_interest=oi,
                volume=vo,
            )
            for c, b, a, v, d, g, ve, th, oi, vo in rows
        )

    def _activity_width(self, sym: _Symbol) -> float:
        """Log-moneyness scale of open interest: the chain's wings sit at two widths."""
        cfg = self._market.chain
        return max(cfg.strikes_each_side * sym.spec.strike_step / sym.spec.spot / 2.0, 1e-4)

    def _open_interest(
        self, sym: _Symbol, strikes: NDArray[np.float64], expiries: list[dt.date], keys: list[str]
    ) -> NDArray[np.float64]:
        """Session-constant open interest: peaks at the session's starting spot and near expiry."""
        base = BASE_OPEN_INTEREST_INDEX if sym.name in INDEX_PRODUCTS else BASE_OPEN_INTEREST_SINGLE
        log_m = np.log(strikes / sym.spec.spot)
        near_money = np.exp(-0.5 * (log_m / self._activity_width(sym)) ** 2)
        days = np.array([max((e - self._session_date).days, 0) for e in expiries], dtype=np.float64)
        jitter = np.array([_jitter(k) for k in keys])
        return np.maximum(np.floor(base * near_money * jitter / (1.0 + 0.1 * days)), 1.0)

    def _remaining_today_s(self) -> float:
        """Trading seconds left in the session (the whole session before the open, 0 after the close)."""
        start = max(self._now_ns, self._open_ns)
        return max(self._close_ns - start, 0) / NS_PER_SECOND

    def _after_today_s(self, expiry: dt.date) -> float:
        """Trading seconds of the sessions after the session date up to and including ``expiry``."""
        cached = self._after_s_cache.get(expiry)
        if cached is None:
            cached = 0.0
            if expiry > self._session_date:
                cal = self._calendar
                for day in cal.sessions_between(self._session_date + dt.timedelta(days=1), expiry):
                    cached += (cal.session_close(day) - cal.session_open(day)).total_seconds()
            self._after_s_cache[expiry] = cached
        return cached

    def _t_years(self, expiry: dt.date) -> float:
        """Trading-time to the close of ``expiry`` in years (0 when expired, ≥ one minute otherwise)."""
        if expiry < self._session_date:
            return 0.0
        seconds = max(self._remaining_today_s() + self._after_today_s(expiry), MIN_OPTION_SECONDS)
        return seconds / SECONDS_PER_TRADING_YEAR

    def _chain_t_years(self, chain: _Chain) -> NDArray[np.float64]:
        per_expiry = np.maximum(self._remaining_today_s() + chain.expiry_after_s, MIN_OPTION_SECONDS)
        return per_expiry[chain.expiry_idx] / SECONDS_PER_TRADING_YEAR

    # --- listing --------------------------------------------------------------------------
    def _daily_expiries(self) -> list[dt.date]:
        """The next ``expiries`` sessions from the session date (0DTE, 1DTE, …)."""
        wanted = self._market.chain.expiries
        span = 2 * wanted + 10
        while True:
            days = self._calendar.sessions_between(self._session_date, self._session_date + dt.timedelta(days=span))
            if len(days) >= wanted:
                return days[:wanted]
            span *= 2

    def _friday_expiries(self) -> list[dt.date]:
        """Friday expiries (session before a Friday holiday), ≥ 7 and ≤ ``max_dte`` days away."""
        cfg = self._market.chain
        start = self._session_date
        first_friday = start + dt.timedelta(days=(4 - start.weekday()) % 7)
        found: list[dt.date] = []
        friday = first_friday
        while (friday - start).days <= cfg.max_dte + 7 and len(found) < cfg.expiries:
            expiry = self._calendar.session_on_or_before(friday)
            if 7 <= (expiry - start).days <= cfg.max_dte and expiry not in found:
                found.append(expiry)
            friday += dt.timedelta(days=7)
        return found

    def _add(self, symbol: str, anchor: float | None) -> None:
        if symbol in self._symbols:
            return
        spec = self._market.underlyings.get(symbol)
        if spec is None:
            raise KeyError(f"symbol: {symbol} has no entry under underlyings in market.yaml")
        sym = _Symbol(symbol, spec, self._seed)
        sym.chain = self._build_chain(sym, anchor)
        self._symbols[symbol] = sym

    def _build_chain(self, sym: _Symbol, anchor: float | None) -> _Chain:
        spec, cfg = sym.spec, self._market.chain
        step = spec.strike_step
        if anchor is None:
            anchor = round(spec.spot / step) * step
        places = _decimals(step) + 1
        strikes = [
            round(anchor + k * step, places)
            for k in range(-cfg.strikes_each_side, cfg.strikes_each_side + 1)
            if anchor + k * step > 1e-9
        ]
        expiries = self._index_expiries if sym.name in INDEX_PRODUCTS else self._weekly_expiries
        contracts: list[OptionContract] = []
        expiry_idx: list[int] = []
        for e_idx, expiry in enumerate(expiries):
            iso = expiry.isoformat()
            for strike in strikes:
                for right in (Right.CALL, Right.PUT):
                    contracts.append(OptionContract(sym.name, iso, strike, right))
                    expiry_idx.append(e_idx)
        strike_arr = np.array([c.strike for c in contracts], dtype=np.float64)
        return _Chain(
            anchor=float(anchor),
            contracts=contracts,
            strikes=strike_arr,
            is_call=np.array([c.right is Right.CALL for c in contracts], dtype=bool),
            expiry_idx=np.array(expiry_idx, dtype=np.intp),
            expiry_after_s=np.array([self._after_today_s(e) for e in expiries], dtype=np.float64),
            open_interest=self._open_interest(
                sym, strike_arr, [expiries[i] for i in expiry_idx], [c.key for c in contracts]
            ),
        )

    def _get(self, symbol: str) -> _Symbol:
        try:
            return self._symbols[symbol]
        except KeyError:
            raise KeyError(f"symbol: {symbol} is not simulated") from None

    # --- checkpoint -----------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """JSON-serialisable checkpoint from which :meth:`from_state` resumes bit-identically.

        Floats are stored as is (Python's JSON writes the shortest repr that round-trips); the
        generator state is the one at the start of the current random block, plus the position
        in it. Resuming requires the same ``market.yaml`` (block shapes depend on it).
        """
        return {
            "version": 1,
            "seed": self._seed,
            "session_date": self._session_date.isoformat(),
            "start_ns": self._start_ns,
            "step_ns": self._step_ns,
            "now_ns": self._now_ns,
            "steps": self._steps,
            "symbols": [
                {
                    "symbol": name,
                    "spot": sym.spot,
                    "variance": sym.variance,
                    "imbalance": sym.imbalance,
                    "cursor": sym.cursor,
                    "rng": _rng_state_to_json(sym.block_state) if sym.block_state else None,
                    "flow_rng": _rng_state_to_json(sym.flow_rng.bit_generator.state),
                    "options_pending": sym.options_pending,
                    "anchor": sym.chain.anchor if sym.chain is not None else None,
                }
                for name, sym in self._symbols.items()
            ],
        }

    @classmethod
    def from_state(cls, market: MarketFile, state: dict[str, Any]) -> SyntheticMarket:
        """Rebuild a market from :meth:`state` so its next step is the one the original would take."""
        if state.get("version") != 1:
            raise ValueError(f"state version: {state.get('version')!r} is not supported (expected 1)")
        self = cls(
            market,
            [],
            dt.date.fromisoformat(state["session_date"]),
            int(state["seed"]),
            int(state["start_ns"]),
            int(state["step_ns"]),
        )
        self._now_ns = int(state["now_ns"])
        self._steps = int(state["steps"])
        for saved in state["symbols"]:
            name = saved["symbol"]
            anchor = saved.get("anchor")
            self._add(name, anchor=float(anchor) if anchor is not None else None)
            sym = self._symbols[name]
            sym.spot = float(saved["spot"])
            sym.variance = float(saved["variance"])
            sym.imbalance = float(saved["imbalance"])
            sym.options_pending = bool(saved["options_pending"])
            if saved["rng"] is not None:
                sym.rng.bit_generator.state = _rng_state_from_json(saved["rng"])
                sym.block_state = sym.rng.bit_generator.state
                self._fill_block(sym)
            sym.cursor = int(saved["cursor"])
            if saved.get("flow_rng") is not None:
                sym.flow_rng.bit_generator.state = _rng_state_from_json(saved["flow_rng"])
        return self
