"""The NYSE calendar: sessions, holidays, half days and the platform's intraday cut-offs.

Backed by ``exchange_calendars`` (XNYS), a maintained calendar with the exchange's holidays and
early closes, rather than a hand-kept list. Times are exposed in US/Eastern because every trading
rule of the seeds is written in ET (no 0DTE entries after 15:30, MOC window 14:00–15:30, …).
"""

from __future__ import annotations

import functools
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import pandas as pd

ET = ZoneInfo("America/New_York")
ZERO_DTE_ENTRY_CUTOFF = time(15, 30)
"""No 0DTE entries after this ET time (SPEC §8); also the 1DTE check and the MOC entry time."""


@functools.lru_cache(maxsize=1)
def _xnys() -> xcals.ExchangeCalendar:
    today = date.today()
    return xcals.get_calendar(
        "XNYS", start=pd.Timestamp(today - timedelta(days=3 * 365)), end=pd.Timestamp(today + timedelta(days=2 * 365))
    )


@functools.lru_cache(maxsize=4096)
def _bell(day: date, which: str) -> datetime:
    """Open or close of the session ``day`` in ET, memoised: the exchange_calendars lookup costs
    ~70 µs through pandas and chain listings ask it for every expiry of every symbol."""
    ts = pd.Timestamp(day)
    cal = _xnys()
    if not cal.is_session(ts):
        raise ValueError(f"day: {day} is not an NYSE session")
    bell = cal.session_open(ts) if which == "open" else cal.session_close(ts)
    return bell.tz_convert(ET).to_pydatetime()


class NyseCalendar:
    """Questions the platform asks of the NYSE calendar, in plain dates and aware datetimes."""

    def __init__(self) -> None:
        self._cal = _xnys()

    def is_session(self, day: date) -> bool:
        """True when NYSE trades on ``day`` (not a weekend or an exchange holiday)."""
        return bool(self._cal.is_session(pd.Timestamp(day)))

    def session_open(self, day: date) -> datetime:
        """Opening bell of the session ``day`` in ET (09:30)."""
        return _bell(day, "open")

    def session_close(self, day: date) -> datetime:
        """Closing bell of the session ``day`` in ET: 16:00, or 13:00 on a half day."""
        return _bell(day, "close")

    def is_half_day(self, day: date) -> bool:
        """True on an early-close session (e.g. the day after Thanksgiving)."""
        return self.session_close(day).time() < time(16, 0)

    def previous_session(self, day: date) -> date:
        """The last session strictly before ``day``."""
        return self._cal.previous_session(self._session(day, direction="next")).date()

    def next_session(self, day: date) -> date:
        """The first session strictly after ``day``."""
        return self._cal.next_session(self._session(day, direction="previous")).date()

    def session_on_or_before(self, day: date) -> date:
        """``day`` if it is a session, else the closest session before it."""
        return self._session(day, direction="previous").date()

    def sessions_between(self, start: date, end: date) -> list[date]:
        """Every session from ``start`` to ``end`` inclusive."""
        return [ts.date() for ts in self._cal.sessions_in_range(pd.Timestamp(start), pd.Timestamp(end))]

    def trading_days_between(self, start: date, end: date) -> int:
        """Number of sessions after ``start`` up to and including ``end`` (0 when same day)."""
        if end <= start:
            return 0
        return len(self.sessions_between(start + timedelta(days=1), end))

    def is_open_at(self, moment: datetime) -> bool:
        """True during regular trading hours at the aware datetime ``moment``."""
        return bool(self._cal.is_open_on_minute(pd.Timestamp(moment).tz_convert("UTC")))

    def zero_dte_entry_cutoff(self, day: date) -> datetime:
        """Latest time for 0DTE entries on ``day``: 15:30 ET, or 30 minutes before a half-day close."""
        close = self.session_close(day)
        cutoff = datetime.combine(day, ZERO_DTE_ENTRY_CUTOFF, tzinfo=ET)
        return min(cutoff, close - timedelta(minutes=30))

    def _session(self, day: date, direction: str = "none") -> pd.Timestamp:
        ts = pd.Timestamp(day)
        if direction == "none" and not self._cal.is_session(ts):
            raise ValueError(f"day: {day} is not an NYSE session")
        return self._cal.date_to_session(ts, direction=direction)
