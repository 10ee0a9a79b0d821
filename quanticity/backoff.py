"""Exponential backoff with seeded jitter — the one reconnect/retry delay of the platform.

Jitter spreads the reconnects of many clients after an outage (a TWS restart, a UW socket drop)
so they do not stampede the server at the same instant; seeding it makes the delays reproducible
in tests. The cap bounds the delay actually waited, jitter included: a cap of 60 s means no wait is
ever longer than 60 s (SPEC: reconnect within 60 s), so jitter only ever *shortens* a capped
delay. Used by the IBKR connection (:mod:`quanticity.venues.ibkr.backoff`) and the UW
WebSocket client (:mod:`quanticity.feeds.uw_ws`).
"""

from __future__ import annotations

import random

__all__ = ["ExponentialBackoff"]


class ExponentialBackoff:
    """Attempt n waits ``min(cap_s, base_s · multiplierⁿ · (1 + jitter · u))``, u uniform in [-1, 1].

    The cap is applied after the jitter, so ``cap_s`` is a hard bound on every delay.
    """

    def __init__(
        self, base_s: float = 0.5, cap_s: float = 30.0, jitter: float = 0.2, seed: int = 0, multiplier: float = 2.0
    ) -> None:
        if base_s <= 0 or cap_s < base_s:
            raise ValueError(f"base_s: {base_s}, cap_s: {cap_s} must satisfy 0 < base_s ≤ cap_s")
        if not 0 <= jitter <= 1:
            raise ValueError(f"jitter: {jitter} must be in [0, 1]")
        if multiplier < 1:
            raise ValueError(f"multiplier: {multiplier} must be ≥ 1")
        self.base_s = base_s
        self.cap_s = cap_s
        self.jitter = jitter
        self.multiplier = multiplier
        self._rng = random.Random(seed)
        self.attempt = 0
        # past this attempt even the lowest jitter draw is above the cap: the exponent stops there,
        # so a long outage never overflows the float
        floor = max(1.0 - jitter, 1e-9)
        self._saturated = 0
        while multiplier > 1 and base_s * multiplier**self._saturated * floor < cap_s:
            self._saturated += 1

    def next_delay(self) -> float:
        """The wait before the next attempt; advances the attempt counter."""
        raw = self.base_s * self.multiplier ** min(self.attempt, self._saturated)
        self.attempt += 1
        if self.jitter:
            raw *= 1.0 + self._rng.uniform(-self.jitter, self.jitter)
        return min(max(raw, 0.0), self.cap_s)

    def reset(self) -> None:
        """A success: the next failure starts from ``base_s`` again."""
        self.attempt = 0
