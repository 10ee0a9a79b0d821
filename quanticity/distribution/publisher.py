"""The publisher of one channel: schedules tiered alerts and delivers each exactly once.

The Ray actor (``actors/publisher.py``) drives it: :meth:`Publisher.on_fill` for every fill the
broker confirmed, :meth:`Publisher.on_followup` for position events that are not fills, and
:meth:`Publisher.run_due` on a tick. Nothing is sent from ``on_fill``: it only writes the
schedule (premium at the fill's event time, basic +60 s, free +5 min by default), so a crash
between scheduling and sending loses nothing.

Exactly once per (message, channel, tier): a delivery is claimed durably ("sending") before the
platform is called, and marked sent with its platform ids and its audit record in one Lua step
right after the platform answered. A publisher stopped *between* sends therefore leaves nothing
ambiguous: the next one sends exactly what was not sent. The only ambiguous window is the HTTP
call itself (a crash or a timeout after the request left). The next publisher on the same Redis
finds that delivery in flight and asks the sender whether it landed (Discord: the bot searches
recent history for the delivery's ref; local: the file) — it is re-sent only if it did not.

Telegram cannot be asked: the Bot API gives a bot no way to read a chat, and every call that
could reveal a message (``forwardMessage``/``copyMessage``, ``editMessage*``) needs the message
id — the very answer that was lost; guessing ids (they are sequential per channel) can at best
show that *some* message of the bot exists there, not which one, unless the content is forwarded
to a second chat. So for an unverifiable outcome the channel's ``unknown_outcome`` decides:

* ``resend`` (default, at-least-once): subscribers never miss an alert — a late entry alert is
  worth less than none, so one must not be withheld; the resend is *labelled* (the delivery's
  ``possible_duplicate`` flag: the sender prefixes a "re-sent, same alert as ref …" note) so a
  subscriber who already has it does not take it for a second trade, and both the unknown
  attempt and the labelled resend are audited;
* ``dead_letter`` (at-most-once): never a second copy; the delivery is dead-lettered and the
  operator alerted (:data:`quanticity.keys.ALERTS`, pushed by the admin bot) to check the chat.

Pacing: one token bucket per platform credential in Redis (:mod:`quanticity.distribution.pacing`),
shared by every channel sending with that bot, on the injected clock; a 429 pauses the channel —
and, through the shared bucket, the bot's other channels — until its ``retry_after``; failures
back off exponentially; after ``max_attempts`` failed sends the delivery is dead-lettered (with an
operator alert). Every attempt writes an audit record.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import redis

from quanticity import keys
from quanticity.clock import NS_PER_SECOND, Clock
from quanticity.config.models import ChannelSpec, DistributionFile, RateLimitSpec
from quanticity.distribution.alerts import Alert, AlertKind, FillContext, fill_alert, followup_alert
from quanticity.distribution.pacing import SharedTokenBucket, backoff_s
from quanticity.distribution.schedule import Delivery, Schedule, delivery_id
from quanticity.distribution.senders.base import (
    Check,
    PermanentError,
    Posted,
    Sender,
    TransientError,
    UnknownOutcome,
)
from quanticity.distribution.templates import render
from quanticity.messages import Fill, PositionEvent
from quanticity.store.alerts import alert_fields

DEFAULT_RATE_LIMITS = DistributionFile().rate_limits
PARENT_WAIT_S = 1.0
"""A follow-up whose original is not sent yet is looked at again this much later (not an attempt)."""


class DrillPause:
    """A fault drill: hold a delivery pass *between* two sends so a test can kill the process there.

    Armed with ``after_sends``, the pass that has sent that many deliveries since arming stops
    just before it claims its next due delivery — nothing in flight, at least one delivery still
    owed — sets :attr:`paused` and waits for :meth:`release`. Both are thread-safe, so a Ray actor
    method (another thread) can arm it, wait for ``paused`` and let the test kill the process:
    "killed mid-batch" becomes a deterministic state instead of a race with the HTTP call.
    """

    def __init__(self) -> None:
        self._remaining: int | None = None
        self.paused = threading.Event()
        self._released = threading.Event()

    def arm(self, after_sends: int) -> None:
        """Pause before the next claim once ``after_sends`` more deliveries were sent."""
        if after_sends < 0:
            raise ValueError(f"after_sends: {after_sends} must be ≥ 0")
        self.paused.clear()
        self._released.clear()
        self._remaining = int(after_sends)

    def release(self) -> None:
        """Disarm and let a held pass go on."""
        self._remaining = None
        self._released.set()

    def sent(self) -> None:
        """Count one send (called by the publisher after each recorded send)."""
        if self._remaining:
            self._remaining -= 1

    async def checkpoint(self) -> None:
        """Called before each claim: holds the pass here once armed and the sends are counted down."""
        if self._remaining != 0:
            return
        self.paused.set()
        await asyncio.to_thread(self._released.wait)


@dataclass
class RunReport:
    """What one :meth:`Publisher.run_due` pass did."""

    sent: int = 0
    retried: int = 0
    dead: int = 0
    recovered: int = 0
    deferred: int = 0
    throttled: bool = False
    outcomes: list[str] = field(default_factory=list)


class Publisher:
    """Schedules and delivers the alerts of one channel (see the module docstring)."""

    def __init__(
        self,
        client: redis.Redis,
        channel: str,
        spec: ChannelSpec,
        distribution: DistributionFile,
        sender: Sender,
        clock: Clock,
    ) -> None:
        self.channel = channel
        self.spec = spec
        self.sender = sender
        self.clock = clock
        self.schedule = Schedule(client, channel)
        self.delays = spec.delays_s or distribution.delays_s
        limit: RateLimitSpec = distribution.rate_limits.get(sender.platform) or DEFAULT_RATE_LIMITS[sender.platform]
        # one budget per platform credential, shared with every other channel's publisher (process) using it
        self.bucket = SharedTokenBucket(
            client, keys.distribution_rate(sender.platform, sender.rate_credential), limit.per_second, limit.burst
        )
        self.retry = distribution.retry
        self.counters: Counter[str] = Counter()
        self.blocked_until_ns = 0
        self._started = False
        self._closing = False
        self.drill = DrillPause()
        # One delivery pass at a time: a pass treats every in-flight delivery it finds as left over
        # by a dead publisher, which is only true if no other pass of this process is mid-send.
        self._pass_lock = asyncio.Lock()

    # --- scheduling -----------------------------------------------------------------------------
    def on_fill(self, fill: Fill, context: FillContext | None = None) -> list[str]:
        """Schedule the alert of a broker-confirmed fill for every tier; returns the newly scheduled delivery ids.

        Idempotent: a fill seen again (a replay after a restart) schedules nothing new. A fill
        that fails validation raises ``ValueError`` naming the field, and nothing is written.
        """
        context = context or FillContext()
        try:
            alert = fill_alert(fill, context, self.schedule.thread_of(fill.contract.key))
        except ValueError:
            self.counters["rejected"] += 1
            raise
        opened = (fill.contract.key, alert.key) if alert.kind is AlertKind.ENTRY else None
        closed = (fill.contract.key, alert.thread_key) if alert.kind is AlertKind.CLOSED and alert.thread_key else None
        return self._enqueue(alert, opened, closed)

    def on_followup(self, event: PositionEvent) -> list[str]:
        """Schedule a non-fill position event (stop moved, post-fill explanation) in the position's thread.

        The thread is the event's (the entry alert of the fill that opened the position), else the
        contract's open one; when this channel never scheduled that entry alert there is nothing
        to follow up and nothing is scheduled. Idempotent like :meth:`on_fill`: the
        event id is the message key, so an event seen again schedules nothing new.
        """
        thread = event.thread or self.schedule.thread_of(event.contract_key)
        if not thread or not self.schedule.scheduled(thread, self.spec.tiers):
            self.counters["followup_without_thread"] += 1
            return []
        try:
            alert = followup_alert(event, thread)
        except ValueError:
            self.counters["rejected"] += 1
            raise
        return self._enqueue(alert, None, None)

    def _enqueue(self, alert: Alert, opened: tuple[str, str] | None, closed: tuple[str, str] | None) -> list[str]:
        if alert.kind is not AlertKind.ENTRY and not self.spec.follow_ups:
            return []
        records: list[dict[str, Any]] = []
        for tier in self.spec.tiers:
            did = delivery_id(alert.key, tier)
            rendered = render(alert, tier, did)
            if rendered is None:
                continue
            records.append(
                {
                    "id": did,
                    "tier": tier,
                    "key": alert.key,
                    "kind": alert.kind.value,
                    "thread_key": alert.thread_key,
                    "due_ns": alert.ts_event + int(self.delays.of(tier) * NS_PER_SECOND),
                    "event_ns": alert.ts_event,
                    "ref": rendered.ref,
                    "text": rendered.text,
                    "html": rendered.html,
                    "embed": rendered.embed,
                }
            )
        new = self.schedule.enqueue(records, opened, closed)
        self.counters["scheduled"] += len(new)
        return new

    # --- delivering -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect the sender (also done by the first :meth:`run_due`)."""
        if not self._started:
            await self.sender.start()
            self._started = True

    async def close(self) -> None:
        """Disconnect the sender."""
        if self._started:
            await self.sender.close()
            self._started = False

    async def drain(self) -> None:
        """Graceful stop: the pass in progress ends after its current send, no new pass starts, then close.

        Cancelling a pass instead could stop it inside an HTTP call and turn a clean stop into an
        unknown outcome (a possible duplicate on Telegram).
        """
        self._closing = True
        self.drill.release()
        async with self._pass_lock:
            await self.close()

    def next_wakeup_ns(self) -> int | None:
        """When something may next be due (earliest delivery, or the end of a 429 pause)."""
        due = self.schedule.next_due_ns()
        if due is None:
            return None
        return max(due, self.blocked_until_ns)

    async def run_due(self, now_ns: int | None = None, limit: int = 100) -> RunReport:
        """Resolve sends of unknown outcome, then send what is due at ``now_ns`` (default: the clock).

        Concurrent calls (an actor's ticker and its on-fill flush) run one after the other.
        """
        async with self._pass_lock:
            return await self._run_due(now_ns, limit)

    async def _run_due(self, now_ns: int | None, limit: int) -> RunReport:
        report = RunReport()
        if self._closing:
            return report
        now = self.clock.now_ns() if now_ns is None else int(now_ns)
        await self.start()
        await self._recover(now, report)
        if now < self.blocked_until_ns:
            report.throttled = True
            return report
        for did in self.schedule.due_ids(now, limit):
            delivery = self.schedule.load(did)
            if delivery is None:
                self.schedule.claim(did, now)  # removes an orphaned id from the due set
                continue
            parent, wait = self._parent(delivery)
            if wait:
                self.schedule.defer(did, now + int(PARENT_WAIT_S * NS_PER_SECOND))
                report.deferred += 1
                continue
            await self.drill.checkpoint()
            if self._closing:
                break
            if not self.bucket.try_take(now):
                report.throttled = True
                self.counters["throttled"] += 1
                break
            attempt = self.schedule.claim(did, now)
            if attempt:
                await self._attempt(delivery, attempt, parent, now, report)
            if now < self.blocked_until_ns:
                report.throttled = True
                break
        return report

    def _parent(self, delivery: Delivery) -> tuple[Posted | None, bool]:
        """``(where to reply, wait)``: wait while the original is still to be sent; no parent if it never will be."""
        if not delivery.thread_key:
            return None, False
        original = self.schedule.load(delivery_id(delivery.thread_key, delivery.tier))
        if original is None or original.state == "dead":
            return None, False  # nothing to reply to: the follow-up stands alone
        if original.state == "sent" and original.message_id and original.chat_id:
            return Posted(original.message_id, original.chat_id, original.thread_id), False
        return None, True

    async def _attempt(
        self, delivery: Delivery, attempt: int, parent: Posted | None, now: int, report: RunReport
    ) -> None:
        try:
            try:
                posted = await asyncio.wait_for(self.sender.send(delivery, parent), self.retry.send_timeout_s)
            except TimeoutError as exc:
                raise UnknownOutcome(f"no answer within {self.retry.send_timeout_s} s") from exc
        except UnknownOutcome as exc:
            await self._resolve_unknown(delivery, attempt, parent, now, str(exc), report)
        except TransientError as exc:
            if exc.retry_after_s is not None:
                until = now + int(exc.retry_after_s * NS_PER_SECOND)
                self.blocked_until_ns = max(self.blocked_until_ns, until)
                self.bucket.block(now, until)  # the limit is the bot's: its other channels pause too
            self._failed(delivery, attempt, now, str(exc), exc.retry_after_s, "retry", report)
        except PermanentError as exc:
            self._failed(delivery, attempt, now, str(exc), None, "rejected", report)
        except Exception as exc:  # a sender bug: we cannot know whether it sent; treat like a timeout
            await self._resolve_unknown(delivery, attempt, parent, now, f"{type(exc).__name__}: {exc}", report)
        else:
            self._mark_sent(delivery, attempt, posted, now, "sent")
            report.sent += 1
            self.drill.sent()

    async def _recover(self, now: int, report: RunReport) -> None:
        """Deliveries left in flight by a publisher that stopped mid-send: find out, then decide."""
        for did in self.schedule.inflight():
            delivery = self.schedule.load(did)
            if delivery is None or delivery.state != "sending":
                continue
            parent, _ = self._parent(delivery)
            await self._resolve_unknown(
                delivery, delivery.attempts, parent, now, "outcome unknown: publisher stopped mid-send", report
            )

    async def _resolve_unknown(
        self, delivery: Delivery, attempt: int, parent: Posted | None, now: int, error: str, report: RunReport
    ) -> None:
        try:
            found = await self.sender.find_existing(delivery, parent)
        except (TransientError, PermanentError, UnknownOutcome) as exc:
            self.counters["check_failed"] += 1
            report.outcomes.append(f"{delivery.id}: check failed ({exc}); stays in flight")
            return  # still in flight: the next run_due asks again
        if isinstance(found, Posted):
            self._mark_sent(delivery, attempt, found, now, "found_after_unknown")
            report.recovered += 1
            return
        if found is Check.NOT_FOUND:
            self._failed(delivery, attempt, now, error, None, "not_found_after_unknown", report)
            return
        # Check.UNCHECKABLE: the platform cannot say (Telegram); the channel's policy decides
        if self.spec.unknown_outcome == "dead_letter":
            self._dead(delivery, attempt, now, f"{error} (unverifiable; not re-sent)", "dead_unknown", report)
            return
        if attempt < self.retry.max_attempts:
            self.counters["possible_duplicate"] += 1  # it will be re-sent, labelled
        self._failed(delivery, attempt, now, error, None, "resend_unknown", report, mark={"possible_duplicate": "1"})

    # --- outcomes -------------------------------------------------------------------------------
    def _audit(self, delivery: Delivery, attempt: int, now: int, outcome: str, **extra: Any) -> dict[str, Any]:
        return {
            "ts_ns": now,
            "channel": self.channel,
            "platform": self.sender.platform,
            "tier": delivery.tier,
            "delivery": delivery.id,
            "key": delivery.key,
            "kind": delivery.kind,
            "ref": delivery.ref,
            "attempt": attempt,
            "outcome": outcome,
            "event_ns": delivery.event_ns,
            "possible_duplicate": int(delivery.possible_duplicate),  # this attempt is a labelled resend
            **extra,
        }

    def _mark_sent(self, delivery: Delivery, attempt: int, posted: Posted, now: int, outcome: str) -> None:
        audit = self._audit(
            delivery,
            attempt,
            now,
            outcome,
            message_id=posted.message_id,
            chat_id=posted.chat_id,
            thread_id=posted.thread_id,
            delay_s=f"{(now - delivery.event_ns) / NS_PER_SECOND:.3f}",
        )
        if not self.schedule.mark_sent(delivery.id, posted.message_id, posted.chat_id, posted.thread_id, now, audit):
            # someone else resolved this delivery meanwhile (another publisher on the same channel)
            self.counters["mark_conflict"] += 1
            return
        self.counters["sent" if outcome == "sent" else "recovered"] += 1

    def _failed(
        self,
        delivery: Delivery,
        attempt: int,
        now: int,
        error: str,
        retry_after_s: float | None,
        outcome: str,
        report: RunReport,
        mark: dict[str, str] | None = None,
    ) -> None:
        if attempt >= self.retry.max_attempts:
            self._dead(delivery, attempt, now, error, outcome, report)
            return
        wait = backoff_s(attempt, self.retry.base_s, self.retry.cap_s, retry_after_s)
        due = now + int(wait * NS_PER_SECOND)
        self.schedule.retry(delivery.id, due, error, self._audit(delivery, attempt, now, outcome, error=error), mark)
        self.counters["retried"] += 1
        report.retried += 1
        report.outcomes.append(f"{delivery.id}: {outcome} in {wait:g} s ({error})")

    def _dead(self, delivery: Delivery, attempt: int, now: int, error: str, outcome: str, report: RunReport) -> None:
        record = {
            "ts_ns": now,
            "channel": self.channel,
            "platform": self.sender.platform,
            "tier": delivery.tier,
            "delivery": delivery.id,
            "key": delivery.key,
            "attempts": attempt,
            "error": error,
            "text": delivery.text,
        }
        audit = self._audit(delivery, attempt, now, "dead_letter", error=error, cause=outcome)
        alert = alert_fields(
            "WARNING",
            f"{self.sender.platform} channel {self.channel!r}, tier {delivery.tier}: message {delivery.key} "
            f"(ref {delivery.ref}) was not delivered after {attempt} attempts ({error}); it is in "
            f"{keys.DISTRIBUTION_DEAD_LETTER} — check the chat, then replay it or let it go",
            now,
            f"publisher:{self.channel}",
        )
        self.schedule.dead(delivery.id, error, record, audit, alert)
        self.counters["dead"] += 1
        report.dead += 1
        report.outcomes.append(f"{delivery.id}: dead-lettered after {attempt} attempts ({error})")
