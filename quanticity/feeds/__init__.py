"""Config-driven alternative-data feeds: Unusual Whales and Alpha Vantage (SPEC §5).

One generic REST fetcher, :class:`~quanticity.feeds.engine.SourceEngine`, runs any source described
by a YAML under ``config/sources/`` (endpoints, symbols, params, Redis keys, TTLs, cadence tiers,
priorities, rate limit, market-state schedule, circuit breaker); the UW WebSocket client,
:class:`~quanticity.feeds.uw_ws.UwSocketClient`, streams the socket channels into Redis streams.
No Ray here: a feed actor wires them like this::

    from quanticity.feeds import SourceEngine, socket_client_for

    universe = config.system.universe.symbols
    uw = SourceEngine("config/sources/unusual_whales.yaml", redis=client, clock=clock, universe=universe)
    av = SourceEngine("config/sources/alpha_vantage.yaml", redis=client, clock=clock, universe=universe)
    ws = socket_client_for(uw.config, universe, client)      # None when the YAML has no websocket:
    stop = asyncio.Event()
    async with uw, av:
        await asyncio.gather(uw.run(stop), av.run(stop), ws.run(stop))
    # heartbeat / Prometheus: uw.metrics(), av.metrics(), ws.metrics() are plain dicts

Secrets come from the environment (``UW_API_TOKEN``, ``ALPHA_VANTAGE_API_KEY``); ``UW_BASE_URL``,
``UW_WS_URL`` and ``AV_BASE_URL`` point the feeds at the loopback twins
(:mod:`quanticity.sim.uw_server`, :mod:`quanticity.sim.av_server`). Module map: ``sources``
(YAML models), ``engine`` (scheduler + fetch loop), ``bucket`` (token bucket), ``breaker``
(circuit breaker), ``parse``/``schemas`` (response validation), ``market_state``,
``templating``, ``sink`` (Redis writes), ``metrics``, ``uw_ws`` (socket client), ``altdata`` (UW
records → ``AltDataEvent``s and the bridge that delivers each once, fed by the engine's ``on_payload``).
"""

from quanticity.feeds.engine import SourceEngine
from quanticity.feeds.sources import SourceConfig, load_source
from quanticity.feeds.uw_ws import Backoff, RedisStreamSink, UwSocketClient, socket_channels, socket_client_for

__all__ = [
    "Backoff",
    "RedisStreamSink",
    "SourceConfig",
    "SourceEngine",
    "UwSocketClient",
    "load_source",
    "socket_channels",
    "socket_client_for",
]
