"""The TWS/Gateway simulator against the real ``ib_async`` client (and a raw socket for the protocol edges).

Every test starts its own simulator on 127.0.0.1 port 0 inside ``asyncio.run`` and moves the
synthetic market explicitly with ``sim.advance``; waits poll a condition with a timeout.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from ib_async import IB, Contract, LimitOrder, Option, Order, Stock, StopOrder

from quanticity.config import QuanticityConfig
from quanticity.sim.tws import SERVER_VERSION, In, TwsSimConfig, TwsSimulator
from quanticity.sim.tws.protocol import FrameDecoder, encode_fields
from tests.async_helpers import until

pytestmark = pytest.mark.unit

SESSION = dt.date(2025, 1, 3)
EXPIRY = "20250103"


async def accepted(trade: Any) -> None:
    """Wait until the server acknowledged an order (only then does stepping the market fill it)."""
    await until(lambda: trade.orderStatus.status in ("Submitted", "PreSubmitted", "Filled"), what="order ack")


def make_sim(config: QuanticityConfig, **overrides: Any) -> TwsSimulator:
    return TwsSimulator.from_config(
        config,
        seed=7,
        symbols=["SPY", "QQQ", "IWM", "SPX", "AAPL"],
        session_date=SESSION,
        step_ms=1000,
        sim_config=TwsSimConfig(**overrides),
    )


def run(config: QuanticityConfig, body: Callable[[TwsSimulator, IB], Awaitable[None]], **overrides: Any) -> None:
    """Start a simulator, connect one IB as client 201, run ``body``, tear everything down."""

    async def main() -> None:
        sim = make_sim(config, **overrides)
        port = await sim.start()
        ib = IB()
        try:
            await ib.connectAsync("127.0.0.1", port, clientId=201, timeout=5)
            await body(sim, ib)
        finally:
            ib.disconnect()
            await sim.stop()

    asyncio.run(main())


async def qualified_option(ib: IB, strike: float = 590.0, right: str = "C") -> Contract:
    (option,) = await ib.qualifyContractsAsync(Option("SPY", EXPIRY, strike, right, "SMART"))
    assert option is not None and option.conId
    return option


class RawClient:
    """A bare socket client: handshake and messages exactly as bytes (for protocol-level checks)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.decoder = FrameDecoder()
        self.decoder.feed(b"API\0" + struct.pack(">I", 0))  # the client side never receives a handshake
        self.inbox: list[list[str]] = []

    @classmethod
    async def connect(cls, port: int, client_id: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        body = b"v157..178"
        writer.write(b"API\0" + struct.pack(">I", len(body)) + body)
        writer.write(encode_fields([In.START_API, 2, client_id, ""]))
        return client

    def send(self, *fields: object) -> None:
        self.writer.write(encode_fields(fields))

    async def read_until(self, predicate: Callable[[list[str]], bool], timeout: float = 5.0) -> list[str] | None:
        """Read messages until one matches; None when the server closed the socket first."""

        async def loop() -> list[str] | None:
            while True:
                for fields in self.inbox:
                    if predicate(fields):
                        self.inbox.remove(fields)
                        return fields
                try:
                    data = await self.reader.read(65536)
                except ConnectionResetError:
                    return None
                if not data:
                    return None
                self.inbox.extend(self.decoder.feed(data))

        return await asyncio.wait_for(loop(), timeout)

    def close(self) -> None:
        self.writer.close()


# --- connection ------------------------------------------------------------------------------
def test_connect_and_startup_sync(config: QuanticityConfig) -> None:
    async def body(sim: TwsSimulator, ib: IB) -> None:
        assert ib.client.serverVersion() == SERVER_VERSION
        assert ib.managedAccounts() == ["DU1234567"]
        assert sim.clients == [201]
        assert ib.positions() == [] and ib.openTrades() == []
        values = {v.tag: v.value for v in ib.accountValues() if not v.modelCode}
        assert float(values["NetLiquidation"]) == pytest.approx(1_000_000.0)
        summary = await ib.accountSummaryAsync()
        assert {v.tag for v in summary} >= {"NetLiquidation", "TotalCashValue", "BuyingPower"}

    run(config, body)


def test_second_connection_with_live_client_id_gets_326(config: QuanticityConfig) -> None:
    async def body(sim: TwsSimulator, ib: IB) -> None:
        raw = await RawClient.connect(sim.port, 201)
        handshake = await raw.read_until(lambda f: len(f) == 2)
        assert handshake is not None and handshake[0] == str(SERVER_VERSION)
        error = await raw.read_until(lambda f: f[0] == "4")
        assert error is not None and error[3] == "326"
        assert await raw.read_until(lambda f: False) is None  # then the server closes the socket
        raw.close()
        assert sim.stats["client_id_in_use"] == 1
        assert sim.clients == [201] and ib.isConnected()  # the first connection is untouched
        other = await RawClient.connect(sim.port, 202)
        assert await other.read_until(lambda f: f[0] == "9") is not None  # a free id gets nextValidId
        other.close()

    run(config, body)


def test_daily_restart_refuses_connections_until_it_ends(config: QuanticityConfig) -> None:
    async def body(sim: TwsSimulator, ib: IB) -> None:
        sim.daily_restart(refuse_for_s=3600)
        await until(lambda: not ib.isConnected(), what="the client to see the restart")
        raw = await RawClient.connect(sim.port, 201)
        assert await raw.read_until(lambda f: True) is None  # closed before the handshake answer
        raw.close()
        assert sim.faults.refused_connections == 1
        sim.resume_connections()
        await ib.connectAsync("127.0.0.1", sim.port, clientId=201, timeout=5)
        assert sim.clients == [201]

    run(config, body)


def test_pacing_violation_gets_error_100_and_drop(config: QuanticityConfig) -> None:
    async def body(sim: TwsSimulator, ib: IB) -> None:
        errors: list[int] = []
        ib.errorEvent += lambda req_id, code, msg, contract: errors.append(code)
        ib.client.MaxRequests = 0  # switch ib_async's own throttle off to break the limit on purpose
        for _ in range(30):
            ib.client.reqCurrentTime()
        await until(lambda: not ib.isConnected(), what="the drop")
        assert 100 in errors
        assert sim.stats["pacing_violations"] == 1

    run(config, body, max_msgs_per_s=20)


def test_malformed_request_is_answered_with_321_and_the_session_survives(config: QuanticityConfig) -> None:
    async def main() -> None:
        sim = make_sim(config)
        port = await sim.start()
        raw = await RawClient.connect(port, 7)
        await raw.read_until(lambda f: f[0] == "9")
        raw.send(In.REQ_MARKET_DATA_TYPE, 1, "abc")
        error = await raw.read_until(lambda f: f[0] == "4" and f[3] == "321")
        assert error is not None and "marketDataType" in error[4] and "'abc'" in error[4]
        raw.send(In.REQ_CURRENT_TIME, 1)
        assert await raw.read_until(lambda f: f[0] == "49") is not None
        assert sim.stats["malformed_requests"] == 1
        raw.close()
        await sim.stop()

    asyncio.run(main())


# --- contracts and market data ---------------------------------------------------------------
def test_qualify_contracts_and_unknown_symbol(config: QuanticityConfig) -> None:
    async def body(sim: TwsSimulator, ib: IB) -> None:
        errors: list[int] = []
        ib.errorEvent += lambda req_id, code, msg, contract: errors.append(code)
        spy, spx, option = await ib.qualifyContractsAsync(
            Stock("SPY", "SMART", "USD"),
            Contract(secType="IND", symbol="SPX", exchange="CBOE"),
            Option("SPY", EXPIRY, 590, "P", "SMART"),
        )
        assert spy.conId and spy.primaryExchange == "ARCA"
        assert spx.conId and spx.secType == "IND"
        assert option.conId and option.multiplier == "100" and option.localSymbol == "SPY   250103P00590000"
        assert sim.contracts.by_id(option.conId).option.key == "SPY 2025-01-03 590.00 P"
        details = await ib.reqContractDetailsAsync(Stock("NOPE", "SMART", "USD"))
        assert details == [] and 200 in errors

    run(config, body)


def test_option_chain_parameters_match_the_market(config: QuanticityConfig) -> None:
    async def body(sim: TwsSimulator, ib: IB) -> None:
        (spy,) = await ib.qualifyContractsAsync(Stock("SPY", "SMART", "USD"))
        chains = await ib.reqSecDefOptParamsAsync("SPY", "", "STK", spy.conId)
        smart = next(c for c in chains if c.exchange == "SMART")
        listed = sim.market.chain("SPY")
        assert smart.expirations == sorted({c.expiry.replace("-", "") for c in listed})
        assert smart.strikes == sorted({c.strike for c in listed})
        assert smart.expirations[0] == EXPIRY and smart.multiplier == "100"
        # one contract-details request lists a whole expiry (how the connector qualifies a chain)
        whole = await ib.reqContractDetailsAsync(
            Contract(secType="OPT", symbol="SPY", lastTradeDateOrContractMonth=EXPIRY)
        )
        assert len(whole) == 2 * len(smart.strikes)

    run(config, body)


def test_market_data_with_model_greeks_and_generic_ticks(config: QuanticityConfig) -> None:
    async def body(sim: TwsSimulator, ib: IB) -> None:
        (spy,) = await ib.qualifyContractsAsync(Stock("SPY", "SMART", "USD"))
        option = await qualified_option(ib)
        stock_ticker = ib.reqMktData(spy, "106,104,233")
        option_ticker = ib.reqMktData(option, "101")
        await until(lambda: sim.hub.counts()["mkt_data"] == 2, what="subscriptions")
        sim.advance(5)
        await until(lambda: option_ticker.modelGreeks is not None and stock_ticker.rtVolume > 0, what="ticks")
        assert 0 < stock_ticker.bid < stock_ticker.ask and stock_ticker.bidSize > 0
        assert stock_ticker.histVolatility > 0 and stock_ticker.impliedVolatility > 0
        greeks = option_ticker.modelGreeks
        market = sim.market.option_quote(sim.contracts.by_id(option.conId).option)
        assert greeks.delta == pytest.approx(market.delta) and 0 < greeks.delta < 1
        assert greeks.impliedVol == pytest.approx(market.iv)
        assert all(math.isfinite(x) for x in (greeks.gamma, greeks.vega, greeks.theta, greeks.undPrice))
        assert option_ticker.bid == market.bid and option_ticker.ask == market.ask
        # generic tick 101 on an option: its own open interest (tick 27 for a call)
        assert option_ticker.callOpenInterest == market.open_interest > 0 and math.isnan(option_ticker.putOpenInterest)
        # market data type 3: delayed tick types, flagged on the ticker
        ib.reqMarketDataType(3)
        (qqq,) = await ib.qualifyContractsAsync(Stock("QQQ", "SMART", "USD"))
        delayed = ib.reqMktData(qqq, "")
        await until(lambda: delayed.marketDataType == 3, what="marketDataType 3")
        sim.advance(2)
        await ib.reqCurrentTimeAsync()  # a round trip: everything sent before it has been read
        assert math.isnan(delayed.bid)  # nothing is 15 minutes old yet (tests/unit/test_tws_pnl_delayed.py)
        sim.advance(900)
        await until(lambda: delayed.bid == delayed.bid, what="delayed quotes")
        assert any(t.tickType == 66 for t in delayed.ticks) and delayed.bid > 0

    run(config, body)


def test_depth_has_three_lines_and_309_on_the_fourth(config: QuanticityConfig) -> None:
    async def body(sim: TwsSimulator, ib: IB) -> None:
        errors: list[tuple[int, int]] = []
        ib.errorEvent += lambda req_id, code, msg, contract: errors.append((req_id, code))
        contracts = await ib.qualifyContractsAsync(*(Stock(s, "SMART", "USD") for s in ("SPY", "QQQ", "IWM", "AAPL")))
        exchanges = {"SPY": "ARCA", "QQQ": "ISLAND", "IWM": "ARCA", "AAPL": "ISLAND"}
        explicit = [
            Contract(conId=c.conId, symbol=c.symbol, secType="STK", exchange=exchanges[c.symbol]) for c in contracts
        ]
        tickers = [ib.reqMktDepth(c, 10) for c in explicit[:3]]
        await until(lambda: sim.hub.counts()["depth"] == 3, what="three depth lines")
        fourth = ib.reqMktDepth(explicit[3], 10)
        await until(lambda: any(code == 309 for _, code in errors), what="error 309")
        assert sim.hub.counts()["depth"] == 3 and sim.stats["depth_refused"] == 1
        sim.advance(2)
        await until(lambda: all(len(t.domBids) == 10 and len(t.domAsks) == 10 for t in tickers), what="books")
        book = sim.market.spot("SPY")
        assert tickers[0].domBids[0].price < tickers[0].domAsks[0].price
        assert abs(tickers[0].domBids[0].price - book) < 0.05
        assert not fourth.domBids
        ib.cancelMktDepth(explicit[0])
        await until(lambda: sim.hub.counts()["depth"] == 2, what="a freed line")
        again = ib.reqMktDepth(explicit[3], 10)
        await until(lambda: sim.hub.counts()["depth"] == 3, what="the fourth symbol on the freed line")
        sim.advance(1)
        await until(lambda: len(again.domBids) == 10, what="AAPL book")

    run(config, body)


def test_tick_by_tick_last_excludes_dark_prints_all_last_includes_them(config: QuanticityConfig) -> None:
    async def body(sim: TwsSimulator, ib: IB) -> None:
        (spy,) = await ib.qualifyContractsAsync(Stock("SPY", "SMART", "USD"))
        (qqq,) = await ib.qualifyContractsAsync(Stock("QQQ", "SMART", "USD"))
        all_last = ib.reqTickByTickData(spy, "AllLast")
        last = ib.reqTickByTickData(qqq, "Last")
        seen: dict[str, list[Any]] = {"SPY": [], "QQQ": []}
        all_last.updateEvent += lambda t: seen["SPY"].extend(t.tickByTicks)
        last.updateEvent += lambda t: seen["QQQ"].extend(t.tickByTicks)
        await until(lambda: sim.hub.counts()["tick_by_tick"] == 2, what="subscriptions")
        prints = {"SPY": [], "QQQ": []}
        for _ in range(20):
            for symbol, batch in sim.step().items():
                if symbol in prints:
                    prints[symbol].extend(batch.trades)
        await until(lambda: len(seen["SPY"]) == len(prints["SPY"]), what="every SPY print")
        lit_qqq = [p for p in prints["QQQ"] if not p.dark]
        await until(lambda: len(seen["QQQ"]) == len(lit_qqq), what="lit QQQ prints")
        assert any(p.dark for p in prints["SPY"]) and any(t.exchange == "FINRA" for t in seen["SPY"])
        assert [t.price for t in seen["QQQ"]] == [p.price for p in lit_qqq]
        assert all(t.exchange != "FINRA" for t in seen["QQQ"])

    run(config, body)


# --- orders ----------------------------------------------------------------------------------
def test_place_modify_cancel(config: QuanticityConfig) -> None:
    async def body(sim: TwsSimulator, ib: IB) -> None:
        errors: list[tuple[int, int]] = []
        ib.errorEvent += lambda req_id, code, msg, contract: errors.append((req_id, code))
        option = await qualified_option(ib)
        order = LimitOrder("BUY", 5, 0.05, orderRef="ref-passive")  # far below the market: stays working
        trade = ib.placeOrder(option, order)
        await until(lambda: trade.orderStatus.status == "Submitted", what="Submitted")
        sim.advance(3)
        assert trade.orderStatus.filled == 0
        server_order = sim.engine.order(201, order.orderId)
        assert server_order is not None and server_order.request.order_ref == "ref-passive"
        order.lmtPrice = 0.07
        order.totalQuantity = 7
        ib.placeOrder(option, order)  # same id = modify
        await until(lambda: server_order.request.lmt_price == 0.07, what="modify")
        assert server_order.request.total_quantity == 7 and len(sim.engine.orders()) == 1
        ib.cancelOrder(order)
        await until(lambda: trade.orderStatus.status == "Cancelled", what="Cancelled")
        assert (order.orderId, 202) in errors
        ib.client.cancelOrder(order.orderId + 1000)
        await until(lambda: (order.orderId + 1000, 10147) in errors, what="10147")
        completed = await ib.reqCompletedOrdersAsync(False)
        assert [t.order.orderRef for t in completed] == ["ref-passive"]
        assert completed[0].orderStatus.status == "Cancelled"

    run(config, body)


def test_partial_fills_commissions_executions_and_positions(config: QuanticityConfig) -> None:
    async def body(sim: TwsSimulator, ib: IB) -> None:
        option = await qualified_option(ib)
        quote = sim.market.option_quote(sim.contracts.by_id(option.conId).option)
        trade = ib.placeOrder(option, LimitOrder("BUY", 120, round(quote.ask + 1.0, 2), orderRef="ref-big"))
        await until(lambda: trade.orderStatus.status == "Submitted", what="Submitted")
        sim.advance(1)
        await until(lambda: len(trade.fills) == 1, what="first partial fill")
        assert trade.orderStatus.filled == 50 and trade.orderStatus.remaining == 70
        assert trade.orderStatus.status == "Submitted"
        sim.advance(2)
        await until(lambda: trade.orderStatus.status == "Filled", what="Filled")
        await until(lambda: all(f.commissionReport.execId for f in trade.fills), what="commission reports")
        assert [f.execution.shares for f in trade.fills] == [50, 50, 20]
        # IBKR options: $0.65 per contract with a $1 minimum per order → 120 × 0.65 = 78.00 in total
        commissions = [f.commissionReport.commission for f in trade.fills]
        assert commissions == [pytest.approx(32.5), pytest.approx(32.5), pytest.approx(13.0)]
        assert len({f.execution.execId for f in trade.fills}) == 3
        assert all(f.execution.orderRef == "ref-big" for f in trade.fills)
        executions = await ib.reqExecutionsAsync()
        assert sorted(f.execution.execId for f in executions) == sorted(f.execution.execId for f in trade.fills)
        (position,) = await ib.reqPositionsAsync()
        assert position.position == 120 and position.contract.conId == option.conId
        assert position.avgCost == pytest.approx(trade.orderStatus.avgFillPrice * 100)
        # a one-lot order is charged the $1 minimum, not $0.65
        small = ib.placeOrder(option, LimitOrder("SELL", 1, 0.01, orderRef="ref-small"))
        await accepted(small)
        sim.advance(1)
        await until(lambda: small.fills and small.fills[0].commissionReport.execId, what="small fill")
        assert small.fills[0].commissionReport.commission == pytest.approx(1.0)
        assert small.fills[0].commissionReport.realizedPNL != 0.0  # closing trade reports realized P&L

    run(config, body)


def test_oca_fill_cancels_the_sibling(config: QuanticityConfig) -> None:
    async def body(sim: TwsSimulator, ib: IB) -> None:
        option = await qualified_option(ib)
        quote = sim.market.option_quote(sim.contracts.by_id(option.conId).option)
        entry = ib.placeOrder(option, LimitOrder("BUY", 10, round(quote.ask + 1, 2), orderRef="entry"))
        await accepted(entry)
        sim.advance(1)
        await until(lambda: entry.orderStatus.status == "Filled", what="entry fill")
        # bracket: a stop above the bid (triggers on the next step) and a target far above, one OCA group
        stop = StopOrder("SELL", 10, round(quote.bid + 0.5, 2), orderRef="stop", ocaGroup="bracket-1", ocaType=1)
        target = LimitOrder("SELL", 10, round(quote.ask * 3, 2), orderRef="target", ocaGroup="bracket-1", ocaType=1)
        stop_trade = ib.placeOrder(option, stop)
        target_trade = ib.placeOrder(option, target)
        await until(lambda: target_trade.orderStatus.status == "Submitted", what="target working")
        assert stop_trade.orderStatus.status == "PreSubmitted"  # a stop waits for its trigger
        sim.advance(1)
        await until(lambda: stop_trade.orderStatus.status == "Filled", what="stop fill")
        await until(lambda: target_trade.orderStatus.status == "Cancelled", what="OCA cancel")
        assert sim.positions() == {}

    run(config, body)


def test_trailing_stop_and_market_orders(config: QuanticityConfig) -> None:
    async def body(sim: TwsSimulator, ib: IB) -> None:
        option = await qualified_option(ib, strike=591.0)
        entry = ib.placeOrder(option, Order(action="BUY", totalQuantity=4, orderType="MKT", orderRef="mkt"))
        await accepted(entry)
        sim.advance(1)
        await until(lambda: entry.orderStatus.status == "Filled", what="MKT fill")
        quote = sim.market.option_quote(sim.contracts.by_id(option.conId).option)
        assert entry.orderStatus.avgFillPrice == pytest.approx(quote.ask, abs=0.5)
        trail = Order(action="SELL", totalQuantity=4, orderType="TRAIL", auxPrice=5.0, orderRef="trail")
        trail_trade = ib.placeOrder(option, trail)
        await accepted(trail_trade)
        sim.advance(1)
        await until(lambda: trail_trade.orderStatus.status == "PreSubmitted", what="trail working")
        server_order = sim.engine.order(201, trail.orderId)
        assert server_order is not None and server_order.trail_stop is not None
        first_stop = server_order.trail_stop
        # a trail only ratchets towards the market: the stop never falls
        sim.advance(10)
        assert server_order.trail_stop >= first_stop
        trail.trailStopPrice = 1_000.0  # move the stop above the market: triggers at once
        ib.placeOrder(option, trail)
        await until(lambda: server_order.request.trail_stop_price == 1_000.0, what="modify")
        sim.advance(1)
        await until(lambda: trail_trade.orderStatus.status == "Filled", what="trail fill")

    run(config, body)


def test_global_cancel_and_rejections(config: QuanticityConfig) -> None:
    async def body(sim: TwsSimulator, ib: IB) -> None:
        errors: list[tuple[int, int]] = []
        ib.errorEvent += lambda req_id, code, msg, contract: errors.append((req_id, code))
        option = await qualified_option(ib)
        trades = [ib.placeOrder(option, LimitOrder("BUY", 1, 0.01, orderRef=f"g{i}")) for i in range(3)]
        await until(lambda: all(t.orderStatus.status == "Submitted" for t in trades), what="working")
        ib.reqGlobalCancel()
        await until(lambda: all(t.orderStatus.status == "Cancelled" for t in trades), what="global cancel")
        bad = ib.placeOrder(option, LimitOrder("BUY", 0, 1.0, orderRef="zero"))
        await until(lambda: (bad.order.orderId, 201) in errors, what="201 for a zero quantity")
        unknown = ib.placeOrder(Option("SPY", EXPIRY, 9999, "C", "SMART"), LimitOrder("BUY", 1, 1.0))
        await until(lambda: (unknown.order.orderId, 200) in errors, what="200 for an unlisted contract")

    run(config, body)


def test_rolled_back_next_valid_id_and_duplicate_order_id_gets_103(config: QuanticityConfig) -> None:
    async def main() -> None:
        sim = make_sim(config)
        port = await sim.start()
        raw = await RawClient.connect(port, 9)
        first = await raw.read_until(lambda f: f[0] == "9")
        assert first is not None and first[2] == "1"
        option = sim.contracts.options("SPY")[0]
        fields = placeorder_fields(option.con_id, order_id=5)
        raw.send(*fields)
        assert await raw.read_until(lambda f: f[0] == "3" and f[1] == "5") is not None
        sim.rollback_next_order_id(1)
        rolled = await raw.read_until(lambda f: f[0] == "9")
        assert rolled is not None and rolled[2] == "1"  # below the id 5 already used
        raw.send(In.REQ_GLOBAL_CANCEL, 1)
        await raw.read_until(lambda f: f[0] == "3" and f[2] == "Cancelled")
        raw.send(*placeorder_fields(option.con_id, order_id=5))  # reusing id 5 …
        error = await raw.read_until(lambda f: f[0] == "4" and f[2] == "5" and f[3] != "202")
        assert error is not None and error[3] == "103"  # … is refused
        sim.clear_faults()
        raw.send(In.REQ_IDS, 1, 1)
        healthy = await raw.read_until(lambda f: f[0] == "9")
        assert healthy is not None and healthy[2] == "6"
        raw.close()
        await sim.stop()

    asyncio.run(main())


def placeorder_fields(con_id: int, order_id: int) -> list[object]:
    """A placeOrder exactly as ib_async 2.1 encodes it for server version 176 (captured layout)."""
    captured: list[list[object]] = []

    class Capture:
        def serverVersion(self) -> int:  # noqa: N802 - ib_async's name
            return SERVER_VERSION

        def send(self, *fields: object, makeEmpty: bool = True) -> None:  # noqa: N803
            captured.append(list(fields))

    from ib_async.client import Client

    Client.placeOrder(Capture(), order_id, Contract(conId=con_id, exchange="SMART"), LimitOrder("BUY", 1, 0.01))  # type: ignore[arg-type]
    fields = captured[0]
    return [_wire(f) for f in fields]


def _wire(value: object) -> object:
    from ib_async.util import UNSET_DOUBLE, UNSET_INTEGER

    if isinstance(value, Contract):
        return "\0".join(
            str(x)
            for x in (
                value.conId,
                value.symbol,
                value.secType,
                value.lastTradeDateOrContractMonth,
                value.strike,
                value.right,
                value.multiplier,
                value.exchange,
                value.primaryExchange,
                value.currency,
                value.localSymbol,
                value.tradingClass,
            )
        )
    if (
        isinstance(value, float)
        and value == UNSET_DOUBLE
        or isinstance(value, int)
        and not isinstance(value, bool)
        and value == UNSET_INTEGER
    ):
        return ""
    if isinstance(value, list):
        return ""
    return value


def test_trailing_stop_triggers_when_the_market_falls_back(config: QuanticityConfig) -> None:
    """No edit of the stop: the bid rises, the trail follows it up, the bid falls back through it."""

    async def body(sim: TwsSimulator, ib: IB) -> None:
        option = await qualified_option(ib, strike=591.0)
        listing = sim.contracts.by_id(option.conId)
        assert listing is not None and listing.option is not None
        entry = ib.placeOrder(option, Order(action="BUY", totalQuantity=2, orderType="MKT", orderRef="long"))
        await accepted(entry)
        sim.advance(1)
        await until(lambda: entry.orderStatus.status == "Filled", what="entry fill")
        trail_amount = 0.05
        trail = Order(action="SELL", totalQuantity=2, orderType="TRAIL", auxPrice=trail_amount, orderRef="trail")
        trade = ib.placeOrder(option, trail)
        await accepted(trade)
        server_order = sim.engine.order(201, trail.orderId)
        assert server_order is not None and server_order.request.trail_stop_price is None  # never edited
        best_bid = 0.0
        stop_before = None
        for _ in range(1800):  # at most 30 simulated minutes of the seeded market
            stop_before = server_order.trail_stop
            sim.step()
            if server_order.triggered:
                break
            best_bid = max(best_bid, sim.market.option_quote(listing.option).bid)
            # the stop ratchets up with the best bid seen and never falls
            assert server_order.trail_stop == pytest.approx(best_bid - trail_amount)
        assert server_order.triggered, "the seeded market never fell back by the trail amount"
        trigger_bid = sim.market.option_quote(listing.option).bid
        assert stop_before is not None and trigger_bid <= stop_before  # the market crossed the stop
        assert stop_before > best_bid - trail_amount - 1e-9 and best_bid > 0
        await until(lambda: trade.orderStatus.status == "Filled", what="the trail's fill")
        assert trade.orderStatus.avgFillPrice == pytest.approx(trigger_bid, abs=1e-4)
        assert server_order.request.trail_stop_price is None and sim.positions() == {}

    run(config, body)
