"""Rate limiting and retry timing, both on the injected (simulated) clock.

A platform's limit (Discord 5/s, Telegram 30/s) belongs to the bot, not to one of our channels:
every publisher sending with the same credential — each channel is its own Ray actor, in its own
process — spends the same budget. So the token bucket lives in Redis, one hash per
(platform, credential digest), and every take is one Lua step (refill, then take or refuse): two
publishers together stay under the limit *before* the platform has to say 429. When it says so
anyway, :meth:`SharedTokenBucket.block` stops every publisher of that bot until ``retry_after``.

This is the fetcher's integer-bucket idea (:mod:`quanticity.feeds.bucket`), moved into Redis: that
bucket serves one actor's endpoints in-process and cannot be shared across processes, and floats
would let two processes round their way to an extra token. Here one token is :data:`UNIT` units and
each microsecond refills ``per_second · 10⁶`` units, so rates with up to three decimals are exact.
Lua numbers are doubles: a nanosecond timestamp (~1.8·10¹⁸) is not exact in one, a microsecond one
(~1.8·10¹⁵ < 2⁵³) is, so the script counts in microseconds (a 429 pause is rounded up to one).
Time is passed in, never read from the wall, so tests and accelerated sessions behave like live ones.
"""

from __future__ import annotations

import hashlib

import redis

from quanticity.clock import NS_PER_SECOND

UNIT = 1000 * NS_PER_SECOND
"""Units per token: refill per µs is then ``per_second · 10⁶`` units, an integer for rates like 5, 30 or 0.5."""
NS_PER_US = 1000
MAX_BURST = 9000
"""Largest burst whose unit count stays an exact integer in Lua's doubles (< 2⁵³)."""
IDLE_TTL_S = 86_400
"""A bucket nobody used for a day is dropped (it would be full again anyway)."""

# KEYS: bucket ; ARGV: now_us, refill units per µs, capacity units, op ("take" | "peek" | "block"), block_until_us,
#                     ttl_s, units per token  -> {taken (1/0), µs until a token (or until the block ends)}
_BUCKET = """
local now = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
local unit = tonumber(ARGV[7])
local units = tonumber(redis.call('HGET', KEYS[1], 'units') or cap)
local last = tonumber(redis.call('HGET', KEYS[1], 'last_us') or now)
local blocked = tonumber(redis.call('HGET', KEYS[1], 'blocked_until_us') or 0)
if units > cap then units = cap end
if now > last then
  local elapsed = math.min(now - last, math.ceil(cap / rate) + 1)
  units = math.min(cap, units + elapsed * rate)
  last = now
end
if ARGV[4] == 'block' then blocked = math.max(blocked, tonumber(ARGV[5])) end
local taken, wait = 0, 0
if now < blocked then
  wait = blocked - now
elseif units >= unit then
  if ARGV[4] == 'take' then units = units - unit; taken = 1 end
else
  wait = math.ceil((unit - units) / rate)
end
redis.call('HSET', KEYS[1], 'units', string.format('%.0f', units), 'last_us', string.format('%.0f', last),
           'blocked_until_us', string.format('%.0f', blocked))
redis.call('EXPIRE', KEYS[1], ARGV[6])
return {taken, string.format('%.0f', wait)}
"""


def credential_digest(*secrets: str) -> str:
    """Short digest naming a credential in a Redis key: one bot, one bucket; the secret never lands in Redis."""
    return hashlib.sha256("\0".join(secrets).encode()).hexdigest()[:16]


class SharedTokenBucket:
    """``per_second`` refill, ``burst`` capacity (starts full), kept in Redis under ``key`` for every process."""

    def __init__(self, client: redis.Redis, key: str, per_second: float, burst: int) -> None:
        if per_second <= 0:
            raise ValueError(f"per_second: {per_second} must be positive")
        refill = per_second * 1000  # units per ns (times 1000 per µs below)
        if abs(refill - round(refill)) > 1e-9:
            raise ValueError(f"per_second: {per_second} must have at most three decimals")
        if not 1 <= burst <= MAX_BURST:
            raise ValueError(f"burst: {burst} must be in [1, {MAX_BURST}]")
        self.key = key
        self.per_second = float(per_second)
        self.burst = int(burst)
        self._refill = int(round(refill)) * NS_PER_US
        self._capacity = self.burst * UNIT
        self._script = client.register_script(_BUCKET)

    def _call(self, now_ns: int, op: str, until_ns: int = 0) -> tuple[bool, int]:
        """One script call; returns ``(taken, ns to wait)``. Times go in as µs: now rounded down, a block's end up."""
        now_us = int(now_ns) // NS_PER_US
        until_us = -(-int(until_ns) // NS_PER_US)
        taken, wait_us = self._script(
            keys=[self.key], args=[now_us, self._refill, self._capacity, op, until_us, IDLE_TTL_S, UNIT]
        )
        return bool(int(taken)), int(wait_us) * NS_PER_US

    def try_take(self, now_ns: int) -> bool:
        """Take one token if one is available at ``now_ns`` (and no 429 pause is running)."""
        return self._call(now_ns, "take")[0]

    def next_token_ns(self, now_ns: int) -> int:
        """Earliest time (to the µs) at which a token will be available (does not take it)."""
        return int(now_ns) // NS_PER_US * NS_PER_US + self._call(now_ns, "peek")[1]

    def block(self, now_ns: int, until_ns: int) -> None:
        """The platform said 429: no publisher of this credential takes a token before ``until_ns``."""
        self._call(now_ns, "block", until_ns)


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
