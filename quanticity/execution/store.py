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
from quanticity.messages import (
    BrokerOrder,
    Fill,
    OrderIntent,
    OrderStatus,
    PositionEvent,
    TradingState,
    decode,
    encode,
)

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


# Record a working entry and its child orders in one step: the parent reference is accepted once
# (a replay of an intent already worked — even one long finished — records nothing), and the
# children's intents are durable PENDING_SEND before any of them is sent.
# KEYS: entry refs, entries, orders index, pending, order(parent), order(child)...
# ARGV: parent ref, entry JSON, PENDING_SEND, ts, then (child ref, child intent) pairs.
_RECORD_ENTRY = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 or redis.call('EXISTS', KEYS[5]) == 1 then
  return 0
end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
for i = 6, #KEYS do
  local ref = ARGV[5 + (i - 6) * 2]
  if redis.call('HSETNX', KEYS[i], 'intent', ARGV[6 + (i - 6) * 2]) == 1 then
    redis.call('HSET', KEYS[i], 'status', ARGV[3], 'filled', 0, 'updated_at', ARGV[4])
    redis.call('SADD', KEYS[3], ref)
    redis.call('SADD', KEYS[4], ref)
  end
end
return 1
"""

# Record a protective bracket (its record and every leg's intent and role) in one step, before
# any leg is sent. KEYS: brackets, bracket legs, orders index, pending, order(leg)...
# ARGV: contract key, bracket JSON, PENDING_SEND, ts, then (leg ref, leg intent, leg role JSON).
_RECORD_BRACKET = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
for i = 5, #KEYS do
  local base = 5 + (i - 5) * 3
  local ref = ARGV[base]
  if redis.call('HSETNX', KEYS[i], 'intent', ARGV[base + 1]) == 1 then
    redis.call('HSET', KEYS[i], 'status', ARGV[3], 'filled', 0, 'updated_at', ARGV[4])
    redis.call('SADD', KEYS[3], ref)
    redis.call('SADD', KEYS[4], ref)
  end
  redis.call('HSET', KEYS[2], ref, ARGV[base + 2])
end
return 1
"""


class ExecutionStore:
    """Orders (intent + status), booked fills, open positions and realized P&L."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._record = client.register_script(_RECORD_INTENT)
        self._record_entry = client.register_script(_RECORD_ENTRY)
        self._record_bracket = client.register_script(_RECORD_BRACKET)

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

    def record_working_limit(self, order_ref: str, price: float) -> None:
        """The limit ``order_ref`` works at after a modification (a chase): the price the venue was
        told to respect, which execution-quality checks compare fills against."""
        self._client.hset(keys.order(order_ref), "limit", repr(float(price)))

    def mark_cancelled(self, order_ref: str, ts_ns: int) -> None:
        """An order in doubt that the broker positively does not have was cancelled by us: it is
        closed here so reconcile never sends it later."""
        pipe = self._client.pipeline(transaction=True)
        pipe.hset(keys.order(order_ref), mapping={"status": OrderStatus.CANCELLED.value, "updated_at": ts_ns})
        pipe.srem(keys.ORDERS_PENDING, order_ref)
        pipe.execute()

    def booked_filled(self, order_ref: str) -> int:
        """Contracts of ``order_ref`` booked from executions so far."""
        return int(self._client.hget(keys.order(order_ref), "filled") or 0)

    def pending_send(self) -> list[str]:
        """References whose intent is durable but whose broker acknowledgement is unconfirmed."""
        return sorted(self._client.smembers(keys.ORDERS_PENDING))

    def all_refs(self) -> list[str]:
        """Every order reference ever recorded."""
        return sorted(self._client.smembers(keys.ORDERS_INDEX))

    # --- fills and positions --------------------------------------------------------------
    def book_fill(self, fill: Fill) -> bool:
        """Book ``fill`` once: position, realized P&L, order progress and the fills stream.

        The stream entry says whether the fill opened the position (``opened``), which only this
        moment knows for sure: by the time a reader looks, the position may be closed or re-opened.

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
        # "opened": this buy started the position (its entry alert opens the subscribers' thread)
        opened = "1" if position is None and new_position is not None else "0"
        pipe.xadd(keys.FILLS_STREAM, {"fill": encode(fill).decode(), "realized": f"{realized:.6f}", "opened": opened})
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

    # --- working entries ---------------------------------------------------------------------
    def record_entry(self, parent_ref: str, state: dict, children: list[OrderIntent]) -> bool:
        """Persist a new working entry and its children's intents (PENDING_SEND) atomically.

        False (nothing written) when ``parent_ref`` was accepted before.
        """
        args: list[str | int] = [parent_ref, json.dumps(state), OrderStatus.PENDING_SEND.value, 0]
        order_keys = []
        for child in children:
            args += [child.order_ref, encode(child).decode()]
            order_keys.append(keys.order(child.order_ref))
            args[3] = child.ts_init
        created = self._record_entry(
            keys=[keys.ENTRY_REFS, keys.ENTRY_ORDERS, keys.ORDERS_INDEX, keys.ORDERS_PENDING, keys.order(parent_ref)]
            + order_keys,
            args=args,
        )
        return bool(created)

    def entry_known(self, parent_ref: str) -> bool:
        """True when ``parent_ref`` was accepted before (as an entry or as a plain order)."""
        return bool(self._client.sismember(keys.ENTRY_REFS, parent_ref)) or bool(
            self._client.exists(keys.order(parent_ref))
        )

    def entries(self) -> dict[str, dict]:
        """Working entries (parent reference → state) that could still fill at the last save."""
        return {k: json.loads(v) for k, v in self._client.hgetall(keys.ENTRY_ORDERS).items()}

    def save_entry(self, parent_ref: str, state: dict | None) -> None:
        """Persist (or, with None, drop once finished) the state of a working entry."""
        if state is None:
            self._client.hdel(keys.ENTRY_ORDERS, parent_ref)
        else:
            self._client.hset(keys.ENTRY_ORDERS, parent_ref, json.dumps(state))

    # --- protective brackets ----------------------------------------------------------------
    def bracket(self, key: str) -> dict | None:
        """The bracket record of contract ``key`` (None before the first one)."""
        raw = self._client.hget(keys.BRACKETS, key)
        return json.loads(raw) if raw else None

    def brackets(self) -> dict[str, dict]:
        """Every bracket record by contract key."""
        return {k: json.loads(v) for k, v in self._client.hgetall(keys.BRACKETS).items()}

    def record_bracket(self, key: str, record: dict, legs: list[tuple[OrderIntent, dict]]) -> None:
        """Persist a new bracket and its legs' intents (PENDING_SEND) and roles in one step."""
        ts = legs[0][0].ts_init if legs else 0
        args: list[str | int] = [key, json.dumps(record), OrderStatus.PENDING_SEND.value, ts]
        for intent, role in legs:
            args += [intent.order_ref, encode(intent).decode(), json.dumps(role)]
        self._record_bracket(
            keys=[keys.BRACKETS, keys.BRACKET_LEGS, keys.ORDERS_INDEX, keys.ORDERS_PENDING]
            + [keys.order(i.order_ref) for i, _ in legs],
            args=args,
        )

    def save_bracket(self, key: str, record: dict | None, event: PositionEvent | None = None) -> None:
        """Replace (or, with None, drop) the bracket record of ``key``; with ``event``, announce it
        to the subscribers in the same transaction (a moved stop is saved and told, or neither)."""
        pipe = self._client.pipeline(transaction=True)
        if record is None:
            pipe.hdel(keys.BRACKETS, key)
        else:
            pipe.hset(keys.BRACKETS, key, json.dumps(record))
        if event is not None:
            pipe.xadd(keys.POSITION_EVENTS_STREAM, {"event": encode(event).decode()})
        pipe.execute()

    def record_position_event(self, event: PositionEvent) -> None:
        """Announce a non-fill position event (the publishers schedule it once per ``event_id``)."""
        self._client.xadd(keys.POSITION_EVENTS_STREAM, {"event": encode(event).decode()})

    def position_events(self) -> list[PositionEvent]:
        """Every announced position event, oldest first (for reports and tests)."""
        return [
            decode(fields["event"], PositionEvent) for _, fields in self._client.xrange(keys.POSITION_EVENTS_STREAM)
        ]

    def bracket_leg(self, order_ref: str) -> dict | None:
        """Role of a bracket leg: {contract, kind: stop|target, label}; None for other orders."""
        raw = self._client.hget(keys.BRACKET_LEGS, order_ref)
        return json.loads(raw) if raw else None

    def trading_state(self) -> TradingState:
        """The risk gate's persisted trading state (read only: the gate owns it)."""
        raw = self._client.hget(keys.TRADING_STATE, "state")
        return TradingState(raw) if raw else TradingState.ACTIVE

    def emergency_event(self, fields: dict[str, str | int | float]) -> None:
        """Append an emergency action to the audit stream."""
        self._client.xadd(keys.EMERGENCY_EVENTS, fields, maxlen=10_000, approximate=True)

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
