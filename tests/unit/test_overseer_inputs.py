"""The overseer's inputs as the running system writes them (issue 6, SPEC §12).

Staleness keys are built from the shipped UW source YAML and the payloads are written by the
fetcher's own sink (:func:`quanticity.feeds.sink.write_payload`), records parsed by the fetcher's
parsers from UW-shaped bodies; the IBKR side is what the IBKR feed (``raw:ibkr:quote:last``) and the
analytics actor (``analytics:{S}:features``) write. Each rule fires at its threshold and not below.
"""

from __future__ import annotations

import asyncio
import json
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
import redis
import yaml

from quanticity import keys
from quanticity.calendar import NyseCalendar
from quanticity.clock import SimulatedClock
from quanticity.config.loader import ConfigError, load_config
from quanticity.feeds.parse import PARSERS
from quanticity.feeds.sink import write_payload
from quanticity.feeds.sources import SourceFile
from quanticity.messages import FeatureSnapshot, OptionContract, OptionQuote, Quote, Right, encode
from quanticity.overseer.checks import run_checks
from quanticity.overseer.config import OverseerConfig
from quanticity.overseer.findings import Finding
from quanticity.overseer.reader import RedisSnapshotReader, occ_symbols
from quanticity.overseer.snapshot import NS
from quanticity.overseer.sources import REPO_ROOT, cadence_problems, check_cadence, load_source_file
from quanticity.sim.market import SyntheticMarket
from quanticity.sim.uw_data import ts_text
from quanticity.sim.uw_server import UwServer

pytestmark = pytest.mark.unit

UW_FILE = REPO_ROOT / "config" / "sources" / "unusual_whales.yaml"
T0 = 1_750_000_000 * NS  # 2025-06-15 15:06:40 UTC
WATCHED = ["SPX", "SPY", "QQQ", "IWM", "AAPL"]
CALL = OptionContract("SPY", "2025-06-20", 600.0, Right.CALL)
PUT = OptionContract("SPY", "2025-06-20", 600.0, Right.PUT)


@pytest.fixture(scope="module")
def uw() -> SourceFile:
    return load_source_file(UW_FILE)


def _reader(client: redis.Redis, clock: SimulatedClock, uw: SourceFile, config: OverseerConfig | None = None):
    return RedisSnapshotReader(client, config or OverseerConfig(), clock, lambda: WATCHED, uw=uw)


def _write(client: redis.Redis, uw: SourceFile, endpoint: str, symbol: str | None, at_ns: int, body: Any) -> str:
    """Store a UW-shaped response the way the fetcher does: its parser, then its sink, under the YAML's key."""
    spec = uw.endpoints[endpoint]
    payload = PARSERS[spec.parser](json.dumps({"data": body}).encode())
    return write_payload(
        client,
        spec.redis_key,
        spec.ttl_s,
        source="unusual_whales",
        endpoint=endpoint,
        symbol=symbol,
        fetched_at_ns=at_ns,
        payload=payload,
    )


def _findings(reader: RedisSnapshotReader) -> dict[tuple[str, str], Finding]:
    return {(f.rule, f.subject): f for f in run_checks(reader.read_now(), reader._config)}


# --- 1. staleness ---------------------------------------------------------------------------------
def test_staleness_keys_come_from_the_source_yaml_and_fire_at_their_thresholds(
    redis_client: redis.Redis, uw: SourceFile
) -> None:
    clock = SimulatedClock(T0)
    reader = _reader(redis_client, clock, uw)
    watched = {(m.source, s) for m in reader.sources for s in m.subjects(WATCHED)}
    # the per-ticker endpoints only for the symbols the fetcher fetches them for; flow alerts market-wide
    assert ("uw_spot_gex", "SPY") in watched and ("uw_spot_gex", "AAPL") not in watched
    assert ("uw_flow_alerts", None) in watched and ("uw_chains", "SPX") in watched
    now = clock.now_ns()
    written = {_write(redis_client, uw, "flow_alerts", None, now, [])}
    for symbol in ("SPX", "SPY", "QQQ", "IWM"):
        written.add(_write(redis_client, uw, "spot_exposures", symbol, now, []))
        written.add(_write(redis_client, uw, "option_chains", symbol, now, ["SPY250620C00600000"]))
    assert "raw:uw:flow_alerts" in written and "raw:uw:chains:SPX" in written
    for symbol in WATCHED:
        redis_client.set(keys.raw_depth_heartbeat(symbol), now)
    assert _findings(reader) == {}
    expectations = [(90, "uw_spot_gex", "SPY"), (120, "uw_flow_alerts", "*"), (180, "uw_chains", "QQQ")]
    for threshold, rule, subject in expectations:
        clock.set(now + threshold * NS - 1)  # 1 ns below the threshold: quiet
        assert (f"staleness.{rule}", subject) not in _findings(reader)
        clock.set(now + threshold * NS)  # exactly at it: fires
        found = _findings(reader)[(f"staleness.{rule}", subject)]
        assert found.value == pytest.approx(threshold) and found.severity.value == "WARNING"
    assert ("staleness.uw_spot_gex", "AAPL") not in _findings(reader)  # never fetched, never watched


def test_a_fetcher_clock_running_ahead_is_not_mistaken_for_fresh_data(
    redis_client: redis.Redis, uw: SourceFile
) -> None:
    """tws: the fetcher stamps on the planned session clock, the overseer reads the later-opened market's."""
    clock = SimulatedClock(T0)
    lead = 3_600 * NS
    fetcher_clock = SimulatedClock(T0 + lead)
    reader = RedisSnapshotReader(redis_client, OverseerConfig(), clock, lambda: WATCHED, uw=uw, uw_clock=fetcher_clock)
    now = clock.now_ns()
    _write(redis_client, uw, "flow_alerts", None, now + lead, [])
    _write(redis_client, uw, "spot_exposures", "SPY", now + lead, [_spot_row(103.0, now + lead - 30 * NS)])
    redis_client.set(keys.raw_quote_last("SPY"), _quote(now, 99.5, 100.5))
    found = _findings(reader)
    assert reader.uw_lead_ns == lead and ("staleness.uw_flow_alerts", "*") not in found
    assert found[("divergence.price", "SPY")].value == pytest.approx(0.03)  # paired despite the hour between clocks
    # the market runs slower than planned: 100 s of ours are 120 s of the fetcher's, and ages are the fetcher's
    clock.advance(100)
    fetcher_clock.advance(119.999)
    assert ("staleness.uw_flow_alerts", "*") not in _findings(reader)
    fetcher_clock.advance(0.001)
    assert _findings(reader)[("staleness.uw_flow_alerts", "*")].value == pytest.approx(120.0)
    _write(redis_client, uw, "flow_alerts", None, fetcher_clock.now_ns() + 86_400 * NS, [])  # a stamp a day ahead
    assert ("staleness.uw_flow_alerts", "*") in _findings(reader)  # is not fresh data
    assert reader.counters.get("reader.rejected.uw_future") == 1


def test_without_a_uw_source_only_the_ibkr_heartbeat_is_watched(redis_client: redis.Redis) -> None:
    clock = SimulatedClock(T0)
    reader = RedisSnapshotReader(redis_client, OverseerConfig(), clock, lambda: WATCHED)
    assert [m.source for m in reader.sources] == ["ibkr_heartbeat"]
    clock.advance(600)
    assert {f.rule for f in run_checks(reader.read_now(), reader._config)} == {"staleness.ibkr_heartbeat"}


def test_thresholds_must_be_above_the_fetch_interval(uw: SourceFile, tmp_path: Path) -> None:
    assert cadence_problems(OverseerConfig(), uw, UW_FILE) == []  # the shipped pair holds
    raw = yaml.safe_load(UW_FILE.read_text())
    raw["endpoints"]["option_chains"]["interval_s"] = 600
    slow = SourceFile.model_validate(raw)
    (problem,) = cadence_problems(OverseerConfig(), slow, "uw.yaml")
    assert "overseer.staleness.uw_chains.warn_after_s = 180" in problem and "600 s" in problem
    assert "endpoints.option_chains" in problem
    with pytest.raises(ConfigError, match="uw_chains"):
        RedisSnapshotReader(None, OverseerConfig(), SimulatedClock(T0), list, uw=slow)  # type: ignore[arg-type]
    off = OverseerConfig.model_validate({"staleness": {"uw_chains": {"warn_after_s": 180, "enabled": False}}})
    assert cadence_problems(off, slow, "uw.yaml") == []  # a disabled rule is not checked
    raw["source"]["schedule"]["rth"] = 1.5  # 30 s x 1.5 = 45 s, still below 90 s; chains 600 s x 1.5
    (path := tmp_path / "uw.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"900 s fetch interval"):
        check_cadence(OverseerConfig(), [path])
    check_cadence(OverseerConfig(), [REPO_ROOT / "config" / "sources" / "alpha_vantage.yaml"])  # no UW: nothing
    with pytest.raises(ConfigError, match="uw_flow_alerts.warn_after_s = 45"):
        load_config(overrides={"ops": {"overseer": {"staleness": {"uw_flow_alerts": {"warn_after_s": 45}}}}})


# --- 2. divergence --------------------------------------------------------------------------------
def _spot_row(price: float, at_ns: int) -> dict[str, str]:
    """One per-minute row of ``/stock/{ticker}/spot-exposures`` in UW's wire shape."""
    row = {f"{g}_per_one_percent_move_{k}": "0" for g in ("charm", "gamma", "vanna") for k in ("dir", "oi", "vol")}
    return row | {"price": f"{price}", "time": ts_text(at_ns)}


def _quote(now: int, bid: float, ask: float) -> bytes:
    return encode(Quote(ts_event=now, ts_init=now, symbol="SPY", bid=bid, ask=ask, bid_size=5, ask_size=5))


def _contract_row(contract: OptionContract, iv: float, bid: float, ask: float) -> dict[str, Any]:
    return {
        "option_symbol": occ_symbols(contract)[0],
        "implied_volatility": f"{iv!r}",
        "nbbo_bid": f"{bid!r}",
        "nbbo_ask": f"{ask!r}",
        "open_interest": 100,
        "volume": 10,
    }


def _features(now: int, call_iv: float, call_bid: float, call_ask: float) -> bytes:
    def option(contract: OptionContract, iv: float, bid: float, ask: float) -> OptionQuote:
        return OptionQuote(
            ts_event=now,
            ts_init=now,
            contract=contract,
            bid=bid,
            ask=ask,
            iv=iv,
            delta=0.5,
            gamma=0.01,
            vega=0.3,
            theta=-0.2,
            underlying_price=600.0,
            open_interest=100,
            volume=10,
        )

    snapshot = FeatureSnapshot(
        ts_event=now,
        ts_init=now,
        symbol="SPY",
        mid=600.0,
        spread_bps=1.0,
        imbalance_l1=0.0,
        imbalance_l5=0.0,
        realized_vol=0.1,
        last_price=600.0,
        momentum_bps=0.0,
        computed_at=now,
        valid_until=now + 5 * NS,
        origin_ts_init=now,
        atm_call=option(CALL, call_iv, call_bid, call_ask),
        atm_put=option(PUT, 0.2, 4.0, 4.2),
    )
    return encode(snapshot)


def test_price_divergence_fires_at_two_percent_and_not_below(redis_client: redis.Redis, uw: SourceFile) -> None:
    clock = SimulatedClock(T0)
    reader = _reader(redis_client, clock, uw)
    now = clock.now_ns()
    redis_client.set(keys.raw_quote_last("SPY"), _quote(now, 99.5, 100.5))  # IBKR mid 100
    cases = [(101.99, False), (102.0, True), (98.0, True), (98.01, False)]
    for uw_price, fires in cases:
        rows = [_spot_row(50.0, now - 120 * NS), _spot_row(uw_price, now - 30 * NS)]  # the newest row counts
        _write(redis_client, uw, "spot_exposures", "SPY", now, rows)
        found = _findings(reader).get(("divergence.price", "SPY"))
        assert (found is not None) == fires, (uw_price, found)
    assert found is None
    _write(redis_client, uw, "spot_exposures", "SPY", now, [_spot_row(110.0, now - 61 * NS)])
    assert ("divergence.price", "SPY") not in _findings(reader)  # 61 s apart: not the same moment
    assert reader.counters.get("reader.unpaired.price") == 1 and reader.counters.get("reader.pairs.price") == 4
    _write(redis_client, uw, "spot_exposures", "SPY", now, [_spot_row(110.0, now - 60 * NS)])
    assert _findings(reader)[("divergence.price", "SPY")].severity.value == "CRITICAL"  # 10 % ≥ 5 %


def test_greeks_and_spread_divergence_fire_at_their_thresholds(redis_client: redis.Redis, uw: SourceFile) -> None:
    clock = SimulatedClock(T0)
    reader = _reader(redis_client, clock, uw)
    now = clock.now_ns()
    # IBKR: ATM call IV 0.25, 2.00 / 2.50 → relative spread 0.5 / 2.25
    redis_client.set(keys.analytics("SPY", "features"), _features(now, 0.25, 2.0, 2.5))
    ibkr_spread = 0.5 / 2.25
    occ = occ_symbols(CALL)[0]

    def findings_for(uw_iv: float, uw_spread: float) -> dict[tuple[str, str], Finding]:
        mid = 2.25
        half = mid * uw_spread / 2
        rows = [_contract_row(CALL, uw_iv, mid - half, mid + half), _contract_row(PUT, 0.2, 4.0, 4.2)]
        _write(redis_client, uw, "option_contracts", "SPY", now - 30 * NS, rows)
        return _findings(reader)

    quiet = findings_for(0.25 * 1.0999, ibkr_spread * 1.1499)
    assert not [k for k in quiet if k[0].startswith("divergence")]
    loud = findings_for(0.25 * 1.10, ibkr_spread * 1.15)
    assert loud[("divergence.greeks", f"SPY {occ} iv")].value == pytest.approx(0.10)
    assert loud[("divergence.spread", f"SPY {occ} spread")].value == pytest.approx(0.15)
    assert ("divergence.greeks", f"SPY {occ_symbols(PUT)[0]} iv") not in loud  # the put agrees
    below = findings_for(0.25 * 0.9001, ibkr_spread * 0.8501)
    assert not [k for k in below if k[0].startswith("divergence")]
    # UW fetched 61 s before the IBKR snapshot: no pair this round
    rows = [_contract_row(CALL, 0.5, 1.0, 3.0)]
    _write(redis_client, uw, "option_contracts", "SPY", now - 61 * NS, rows)
    assert not [k for k in _findings(reader) if k[0].startswith("divergence")]
    # a malformed IBKR snapshot is counted, never raised
    redis_client.set(keys.analytics("SPY", "features"), b"{broken")
    _write(redis_client, uw, "option_contracts", "SPY", now, rows)
    assert not [k for k in _findings(reader) if k[0].startswith("divergence")]
    assert reader.counters.get("reader.rejected.features") == 1


# --- the UW twin quotes the simulated market (so `make run` compares two consistent feeds) -------------
def test_uw_twin_with_a_market_agrees_with_the_ibkr_side(redis_client: redis.Redis, uw: SourceFile) -> None:
    """The fetcher's path end to end (aiohttp → twin → parser → sink) against IBKR values of the same market."""
    calendar = NyseCalendar()
    day = calendar.session_on_or_before(date(2025, 6, 13))
    open_ns = int(calendar.session_open(day).timestamp()) * NS
    market = SyntheticMarket(load_config().market, ["SPY"], day, 7, open_ns, 2 * NS)
    for _ in range(300):  # ten simulated minutes into the session
        market.step(0)
    clock = SimulatedClock(market.now_ns)

    async def fetch(server: UwServer, endpoint: str) -> None:
        spec = uw.endpoints[endpoint]
        url = server.base_url + "/api" + spec.path.replace("{ticker}", "SPY")
        async with aiohttp.ClientSession() as session, session.get(url, headers={"Authorization": "Bearer t"}) as got:
            assert got.status == 200
            payload = PARSERS[spec.parser](await got.read())
        write_payload(
            redis_client,
            spec.redis_key,
            spec.ttl_s,
            source="unusual_whales",
            endpoint=endpoint,
            symbol="SPY",
            fetched_at_ns=clock.now_ns(),
            payload=payload,
        )

    async def scenario() -> None:
        server = UwServer("t", clock=clock, market=market)
        await server.start()
        try:
            for endpoint in ("spot_exposures", "option_contracts", "option_chains"):
                await fetch(server, endpoint)
        finally:
            await server.stop()

    asyncio.run(scenario())
    now = clock.now_ns()
    spot = market.spot("SPY")
    redis_client.set(keys.raw_quote_last("SPY"), _quote(now, spot - 0.01, spot + 0.01))
    chain = market.chain("SPY")
    atm_call = min((c for c in chain if c.right is Right.CALL), key=lambda c: (c.expiry, abs(c.strike - spot)))
    atm_put = OptionContract(atm_call.underlying, atm_call.expiry, atm_call.strike, Right.PUT)
    call, put = (market.option_quote(c, ts_init_ns=now) for c in (atm_call, atm_put))
    features = msgspec.json.decode(_features(now, 0.2, 1.0, 1.1), type=FeatureSnapshot)
    redis_client.set(
        keys.analytics("SPY", "features"), encode(msgspec.structs.replace(features, atm_call=call, atm_put=put))
    )
    reader = _reader(redis_client, clock, uw)
    samples = {(d.kind, d.subject): d for d in reader.read_now().divergences}
    occ = occ_symbols(atm_call)[0]
    assert {("price", "SPY"), ("greeks", f"SPY {occ} iv"), ("spread", f"SPY {occ} spread")} <= set(samples)
    assert samples[("price", "SPY")].uw == pytest.approx(spot, abs=0.005)
    assert samples[("greeks", f"SPY {occ} iv")].uw == pytest.approx(call.iv, abs=1e-6)
    assert not [f for f in run_checks(reader.read_now(), reader._config) if f.rule.startswith("divergence")]
    assert redis_client.get("raw:uw:chains:SPY") is not None
    listed = json.loads(redis_client.get("raw:uw:chains:SPY"))["data"]
    assert occ in listed and len(listed) == len(chain)
