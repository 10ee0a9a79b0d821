"""Run-time universe changes in ``venue.kind: tws``: the TWS simulator lists and delists symbols,
the IBKR feed subscribes and cancels one symbol without touching the other lines, and the depth
rotation takes symbols in and out.

The simulator runs on 127.0.0.1 with the real ``ib_async`` client; simulated time moves only
through ``sim.step`` and every wait polls state with a deadline.
"""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from ib_async import Stock

from quanticity.clock import SimulatedClock
from quanticity.config import QuanticityConfig
from quanticity.messages import Message, OptionQuote, Quote, Trade
from quanticity.sim.tws.contracts import ContractQuery
from quanticity.venues.ibkr import DepthRotation, IbkrConnection, IbkrFeed
from tests.async_helpers import until
from tests.tws_helpers import START_NS, ibkr_config, tws_sim

pytestmark = pytest.mark.unit


def query(symbol: str, sec_type: str = "STK") -> ContractQuery:
    return ContractQuery(0, symbol, sec_type, "", 0.0, "", "", "SMART", "", "USD", "", "")


# --- the simulator's market and security master ------------------------------------------------
def test_sim_lists_a_symbol_added_mid_session_without_moving_the_others(config: QuanticityConfig) -> None:
    plain = tws_sim(config, ["SPY", "QQQ"])
    grown = tws_sim(config, ["SPY", "QQQ"])
    start_ids = {s: grown.contracts.underlying(s).con_id for s in ("SPY", "QQQ")}  # type: ignore[union-attr]
    for _ in range(30):
        plain.step()
        grown.step()
    listing = grown.add_symbol("AAPL")
    assert grown.market.symbols == ["SPY", "QQQ", "AAPL"] and grown.contracts.symbols == ["SPY", "QQQ", "AAPL"]
    assert grown.contracts.resolve(query("AAPL")) == listing and listing.primary_exchange == "NASDAQ"
    assert listing.con_id > max(o.con_id for s in ("SPY", "QQQ") for o in grown.contracts.options(s))
    assert {s: grown.contracts.underlying(s).con_id for s in ("SPY", "QQQ")} == start_ids  # type: ignore[union-attr]
    expirations, strikes = grown.contracts.option_parameters("AAPL")
    chain = grown.market.chain("AAPL")
    assert chain and len(grown.contracts.options("AAPL")) == len(chain) and expirations and strikes
    for _ in range(30):  # the other symbols' paths are the ones of the market without AAPL
        before, after = plain.step(), grown.step()
        for symbol in ("SPY", "QQQ"):
            assert msgspec.msgpack.encode(before[symbol]) == msgspec.msgpack.encode(after[symbol])
        assert after["AAPL"].quotes
    assert grown.snapshot is not None and grown._quote(listing) is not None  # noqa: SLF001 - its quote is the last batch's


def test_sim_refuses_an_unknown_symbol_and_delists_a_removed_one(config: QuanticityConfig) -> None:
    sim = tws_sim(config, ["SPY", "QQQ"])
    with pytest.raises(KeyError, match="NOPE"):
        sim.add_symbol("NOPE")
    assert sim.market.symbols == ["SPY", "QQQ"] and sim.contracts.underlying("NOPE") is None
    sim.step()
    qqq = sim.contracts.underlying("QQQ")
    option = sim.contracts.options("QQQ")[0]
    assert qqq is not None and sim._option_quote(option) is not None  # noqa: SLF001
    assert sim.remove_symbol("QQQ") and not sim.remove_symbol("QQQ")
    assert "QQQ" not in sim.step() and sim.contracts.match(query("QQQ")) == []
    assert sim.contracts.option_parameters("QQQ") == ([], [])
    assert sim._option_quote(option) is None and sim._quote(qqq) is None  # noqa: SLF001 - no more quotes or fills
    assert sim.contracts.by_id(qqq.con_id) == qqq  # orders and positions in its contracts still resolve
    assert sim.add_symbol("QQQ") == qqq and sim.contracts.options("QQQ")[0] == option  # same contracts back


# --- the depth rotation ------------------------------------------------------------------------
def test_depth_rotation_takes_symbols_in_and_out() -> None:
    rotation = DepthRotation(["SPY", "QQQ"], lines=2, dwell_s=10, retry_after_s=30)
    assert set(rotation.plan(0).subscribe) == {"SPY", "QQQ"}
    assert rotation.add_symbol("IWM") and not rotation.add_symbol("IWM")
    # three symbols over two lines: the new one gets a line within the next two windows
    windows = [set(rotation.plan(t).subscribe) | rotation.active for t in (10, 20)]
    assert any("IWM" in w for w in windows) and len(rotation.active) == 2
    held = sorted(rotation.active)
    assert rotation.remove_symbol(held[0]) and held[0] not in rotation.active and held[0] not in rotation.symbols
    assert not rotation.remove_symbol("NOPE")
    assert set(rotation.plan(20).subscribe) | rotation.active == set(rotation.symbols)


# --- the IBKR feed against the simulator -------------------------------------------------------
def test_feed_adds_and_removes_one_symbol_through_ib_async(config: QuanticityConfig) -> None:
    async def main() -> None:
        sim = tws_sim(config, ["SPY", "QQQ"])
        await sim.start()
        events: list[Message] = []
        cfg = ibkr_config(sim.port, depth_symbols=["SPY", "IWM"], tick_by_tick_symbols=["SPY", "IWM"])
        conn = IbkrConnection(cfg, "ingestion", clock=SimulatedClock(START_NS))
        feed = IbkrFeed(conn, ["SPY", "QQQ"], events.append, option_symbols=["SPY"])
        try:
            await conn.start()
            await until(lambda: sim.hub.counts()["mkt_data"] == 2 + 6, what="SPY, QQQ and SPY's options")
            before = dict(sim.hub.counts())
            sent = sim.stats.get("symbols_added", 0)
            sim.add_symbol("IWM")  # the venue host lists it first, then the feed subscribes
            assert sim.stats["symbols_added"] == sent + 1
            task = asyncio.ensure_future(feed.add_symbol("IWM", options=True))
            # a symbol listed moments ago has no quote to snapshot: its options wait for the first step
            await until(lambda: sim.hub.counts_for("IWM")["mkt_data"] >= 1, what="IWM L1 at the server")
            sim.step()
            opened = await asyncio.wait_for(task, 15)
            assert opened == 6  # 1 expiry × 3 strikes × call/put
            await until(
                lambda: sim.hub.counts_for("IWM") == {"mkt_data": 1 + 6, "depth": 1, "tick_by_tick": 1},
                what="IWM L1, options, depth and tick-by-tick at the server",
            )
            # only IWM's lines were added: SPY and QQQ were not cancelled and re-requested
            assert sim.hub.counts()["mkt_data"] == before["mkt_data"] + 7
            for _ in range(3):
                sim.step()
            await until(
                lambda: (
                    any(isinstance(e, Quote) and e.symbol == "IWM" for e in events)
                    and any(isinstance(e, OptionQuote) and e.contract.underlying == "IWM" for e in events)
                    and any(isinstance(e, Trade) and e.symbol == "IWM" for e in events)
                ),
                what="IWM quotes, option quotes and prints",
            )
            with pytest.raises(ValueError, match="NOPE"):
                await feed.add_symbol("NOPE")
            assert "NOPE" not in feed.symbols
            cancelled = feed.remove_symbol("QQQ")
            assert cancelled == 1 and "QQQ" not in feed.symbols
            await until(lambda: sim.hub.counts_for("QQQ")["mkt_data"] == 0, what="QQQ cancelled at the server")
            sim.remove_symbol("QQQ")
            assert feed.remove_symbol("IWM") == 1 + 6 + 1 + 1
            await until(lambda: sim.hub.counts_for("IWM") == {"mkt_data": 0, "depth": 0, "tick_by_tick": 0})
            events.clear()
            for _ in range(3):
                sim.step()
            await until(lambda: any(isinstance(e, Quote) and e.symbol == "SPY" for e in events), what="SPY goes on")
            assert not [e for e in events if getattr(e, "symbol", "") in ("QQQ", "IWM")]
            assert not [e for e in events if isinstance(e, OptionQuote) and e.contract.underlying == "IWM"]
            assert sim.stats.get("pacing_violations", 0) == 0
            await conn.stop()
        finally:
            await sim.stop()

    asyncio.run(main())


def test_ib_async_sees_the_added_symbol_and_no_definition_after_removal(config: QuanticityConfig) -> None:
    async def main() -> None:
        from ib_async import IB

        sim = tws_sim(config, ["SPY"])
        await sim.start()
        ib = IB()
        try:
            await ib.connectAsync("127.0.0.1", sim.port, clientId=7, timeout=10)
            assert await ib.reqContractDetailsAsync(Stock("NVDA", "SMART", "USD")) == []
            sim.add_symbol("NVDA")
            (details,) = await ib.reqContractDetailsAsync(Stock("NVDA", "SMART", "USD"))
            assert details.contract is not None and details.contract.primaryExchange == "NASDAQ"
            (params,) = [
                p
                for p in await ib.reqSecDefOptParamsAsync("NVDA", "", "STK", details.contract.conId)
                if p.exchange == "SMART"
            ]
            expirations, strikes = sim.contracts.option_parameters("NVDA")
            assert list(params.expirations) == expirations and list(params.strikes) == strikes
            sim.remove_symbol("NVDA")
            assert await ib.reqContractDetailsAsync(Stock("NVDA", "SMART", "USD")) == []
        finally:
            ib.disconnect()
            await sim.stop()

    asyncio.run(main())
