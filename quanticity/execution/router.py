"""The order router's logic: at-most-once submission, reconciliation, fills, exits.

Submission protocol (SPEC §3, §9):
1. the intent is written to Redis as PENDING_SEND under its idempotency reference — if the
   reference is already there, nothing is sent again;
2. the order is sent to the broker exactly once;
3. the broker's acknowledgement clears the pending mark. If the acknowledgement is lost (the
   router died, the call timed out), the order stays PENDING_SEND and :meth:`reconcile` asks the
   broker about it by reference: a known order is adopted, an order the broker positively does not
   know is sent then — never blindly re-sent, never assumed "flat".

Fills are booked once per execution id, whatever order or how many times they arrive.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Protocol

from quanticity.calendar import ET
from quanticity.config.models import ExecutionSection
from quanticity.execution.exits import ExitPlan
from quanticity.execution.store import ExecutionStore
from quanticity.messages import BrokerOrder, Direction, Fill, OptionContract, OrderIntent, OrderStatus, Side, Signal
from quanticity.risk.gate import order_ref_for

NS = 1_000_000_000
EXIT_ORDER_TIMEOUT_S = 60.0
"""An exit signal with no order after this long (simulated) was denied: its contracts are released."""
log = logging.getLogger("quanticity.execution")


class BrokerError(RuntimeError):
    """The broker could not be reached or did not answer: the outcome of the request is unknown."""


class Broker(Protocol):
    """What the router needs from a broker (the simulator now, IBKR through ib_async later)."""

    def place(self, intent: OrderIntent) -> BrokerOrder: ...

    def cancel(self, order_ref: str) -> BrokerOrder | None: ...

    def lookup(self, order_ref: str) -> BrokerOrder | None:
        """The broker's record of ``order_ref``; None only when the broker positively has none."""
        ...

    def executions(self) -> list[Fill]: ...

    def open_orders(self) -> list[BrokerOrder]: ...


@dataclass
class RouterStats:
    """Counters the router reports in its heartbeat."""

    submitted: int = 0
    duplicates: int = 0
    send_failures: int = 0
    fills: int = 0
    duplicate_fills: int = 0
    reconciled: int = 0
    tick_to_order_s: list[float] = field(default_factory=list)


class OrderRouter:
    """Owns orders, fills, positions and P&L for one account."""

    def __init__(
        self, store: ExecutionStore, broker: Broker, config: ExecutionSection, wall_ns: Callable[[], int]
    ) -> None:
        self.store = store
        self.broker = broker
        self.config = config
        self.wall_ns = wall_ns
        self.stats = RouterStats()
        self.ready = False

    # --- submission -----------------------------------------------------------------------
    def submit(self, intent: OrderIntent) -> OrderStatus:
        """Record then send ``intent`` once; returns the order's status after this call.

        Raises :class:`BrokerError` only if the router is not reconciled yet (it must not take
        new work before it knows what the broker has).
        """
        if not self.ready:
            raise BrokerError("router not reconciled with the broker yet; refusing new work")
        if not self.store.record_intent(intent):
            self.stats.duplicates += 1
            return self.store.status(intent.order_ref) or OrderStatus.PENDING_SEND
        self.stats.tick_to_order_s.append(max(0, self.wall_ns() - intent.origin_ts_init) / NS)
        return self._send(intent)

    def _send(self, intent: OrderIntent) -> OrderStatus:
        try:
            ack = self.broker.place(intent)
        except BrokerError as exc:
            self.stats.send_failures += 1
            log.warning(
                "send in doubt; left PENDING_SEND for reconcile",
                extra={"order_ref": intent.order_ref, "error": str(exc)},
            )
            return OrderStatus.PENDING_SEND
        self.store.update_from_broker(ack, self.wall_ns())
        self.stats.submitted += 1
        return ack.status

    def cancel(self, order_ref: str) -> OrderStatus | None:
        """Cancel a working order (always allowed, whatever the trading state)."""
        ack = self.broker.cancel(order_ref)
        if ack is not None:
            self.store.update_from_broker(ack, self.wall_ns())
            return ack.status
        return None

    def cancel_all(self) -> int:
        """Emergency: cancel every working order at the broker; returns how many."""
        count = 0
        for order in self.broker.open_orders():
            if self.cancel(order.order_ref) is not None:
                count += 1
        return count

    # --- reconciliation -------------------------------------------------------------------
    def reconcile(self) -> dict[str, int]:
        """Bring Redis in line with the broker; afterwards the router accepts new work.

        Raises :class:`BrokerError` when the broker does not answer: the router then stays not
        ready (new work is refused) rather than assuming anything about the orders in doubt.
        """
        adopted = resent = 0
        for ref in self.store.pending_send():
            known = self.broker.lookup(ref)
            if known is not None:
                self.store.update_from_broker(known, self.wall_ns())
                adopted += 1
                continue
            intent = self.store.intent(ref)
            if intent is None:
                continue
            self._send(intent)
            resent += 1
        booked = self.on_fills(self.broker.executions())
        for order in self.broker.open_orders():
            if self.store.status(order.order_ref) != order.status:
                self.store.update_from_broker(order, self.wall_ns())
        self.ready = True
        self.stats.reconciled += 1
        return {"adopted": adopted, "resent": resent, "fills_booked": booked}

    # --- fills ----------------------------------------------------------------------------
    def on_fills(self, fills: Sequence[Fill]) -> int:
        """Book new executions; replays of known execution ids are ignored. Returns the count booked."""
        booked = 0
        for fill in fills:
            try:
                new = self.store.book_fill(fill)
            except ValueError as exc:
                log.error("fill rejected", extra={"exec_id": fill.exec_id, "error": str(exc)})
                continue
            if new:
                booked += 1
                self.stats.fills += 1
                self._plan_fill(fill)
            else:
                self.stats.duplicate_fills += 1
        return booked

    def _plan_fill(self, fill: Fill) -> None:
        """Keep the position's exit plan in step with its fills (entry grows it, exits shrink it)."""
        key = fill.contract.key
        raw = self.store.exit_plans().get(key)
        plan = ExitPlan.restore(raw) if raw else None
        if fill.side is Side.BUY:
            if plan is None:
                plan = ExitPlan(
                    fill.price,
                    fill.quantity,
                    self._dte_class(fill.contract, fill.ts_event),
                    fill.ts_event,
                    plan_id=key.replace(" ", "_"),
                    exit_session=None,
                )
            else:
                plan.on_entry_fill(fill.quantity, fill.price, fill.exec_id)
        elif plan is not None:
            plan.on_fill(min(fill.quantity, plan.remaining), fill.exec_id)
        if plan is not None:
            self.store.save_exit_plan(key, plan.state() if plan.remaining else None)

    @staticmethod
    def _dte_class(contract: OptionContract, ts_ns: int) -> str:
        """short (0/1 DTE) or long (14 days+); anything between is managed like long-dated."""
        today = datetime.fromtimestamp(ts_ns / NS, tz=UTC).astimezone(ET).date()
        days = (date.fromisoformat(contract.expiry) - today).days
        return "short" if days <= 1 or (days <= 3 and today.weekday() >= 4) else "long"

    # --- exits ----------------------------------------------------------------------------
    def exit_signals(self, marks: dict[str, tuple[float, float]], now_ns: int, ts_init: int) -> list[Signal]:
        """Exit signals from each position's exit plan (SPEC §9 ladders, trailing and hard stops,
        break-even lock, time stop, pre-earnings exit), given ``marks``: contract key → (bid, ask).

        The plan counts contracts already sent to exit orders, so re-evaluating it never sells them
        twice; the signal id (plan, revision, quantities, time) is the same when the same tick is
        replayed after a restart, so the replay is enqueued once. Exit orders whose outcome
        is known (filled, cancelled, or denied — no order after ``EXIT_ORDER_TIMEOUT_S``) release
        their contracts back to the plan.
        """
        positions = self.store.positions()
        self.store.save_marks({k: (b + a) / 2 for k, (b, a) in marks.items() if k in positions})
        self._settle_exit_orders(now_ns)
        plans = self.store.exit_plans()
        today = datetime.fromtimestamp(now_ns / NS, tz=UTC).astimezone(ET).date()
        signals = []
        for key, position in positions.items():
            if key not in marks or key not in plans:
                continue
            plan = ExitPlan.restore(plans[key])
            bid, ask = marks[key]
            held_days = max(0, int((now_ns - plan.state()["opened_ns"]) // (86_400 * NS)))
            for action in plan.on_mark((bid + ask) / 2, now_ns, trading_days_held=held_days, session_date=today):
                quantity = min(action.quantity, position.quantity)
                if quantity <= 0:
                    continue
                signal_id = f"exit:{plan.plan_id}:r{plan.revision}:{quantity}of{position.quantity}:{now_ns}"
                signals.append(
                    Signal(
                        ts_event=now_ns,
                        ts_init=ts_init,
                        signal_id=signal_id,
                        strategy=position.strategy,
                        symbol=position.contract.underlying,
                        direction=Direction.BEARISH if position.direction is Direction.BULLISH else Direction.BULLISH,
                        contract=position.contract,
                        confidence=100,
                        reference_bid=bid,
                        reference_ask=ask,
                        reason=f"{action.reason} (trigger {action.trigger_price:.2f}, mark {action.mark:.2f})",
                        inputs={"mark": (bid + ask) / 2, "avg_price": position.avg_price, "computed_at": float(now_ns)},
                        origin_ts_init=ts_init,
                        side=Side.SELL,
                        quantity=quantity,
                    )
                )
                self.store.track_exit_order(
                    order_ref_for(signal_id), {"contract": key, "quantity": quantity, "created_ns": now_ns}
                )
            self.store.save_exit_plan(key, plan.state())
        return signals

    def _settle_exit_orders(self, now_ns: int) -> None:
        """Release the contracts of exit orders that will not fill (cancelled, rejected, denied)."""
        plans = self.store.exit_plans()
        for ref, record in self.store.exit_orders().items():
            status = self.store.status(ref)
            key = record["contract"]
            if status is OrderStatus.FILLED:
                self.store.track_exit_order(ref, None)
                continue
            dead = status in (OrderStatus.CANCELLED, OrderStatus.REJECTED)
            denied = status is None and now_ns - int(record["created_ns"]) > EXIT_ORDER_TIMEOUT_S * NS
            if not (dead or denied):
                continue
            self.store.track_exit_order(ref, None)
            if key in plans:
                plan = ExitPlan.restore(plans[key])
                unfilled = min(int(record["quantity"]), plan.pending)
                if unfilled > 0:
                    plan.release(unfilled)
                    self.store.save_exit_plan(key, plan.state())
                    plans[key] = plan.state()
