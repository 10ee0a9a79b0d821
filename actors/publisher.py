"""Publisher actor: one per channel; delivers every booked fill exactly once per tier.

It reads ``trades:fills`` from its own persisted cursor, so a restart resumes where it stopped;
the channel's files are the record of what was delivered, so nothing is written twice.
"""

from __future__ import annotations

import threading
import time

import ray
import redis

from actors.common import ActorShell
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
        self.cursor = self.redis.get(keys.publisher_cursor(channel)) or "0-0"
        self.published = 0
        self.skipped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="publisher", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                batch = self.redis.xread({keys.FILLS_STREAM: self.cursor}, count=64, block=200)
            except redis.RedisError as exc:
                self.errors += 1
                self.log.warning("fills stream unreadable; retrying", extra={"error": str(exc)})
                time.sleep(0.2)
                continue
            for _, entries in batch or []:
                for entry_id, fields in entries:
                    self._deliver(entry_id, fields)

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
        self.cursor = entry_id
        self.redis.set(keys.publisher_cursor(self.channel), entry_id)
        self.latency.add(time.perf_counter() - started)

    def stop(self) -> None:
        """Stop following the stream."""
        self._stop.set()

    def stats(self) -> dict[str, float]:
        return {"published": self.published, "skipped_duplicates": self.skipped}
