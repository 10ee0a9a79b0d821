"""One clock abstraction for live trading, simulation and backtests.

Library code never calls ``time.time()`` for decisions: it asks a :class:`Clock`. Live trading
uses :class:`LiveClock`; tests and backtests use :class:`SimulatedClock`, advanced explicitly so
results do not depend on how fast the machine is; ``make run`` uses :class:`AcceleratedClock`,
which maps wall time onto a simulated session at a speed factor, so a whole trading day passes in
minutes. The accelerated mapping is fully described by three numbers, so every actor — including
one restarted mid-session — reconstructs exactly the same clock.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import UTC, datetime

NS_PER_SECOND = 1_000_000_000


class Clock(ABC):
    """Source of the current time in integer nanoseconds since the epoch (UTC)."""

    @abstractmethod
    def now_ns(self) -> int:
        """Current time, ns since the epoch."""

    def now(self) -> datetime:
        """Current time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.now_ns() / NS_PER_SECOND, tz=UTC)


class LiveClock(Clock):
    """The wall clock."""

    def now_ns(self) -> int:
        return time.time_ns()


class SimulatedClock(Clock):
    """A clock that only moves when told to; never goes backwards."""

    def __init__(self, start_ns: int) -> None:
        self._now_ns = int(start_ns)

    def now_ns(self) -> int:
        return self._now_ns

    def set(self, ts_ns: int) -> None:
        """Move to ``ts_ns``; a move into the past is refused (time is monotonic)."""
        if ts_ns < self._now_ns:
            raise ValueError(f"ts_ns: {ts_ns} is before the simulated now {self._now_ns}")
        self._now_ns = int(ts_ns)

    def advance(self, seconds: float) -> int:
        """Move forward by ``seconds`` and return the new time."""
        if seconds < 0:
            raise ValueError(f"seconds: {seconds} must not be negative")
        self._now_ns += int(round(seconds * NS_PER_SECOND))
        return self._now_ns


class AcceleratedClock(Clock):
    """Simulated session time that runs ``speed`` times faster than the wall clock.

    ``sim_now = sim_start_ns + (wall_now - wall_start_ns) * speed``.
    """

    def __init__(self, sim_start_ns: int, wall_start_ns: int, speed: float, wall: Clock | None = None) -> None:
        if speed <= 0:
            raise ValueError(f"speed: {speed} must be positive")
        self.sim_start_ns = int(sim_start_ns)
        self.wall_start_ns = int(wall_start_ns)
        self.speed = float(speed)
        self._wall = wall or LiveClock()

    def now_ns(self) -> int:
        elapsed = self._wall.now_ns() - self.wall_start_ns
        return self.sim_start_ns + int(elapsed * self.speed)

    def wall_ns_for(self, sim_ns: int) -> int:
        """Wall time at which the simulated time ``sim_ns`` is reached (for pacing a feed)."""
        return self.wall_start_ns + int((sim_ns - self.sim_start_ns) / self.speed)


class FollowClock(Clock):
    """The time of something that keeps its own: a simulated market's ``now``, read on every call.

    The loopback venues (the UW and AV twins beside the TWS simulator) stamp their data and pace
    their rate limits with the market they serve, so every venue of a run — and every client
    reading the market's published time — agrees on "now", however late the market opened.
    """

    def __init__(self, source: Callable[[], int]) -> None:
        self._source = source

    def now_ns(self) -> int:
        return int(self._source())
