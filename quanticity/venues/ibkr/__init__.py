"""Interactive Brokers connector over ``ib_async`` (SPEC §5 IBKR, §9): library code, no Ray.

- :class:`IbkrConnection` — one client id per role, connect/reconnect with seeded backoff,
  sync hooks after every (re)connect and 1101, READY/UNRECONCILED state (HALTED unless READY),
  health by data freshness, order ids never reused across reconnects and restarts (a floor
  persisted through :class:`RedisOrderIdFloor`), malformed TWS messages counted;
- :class:`IbkrFeed` — L1 (106,104,233), tick-by-tick, rotating depth (3 lines, 15 s dwell,
  explicit exchanges, 309 = capacity signal), option chains with model greeks, converted to
  :mod:`quanticity.messages` after validation, rejections counted by reason;
- :class:`IbkrBroker` — the order router's broker interface (async), ``orderRef`` idempotency,
  reconciliation by ``orderRef``, fills de-duplicated by execution id with TWS commissions;
- :class:`IbkrConfig` / :func:`load_ibkr_config` — the frozen settings model.

Usage (an ingestion actor and an execution actor would each hold one connection)::

    config = IbkrConfig(port=7497)
    feed_conn = IbkrConnection(config, "ingestion")
    feed = IbkrFeed(feed_conn, ["SPY", "QQQ"], sink=batcher.add, option_symbols=["SPY"])
    await feed_conn.start()              # connects, then the feed subscribes (sync hook)
    feed.rotate_depth()                  # on a timer: moves the depth window every dwell

    exec_conn = IbkrConnection(config, "execution", order_ids=RedisOrderIdFloor(redis_client, 201))
    broker = IbkrBroker(exec_conn)
    await exec_conn.start()              # connects, then reconciles (sync hook)
    if exec_conn.trading_state() is TradingState.ACTIVE:
        await broker.place(intent)

The loopback twin that speaks the same protocol is :mod:`quanticity.sim.tws`.
"""

from quanticity.venues.ibkr.broker import IbkrBroker
from quanticity.venues.ibkr.config import BackoffSpec, ClientIds, IbkrConfig, load_ibkr_config
from quanticity.venues.ibkr.connection import IbkrConnection, LinkState, SyncError
from quanticity.venues.ibkr.depth import DepthRotation
from quanticity.venues.ibkr.feed import IbkrFeed
from quanticity.venues.ibkr.order_ids import OrderIdFloorStore, OrderIdStoreError, RedisOrderIdFloor
from quanticity.venues.ibkr.validation import RejectCounter, Rejected

__all__ = [
    "BackoffSpec",
    "ClientIds",
    "DepthRotation",
    "IbkrBroker",
    "IbkrConfig",
    "IbkrConnection",
    "IbkrFeed",
    "LinkState",
    "OrderIdFloorStore",
    "OrderIdStoreError",
    "RedisOrderIdFloor",
    "RejectCounter",
    "Rejected",
    "SyncError",
    "load_ibkr_config",
]
