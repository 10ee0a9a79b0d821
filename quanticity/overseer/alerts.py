"""An :class:`~quanticity.overseer.protocols.AdminAlerts` that appends to the ``system:alerts`` stream.

The risk gate already writes its daily-loss alerts there; the Telegram admin transport pushes
the stream to the admin chat. Going through Redis (durable) instead of calling Telegram directly
means an alert raised while Telegram is down is delivered when it comes back, not lost.
"""

from __future__ import annotations

import asyncio

import redis

from quanticity.clock import Clock
from quanticity.store.alerts import append_alert


class RedisAdminAlerts:
    """Appends ``{level, text, ts, source}`` entries to :data:`quanticity.keys.ALERTS`."""

    def __init__(self, client: redis.Redis, clock: Clock, source: str = "overseer") -> None:
        self._client = client
        self._clock = clock
        self._source = source

    async def alert(self, level: str, text: str) -> None:
        """Append one alert; the blocking Redis call runs off the event loop."""
        await asyncio.to_thread(append_alert, self._client, level, text, self._clock.now_ns(), self._source)
