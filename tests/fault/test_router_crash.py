"""Kill the OrderRouter between intent and broker ack, 20 times: one order per intent, never two.

A second drill does the same with entries large enough to go out as several child orders: each
child reaches the venue exactly once; it ends with the supervisor's emergency cancel-all.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import ray
import redis

from actors.common import BROKER, ROUTER
from quanticity import keys
from quanticity.execution.store import ExecutionStore
from quanticity.messages import Direction, OptionContract, OrderStatus, Right, Side, Signal, encode
from quanticity.risk.gate import order_ref_for
from supervisors.launch import start_system, stop_system
from tests.system_harness import session_spec, system_config, wait_for

pytestmark = pytest.mark.fault
CRASHES = 20


def entry_signal(i: int, now_ns: int, prefix: str = "crash-drill") -> Signal:
    contract = OptionContract("AAPL", "2026-12-04", 230.0 + 2.5 * i, Right.CALL)
    return Signal(
        ts_event=now_ns,
        ts_init=now_ns,
        signal_id=f"{prefix}-{i}",
        strategy="drill",
        symbol="AAPL",
        direction=Direction.BULLISH,
        contract=contract,
        confidence=90,
        reference_bid=2.00,
        reference_ask=2.10,
        reason="fault drill",
        inputs={"computed_at": float(now_ns)},
        origin_ts_init=now_ns,
        side=Side.BUY,
    )


def test_router_killed_between_intent_and_ack_sends_each_order_once(
    ray_session: None,
    redis_client: redis.Redis,
    embedded_redis,
    tmp_path: Path,  # noqa: ANN001
) -> None:
    config = system_config(tmp_path, risk={"max_open_per_direction": 1000, "max_orders_per_minute": 1000})
    ns = config.system.system.namespace
    spec = session_spec(config, minutes=10)
    supervisor = start_system(config, spec, embedded_redis.url, start=False)
    store = ExecutionStore(redis_client)
    try:
        for i in range(CRASHES):
            point = "after_intent" if i % 2 == 0 else "after_send"
            ray.get(ray.get_actor(ROUTER, namespace=ns).arm_crash.remote(point))
            signal = entry_signal(i, spec.sim_start_ns)
            redis_client.xadd(keys.SIGNALS_STREAM, {"signal": encode(signal).decode()})
            ref = order_ref_for(signal.signal_id)
            wait_for(lambda i=i: int(redis_client.hget(keys.RESTARTS, ROUTER) or 0) == i + 1, 60, f"restart {i + 1}")
            wait_for(lambda ref=ref: store.status(ref) is OrderStatus.SUBMITTED, 60, f"order {ref} settled")
        broker = ray.get_actor(BROKER, namespace=ns)
        audit = ray.get(broker.audit.remote())
        assert audit["orders"] == CRASHES, "every intent reached the venue exactly once"
        assert audit["duplicate_places"] == 0, "no reference was sent twice"
        assert store.pending_send() == []
        refs = {order_ref_for(f"crash-drill-{i}") for i in range(CRASHES)}
        assert set(store.all_refs()) == refs
        open_at_venue = {o.order_ref for o in ray.get(broker.open_orders.remote())}
        assert open_at_venue == refs
    finally:
        stop_system(supervisor)


CHUNKED_CRASHES = 6
CHUNKED_RISK = {
    "max_open_per_direction": 1000,
    "max_orders_per_minute": 1000,
    "account_equity": 10_000_000.0,
    "max_contracts_per_order": 250,
    "max_notional_per_order": 1_000_000.0,
}


def test_router_killed_mid_chunked_entry_sends_each_child_once(
    ray_session: None,
    redis_client: redis.Redis,
    embedded_redis,
    tmp_path: Path,  # noqa: ANN001
) -> None:
    config = system_config(tmp_path, risk=CHUNKED_RISK)
    ns = config.system.system.namespace
    spec = session_spec(config, minutes=10)
    supervisor = start_system(config, spec, embedded_redis.url, start=False)
    store = ExecutionStore(redis_client)
    children: set[str] = set()
    try:
        for i in range(CHUNKED_CRASHES):
            point = "after_intent" if i % 2 == 0 else "after_send"
            ray.get(ray.get_actor(ROUTER, namespace=ns).arm_crash.remote(point))
            signal = entry_signal(i, spec.sim_start_ns, prefix="chunk-drill")
            redis_client.xadd(keys.SIGNALS_STREAM, {"signal": encode(signal).decode()})
            ref = order_ref_for(signal.signal_id)
            mine = {f"{ref}-c1", f"{ref}-c2", f"{ref}-c3"}  # 250 contracts: 100 + 100 + 50
            children |= mine
            wait_for(lambda i=i: int(redis_client.hget(keys.RESTARTS, ROUTER) or 0) == i + 1, 60, f"restart {i + 1}")
            wait_for(
                lambda mine=mine: all(store.status(c) is OrderStatus.SUBMITTED for c in mine), 60, f"children of {ref}"
            )
        broker = ray.get_actor(BROKER, namespace=ns)
        audit = ray.get(broker.audit.remote())
        assert audit["orders"] == 3 * CHUNKED_CRASHES, "every child reached the venue exactly once"
        assert audit["duplicate_places"] == 0, "no child reference was sent twice"
        assert store.pending_send() == [] and set(store.all_refs()) == children
        assert {o.order_ref for o in ray.get(broker.open_orders.remote())} == children
        # the emergency cancel-all of the supervisor: HALTED first, every working order cancelled, audited
        result = ray.get(supervisor.cancel_all.remote("drill over"), timeout=120)
        assert result["ok"] and result["cancelled"] == 3 * CHUNKED_CRASHES and result["trading_state"] == "HALTED"
        assert ray.get(broker.open_orders.remote()) == []
        steps = [f["step"] for _, f in redis_client.xrange(keys.EMERGENCY_EVENTS)]
        assert steps == ["requested", "halted", "done"]
    finally:
        stop_system(supervisor)
