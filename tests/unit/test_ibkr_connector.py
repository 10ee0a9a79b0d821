"""The IBKR connector (connection manager, feed, broker adapter) against the TWS simulator.

The real ``ib_async`` client talks to the loopback simulator on port 0; simulated time moves
only through ``sim.advance``/``sim.step`` and a :class:`SimulatedClock` drives the connector's
freshness and depth-rotation timing.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from ib_async import IB, Contract

from quanticity.clock import SimulatedClock
from quanticity.config import QuanticityConfig
from quanticity.config.loader import ConfigError
from quanticity.execution.router import BrokerError
from quanticity.messages import (
    BookSnapshot,
    Message,
    OptionQuote,
    OrderStatus,
    Quote,
    Side,
    Trade,
    TradingState,
)
from quanticity.sim.tws import In, TwsSimulator
from quanticity.venues.ibkr import (
    BackoffSpec,
    DepthRotation,
    IbkrBroker,
    IbkrConfig,
    IbkrConnection,
    IbkrFeed,
    LinkState,
    Rejected,
    load_ibkr_config,
)
from quanticity.venues.ibkr.backoff import Backoff
from quanticity.venues.ibkr.validation import make_book, make_option_quote, make_quote
from tests.async_helpers import until
from tests.tws_helpers import CONTRACT, START_NS, ibkr_config, intent, tws_sim

pytestmark = pytest.mark.unit


class Harness:
    """A simulator plus the connector objects a test asks for."""

    def __init__(self, sim: TwsSimulator, clock: SimulatedClock) -> None:
        self.sim = sim
        self.clock = clock
        self.events: list[Message] = []

    def ask(self) -> float:
        return self.sim.market.option_quote(CONTRACT).ask

    def sim_positions(self) -> dict[str, float]:
        out = {}
        for con_id, qty in self.sim.positions().items():
            listing = self.sim.contracts.by_id(con_id)
            assert listing is not None and listing.option is not None
            out[listing.option.key] = qty
        return out

    def of(self, kind: type[Message]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


def run(
    config: QuanticityConfig,
    body: Callable[[Harness], Awaitable[None]],
    symbols: tuple[str, ...] = ("SPY", "QQQ", "IWM", "AAPL"),
    **sim_overrides: Any,
) -> None:
    async def main() -> None:
        sim = tws_sim(config, list(symbols), **sim_overrides)
        await sim.start()
        harness = Harness(sim, SimulatedClock(START_NS))
        try:
            await body(harness)
        finally:
            await sim.stop()

    asyncio.run(main())


# --- pure logic ------------------------------------------------------------------------------
def test_backoff_is_exponential_capped_and_seeded() -> None:
    spec = BackoffSpec(initial_s=1.0, max_s=8.0, multiplier=2.0, jitter=0.1, seed=42)
    first = [Backoff(spec).next_delay() for _ in range(1)]
    backoff = Backoff(spec)
    delays = [backoff.next_delay() for _ in range(6)]
    assert delays[0] == first[0]  # same seed, same jitter
    for delay, base in zip(delays, [1, 2, 4, 8, 8, 8], strict=True):
        assert base * 0.9 <= delay <= base * 1.1
    backoff.reset()
    assert 0.9 <= backoff.next_delay() <= 1.1


def test_depth_rotation_windows_and_309_capacity_signal() -> None:
    rotation = DepthRotation(["SPY", "QQQ", "IWM", "AAPL", "MSFT"], lines=3, dwell_s=15, retry_after_s=30)
    plan = rotation.plan(0.0)
    assert plan.subscribe == ("SPY", "QQQ", "IWM") and plan.cancel == ()
    assert rotation.plan(10.0).subscribe == ()  # within the dwell nothing moves
    plan = rotation.plan(15.0)  # round robin: the next three wrap around to SPY
    assert plan.subscribe == ("AAPL", "MSFT") and plan.cancel == ("QQQ", "IWM")
    assert rotation.active == {"AAPL", "MSFT", "SPY"}
    rotation.capacity_error("SPY", 16.0)  # another client holds a line
    assert rotation.capacity == 2 and rotation.active == {"AAPL", "MSFT"}
    plan = rotation.plan(30.0)  # next window, two lines: QQQ, IWM
    assert plan.subscribe == ("QQQ", "IWM") and rotation.capacity == 2
    plan = rotation.plan(47.0)  # retry time passed: full width again (AAPL, MSFT, SPY)
    assert rotation.capacity == 3 and rotation.active == {"AAPL", "MSFT", "SPY"}
    assert plan.cancel == ("QQQ", "IWM")


def test_validation_rejects_bad_market_data_with_named_reasons() -> None:
    with pytest.raises(Rejected, match="crossed_book"):
        make_quote("SPY", 590.10, 590.05, 100, 100, 1, 1, 10_000)
    with pytest.raises(Rejected, match="non_positive_price"):
        make_quote("SPY", -1.0, 590.05, 100, 100, 1, 1, 10_000)
    with pytest.raises(Rejected, match="impossible_size"):
        make_quote("SPY", 590.0, 590.05, 1e12, 100, 1, 1, 10_000)
    with pytest.raises(Rejected, match="non_finite_greek"):
        make_option_quote(CONTRACT, 1.0, 1.1, 0.2, math.nan, 0.01, 0.1, -0.2, 590.0, 5, 1, 1)
    with pytest.raises(Rejected, match="impossible_greek"):
        make_option_quote(CONTRACT, 1.0, 1.1, 0.2, 1.5, 0.01, 0.1, -0.2, 590.0, 5, 1, 1)
    with pytest.raises(Rejected, match="unordered_book"):
        make_book("SPY", [(590.0, 1), (590.01, 1)], [(590.02, 1)], 1, 1, 10_000)
    good = make_option_quote(CONTRACT, 0.0, 0.05, 0.2, 0.01, 0.001, 0.01, -0.01, 590.0, 5, 1, 1)
    assert good.bid == 0.0  # a no-bid far OTM option is legal


def test_config_defaults_and_errors_name_file_and_key(tmp_path: Path) -> None:
    config = IbkrConfig()
    assert config.resolved_port == 7497 and IbkrConfig(mode="live").resolved_port == 7496
    assert config.client_ids.for_role("execution") == 201 and config.depth_exchange("SPY") == "ARCA"
    assert config.depth_exchange("QQQ") == "ISLAND" and config.generic_ticks == "106,104,233"
    file = tmp_path / "ibkr.yaml"
    file.write_text("ibkr:\n  pacing_msgs_per_s: 80\n  client_ids: {ingestion: 201}\n")
    with pytest.raises(ConfigError) as err:
        load_ibkr_config(file)
    text = str(err.value)
    assert f"{file}: pacing_msgs_per_s = 80" in text and "client_ids" in text
    file.write_text("ibkr:\n  depth_dwel_s: 5\n")
    with pytest.raises(ConfigError, match="depth_dwel_s = 5: unknown key"):
        load_ibkr_config(file)


# --- connection and feed ---------------------------------------------------------------------
def test_connect_sync_feed_and_freshness(config: QuanticityConfig) -> None:
    async def body(h: Harness) -> None:
        conn = IbkrConnection(ibkr_config(h.sim.port), "ingestion", clock=h.clock)
        feed = IbkrFeed(conn, ["SPY", "QQQ", "IWM", "AAPL"], h.events.append, option_symbols=["SPY"])
        assert not conn.healthy()
        await conn.start()
        assert conn.state is LinkState.READY and h.sim.clients == [101]
        assert len(feed.option_contracts) == 6  # 1 expiry × 3 strikes × call/put around the spot
        expected = {"mkt_data": 4 + 6, "depth": 3, "tick_by_tick": 1}
        await until(lambda: h.sim.hub.counts() == expected, what="every subscription at the server")
        for _ in range(5):
            h.sim.step()
        await until(lambda: h.of(OptionQuote) and h.of(BookSnapshot) and h.of(Trade), what="every kind")
        assert conn.healthy() and conn.trading_state() is TradingState.ACTIVE
        quotes = h.of(Quote)
        assert {q.symbol for q in quotes} == {"SPY", "QQQ", "IWM", "AAPL"} and all(q.bid < q.ask for q in quotes)
        books = [b for b in h.of(BookSnapshot) if b.symbol == "SPY"]
        assert books and len(books[-1].bids) == 10 and len(books[-1].asks) == 10
        option = h.of(OptionQuote)[-1]
        expected = h.sim.market.option_quote(option.contract)
        assert option.delta == pytest.approx(expected.delta) and option.iv == pytest.approx(expected.iv)
        # generic tick 101: the option's open interest, which the dealer exposures weight by
        assert option.open_interest == expected.open_interest > 0
        assert {t.symbol for t in h.of(Trade)} >= {"SPY", "QQQ"}  # tick-by-tick SPY, RT volume the rest
        # clean data; only a message split across TCP reads can show a quote with one side or a book
        # half-way through its row updates — rejected (never passed on), and rare
        assert set(+feed.rejected) <= {"missing", "unordered_book", "crossed_book"}
        assert feed.rejected.total() <= 3
        h.clock.advance(30)  # no data for 30 simulated seconds: stale
        assert not conn.healthy() and conn.data_age_s() == pytest.approx(30.0)
        await conn.stop()

    run(config, body)


def test_depth_rotation_and_309_from_a_line_held_elsewhere(config: QuanticityConfig) -> None:
    async def body(h: Harness) -> None:
        other = IB()
        await other.connectAsync("127.0.0.1", h.sim.port, clientId=301, timeout=5)
        (msft,) = await other.qualifyContractsAsync(Contract(secType="STK", symbol="MSFT", exchange="SMART"))
        other.reqMktDepth(Contract(conId=msft.conId, symbol="MSFT", secType="STK", exchange="ISLAND"), 5)
        await until(lambda: h.sim.hub.counts()["depth"] == 1, what="a foreign depth line")
        conn = IbkrConnection(ibkr_config(h.sim.port), "ingestion", clock=h.clock)
        feed = IbkrFeed(conn, ["SPY", "QQQ", "IWM", "AAPL"], h.events.append)
        await conn.start()
        await until(lambda: feed.depth.capacity_errors == 1, what="309 as a capacity signal")
        assert feed.depth.capacity == 2 and len(feed.depth.active) == 2 and conn.ready
        assert h.sim.hub.counts()["depth"] == 3
        first = set(feed.depth.active)
        h.clock.advance(15)  # one dwell later the window moves on, within the 2 lines left
        feed.rotate_depth()
        await until(lambda: h.sim.hub.counts()["depth"] == 3 and feed.depth.active != first, what="rotation")
        assert feed.depth.capacity_errors == 1
        h.sim.step()
        await until(lambda: any(b.symbol in feed.depth.active for b in h.of(BookSnapshot)), what="rotated books")
        other.disconnect()
        await conn.stop()

    run(config, body, symbols=("SPY", "QQQ", "IWM", "AAPL", "MSFT"))


def test_depth_rotation_skips_a_symbol_refused_with_354_until_the_retry_time() -> None:
    rotation = DepthRotation(["SPY", "QQQ", "IWM", "AAPL", "MSFT"], lines=3, dwell_s=15, retry_after_s=30)
    assert rotation.plan(0.0).subscribe == ("SPY", "QQQ", "IWM")
    rotation.not_entitled("QQQ", 1.0)  # no depth entitlement at ISLAND
    assert rotation.capacity == 3 and rotation.not_entitled_symbols == ["QQQ"]
    plan = rotation.plan(1.0)  # the freed line is used at once, by the next symbols in turn
    assert "QQQ" not in rotation.active and len(rotation.active) == 3 and "QQQ" not in plan.subscribe
    for t in (16.0, 30.0):  # windows move on without QQQ until the retry time (31 s)
        rotation.plan(t)
        assert "QQQ" not in rotation.active and len(rotation.active) == 3
    seen: set[str] = set()
    for t in (46.0, 61.0, 76.0):  # retried after 30 s: QQQ has its turns again
        rotation.plan(t)
        seen |= rotation.active
    assert "QQQ" in seen and rotation.not_entitled_symbols == []
    for symbol in ("SPY", "QQQ", "IWM", "AAPL", "MSFT"):  # nothing entitled: no line is opened
        rotation.not_entitled(symbol, 80.0)
    assert rotation.plan(80.0).subscribe == () and rotation.active == set()
    assert rotation.entitlement_errors == 6 and rotation.capacity_errors == 0


def test_delayed_only_account_gets_354_and_the_feed_degrades_instead_of_waiting(config: QuanticityConfig) -> None:
    """On a delayed-only account depth and tick-by-tick are refused: the feed stops expecting them."""

    async def body(h: Harness) -> None:
        conn = IbkrConnection(ibkr_config(h.sim.port, market_data_type=3), "ingestion", clock=h.clock)
        feed = IbkrFeed(conn, ["SPY", "QQQ", "IWM", "AAPL"], h.events.append)
        await conn.start()
        await until(
            lambda: feed.depth.entitlement_errors == 3 and feed.tick_by_tick_refused == {"SPY"},
            what="354 for three depth lines and SPY's tick-by-tick",
        )
        feed.rotate_depth()  # the freed lines go to the one symbol not yet tried: refused as well
        await until(lambda: feed.depth.entitlement_errors == 4, what="354 for AAPL's depth")
        feed.rotate_depth()
        assert feed.depth.active == set()
        assert h.sim.hub.counts() == {"mkt_data": 4, "depth": 0, "tick_by_tick": 0}
        assert conn.ready and feed.errors[354] == 5
        assert feed.stats()["tick_by_tick_refused"] == 1 and feed.stats()["depth_entitlement_errors"] == 4
        # retried after depth_retry_after_s (30 s): asked again, refused again, nothing left open
        h.clock.advance(30)
        feed.rotate_depth()
        await until(lambda: feed.depth.entitlement_errors == 7, what="the retry refused again")
        # fifteen simulated minutes in, the delayed lines stream: quotes, and SPY's prints come from
        # its delayed last ticks (68) now that tick-by-tick is refused
        h.sim.advance(901)
        for _ in range(3):
            h.sim.step()
        await until(lambda: {t.symbol for t in h.of(Trade)} >= {"SPY", "QQQ"}, what="delayed prints")
        assert {q.symbol for q in h.of(Quote)} == {"SPY", "QQQ", "IWM", "AAPL"}
        assert all(q.bid < q.ask for q in h.of(Quote)) and not h.of(BookSnapshot)
        await conn.stop()

    run(config, body)


def test_bad_inputs_are_rejected_counted_and_the_feed_keeps_running(config: QuanticityConfig) -> None:
    async def body(h: Harness) -> None:
        conn = IbkrConnection(ibkr_config(h.sim.port, depth_symbols=["SPY"]), "ingestion", clock=h.clock)
        feed = IbkrFeed(conn, ["SPY"], h.events.append, option_symbols=["SPY"])
        await conn.start()
        await until(lambda: h.sim.hub.counts()["mkt_data"] == 7, what="subscriptions")
        h.sim.step()
        await until(lambda: feed.accepted["option_quote"] >= 6 and feed.accepted["book"] >= 1, what="clean data")
        accepted = dict(feed.accepted)
        h.sim.corrupt_next("crossed_book", "SPY")
        h.sim.step()
        await until(lambda: feed.rejected["crossed_book"] >= 2, what="crossed quote and book rejected")
        h.sim.corrupt_next("nan_greeks", "SPY")
        h.sim.step()
        await until(lambda: feed.rejected["non_finite_greek"] >= 6, what="NaN greeks rejected")
        h.sim.corrupt_next("negative_price", "SPY")
        h.sim.step()
        await until(lambda: feed.rejected["non_positive_price"] >= 7, what="negative prices rejected")
        assert all(math.isfinite(q.delta) for q in h.of(OptionQuote))
        assert all(q.bid > 0 and q.bid < q.ask for q in h.of(Quote))
        assert all(b.bids[0][0] < b.asks[0][0] for b in h.of(BookSnapshot))
        # a price that is not a number at all: ib_async's decoder drops the message; it is counted
        assert conn.stats["malformed_messages"] == 0
        h.sim.corrupt_next("malformed_price", "SPY")
        h.sim.step()
        await until(lambda: conn.stats["malformed_messages"] == 1, what="the malformed tick counted")
        assert "'abc'" in conn.last_malformed and "message 1" in conn.last_malformed
        assert conn.health()["malformed_messages"] == 1 and conn.ready
        h.sim.step()  # clean data again: still flowing
        await until(lambda: feed.accepted["quote"] > accepted["quote"] + 0, what="recovery")
        quotes = feed.accepted["quote"]
        h.sim.step()
        await until(lambda: feed.accepted["quote"] > quotes, what="quotes after the malformed tick")
        assert conn.ready and conn.stats["malformed_messages"] == 1
        await conn.stop()

    run(config, body, symbols=("SPY",))


def test_client_side_pacing_keeps_a_burst_under_the_tws_limit(config: QuanticityConfig) -> None:
    async def body(h: Harness) -> None:
        cfg = ibkr_config(h.sim.port, pacing_msgs_per_s=40, request_timeout_s=5.0)
        conn = IbkrConnection(cfg, "reporting", clock=h.clock)
        await conn.start()
        for _ in range(70):  # a burst the server (45/s here) would punish with error 100 and a drop
            conn.ib.client.reqCurrentTime()
        # the probe is queued behind the burst: answered once ib_async's throttle has drained it
        assert await conn.probe() and conn.ib.isConnected() and h.sim.stats["pacing_violations"] == 0
        await conn.stop()

    run(config, body, symbols=("SPY",), max_msgs_per_s=45)


# --- broker ----------------------------------------------------------------------------------
def test_broker_place_fills_commissions_positions_and_dedupe(config: QuanticityConfig) -> None:
    async def body(h: Harness) -> None:
        conn = IbkrConnection(ibkr_config(h.sim.port), "execution", clock=h.clock)
        broker = IbkrBroker(conn)
        await conn.start()
        assert conn.ready and broker.positions() == {} and broker.execution_count == 0
        ack = await broker.place(intent("r1", 120, round(h.ask() + 1.0, 2)))
        assert ack.status is OrderStatus.SUBMITTED and ack.remaining == 120
        server = h.sim.engine.orders()[0]
        assert server.request.order_ref == "r1" and server.client_id == 201
        assert await broker.place(intent("r1", 120, 9.99)) == broker.lookup("r1")  # never sent twice
        assert len(h.sim.engine.orders()) == 1 and broker.stats["duplicate_places"] == 1
        for _ in range(3):
            h.sim.step()
        await until(lambda: broker.execution_count == 3, what="three fills booked")
        fills = broker.executions()
        assert [f.quantity for f in fills] == [50, 50, 20] and sum(f.commission for f in fills) == pytest.approx(78.0)
        assert all(f.order_ref == "r1" and f.strategy == "zero_dte_gamma" and f.contract == CONTRACT for f in fills)
        await until(lambda: broker.lookup("r1").status is OrderStatus.FILLED, what="FILLED")
        order = broker.lookup("r1")
        assert order.filled == 120 and order.remaining == 0
        assert order.avg_price == pytest.approx(sum(f.price * f.quantity for f in fills) / 120)
        await until(lambda: broker.positions() == h.sim_positions(), what="position stream")
        assert broker.positions() == {CONTRACT.key: 120.0}
        result = await broker.reconcile("manual")  # replayed executions are not booked twice
        assert result["fills_booked"] == 0 and broker.execution_count == 3
        working = await broker.place(intent("r2", 5, 0.01, Side.SELL))
        assert working.status is OrderStatus.SUBMITTED and [o.order_ref for o in broker.open_orders()] == ["r2"]
        cancelled = await broker.cancel("r2")
        assert cancelled is not None and cancelled.status is OrderStatus.CANCELLED
        assert await broker.cancel("never-sent") is None and broker.lookup("never-sent") is None
        await conn.stop()

    run(config, body)


def test_broker_stop_bracket_in_an_oca_group_and_replace(config: QuanticityConfig) -> None:
    async def body(h: Harness) -> None:
        conn = IbkrConnection(ibkr_config(h.sim.port), "execution", clock=h.clock)
        broker = IbkrBroker(conn)
        await conn.start()
        await broker.place(intent("entry", 10, round(h.ask() + 1.0, 2)))
        h.sim.step()
        await until(lambda: broker.positions().get(CONTRACT.key) == 10, what="entry filled")
        quote = h.sim.market.option_quote(CONTRACT)
        stop = msgspec.structs.replace(
            intent("stop", 10, 0.0, Side.SELL), order_type="STP", stop_price=0.05, oca_group="b1"
        )
        target = msgspec.structs.replace(intent("target", 10, round(quote.ask * 3, 2), Side.SELL), oca_group="b1")
        assert (await broker.place(stop)).status is OrderStatus.SUBMITTED
        assert (await broker.place(target)).status is OrderStatus.SUBMITTED
        server = {o.request.order_ref: o for o in h.sim.engine.orders()}
        assert server["stop"].request.order_type == "STP" and server["stop"].request.oca_type == 1
        assert server["target"].request.oca_group == "b1"
        moved = await broker.replace("stop", round(quote.bid + 0.5, 2))  # raise the stop above the bid
        assert moved is not None and moved.status is OrderStatus.SUBMITTED
        assert server["stop"].request.aux_price == round(quote.bid + 0.5, 2)
        with pytest.raises(ValueError, match="new_price"):
            await broker.replace("stop", -1.0)
        h.sim.step()  # the stop triggers and fills; its OCA sibling is cancelled
        await until(lambda: broker.lookup("stop").status is OrderStatus.FILLED, what="stop filled")
        await until(lambda: broker.lookup("target").status is OrderStatus.CANCELLED, what="OCA cancel")
        assert (await broker.replace("target", 9.0)).status is OrderStatus.CANCELLED  # finished: unchanged
        await until(lambda: broker.positions() == {}, what="flat")
        await conn.stop()

    run(config, body)


def test_reconnect_recovers_fills_of_the_gap_and_subscriptions(config: QuanticityConfig) -> None:
    async def body(h: Harness) -> None:
        cfg = ibkr_config(h.sim.port, depth_symbols=["SPY"])
        exec_conn = IbkrConnection(cfg, "execution", clock=h.clock)
        broker = IbkrBroker(exec_conn)
        feed_conn = IbkrConnection(cfg, "ingestion", clock=h.clock)
        feed = IbkrFeed(feed_conn, ["SPY", "QQQ"], h.events.append)
        await exec_conn.start()
        await feed_conn.start()
        subscriptions = {"mkt_data": 2, "depth": 1, "tick_by_tick": 1}
        await until(lambda: h.sim.hub.counts() == subscriptions, what="subscriptions")
        await broker.place(intent("gap", 120, round(h.ask() + 1.0, 2)))
        h.sim.drop_connections()  # TWS drops both while the order is working
        await until(lambda: not exec_conn.ready and not feed_conn.ready, what="both links down")
        assert exec_conn.trading_state() is TradingState.HALTED
        for _ in range(3):
            h.sim.step()  # the order fills while nobody is connected
        assert h.sim.engine.orders()[0].status == "Filled" and broker.execution_count == 0
        assert await exec_conn.wait_ready(10) and await feed_conn.wait_ready(10)
        # bounded: reconnected at the first or second attempt, never refused as "client id in use"
        assert exec_conn.stats["connects"] == 2 and exec_conn.stats["connect_attempts"] <= 3
        assert exec_conn.stats["client_id_in_use"] == 0 and feed_conn.stats["client_id_in_use"] == 0
        assert broker.execution_count == 3 and {f.exec_id for f in broker.executions()} == {
            e.exec_id for e in h.sim.engine.executions
        }
        assert broker.lookup("gap").status is OrderStatus.FILLED
        assert broker.positions() == h.sim_positions() == {CONTRACT.key: 120.0}
        assert h.sim.hub.counts() == subscriptions  # everything re-subscribed
        before = feed.accepted["quote"]
        h.sim.step()
        await until(lambda: feed.accepted["quote"] > before, what="quotes after the reconnect")
        await exec_conn.stop()
        await feed_conn.stop()

    run(config, body, symbols=("SPY", "QQQ"))


def test_order_id_rollback_never_reuses_an_id(config: QuanticityConfig) -> None:
    async def body(h: Harness) -> None:
        conn = IbkrConnection(ibkr_config(h.sim.port), "execution", clock=h.clock)
        broker = IbkrBroker(conn)
        await conn.start()
        for i in range(3):
            await broker.place(intent(f"p{i}", 1, 0.01))
        used = {o.order_id for o in h.sim.engine.orders()}
        h.sim.rollback_next_order_id(1)  # TWS hands out ids below those already used …
        h.sim.drop_connections()
        await until(lambda: not conn.ready, what="drop")
        assert await conn.wait_ready(10)
        ack = await broker.place(intent("after", 1, 0.01))
        assert ack.status is OrderStatus.SUBMITTED  # … yet no 103 "duplicate order id"
        newest = h.sim.engine.orders()[-1]
        assert newest.request.order_ref == "after" and newest.order_id > max(used)
        assert h.sim.stats["orders_rejected"] == 0
        await conn.stop()

    run(config, body)


def test_unanswered_positions_at_start_stays_unreconciled_and_halted(config: QuanticityConfig) -> None:
    async def body(h: Harness) -> None:
        h.sim.silence(In.REQ_POSITIONS)
        cfg = ibkr_config(h.sim.port, connect_timeout_s=0.5, request_timeout_s=0.5)
        conn = IbkrConnection(cfg, "execution", clock=h.clock)
        broker = IbkrBroker(conn)
        await conn.start()
        assert conn.state is LinkState.UNRECONCILED and conn.trading_state() is TradingState.HALTED
        assert not conn.healthy() and broker.stats["positions_unanswered"] == 1
        with pytest.raises(BrokerError, match="not flat|unknown"):
            broker.positions()
        with pytest.raises(BrokerError, match="not reconciled"):
            await broker.place(intent("blocked", 1, 1.0))
        with pytest.raises(BrokerError):
            broker.lookup("anything")
        assert h.sim.engine.orders() == []  # nothing was sent
        h.sim.clear_faults()  # TWS answers again: the retried sync reconciles
        assert await conn.wait_ready(10)
        assert broker.positions() == {} and conn.trading_state() is TradingState.ACTIVE
        await conn.stop()

    run(config, body, symbols=("SPY",))


def test_1100_halts_and_1101_resubscribes_and_reconciles(config: QuanticityConfig) -> None:
    async def body(h: Harness) -> None:
        conn = IbkrConnection(ibkr_config(h.sim.port, depth_symbols=["SPY"]), "ingestion", clock=h.clock)
        feed = IbkrFeed(conn, ["SPY"], h.events.append)
        await conn.start()
        subscriptions = {"mkt_data": 1, "depth": 1, "tick_by_tick": 1}
        await until(lambda: h.sim.hub.counts() == subscriptions, what="subscriptions")
        h.sim.connectivity_lost()
        await until(lambda: conn.state is LinkState.LOST, what="1100")
        assert conn.trading_state() is TradingState.HALTED
        h.sim.connectivity_restored(data_lost=True)  # TWS forgot every subscription
        await until(lambda: conn.ready, what="re-sync after 1101")
        await until(lambda: h.sim.hub.counts() == subscriptions, what="re-subscribed")
        before = feed.accepted["quote"]
        h.sim.step()
        await until(lambda: feed.accepted["quote"] > before, what="data after 1101")
        h.sim.connectivity_lost()
        await until(lambda: conn.state is LinkState.LOST, what="1100 again")
        h.sim.connectivity_restored(data_lost=False)  # 1102: subscriptions kept, nothing re-sent
        await until(lambda: conn.ready, what="ready after 1102")
        assert conn.stats["restored_1101"] == 1 and conn.stats["restored_1102"] == 1
        await conn.stop()

    run(config, body, symbols=("SPY",))
