"""Venue wiring without Ray: the message batcher, the venue config, the live profile checks."""

from __future__ import annotations

import argparse

import msgspec
import pytest

from actors.common import BROKER, FEED
from quanticity.config import ConfigError, load_config
from quanticity.messages import BookSnapshot, MarketBatch, OptionContract, OptionQuote, Quote, Right, Trade
from quanticity.venues.batcher import MarketBatcher
from quanticity.venues.profile import (
    LOOPBACK_TOKEN,
    check_live_environment,
    ibkr_config,
    live_ibkr_endpoint,
    source_environment,
    twin_environment,
)
from supervisors.cli import check_venue, venue_summary

pytestmark = pytest.mark.unit


def _quote(symbol: str, ts: int) -> Quote:
    return Quote(ts_event=ts, ts_init=ts, symbol=symbol, bid=1.0, ask=1.1, bid_size=5, ask_size=6)


def _option(underlying: str, ts: int) -> OptionQuote:
    contract = OptionContract(underlying, "2026-11-20", 500.0, Right.CALL)
    return OptionQuote(
        ts_event=ts,
        ts_init=ts,
        contract=contract,
        bid=1.0,
        ask=1.2,
        iv=0.2,
        delta=0.5,
        gamma=0.01,
        vega=0.1,
        theta=-0.2,
        underlying_price=500.0,
        open_interest=10,
        volume=3,
    )


def test_batcher_groups_messages_per_symbol_in_arrival_order() -> None:
    batcher = MarketBatcher(["SPY", "QQQ"])
    assert batcher.add(_quote("SPY", 1))
    assert batcher.add(Trade(ts_event=2, ts_init=2, symbol="SPY", price=1.05, size=100))
    assert batcher.add(_quote("SPY", 3))
    assert batcher.add(BookSnapshot(ts_event=4, ts_init=4, symbol="QQQ", bids=((1.0, 5),), asks=((1.1, 5),)))
    assert batcher.add(_option("QQQ", 5))
    assert batcher.pending_events == 5
    batches = batcher.drain()
    assert set(batches) == {"SPY", "QQQ"}
    spy, qqq = batches["SPY"], batches["QQQ"]
    assert [q.ts_event for q in spy.quotes] == [1, 3] and len(spy.trades) == 1 and spy.event_count == 3
    assert len(qqq.books) == 1 and len(qqq.options) == 1 and qqq.ts_event == 5 and qqq.ts_init == 4
    assert batcher.latest_ts == 5 and batcher.drain() == {} and batcher.pending_events == 0
    # the batch survives the msgpack path the symbol actors decode (``on_packed``)
    decoded = msgspec.msgpack.decode(msgspec.msgpack.encode([spy]), type=list[MarketBatch])
    assert decoded == [spy]


def test_batcher_refuses_and_counts_what_no_symbol_actor_takes() -> None:
    batcher = MarketBatcher(["SPY"])
    assert not batcher.add(_quote("AAPL", 1))
    assert not batcher.add(msgspec.structs.replace(_quote("SPY", 1), symbol="TSLA"))
    assert batcher.rejected["unknown_symbol"] == 2 and batcher.accepted == 0
    batcher.add_symbol("AAPL")
    assert batcher.add(_quote("AAPL", 2))
    batcher.remove_symbol("AAPL")
    assert batcher.drain() == {}


def test_batcher_rejects_message_kinds_it_does_not_batch() -> None:
    batcher = MarketBatcher()
    batch = MarketBatch(ts_event=1, ts_init=1, symbol="SPY")
    assert not batcher.add(batch)
    assert batcher.rejected["kind_MarketBatch"] == 1


def test_batcher_restamps_ts_init_on_the_wall_clock() -> None:
    batcher = MarketBatcher(init_clock=lambda: 42)
    batcher.add(_quote("SPY", 7))
    batch = batcher.drain()["SPY"]
    assert batch.quotes[0].ts_event == 7 and batch.quotes[0].ts_init == 42


def test_venue_section_validates_ibkr_settings_with_file_and_key() -> None:
    config = load_config(overrides={"system": {"venue": {"kind": "sim"}}})
    assert config.system.venue.kind == "sim"
    with pytest.raises(ConfigError, match=r"system.yaml: venue.kind = 'paper'"):
        load_config(overrides={"system": {"venue": {"kind": "paper"}}})
    with pytest.raises(ConfigError, match=r"venue.ibkr.pacing_msgs_per_s = 99"):
        load_config(overrides={"system": {"venue": {"ibkr": {"pacing_msgs_per_s": 99}}}})


def test_ibkr_settings_take_the_endpoint_of_the_mode() -> None:
    venue = load_config().system.venue
    settings = ibkr_config(venue, "127.0.0.1", 40001)
    assert settings.resolved_port == 40001 and settings.request_timeout_s < 5.0  # below the router's broker timeout
    assert live_ibkr_endpoint(venue, {"IB_HOST": "10.0.0.5", "IB_PORT": "7496"}) == ("10.0.0.5", 7496)
    assert live_ibkr_endpoint(venue, {}) == ("127.0.0.1", 7497)
    with pytest.raises(ConfigError, match=r"IB_PORT = 'seven'"):
        live_ibkr_endpoint(venue, {"IB_PORT": "seven"})


def test_live_refuses_to_start_naming_each_missing_credential() -> None:
    venue = load_config().system.venue
    with pytest.raises(
        ConfigError, match=r"UW_API_TOKEN or UNUSUAL_WHALES_API_TOKEN is not set.*ALPHA_VANTAGE_API_KEY"
    ):
        check_live_environment(venue, {})
    check_live_environment(venue, {"UNUSUAL_WHALES_API_TOKEN": "t", "ALPHA_VANTAGE_API_KEY": "k"})
    assert source_environment({"UNUSUAL_WHALES_API_TOKEN": "t"})["UW_API_TOKEN"] == "t"
    no_fetcher = venue.model_copy(update={"fetcher": False})
    check_live_environment(no_fetcher, {})


def test_twin_environment_points_the_sources_at_loopback() -> None:
    env = twin_environment(8701, 8702)
    assert env["UW_BASE_URL"] == "http://127.0.0.1:8701/api" and env["AV_BASE_URL"] == "http://127.0.0.1:8702"
    assert env["UW_WS_URL"].startswith("ws://127.0.0.1:8701") and env["UW_API_TOKEN"] == LOOPBACK_TOKEN


def test_cli_refuses_an_unpaced_or_lockstep_tws_run(monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(overrides={"system": {"venue": {"kind": "tws"}}})
    with pytest.raises(ConfigError, match=r"--speed 0"):
        check_venue(config, argparse.Namespace(command="run", speed=0.0, lockstep=False))
    with pytest.raises(ConfigError, match=r"--lockstep"):
        check_venue(config, argparse.Namespace(command="run", speed=None, lockstep=True))
    check_venue(config, argparse.Namespace(command="run", speed=None, lockstep=False))
    live = load_config(overrides={"system": {"venue": {"kind": "live"}}})
    for name in ("UW_API_TOKEN", "UNUSUAL_WHALES_API_TOKEN", "ALPHA_VANTAGE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="refusing to start --live"):
        check_venue(live, argparse.Namespace(command="run", speed=None, lockstep=False))


def test_run_summary_names_the_main_reasons_market_data_was_rejected() -> None:
    feed = {"link_ready": 1.0, "accepted_quote": 900.0, "accepted_trade": 100.0, "count_disconnects": 0.0}
    feed |= {"rejected_missing": 5.0, "rejected_crossed_book": 7.0, "rejected_bad_oi": 1.0, "rejected_nan": 2.0}
    summary = venue_summary({FEED: feed | {"rejected_unused": 0.0}, BROKER: {}})
    assert summary["IBKR market data"] == "accepted 1,000, rejected 15 (crossed_book 7, missing 5, nan 2)"
    clean = venue_summary({FEED: {"link_ready": 1.0, "accepted_quote": 3.0}})
    assert clean["IBKR market data"] == "accepted 3, rejected 0"
