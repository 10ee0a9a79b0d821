"""Exponential reconnect backoff with seeded jitter.

Jitter spreads the reconnects of many clients after a TWS restart so they do not stampede the
gateway at the same instant; seeding it makes the delays reproducible in tests.
"""

from __future__ import annotations

import random

from quanticity.venues.ibkr.config import BackoffSpec

__all__ = ["Backoff"]


class Backoff:
    """Delays ``initial × multiplier^n`` capped at ``max``, each scaled by ``1 ± jitter``."""

    def __init__(self, spec: BackoffSpec) -> None:
        self._spec = spec
        self._rng = random.Random(spec.seed)
        self._attempt = 0

    @property
    def attempt(self) -> int:
        """Failed attempts since the last :meth:`reset`."""
        return self._attempt

    def next_delay(self) -> float:
        """The delay before the next attempt (and count the attempt)."""
        spec = self._spec
        base = min(spec.initial_s * spec.multiplier**self._attempt, spec.max_s)
        self._attempt += 1
        if spec.jitter:
            base *= 1.0 + self._rng.uniform(-spec.jitter, spec.jitter)
        return max(base, 0.0)

    def reset(self) -> None:
        """A success: the next failure starts from ``initial`` again."""
        self._attempt = 0
