"""Simulated broker venue actor: the account's counterparty in a simulated session.

It stands where Interactive Brokers stands live: outside the router, so killing the router
never loses an order the broker accepted. It checkpoints its book to Redis after every change,
so killing the venue itself loses nothing either.
"""

from __future__ import annotations

import json
import time
from datetime import date

import msgspec
import ray
import redis

from actors.common import BROKER, ROUTER, ActorShell
from quanticity import keys
from quanticity.config.models import QuanticityConfig
from quanticity.messages import BrokerOrder, Fill, OptionContract, OrderIntent, UnderlyingMark
from quanticity.session import RunSpec
from quanticity.sim.broker import SimBroker
from quanticity.sim.market import SyntheticMarket


@ray.remote(num_cpus=0, max_restarts=0, max_concurrency=1)
class SimBrokerActor(ActorShell):
    """Shell over :class:`SimBroker`, priced from the feed's underlying marks."""

    kind = "broker"

    def __init__(self, name: str, config: QuanticityConfig, spec: RunSpec, redis_url: str) -> None:
        super().__init__(name, config, spec, redis_url)
        execution = config.trading.execution
        self.broker = SimBroker(
            seed=spec.seed,
            commission_per_contract=execution.commission_per_contract,
            min_commission=execution.min_commission,
        )
        orders = self.redis.hvals(keys.SIM_BROKER_ORDERS)
        if orders:
            meta = self.redis.hgetall(keys.SIM_BROKER_META)
            self.broker.load(
                [json.loads(o) for o in orders],
                [json.loads(e) for e in self.redis.lrange(keys.SIM_BROKER_EXECUTIONS, 0, -1)],
                json.loads(meta["rng"]) if "rng" in meta else None,
            )
            self.broker.duplicate_places = int(meta.get("duplicate_places", 0))
            self.broker.refused_replaces = int(meta.get("refused_replaces", 0))
            self.broker.oca_cancels = int(meta.get("oca_cancels", 0))
        self._saved_executions = self.broker.execution_count
        # a pricing-only twin of the feed's market: same listing and model, driven by the feed's marks
        self.pricing = SyntheticMarket(
            config.market, [], date.fromisoformat(spec.session_date), spec.seed, spec.sim_start_ns, spec.step_ns
        )
        self.marks: dict[str, UnderlyingMark] = {}
        self.now_ns = spec.sim_start_ns

    def _save(self, changed: list[str]) -> None:
        """Persist the changed orders, new executions and generator state in one transaction.

        If Redis is unavailable the venue keeps going; the orders are written with their next change.
        """
        try:
            pipe = self.redis.pipeline(transaction=True)
            for ref in changed:
                pipe.hset(keys.SIM_BROKER_ORDERS, ref, json.dumps(self.broker.order_record(ref)))
            new = self.broker.executions(self._saved_executions)
            if new:
                pipe.rpush(keys.SIM_BROKER_EXECUTIONS, *(msgspec.json.encode(f).decode() for f in new))
            pipe.hset(
                keys.SIM_BROKER_META,
                mapping={
                    "rng": json.dumps(self.broker.rng_state()),
                    "duplicate_places": self.broker.duplicate_places,
                    "refused_replaces": self.broker.refused_replaces,
                    "oca_cancels": self.broker.oca_cancels,
                },
            )
            pipe.execute()
            self._saved_executions += len(new)
        except redis.RedisError as exc:
            self.errors += 1
            self.log.warning("venue checkpoint failed; retried on the next change", extra={"error": str(exc)})

    def _quote(self, contract: OptionContract) -> tuple[float, float] | None:
        if contract.underlying not in self.marks:
            return None
        quote = self.pricing.option_quote(contract, self.now_ns)
        return quote.bid, quote.ask

    # --- market side ----------------------------------------------------------------------
    def on_marks(self, marks: list[UnderlyingMark]) -> int:
        """New underlying marks: match working orders, persist, push executions to the router."""
        started = time.perf_counter()
        fills = self._match(marks, time.time_ns())
        if fills:
            router = self.peers.get(ROUTER)
            if router is not None:
                router.on_fills.remote(fills)
        self.latency.add(time.perf_counter() - started)
        return len(fills)

    def match(self, marks: list[UnderlyingMark], ts_init: int) -> list[Fill]:
        """Lock-step: adopt the step's marks, match and persist, and *return* the executions (stamped
        ``ts_init``, the step's simulated time) — the feed hands them to the router and awaits the
        booking, so the fills are booked before the router ticks."""
        started = time.perf_counter()
        fills = self._match(marks, ts_init)
        self.latency.add(time.perf_counter() - started)
        return fills

    def _match(self, marks: list[UnderlyingMark], ts_init: int) -> list[Fill]:
        for mark in marks:
            self.marks[mark.symbol] = mark
            self.now_ns = max(self.now_ns, mark.ts_event)
        self.pricing.apply_marks(marks)
        self.events += len(marks)
        if not self.broker.open_orders():
            return []
        fills = self.broker.on_market(self._quote, self.now_ns, ts_init)
        changed = self.broker.drain_changed()  # fills, stop triggers, OCA cancels: all persisted
        if changed:
            self._save(changed)
        return fills

    def quotes(self, contracts: list[OptionContract]) -> dict[str, tuple[float, float]]:
        """Current (bid, ask) of each contract the venue can price."""
        out = {}
        for contract in contracts:
            quote = self._quote(contract)
            if quote is not None:
                out[contract.key] = quote
        return out

    # --- client requests ------------------------------------------------------------------
    def place(self, intent: OrderIntent) -> BrokerOrder:
        """Accept an order (idempotent by reference) and persist before acknowledging."""
        order = self.broker.place(intent)
        self._save([intent.order_ref])
        return order

    def cancel(self, order_ref: str) -> BrokerOrder | None:
        """Cancel a working order."""
        order = self.broker.cancel(order_ref)
        if order is not None:
            self._save([order_ref])
        return order

    def replace(self, order_ref: str, new_price: float) -> BrokerOrder | None:
        """Modify a working order's limit or stop price (same reference); persisted before the ack."""
        order = self.broker.replace(order_ref, new_price)
        if order is not None:
            self._save([order_ref])
        return order

    def lookup(self, order_ref: str) -> BrokerOrder | None:
        """The venue's record of ``order_ref`` (None = never received)."""
        return self.broker.lookup(order_ref)

    def open_orders(self) -> list[BrokerOrder]:
        """Working orders."""
        return self.broker.open_orders()

    def execution_count(self) -> int:
        """Number of executions so far (the router compares it with what it booked)."""
        return self.broker.execution_count

    def executions(self) -> list[Fill]:
        """Every execution of the session (the router de-duplicates by execution id)."""
        return self.broker.executions()

    def stats(self) -> dict[str, float]:
        return {
            "executions": self.broker.execution_count,
            "open_orders": len(self.broker.open_orders()),
            "duplicate_places": self.broker.duplicate_places,
            "oca_cancels": self.broker.oca_cancels,
        }

    def audit(self) -> dict[str, int]:
        """Order count and duplicate sends as the venue saw them (fault tests check these)."""
        return {
            "orders": len(self.broker.state()["orders"]),
            "duplicate_places": self.broker.duplicate_places,
            "executions": self.broker.execution_count,
        }


__all__ = ["BROKER", "SimBrokerActor"]
