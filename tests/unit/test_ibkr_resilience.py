"""The IBKR connector under TWS's failure modes: restarts, rollbacks, reconnects, a held client id.

Real ``ib_async`` clients against the loopback TWS simulator (port 0); simulated market time
moves only through ``sim.step``. Waits are bounded polls (``until``) on observable state.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis
from ib_async import IB
from redis.backoff import NoBackoff
from redis.retry import Retry

from quanticity import keys
from quanticity.clock import SimulatedClock
from quanticity.config import QuanticityConfig
from quanticity.messages import OrderStatus, TradingState
from quanticity.sim.tws import In, TwsSimulator
from quanticity.store.embedded import free_port
from quanticity.venues.ibkr import (
    BackoffSpec,
    IbkrBroker,
    IbkrConnection,
    LinkState,
    OrderIdStoreError,
    RedisOrderIdFloor,
)
from quanticity.venues.ibkr.backoff import Backoff
from quanticity.venues.ibkr.broker import ACCOUNT_TAGS
from tests.async_helpers import until
from tests.tws_helpers import CONTRACT, START_NS, ibkr_config, intent, tws_sim

pytestmark = pytest.mark.unit

EXECUTION_CLIENT = 201
IBKR_FLOOR_KEY = keys.IBKR_ORDER_ID_FLOOR


def run(config: QuanticityConfig, body: Callable[[TwsSimulator], Awaitable[None]], **sim_overrides: Any) -> None:
    """Start a SPY simulator, run ``body`` against it, stop it."""

    async def main() -> None:
        sim = tws_sim(config, ["SPY"], **sim_overrides)
        await sim.start()
        try:
            await body(sim)
        finally:
            await sim.stop()

    asyncio.run(main())


def sim_positions(sim: TwsSimulator) -> dict[str, float]:
    """The simulator's positions keyed like the broker's (contract key)."""
    out = {}
    for con_id, qty in sim.positions().items():
        listing = sim.contracts.by_id(con_id)
        assert listing is not None and listing.option is not None
        out[listing.option.key] = qty
    return out


def ask(sim: TwsSimulator) -> float:
    return sim.market.option_quote(CONTRACT).ask


# --- 1. order ids across a restart -----------------------------------------------------------
def test_rollback_after_restart_never_reuses_an_id(config: QuanticityConfig, redis_client: redis.Redis) -> None:
    async def body(sim: TwsSimulator) -> None:
        cfg = ibkr_config(sim.port)
        conn = IbkrConnection(cfg, "execution", order_ids=RedisOrderIdFloor(redis_client, EXECUTION_CLIENT))
        broker = IbkrBroker(conn)
        await conn.start()
        for i in range(12):
            await broker.place(intent(f"p{i}", 1, 0.01))  # passive: far below the bid, never fills
            cancelled = await broker.cancel(f"p{i}")
            assert cancelled is not None and cancelled.status is OrderStatus.CANCELLED
        used = {o.order_id for o in sim.engine.orders()}
        assert len(used) == 12 and not sim.engine.open_orders(None)
        await conn.stop()  # the actor dies …
        sim.rollback_next_order_id(1)  # … and TWS hands out ids below those already used
        # what a restarted actor builds: nothing in memory, only the Redis it shares with its predecessor
        fresh_conn = IbkrConnection(cfg, "execution", order_ids=RedisOrderIdFloor(redis_client, EXECUTION_CLIENT))
        fresh = IbkrBroker(fresh_conn)
        await fresh_conn.start()
        assert fresh_conn.ready and fresh_conn.order_id_floor == max(used) + 1
        ack = await fresh.place(intent("after-restart", 1, 0.01))
        assert sim.stats["orders_rejected"] == 0  # no 103 "duplicate order id"
        assert ack.status is OrderStatus.SUBMITTED
        newest = sim.engine.orders()[-1]
        assert newest.request.order_ref == "after-restart" and newest.order_id > max(used)
        assert [o.order_ref for o in fresh.open_orders()] == ["after-restart"]
        assert [o.request.order_ref for o in sim.engine.open_orders(None)] == ["after-restart"]
        # the floor was written before the order left: a second restart would start above it too
        assert RedisOrderIdFloor(redis_client, EXECUTION_CLIENT).load() == newest.order_id + 1
        await fresh_conn.stop()

    run(config, body)


def test_order_id_floor_only_rises_and_an_unwritable_store_is_counted(
    config: QuanticityConfig, redis_client: redis.Redis
) -> None:
    floor = RedisOrderIdFloor(redis_client, EXECUTION_CLIENT)
    assert floor.load() == 0
    floor.save(40)
    floor.save(7)  # a stale process never lowers it
    assert floor.load() == 40 and redis_client.hget(keys.IBKR_ORDER_ID_FLOOR, str(EXECUTION_CLIENT)) == "40"
    redis_client.hset(keys.IBKR_ORDER_ID_FLOOR, "301", "forty")
    with pytest.raises(OrderIdStoreError, match="'forty' is not an order id"):
        RedisOrderIdFloor(redis_client, 301).load()

    async def body(sim: TwsSimulator) -> None:
        # nothing listens there; no client-side retries, so each refusal is immediate
        down = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
        conn = IbkrConnection(ibkr_config(sim.port), "execution", order_ids=RedisOrderIdFloor(down, EXECUTION_CLIENT))
        broker = IbkrBroker(conn)
        await conn.start()
        assert conn.ready and conn.stats["order_id_floor_unread"] == 1  # counted, not fatal
        ack = await broker.place(intent("without-store", 1, 0.01))
        assert ack.status is OrderStatus.SUBMITTED  # the in-memory floor still protects this process
        assert conn.stats["order_id_floor_unsaved"] >= 1 and IBKR_FLOOR_KEY in conn.last_error
        await conn.stop()

    run(config, body)


def test_reconcile_raises_the_floor_above_ids_tws_still_reports(config: QuanticityConfig) -> None:
    """Without a store, the order ids TWS still reports (executions, open orders) keep a fresh process clear."""

    async def body(sim: TwsSimulator) -> None:
        cfg = ibkr_config(sim.port)
        first = IbkrConnection(cfg, "execution")
        broker = IbkrBroker(first)
        await first.start()
        for ref in ("filled-1", "filled-2"):
            await broker.place(intent(ref, 2, round(ask(sim) + 1.0, 2)))
        sim.step()
        await until(lambda: broker.execution_count == 2, what="the fills")
        # nothing is working: after a restart only the executions tell which ids were used
        # (ib_async itself raises its counter above the open orders it sees, never above executions)
        highest = max(o.order_id for o in sim.engine.orders())
        assert highest == sim.engine.executions[-1].order_id and not sim.engine.open_orders(None)
        await first.stop()
        sim.rollback_next_order_id(1)
        fresh_conn = IbkrConnection(cfg, "execution")  # no store: only what TWS reports protects it
        fresh = IbkrBroker(fresh_conn)
        await fresh_conn.start()
        assert fresh_conn.order_id_floor == highest + 1
        assert (await fresh.place(intent("next", 1, 0.01))).status is OrderStatus.SUBMITTED
        assert sim.stats["orders_rejected"] == 0 and sim.engine.orders()[-1].order_id > highest
        await fresh_conn.stop()

    run(config, body)


# --- 2. account values -----------------------------------------------------------------------
def test_account_values_follow_fills_and_are_reread_after_a_reconnect(config: QuanticityConfig) -> None:
    async def body(sim: TwsSimulator) -> None:
        conn = IbkrConnection(ibkr_config(sim.port), "execution", clock=SimulatedClock(START_NS))
        broker = IbkrBroker(conn)
        assert broker.account_values() == {}  # nothing known yet: unknown, not zero
        await conn.start()

        def matches_sim() -> bool:
            mine, theirs = broker.account_values(), sim.account_values()
            return all(mine.get(tag) == pytest.approx(theirs[tag]) for tag in ACCOUNT_TAGS)

        assert set(ACCOUNT_TAGS) <= set(broker.account_values()) and matches_sim()
        assert broker.account_updated_ns == START_NS and broker.stats["account_syncs"] == 1
        cash_before = broker.account_values()["TotalCashValue"]
        assert cash_before == sim.config.start_cash
        await broker.place(intent("buy", 10, round(ask(sim) + 1.0, 2)))
        sim.step()
        await until(lambda: broker.lookup("buy").status is OrderStatus.FILLED, what="the fill")
        await until(lambda: broker.account_values()["TotalCashValue"] != cash_before, what="cash update")
        fills = broker.executions()
        paid = sum(f.price * f.quantity * 100 + f.commission for f in fills)
        assert cash_before - broker.account_values()["TotalCashValue"] == pytest.approx(paid, abs=0.01)
        assert matches_sim()
        # while disconnected the marks move; the reconnect's sync reads the account again
        sim.drop_connections()
        await until(lambda: not conn.ready, what="the drop")
        for _ in range(5):
            sim.step()
        assert await conn.wait_ready(10)
        assert broker.stats["account_syncs"] == 2 and matches_sim()
        net = broker.account_values()["NetLiquidation"]
        assert net == pytest.approx(sim.account_values()["NetLiquidation"])
        # a figure that is not a number (as the decoder hands it on) is rejected, named and counted;
        # the last good value stays, and a text tag (AccountType) is not a figure at all
        buying_power = broker.account_values()["BuyingPower"]
        conn.ib.wrapper.updateAccountValue("BuyingPower", "n/a", "USD", sim.config.account)
        conn.ib.wrapper.updateAccountValue("AccountType", "INDIVIDUAL", "USD", sim.config.account)
        assert broker.stats["account_values_rejected"] == 1
        assert broker.last_account_error == "account value BuyingPower: 'n/a' is not a number"
        assert broker.account_values()["BuyingPower"] == buying_power and "AccountType" not in broker.account_values()
        await conn.stop()

    run(config, body)


def test_unanswered_account_request_is_counted_and_does_not_block_trading(config: QuanticityConfig) -> None:
    async def body(sim: TwsSimulator) -> None:
        sim.silence(In.REQ_ACCT_DATA)
        conn = IbkrConnection(ibkr_config(sim.port, request_timeout_s=0.5), "execution")
        broker = IbkrBroker(conn)
        await conn.start()
        assert conn.ready and conn.trading_state() is TradingState.ACTIVE  # informational, like P&L
        assert broker.stats["account_unanswered"] == 1 and broker.account_values() == {}
        assert "reqAccountUpdates" in broker.last_account_error
        await conn.stop()

    run(config, body)


# --- 4. daily restart ------------------------------------------------------------------------
def test_daily_restart_reconnects_and_reconciles(config: QuanticityConfig) -> None:
    async def body(sim: TwsSimulator) -> None:
        conn = IbkrConnection(ibkr_config(sim.port), "execution", clock=SimulatedClock(START_NS))
        broker = IbkrBroker(conn)
        await conn.start()
        await broker.place(intent("held", 20, round(ask(sim) + 1.0, 2)))
        assert broker.positions() == {}
        sim.daily_restart(1.5)  # TWS restarts: every client dropped, connects refused for 1.5 s
        await until(lambda: not conn.ready, what="the drop")
        assert conn.trading_state() is TradingState.HALTED
        sim.step()  # the working order fills while nobody is connected
        assert sim_positions(sim) == {CONTRACT.key: 20.0} and broker.execution_count == 0
        await until(lambda: conn.stats["connect_failures"] >= 2, what="refused connects")
        assert not conn.ready and conn.state in (LinkState.CONNECTING, LinkState.DISCONNECTED)
        assert await conn.wait_ready(15)
        assert sim.faults.refused_connections == conn.stats["connect_failures"] >= 2  # each refusal seen at once
        assert conn.stats["connect_failures"] == conn.stats["connect_attempts"] - 2  # the first connect, the last
        assert conn.stats["reconnect_waits"] >= conn.stats["connect_failures"]  # backed off after each failure
        # reconciled from TWS's answers after the restart: the position and the fill of the gap
        assert broker.positions() == sim_positions(sim) == {CONTRACT.key: 20.0}
        assert broker.execution_count == 1 and broker.lookup("held").status is OrderStatus.FILLED
        assert broker.stats["reconciles"] == 2 and conn.trading_state() is TradingState.ACTIVE
        await conn.stop()

    run(config, body)


# --- 5. the backoff bound --------------------------------------------------------------------
def test_default_backoff_schedule_never_exceeds_60_s() -> None:
    spec = BackoffSpec()  # the defaults: 1 s doubling to 60 s, ±20 % jitter
    assert spec.max_s == 60.0 and spec.jitter == 0.2
    for seed in range(20):
        backoff = Backoff(spec.model_copy(update={"seed": seed}))
        delays = [backoff.next_delay() for _ in range(40)]
        assert max(delays) <= 60.0, (seed, max(delays))
        assert all(d > 0 for d in delays)
        assert delays[0] <= 1.2 and delays[-1] >= 60.0 * 0.8  # still exponential, still reaching the cap
    seeded = Backoff(spec.model_copy(update={"seed": 4}))
    again = Backoff(spec.model_copy(update={"seed": 4}))
    assert [seeded.next_delay() for _ in range(12)] == [again.next_delay() for _ in range(12)]
    # the nominal delay before jitter passes the cap from attempt 6 on; a jitter draw above 1 is clipped
    capped = [Backoff(spec.model_copy(update={"seed": s})).next_delay() for s in range(5)]
    assert all(0.8 <= d <= 1.2 for d in capped)


def test_configured_backoff_never_exceeds_its_cap_and_a_long_outage_does_not_overflow() -> None:
    backoff = Backoff(BackoffSpec(initial_s=0.5, max_s=10.0, multiplier=3.0, jitter=1.0, seed=9))
    delays = [backoff.next_delay() for _ in range(5000)]
    assert max(delays) <= 10.0 and min(delays) >= 0.0 and all(math.isfinite(d) for d in delays)


# --- 6. open orders across a reconnect -------------------------------------------------------
def test_working_order_survives_a_reconnect_and_cancels(config: QuanticityConfig) -> None:
    async def body(sim: TwsSimulator) -> None:
        conn = IbkrConnection(ibkr_config(sim.port), "execution", clock=SimulatedClock(START_NS))
        broker = IbkrBroker(conn)
        await conn.start()
        assert (await broker.place(intent("resting", 3, 0.01))).status is OrderStatus.SUBMITTED
        sim.drop_connections()
        await until(lambda: not conn.ready, what="the drop")
        sim.step()  # the market moves; the passive order keeps resting
        assert await conn.wait_ready(10)
        server_open = {o.request.order_ref for o in sim.engine.open_orders(None)}
        assert server_open == {"resting"}
        assert {o.order_ref for o in broker.open_orders()} == server_open
        resting = broker.lookup("resting")
        assert resting is not None and resting.status is OrderStatus.SUBMITTED and resting.remaining == 3
        cancelled = await broker.cancel("resting")  # the live trade object is the re-read one
        assert cancelled is not None and cancelled.status is OrderStatus.CANCELLED
        assert sim.engine.open_orders(None) == [] and broker.open_orders() == []
        await conn.stop()

    run(config, body)


# --- 7. client id in use ---------------------------------------------------------------------
def test_client_id_in_use_backs_off_and_recovers(config: QuanticityConfig) -> None:
    async def body(sim: TwsSimulator) -> None:
        delays: list[float] = []
        holder = IB()
        holder_ready = asyncio.Event()

        async def sleep(delay: float) -> None:
            delays.append(delay)
            await holder_ready.wait()  # the first retry only goes out once the id is taken
            await asyncio.sleep(delay)

        cfg = ibkr_config(sim.port, reconnect=BackoffSpec(initial_s=0.05, max_s=0.4, jitter=0.2, seed=3))
        conn = IbkrConnection(cfg, "execution", sleep=sleep)
        IbkrBroker(conn)
        await conn.start()
        sim.drop_connections(EXECUTION_CLIENT)
        await holder.connectAsync("127.0.0.1", sim.port, clientId=EXECUTION_CLIENT, timeout=5)
        holder_ready.set()
        await until(lambda: conn.stats["client_id_in_use"] >= 5, what="five refusals with 326")
        assert not conn.ready and conn.trading_state() is TradingState.HALTED
        holder.disconnect()  # the other process lets go of the id
        assert await conn.wait_ready(10)
        attempts, refusals = conn.stats["connect_attempts"], conn.stats["client_id_in_use"]
        assert refusals == sim.stats["client_id_in_use"] >= 5
        assert conn.stats["connect_failures"] == refusals  # each refusal failed at once (no connect timeout)
        # no tight loop: the first connect, one attempt per wait, and the one that succeeded
        assert attempts == 1 + len(delays) == refusals + 2
        assert "326" in conn.last_error or "in use" in conn.last_error
        nominal = [min(0.4, 0.05 * 2**n) for n in range(len(delays))]
        assert all(n * 0.8 <= d <= n * 1.2 for d, n in zip(delays, nominal, strict=True))
        assert delays[3] > delays[0] * 4  # the waits grow
        await conn.stop()

    run(config, body)
