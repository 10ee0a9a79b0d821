"""Things waiting for a person: approvals (high-risk trades, reports) and confirmations (/flatten, /halt).

Both live in Redis so an admin actor restart loses neither, and both are decided atomically:
two admins pressing Approve at once produce exactly one decision. Expiry is judged on the
injected clock (simulated sessions run faster than wall time); Redis TTLs only clean up.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass
from typing import Any, Literal

import redis

from quanticity import keys
from quanticity.clock import NS_PER_SECOND, Clock

Status = Literal["ok", "unknown", "expired", "foreign"]

# Take the approval out of the pending hash and record the decision in one step.
_DECIDE = """
local item = redis.call('HGET', KEYS[1], ARGV[1])
if not item then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('XADD', KEYS[2], '*', 'id', ARGV[1], 'decision', ARGV[2], 'by', ARGV[3], 'ts', ARGV[4], 'item', item)
return item
"""


@dataclass(frozen=True)
class Approval:
    """A pending item: ``kind`` (``trade``/``report``), a one-line summary, its payload, its lifetime."""

    approval_id: str
    kind: str
    summary: str
    payload: dict[str, Any]
    created_ns: int
    expires_ns: int


class ApprovalBook:
    """Pending approvals in :data:`keys.ADMIN_APPROVALS`; decisions in :data:`keys.ADMIN_DECISIONS`."""

    def __init__(self, client: redis.Redis, clock: Clock, ttl_s: float) -> None:
        self._client = client
        self._clock = clock
        self._ttl_ns = int(ttl_s * NS_PER_SECOND)
        self._decide = client.register_script(_DECIDE)

    def submit(
        self,
        kind: str,
        summary: str,
        payload: dict[str, Any] | None = None,
        approval_id: str | None = None,
        expires_ns: int | None = None,
    ) -> Approval:
        """Add an item awaiting /approve or /reject.

        A requester that names the item itself (``approval_id``: the risk gate uses the parked
        order's reference) may submit it again after a crash: the pending item is kept, not doubled.
        ``expires_ns`` overrides the book's lifetime (the gate's approval deadline).
        """
        if approval_id is not None and not (approval_id.isalnum() and len(approval_id) <= 32):
            raise ValueError(f"approval_id: {approval_id!r} must be alphanumeric, at most 32 characters")
        now = self._clock.now_ns()
        expires = now + self._ttl_ns if expires_ns is None else expires_ns
        item = Approval(approval_id or secrets.token_hex(4), kind, summary, payload or {}, now, expires)
        if not self._client.hsetnx(keys.ADMIN_APPROVALS, item.approval_id, json.dumps(asdict(item))):
            existing = self._client.hget(keys.ADMIN_APPROVALS, item.approval_id)
            if existing is not None:  # (None: decided in between — the item stands as it was asked)
                return Approval(**json.loads(existing))
        return item

    def pending(self) -> list[Approval]:
        """Unexpired pending items, oldest first; expired ones are decided as ``expired``."""
        now = self._clock.now_ns()
        items = []
        for approval_id, raw in self._client.hgetall(keys.ADMIN_APPROVALS).items():
            item = Approval(**json.loads(raw))
            if item.expires_ns <= now:
                self._decide(keys=[keys.ADMIN_APPROVALS, keys.ADMIN_DECISIONS], args=[approval_id, "expired", 0, now])
                continue
            items.append(item)
        return sorted(items, key=lambda a: a.created_ns)

    def decide(self, approval_id: str, approved: bool, user_id: int) -> tuple[Status, Approval | None]:
        """Approve or reject once; ``unknown`` when already decided or never existed, ``expired`` when late."""
        now = self._clock.now_ns()
        raw = self._client.hget(keys.ADMIN_APPROVALS, approval_id)
        if raw is None:
            return "unknown", None
        item = Approval(**json.loads(raw))
        decision = "expired" if item.expires_ns <= now else ("approved" if approved else "rejected")
        taken = self._decide(
            keys=[keys.ADMIN_APPROVALS, keys.ADMIN_DECISIONS], args=[approval_id, decision, user_id, now]
        )
        if not taken:
            return "unknown", None  # someone else decided it in between
        return ("expired" if decision == "expired" else "ok"), item

    def decisions(self) -> list[dict[str, str]]:
        """Every recorded decision, oldest first."""
        return [fields for _, fields in self._client.xrange(keys.ADMIN_DECISIONS)]


@dataclass(frozen=True)
class Confirmation:
    """A question asked of one admin in one chat: confirm ``action`` before ``expires_ns``.

    ``detail`` carries what the action needs when confirmed (the /halt reason), so the button's
    callback data stays an opaque token and a forged press cannot change what is done.
    """

    token: str
    action: str
    user_id: int
    chat_id: int
    expires_ns: int
    detail: str = ""


class ConfirmationBook:
    """Single-use confirmation tokens bound to the admin who asked and the chat they asked in."""

    def __init__(self, client: redis.Redis, clock: Clock, ttl_s: float) -> None:
        self._client = client
        self._clock = clock
        self._ttl_s = ttl_s

    def create(self, action: str, user_id: int, chat_id: int, detail: str = "") -> Confirmation:
        """A new token for ``action`` (``detail``: what the confirmed action needs, e.g. a reason)."""
        token = secrets.token_urlsafe(9)
        expires = self._clock.now_ns() + int(self._ttl_s * NS_PER_SECOND)
        item = Confirmation(token, action, user_id, chat_id, expires, detail)
        # the Redis TTL is cleanup only (generous: simulated time may run slower than wall time)
        self._client.set(keys.admin_confirmation(token), json.dumps(asdict(item)), ex=int(self._ttl_s * 10) + 60)
        return item

    def consume(self, token: str, user_id: int, chat_id: int) -> tuple[Status, Confirmation | None]:
        """Use a token once. A foreign user or chat leaves it untouched; an expired one is discarded."""
        key = keys.admin_confirmation(token)
        raw = self._client.get(key)
        if raw is None:
            return "unknown", None
        item = Confirmation(**json.loads(raw))
        if item.user_id != user_id or item.chat_id != chat_id:
            return "foreign", item
        if item.expires_ns <= self._clock.now_ns():
            self._client.delete(key)
            return "expired", item
        if not self._client.delete(key):
            return "unknown", None  # consumed by a concurrent press
        return "ok", item

    def cancel(self, token: str, user_id: int, chat_id: int) -> Status:
        """Withdraw a token (the Cancel button); only its owner may."""
        status, _ = self.consume(token, user_id, chat_id)
        return status
