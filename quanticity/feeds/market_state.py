"""Which part of the trading day it is, for the fetch-cadence multipliers of a source.

UW and AV data moves fastest in regular trading hours and barely at all on a weekend, so each
source YAML scales its cadences per state (``schedule:``). States, in US/Eastern on the NYSE
calendar (:mod:`quanticity.calendar`, holidays and half days included):

- ``rth``: the session, open to close (13:00 on half days);
- ``pre_market``: 04:00 to the open of a session day;
- ``after_hours``: the close to 20:00 of a session day;
- ``overnight``: the rest of a session day (00:00–04:00, 20:00–24:00);
- ``weekend``: any day without a session (weekends and exchange holidays).
"""

from __future__ import annotations

import enum
from datetime import date, datetime, time

from quanticity.calendar import ET, NyseCalendar
from quanticity.clock import NS_PER_SECOND

PRE_MARKET_START = time(4, 0)
AFTER_HOURS_END = time(20, 0)


class MarketState(enum.StrEnum):
    """Part of the trading day; the keys of a source's ``schedule`` multipliers."""

    RTH = "rth"
    PRE_MARKET = "pre_market"
    AFTER_HOURS = "after_hours"
    OVERNIGHT = "overnight"
    WEEKEND = "weekend"


class MarketStateResolver:
    """Maps a timestamp to a :class:`MarketState`; session bounds are cached per day (pandas is slow)."""

    def __init__(self, calendar: NyseCalendar | None = None) -> None:
        self._calendar = calendar or NyseCalendar()
        self._days: dict[date, tuple[datetime, datetime] | None] = {}

    def _bounds(self, day: date) -> tuple[datetime, datetime] | None:
        if day not in self._days:
            if self._calendar.is_session(day):
                self._days[day] = (self._calendar.session_open(day), self._calendar.session_close(day))
            else:
                self._days[day] = None
        return self._days[day]

    def at(self, ts_ns: int) -> MarketState:
        """State at ``ts_ns`` (ns since the epoch, UTC)."""
        moment = datetime.fromtimestamp(ts_ns / NS_PER_SECOND, tz=ET)
        bounds = self._bounds(moment.date())
        if bounds is None:
            return MarketState.WEEKEND
        open_, close = bounds
        if open_ <= moment < close:
            return MarketState.RTH
        if datetime.combine(moment.date(), PRE_MARKET_START, tzinfo=ET) <= moment < open_:
            return MarketState.PRE_MARKET
        if close <= moment < datetime.combine(moment.date(), AFTER_HOURS_END, tzinfo=ET):
            return MarketState.AFTER_HOURS
        return MarketState.OVERNIGHT
