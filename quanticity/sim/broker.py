"""A simulated options broker that fills limit orders at realistic prices.

Fill model, applied on every market step against the simulator's option quote:
- a marketable limit (BUY at or above the ask, SELL at or below the bid) fills at the touch —
  never at a better price than the limit — up to ``max_fill_per_step`` contracts per step, so a
  large order fills in parts;
- a limit inside the spread fills at its limit with probability ``passive_fill_rate × (how far
  into the spread it reaches)`` per step, drawn from a seeded generator (deterministic);
- commissions: ``max(min_commission, commission_per_contract × contracts)`` per execution.

Order types and groups (what the router's protective brackets need, with IB's semantics):
- ``STP`` (stop): a SELL stop triggers once the *bid* is at or below ``stop_price`` (a BUY stop on
  the ask at or above it) and then behaves as a market order: it fills at the touch, up to
  ``max_fill_per_step`` per step, until done. Once triggered it stays triggered.
- OCA groups (``oca_group``): IB ``ocaType`` 1, "cancel all remaining": the first execution of any
  member — full or partial — cancels every other working member in the same matching step, before
  any other order is matched, so two members can never both execute. An order placed into a group
  that has already executed is REJECTED (IB refuses it the same way). Types 2/3 (proportional
  reduction) are not simulated: the router rebuilds its brackets instead.
- ``replace(order_ref, new_price)`` modifies the limit (LMT) or the trigger (STP) of a working
  order in place: the reference, the quantity, the fills so far and the group are kept. A finished
  order (filled, cancelled, rejected) cannot be modified: it is returned unchanged and counted in
  ``refused_replaces``.

Orders are keyed by the client's idempotency reference: placing a known reference again returns
the existing order and sends nothing twice. ``state()``/``restore()`` (and the incremental
``order_record``/``load``) persist every field above, so killing the broker actor loses no order,
no trigger and no group.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import msgspec
import numpy as np

from quanticity.messages import BrokerOrder, Fill, OptionContract, OrderIntent, OrderStatus, Side

QuoteSource = Callable[[OptionContract], tuple[float, float] | None]
"""Current (bid, ask) of a contract, or None when the venue has no market for it."""

_TERMINAL = {OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED}


class _WorkingOrder(msgspec.Struct, kw_only=True):
    intent: OrderIntent
    status: OrderStatus
    filled: int = 0
    notional: float = 0.0
    triggered: bool = False  # a STP whose trigger was touched: it now executes as a market order
    replaces: int = 0

    def view(self) -> BrokerOrder:
        return BrokerOrder(
            order_ref=self.intent.order_ref,
            status=self.status,
            filled=self.filled,
            remaining=self.intent.quantity - self.filled,
            avg_price=self.notional / self.filled if self.filled else 0.0,
        )


class SimBroker:
    """Order book of one simulated account."""

    def __init__(
        self,
        seed: int,
        commission_per_contract: float = 0.65,
        min_commission: float = 1.0,
        max_fill_per_step: int = 50,
        passive_fill_rate: float = 0.3,
    ) -> None:
        self.commission_per_contract = commission_per_contract
        self.min_commission = min_commission
        self.max_fill_per_step = max_fill_per_step
        self.passive_fill_rate = passive_fill_rate
        self._rng = np.random.Generator(np.random.PCG64(seed))
        self._orders: dict[str, _WorkingOrder] = {}
        self._executions: list[Fill] = []
        self.duplicate_places = 0  # a client sent a reference it had already sent (must stay 0)
        self.refused_replaces = 0  # modifications of finished orders (refused, nothing changed)
        self.oca_cancels = 0  # members cancelled by an execution in their OCA group
        self._changed: set[str] = set()  # orders changed by matching since the last drain_changed()

    # --- client requests ------------------------------------------------------------------
    def place(self, intent: OrderIntent) -> BrokerOrder:
        """Accept an order (idempotent by ``order_ref``); invalid orders are REJECTED, not raised."""
        existing = self._orders.get(intent.order_ref)
        if existing is not None:
            self.duplicate_places += 1
            return existing.view()
        valid = intent.quantity > 0 and _valid_price(_price_of(intent))
        if valid and intent.oca_group and self._group_executed(intent.oca_group):
            valid = False  # IB: the OCA group has already executed; a late member is refused
        status = OrderStatus.SUBMITTED if valid else OrderStatus.REJECTED
        self._orders[intent.order_ref] = _WorkingOrder(intent=intent, status=status)
        return self._orders[intent.order_ref].view()

    def replace(self, order_ref: str, new_price: float) -> BrokerOrder | None:
        """Modify the limit (LMT) or stop trigger (STP) of a working order; unknown → None.

        The reference, quantity, fills and OCA group are kept (IB: re-place the same order id). A
        finished order is returned unchanged — the modification is refused. A non-positive or
        non-finite price is a client error and raises ``ValueError`` naming the value.
        """
        if not _valid_price(new_price):
            raise ValueError(f"new_price: {new_price!r} for {order_ref} must be a positive finite price")
        order = self._orders.get(order_ref)
        if order is None:
            return None
        if order.status in _TERMINAL:
            self.refused_replaces += 1
            return order.view()
        field = "stop_price" if order.intent.order_type == "STP" else "limit_price"
        order.intent = msgspec.structs.replace(order.intent, **{field: float(new_price)})
        order.replaces += 1
        return order.view()

    def cancel(self, order_ref: str) -> BrokerOrder | None:
        """Cancel a working order; a finished order is returned unchanged; unknown → None."""
        order = self._orders.get(order_ref)
        if order is None:
            return None
        if order.status not in _TERMINAL:
            order.status = OrderStatus.CANCELLED
        return order.view()

    def lookup(self, order_ref: str) -> BrokerOrder | None:
        """The broker's record of ``order_ref``, or None when it never received it."""
        order = self._orders.get(order_ref)
        return order.view() if order else None

    def open_orders(self) -> list[BrokerOrder]:
        """Orders still working."""
        return [o.view() for o in self._orders.values() if o.status not in _TERMINAL]

    def finished_count(self) -> int:
        """Orders no longer working (filled, cancelled, rejected)."""
        return sum(1 for o in self._orders.values() if o.status in _TERMINAL)

    def executions(self, since: int = 0) -> list[Fill]:
        """Executions from sequence number ``since`` on (0 = all)."""
        return self._executions[since:]

    @property
    def execution_count(self) -> int:
        """Number of executions so far (the next sequence number)."""
        return len(self._executions)

    # --- matching -------------------------------------------------------------------------
    def on_market(self, quotes: QuoteSource, now_ns: int, ts_init: int) -> list[Fill]:
        """Match every working order against the current quotes; returns the new executions.

        Orders are matched in placement order (deterministic with the seeded generator); an
        execution cancels the rest of its OCA group at once, so a later member of the same group
        is not matched in this step or any other.
        """
        fills = []
        for order in self._orders.values():
            if order.status in _TERMINAL:
                continue
            market = quotes(order.intent.contract)
            if market is None:
                continue
            was_triggered = order.triggered
            fill = self._match(order, market, now_ns, ts_init)
            if order.triggered != was_triggered:
                self._changed.add(order.intent.order_ref)
            if fill is not None:
                fills.append(fill)
                self._changed.add(order.intent.order_ref)
                if order.intent.oca_group:
                    self._cancel_group(order.intent.oca_group, keep=order.intent.order_ref)
        self._executions.extend(fills)
        return fills

    def _group_executed(self, group: str) -> bool:
        return any(o.intent.oca_group == group and o.filled > 0 for o in self._orders.values())

    def _cancel_group(self, group: str, keep: str) -> None:
        """IB ocaType 1: every other working member of ``group`` is cancelled."""
        for order in self._orders.values():
            if order.intent.oca_group == group and order.intent.order_ref != keep and order.status not in _TERMINAL:
                order.status = OrderStatus.CANCELLED
                self.oca_cancels += 1
                self._changed.add(order.intent.order_ref)

    def drain_changed(self) -> list[str]:
        """References of orders that matching changed (fills, triggers, OCA cancels) since the last
        call, sorted: what the venue must persist after a matching round."""
        changed, self._changed = sorted(self._changed), set()
        return changed

    def _match(self, order: _WorkingOrder, market: tuple[float, float], now_ns: int, ts_init: int) -> Fill | None:
        bid, ask = market
        if not (math.isfinite(bid) and math.isfinite(ask)) or ask <= 0 or bid > ask:
            return None
        intent = order.intent
        if intent.order_type == "STP":
            if not order.triggered:
                stop = intent.stop_price
                order.triggered = bid <= stop if intent.side is Side.SELL else ask >= stop
            if not order.triggered:
                return None
            price = bid if intent.side is Side.SELL else ask
            if price <= 0:
                return None  # triggered, but no bid to sell into: it waits, as a market order would
        else:
            limit = intent.limit_price
            if intent.side is Side.BUY:
                marketable, price = limit >= ask, ask
                reach = (limit - bid) / (ask - bid) if ask > bid else 0.0
            else:
                marketable, price = limit <= bid, bid
                reach = (ask - limit) / (ask - bid) if ask > bid else 0.0
            if not marketable:
                if reach <= 0 or self._rng.random() >= self.passive_fill_rate * min(reach, 1.0):
                    return None
                price = limit
        remaining = intent.quantity - order.filled
        qty = min(remaining, self.max_fill_per_step)
        order.filled += qty
        order.notional += qty * price
        order.status = OrderStatus.FILLED if order.filled == intent.quantity else OrderStatus.PARTIALLY_FILLED
        return Fill(
            ts_event=now_ns,
            ts_init=ts_init,
            exec_id=f"{intent.order_ref}.{order.filled:05d}",
            order_ref=intent.order_ref,
            contract=intent.contract,
            side=intent.side,
            quantity=qty,
            price=round(price, 2),
            commission=round(max(self.min_commission, self.commission_per_contract * qty), 2),
            strategy=intent.strategy,
        )

    # --- persistence ----------------------------------------------------------------------
    def order_record(self, order_ref: str) -> dict[str, Any]:
        """JSON-serialisable record of one order (incremental persistence writes only what changed)."""
        return msgspec.to_builtins(self._orders[order_ref])

    def rng_state(self) -> dict[str, Any]:
        """The fill generator's state (persisted with every matching round)."""
        return self._rng.bit_generator.state

    def load(self, orders: list[dict[str, Any]], executions: list[dict[str, Any]], rng: dict[str, Any] | None) -> None:
        """Rebuild from incremental records (see :meth:`order_record`); duplicates count is not kept."""
        self._orders = {}
        for raw in orders:
            order = msgspec.convert(raw, _WorkingOrder)
            self._orders[order.intent.order_ref] = order
        self._executions = [msgspec.convert(raw, Fill) for raw in executions]
        if rng is not None:
            self._rng.bit_generator.state = rng

    def state(self) -> dict[str, Any]:
        """JSON-serialisable checkpoint: orders, executions and the generator state."""
        return {
            "orders": [msgspec.to_builtins(o) for o in self._orders.values()],
            "executions": [msgspec.to_builtins(f) for f in self._executions],
            "rng": self._rng.bit_generator.state,
            "duplicate_places": self.duplicate_places,
            "refused_replaces": self.refused_replaces,
            "oca_cancels": self.oca_cancels,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Load a checkpoint written by :meth:`state`."""
        self._orders = {}
        for raw in state["orders"]:
            order = msgspec.convert(raw, _WorkingOrder)
            self._orders[order.intent.order_ref] = order
        self._executions = [msgspec.convert(raw, Fill) for raw in state["executions"]]
        self._rng.bit_generator.state = state["rng"]
        self.duplicate_places = int(state.get("duplicate_places", 0))
        self.refused_replaces = int(state.get("refused_replaces", 0))
        self.oca_cancels = int(state.get("oca_cancels", 0))


def _price_of(intent: OrderIntent) -> float:
    """The price that defines the order: the stop trigger of a STP, else the limit."""
    return intent.stop_price if intent.order_type == "STP" else intent.limit_price


def _valid_price(price: float) -> bool:
    return isinstance(price, int | float) and math.isfinite(price) and price > 0
