"""OrderRouter actor: one per account; reconciles with the broker before it takes new work.

Entries are worked by the router's entry policy on every tick from the feed, every position
carries a protective OCA bracket at the venue, and the emergency flatten / cancel-all of the
root supervisor land here (see :mod:`quanticity.execution.router`).
"""

from __future__ import annotations

import os
import time

import ray
from ray.exceptions import GetTimeoutError, RayActorError

from actors.common import BROKER, ActorShell, Peers
from quanticity import keys
from quanticity.config.models import QuanticityConfig
from quanticity.execution.router import BrokerError, OrderRouter
from quanticity.execution.store import ExecutionStore
from quanticity.lockstep import sorted_exits, tick_contracts
from quanticity.messages import BrokerOrder, Fill, OrderIntent, OrderStatus, Side, encode
from quanticity.session import RunSpec
from quanticity.store.client import SignalQueue

BROKER_TIMEOUT_S = 5.0


class CrashingBroker:
    """Fault injection for drills and tests: the router process dies at a chosen point of a send.

    ``after_intent`` — the intent is durable in Redis but never reached the venue;
    ``after_send`` — the venue accepted the order but the router died before recording the ack.
    Both are the windows in which a naive router would lose an order or send it twice.
    """

    def __init__(self, inner: BrokerActorClient, point: str) -> None:
        self._inner = inner
        self._point = point

    def place(self, intent: OrderIntent) -> BrokerOrder:
        if self._point == "after_intent":
            os._exit(1)
        self._inner.place(intent)
        os._exit(1)

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


class BrokerActorClient:
    """The router's :class:`~quanticity.execution.router.Broker`, over the venue actor.

    An unreachable or silent venue raises :class:`BrokerError` — "unknown", never "no order".
    """

    def __init__(self, peers: Peers) -> None:
        self._peers = peers

    def _call(self, method: str, *args: object) -> object:
        broker = self._peers.get(BROKER)
        if broker is None:
            raise BrokerError("broker venue not reachable")
        try:
            return ray.get(getattr(broker, method).remote(*args), timeout=BROKER_TIMEOUT_S)
        except (RayActorError, GetTimeoutError) as exc:
            self._peers.forget(BROKER)
            raise BrokerError(f"broker {method} failed: {type(exc).__name__}") from exc

    def place(self, intent: OrderIntent) -> BrokerOrder:
        return self._call("place", intent)  # type: ignore[return-value]

    def cancel(self, order_ref: str) -> BrokerOrder | None:
        return self._call("cancel", order_ref)  # type: ignore[return-value]

    def replace(self, order_ref: str, new_price: float) -> BrokerOrder | None:
        return self._call("replace", order_ref, new_price)  # type: ignore[return-value]

    def lookup(self, order_ref: str) -> BrokerOrder | None:
        return self._call("lookup", order_ref)  # type: ignore[return-value]

    def executions(self) -> list[Fill]:
        return self._call("executions")  # type: ignore[return-value]

    def open_orders(self) -> list[BrokerOrder]:
        return self._call("open_orders")  # type: ignore[return-value]

    def execution_count(self) -> int:
        return self._call("execution_count")  # type: ignore[return-value]

    def quotes(self, contracts: list) -> dict[str, tuple[float, float]]:
        return self._call("quotes", contracts)  # type: ignore[return-value]


@ray.remote(num_cpus=0, max_restarts=0, max_concurrency=1)
class OrderRouterActor(ActorShell):
    """Shell over :class:`OrderRouter`."""

    kind = "router"

    def __init__(self, name: str, config: QuanticityConfig, spec: RunSpec, redis_url: str) -> None:
        super().__init__(name, config, spec, redis_url)
        self.store = ExecutionStore(self.redis)
        self.broker = BrokerActorClient(self.peers)
        # lock-step: the router's stamps come from the simulated clock too (the backtest's choice), so no
        # wall-clock reading reaches an order record or a bracket intent
        self.router = OrderRouter(
            self.store,
            self.broker,
            config.trading.execution,
            self.clock.now_ns if spec.lockstep else time.time_ns,
            clock=self.clock,
            brackets=True,
        )
        self.queue = SignalQueue(self.redis)
        self.reconcile_result: dict[str, int] = {}
        self._try_reconcile()

    def _try_reconcile(self) -> bool:
        try:
            self.reconcile_result = self.router.reconcile()
            self.log.info("reconciled with broker", extra=self.reconcile_result)
        except BrokerError as exc:
            self.log.warning("reconcile failed; refusing new work until it succeeds", extra={"error": str(exc)})
        return self.router.ready

    def submit(self, intent: OrderIntent) -> OrderStatus:
        """Record then send once: entries are worked by the entry policy from the contract's
        current quote (:meth:`OrderRouter.submit_entry`), exits go out as they are
        (:meth:`OrderRouter.submit`)."""
        if not self.router.ready and not self._try_reconcile():
            raise BrokerError("router not reconciled with the broker")
        started = time.perf_counter()
        if intent.side is Side.BUY:
            try:
                quote = self.broker.quotes([intent.contract]).get(intent.contract.key)
            except BrokerError:
                quote = None  # worked from the gate's limit until the first quote (see submit_entry)
            status = self.router.submit_entry(intent, quote)
        else:
            status = self.router.submit(intent)
        self.events += 1
        self.latency.add(time.perf_counter() - started)
        return status

    def arm_crash(self, point: str) -> str:
        """Fault injection: die at ``point`` ("after_intent" or "after_send") of the next send."""
        if point not in ("after_intent", "after_send"):
            raise ValueError(f"point: {point!r} is not after_intent or after_send")
        self.router.broker = CrashingBroker(self.broker, point)
        return point

    def on_fills(self, fills: list[Fill]) -> int:
        """Executions pushed by the venue; replays are ignored by execution id."""
        return self.router.on_fills(fills)

    def on_tick(self, now_ns: int) -> int:
        """Catch up on missed executions, work the entries, revalue positions, keep the brackets in
        line, enqueue due exits; returns exits enqueued."""
        if not self.router.ready and not self._try_reconcile():
            return 0
        try:
            if self.broker.execution_count() != self.store.booked_count():
                self.router.on_fills(self.broker.executions())  # a push was lost: replay, de-duplicated
        except BrokerError:
            return 0
        contracts = tick_contracts(
            (p.contract for p in self.store.positions().values()),
            (o.intent.contract for o in self.router.entries.working()),
        )
        if not contracts:
            return 0
        try:
            quotes = self.broker.quotes(contracts)
        except BrokerError:
            return 0
        enqueued = 0
        ts_init = now_ns if self.spec.lockstep else time.time_ns()
        for signal in sorted_exits(self.router.on_tick(quotes, now_ns, ts_init)):
            entry = self.queue.enqueue_once(
                keys.signal_dedupe(signal.signal_id), keys.SIGNALS_STREAM, encode(signal).decode(), 24 * 3600
            )
            enqueued += entry is not None
        return enqueued

    def reconcile(self) -> dict[str, int]:
        """Reconcile now (after a venue reconnect); raises when the venue does not answer."""
        self.reconcile_result = self.router.reconcile()
        return self.reconcile_result

    def cancel(self, order_ref: str) -> OrderStatus | None:
        """Cancel one order."""
        return self.router.cancel(order_ref)

    def cancel_all(self) -> int:
        """Emergency cancel of every working order (and of every order still in doubt)."""
        if not self.router.ready and not self._try_reconcile():
            raise BrokerError("router not reconciled with the broker")
        return self.router.cancel_all()

    def flatten(self, emergency_id: str, reason: str) -> dict[str, object]:
        """Emergency: cancel every working order, then close every position at its bid."""
        if not self.router.ready and not self._try_reconcile():
            raise BrokerError("router not reconciled with the broker")
        positions = self.store.positions()
        quotes = self.broker.quotes([p.contract for p in positions.values()]) if positions else {}
        report = self.router.flatten(quotes, self.clock.now_ns(), emergency_id, reason)
        return {"cancelled": report.cancelled, "orders": report.orders, "unflattened": report.unflattened}

    def working_entries(self) -> list[dict[str, object]]:
        """The entries being worked (tests and the CLI inspect them)."""
        return [
            {"order_ref": o.order_ref, "state": o.state.value, "filled": o.filled, "children": len(o.children)}
            for o in self.router.entries.working()
        ]

    def ping(self):  # noqa: ANN201 - same as ActorShell.ping
        if not self.router.ready or self.store.pending_send():
            self._try_reconcile()  # orders in doubt are settled with the broker, never re-sent blindly
        return super().ping()

    def stats(self) -> dict[str, float]:
        s = self.router.stats
        out = {
            "ready": float(self.router.ready),
            "submitted": s.submitted,
            "duplicate_intents": s.duplicates,
            "send_failures": s.send_failures,
            "fills": s.fills,
            "duplicate_fills": s.duplicate_fills,
            "entries": s.entries,
            "working_entries": len(self.router.entries.working()),
            "chases": s.chases,
            "spread_cancels": s.spread_cancels,
            "brackets_placed": s.brackets_placed,
            "bracket_replaces": s.bracket_replaces,
            "stop_moves": s.stop_moves,
            "bracket_errors": s.bracket_errors,
            "exit_guard_rejects": s.exit_guard_rejects,
            "lifecycle_errors": s.lifecycle_errors,
        }
        if s.tick_to_order_s:
            recent = sorted(s.tick_to_order_s[-2048:])
            out["tick_to_order_p50_ms"] = recent[len(recent) // 2] * 1e3
        return out

    def tick_to_order(self) -> list[float]:
        """Every tick-to-order latency measured (seconds), for the pipeline benchmark."""
        return list(self.router.stats.tick_to_order_s)
