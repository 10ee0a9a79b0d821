"""The order router's logic: at-most-once submission, reconciliation, fills, entries, brackets, exits.

Submission protocol (SPEC §3, §9):
1. the intent is written to Redis as PENDING_SEND under its idempotency reference — if the
   reference is already there, nothing is sent again;
2. the order is sent to the broker exactly once;
3. the broker's acknowledgement clears the pending mark. If the acknowledgement is lost (the
   router died, the call timed out), the order stays PENDING_SEND and :meth:`reconcile` asks the
   broker about it by reference: a known order is adopted, an order the broker positively does not
   know is sent then — never blindly re-sent, never assumed "flat".

Every order the router sends goes through that protocol: entry children, bracket legs, exits,
emergency flatten orders.

Entries (:meth:`OrderRouter.submit_entry`) are worked by the :class:`EntryManager` (limit at mid,
chase after ``chase_after_s`` of simulated time to ``mid + chase_fraction × spread``, cancel when
the spread passes ``max_entry_spread_pct``, children of at most ``max_chunk``) on every
:meth:`OrderRouter.on_tick`; the working state is saved in Redis after every change and
re-synchronised with the broker by :meth:`OrderRouter.reconcile`.

With ``brackets=True`` (the live router) every position carries a protective OCA bracket at the
broker (:mod:`quanticity.execution.brackets`), rebuilt whenever its exit plan's bracket revision
moves; the bracket is the only executor of rungs and stops, plan-driven exit signals are only the
exits no resting order can express (time stop, pre-earnings, 0DTE flat before the close), and the
bracket is cancelled — confirmed — before such a signal leaves. ``docs/execution.md`` has the
whole picture. Fills are booked once per execution id, whatever order or how many times they arrive.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol

import msgspec

from quanticity.calendar import ET
from quanticity.clock import Clock, LiveClock
from quanticity.config.models import ExecutionSection
from quanticity.execution.brackets import TARGET, BracketRecord, leg_intents, same_shape
from quanticity.execution.emergency import Unflattened, flatten_actions, flatten_ref
from quanticity.execution.exits import Bracket, ExitPlan, ExitReason
from quanticity.execution.lifecycle import (
    Cancel,
    EntryManager,
    ExecutionPolicy,
    LifecycleError,
    OrderState,
    Place,
    Replace,
    WorkingOrder,
    usable_quote,
)
from quanticity.execution.session_close import ZeroDteFlatSchedule
from quanticity.execution.store import ExecutionStore
from quanticity.messages import (
    BrokerOrder,
    Direction,
    Fill,
    OptionContract,
    OrderIntent,
    OrderStatus,
    PositionEvent,
    PositionEventKind,
    Side,
    Signal,
    TradingState,
)
from quanticity.risk.gate import order_ref_for

NS = 1_000_000_000
EXIT_ORDER_TIMEOUT_S = 60.0
"""An exit signal with no order after this long (simulated) was denied: its contracts are released."""
LIVE_STATUSES = frozenset({OrderStatus.PENDING_SEND, OrderStatus.SUBMITTED, OrderStatus.PARTIALLY_FILLED})
log = logging.getLogger("quanticity.execution")


class BrokerError(RuntimeError):
    """The broker could not be reached or did not answer: the outcome of the request is unknown."""


class Broker(Protocol):
    """What the router needs from a broker (the simulator now, IBKR through ib_async later)."""

    def place(self, intent: OrderIntent) -> BrokerOrder: ...

    def cancel(self, order_ref: str) -> BrokerOrder | None: ...

    def replace(self, order_ref: str, new_price: float) -> BrokerOrder | None:
        """Modify a working order's limit (LMT) or trigger (STP); a finished order comes back unchanged."""
        ...

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
    entries: int = 0
    chases: int = 0
    spread_cancels: int = 0
    brackets_placed: int = 0
    bracket_replaces: int = 0
    bracket_errors: int = 0
    exit_guard_rejects: int = 0
    lifecycle_errors: int = 0
    orphans_cancelled: int = 0
    stop_moves: int = 0
    tick_to_order_s: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class FlattenReport:
    """What an emergency flatten did: orders cancelled, closing orders sent, positions it could not price."""

    cancelled: int
    orders: list[str]
    unflattened: list[dict[str, Any]]


def _status_of(order: WorkingOrder) -> OrderStatus:
    state = order.state
    return OrderStatus.PENDING_SEND if state is OrderState.NEW else OrderStatus(state.value)


def plan_id_for(contract_key: str, first_exec_id: str) -> str:
    """Identifier of a position's exit plan, unique for the position's life (names its brackets)."""
    digest = hashlib.sha1(f"{contract_key}|{first_exec_id}".encode()).hexdigest()[:12]
    return "P" + digest


class OrderRouter:
    """Owns orders, fills, positions and P&L for one account."""

    def __init__(
        self,
        store: ExecutionStore,
        broker: Broker,
        config: ExecutionSection,
        wall_ns: Callable[[], int],
        *,
        clock: Clock | None = None,
        brackets: bool = False,
        flat_schedule: ZeroDteFlatSchedule | None = None,
    ) -> None:
        self.store = store
        self.broker = broker
        self.config = config
        self.wall_ns = wall_ns
        self.clock = clock or LiveClock()
        self.brackets = brackets
        self.policy = ExecutionPolicy(
            chase_after_s=config.chase_after_s,
            chase_fraction=config.chase_fraction,
            max_spread_pct=config.max_entry_spread_pct,
            max_chunk=config.max_chunk,
        )
        self.entries = EntryManager(self.policy)
        self.flat = flat_schedule or ZeroDteFlatSchedule(config.zero_dte_flat_at)
        self.stats = RouterStats()
        self.ready = False

    # --- submission -----------------------------------------------------------------------
    def submit(self, intent: OrderIntent) -> OrderStatus:
        """Record then send ``intent`` once; returns the order's status after this call.

        A SELL that would take the working exit quantity of its contract above the position is
        refused (REJECTED, never recorded nor sent; the exit it belonged to is released after
        ``EXIT_ORDER_TIMEOUT_S`` like a denied one): whatever produced it, the account never
        sells more than it holds. Raises :class:`BrokerError` only if the router is not reconciled yet
        (it must not take new work before it knows what the broker has).
        """
        if not self.ready:
            raise BrokerError("router not reconciled with the broker yet; refusing new work")
        if intent.side is Side.SELL and self.store.status(intent.order_ref) is None:
            key = intent.contract.key
            held = self.store.positions().get(key)
            working = self._working_exit_quantity(key, exclude=intent.order_ref)
            if intent.quantity + working > (held.quantity if held else 0):
                self.stats.exit_guard_rejects += 1
                log.error(
                    "exit refused: it would sell more than is held",
                    extra={"order_ref": intent.order_ref, "quantity": intent.quantity, "working": working},
                )
                return OrderStatus.REJECTED
        if not self.store.record_intent(intent):
            self.stats.duplicates += 1
            return self.store.status(intent.order_ref) or OrderStatus.PENDING_SEND
        self.stats.tick_to_order_s.append(max(0, self.wall_ns() - intent.origin_ts_init) / NS)
        return self._send(intent)

    def submit_entry(self, intent: OrderIntent, quote: tuple[float, float] | None = None) -> OrderStatus:
        """Work an approved entry (BUY) with the entry policy; returns its aggregate status.

        ``quote`` is the contract's current (bid, ask): the children rest at its mid. Without a
        usable quote they rest at the intent's limit until the first quote arrives (see
        :meth:`EntryManager.submit_unquoted`). The working entry and every child's intent are
        durable before the first child is sent; a replayed intent (same reference) sends nothing.
        """
        if not self.ready:
            raise BrokerError("router not reconciled with the broker yet; refusing new work")
        if intent.side is not Side.BUY:
            raise ValueError(f"intent.side: {intent.side} — only BUY entries are worked ({intent.order_ref})")
        known = self.entries.order(intent.order_ref)
        if known is not None or self.store.entry_known(intent.order_ref):
            self.stats.duplicates += 1
            if known is not None:
                return _status_of(known)
            stored = self.store.entries().get(intent.order_ref)
            if stored is not None:
                return _status_of(msgspec.convert(stored, WorkingOrder))
            return self.store.status(intent.order_ref) or OrderStatus.PENDING_SEND
        now = self.clock.now_ns()
        if quote is not None and usable_quote(*quote):
            actions = self.entries.submit(intent, quote[0], quote[1], now)
        else:
            actions = self.entries.submit_unquoted(intent, now)
        order = self.entries.order(intent.order_ref)
        assert order is not None
        places = [a.intent for a in actions if isinstance(a, Place)]
        if not self.store.record_entry(intent.order_ref, msgspec.to_builtins(order), places):
            self.entries.discard(intent.order_ref)
            self.stats.duplicates += 1
            return self.store.status(intent.order_ref) or OrderStatus.PENDING_SEND
        self.stats.entries += 1
        self.stats.spread_cancels += sum(1 for a in actions if isinstance(a, Cancel))
        self.stats.tick_to_order_s.append(max(0, self.wall_ns() - intent.origin_ts_init) / NS)
        for child in places:
            self._send(child)
        self._save_entry(order)
        return _status_of(order)

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
        self.stats.submitted += 1
        self._adopt(ack)
        return ack.status

    def _adopt(self, report: BrokerOrder) -> None:
        """Take the broker's word on one order: the store, and the working entry it is a child of."""
        self.store.update_from_broker(report, self.wall_ns())
        order = self._entry_of(report.order_ref)
        if order is None:
            return
        try:
            order.on_broker(report)
        except LifecycleError as exc:
            self.stats.lifecycle_errors += 1
            log.error("broker report contradicts the entry", extra={"order_ref": report.order_ref, "error": str(exc)})
        self._save_entry(order)

    def _entry_of(self, order_ref: str) -> WorkingOrder | None:
        order = self.entries.order(order_ref)
        if order is None or all(c.order_ref != order_ref for c in order.children):
            return None
        return order

    def _save_entry(self, order: WorkingOrder) -> None:
        """Persist a working entry; a finished one keeps its final record and leaves memory."""
        self.store.save_entry(order.order_ref, msgspec.to_builtins(order))
        if order.done:
            self.entries.drop_finished()

    def cancel(self, order_ref: str) -> OrderStatus | None:
        """Cancel a working order (always allowed, whatever the trading state)."""
        report = self._cancel(order_ref)
        return report.status if report is not None else None

    def _cancel(self, order_ref: str) -> BrokerOrder | None:
        ack = self.broker.cancel(order_ref)
        if ack is not None:
            self._adopt(ack)
            return ack
        if self.store.status(order_ref) is OrderStatus.PENDING_SEND:
            # in doubt and unknown to the broker: closed here so reconcile never sends it later
            # (if a lost request still reaches the broker, reconcile cancels the orphan)
            self.store.mark_cancelled(order_ref, self.wall_ns())
            report = BrokerOrder(order_ref=order_ref, status=OrderStatus.CANCELLED, filled=0, remaining=0, avg_price=0)
            order = self._entry_of(order_ref)
            if order is not None:
                order.on_broker(report)
                self._save_entry(order)
            return report
        return None

    def cancel_all(self, keep: Callable[[str], bool] | None = None) -> int:
        """Emergency: cancel every working order at the broker and every order in doubt; returns how many.

        ``keep`` spares references it accepts (a repeated flatten keeps its own closing orders).
        """
        count = 0
        refs = [o.order_ref for o in self.broker.open_orders()] + self.store.pending_send()
        for ref in refs:
            if keep is not None and keep(ref):
                continue
            if self._cancel(ref) is not None:
                count += 1
        return count

    # --- reconciliation -------------------------------------------------------------------
    def reconcile(self) -> dict[str, int]:
        """Bring Redis in line with the broker; afterwards the router accepts new work.

        Orders in doubt are asked about by reference (adopted if known, sent only if the broker
        positively has none); missed executions are booked; the working entries are reloaded and
        each live child is re-read from the broker; an open order the router no longer wants (a
        bracket leg of an older group, the child of a finished entry) is cancelled. Raises
        :class:`BrokerError` when the broker does not answer: the router then stays not ready (new
        work is refused) rather than assuming anything about the orders in doubt.
        """
        self.entries = EntryManager(self.policy)
        for raw in self.store.entries().values():
            order = msgspec.convert(raw, WorkingOrder)
            if not order.done:
                self.entries.adopt(order)
        adopted = resent = 0
        for ref in self.store.pending_send():
            known = self.broker.lookup(ref)
            if known is not None:
                self._adopt(known)
                adopted += 1
                continue
            intent = self.store.intent(ref)
            if intent is None:
                continue
            self._send(intent)
            resent += 1
        booked = self.on_fills(self.broker.executions())
        for order in self.entries.working():
            for child in order.children:
                if child.live:
                    report = self.broker.lookup(child.order_ref)
                    if report is not None:
                        self._adopt(report)
        orphans = 0
        finished_children = {
            child["order_ref"]
            for raw in self.store.entries().values()
            for child in raw.get("children", [])
            if child.get("state") not in (OrderState.NEW, OrderState.SUBMITTED, OrderState.PARTIALLY_FILLED)
        }
        for order in self.broker.open_orders():
            if self.store.status(order.order_ref) != order.status:
                self.store.update_from_broker(order, self.wall_ns())
            if order.order_ref in finished_children or self._stale_leg(order.order_ref):
                self._cancel(order.order_ref)
                orphans += 1
        self.stats.orphans_cancelled += orphans
        self.ready = True
        self.stats.reconciled += 1
        if self.brackets:
            now = self.clock.now_ns()
            for key in sorted(self.store.positions()):
                self._sync_bracket(key, now)
        return {"adopted": adopted, "resent": resent, "fills_booked": booked, "orphans_cancelled": orphans}

    def _stale_leg(self, order_ref: str) -> bool:
        """A bracket leg that is not part of its position's current bracket."""
        leg = self.store.bracket_leg(order_ref)
        if leg is None:
            return False
        record = BracketRecord.from_dict(self.store.bracket(leg["contract"]))
        return all(current.ref != order_ref for current in record.legs)

    # --- fills ----------------------------------------------------------------------------
    def on_fills(self, fills: Sequence[Fill]) -> int:
        """Book new executions; replays of known execution ids are ignored. Returns the count booked.

        Each execution also advances the working entry it belongs to; with brackets, the
        positions it touched have their bracket rebuilt at once.
        """
        booked = 0
        touched: set[str] = set()
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
                touched.add(fill.contract.key)
            else:
                self.stats.duplicate_fills += 1
            self._entry_fill(fill)
        if self.brackets and self.ready and touched:
            now = self.clock.now_ns()
            for key in sorted(touched):
                self._sync_bracket(key, now)
        return booked

    def _entry_fill(self, fill: Fill) -> None:
        order = self._entry_of(fill.order_ref)
        if order is None:
            return
        try:
            changed = order.on_fill(fill)
        except LifecycleError as exc:
            self.stats.lifecycle_errors += 1
            log.error("execution contradicts the entry", extra={"exec_id": fill.exec_id, "error": str(exc)})
            return
        if changed:
            self._save_entry(order)

    def _plan_fill(self, fill: Fill) -> None:
        """Keep the position's exit plan in step with its fills (entry grows it, exits shrink it).

        A fill of a bracket target tells the plan which rung it sold, so that rung is not offered again.
        """
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
                    plan_id=plan_id_for(key, fill.exec_id),
                    exit_session=None,
                    broker_bracket=self.brackets,
                    opened_by=fill.exec_id,
                )
            else:
                plan.on_entry_fill(fill.quantity, fill.price, fill.exec_id)
        elif plan is not None:
            leg = self.store.bracket_leg(fill.order_ref)
            rung = leg["label"] if leg is not None and leg["kind"] == TARGET else None
            try:
                plan.on_fill(min(fill.quantity, plan.remaining), fill.exec_id, rung=rung)
            except ValueError as exc:
                log.error("exit fill not applied to the plan", extra={"exec_id": fill.exec_id, "error": str(exc)})
                return
        if plan is not None:
            self.store.save_exit_plan(key, plan.state() if plan.remaining else None)

    @staticmethod
    def _dte_class(contract: OptionContract, ts_ns: int) -> str:
        """short (0/1 DTE) or long (14 days+); anything between is managed like long-dated."""
        today = datetime.fromtimestamp(ts_ns / NS, tz=UTC).astimezone(ET).date()
        days = (date.fromisoformat(contract.expiry) - today).days
        return "short" if days <= 1 or (days <= 3 and today.weekday() >= 4) else "long"

    # --- the periodic tick ----------------------------------------------------------------
    def on_tick(self, quotes: dict[str, tuple[float, float]], now_ns: int, ts_init: int) -> list[Signal]:
        """One router tick at simulated time ``now_ns`` with the current ``quotes`` (key → bid, ask).

        Works the entries (chase, spread cancel, 0DTE entries cancelled at the flat time), then
        the exits (:meth:`exit_signals`), then — with brackets — brings every position's bracket
        in line with its plan. Returns the exit signals to enqueue.
        """
        self._work_entries(quotes, now_ns)
        signals = self.exit_signals(quotes, now_ns, ts_init)
        if self.brackets:
            for key in sorted(self.store.positions()):
                self._sync_bracket(key, now_ns)
        return signals

    def _work_entries(self, quotes: dict[str, tuple[float, float]], now_ns: int) -> None:
        working = self.entries.working()
        if not working:
            return
        keys = {o.intent.contract.key for o in working}
        limits = {c.order_ref: (c.limit, c.replaces) for o in working for c in o.children}
        actions: list[Place | Replace | Cancel] = list(
            self.entries.on_quotes({k: q for k, q in quotes.items() if k in keys}, now_ns)
        )
        for order in working:
            if self.flat.due(order.intent.contract, now_ns):
                for child in order.children:
                    if child.live and child.cancel_reason is None:
                        child.cancel_reason = "0DTE flat time"
                        actions.append(Cancel(child.order_ref, "0DTE flat time"))
        for action in actions:
            order = self._entry_of(action.order_ref) if not isinstance(action, Place) else None
            if order is None:
                continue
            child = order.child(action.order_ref)
            if isinstance(action, Replace):
                try:
                    ack = self.broker.replace(action.order_ref, action.new_limit)
                except (BrokerError, ValueError) as exc:
                    log.warning("chase not applied", extra={"order_ref": action.order_ref, "error": str(exc)})
                    ack = None
                if ack is None or ack.status not in LIVE_STATUSES:
                    child.limit, child.replaces = limits[action.order_ref]  # not modified: retried next tick
                    if ack is not None:
                        self._adopt(ack)
                    continue
                self.stats.chases += 1
                self.store.record_working_limit(action.order_ref, action.new_limit)
                self._adopt(ack)
            elif action.at_broker:
                if "spread" in action.reason:
                    self.stats.spread_cancels += 1
                try:
                    self._cancel(action.order_ref)
                except BrokerError as exc:
                    child.cancel_reason = None  # asked again on the next tick
                    log.warning("entry cancel in doubt", extra={"order_ref": action.order_ref, "error": str(exc)})
            self._save_entry(order)

    # --- exits ----------------------------------------------------------------------------
    def exit_signals(self, marks: dict[str, tuple[float, float]], now_ns: int, ts_init: int) -> list[Signal]:
        """Exit signals from each position's exit plan, given ``marks``: contract key → (bid, ask).

        Without brackets: SPEC §9 ladders, trailing and hard stops, break-even lock, time stop,
        pre-earnings exit. With brackets the rungs and stops rest at the broker, so only the time
        stop and the pre-earnings exit come from here — and, in both modes, the 0DTE flat before
        the close. Before a signal for a bracketed position leaves, its bracket is cancelled and
        the cancel confirmed; if the broker does not answer, or a leg has executions not booked
        yet, nothing is decided for that position this tick (the plan is not saved, the next
        tick decides again with the fills booked).

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
            mid = (bid + ask) / 2
            held_days = max(0, int((now_ns - plan.state()["opened_ns"]) // (86_400 * NS)))
            actions = plan.on_mark(mid, now_ns, trading_days_held=held_days, session_date=today)
            if self.flat.due(position.contract, now_ns):
                actions += plan.close(ExitReason.SESSION_CLOSE, mid, now_ns)
            actions = [a for a in actions if min(a.quantity, position.quantity) > 0]
            if actions and self.brackets and not self._clear_bracket(key, plan.revision):
                continue
            for action in actions:
                quantity = min(action.quantity, position.quantity)
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
                        inputs={"mark": mid, "avg_price": position.avg_price, "computed_at": float(now_ns)},
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
                unfilled = min(int(record["quantity"]) - self.store.booked_filled(ref), plan.pending)
                if unfilled > 0:
                    plan.release(unfilled)
                    self.store.save_exit_plan(key, plan.state())
                    plans[key] = plan.state()

    def _working_exit_quantity(self, key: str, exclude: str = "") -> int:
        """Contracts of ``key`` that working sell orders could still sell: exit and flatten orders'
        unfilled remainders, plus the bracket's largest live leg (its legs are one-cancels-all)."""
        total = 0
        for ref, record in self.store.exit_orders().items():
            if ref != exclude and record["contract"] == key and self.store.status(ref) in LIVE_STATUSES:
                total += max(0, int(record["quantity"]) - self.store.booked_filled(ref))
        record = BracketRecord.from_dict(self.store.bracket(key))
        live = [leg.quantity - self.store.booked_filled(leg.ref) for leg in self._live_legs(record)]
        return total + max(live, default=0)

    # --- protective brackets --------------------------------------------------------------
    def _live_legs(self, record: BracketRecord) -> list[Any]:
        return [leg for leg in record.legs if self.store.status(leg.ref) in LIVE_STATUSES]

    def _cancel_legs(self, record: BracketRecord) -> bool:
        """Cancel every live leg; False when a leg executed more than is booked (fills in flight).

        Raises :class:`BrokerError` when the broker does not answer (the caller retries later).
        """
        clean = True
        for leg in self._live_legs(record):
            report = self._cancel(leg.ref)
            if report is not None and report.filled > self.store.booked_filled(leg.ref):
                clean = False
        return clean

    def _clear_bracket(self, key: str, revision: int) -> bool:
        """Take the bracket of ``key`` down before a plan-driven exit; True once nothing rests there."""
        record = BracketRecord.from_dict(self.store.bracket(key))
        if not self._live_legs(record):
            return True
        try:
            clean = self._cancel_legs(record)
        except BrokerError as exc:
            self.stats.bracket_errors += 1
            log.warning("bracket cancel in doubt; exit decided next tick", extra={"contract": key, "error": str(exc)})
            return False
        if not clean:
            return False
        self.store.save_bracket(key, msgspec.to_builtins(msgspec.structs.replace(record, legs=[], revision=revision)))
        return True

    def _sync_bracket(self, key: str, now_ns: int) -> None:
        """Bring the bracket of ``key`` in line with its plan; broker trouble is retried next tick."""
        try:
            self._sync_bracket_once(key, now_ns)
        except BrokerError as exc:
            self.stats.bracket_errors += 1
            log.warning("bracket not synchronised; retried next tick", extra={"contract": key, "error": str(exc)})

    def _sync_bracket_once(self, key: str, now_ns: int) -> None:
        record = BracketRecord.from_dict(self.store.bracket(key))
        position = self.store.positions().get(key)
        raw = self.store.exit_plans().get(key)
        if position is None or raw is None:
            if record.seq and self._cancel_legs(record):
                self.store.save_bracket(key, None)  # the position is closed: nothing to protect
            return
        plan = ExitPlan.restore(raw)
        desired = plan.bracket()
        live = self._live_legs(record)
        complete = record.seq > 0 and len(live) == len(record.legs) and not record.suppressed
        if complete and record.revision == desired.revision:
            return
        if self.store.trading_state() is TradingState.HALTED:
            # HALTED allows only cancels: resting legs stay unless they could sell more than is held
            resting = max((leg.quantity - self.store.booked_filled(leg.ref) for leg in live), default=0)
            if resting + self._plan_exit_quantity(key) <= position.quantity and not record.suppressed:
                return
            if self._cancel_legs(record):
                suppressed = msgspec.structs.replace(record, legs=[], suppressed=True)
                self.store.save_bracket(key, msgspec.to_builtins(suppressed))
            return
        stop = record.stop
        if complete and stop is not None and same_shape(record, desired) and desired.stop_price is not None:
            ack = self.broker.replace(stop.ref, desired.stop_price)
            if ack is not None and ack.status in LIVE_STATUSES:
                moved = self._stop_moved(plan, key, stop.price, desired.stop_price, desired, now_ns)
                stop.price = desired.stop_price
                stop.label = desired.stop_reason or stop.label
                record.revision = desired.revision
                self.store.save_bracket(key, msgspec.to_builtins(record), moved)
                self.stats.bracket_replaces += 1
                return
            if ack is not None:
                self._adopt(ack)  # the stop is gone (executed or cancelled): rebuild below
        if not self._cancel_legs(record):
            return  # a leg executed: its fills arrive, the plan moves, the next sync rebuilds
        other = self._plan_exit_quantity(key)
        if desired.quantity + other > position.quantity:
            self.stats.exit_guard_rejects += 1
            log.error(
                "bracket not placed: it would sell more than is held",
                extra={"contract": key, "bracket": desired.quantity, "other_exits": other, "held": position.quantity},
            )
            return
        previous_stop = stop.price if stop is not None else None
        moved = self._stop_moved(plan, key, previous_stop, desired.stop_price, desired, now_ns)
        if moved is not None:
            # announced before the legs are recorded: a crash in between re-announces the same
            # event id on the next sync (the publishers schedule it once), never loses it
            self.store.record_position_event(moved)
        new, legs = leg_intents(
            desired,
            plan_id=plan.plan_id,
            seq=record.seq + 1,
            contract=position.contract,
            strategy=position.strategy,
            now_ns=now_ns,
            ts_init=self.wall_ns(),
        )
        self.store.record_bracket(key, msgspec.to_builtins(new), legs)
        for intent, _ in legs:
            self._send(intent)
        if legs:
            self.stats.brackets_placed += 1

    def _stop_moved(
        self, plan: ExitPlan, key: str, old: float | None, new: float | None, desired: Bracket, now_ns: int
    ) -> PositionEvent | None:
        """The subscribers' "stop moved" event when the protective stop goes up; None otherwise.

        Only raises are news (trail, break-even lock): the first placement is in the entry alert,
        and a stop never moves down. The id names the plan revision, so the same move announced
        again after a restart is one message.
        """
        if old is None or new is None or new <= old + 1e-9:
            return None
        self.stats.stop_moves += 1
        return PositionEvent(
            ts_event=now_ns,
            ts_init=self.wall_ns(),
            event_id=f"{plan.plan_id}-stop-r{desired.revision}",
            contract_key=key,
            thread=plan.opened_by,
            kind=PositionEventKind.STOP_MOVED,
            new_stop=new,
            reason=desired.stop_reason or "",
        )

    def _plan_exit_quantity(self, key: str) -> int:
        """Unfilled contracts of ``key`` in exit and flatten orders that are working."""
        total = 0
        for ref, record in self.store.exit_orders().items():
            if record["contract"] == key and self.store.status(ref) in LIVE_STATUSES:
                total += max(0, int(record["quantity"]) - self.store.booked_filled(ref))
        return total

    # --- emergency ------------------------------------------------------------------------
    def flatten(
        self, quotes: dict[str, tuple[float, float]], now_ns: int, emergency_id: str, reason: str
    ) -> FlattenReport:
        """Cancel every working order, then close every position with a sell limit at the bid.

        Each closing order goes through the durable intent path under a reference derived from
        ``emergency_id`` and the contract (the same emergency never sends twice). The plans of the
        flattened positions are closed (their brackets stay down). Exit signals not yet judged are
        written off now: any that is approved later is refused by :meth:`submit`'s guard. A
        position without a usable bid is reported, not guessed at.
        """
        if not self.ready:
            raise BrokerError("router not reconciled with the broker yet; refusing new work")
        own = {flatten_ref(emergency_id, key) for key in self.store.positions()}
        cancelled = self.cancel_all(keep=lambda ref: ref.split("-c")[0] in own)
        for ref, record in self.store.exit_orders().items():
            if self.store.status(ref) is None:  # a signal not judged yet: it has no order to wait for
                record["created_ns"] = now_ns - int((EXIT_ORDER_TIMEOUT_S + 1) * NS)
                self.store.track_exit_order(ref, record)
        self._settle_exit_orders(now_ns)
        positions = self.store.positions()
        plans = self.store.exit_plans()
        actions = flatten_actions(
            {k: (p.contract, p.quantity) for k, p in positions.items()},
            quotes,
            now_ns=now_ns,
            emergency_id=emergency_id,
            strategies={k: p.strategy for k, p in positions.items()},
            max_chunk=self.policy.max_chunk,
        )
        sent: list[str] = []
        unflattened: list[dict[str, Any]] = []
        closed: set[str] = set()
        for action in actions:
            if isinstance(action, Unflattened):
                unflattened.append(
                    {"contract": action.contract_key, "quantity": action.quantity, "reason": action.reason}
                )
                continue
            intent = msgspec.structs.replace(action.intent, ts_init=self.wall_ns())
            key = intent.contract.key
            if self.store.status(intent.order_ref) is not None:
                continue  # sent by an earlier call for the same emergency: never twice
            if key in plans and key not in closed:
                plan = ExitPlan.restore(plans[key])
                bid, ask = quotes[key]
                plan.close(ExitReason.EMERGENCY, (bid + ask) / 2, now_ns)
                self.store.save_exit_plan(key, plan.state())
                closed.add(key)
            self.store.track_exit_order(
                intent.order_ref, {"contract": key, "quantity": intent.quantity, "created_ns": now_ns}
            )
            if self.submit(intent) in LIVE_STATUSES | {OrderStatus.FILLED}:
                sent.append(intent.order_ref)
        log.warning(
            "emergency flatten",
            extra={"reason": reason, "cancelled": cancelled, "orders": len(sent), "unflattened": len(unflattened)},
        )
        return FlattenReport(cancelled=cancelled, orders=sent, unflattened=unflattened)
