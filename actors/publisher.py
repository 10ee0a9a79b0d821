"""Publisher actor: one per channel; delivers every booked fill exactly once per tier.

It reads ``trades:fills`` from its own persisted cursor, so a restart resumes where it stopped;
the channel's files are the record of what was delivered, so nothing is written twice.
"""

from __future__ import annotations

import time

import ray

from actors.common import STALL_LIMIT_S, ActorShell, StreamFollower
from quanticity import keys
from quanticity.config.models import QuanticityConfig
from quanticity.distribution.channel_log import ChannelLog
from quanticity.messages import Fill, decode
from quanticity.session import RunSpec


@ray.remote(num_cpus=0, max_restarts=0, max_concurrency=4)
class PublisherActor(ActorShell):
    """Shell over :class:`ChannelLog`; a background thread follows the fills stream."""

    kind = "publisher"

    def __init__(self, name: str, config: QuanticityConfig, spec: RunSpec, redis_url: str, channel: str) -> None:
        super().__init__(name, config, spec, redis_url)
        self.channel = channel
        spec_ = config.distribution.channels[channel]
        self.log_file = ChannelLog(config.distribution.log_dir, channel, list(spec_.tiers))
        self.published = 0
        self.skipped = 0
        self.follower = StreamFollower(
            self.redis, keys.FILLS_STREAM, keys.publisher_cursor(channel), self._deliver, self.log, "publisher"
        )

    def _deliver(self, entry_id: str, fields: dict[str, str]) -> None:
        started = time.perf_counter()
        try:
            fill = decode(fields["fill"], Fill)
            realized = float(fields.get("realized", 0.0))
        except (KeyError, ValueError) as exc:
            self.errors += 1
            self.log.error("malformed fill record skipped", extra={"entry": entry_id, "error": str(exc)})
        else:
            if self.redis.sismember(keys.publisher_sent(self.channel), fill.exec_id):
                self.skipped += 1
            else:
                self.log_file.write(fill.exec_id, fill, realized)
                self.redis.sadd(keys.publisher_sent(self.channel), fill.exec_id)
                self.published += 1
                self.events += 1
        self.latency.add(time.perf_counter() - started)

    def stop(self) -> None:
        """Stop following the stream."""
        self.follower.stop()

    def ping(self):  # noqa: ANN201 - same as ActorShell.ping
        if self.follower.stalled_for_s() > STALL_LIMIT_S:
            raise RuntimeError(f"fills follower stalled for {self.follower.stalled_for_s():.0f} s")
        return super().ping()

    def stats(self) -> dict[str, float]:
        return {"published": self.published, "skipped_duplicates": self.skipped}
