"""What the IBKR actors share: finding the TWS to connect to, and the market's clock.

In ``tws`` the venue host publishes the simulator's port (``venue:ports``) and market time
(``venue:tws:now``); in ``live`` the endpoint is ``IB_HOST``/``IB_PORT`` and the clock is the wall.
"""

from __future__ import annotations

import asyncio
import os

import redis

from quanticity import keys
from quanticity.clock import Clock, LiveClock
from quanticity.config.models import QuanticityConfig
from quanticity.store.client import StoreClock
from quanticity.venues.ibkr import IbkrConfig
from quanticity.venues.profile import ibkr_config, live_ibkr_endpoint

LOOPBACK = "127.0.0.1"


def fetch_clock(live: bool, client: redis.Redis, start_ns: int) -> Clock:
    """The time the UW/AV fetcher schedules and stamps with: the wall live, the market's in ``tws``.

    In ``tws`` that is the hosted market's own time (``venue:tws:now``, which the twins also run
    on), read at every call: the market opens only once the actors are up, so the planned session
    clock would run minutes of simulated time ahead of it — UW data would then never look stale to
    the overseer nor pair with the IBKR values it is compared with. Before the market's first step
    it is the session start.
    """
    return LiveClock() if live else StoreClock(client, keys.VENUE_CLOCK, start_ns)


async def resolve_ibkr(config: QuanticityConfig, client: redis.Redis, timeout_s: float = 120.0) -> IbkrConfig:
    """The IBKR settings with the endpoint of this run's TWS (waits for the venue host in ``tws``)."""
    venue = config.system.venue
    if venue.kind == "live":
        host, port = live_ibkr_endpoint(venue, os.environ)
        return ibkr_config(venue, host, port)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            port = client.hget(keys.VENUE_PORTS, "tws")
        except redis.RedisError:
            port = None
        if port:
            return ibkr_config(venue, LOOPBACK, int(port))
        if loop.time() > deadline:
            raise ConnectionError(f"{keys.VENUE_PORTS}: no TWS simulator port published within {timeout_s} s")
        await asyncio.sleep(0.1)


class VenueClock(Clock):
    """The market's time: the hosted simulator's (``tws``, refreshed from Redis) or the wall (``live``).

    :meth:`refresh` is called on the owner's timer (once per flush), not per message: reading
    Redis for every tick would cost more than the ticks.
    """

    def __init__(self, client: redis.Redis, follow_venue: bool, start_ns: int) -> None:
        self._client = client
        self._follow = follow_venue
        self._wall = LiveClock()
        self._now_ns = start_ns

    def refresh(self) -> int:
        """Re-read the simulator's time (never moves backwards); returns it."""
        if self._follow:
            try:
                raw = self._client.get(keys.VENUE_CLOCK)
            except redis.RedisError:
                raw = None
            if raw:
                self._now_ns = max(self._now_ns, int(raw))
        return self.now_ns()

    def now_ns(self) -> int:
        return self._now_ns if self._follow else self._wall.now_ns()
