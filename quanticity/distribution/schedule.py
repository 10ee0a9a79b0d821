"""The persistent delivery schedule of one channel, in Redis.

One hash per (message, tier) delivery holds the rendered payload, its state, attempts and — once
sent — the platform's ids (so a follow-up can reply in the original's thread). Pending
deliveries sit in a sorted set scored by the simulated time they fall due. Every state change is
one Lua script, so it is atomic with its audit record:

``pending --claim--> sending --sent--> sent`` (or ``--retry--> pending``, ``--dead--> dead``).

A delivery is *claimed* (removed from the due set, added to the in-flight set, attempt counted)
before the platform is called and *marked* after it answered. A publisher that dies in between
leaves the delivery in the in-flight set: its outcome is unknown, and the next publisher on the
same Redis resolves it (see :mod:`quanticity.distribution.publisher`) instead of blindly
re-sending (a resend of an outcome that could not be checked carries ``possible_duplicate``, set
in the same step as the retry). Enqueueing is idempotent (an existing delivery is never overwritten), so replaying a
fill after a crash schedules nothing twice.

The scripts touch only the keys they are given; one publisher owns one channel's keys.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from quanticity import keys

_XADD = """
local function xadd(stream, payload)
  local t = cjson.decode(payload)
  local args = {}
  for k, v in pairs(t) do
    table.insert(args, k)
    table.insert(args, tostring(v))
  end
  redis.call('XADD', stream, 'MAXLEN', '~', '100000', '*', unpack(args))
end
"""

# KEYS: hash, due ; ARGV: id, due_ns, field, value, ...
_ENQUEUE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
"""

# KEYS: threads ; ARGV: contract_key, message_key -- forget the thread only if it is still that message's
_CLOSE_THREAD = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
"""

# KEYS: hash, due, inflight ; ARGV: id, now_ns  -> attempt number, or 0 when not claimable
_CLAIM = """
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('HGET', KEYS[1], 'state') ~= 'pending' then return 0 end
redis.call('SADD', KEYS[3], ARGV[1])
local attempt = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'state', 'sending', 'claimed_ns', ARGV[2])
return attempt
"""

# KEYS: hash, inflight, audit ; ARGV: id, message_id, chat_id, thread_id, sent_ns, audit_json
_SENT = (
    _XADD
    + """
if redis.call('HGET', KEYS[1], 'state') ~= 'sending' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'sent', 'message_id', ARGV[2], 'chat_id', ARGV[3], 'thread_id', ARGV[4],
           'sent_ns', ARGV[5])
redis.call('SREM', KEYS[2], ARGV[1])
xadd(KEYS[3], ARGV[6])
return 1
"""
)

# KEYS: hash, inflight, due, audit ; ARGV: id, due_ns, error, audit_json, [field, value, ...] to set as well
_RETRY = (
    _XADD
    + """
if redis.call('HGET', KEYS[1], 'state') ~= 'sending' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'pending', 'last_error', ARGV[3], 'due_ns', ARGV[2])
if #ARGV > 4 then redis.call('HSET', KEYS[1], unpack(ARGV, 5)) end
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
xadd(KEYS[4], ARGV[4])
return 1
"""
)

# KEYS: hash, inflight, dead_letter, audit, alerts ; ARGV: id, error, dead_json, audit_json, alert_json
_DEAD = (
    _XADD
    + """
if redis.call('HGET', KEYS[1], 'state') ~= 'sending' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'dead', 'last_error', ARGV[2])
redis.call('SREM', KEYS[2], ARGV[1])
xadd(KEYS[3], ARGV[3])
xadd(KEYS[4], ARGV[4])
xadd(KEYS[5], ARGV[5])
return 1
"""
)


@dataclass(frozen=True)
class Delivery:
    """One (message, tier) delivery as stored."""

    id: str
    channel: str
    tier: str
    key: str
    kind: str
    thread_key: str | None
    due_ns: int
    event_ns: int
    ref: str
    text: str
    html: str
    embed: dict[str, Any]
    state: str
    attempts: int
    message_id: str | None = None
    chat_id: str | None = None
    thread_id: str | None = None
    sent_ns: int | None = None
    last_error: str = ""
    possible_duplicate: bool = False
    """Re-sent after an attempt whose outcome could not be checked: an earlier copy may have landed."""

    @classmethod
    def from_hash(cls, channel: str, fields: dict[str, str]) -> Delivery:
        """Parse a stored hash (every field is a string in Redis)."""
        return cls(
            id=fields["id"],
            channel=channel,
            tier=fields["tier"],
            key=fields["key"],
            kind=fields["kind"],
            thread_key=fields.get("thread_key") or None,
            due_ns=int(fields["due_ns"]),
            event_ns=int(fields["event_ns"]),
            ref=fields["ref"],
            text=fields["text"],
            html=fields["html"],
            embed=json.loads(fields["embed"]),
            state=fields["state"],
            attempts=int(fields.get("attempts", 0)),
            message_id=fields.get("message_id") or None,
            chat_id=fields.get("chat_id") or None,
            thread_id=fields.get("thread_id") or None,
            sent_ns=int(fields["sent_ns"]) if fields.get("sent_ns") else None,
            last_error=fields.get("last_error", ""),
            possible_duplicate=fields.get("possible_duplicate") == "1",
        )


def _flat(record: dict[str, Any]) -> str:
    """JSON of ``record`` with every value a string: Lua's cjson would turn ns integers into lossy floats."""
    return json.dumps({k: "" if v is None else str(v) for k, v in record.items()})


def delivery_id(key: str, tier: str) -> str:
    """Id of the delivery of message ``key`` to ``tier``."""
    return f"{key}:{tier}"


class Schedule:
    """Persistent schedule of one channel (see the module docstring)."""

    def __init__(self, client: redis.Redis, channel: str) -> None:
        self.client = client
        self.channel = channel
        self._due = keys.publisher_due(channel)
        self._inflight = keys.publisher_inflight(channel)
        self._threads = keys.publisher_threads(channel)
        self._enqueue = client.register_script(_ENQUEUE)
        self._claim = client.register_script(_CLAIM)
        self._sent = client.register_script(_SENT)
        self._retry = client.register_script(_RETRY)
        self._dead = client.register_script(_DEAD)
        self._close = client.register_script(_CLOSE_THREAD)

    def _hash(self, delivery: str) -> str:
        return keys.publisher_delivery(self.channel, delivery)

    # --- scheduling -----------------------------------------------------------------------------
    def enqueue(
        self,
        records: list[dict[str, Any]],
        open_thread: tuple[str, str] | None = None,
        close_thread: tuple[str, str] | None = None,
    ) -> list[str]:
        """Schedule ``records`` (each with ``id`` and ``due_ns``) and update the thread map, atomically.

        ``open_thread``/``close_thread`` are ``(contract_key, message_key)``; a close only removes
        the mapping if it still points at that message. Returns the ids of the deliveries that were new.
        """
        pipe = self.client.pipeline(transaction=True)
        for record in records:
            fields: list[Any] = []
            for name, value in record.items():
                fields += [name, json.dumps(value) if isinstance(value, dict) else ("" if value is None else value)]
            self._enqueue(
                keys=[self._hash(record["id"]), self._due],
                args=[record["id"], record["due_ns"], *fields, "state", "pending", "attempts", 0],
                client=pipe,
            )
        if open_thread is not None:
            pipe.hset(self._threads, open_thread[0], open_thread[1])
        if close_thread is not None:
            self._close(keys=[self._threads], args=[close_thread[0], close_thread[1]], client=pipe)
        results = pipe.execute()
        return [record["id"] for record, new in zip(records, results, strict=False) if int(new)]

    def thread_of(self, contract_key: str) -> str | None:
        """Message key of the open entry alert of ``contract_key``, if any."""
        return self.client.hget(self._threads, contract_key)

    def scheduled(self, message_key: str, tiers: Sequence[str]) -> bool:
        """True when the message ``message_key`` was scheduled for any of ``tiers`` on this channel."""
        return any(self.client.exists(self._hash(delivery_id(message_key, tier))) for tier in tiers)

    def due_ids(self, now_ns: int, limit: int) -> list[str]:
        """Pending delivery ids due at ``now_ns``, earliest first."""
        return self.client.zrangebyscore(self._due, "-inf", now_ns, start=0, num=limit)

    def next_due_ns(self) -> int | None:
        """When the earliest pending delivery falls due."""
        first = self.client.zrange(self._due, 0, 0, withscores=True)
        return int(first[0][1]) if first else None

    def defer(self, delivery: str, due_ns: int) -> None:
        """Move a pending delivery later without counting an attempt (its parent is not sent yet)."""
        self.client.zadd(self._due, {delivery: due_ns}, xx=True)

    def load(self, delivery: str) -> Delivery | None:
        """The stored delivery, or None."""
        fields = self.client.hgetall(self._hash(delivery))
        return Delivery.from_hash(self.channel, fields) if fields else None

    def inflight(self) -> list[str]:
        """Deliveries claimed whose outcome was never recorded (a publisher died mid-send)."""
        return sorted(self.client.smembers(self._inflight))

    def pending_count(self) -> int:
        """Deliveries waiting in the due set."""
        return int(self.client.zcard(self._due))

    # --- transitions ----------------------------------------------------------------------------
    def claim(self, delivery: str, now_ns: int) -> int:
        """Claim a due delivery for sending; returns its attempt number, 0 if it is not pending."""
        return int(self._claim(keys=[self._hash(delivery), self._due, self._inflight], args=[delivery, now_ns]))

    def mark_sent(
        self, delivery: str, message_id: str, chat_id: str, thread_id: str | None, now_ns: int, audit: dict[str, Any]
    ) -> bool:
        """Record the platform ids of a sent delivery and its audit record in one step."""
        return bool(
            self._sent(
                keys=[self._hash(delivery), self._inflight, keys.DISTRIBUTION_AUDIT],
                args=[delivery, message_id, chat_id, thread_id or "", now_ns, _flat(audit)],
            )
        )

    def retry(
        self, delivery: str, due_ns: int, error: str, audit: dict[str, Any], mark: dict[str, str] | None = None
    ) -> bool:
        """Put a claimed delivery back in the due set at ``due_ns`` and audit the failed attempt.

        ``mark`` sets extra fields in the same step (``possible_duplicate``: the resend must say so).
        """
        extra = [item for pair in (mark or {}).items() for item in pair]
        return bool(
            self._retry(
                keys=[self._hash(delivery), self._inflight, self._due, keys.DISTRIBUTION_AUDIT],
                args=[delivery, due_ns, error, _flat(audit), *extra],
            )
        )

    def dead(
        self, delivery: str, error: str, dead: dict[str, Any], audit: dict[str, Any], alert: dict[str, Any]
    ) -> bool:
        """Give a claimed delivery up: dead-letter, audit and operator alert records, in one step.

        The alert goes to :data:`quanticity.keys.ALERTS`, which the admin bot pushes to the
        operator: a subscriber message that will not go out on its own must never go unnoticed.
        """
        return bool(
            self._dead(
                keys=[
                    self._hash(delivery),
                    self._inflight,
                    keys.DISTRIBUTION_DEAD_LETTER,
                    keys.DISTRIBUTION_AUDIT,
                    keys.ALERTS,
                ],
                args=[delivery, error, _flat(dead), _flat(audit), _flat(alert)],
            )
        )
