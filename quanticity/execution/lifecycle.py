"""Order lifecycle state machine and the entry-order policy of SPEC §9.

Two layers, both pure (no I/O, no clock: time arrives as ``now_ns``):

* :class:`ChildOrder` / :class:`WorkingOrder` track what the broker did with an order. Each child
  is one broker order with an explicit state machine (:data:`ALLOWED_TRANSITIONS`); an illegal
  transition raises :class:`LifecycleError` naming the order and both states, because a broker
  report that contradicts our record means our view of real money is wrong and must be loud. The
  parent's state is *derived* from its children, so it can never disagree with them.
* :class:`EntryManager` turns quotes and time into *actions* (:class:`Place`, :class:`Replace`,
  :class:`Cancel`) that the router carries out: limit at mid, chase after ``chase_after_s`` to
  ``mid + chase_fraction × spread``, cancel when the spread widens past ``max_spread_pct`` % of
  mid, split orders above ``max_chunk`` contracts. Returning actions instead of calling a broker
  keeps every rule unit-testable and lets the router stay the single writer of orders.

Design choices where the spec is silent (all documented on the code that implements them):

* an order of at most ``max_chunk`` contracts keeps the parent reference as its only child
  reference (so one-chunk orders look exactly as before at the broker and in Redis); larger orders
  get children ``{ref}-c1``, ``{ref}-c2``, … placed together;
* buy limits are rounded *down* to the tick: rounding never pays more than the rule allows;
* before the chase the order rests at its initial mid (keeps queue priority); from the chase on it
  is re-priced to ``mid + chase_fraction × spread`` of the current quote whenever that moves by at
  least one tick — up or down — so it never rests at a stale price nor crosses more than allowed;
* a Replace is only issued for an acknowledged child (SUBMITTED / PARTIALLY_FILLED): modifying an
  order whose placement is still in doubt could race the reconcile; a Cancel is issued for any
  live child, in doubt or not, because cancelling is always safe;
* a fill that arrives after the broker confirmed a cancel is *booked* (the contracts are really
  held) and the state stays CANCELLED; a fill on a REJECTED order, an overfill or a fill for
  another contract/side raises;
* a repeated or late acknowledgement (after the first fill, after a cancel) is harmless news and
  changes nothing; a cancel or reject report for a FILLED order, or an acknowledgement of a
  REJECTED one, contradicts the record and raises.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from quanticity.messages import BrokerOrder, Fill, OrderIntent, OrderStatus, Side

NS_PER_SECOND = 1_000_000_000
_EPS = 1e-9  # float tolerance at rule boundaries (a 10.000000000000009 % spread is 10 %)
_TICK_EPS = 1e-6  # in ticks: a price within a millionth of a tick of a tick price is that price


class LifecycleError(RuntimeError):
    """A broker report or request contradicts the recorded lifecycle of an order."""


class OrderState(enum.StrEnum):
    """States of one broker order (SPEC §9): NEW → SUBMITTED → PARTIALLY_FILLED → terminal."""

    NEW = "NEW"  # decided and handed to the router; broker acknowledgement not yet seen
    SUBMITTED = "SUBMITTED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"


TERMINAL_STATES = frozenset({OrderState.FILLED, OrderState.CANCELLED, OrderState.REJECTED})
LIVE_STATES = frozenset({OrderState.NEW, OrderState.SUBMITTED, OrderState.PARTIALLY_FILLED})

ALLOWED_TRANSITIONS: Mapping[OrderState, frozenset[OrderState]] = {
    # A fill may be the first news of an order whose acknowledgement was lost: the fill proves the
    # broker accepted it, so NEW may go straight to PARTIALLY_FILLED / FILLED.
    OrderState.NEW: frozenset(
        {
            OrderState.SUBMITTED,
            OrderState.PARTIALLY_FILLED,
            OrderState.FILLED,
            OrderState.CANCELLED,
            OrderState.REJECTED,
        }
    ),
    OrderState.SUBMITTED: frozenset(
        {OrderState.PARTIALLY_FILLED, OrderState.FILLED, OrderState.CANCELLED, OrderState.REJECTED}
    ),
    # PARTIALLY_FILLED → PARTIALLY_FILLED is the next partial execution.
    OrderState.PARTIALLY_FILLED: frozenset({OrderState.PARTIALLY_FILLED, OrderState.FILLED, OrderState.CANCELLED}),
    OrderState.FILLED: frozenset(),
    OrderState.CANCELLED: frozenset(),
    OrderState.REJECTED: frozenset(),
}


# --- policy ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExecutionPolicy:
    """Entry-order rules of SPEC §9; the integration maps ``ExecutionSection`` onto this.

    Frozen so a running manager can never see its rules change half-way through an order.
    """

    chase_after_s: float = 30.0
    chase_fraction: float = 0.25  # of the full spread (ask − bid), added to mid when chasing a buy
    max_spread_pct: float = 10.0  # cancel when (ask − bid) / mid × 100 exceeds this
    max_chunk: int = 100  # contracts per child order
    tick: float = 0.01

    def __post_init__(self) -> None:
        if not (math.isfinite(self.chase_after_s) and self.chase_after_s >= 0):
            raise ValueError(f"chase_after_s: {self.chase_after_s} must be ≥ 0")
        if not 0 <= self.chase_fraction <= 1:
            raise ValueError(f"chase_fraction: {self.chase_fraction} must be within [0, 1]")
        if not self.max_spread_pct > 0:
            raise ValueError(f"max_spread_pct: {self.max_spread_pct} must be > 0")
        if self.max_chunk < 1:
            raise ValueError(f"max_chunk: {self.max_chunk} must be ≥ 1")
        if not self.tick > 0:
            raise ValueError(f"tick: {self.tick} must be > 0")

    @property
    def chase_after_ns(self) -> int:
        """The chase delay in integer ns, so the 30 s boundary is exact (29.999 s does not chase)."""
        return round(self.chase_after_s * NS_PER_SECOND)


# --- actions -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Place:
    """Send ``intent`` to the broker (the router records it durably first)."""

    intent: OrderIntent


@dataclass(frozen=True)
class Replace:
    """Modify the limit of the working order ``order_ref`` (IBKR: re-place the same order id)."""

    order_ref: str
    new_limit: float
    reason: str = "chase"


@dataclass(frozen=True)
class Cancel:
    """Cancel ``order_ref``; ``at_broker`` is False when the order never left (nothing to send)."""

    order_ref: str
    reason: str
    at_broker: bool = True


Action = Place | Replace | Cancel


# --- helpers -----------------------------------------------------------------------------------
def chunk_quantities(total: int, max_chunk: int) -> list[int]:
    """Split ``total`` contracts into chunks of at most ``max_chunk``, largest first (250 → 100, 100, 50)."""
    if total < 1:
        raise ValueError(f"total: {total} must be ≥ 1")
    if max_chunk < 1:
        raise ValueError(f"max_chunk: {max_chunk} must be ≥ 1")
    full, rest = divmod(total, max_chunk)
    return [max_chunk] * full + ([rest] if rest else [])


def child_refs(parent_ref: str, count: int) -> list[str]:
    """Deterministic child references: the parent ref itself for one chunk, else ``{ref}-c1..n``.

    Derived only from the parent's idempotency reference, so a replayed intent produces the same
    children and the router's at-most-once check holds per child.
    """
    if count == 1:
        return [parent_ref]
    return [f"{parent_ref}-c{n}" for n in range(1, count + 1)]


def floor_to_tick(price: float, tick: float) -> float:
    """Round ``price`` down to the tick (with float tolerance: 1.0299999999 is 1.03, not 1.02)."""
    return _clean(math.floor(price / tick + _TICK_EPS) * tick)


def ceil_to_tick(price: float, tick: float) -> float:
    """Round ``price`` up to the tick (with float tolerance: 1.0000000001 is 1.00, not 1.01)."""
    return _clean(math.ceil(price / tick - _TICK_EPS) * tick)


def _clean(value: float) -> float:
    return round(value, 10)


def usable_quote(bid: float, ask: float) -> bool:
    """A quote the rules can price from: finite, ``0 ≤ bid ≤ ask``, ``ask > 0``."""
    return math.isfinite(bid) and math.isfinite(ask) and bid >= 0 and ask > 0 and bid <= ask


def spread_pct(bid: float, ask: float) -> float:
    """Spread as a percentage of mid (∞ when mid is 0)."""
    mid = (bid + ask) / 2
    return (ask - bid) / mid * 100 if mid > 0 else math.inf


# --- the state machine -------------------------------------------------------------------------
class ChildOrder(msgspec.Struct, kw_only=True):
    """One broker order (a chunk of a parent) and its lifecycle state."""

    order_ref: str
    quantity: int
    limit: float
    state: OrderState = OrderState.NEW
    filled: int = 0
    notional: float = 0.0  # Σ fill qty × price, for the average fill price
    cancel_reason: str | None = None  # set once a Cancel was issued, so it is issued once
    replaces: int = 0
    late_fills: int = 0  # executions booked after the broker confirmed a cancel

    @property
    def remaining(self) -> int:
        """Contracts still to fill."""
        return self.quantity - self.filled

    @property
    def avg_price(self) -> float:
        """Average fill price (0 before the first fill)."""
        return self.notional / self.filled if self.filled else 0.0

    @property
    def live(self) -> bool:
        """True while the order can still fill."""
        return self.state in LIVE_STATES

    def transition(self, new: OrderState, why: str) -> None:
        """Move to ``new`` or raise :class:`LifecycleError` if the table does not allow it."""
        if new not in ALLOWED_TRANSITIONS[self.state]:
            raise LifecycleError(f"order {self.order_ref}: illegal transition {self.state} → {new} ({why})")
        self.state = new


class WorkingOrder(msgspec.Struct, kw_only=True):
    """A parent order (one approved intent) and its child chunks.

    ``state`` is derived from the children, so it is always consistent with what the broker
    reported for each of them. ``exec_ids`` makes :meth:`on_fill` idempotent.
    """

    intent: OrderIntent
    children: list[ChildOrder]
    placed_ns: int
    chased: bool = False
    exec_ids: set[str] = msgspec.field(default_factory=set)

    @property
    def order_ref(self) -> str:
        """The parent's idempotency reference."""
        return self.intent.order_ref

    @property
    def quantity(self) -> int:
        """Contracts ordered in total."""
        return sum(c.quantity for c in self.children)

    @property
    def filled(self) -> int:
        """Contracts filled so far over every child."""
        return sum(c.filled for c in self.children)

    @property
    def avg_price(self) -> float:
        """Average fill price over every child (0 before the first fill)."""
        filled = self.filled
        return sum(c.notional for c in self.children) / filled if filled else 0.0

    @property
    def state(self) -> OrderState:
        """Aggregate state: FILLED/REJECTED when every child is; CANCELLED when done otherwise."""
        states = [c.state for c in self.children]
        if all(s is OrderState.FILLED for s in states):
            return OrderState.FILLED
        if all(s is OrderState.REJECTED for s in states):
            return OrderState.REJECTED
        if all(s in TERMINAL_STATES for s in states):
            return OrderState.CANCELLED  # finished short of the full quantity (IBKR: cancelled, partly filled)
        if self.filled > 0:
            return OrderState.PARTIALLY_FILLED
        if all(s is OrderState.NEW for s in states):
            return OrderState.NEW
        return OrderState.SUBMITTED

    @property
    def done(self) -> bool:
        """True when no child can fill any more."""
        return all(not c.live for c in self.children)

    def child(self, order_ref: str) -> ChildOrder:
        """The child with reference ``order_ref``; :class:`LifecycleError` if it is not ours."""
        for c in self.children:
            if c.order_ref == order_ref:
                return c
        raise LifecycleError(f"order {order_ref}: not a child of {self.order_ref}")

    # --- broker events ------------------------------------------------------------------------
    def on_submitted(self, order_ref: str) -> None:
        """The broker acknowledged the child.

        A repeat or late acknowledgement (it may arrive after the first fill or after a cancel) is
        harmless news and changes nothing; an acknowledgement of a REJECTED order contradicts the
        rejection and raises.
        """
        child = self.child(order_ref)
        if child.state is OrderState.NEW or child.state is OrderState.REJECTED:
            child.transition(OrderState.SUBMITTED, "broker acknowledged")

    def on_cancelled(self, order_ref: str) -> None:
        """The broker confirmed the cancel of the child (repeat confirmations are harmless)."""
        child = self.child(order_ref)
        if child.state is not OrderState.CANCELLED:
            child.transition(OrderState.CANCELLED, "broker confirmed cancel")

    def on_rejected(self, order_ref: str, reason: str = "") -> None:
        """The broker rejected the child."""
        child = self.child(order_ref)
        if child.state is not OrderState.REJECTED:
            child.transition(OrderState.REJECTED, f"broker rejected: {reason}" if reason else "broker rejected")

    def on_fill(self, fill: Fill) -> bool:
        """Book one execution; returns False (and changes nothing) for an already-seen ``exec_id``.

        Raises :class:`LifecycleError` for a fill that cannot belong to this order: another
        contract or side, more than the child's quantity, or a child the broker rejected.
        """
        if fill.exec_id in self.exec_ids:
            return False
        child = self.child(fill.order_ref)
        if fill.contract != self.intent.contract or fill.side is not self.intent.side:
            raise LifecycleError(
                f"order {child.order_ref}: fill {fill.exec_id} is {fill.side} {fill.contract.key}, "
                f"order is {self.intent.side} {self.intent.contract.key}"
            )
        if fill.quantity <= 0:
            raise LifecycleError(f"order {child.order_ref}: fill {fill.exec_id} has quantity {fill.quantity}")
        if fill.quantity > child.remaining:
            raise LifecycleError(
                f"order {child.order_ref}: fill {fill.exec_id} of {fill.quantity} overfills "
                f"({child.filled}/{child.quantity} filled) in state {child.state}"
            )
        if child.state is OrderState.CANCELLED:
            child.late_fills += 1  # the broker executed before the cancel took effect: the contracts are ours
        else:
            target = OrderState.FILLED if fill.quantity == child.remaining else OrderState.PARTIALLY_FILLED
            child.transition(target, f"fill {fill.exec_id} of {fill.quantity}")
        child.filled += fill.quantity
        child.notional += fill.quantity * fill.price
        self.exec_ids.add(fill.exec_id)
        return True

    def on_broker(self, report: BrokerOrder) -> None:
        """Adopt the broker's status of a child (reconcile); fill quantities arrive via :meth:`on_fill`.

        A FILLED / PARTIALLY_FILLED report only proves acceptance here: the contracts are booked
        from executions (with their prices and exec ids), never from a status line.
        """
        status = report.status
        if status is OrderStatus.PENDING_SEND:
            return
        if status in (OrderStatus.SUBMITTED, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED):
            self.on_submitted(report.order_ref)
        elif status is OrderStatus.CANCELLED:
            self.on_cancelled(report.order_ref)
        elif status is OrderStatus.REJECTED:
            self.on_rejected(report.order_ref)


# --- the entry policy --------------------------------------------------------------------------
class EntryManager:
    """Works entry (BUY) orders: places at mid, chases, cancels on wide spreads, chunks.

    The router feeds it intents, quotes, acknowledgements and fills and executes the actions it
    returns; the manager never talks to a broker itself.
    """

    def __init__(self, policy: ExecutionPolicy | None = None) -> None:
        self.policy = policy or ExecutionPolicy()
        self._orders: dict[str, WorkingOrder] = {}
        self._parent_of: dict[str, str] = {}

    # --- queries ------------------------------------------------------------------------------
    @property
    def orders(self) -> Mapping[str, WorkingOrder]:
        """Every order this manager knows, by parent reference."""
        return self._orders

    def order(self, ref: str) -> WorkingOrder | None:
        """The working order of a parent or child reference."""
        parent = self._parent_of.get(ref, ref)
        return self._orders.get(parent)

    def working(self) -> list[WorkingOrder]:
        """Orders that can still fill."""
        return [o for o in self._orders.values() if not o.done]

    # --- inputs -------------------------------------------------------------------------------
    def submit(self, intent: OrderIntent, bid: float, ask: float, now_ns: int) -> list[Action]:
        """Start working ``intent``: one :class:`Place` per chunk at the current mid.

        A reference already known returns no action (an intent delivered twice is placed once).
        With no usable quote or a spread already too wide, nothing is sent and a
        ``Cancel(at_broker=False)`` per child records why.
        """
        if intent.side is not Side.BUY:
            raise ValueError(f"intent.side: {intent.side} — the entry manager only works BUY entries")
        if intent.quantity < 1:
            raise ValueError(f"intent.quantity: {intent.quantity} must be ≥ 1 ({intent.order_ref})")
        if intent.order_ref in self._orders or intent.order_ref in self._parent_of:
            return []
        policy = self.policy
        sizes = chunk_quantities(intent.quantity, policy.max_chunk)
        refs = child_refs(intent.order_ref, len(sizes))
        blocked = self._blocked(bid, ask)
        limit = floor_to_tick((bid + ask) / 2, policy.tick) if blocked is None else intent.limit_price
        children = [ChildOrder(order_ref=r, quantity=q, limit=limit) for r, q in zip(refs, sizes, strict=True)]
        order = WorkingOrder(intent=intent, children=children, placed_ns=now_ns)
        self._orders[intent.order_ref] = order
        for ref in refs:
            self._parent_of[ref] = intent.order_ref
        if blocked is not None:
            actions: list[Action] = []
            for child in children:
                child.cancel_reason = blocked
                child.transition(OrderState.CANCELLED, f"not placed: {blocked}")
                actions.append(Cancel(child.order_ref, blocked, at_broker=False))
            return actions
        return [
            Place(
                msgspec.structs.replace(
                    intent, order_ref=c.order_ref, quantity=c.quantity, limit_price=c.limit, ts_event=now_ns
                )
            )
            for c in children
        ]

    def submit_unquoted(self, intent: OrderIntent, now_ns: int) -> list[Action]:
        """Start working ``intent`` when no current quote of the contract is known.

        The children rest at the intent's own limit (floored to the tick): the risk gate priced it
        from the signal's reference quote moments ago, after checking that quote's spread, at
        ``mid + limit_offset × half-spread`` — never more than the chase rule would allow. From the
        first usable quote on the normal rules apply (spread cancel at once, chase after
        ``chase_after_s`` since placement). A reference already known returns no action.
        """
        if intent.side is not Side.BUY:
            raise ValueError(f"intent.side: {intent.side} — the entry manager only works BUY entries")
        if intent.quantity < 1:
            raise ValueError(f"intent.quantity: {intent.quantity} must be ≥ 1 ({intent.order_ref})")
        if not (math.isfinite(intent.limit_price) and intent.limit_price > 0):
            raise ValueError(f"intent.limit_price: {intent.limit_price} must be a positive price ({intent.order_ref})")
        if intent.order_ref in self._orders or intent.order_ref in self._parent_of:
            return []
        sizes = chunk_quantities(intent.quantity, self.policy.max_chunk)
        refs = child_refs(intent.order_ref, len(sizes))
        limit = max(self.policy.tick, floor_to_tick(intent.limit_price, self.policy.tick))
        children = [ChildOrder(order_ref=r, quantity=q, limit=limit) for r, q in zip(refs, sizes, strict=True)]
        self._orders[intent.order_ref] = WorkingOrder(intent=intent, children=children, placed_ns=now_ns)
        for ref in refs:
            self._parent_of[ref] = intent.order_ref
        return [
            Place(
                msgspec.structs.replace(
                    intent, order_ref=c.order_ref, quantity=c.quantity, limit_price=c.limit, ts_event=now_ns
                )
            )
            for c in children
        ]

    def discard(self, parent_ref: str) -> None:
        """Forget an order that was never recorded (the router found its reference already taken)."""
        order = self._orders.pop(parent_ref, None)
        for child in order.children if order else []:
            self._parent_of.pop(child.order_ref, None)

    def adopt(self, order: WorkingOrder) -> None:
        """Take over a working order restored from the router's store (one order at a time)."""
        self._orders[order.order_ref] = order
        for child in order.children:
            self._parent_of[child.order_ref] = order.order_ref

    def on_quote(self, contract_key: str, bid: float, ask: float, now_ns: int) -> list[Action]:
        """Apply the quote of ``contract_key`` to every live order on that contract.

        Cancel wins over chase: a spread wider than ``max_spread_pct`` % of mid (strictly) cancels
        every live child. Otherwise, once ``chase_after_s`` have passed since placement (``≥``, in
        integer ns), acknowledged children are re-priced to ``mid + chase_fraction × spread``.
        An unusable quote (crossed, NaN, no ask) yields no action: nothing can be judged from it.
        """
        if not usable_quote(bid, ask):
            return []
        actions: list[Action] = []
        for order in self._orders.values():
            if order.done or order.intent.contract.key != contract_key:
                continue
            actions.extend(self._apply_quote(order, bid, ask, now_ns))
        return actions

    def on_quotes(self, quotes: Mapping[str, tuple[float, float]], now_ns: int) -> list[Action]:
        """:meth:`on_quote` for every ``contract key → (bid, ask)``, in key order (deterministic)."""
        actions: list[Action] = []
        for key in sorted(quotes):
            bid, ask = quotes[key]
            actions.extend(self.on_quote(key, bid, ask, now_ns))
        return actions

    def on_submitted(self, order_ref: str) -> None:
        """The broker acknowledged child ``order_ref``."""
        self._require(order_ref).on_submitted(order_ref)

    def on_cancelled(self, order_ref: str) -> None:
        """The broker confirmed the cancel of child ``order_ref``."""
        self._require(order_ref).on_cancelled(order_ref)

    def on_rejected(self, order_ref: str, reason: str = "") -> None:
        """The broker rejected child ``order_ref``."""
        self._require(order_ref).on_rejected(order_ref, reason)

    def on_broker(self, report: BrokerOrder) -> None:
        """Adopt a broker status report (placement ack, cancel ack, reconcile)."""
        self._require(report.order_ref).on_broker(report)

    def on_fill(self, fill: Fill) -> bool:
        """Book an execution of one of our children; False for a duplicate ``exec_id`` or a foreign order."""
        order = self.order(fill.order_ref)
        if order is None or fill.order_ref not in self._parent_of:
            return False
        return order.on_fill(fill)

    def on_fills(self, fills: Iterable[Fill]) -> int:
        """Book many executions; returns how many were new."""
        return sum(1 for f in fills if self.on_fill(f))

    def drop_finished(self) -> list[str]:
        """Forget orders that can no longer fill; returns their parent references."""
        gone = sorted(ref for ref, o in self._orders.items() if o.done)
        for ref in gone:
            for child in self._orders.pop(ref).children:
                self._parent_of.pop(child.order_ref, None)
        return gone

    # --- persistence --------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """JSON-serialisable snapshot, so a restarted router resumes its working orders."""
        return msgspec.json.decode(msgspec.json.encode({"orders": list(self._orders.values())}, order="deterministic"))

    @classmethod
    def restore(cls, state: Mapping[str, Any], policy: ExecutionPolicy | None = None) -> EntryManager:
        """Rebuild a manager from :meth:`state`."""
        manager = cls(policy)
        for raw in state.get("orders", []):
            order = msgspec.convert(raw, WorkingOrder)
            manager._orders[order.order_ref] = order
            for child in order.children:
                manager._parent_of[child.order_ref] = order.order_ref
        return manager

    # --- internals ----------------------------------------------------------------------------
    def _require(self, order_ref: str) -> WorkingOrder:
        order = self.order(order_ref)
        if order is None or order_ref not in self._parent_of:
            raise LifecycleError(f"order {order_ref}: unknown to the entry manager")
        return order

    def _blocked(self, bid: float, ask: float) -> str | None:
        """Why the quote forbids working an entry now (None when it is fine)."""
        if not usable_quote(bid, ask):
            return f"no usable market (bid {bid}, ask {ask})"
        pct = spread_pct(bid, ask)
        if pct > self.policy.max_spread_pct + _EPS:
            return f"spread {pct:.2f}% of mid > {self.policy.max_spread_pct:g}%"
        return None

    def _apply_quote(self, order: WorkingOrder, bid: float, ask: float, now_ns: int) -> list[Action]:
        policy = self.policy
        live = [c for c in order.children if c.live and c.cancel_reason is None]
        if not live:
            return []
        blocked = self._blocked(bid, ask)
        if blocked is not None:
            for child in live:
                child.cancel_reason = blocked
            return [Cancel(c.order_ref, blocked) for c in live]
        if now_ns - order.placed_ns < policy.chase_after_ns:
            return []
        mid = (bid + ask) / 2
        target = floor_to_tick(mid + policy.chase_fraction * (ask - bid), policy.tick)
        reason = "re-peg" if order.chased else "chase"
        actions: list[Action] = []
        acked = [c for c in live if c.state is not OrderState.NEW]  # placement in doubt: never modify before reconcile
        for child in acked:
            if abs(child.limit - target) < policy.tick / 2:
                continue
            child.limit = target
            child.replaces += 1
            actions.append(Replace(child.order_ref, target, reason))
        if acked:
            order.chased = True
        return actions
