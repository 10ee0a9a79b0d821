"""Publisher actor: one per channel; a thin shell over :class:`quanticity.distribution.publisher.Publisher`.

It follows ``trades:fills`` from its own persisted cursor, so a restart resumes where it stopped,
and ``trades:position_events`` (stop raised, the overseer's post-fill explanation) from a second
one; each event is scheduled in the thread of the position's entry alert.
Each fill is scheduled for every tier of the channel (idempotently: a replayed fill schedules
nothing new) and what is due now — premium — is delivered before the cursor moves on; a ticker
delivers the delayed tiers. The schedule and the delivery records live in Redis, so a restarted
publisher neither loses nor repeats a message. A record that cannot be read is dead-lettered with
its reason (:mod:`quanticity.distribution.intake`) and the cursor moves on.

``drill_pause_after`` / ``drill_paused`` are the fault drill's handle: hold the delivery loop
between two sends so a test can kill the process at a known point mid-batch.
"""

from __future__ import annotations

import asyncio
import threading
import time

import ray

from actors.common import STALL_LIMIT_S, ActorShell, StreamFollower
from quanticity import keys
from quanticity.config.models import QuanticityConfig
from quanticity.distribution.factory import build_sender
from quanticity.distribution.intake import schedule_fill_record, schedule_followup_record
from quanticity.distribution.publisher import Publisher
from quanticity.session import RunSpec

DELIVERY_TIMEOUT_S = 60.0


def _stream_id(entry_id: str) -> tuple[int, int]:
    """A Redis stream id (``ms-seq``) as a comparable pair."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


@ray.remote(num_cpus=0, max_restarts=0, max_concurrency=4)
class PublisherActor(ActorShell):
    """Shell over :class:`Publisher`: a follower thread schedules fills, an event loop thread delivers."""

    kind = "publisher"

    def __init__(self, name: str, config: QuanticityConfig, spec: RunSpec, redis_url: str, channel: str) -> None:
        super().__init__(name, config, spec, redis_url)
        self.channel = channel
        distribution = config.distribution
        channel_spec = distribution.channels[channel]
        self.equity = config.trading.risk.account_equity
        sender = build_sender(channel, channel_spec, distribution)
        self.publisher = Publisher(self.redis, channel, channel_spec, distribution, sender, self.clock)
        self.tick_s = distribution.tick_s
        self.published = 0
        self.skipped = 0
        self.followups_scheduled = 0
        self.followups_waited = 0
        self.loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self.loop.run_forever, name="publisher-loop", daemon=True)
        self._loop_thread.start()
        self._ticker = asyncio.run_coroutine_threadsafe(self._tick_forever(), self.loop)
        self.follower = StreamFollower(
            self.redis, keys.FILLS_STREAM, keys.publisher_cursor(channel), self._deliver, self.log, "publisher"
        )
        self.followups = StreamFollower(
            self.redis,
            keys.POSITION_EVENTS_STREAM,
            keys.publisher_followup_cursor(channel),
            self._follow_up,
            self.log,
            "publisher-followups",
        )

    async def _tick_forever(self) -> None:
        """Deliver the delayed tiers (and retries) as they fall due."""
        while True:
            try:
                await self.publisher.run_due()
            except Exception as exc:  # Redis or platform trouble: keep ticking, report it
                self.errors += 1
                self.log.warning("delivery pass failed", extra={"channel": self.channel, "error": str(exc)})
            await asyncio.sleep(self.tick_s)

    def _deliver(self, entry_id: str, fields: dict[str, str]) -> None:
        started = time.perf_counter()
        intake = schedule_fill_record(self.publisher, self.redis, entry_id, fields, self.equity)
        if intake.outcome == "malformed":
            self.errors += 1
            self.log.error(
                "malformed fill record dead-lettered",
                extra={"channel": self.channel, "entry": entry_id, "error": intake.error},
            )
        else:
            if intake.new:
                self.published += 1
                self.events += 1
            else:
                self.skipped += 1  # a replay after a restart: already scheduled
            # what is due now (premium) goes out before the cursor moves past this fill; if this pass
            # fails, the fill is still scheduled in Redis and the ticker delivers it
            try:
                asyncio.run_coroutine_threadsafe(self.publisher.run_due(), self.loop).result(DELIVERY_TIMEOUT_S)
            except Exception as exc:
                self.errors += 1
                self.log.warning("immediate delivery failed", extra={"channel": self.channel, "error": str(exc)})
        self.latency.add(time.perf_counter() - started)

    def _fills_behind(self) -> bool:
        """Whether the fills follower has yet to schedule a fill already in the stream.

        A position event is written after the fill that opened its thread (the entry alert), but
        the two streams are followed by separate threads, and after a restart the fills follower
        may still be replaying. An event handled before its entry was scheduled would find no
        thread and be lost, so it waits until the fills follower has caught up.
        """
        newest = self.redis.xrevrange(keys.FILLS_STREAM, count=1)
        return bool(newest) and _stream_id(self.follower.cursor) < _stream_id(newest[0][0])

    def _follow_up(self, entry_id: str, fields: dict[str, str]) -> bool:
        """Schedule a position event in its thread; the ticker delivers it (premium at once).

        Returns ``False`` (offer it again shortly) while the fills follower is behind.
        """
        if self._fills_behind():
            self.followups_waited += 1
            return False
        intake = schedule_followup_record(self.publisher, self.redis, entry_id, fields)
        if intake.outcome == "malformed":
            self.errors += 1
            self.log.error(
                "malformed position event dead-lettered",
                extra={"channel": self.channel, "entry": entry_id, "error": intake.error},
            )
        self.followups_scheduled += len(intake.new)
        return True

    def drill_pause_after(self, sends: int) -> bool:
        """Fault drill: hold the delivery loop before its next claim once ``sends`` more messages went out."""
        self.publisher.drill.arm(sends)
        return True

    def drill_paused(self) -> dict[str, int] | None:
        """None until the drill holds the loop; then what is owed (due) and in flight at that moment."""
        if not self.publisher.drill.paused.is_set():
            return None
        schedule = self.publisher.schedule
        return {"due": schedule.pending_count(), "inflight": len(schedule.inflight())}

    def stop(self) -> None:
        """Stop following the streams and delivering."""
        self.follower.stop()
        self.followups.stop()
        # let a pass in progress finish its current send first: cancelling it inside an HTTP call
        # would leave an unknown outcome (a possible duplicate on Telegram)
        asyncio.run_coroutine_threadsafe(self.publisher.drain(), self.loop).result(DELIVERY_TIMEOUT_S)
        self._ticker.cancel()
        self.loop.call_soon_threadsafe(self.loop.stop)

    def ping(self):  # noqa: ANN201 - same as ActorShell.ping
        for follower in (self.follower, self.followups):
            if follower.stalled_for_s() > STALL_LIMIT_S:
                raise RuntimeError(f"stream follower stalled for {follower.stalled_for_s():.0f} s")
        return super().ping()

    def stats(self) -> dict[str, float]:
        counters = self.publisher.counters
        return {
            "published": self.published,
            "skipped_duplicates": self.skipped,
            "sent": counters["sent"],
            "retried": counters["retried"],
            "dead_lettered": counters["dead"],
            "recovered": counters["recovered"],
            "possible_duplicates": counters["possible_duplicate"],
            "malformed_records": counters["malformed"],
            "followups_scheduled": self.followups_scheduled,
            "followups_waited_for_fills": self.followups_waited,
            "followups_without_thread": counters["followup_without_thread"],
        }
