"""Turn an endpoint's path and params templates into one concrete request.

Templates in a source YAML:

- ``{ticker}`` in the path, a param value or the redis key: the job's symbol;
- ``{date}`` in the path: today's date (US/Eastern);
- a param value ``today`` / ``today-7d`` / ``today+3d``: that calendar date, ISO;
- a param value ``session`` / ``session-5``: the last NYSE session on or before today, or the
  session N sessions before it (for "the last week of trading" ranges that skip holidays).

Everything else is sent as written (booleans as ``true``/``false``, as the APIs expect).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import date, datetime, timedelta

from quanticity.calendar import ET, NyseCalendar
from quanticity.clock import NS_PER_SECOND

_TODAY = re.compile(r"^today(?:([+-])(\d+)d)?$")
_SESSION = re.compile(r"^session(?:-(\d+))?$")
PLACEHOLDER = re.compile(r"\{(\w+)\}")
PATH_PLACEHOLDERS = frozenset({"ticker", "date"})
PARAM_PLACEHOLDERS = frozenset({"ticker"})


def et_date(ts_ns: int) -> date:
    """The US/Eastern calendar date of ``ts_ns``: what the APIs mean by "today"."""
    return datetime.fromtimestamp(ts_ns / NS_PER_SECOND, tz=ET).date()


def is_date_token(value: str) -> bool:
    """Whether ``value`` is a ``today…`` / ``session…`` token (validated at config load)."""
    return bool(_TODAY.match(value) or _SESSION.match(value))


def resolve_value(value: str | int | float | bool, symbol: str | None, today: date, calendar: NyseCalendar) -> str:
    """One param value as sent on the wire."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, str):
        return str(value)
    match = _TODAY.match(value)
    if match:
        sign, days = match.groups()
        offset = timedelta(days=int(days or 0))
        return (today - offset if sign == "-" else today + offset).isoformat()
    match = _SESSION.match(value)
    if match:
        return _session_before(calendar, today, int(match.group(1) or 0)).isoformat()
    if symbol is not None:
        value = value.replace("{ticker}", symbol)
    return value


@functools.lru_cache(maxsize=64)
def _session_before(calendar: NyseCalendar, today: date, sessions_back: int) -> date:
    """The session ``sessions_back`` sessions before the last one on/before ``today`` (pandas is slow: cached)."""
    session = calendar.session_on_or_before(today)
    for _ in range(sessions_back):
        session = calendar.previous_session(session)
    return session


def build_request(
    base_url: str,
    path: str,
    params: Mapping[str, str | int | float | bool],
    symbol: str | None,
    now_ns: int,
    calendar: NyseCalendar,
) -> tuple[str, dict[str, str]]:
    """``(url, query params)`` of one request at ``now_ns``."""
    today = et_date(now_ns)
    filled = path.replace("{date}", today.isoformat())
    if symbol is not None:
        filled = filled.replace("{ticker}", symbol)
    query = {name: resolve_value(value, symbol, today, calendar) for name, value in params.items()}
    return base_url.rstrip("/") + filled, query
