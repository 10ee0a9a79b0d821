"""Per-endpoint circuit breaker: stop hammering an endpoint that keeps failing, probe it later.

Closed → (``failures_to_open`` consecutive failures) → open: no requests → (``cooldown_s`` on the
injected clock) → half-open: exactly one trial request → success closes, failure re-opens for
another cool-down. Per endpoint, not per source (the seeds' rule), so one broken endpoint never
takes the healthy ones down with it. Rate-limit answers (429, AV throttle notes) are not
failures of an endpoint and are not recorded here.
"""

from __future__ import annotations

import enum

from quanticity.clock import NS_PER_SECOND, Clock


class BreakerState(enum.StrEnum):
    """Where the breaker is; the metric value."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Consecutive-failure breaker with a clock-driven cool-down and a single half-open trial."""

    def __init__(self, failures_to_open: int, cooldown_s: float, clock: Clock) -> None:
        self._clock = clock
        self.configure(failures_to_open, cooldown_s)
        self._failures = 0
        self._opened_at_ns: int | None = None
        self._trial_in_flight = False
        self.opened_count = 0

    def configure(self, failures_to_open: int, cooldown_s: float) -> None:
        """Set thresholds (hot reload keeps the current state)."""
        if failures_to_open < 1:
            raise ValueError(f"failures_to_open: {failures_to_open} must be ≥ 1")
        if cooldown_s <= 0:
            raise ValueError(f"cooldown_s: {cooldown_s} must be positive")
        self.failures_to_open = int(failures_to_open)
        self.cooldown_ns = int(cooldown_s * NS_PER_SECOND)

    @property
    def state(self) -> BreakerState:
        """Current state; an open breaker reads half-open once its cool-down has passed."""
        if self._opened_at_ns is None:
            return BreakerState.CLOSED
        if self._trial_in_flight or self._clock.now_ns() - self._opened_at_ns >= self.cooldown_ns:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    @property
    def consecutive_failures(self) -> int:
        """Failures since the last success."""
        return self._failures

    def allow(self) -> bool:
        """May a request go now? In half-open this grants the one trial (call only when sending)."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._trial_in_flight:
            self._trial_in_flight = True
            return True
        return False

    def record_success(self) -> None:
        """A good answer: close and forget past failures."""
        self._failures = 0
        self._opened_at_ns = None
        self._trial_in_flight = False

    def record_failure(self) -> None:
        """A failed request: count it; open at the threshold, or re-open after a failed trial."""
        self._failures += 1
        if self._trial_in_flight or (self._opened_at_ns is None and self._failures >= self.failures_to_open):
            self._opened_at_ns = self._clock.now_ns()
            self.opened_count += 1
        self._trial_in_flight = False

    def release_trial(self) -> None:
        """The half-open trial ended without a verdict (e.g. the source was rate limited): allow another."""
        self._trial_in_flight = False
