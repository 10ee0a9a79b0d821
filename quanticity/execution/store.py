"""Durable order, fill and position records in Redis.

The router is the single writer of these keys (one router per account), so a check followed by a
``MULTI``/``EXEC`` transaction is race-free, and every multi-key update is all-or-nothing: a
crash can never leave a fill counted in the P&L but missing from the positions.
"""

from __future__ import annotations

import json

import msgspec
import redis

from quanticity import keys
from quanticity.execution.positions import Position, apply_fill
from quanticity.messages import BrokerOrder, Fill, OrderIntent, OrderStatus, decode, encode

# Record an intent only if its reference is new: the idempotency check and the write are one
# atomic step, so two deliveries of the same intent can never both be "new".
_RECORD_INTENT = """
if redis.call('HSETNX', KEYS[1], 'intent', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'status', ARGV[2], 'filled', 0, 'updated_at', ARGV[3])
  redis.call('SADD', KEYS[2], ARGV[4])
  redis.call('SADD', KEYS[3], ARGV[4])
  return 1
end
return 0
"""


class ExecutionStore:
    """Orders (intent + status), booked fills, open positions and realized P&L."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._record = client.register_script(_RECORD_INTENT)

    # --- orders ---------------------------------------------------------------------------
    def record_intent(self, intent: OrderIntent) -> bool:
        """Persist ``intent`` as PENDING_SEND; False when its reference was already recorded."""
        created = self._record(
            keys=[keys.order(intent.order_ref), keys.ORDERS_INDEX, keys.ORDERS_PENDING],
            args=[encode(intent).decode(), OrderStatus.PENDING_SEND.value, intent.ts_init, intent.order_ref],
        )
        return bool(created)

    def intent(self, order_ref: str) -> OrderIntent | None:
        """The recorded intent of ``order_ref``."""
        raw = self._client.hget(keys.order(order_ref), "intent")
        return decode(raw, OrderIntent) if raw else None

    def status(self, order_ref: str) -> OrderStatus | None:
        """Current status of ``order_ref`` (None when unknown)."""
        raw = self._client.hget(keys.order(order_ref), "status")
        return OrderStatus(raw) if raw else None

    def update_from_broker(self, order: BrokerOrder, ts_ns: int) -> None:
        """Adopt the broker's view of an order and clear its pending-send mark."""
        pipe = self._client.pipeline(transaction=True)
        pipe.hset(
            keys.order(order.order_ref),
            mapping={"status": order.status.value, "broker_filled": order.filled, "updated_at": ts_ns},
        )
        # note: the broker's status is authoritative; the booked quantity stays in "filled"
        pipe.srem(keys.ORDERS_PENDING, order.order_ref)
        pipe.execute()

    def pending_send(self) -> list[str]:
        """References whose intent is durable but whose broker acknowledgement is unconfirmed."""
        return sorted(self._client.smembers(keys.ORDERS_PENDING))

    def all_refs(self) -> list[str]:
        """Every order reference ever recorded."""
        return sorted(self._client.smembers(keys.ORDERS_INDEX))

    # --- fills and positions --------------------------------------------------------------
    def book_fill(self, fill: Fill) -> bool:
        """Book ``fill`` once: position, realized P&L, order progress and the fills stream.

        Returns False (and changes nothing) for an execution id already booked.
        """
        if self._client.sismember(keys.FILLS_SEEN, fill.exec_id):
            return False
        raw = self._client.hget(keys.POSITIONS, fill.contract.key)
        position = msgspec.json.decode(raw, type=Position) if raw else None
        new_position, realized = apply_fill(position, fill)
        order = self._client.hmget(keys.order(fill.order_ref), "intent", "filled")
        ordered = decode(order[0], OrderIntent).quantity if order[0] else 0
        filled = int(order[1] or 0) + fill.quantity
        status = OrderStatus.FILLED if ordered and filled >= ordered else OrderStatus.PARTIALLY_FILLED
        pipe = self._client.pipeline(transaction=True)
        pipe.sadd(keys.FILLS_SEEN, fill.exec_id)
        if new_position is None:
            pipe.hdel(keys.POSITIONS, fill.contract.key)
        else:
            pipe.hset(keys.POSITIONS, fill.contract.key, msgspec.json.encode(new_position).decode())
        pipe.hincrbyfloat(keys.PNL_REALIZED, "total", realized)
        pipe.hincrbyfloat(keys.PNL_REALIZED, fill.strategy, realized)
        pipe.hset(keys.order(fill.order_ref), mapping={"filled": filled, "status": status.value})
        pipe.xadd(keys.FILLS_STREAM, {"fill": encode(fill).decode(), "realized": f"{realized:.6f}"})
        pipe.incr(keys.POSITIONS_VERSION)
        pipe.execute()
        return True

    def version(self) -> int:
        """Changes so far to positions, marks or realized P&L (cache key for readers)."""
        return int(self._client.get(keys.POSITIONS_VERSION) or 0)

    def booked_count(self) -> int:
        """How many distinct executions have been booked."""
        return int(self._client.scard(keys.FILLS_SEEN))

    def positions(self) -> dict[str, Position]:
        """Open positions by contract key."""
        return {k: msgspec.json.decode(v, type=Position) for k, v in self._client.hgetall(keys.POSITIONS).items()}

    def save_marks(self, marks: dict[str, float]) -> None:
        """Store the latest option marks on the open positions (for unrealized P&L)."""
        positions = self.positions()
        updates = {}
        for key, mark in marks.items():
            if key in positions:
                updates[key] = msgspec.json.encode(msgspec.structs.replace(positions[key], mark=mark)).decode()
        if updates:
            pipe = self._client.pipeline(transaction=True)
            pipe.hset(keys.POSITIONS, mapping=updates)
            pipe.incr(keys.POSITIONS_VERSION)
            pipe.execute()

    # --- exit plans -------------------------------------------------------------------------
    def exit_plans(self) -> dict[str, dict]:
        """Exit-plan states by contract key."""
        return {k: json.loads(v) for k, v in self._client.hgetall(keys.EXIT_PLANS).items()}

    def save_exit_plan(self, key: str, state: dict | None) -> None:
        """Persist (or, with None, drop) the exit plan of ``key``."""
        if state is None:
            self._client.hdel(keys.EXIT_PLANS, key)
        else:
            self._client.hset(keys.EXIT_PLANS, key, json.dumps(state, default=str))

    def exit_orders(self) -> dict[str, dict]:
        """Exit orders whose outcome is still open, by order reference."""
        return {k: json.loads(v) for k, v in self._client.hgetall(keys.EXIT_ORDERS).items()}

    def track_exit_order(self, order_ref: str, record: dict | None) -> None:
        """Remember (or, with None, forget) an exit order until it fills, dies or is denied."""
        if record is None:
            self._client.hdel(keys.EXIT_ORDERS, order_ref)
        else:
            self._client.hset(keys.EXIT_ORDERS, order_ref, json.dumps(record))

    def realized_pnl(self) -> dict[str, float]:
        """Realized P&L: ``total`` and per strategy, net of commissions."""
        return {k: float(v) for k, v in self._client.hgetall(keys.PNL_REALIZED).items()}

    def fills(self) -> list[Fill]:
        """Every booked fill, in booking order."""
        return [decode(fields["fill"], Fill) for _, fields in self._client.xrange(keys.FILLS_STREAM)]

    def order_summary(self) -> dict[str, int]:
        """Count of orders by status (for summaries)."""
        counts: dict[str, int] = {}
        for ref in self.all_refs():
            status = self._client.hget(keys.order(ref), "status") or "UNKNOWN"
            counts[status] = counts.get(status, 0) + 1
        return counts


def position_summary(positions: dict[str, Position]) -> str:
    """One-line JSON summary of positions (for logs)."""
    return json.dumps({k: {"qty": p.quantity, "avg": round(p.avg_price, 2)} for k, p in positions.items()})
