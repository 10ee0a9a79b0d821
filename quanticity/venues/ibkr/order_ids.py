"""The durable order-id floor of one IBKR API client: the lowest order id it may still use.

TWS hands a client its next valid order id at every connect, and a TWS that was restarted (or
whose settings were reset) can hand out an id *below* ids already used. Those ids are not all
visible again after the restart: a cancelled order leaves no trace in open orders or executions,
and completed orders carry no order id on the wire. Reusing one makes TWS reject the new order
(error 103, "Duplicate order id"). So the connection keeps a floor — one above every id it ever
sent — and writes it *before* an order leaves, into a store that outlives the process: a
restarted execution actor reads it back and starts above it, whatever ``nextValidId`` says.

:class:`RedisOrderIdFloor` keeps it in the hash :data:`quanticity.keys.IBKR_ORDER_ID_FLOOR`,
one field per client id, raised with a server-side compare (a lower value never overwrites a
higher one, even from a stale process).
"""

from __future__ import annotations

from typing import Protocol

import redis

from quanticity import keys

__all__ = ["OrderIdFloorStore", "OrderIdStoreError", "RedisOrderIdFloor"]


class OrderIdStoreError(RuntimeError):
    """The floor could not be read or written (the store is down); the message names the key."""


class OrderIdFloorStore(Protocol):
    """Where a connection persists its order-id floor (injected: Redis in the actors)."""

    def load(self) -> int:
        """The stored floor (0 = none stored); raises OrderIdStoreError when unreadable."""
        ...

    def save(self, floor: int) -> None:
        """Raise the stored floor to at least ``floor``; raises OrderIdStoreError when unwritable."""
        ...


_RAISE = """
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local wanted = tonumber(ARGV[2])
if wanted > current then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return wanted
end
return current
"""


class RedisOrderIdFloor:
    """The floor of ``client_id`` in the hash ``key`` (default :data:`keys.IBKR_ORDER_ID_FLOOR`)."""

    def __init__(self, client: redis.Redis, client_id: int, key: str = keys.IBKR_ORDER_ID_FLOOR) -> None:
        self._redis = client
        self.key = key
        self.field = str(client_id)
        self._raise = client.register_script(_RAISE)

    def load(self) -> int:
        try:
            raw = self._redis.hget(self.key, self.field)
        except redis.RedisError as exc:
            raise OrderIdStoreError(f"{self.key}[{self.field}]: unreadable: {exc}") from exc
        if raw is None:
            return 0
        try:
            return int(raw)
        except ValueError:
            raise OrderIdStoreError(f"{self.key}[{self.field}]: {raw!r} is not an order id") from None

    def save(self, floor: int) -> None:
        try:
            self._raise(keys=[self.key], args=[self.field, int(floor)])
        except redis.RedisError as exc:
            raise OrderIdStoreError(f"{self.key}[{self.field}] = {floor}: not written: {exc}") from exc
