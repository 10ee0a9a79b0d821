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
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from quanticity.config.models import ExecutionSection
from quanticity.execution.positions import Position
from quanticity.execution.store import ExecutionStore
from quanticity.messages import BrokerOrder, Direction, Fill, OrderIntent, OrderStatus, Side, Signal

NS = 1_000_000_000
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
            else:
                self.stats.duplicate_fills += 1
        return booked

    # --- exits ----------------------------------------------------------------------------
    def exit_signals(self, marks: dict[str, tuple[float, float]], now_ns: int, ts_init: int) -> list[Signal]:
        """Exit signals for open positions: take profit, stop loss, time exit, or 0DTE at the close.

        ``marks`` maps contract key → (bid, ask). The signal id is stable per position and reason,
        so re-evaluating the same position never enqueues a second exit.
        """
        positions = self.store.positions()
        self.store.save_marks({k: (b + a) / 2 for k, (b, a) in marks.items() if k in positions})
        signals = []
        for key, position in positions.items():
            if key not in marks:
                continue
            bid, ask = marks[key]
            reason = self._exit_reason(position, (bid + ask) / 2, now_ns)
            if reason is None:
                continue
            signals.append(
                Signal(
                    ts_event=now_ns,
                    ts_init=ts_init,
                    signal_id=f"exit:{key.replace(' ', '_')}:{position.opened_ns}:{position.quantity}",
                    strategy=position.strategy,
                    symbol=position.contract.underlying,
                    direction=Direction.BEARISH if position.direction is Direction.BULLISH else Direction.BULLISH,
                    contract=position.contract,
                    confidence=100,
                    reference_bid=bid,
                    reference_ask=ask,
                    reason=reason,
                    inputs={"mark": (bid + ask) / 2, "avg_price": position.avg_price, "computed_at": float(now_ns)},
                    origin_ts_init=ts_init,
                    side=Side.SELL,
                    quantity=position.quantity,
                )
            )
        return signals

    def _exit_reason(self, position: Position, mark: float, now_ns: int) -> str | None:
        if not math.isfinite(mark) or position.avg_price <= 0:
            return None
        change_pct = (mark / position.avg_price - 1) * 100
        if change_pct >= self.config.take_profit_pct:
            return f"take profit {change_pct:+.1f}%"
        if change_pct <= -self.config.stop_loss_pct:
            return f"stop loss {change_pct:+.1f}%"
        if now_ns - position.opened_ns >= self.config.exit_after_s * NS:
            return f"time exit after {(now_ns - position.opened_ns) / NS / 60:.0f} min"
        return None
