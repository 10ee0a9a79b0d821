"""Token bucket shared by every endpoint of one source, on an injected clock, in exact integers.

A source's rate limit (UW 120/min with a burst of 20, AV 590/min) is one budget for all its
endpoints, so one bucket per source. Time comes from a :class:`~quanticity.clock.Clock`, never
the wall, so tests drive ten simulated minutes in a second and get the same answer every run.

Arithmetic is integer: one token is :data:`UNIT` = 60·10⁹ units and each nanosecond refills
``requests_per_minute`` units, so the bucket never drifts from a server that enforces the same
limit (no float rounding lets the client think it has a token the server says it has not).

Priority: a non-critical request may only take a token while more than ``reserve`` tokens
remain, so when tokens are scarce the last ones go to critical endpoints.
"""

from __future__ import annotations

from quanticity.clock import NS_PER_SECOND, Clock

UNIT = 60 * NS_PER_SECOND
"""Bucket units per token (ns per minute): refill per ns is then exactly ``requests_per_minute``."""


class TokenBucket:
    """``requests_per_minute`` refill, ``burst`` capacity, ``reserve`` tokens kept for critical requests."""

    def __init__(self, requests_per_minute: int, burst: int, clock: Clock, reserve: int = 0) -> None:
        _validate(requests_per_minute, burst, reserve)
        self._clock = clock
        self._last_ns = clock.now_ns()
        self.requests_per_minute = int(requests_per_minute)
        self.burst = int(burst)
        self.reserve = int(reserve)
        self._capacity = self.burst * UNIT
        self._units = self._capacity  # a source starts with a full burst

    def reconfigure(self, requests_per_minute: int, burst: int, reserve: int = 0) -> None:
        """Apply new limits (hot reload); tokens on hand are kept, capped at the new burst."""
        _validate(requests_per_minute, burst, reserve)
        self._refill()
        self.requests_per_minute = int(requests_per_minute)
        self.burst = int(burst)
        self.reserve = int(reserve)
        self._capacity = self.burst * UNIT
        self._units = min(self._units, self._capacity)

    def _refill(self) -> None:
        now = self._clock.now_ns()
        if now > self._last_ns:
            self._units = min(self._capacity, self._units + (now - self._last_ns) * self.requests_per_minute)
        self._last_ns = max(self._last_ns, now)

    def _needed(self, critical: bool) -> int:
        return UNIT * (1 if critical else 1 + self.reserve)

    def available(self, critical: bool) -> bool:
        """Whether a request of this priority could take a token now (does not take it)."""
        self._refill()
        return self._units >= self._needed(critical)

    def try_acquire(self, critical: bool = False) -> bool:
        """Take one token if this priority may; False leaves the bucket untouched."""
        if not self.available(critical):
            return False
        self._units -= UNIT
        return True

    def tokens(self) -> float:
        """Tokens on hand now (fractional), for metrics."""
        self._refill()
        return self._units / UNIT

    def seconds_until_available(self, critical: bool) -> float:
        """How long until a request of this priority could take a token (0 when it can now)."""
        self._refill()
        missing = self._needed(critical) - self._units
        if missing <= 0:
            return 0.0
        return -(-missing // self.requests_per_minute) / NS_PER_SECOND


def _validate(requests_per_minute: int, burst: int, reserve: int) -> None:
    if requests_per_minute <= 0:
        raise ValueError(f"requests_per_minute: {requests_per_minute} must be positive")
    if burst <= 0:
        raise ValueError(f"burst: {burst} must be positive")
    if not 0 <= reserve < burst:
        raise ValueError(f"reserve: {reserve} must be in [0, burst={burst})")
