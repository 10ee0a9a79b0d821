"""Account P&L (reqPnL / reqPnLSingle) and really-delayed market data, real ib_async against the TWS simulator.

Every test starts its own simulator on 127.0.0.1 port 0 and moves the synthetic market only
with ``sim.step``/``sim.advance`` (one simulated second per step). A round trip
(``reqCurrentTimeAsync``) is the barrier that makes "everything the server sent so far has been
read" deterministic: TWS answers requests in order on one socket.
"""

from __future__ import annotations

import asyncio
import math
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from ib_async import IB, Contract, LimitOrder, Option, Stock

from quanticity.clock import SimulatedClock
from quanticity.config import QuanticityConfig
from quanticity.sim.tws import In, TwsSimulator
from quanticity.sim.tws.protocol import FrameDecoder, encode_fields
from quanticity.venues.ibkr import IbkrBroker, IbkrConnection
from tests.async_helpers import until
from tests.tws_helpers import CONTRACT, START_NS, ibkr_config, intent, tws_sim

pytestmark = pytest.mark.unit

EXPIRY = "20250103"
ACCOUNT = "DU1234567"
DELAY_S = 900


def run(config: QuanticityConfig, body: Callable[[TwsSimulator], Awaitable[None]], **overrides: Any) -> None:
    """Start a simulator, run ``body``, stop it (clients are the body's to open and close)."""

    async def main() -> None:
        sim = tws_sim(config, ["SPY", "QQQ"], **overrides)
        await sim.start()
        try:
            await body(sim)
        finally:
            await sim.stop()

    asyncio.run(main())


async def connect(sim: TwsSimulator, client_id: int) -> IB:
    ib = IB()
    await ib.connectAsync("127.0.0.1", sim.port, clientId=client_id, timeout=5)
    return ib


async def barrier(ib: IB) -> None:
    """Everything the server sent this client before now has been read and applied."""
    await asyncio.wait_for(ib.reqCurrentTimeAsync(), 5)


async def spy_call(ib: IB) -> Contract:
    (option,) = await ib.qualifyContractsAsync(Option("SPY", EXPIRY, 590.0, "C", "SMART"))
    assert option is not None and option.conId
    return option


async def filled(sim: TwsSimulator, ib: IB, option: Contract, order: LimitOrder) -> Any:
    """Place ``order``, wait for the acknowledgement, step once and wait for the fill and its commission."""
    trade = ib.placeOrder(option, order)
    await until(lambda: trade.orderStatus.status == "Submitted", what="order ack")
    sim.step()
    await until(lambda: trade.orderStatus.status == "Filled", what="fill")
    await until(lambda: all(f.commissionReport.execId for f in trade.fills), what="commission report")
    return trade


def mark(sim: TwsSimulator, con_id: int) -> float:
    """The option's mid now (the simulator marks positions at the mid)."""
    listing = sim.contracts.by_id(con_id)
    assert listing is not None and listing.option is not None
    quote = sim.market.option_quote(listing.option)
    return (quote.bid + quote.ask) / 2


# --- reqPnL / reqPnLSingle in the simulator ----------------------------------------------------
def test_pnl_equals_the_account_after_a_buy_and_a_partial_sell_and_stops_after_cancel(
    config: QuanticityConfig,
) -> None:
    async def body(sim: TwsSimulator) -> None:
        ib = await connect(sim, 201)
        option = await spy_call(ib)
        pnl = ib.reqPnL(ACCOUNT)
        await until(lambda: pnl.dailyPnL == 0.0, what="first P&L (flat account)")
        assert (pnl.unrealizedPnL, pnl.realizedPnL) == (0.0, 0.0) and sim.pnl.counts()["pnl"] == 1
        ask = sim.market.option_quote(sim.contracts.by_id(option.conId).option).ask
        buy = await filled(sim, ib, option, LimitOrder("BUY", 10, round(ask + 1.0, 2), orderRef="pnl-buy"))
        sell = await filled(sim, ib, option, LimitOrder("SELL", 4, 0.01, orderRef="pnl-sell"))
        # one execution each (10 ≤ max_fill_per_step), so FIFO and average cost are the same lot
        ((buy_fill,), (sell_fill,)) = (buy.fills, sell.fills)
        p_buy, p_sell = buy_fill.execution.price, sell_fill.execution.price
        c_buy, c_sell = buy_fill.commissionReport.commission, sell_fill.commissionReport.commission
        assert (c_buy, c_sell) == (pytest.approx(6.5), pytest.approx(2.6))  # $0.65 × contracts
        # realized: the 4 sold against the first-in lot, net of every commission charged so far
        # (the simulator realizes the opening commission when charged: avgCost excludes it)
        realized = (p_sell - p_buy) * 4 * 100 - c_buy - c_sell
        assert sell_fill.commissionReport.realizedPNL == pytest.approx((p_sell - p_buy) * 4 * 100 - c_sell)
        await barrier(ib)
        unrealized = 6 * (mark(sim, option.conId) - p_buy) * 100
        assert pnl.realizedPnL == pytest.approx(realized, abs=0.01)
        assert pnl.unrealizedPnL == pytest.approx(unrealized, abs=0.01)
        assert pnl.dailyPnL == pytest.approx(realized + unrealized, abs=0.02)
        # … and the simulator's own account says the same
        values = sim.account_values()
        assert (pnl.realizedPnL, pnl.unrealizedPnL) == (values["RealizedPnL"], values["UnrealizedPnL"])
        assert pnl.dailyPnL == pytest.approx(values["NetLiquidation"] - 1_000_000.0, abs=0.02)
        (position,) = await ib.reqPositionsAsync()
        assert position.position == 6 and position.avgCost == pytest.approx(p_buy * 100)
        # periodic: the marks move, so every simulated second brings an update
        sent = sim.pnl.messages_sent
        sim.advance(3)
        await barrier(ib)
        assert sim.pnl.messages_sent > sent
        assert pnl.unrealizedPnL == pytest.approx(6 * (mark(sim, option.conId) - p_buy) * 100, abs=0.01)
        # cancelled: nothing more is sent
        ib.cancelPnL(ACCOUNT)
        await until(lambda: sim.pnl.counts()["pnl"] == 0, what="cancelPnL")
        sent = sim.pnl.messages_sent
        sim.advance(5)
        await barrier(ib)
        assert sim.pnl.messages_sent == sent
        ib.disconnect()

    run(config, body)


def test_pnl_single_for_a_held_contract_and_bad_requests_get_errors(config: QuanticityConfig) -> None:
    async def body(sim: TwsSimulator) -> None:
        ib = await connect(sim, 201)
        errors: list[tuple[int, int]] = []
        ib.errorEvent += lambda req_id, code, message, contract: errors.append((req_id, code))
        option = await spy_call(ib)
        ask = sim.market.option_quote(sim.contracts.by_id(option.conId).option).ask
        buy = await filled(sim, ib, option, LimitOrder("BUY", 3, round(ask + 1.0, 2), orderRef="single"))
        single = ib.reqPnLSingle(ACCOUNT, "", option.conId)
        await until(lambda: single.position == 3, what="pnlSingle")
        expected = sim.position_pnl(option.conId)
        assert single.value == expected.value == pytest.approx(3 * mark(sim, option.conId) * 100, abs=0.01)
        assert single.unrealizedPnL == expected.unrealized
        assert single.realizedPnL == expected.realized == -buy.fills[0].commissionReport.commission
        assert single.dailyPnL == pytest.approx(expected.unrealized + expected.realized, abs=0.01)
        assert sim.pnl.counts() == {"pnl": 0, "pnl_single": 1}
        # an unknown conId and an unknown account: error 321, no subscription, the session lives on
        bad_con = ib.reqPnLSingle(ACCOUNT, "", 999_999_999)
        await until(lambda: any(code == 321 for _, code in errors), what="321 for the unknown conId")
        ib.reqPnL("U7654321")
        await until(lambda: sum(code == 321 for _, code in errors) == 2, what="321 for the unknown account")
        assert sim.stats["pnl_refused"] == 2 and sim.pnl.counts() == {"pnl": 0, "pnl_single": 1}
        assert math.isnan(bad_con.dailyPnL)
        await barrier(ib)
        assert ib.isConnected()
        ib.cancelPnLSingle(ACCOUNT, "", option.conId)
        await until(lambda: sim.pnl.counts()["pnl_single"] == 0, what="cancelPnLSingle")
        ib.disconnect()

        # a malformed reqPnL (reqId not a number) on a raw socket: 321 naming the field, counted
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
        version = b"v157..178"
        writer.write(b"API\0" + struct.pack(">I", len(version)) + version)
        writer.write(encode_fields([In.START_API, 2, 7, ""]))
        writer.write(encode_fields([In.REQ_PNL, "abc", ACCOUNT, ""]))
        writer.write(encode_fields([In.REQ_CURRENT_TIME, 1]))
        decoder = FrameDecoder()
        decoder.feed(b"API\0" + struct.pack(">I", 0))
        inbox: list[list[str]] = []
        while not any(m[0] == "49" for m in inbox):  # currentTime: the session survived the bad request
            data = await asyncio.wait_for(reader.read(65536), 5)
            assert data, "the simulator closed the session"
            inbox.extend(decoder.feed(data))
        assert any(m[0] == "4" and m[3] == "321" and "reqId" in m[4] for m in inbox)
        assert sim.stats["malformed_requests"] == 1
        writer.close()

    run(config, body)


# --- the connector's P&L subscription ----------------------------------------------------------
def test_connector_subscribes_pnl_and_resubscribes_after_a_drop_and_1101(config: QuanticityConfig) -> None:
    async def body(sim: TwsSimulator) -> None:
        clock = SimulatedClock(START_NS)
        conn = IbkrConnection(ibkr_config(sim.port), "execution", clock=clock)
        broker = IbkrBroker(conn)
        await conn.start()
        assert conn.ready
        await until(lambda: sim.pnl.counts()["pnl"] == 1, what="reqPnL (account from managedAccounts)")
        await until(lambda: broker.pnl()["updated_ns"] is not None, what="first P&L")
        assert broker.pnl() == {"daily": 0.0, "unrealized": 0.0, "realized": 0.0, "updated_ns": START_NS}
        ask = sim.market.option_quote(CONTRACT).ask
        await broker.place(intent("pnl-c", 5, round(ask + 1.0, 2)))
        sim.step()
        await until(lambda: broker.execution_count == 1, what="fill")

        def matches() -> bool:
            now = sim.account_pnl()
            got = broker.pnl()
            return (got["daily"], got["unrealized"], got["realized"]) == (now.daily, now.unrealized, now.realized)

        sim.step()
        await until(matches, what="P&L of the position")
        assert broker.pnl()["realized"] == pytest.approx(-5 * 0.65)
        # TWS drops the socket: the reconnect's sync hook subscribes again
        sim.drop_connections()
        await until(lambda: not conn.ready, what="drop")
        assert sim.pnl.counts()["pnl"] == 0
        assert await conn.wait_ready(10)
        await until(lambda: sim.pnl.counts()["pnl"] == 1, what="P&L re-subscribed after the reconnect")
        clock.advance(5.0)
        sim.step()
        await until(lambda: matches() and broker.pnl()["updated_ns"] == clock.now_ns(), what="P&L after reconnect")
        # 1101: TWS kept the socket but lost the subscriptions; ib_async still holds its own
        sim.connectivity_lost()
        sim.connectivity_restored(data_lost=True)
        assert sim.pnl.counts()["pnl"] == 0
        await until(lambda: sim.pnl.counts()["pnl"] == 1 and conn.ready, what="P&L re-subscribed after 1101")
        assert broker.stats["pnl_subscriptions"] == 3 and broker.stats["pnl_errors"] == 0
        sim.step()
        await until(matches, what="P&L after 1101")
        # IB's "unset" values (DBL_MAX, NaN) are unknown, never numbers
        req_id = conn.ib.wrapper.pnlKey2ReqId[(ACCOUNT, "")]
        conn.ib.wrapper.pnl(req_id, 1.7976931348623157e308, math.nan, 12.5)
        got = broker.pnl()
        assert (got["daily"], got["unrealized"], got["realized"]) == (None, None, 12.5)
        assert broker.stats["pnl_unset_values"] == 2
        await conn.stop()

    run(config, body)


def test_connector_counts_a_refused_pnl_subscription_and_stays_ready(config: QuanticityConfig) -> None:
    async def body(sim: TwsSimulator) -> None:
        conn = IbkrConnection(ibkr_config(sim.port, account="U7654321"), "execution", clock=SimulatedClock(START_NS))
        broker = IbkrBroker(conn)
        await conn.start()
        await until(lambda: broker.stats["pnl_errors"] == 1, what="321 for the unknown account")
        assert conn.ready and "321" in broker.last_pnl_error  # P&L is informational: trading not blocked
        assert broker.pnl()["updated_ns"] is None and sim.pnl.counts()["pnl"] == 0
        await conn.stop()

    run(config, body)


# --- delayed market data -----------------------------------------------------------------------
L1 = ("bid", "ask", "bidSize", "askSize", "last", "lastSize")


def state(ticker: Any) -> tuple[float, ...]:
    return tuple(float(getattr(ticker, name)) for name in L1)


def test_delayed_data_is_the_live_data_of_fifteen_simulated_minutes_earlier(config: QuanticityConfig) -> None:
    async def body(sim: TwsSimulator) -> None:
        live_ib = await connect(sim, 201)
        delayed_ib = await connect(sim, 202)
        errors: list[tuple[int, int]] = []
        delayed_ib.errorEvent += lambda req_id, code, message, contract: errors.append((req_id, code))
        (spy,) = await live_ib.qualifyContractsAsync(Stock("SPY", "SMART", "USD"))
        option = await spy_call(live_ib)
        delayed_ib.reqMarketDataType(3)
        (spy_d,) = await delayed_ib.qualifyContractsAsync(Stock("SPY", "SMART", "USD"))
        option_d = await spy_call(delayed_ib)
        live = live_ib.reqMktData(spy, "")
        delayed = delayed_ib.reqMktData(spy_d, "")
        delayed_option = delayed_ib.reqMktData(option_d, "")
        kinds: set[int] = set()  # every tick type the delayed SPY ticker received (ticks are per update)
        option_kinds: set[int] = set()
        delayed.updateEvent += lambda t: kinds.update(tick.tickType for tick in t.ticks)
        delayed_option.updateEvent += lambda t: option_kinds.update(tick.tickType for tick in t.ticks)
        await until(lambda: sim.hub.counts()["mkt_data"] == 3, what="subscriptions")
        await until(lambda: delayed.marketDataType == 3 and delayed_option.marketDataType == 3, what="type 3")
        assert live.marketDataType == 1
        assert sum(code == 10167 for _, code in errors) == 2  # "displaying delayed market data"
        # record what is live, step by step
        history: list[tuple[int, tuple[float, ...], float, float]] = []
        for _ in range(5):
            sim.step()
            await barrier(live_ib)
            quote = sim.market.option_quote(sim.contracts.by_id(option.conId).option)
            history.append((sim.now_ns, state(live), quote.bid, quote.ask))
        await barrier(delayed_ib)
        assert math.isnan(delayed.bid) and math.isnan(delayed_option.bid)  # nothing is 15 minutes old yet
        # fifteen simulated minutes after the first recorded step, the delayed ticker shows it
        first_ns = history[0][0]
        sim.advance((first_ns + DELAY_S * 1_000_000_000 - sim.now_ns) / 1e9)
        assert sim.now_ns == first_ns + DELAY_S * 1_000_000_000
        for i, (ts, live_state, option_bid, option_ask) in enumerate(history):
            if i:
                sim.step()
            assert sim.now_ns - ts == DELAY_S * 1_000_000_000
            await barrier(delayed_ib)
            assert state(delayed) == live_state, f"delayed state at +{i} s"
            assert (delayed_option.bid, delayed_option.ask) == (option_bid, option_ask)
        assert delayed.low <= delayed.last <= delayed.high and delayed.open > 0
        assert {66, 67, 68, 72, 73, 74, 76} <= kinds and not kinds & {1, 2, 4, 8}
        assert delayed_option.modelGreeks is not None and {66, 67} <= option_kinds and not option_kinds & {1, 2}
        assert state(delayed) != state(live)  # live has moved on
        # depth and tick-by-tick have no delayed form: 354, nothing subscribed
        delayed_ib.reqMktDepth(spy_d, 5)
        delayed_ib.reqTickByTickData(spy_d, "AllLast")
        await until(lambda: sum(code == 354 for _, code in errors) == 2, what="354 twice")
        assert sim.hub.counts() == {"mkt_data": 3, "depth": 0, "tick_by_tick": 0}
        # a market data type that does not exist is rejected (321) and counted; the session lives
        delayed_ib.reqMarketDataType(5)
        await until(lambda: sim.stats["malformed_requests"] == 1, what="bad marketDataType counted")
        await barrier(delayed_ib)
        live_ib.disconnect()
        delayed_ib.disconnect()

    run(config, body)
