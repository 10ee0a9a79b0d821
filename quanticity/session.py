"""The simulated session a run trades: which day, which hours, how fast.

A :class:`RunSpec` is computed once by the CLI and handed to every actor, so all of them — and
any actor restarted mid-run — agree on the session and on the accelerated clock.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import msgspec

from quanticity.calendar import ET, NyseCalendar
from quanticity.clock import NS_PER_SECOND, AcceleratedClock, Clock, LiveClock
from quanticity.config.models import SessionSection


class RunSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One simulated session. ``speed == 0`` means unpaced: as fast as the actors can go."""

    session_date: str
    sim_start_ns: int
    sim_end_ns: int
    step_ns: int
    speed: float
    seed: int
    wall_start_ns: int
    lockstep: bool = False
    """Lock-step: the feed awaits every stage of a step, in the backtest's canonical order
    (:mod:`quanticity.lockstep`), before the next step; no decision reads the wall clock."""

    @property
    def paced(self) -> bool:
        """True when the feed follows the accelerated clock; False when it runs flat out."""
        return self.speed > 0

    def clock(self) -> Clock:
        """The accelerated clock of the session (wall clock mapped onto simulated time)."""
        return AcceleratedClock(self.sim_start_ns, self.wall_start_ns, self.speed if self.paced else 1.0)

    @property
    def steps(self) -> int:
        """Number of feed steps in the session."""
        return max(0, (self.sim_end_ns - self.sim_start_ns) // self.step_ns)


def _at(day: date, moment: time) -> int:
    return int(datetime.combine(day, moment, tzinfo=ET).timestamp() * NS_PER_SECOND)


def plan_session(
    section: SessionSection,
    seed: int,
    speed: float | None = None,
    duration_s: float | None = None,
    today: date | None = None,
    calendar: NyseCalendar | None = None,
    wall: Clock | None = None,
    lockstep: bool = False,
) -> RunSpec:
    """Resolve the configured session (and CLI overrides) into a :class:`RunSpec`.

    ``date: null`` picks the last NYSE session before ``today``; ``end: null`` the session's close
    (13:00 on half days); ``duration_s`` (simulated seconds) shortens the session; ``lockstep``
    selects the deterministic lock-step run (see :attr:`RunSpec.lockstep`).
    """
    calendar = calendar or NyseCalendar()
    day = section.date or calendar.session_on_or_before((today or date.today()) - timedelta(days=1))
    if not calendar.is_session(day):
        raise ValueError(f"session.date: {day} is not an NYSE session")
    close = calendar.session_close(day)
    start_ns = _at(day, section.start)
    end_ns = _at(day, section.end) if section.end else int(close.timestamp() * NS_PER_SECOND)
    end_ns = min(end_ns, int(close.timestamp() * NS_PER_SECOND))
    if duration_s is not None:
        end_ns = min(end_ns, start_ns + int(duration_s * NS_PER_SECOND))
    if end_ns <= start_ns:
        raise ValueError(f"session: end {end_ns} is not after start {start_ns} on {day}")
    return RunSpec(
        session_date=day.isoformat(),
        sim_start_ns=start_ns,
        sim_end_ns=end_ns,
        step_ns=section.step_ms * 1_000_000,
        speed=section.speed if speed is None else speed,
        seed=seed,
        wall_start_ns=(wall or LiveClock()).now_ns(),
        lockstep=lockstep,
    )
