"""Rate limiting and retry timing, both on the injected (simulated) clock.

A token bucket per platform keeps the publisher under the platform's limit (Discord 5/s,
Telegram 30/s) *before* the platform has to say 429; when it says so anyway, the retry waits at
least its ``retry_after``. Time is passed in, never read from the wall, so tests and accelerated
sessions behave exactly like live ones.
"""

from __future__ import annotations

from quanticity.clock import NS_PER_SECOND


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; starts full."""

    def __init__(self, rate: float, burst: int) -> None:
        if rate <= 0:
            raise ValueError(f"rate: {rate} must be positive")
        if burst < 1:
            raise ValueError(f"burst: {burst} must be ≥ 1")
        self.rate = float(rate)
        self.burst = int(burst)
        self._tokens = float(burst)
        self._last_ns: int | None = None

    def _refill(self, now_ns: int) -> None:
        if self._last_ns is not None and now_ns > self._last_ns:
            self._tokens = min(self.burst, self._tokens + (now_ns - self._last_ns) / NS_PER_SECOND * self.rate)
        if self._last_ns is None or now_ns > self._last_ns:
            self._last_ns = now_ns

    def tokens(self, now_ns: int) -> float:
        """Tokens available at ``now_ns``."""
        self._refill(now_ns)
        return self._tokens

    def try_take(self, now_ns: int) -> bool:
        """Take one token if one is available at ``now_ns``."""
        self._refill(now_ns)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def next_token_ns(self, now_ns: int) -> int:
        """Earliest time at which a token will be available."""
        self._refill(now_ns)
        missing = max(0.0, 1.0 - self._tokens)
        return now_ns + int(missing / self.rate * NS_PER_SECOND + 0.5)


def backoff_s(attempt: int, base_s: float, cap_s: float, retry_after_s: float | None = None) -> float:
    """Wait before attempt ``attempt + 1``: ``base · 2^(attempt-1)`` capped, never below ``retry_after``.

    Deterministic (no jitter): one publisher per channel, so there is no herd to spread out, and
    tests can assert the exact schedule.
    """
    if attempt < 1:
        raise ValueError(f"attempt: {attempt} must be ≥ 1")
    delay = min(cap_s, base_s * 2 ** (attempt - 1))
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return delay
