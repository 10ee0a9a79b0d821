"""Simulated alternative data: congress and insider trades, dark-pool prints, flow alerts, earnings.

Deterministic from (seed, symbol), independent of the price path. Each symbol gets a persistent
"story" (a bullish or bearish tilt) so its congress buys, insider sales and dark-pool prints lean
one way — which is what the 14-day+ strategies look for — and 60 sessions of history, so their
baselines (dark-pool σ, insider clusters) exist on the first simulated day. Single names also get
their next earnings date, 5–40 calendar days out.
"""

from __future__ import annotations

import zlib
from datetime import date, datetime, time, timedelta

import numpy as np

from quanticity.calendar import ET, NyseCalendar
from quanticity.config.models import QuanticityConfig
from quanticity.messages import AltDataEvent, AltDataKind
from quanticity.sim.vol_history import vol_close_events

NS = 1_000_000_000
HISTORY_SESSIONS = 60
INDEX_PRODUCTS = ("SPX", "SPY", "QQQ", "IWM")
#: mean events per symbol per session
RATES = {AltDataKind.DARK_POOL: 2.0, AltDataKind.CONGRESS: 0.08, AltDataKind.INSIDER: 0.1, AltDataKind.FLOW_ALERT: 1.0}


def _ns(day: date, at: time) -> int:
    return int(datetime.combine(day, at, tzinfo=ET).timestamp() * NS)


def alt_data_events(
    symbols: list[str], session_date: date, seed: int, calendar: NyseCalendar | None = None
) -> list[AltDataEvent]:
    """Every alternative-data event up to the end of ``session_date``, sorted by time then symbol."""
    calendar = calendar or NyseCalendar()
    history = calendar.sessions_between(session_date - timedelta(days=120), session_date)[-HISTORY_SESSIONS - 1 :]
    events: list[AltDataEvent] = []
    for symbol in symbols:
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, zlib.crc32(symbol.encode()), 0xA17])))
        tilt = 1 if rng.random() < 0.5 else -1
        for day in history:
            for kind, rate in RATES.items():
                if kind is AltDataKind.FLOW_ALERT and symbol in INDEX_PRODUCTS:
                    rate *= 3
                for n in range(int(rng.poisson(rate))):
                    lean = 0.7 if kind is not AltDataKind.INSIDER else 0.85
                    direction = tilt if rng.random() < lean else -tilt
                    if kind is AltDataKind.INSIDER:
                        direction = -1 if rng.random() < 0.8 else 1  # insiders mostly sell
                    amount = float(np.round(rng.lognormal(13.5 if kind is not AltDataKind.CONGRESS else 12.5, 1.0), 2))
                    minute = int(rng.integers(0, 390))
                    ts = _ns(day, time(9, 30)) + minute * 60 * NS
                    events.append(
                        AltDataEvent(
                            ts_event=ts,
                            ts_init=ts,
                            kind=kind,
                            symbol=symbol,
                            direction=direction,
                            amount=amount,
                            when=day.isoformat(),
                            detail={"id": f"{symbol}-{kind.value}-{day.isoformat()}-{n}"},
                        )
                    )
        if symbol not in INDEX_PRODUCTS:
            report = session_date + timedelta(days=int(rng.integers(5, 41)))
            ts = _ns(history[0], time(8, 0))
            events.append(
                AltDataEvent(
                    ts_event=ts,
                    ts_init=ts,
                    kind=AltDataKind.EARNINGS,
                    symbol=symbol,
                    direction=0,
                    when=report.isoformat(),
                    detail={"id": f"{symbol}-earnings-{report.isoformat()}"},
                )
            )
    events.sort(key=lambda e: (e.ts_event, e.symbol, e.kind.value, e.detail.get("id", "")))
    return events


def session_alt_data(config: QuanticityConfig, symbols: list[str], session_date: date, seed: int) -> list[AltDataEvent]:
    """Everything the simulated alternative-data sources deliver for a session, sorted by time:
    the event history of :func:`alt_data_events` plus prior sessions' closing vol readings
    (:func:`~quanticity.sim.vol_history.vol_close_events`). The feed actor and the backtest both
    take it from here, so both deliver the same events."""
    calendar = NyseCalendar()
    events = alt_data_events(symbols, session_date, seed, calendar)
    events += vol_close_events(
        config.market,
        config.trading.analytics,
        symbols,
        session_date,
        seed,
        zero_dte=set(config.system.universe.zero_dte),
        calendar=calendar,
    )
    events.sort(key=lambda e: (e.ts_event, e.symbol, e.kind.value, e.detail.get("id", "")))
    return events
