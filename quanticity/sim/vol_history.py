"""Simulated volatility history: the closing ATM IV and 25-delta risk reversal of prior sessions.

Why this exists: IV rank needs a year (at least ``min_days``) of daily closing IVs, and the 1DTE and
14-day+ strategies compare today's 25Δ risk reversal with its recent closes. A live deployment has
them from its own persisted history or from Unusual Whales' historical IV and skew endpoints; a
simulated session starting from an empty Redis would have none, and those strategies would fail
closed all day. So the simulator supplies prior sessions, as alternative-data events of kind
``VOL_CLOSE`` delivered before the session like the rest of the history.

The numbers are not invented separately from the market: each prior session's chain is listed and
priced by :class:`SyntheticMarket` for that date at that session's volatility level, and the
closing ATM IV and rr25 are read off it by the very :class:`AnalyticsEngine` the live actors run.
The volatility level follows a seeded log-AR(1) around the symbol's configured vol, independent of
the intraday path (its own random stream), so adding a symbol or a history day changes nothing
else.
"""

from __future__ import annotations

import math
import zlib
from datetime import date, timedelta

import numpy as np

from quanticity.analytics.engine import AnalyticsEngine
from quanticity.calendar import NyseCalendar
from quanticity.config.models import AnalyticsSection, MarketFile
from quanticity.messages import AltDataEvent, AltDataKind
from quanticity.sim.market import SyntheticMarket

NS = 1_000_000_000
HISTORY_SESSIONS = 22
"""Prior sessions supplied: IV rank's 20-day minimum and the 1DTE skew baseline's 10 days, with a
margin. Each costs one chain listing and evaluation per symbol (~7 ms), paid once at start."""
PERSISTENCE = 0.94
"""Day-to-day persistence of log volatility (a half-life of about 11 sessions)."""
SHOCK_SD = 0.07
"""Daily shock of log volatility: a stationary spread of about ±20 % around the configured vol."""
CLOSE_STEP_NS = 2 * NS


def _reading_ns(day: date, calendar: NyseCalendar) -> int:
    """When a day's "closing" reading is taken: the 15:30 cut-off (30 minutes before an early
    close), the moment the 1DTE rule compares today's skew with this history — so both readings
    see the same time left on the front expiry, which dominates a 0DTE chain's skew."""
    return int(calendar.zero_dte_entry_cutoff(day).timestamp() * NS)


def vol_levels(symbol: str, base_vol: float, sessions: int, seed: int) -> list[float]:
    """``sessions`` daily volatility levels of ``symbol``, oldest first, the last one nearest today's."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, zlib.crc32(symbol.encode()), 0x701])))
    x = float(rng.normal(0.0, SHOCK_SD / math.sqrt(1 - PERSISTENCE**2)))
    levels = []
    for _ in range(sessions):
        x = PERSISTENCE * x + float(rng.normal(0.0, SHOCK_SD))
        levels.append(base_vol * math.exp(x))
    return levels


def vol_close_events(
    market: MarketFile,
    analytics: AnalyticsSection,
    symbols: list[str],
    session_date: date,
    seed: int,
    zero_dte: frozenset[str] | set[str] = frozenset(),
    calendar: NyseCalendar | None = None,
    sessions: int = HISTORY_SESSIONS,
) -> list[AltDataEvent]:
    """One ``VOL_CLOSE`` event per symbol and prior session (before ``session_date``), sorted by time.

    ``detail`` carries ``atm_iv`` and ``rr25`` as the analytics engine computed them from that
    session's closing chain; ``when`` is the session's date. ``zero_dte`` names the symbols whose
    engines look at 0DTE expiries (as the live actors construct them).
    """
    calendar = calendar or NyseCalendar()
    days = calendar.sessions_between(session_date - timedelta(days=3 * sessions), session_date - timedelta(days=1))
    days = days[-sessions:]
    events: list[AltDataEvent] = []
    for symbol in symbols:
        spec = market.underlyings.get(symbol)
        if spec is None:
            continue
        for day, vol in zip(days, vol_levels(symbol, spec.vol, len(days), seed), strict=True):
            atm_iv, rr25 = _closing_reading(market, analytics, symbol, vol, day, seed, symbol in zero_dte, calendar)
            if not (math.isfinite(atm_iv) and math.isfinite(rr25)):
                continue
            ts = _reading_ns(day, calendar)
            events.append(
                AltDataEvent(
                    ts_event=ts,
                    ts_init=ts,
                    kind=AltDataKind.VOL_CLOSE,
                    symbol=symbol,
                    direction=0,
                    when=day.isoformat(),
                    detail={"id": f"{symbol}-vol-{day.isoformat()}", "atm_iv": repr(atm_iv), "rr25": repr(rr25)},
                )
            )
    events.sort(key=lambda e: (e.ts_event, e.symbol))
    return events


def _closing_reading(
    market: MarketFile,
    analytics: AnalyticsSection,
    symbol: str,
    vol: float,
    day: date,
    seed: int,
    zero_dte: bool,
    calendar: NyseCalendar,
) -> tuple[float, float]:
    """(ATM IV, rr25) of ``symbol``'s chain at ``day``'s reading time when its volatility is ``vol``."""
    spec = market.underlyings[symbol]
    day_market = market.model_copy(update={"underlyings": {symbol: spec.model_copy(update={"vol": vol})}})
    at = _reading_ns(day, calendar)
    sim = SyntheticMarket(day_market, [symbol], day, seed, at - CLOSE_STEP_NS, CLOSE_STEP_NS)
    batch = sim.step(at)[symbol]
    engine = AnalyticsEngine(
        symbol,
        analytics,
        min_dte=0 if zero_dte else 14,
        rate=market.chain.risk_free_rate,
        div_yield=spec.dividend_yield,
        session_date=day,
    )
    engine.on_batch(batch)
    metrics = engine.refresh_chain(at)
    return float(metrics.get("atm_iv", math.nan)), float(metrics.get("rr25", math.nan))
