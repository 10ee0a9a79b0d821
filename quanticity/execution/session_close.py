"""When 0DTE positions must be flat: ``zero_dte_flat_at`` ET, the same lead before an early close.

A 0DTE option left open into the close is exercised or expires: the platform never holds one
through it. The configured time (default 15:50 ET) is a lead before the regular 16:00 close; on
an early-close day the same lead applies before that close (10 minutes before 13:00 → 12:50), so
the rule keeps its meaning on half days. Only contracts expiring on the session date are concerned:
a 1DTE position opened at 15:30 is meant to be held overnight.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from quanticity.calendar import ET, NyseCalendar
from quanticity.messages import OptionContract

NS = 1_000_000_000
_REGULAR_CLOSE = time(16, 0)


class ZeroDteFlatSchedule:
    """Answers "must this position be flat now?" from the NYSE calendar; one lookup per day."""

    def __init__(self, flat_at: time, calendar: NyseCalendar | None = None) -> None:
        self.flat_at = flat_at
        self._calendar = calendar
        self._cache: dict[date, datetime | None] = {}

    @property
    def lead(self) -> timedelta:
        """How long before the regular close the flat time is (10 minutes for 15:50)."""
        close = datetime.combine(date(2000, 1, 3), _REGULAR_CLOSE)
        return close - datetime.combine(date(2000, 1, 3), self.flat_at)

    def flat_time(self, day: date) -> datetime | None:
        """The ET time from which 0DTE positions of ``day`` are closed; None when ``day`` is no session."""
        if day not in self._cache:
            calendar = self._calendar or NyseCalendar()
            self._calendar = calendar
            if not calendar.is_session(day):
                self._cache[day] = None
            else:
                close = calendar.session_close(day)
                self._cache[day] = min(datetime.combine(day, self.flat_at, tzinfo=ET), close - self.lead)
        return self._cache[day]

    def due(self, contract: OptionContract, now_ns: int) -> bool:
        """True when ``contract`` expires today (ET) and the flat time has come."""
        now = datetime.fromtimestamp(now_ns / NS, tz=UTC).astimezone(ET)
        if contract.expiry != now.date().isoformat():
            return False
        flat = self.flat_time(now.date())
        return flat is not None and now >= flat
