"""Redis connections and the few atomic multi-key operations the actors rely on.

Every client retries connection errors with exponential backoff, so an actor rides out a Redis
restart instead of crashing; commands are not blindly retried beyond that window, and order
submission never depends on a retry here (the router reconciles instead).
"""

from __future__ import annotations

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from quanticity.clock import Clock

# Enqueue a signal only if its de-duplication marker is new: SET NX + XADD in one atomic step,
# so two strategy workers racing on the same contract enqueue it exactly once, and a crash can
# never leave a marker without its signal.
_CHECK_AND_ENQUEUE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  return redis.call('XADD', KEYS[2], '*', 'signal', ARGV[3])
end
return false
"""


def connect(url: str, timeout_s: float = 5.0) -> redis.Redis:
    """A client with text responses, bounded timeouts and reconnect-with-backoff."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=8),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        health_check_interval=30,
    )


class SignalQueue:
    """The atomic check-and-enqueue of strategy signals onto ``signals:stream``."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._script = client.register_script(_CHECK_AND_ENQUEUE)

    def enqueue_once(self, dedupe_key: str, stream: str, payload: str, ttl_s: int) -> str | None:
        """Append ``payload`` to ``stream`` unless ``dedupe_key`` exists; returns the entry id or None."""
        result = self._script(keys=[dedupe_key, stream], args=["1", max(1, int(ttl_s)), payload])
        return str(result) if result else None


class StoreClock(Clock):
    """The simulated session's "now" as the feed last published it in Redis.

    Every actor of a simulated run reads the same clock, whether the feed is paced or running
    flat out, and a restarted actor picks it up where it was. Falls back to ``fallback_ns`` before
    the first step.
    """

    def __init__(self, client: redis.Redis, key: str, fallback_ns: int) -> None:
        self._client = client
        self._key = key
        self._fallback_ns = fallback_ns

    def now_ns(self) -> int:
        raw = self._client.get(self._key)
        return int(raw) if raw else self._fallback_ns
