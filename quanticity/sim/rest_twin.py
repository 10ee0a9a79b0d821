"""What the UW and Alpha Vantage loopback twins share: rate limiting, fault injection, request log.

Rate limits are enforced with GCRA (the "virtual scheduling" form of a token bucket: a request
is allowed while its theoretical arrival time is at most ``burst − 1`` emission intervals in the
future), on an injectable clock in integer nanoseconds — so a test on a simulated clock gets the
exact same verdict every run, and a client that over-sends is told so exactly when the real API
would. Faults are queued per request ("the next 3 requests to ``/darkpool`` get a 500"), not by
wall time, so a test knows exactly which requests see them. Every request is logged with the
twin's clock, which is how tests prove the fetcher never exceeded the limit.
"""

from __future__ import annotations

import enum
import threading
from collections import deque
from dataclasses import dataclass

from quanticity.clock import NS_PER_SECOND, Clock


class FaultKind(enum.StrEnum):
    """An injected failure of one request."""

    HTTP_429 = "429"  # rate limited, with Retry-After
    HTTP_500 = "500"  # internal server error
    MALFORMED = "malformed"  # 200 with a body that is not JSON
    SLOW = "slow"  # answer only after ``delay_s`` (wall): client timeouts
    NAN = "nan"  # 200 with a NaN in the first record (UW) / a crossed quote (AV)
    NAN_GREEKS = "nan_greeks"  # Alpha Vantage only: 200 with ``value`` ("NaN") as ``field`` (delta) of one contract
    AV_NOTE = "note"  # Alpha Vantage only: 200 with a throttle ``Note``
    AV_INFORMATION = "information"  # Alpha Vantage only: 200 with an ``Information`` message
    AV_ERROR = "error_message"  # Alpha Vantage only: 200 with an ``Error Message``


AV_ONLY = frozenset({FaultKind.AV_NOTE, FaultKind.AV_INFORMATION, FaultKind.AV_ERROR, FaultKind.NAN_GREEKS})
"""Fault kinds that only make sense for Alpha Vantage's in-band signalling."""


@dataclass(frozen=True)
class Fault:
    """One queued fault; ``path`` restricts it to requests whose path contains that text."""

    kind: FaultKind
    path: str | None = None
    retry_after_s: int = 5
    delay_s: float = 2.0
    field: str | None = None
    """``nan_greeks``: the field to spoil (the twin's default when None)."""
    value: str = "NaN"
    """``nan_greeks``: what the field says instead (``"NaN"``, ``"inf"``, ``"1.7"`` …)."""


class FaultQueue:
    """Thread-safe queue of faults; each matching request pops one."""

    def __init__(self, allowed: frozenset[FaultKind] | None = None) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Fault] = deque()
        self._allowed = allowed if allowed is not None else frozenset(FaultKind)
        self.injected = 0

    def add(
        self,
        kind: FaultKind | str,
        count: int = 1,
        path: str | None = None,
        retry_after_s: int = 5,
        delay_s: float = 2.0,
        field: str | None = None,
        value: str = "NaN",
    ) -> None:
        """Fail the next ``count`` requests (matching ``path`` if given) with ``kind``."""
        try:
            fault_kind = FaultKind(kind)
        except ValueError as exc:
            raise ValueError(f"kind: {kind!r} is not one of {sorted(k.value for k in self._allowed)}") from exc
        if fault_kind not in self._allowed:
            raise ValueError(f"kind: {kind!r} is not one of {sorted(k.value for k in self._allowed)}")
        if count < 1:
            raise ValueError(f"count: {count} must be ≥ 1")
        if retry_after_s < 0 or delay_s < 0:
            raise ValueError(f"retry_after_s: {retry_after_s}, delay_s: {delay_s} must not be negative")
        with self._lock:
            self._queue.extend([Fault(fault_kind, path, retry_after_s, delay_s, field, value)] * count)

    def take(self, path: str) -> Fault | None:
        """The first queued fault that matches ``path`` (removed), if any."""
        with self._lock:
            for fault in self._queue:
                if fault.path is None or fault.path in path:
                    self._queue.remove(fault)
                    self.injected += 1
                    return fault
        return None

    def pending(self) -> int:
        """Faults still queued."""
        with self._lock:
            return len(self._queue)

    def clear(self) -> None:
        """Drop every queued fault."""
        with self._lock:
            self._queue.clear()


class GcraLimiter:
    """``requests_per_minute`` with ``burst``, as GCRA on the injected clock (exact integers)."""

    def __init__(self, requests_per_minute: int, burst: int, clock: Clock) -> None:
        if requests_per_minute <= 0 or burst <= 0:
            raise ValueError(f"requests_per_minute: {requests_per_minute}, burst: {burst} must be positive")
        self._clock = clock
        self.requests_per_minute = requests_per_minute
        self.burst = burst
        # emission interval T = 60 s / rpm, kept as the fraction (60e9 / rpm) by scaling every time by rpm
        self._scaled_tat = 0  # theoretical arrival time × rpm
        self._lock = threading.Lock()

    def check(self) -> tuple[bool, int]:
        """``(allowed, retry_after_s)`` for a request now; an allowed request is counted."""
        rpm = self.requests_per_minute
        interval = 60 * NS_PER_SECOND  # T × rpm
        with self._lock:
            now = self._clock.now_ns() * rpm
            tat = max(self._scaled_tat, now) + interval
            if tat - now > self.burst * interval:
                wait_ns = (tat - now - self.burst * interval) // rpm
                return False, max(1, -(-wait_ns // NS_PER_SECOND))
            self._scaled_tat = tat
            return True, 0


@dataclass(frozen=True)
class LoggedRequest:
    """One request the twin saw: its clock time, path and the status it answered."""

    ts_ns: int
    path: str
    status: int


class RequestLog:
    """Append-only log of requests (thread-safe), with the sliding-window count tests need."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[LoggedRequest] = []

    def add(self, ts_ns: int, path: str, status: int) -> None:
        """Record one answered request."""
        with self._lock:
            self._entries.append(LoggedRequest(ts_ns, path, status))

    def entries(self) -> list[LoggedRequest]:
        """A copy of every entry so far."""
        with self._lock:
            return list(self._entries)

    def max_in_window(self, window_s: float = 60.0, statuses: set[int] | None = None) -> int:
        """Most requests (optionally only those answered with ``statuses``) in any window of ``window_s``."""
        times = sorted(e.ts_ns for e in self.entries() if statuses is None or e.status in statuses)
        window = int(window_s * NS_PER_SECOND)
        best = start = 0
        for end, ts in enumerate(times):
            while ts - times[start] >= window:
                start += 1
            best = max(best, end - start + 1)
        return best
