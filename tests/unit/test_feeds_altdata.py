"""UW records → AltDataEvents (:mod:`quanticity.feeds.altdata`): converters, the bridge, the live path end to end.

The converters are checked against the loopback twin's rendering (:mod:`quanticity.sim.uw_data`),
for which they must be the exact inverse, and against the OpenAPI examples (real UW data). The
bridge runs on the real (embedded) Redis of the ``redis_client`` fixture; the end-to-end tests
drive the real :class:`SourceEngine` against :class:`UwServer` on one :class:`SimulatedClock`.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import redis
import yaml

from actors.common import strategy_name
from quanticity import keys
from quanticity.calendar import ET, NyseCalendar
from quanticity.clock import NS_PER_SECOND, SimulatedClock
from quanticity.config.loader import ConfigError
from quanticity.config.models import QuanticityConfig
from quanticity.feeds.altdata import (
    ALT_DATA_PARSERS,
    SESSION_BRIDGED_KINDS,
    AltDataBridge,
    amount_from_range,
    congress_amount_range,
    convert,
    event_day,
    midnight_ns,
    simulated_history,
)
from quanticity.feeds.engine import SourceEngine
from quanticity.feeds.parse import PARSERS
from quanticity.feeds.sources import EndpointSpec, load_source
from quanticity.messages import AltDataEvent, AltDataKind
from quanticity.sim.altdata import alt_data_events, session_alt_data
from quanticity.sim.uw_data import UwData
from quanticity.sim.uw_server import UwServer
from quanticity.strategies.base import AltDataBook
from tests.system_harness import session_spec

pytestmark = pytest.mark.unit

TOKEN = "uw-test-token"
ENV = {"UW_API_TOKEN": TOKEN}
UNIVERSE = ["SPX", "SPY", "QQQ", "IWM", "AAPL", "MSFT", "GOOGL", "AMZN", "NVDA", "META", "TSLA", "COST", "WMT"]
UNIVERSE += ["DIS", "V", "NFLX", "HOOD", "HIMS", "ORCL"]
SINGLE_NAMES = [s for s in UNIVERSE if s not in ("SPX", "SPY", "QQQ", "IWM")]
REPO = Path(__file__).resolve().parents[2]
UW_YAML = REPO / "config" / "sources" / "unusual_whales.yaml"
SEED = 7
#: the end-to-end universe: index products and single names whose simulated session day (the same for
#: every session at this seed) holds congress and insider trades, kept small so a whole session is quick
E2E = ["SPX", "SPY", "GOOGL", "HIMS", "WMT", "TSLA"]

_CAL = NyseCalendar()
SESSION = _CAL.session_on_or_before(date.today() - timedelta(days=1))


def at(day: date, hh: int, mm: int = 0) -> int:
    """ns of ``hh:mm`` ET on ``day``."""
    return int(datetime.combine(day, time(hh, mm), tzinfo=ET).timestamp()) * NS_PER_SECOND


CLOSE = at(SESSION, 16)


def parsed(parser: str, records: list[dict[str, Any]]) -> list[Any]:
    """Records as the fetcher stores them: through the endpoint's parser, from JSON bytes."""
    return PARSERS[parser](json.dumps({"data": records}).encode()).records


def shape(event: AltDataEvent) -> tuple[str, str, int, float, str]:
    """What a strategy's AltDataBook keeps of an event (besides its identity)."""
    return (event.kind.value, event.symbol, event.direction, event.amount, event.when)


def document(endpoint: str, symbol: str | None, fetched_at: int, data: list[Any]) -> dict[str, Any]:
    return {"source": "unusual_whales", "endpoint": endpoint, "symbol": symbol, "fetched_at": fetched_at, "data": data}


# --- converters: the exact inverse of the twin ---------------------------------------------------
def test_flow_alerts_are_the_exact_inverse_of_the_twin() -> None:
    data = UwData(SEED)
    records = parsed("uw.flow_alerts", data.flow_alerts(UNIVERSE, CLOSE, limit=500))
    expected = data.events(AltDataKind.FLOW_ALERT, UNIVERSE, CLOSE, limit=500)
    result = convert(AltDataKind.FLOW_ALERT, records, fetched_at_ns=CLOSE)
    assert not result.rejected and not result.skipped and len(expected) > 100
    assert [(shape(e), e.ts_event) for e in result.events] == [(shape(e), e.ts_event) for e in expected]
    assert {e.direction for e in result.events} == {1, -1}
    assert len({e.detail["id"] for e in result.events}) == len(expected)


def test_dark_pool_prints_are_the_exact_inverse_of_the_twin() -> None:
    data = UwData(SEED)
    for symbol in ("SPY", "AAPL", "HIMS"):
        records = parsed("uw.darkpool", data.darkpool(symbol, CLOSE, limit=500))
        expected = data.events(AltDataKind.DARK_POOL, [symbol], CLOSE, limit=500)
        result = convert(AltDataKind.DARK_POOL, records, fetched_at_ns=CLOSE, symbol=symbol)
        assert not result.rejected and len(expected) > 50
        assert [(shape(e), e.ts_event) for e in result.events] == [(shape(e), e.ts_event) for e in expected]
        assert [e.detail["id"] for e in result.events] == [f"uw-dp-{r['tracking_id']}" for r in records]


def test_congress_trades_invert_the_twin_with_the_band_midpoint() -> None:
    data = UwData(SEED)
    records = parsed("uw.congress_trades", data.congress_trades(UNIVERSE, CLOSE, limit=500))
    expected = data.events(AltDataKind.CONGRESS, UNIVERSE, CLOSE, limit=500)
    result = convert(AltDataKind.CONGRESS, records, fetched_at_ns=CLOSE)
    assert not result.rejected and len(expected) > 20
    assert [shape(e) for e in result.events] == [
        (e.kind.value, e.symbol, e.direction, amount_from_range(congress_amount_range(e.amount)), e.when)
        for e in expected
    ]
    assert all(e.ts_event == midnight_ns(date.fromisoformat(e.when)) for e in result.events)
    assert len({e.detail["id"] for e in result.events}) == len(expected)


def test_insider_trades_are_the_exact_inverse_of_the_twin() -> None:
    data = UwData(SEED)
    records = parsed("uw.insider_transactions", data.insider_transactions(UNIVERSE, CLOSE, limit=500))
    expected = data.events(AltDataKind.INSIDER, UNIVERSE, CLOSE, limit=500)
    result = convert(AltDataKind.INSIDER, records, fetched_at_ns=CLOSE)
    assert not result.rejected and len(expected) > 20
    assert [shape(e) for e in result.events] == [shape(e) for e in expected]
    assert [e.detail["id"] for e in result.events] == [f"uw-in-{e.detail['id']}" for e in expected]


def test_earnings_keep_the_next_report_with_the_simulated_id() -> None:
    data = UwData(SEED)
    for symbol in SINGLE_NAMES:
        records = parsed("uw.earnings", data.earnings(symbol, CLOSE))
        (expected,) = data.events(AltDataKind.EARNINGS, [symbol], CLOSE, limit=5)
        result = convert(AltDataKind.EARNINGS, records, fetched_at_ns=CLOSE, symbol=symbol)
        assert result.skipped == Counter(past_report=4) and not result.rejected
        (event,) = result.events
        assert shape(event) == shape(expected) and event.detail == expected.detail  # same identity as the sim's
        assert event.ts_event == midnight_ns(SESSION)  # not in the future: a strategy checkpoints on it


def test_converting_the_same_records_twice_gives_identical_events() -> None:
    data = UwData(SEED)
    records = parsed("uw.flow_alerts", data.flow_alerts(UNIVERSE, CLOSE, limit=50))
    first = convert(AltDataKind.FLOW_ALERT, records, fetched_at_ns=CLOSE).events
    again = convert(AltDataKind.FLOW_ALERT, records, fetched_at_ns=CLOSE + 3600 * NS_PER_SECOND).events
    assert first == again
    book = AltDataBook()
    assert sum(book.add(e) for e in first + again) == len(first)  # the AltDataBook sees one event each


# --- converters: real UW data (the OpenAPI examples) ---------------------------------------------
OPENAPI_FLOW = {
    "alert_rule": "RepeatedHits",
    "created_at": "2023-12-12T16:35:52.168490Z",
    "expiry": "2023-12-22",
    "option_chain": "MSFT231222C00375000",
    "price": "4.05",
    "strike": "375",
    "ticker": "MSFT",
    "total_ask_side_prem": "151875",
    "total_bid_side_prem": "405",
    "total_premium": "186705",
    "total_size": 461,
    "type": "call",
    "underlying_price": "372.99",
}
OPENAPI_DARKPOOL = {
    "canceled": False,
    "executed_at": "2023-02-16T00:59:44Z",
    "market_center": "L",
    "nbbo_ask": "19",
    "nbbo_bid": "18.99",
    "premium": "121538.56",
    "price": "18.9904",
    "size": 6400,
    "ticker": "QID",
    "tracking_id": 71984388012245,
}
OPENAPI_CONGRESS = {
    "amounts": "$15,001 - $50,000",
    "filed_at_date": "2023-02-13",
    "name": "Stephen Cohen",
    "politician_id": "18f9fc95-4661-444e-99f5-99d3778e0c31",
    "ticker": "MSFT",
    "transaction_date": "2023-02-06",
    "txn_type": "Buy",
}
OPENAPI_INSIDER = {
    "amount": -35921,
    "filing_date": "2024-12-12",
    "ids": ["26f2911d-8e40-4fd4-9b74-c450e203a0ad"],
    "owner_name": "ZUCKERBERG MARK",
    "price": "632",
    "ticker": "META",
    "transaction_code": "S",
    "transaction_date": "2024-12-12",
}


@pytest.mark.parametrize(
    ("kind", "record", "expected"),
    [
        (AltDataKind.FLOW_ALERT, OPENAPI_FLOW, ("flow_alert", "MSFT", 1, 186705.0, "2023-12-12")),
        (AltDataKind.DARK_POOL, OPENAPI_DARKPOOL, ("dark_pool", "QID", -1, 121538.56, "2023-02-15")),  # ET date
        (AltDataKind.CONGRESS, OPENAPI_CONGRESS, ("congress", "MSFT", 1, 32500.5, "2023-02-06")),
        (AltDataKind.INSIDER, OPENAPI_INSIDER, ("insider", "META", -1, 35921 * 632.0, "2024-12-12")),
    ],
    ids=["flow_call_ask_side", "darkpool_below_mid", "congress_buy_band", "insider_sale"],
)
def test_openapi_examples(kind: AltDataKind, record: dict[str, Any], expected: tuple[Any, ...]) -> None:
    (event,) = convert(kind, parsed(ALT_DATA_PARSERS[kind], [record]), fetched_at_ns=at(date(2025, 1, 2), 10)).events
    assert shape(event) == expected


@pytest.mark.parametrize(
    ("option_type", "ask", "bid", "direction"),
    [("call", 9, 1, 1), ("call", 1, 9, -1), ("put", 9, 1, -1), ("put", 1, 9, 1), ("put", 5, 5, 0)],
)
def test_flow_direction_is_type_times_the_paying_side(option_type: str, ask: int, bid: int, direction: int) -> None:
    record = OPENAPI_FLOW | {"type": option_type, "total_ask_side_prem": str(ask), "total_bid_side_prem": str(bid)}
    (event,) = convert(AltDataKind.FLOW_ALERT, [record], fetched_at_ns=0).events
    assert event.direction == direction


@pytest.mark.parametrize(
    ("price", "bid", "ask", "direction"),
    [("19.01", "18.99", "19", 1), ("18.995", "18.99", "19", 0), ("18.99", None, None, 0)],
    ids=["above_mid", "at_mid", "no_nbbo"],
)
def test_dark_pool_direction_against_the_nbbo_mid(price: str, bid: str | None, ask: str | None, direction: int) -> None:
    record = OPENAPI_DARKPOOL | {"price": price, "nbbo_bid": bid, "nbbo_ask": ask}
    (event,) = convert(AltDataKind.DARK_POOL, [record], fetched_at_ns=0).events
    assert event.direction == direction


def test_congress_bands_and_their_amounts() -> None:
    assert congress_amount_range(268_000.0) == "$250,001 - $500,000"
    assert congress_amount_range(900.0) == "$1,001 - $15,000"
    assert congress_amount_range(60_000_000.0) == "Over $50,000,000"
    assert amount_from_range("$1,000 - $15,000") == 8000.0
    assert amount_from_range("Over $50,000,000") == 50_000_000.0
    with pytest.raises(ValueError):
        amount_from_range("undisclosed")


# --- bad records: rejected, counted by reason, field named; never raised ------------------------
@pytest.mark.parametrize(
    ("kind", "record", "reason", "needle"),
    [
        (AltDataKind.FLOW_ALERT, OPENAPI_FLOW | {"type": "straddle"}, "bad_value", "type = 'straddle'"),
        (AltDataKind.FLOW_ALERT, OPENAPI_FLOW | {"total_premium": None}, "missing_field", "total_premium = None"),
        (AltDataKind.FLOW_ALERT, OPENAPI_FLOW | {"created_at": "yesterday"}, "bad_value", "created_at = 'yesterday'"),
        (AltDataKind.FLOW_ALERT, OPENAPI_FLOW | {"ticker": "msft"}, "bad_value", "ticker = 'msft'"),
        (AltDataKind.DARK_POOL, OPENAPI_DARKPOOL | {"price": "-1"}, "bad_value", "price = '-1'"),
        (AltDataKind.DARK_POOL, OPENAPI_DARKPOOL | {"price": "nan"}, "bad_value", "price = 'nan'"),
        (AltDataKind.CONGRESS, OPENAPI_CONGRESS | {"amounts": "a lot"}, "bad_value", "amounts = 'a lot'"),
        (AltDataKind.CONGRESS, OPENAPI_CONGRESS | {"amounts": None}, "missing_field", "amounts = None"),
        (AltDataKind.CONGRESS, OPENAPI_CONGRESS | {"txn_type": "Gift"}, "bad_value", "txn_type = 'Gift'"),
        (AltDataKind.CONGRESS, OPENAPI_CONGRESS | {"ticker": None}, "missing_field", "ticker = None"),
        (AltDataKind.INSIDER, OPENAPI_INSIDER | {"price": None}, "missing_field", "price = None"),
        (AltDataKind.INSIDER, OPENAPI_INSIDER | {"amount": 0}, "bad_value", "amount = 0"),
        (AltDataKind.INSIDER, OPENAPI_INSIDER | {"transaction_date": "12/12/24"}, "bad_value", "'12/12/24'"),
        (AltDataKind.EARNINGS, {"report_date": None}, "missing_field", "report_date = None"),
        (AltDataKind.FLOW_ALERT, ["not", "a", "record"], "bad_shape", "expected an object"),
    ],
)
def test_bad_records_are_rejected_and_counted_with_the_field_named(
    kind: AltDataKind, record: Any, reason: str, needle: str
) -> None:
    good = {
        AltDataKind.FLOW_ALERT: OPENAPI_FLOW,
        AltDataKind.DARK_POOL: OPENAPI_DARKPOOL,
        AltDataKind.CONGRESS: OPENAPI_CONGRESS,
        AltDataKind.INSIDER: OPENAPI_INSIDER,
        AltDataKind.EARNINGS: {"report_date": "2099-01-01"},
    }[kind]
    symbol = "AAPL" if kind is AltDataKind.EARNINGS else None  # per-ticker endpoint: the document names it
    result = convert(kind, [good, record, good], fetched_at_ns=at(date(2025, 1, 2), 10), symbol=symbol, where="ep")
    assert result.rejected == Counter({reason: 1}) and len(result.events) == 2
    assert len(result.errors) == 1 and result.errors[0].startswith("ep[1]") and needle in result.errors[0]


@pytest.mark.parametrize(
    ("kind", "record", "reason"),
    [
        (AltDataKind.DARK_POOL, OPENAPI_DARKPOOL | {"canceled": True}, "canceled"),
        (AltDataKind.CONGRESS, OPENAPI_CONGRESS | {"txn_type": "Exchange"}, "txn_type"),
        (AltDataKind.INSIDER, OPENAPI_INSIDER | {"transaction_code": "F"}, "not_open_market"),
        (AltDataKind.EARNINGS, {"report_date": "2000-01-01"}, "past_report"),
    ],
)
def test_valid_records_that_are_not_events_are_skipped_not_rejected(
    kind: AltDataKind, record: dict[str, Any], reason: str
) -> None:
    result = convert(kind, [record], fetched_at_ns=at(date(2025, 1, 2), 10), symbol="AAPL")
    assert result.skipped == Counter({reason: 1}) and not result.rejected and not result.events


# --- configuration ---------------------------------------------------------------------------------
def test_alt_data_endpoints_of_the_uw_yaml() -> None:
    config = load_source(UW_YAML, ENV)
    kinds = {name: spec.alt_data for name, spec in config.endpoints.items() if spec.alt_data is not None}
    assert kinds == {
        "flow_alerts": AltDataKind.FLOW_ALERT,
        "stock_flow_alerts": AltDataKind.FLOW_ALERT,
        "darkpool": AltDataKind.DARK_POOL,
        "congress_trades": AltDataKind.CONGRESS,
        "insider_transactions": AltDataKind.INSIDER,
        "earnings": AltDataKind.EARNINGS,
    }


@pytest.mark.parametrize(
    ("alt_data", "needle"),
    [("dark_pool", "converted from uw.darkpool records"), ("vol_close", "no converter"), ("gossip", "gossip")],
)
def test_a_wrong_alt_data_kind_is_a_config_error_naming_the_key(tmp_path: Path, alt_data: str, needle: str) -> None:
    raw = yaml.safe_load(UW_YAML.read_text())
    raw["endpoints"]["congress_trades"]["alt_data"] = alt_data
    path = tmp_path / "uw.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(ConfigError) as err:
        load_source(path, ENV)
    assert "endpoints.congress_trades.alt_data" in str(err.value) and needle in str(err.value)


# --- the bridge -------------------------------------------------------------------------------------
def _flow_document(fetched_at: int, limit: int = 60) -> dict[str, Any]:
    records = parsed("uw.flow_alerts", UwData(SEED).flow_alerts(UNIVERSE, fetched_at, limit=limit))
    return document("flow_alerts", None, fetched_at, records)


def test_bridge_delivers_each_event_once_even_across_a_restart(redis_client: redis.Redis) -> None:
    doc = _flow_document(CLOSE)
    bridge = AltDataBridge(redis_client)
    sent: list[list[AltDataEvent]] = []
    first = bridge.process(AltDataKind.FLOW_ALERT, doc, send=sent.append)
    assert len(first) == 60 and sent == [first]
    assert bridge.process(AltDataKind.FLOW_ALERT, doc, send=sent.append) == [] and len(sent) == 1
    restarted = AltDataBridge(redis_client)  # a new fetcher process, same Redis
    assert restarted.process(AltDataKind.FLOW_ALERT, doc) == []
    later = _flow_document(CLOSE, limit=70)  # ten older alerts appear in a bigger page
    assert {e.detail["id"] for e in restarted.process(AltDataKind.FLOW_ALERT, later)} == {
        e.detail["id"] for e in convert(AltDataKind.FLOW_ALERT, later["data"], fetched_at_ns=CLOSE).events[60:]
    }
    assert bridge.metrics()["delivered"] == {"flow_alert": 60} and restarted.metrics()["delivered_total"] == 10


def test_bridge_remembers_ids_per_kind_and_day_with_a_ttl(redis_client: redis.Redis) -> None:
    doc = _flow_document(CLOSE, limit=200)
    events = AltDataBridge(redis_client).process(AltDataKind.FLOW_ALERT, doc)
    by_day = Counter(event_day(e).isoformat() for e in events)
    for day, count in by_day.items():
        key = keys.alt_delivered("flow_alert", day)
        assert redis_client.scard(key) == count
        assert 0 < redis_client.ttl(key) <= (3 + 2) * 86_400
    assert sorted(redis_client.keys("alt:delivered:*")) == sorted(f"alt:delivered:flow_alert:{d}" for d in by_day)


def test_bridge_does_not_commit_when_sending_fails(redis_client: redis.Redis) -> None:
    doc = _flow_document(CLOSE, limit=10)
    bridge = AltDataBridge(redis_client)

    def broken(events: list[AltDataEvent]) -> None:
        raise RuntimeError("strategy unreachable")

    assert bridge.process(AltDataKind.FLOW_ALERT, doc, send=broken) == []
    assert bridge.metrics()["errors"] == {"send": 1} and not redis_client.keys("alt:delivered:*")
    assert len(bridge.process(AltDataKind.FLOW_ALERT, doc)) == 10  # offered again on the next fetch


def test_bridge_filters_universe_session_and_age(redis_client: redis.Redis) -> None:
    doc = _flow_document(CLOSE, limit=200)
    events = AltDataBridge(redis_client, symbols=["SPY"], not_before=SESSION).pending(AltDataKind.FLOW_ALERT, doc)
    assert events and {e.symbol for e in events} == {"SPY"} and {e.when for e in events} == {SESSION.isoformat()}
    old = AltDataBridge(redis_client).pending(AltDataKind.FLOW_ALERT, doc)
    assert min(event_day(e) for e in old) >= SESSION - timedelta(days=3)  # older alerts: their set has expired


def test_bridge_counts_bad_documents_and_records_without_raising(redis_client: redis.Redis) -> None:
    bridge = AltDataBridge(redis_client)
    assert bridge.process(AltDataKind.CONGRESS, {"data": "nope", "fetched_at": 1}) == []
    bad = document("congress_trades", None, CLOSE, [OPENAPI_CONGRESS | {"amounts": "?"}, 17])
    assert bridge.process(AltDataKind.CONGRESS, bad) == []
    metrics = bridge.metrics()
    assert metrics["rejected"] == {"bad_document": 1, "bad_value": 1, "bad_shape": 1}
    assert any("congress_trades[0].amounts = '?'" in e for e in metrics["last_errors"])


def test_bridge_survives_a_redis_outage() -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    bridge = AltDataBridge(dead)
    assert bridge.process(AltDataKind.FLOW_ALERT, _flow_document(CLOSE, limit=5)) == []
    assert bridge.metrics()["errors"] == {"redis": 1}


# --- end to end: twin → SourceEngine → bridge, on simulated time ----------------------------------
def _alt_data_yaml(tmp_path: Path) -> Path:
    """The repository's UW YAML with only its ``alt_data`` endpoints (same paths, params, limits, cadences)."""
    raw = yaml.safe_load(UW_YAML.read_text())
    raw["source"].pop("websocket", None)
    raw["endpoints"] = {name: spec for name, spec in raw["endpoints"].items() if spec.get("alt_data")}
    path = tmp_path / "unusual_whales.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


async def _run_session(
    tmp_path: Path, client: redis.Redis, start: int, end: int, step_s: float = 10.0
) -> tuple[list[AltDataEvent], UwServer, AltDataBridge]:
    """Fetch the alt-data endpoints from ``start`` to ``end`` (simulated), bridging into a list."""
    clock = SimulatedClock(start)
    server = UwServer(TOKEN, seed=SEED, clock=clock, universe=E2E)
    await server.start()
    bridge = AltDataBridge(client, symbols=E2E, not_before=SESSION)
    delivered: list[AltDataEvent] = []

    def on_payload(endpoint: str, spec: EndpointSpec, doc: dict[str, Any]) -> None:
        limit = spec.params.get("limit")
        if spec.alt_data is not None and len(doc["data"]) == limit:
            # a full page (newest first) must reach back before the session day, or the twin's `limit`
            # cut session-day events off and the comparison below would prove nothing
            page = convert(spec.alt_data, doc["data"], fetched_at_ns=doc["fetched_at"], symbol=doc["symbol"])
            assert min(event_day(e) for e in page.events) < SESSION, (endpoint, limit)
        if spec.alt_data is not None:
            bridge.process(spec.alt_data, doc, send=delivered.extend)

    engine = SourceEngine(
        _alt_data_yaml(tmp_path),
        redis=client,
        clock=clock,
        universe=E2E,
        environ=ENV,
        base_url=server.base_url + "/api",
        on_payload=on_payload,
    )
    try:
        async with engine:
            while clock.now_ns() < end:
                clock.advance(step_s)
                await engine.step()
                await engine.drain()
            assert engine.metrics()["errors_total"] == 0
    finally:
        await server.stop()
    return delivered, server, bridge


def _cutoffs(server: UwServer) -> dict[tuple[AltDataKind, str], int]:
    """(kind, symbol) → simulated time of the last successful request that could carry its events."""
    out: dict[tuple[AltDataKind, str], int] = {}

    def note(kind: AltDataKind, symbols: Iterable[str], ts: int) -> None:
        for symbol in symbols:
            out[(kind, symbol)] = max(out.get((kind, symbol), 0), ts)

    for entry in server.requests.entries():
        if entry.status != 200:
            continue
        parts = entry.path.split("/")
        if entry.path == "/api/option-trades/flow-alerts":
            note(AltDataKind.FLOW_ALERT, E2E, entry.ts_ns)
        elif entry.path.endswith("/flow-alerts"):
            note(AltDataKind.FLOW_ALERT, [parts[3]], entry.ts_ns)
        elif entry.path.startswith("/api/darkpool/"):
            note(AltDataKind.DARK_POOL, [parts[3]], entry.ts_ns)
        elif entry.path == "/api/congress/recent-trades":
            note(AltDataKind.CONGRESS, E2E, entry.ts_ns)
        elif entry.path == "/api/insider/transactions":
            note(AltDataKind.INSIDER, E2E, entry.ts_ns)
    return out


def _comparable(event: AltDataEvent) -> tuple[Any, ...]:
    """An event as a strategy stores it, with congress amounts in the disclosed band's midpoint."""
    amount = event.amount
    if event.kind is AltDataKind.CONGRESS and not event.detail["id"].startswith("uw-"):
        amount = amount_from_range(congress_amount_range(amount))
    return (event.kind.value, event.symbol, event.direction, amount, event.when)


def test_session_through_the_twin_equals_the_simulated_events(
    tmp_path: Path, redis_client: redis.Redis, config: QuanticityConfig
) -> None:
    """A whole simulated RTH session: the bridged events are the session's simulated events, per kind."""
    start, end = at(SESSION, 9, 30), at(SESSION, 16)
    delivered, server, bridge = asyncio.run(_run_session(tmp_path, redis_client, start, end))
    session_day = [e for e in alt_data_events(E2E, SESSION, SEED) if e.when == SESSION.isoformat()]
    cutoff = _cutoffs(server)
    for kind in SESSION_BRIDGED_KINDS:
        bridged = Counter(_comparable(e) for e in delivered if e.kind is kind)
        simulated = [e for e in session_day if e.kind is kind]
        due = Counter(_comparable(e) for e in simulated if e.ts_event <= cutoff.get((kind, e.symbol), 0))
        assert due, f"{kind}: the window holds no event, the check would be empty"
        assert bridged == due, kind
    # earnings (the next report of each single name) came through too, with the simulated identity
    sim_earnings = {e.detail["id"] for e in alt_data_events(E2E, SESSION, SEED) if e.kind is AltDataKind.EARNINGS}
    assert {e.detail["id"] for e in delivered if e.kind is AltDataKind.EARNINGS} == sim_earnings
    assert not [e for e in delivered if event_day(e) < SESSION]  # history stays with the simulated feed
    assert len(delivered) == len({(e.kind, event_day(e), e.detail["id"]) for e in delivered})  # each once
    assert bridge.metrics()["rejected_total"] == 0

    # what the strategies hold in `tws` (simulated history + bridged session day) equals what the
    # direct simulated list gives them, kind by kind (congress amounts in band midpoints)
    everything = session_alt_data(config, E2E, SESSION, SEED)
    direct = [e for e in everything if e.kind not in SESSION_BRIDGED_KINDS or e.ts_event <= _last(cutoff, e)]
    via_twin = simulated_history(everything, SESSION) + delivered
    assert _book(via_twin) == _book(direct)


def _last(cutoff: dict[tuple[AltDataKind, str], int], event: AltDataEvent) -> int:
    return cutoff.get((event.kind, event.symbol), 0) if event_day(event) >= SESSION else event.ts_event


def _book(events: list[AltDataEvent]) -> dict[str, Counter[tuple[Any, ...]]]:
    """Feed a strategy's AltDataBook; per symbol, what it holds (identity aside), congress in band midpoints."""
    book = AltDataBook()
    kept = [e for e in events if book.add(e)]
    out: dict[str, Counter[tuple[Any, ...]]] = {}
    for event in kept:
        out.setdefault(event.symbol, Counter())[_comparable(event)] += 1
    return out


def test_a_restarted_fetcher_does_not_redeliver_the_day(tmp_path: Path, redis_client: redis.Redis) -> None:
    start, end = at(SESSION, 9, 30), at(SESSION, 10, 30)
    first, _, _ = asyncio.run(_run_session(tmp_path, redis_client, start, end))
    assert first
    again, _, restarted = asyncio.run(_run_session(tmp_path, redis_client, start, end))
    assert again == [] and restarted.metrics()["converted"]  # fetched and converted, nothing new to send


# --- wiring: the fetcher actor's hook and the IBKR feed's simulated list (no Ray started) --------
class _Handle:
    """Stands in for a strategy actor handle: ``on_alt_data.remote(events)`` appends to an inbox."""

    def __init__(self, inbox: list[list[AltDataEvent]]) -> None:
        self.on_alt_data = SimpleNamespace(remote=inbox.append)


class _Peers:
    def __init__(self, handles: dict[str, _Handle]) -> None:
        self.handles = handles

    def get(self, name: str) -> _Handle | None:
        return self.handles.get(name)


def test_fetcher_hook_sends_new_events_to_every_enabled_strategy(
    config: QuanticityConfig, embedded_redis: Any, redis_client: redis.Redis
) -> None:
    from actors.fetcher import FetcherActor

    spec = session_spec(config)
    actor = FetcherActor.__ray_metadata__.modified_class("quanticity:fetcher", config, spec, embedded_redis.url)
    assert actor.alt_targets == [strategy_name(s.name) for s in config.trading.strategies.enabled()]
    assert len(actor.alt_targets) >= 2
    inboxes: dict[str, list[list[AltDataEvent]]] = {name: [] for name in actor.alt_targets}
    down = actor.alt_targets[-1]  # one strategy actor is not alive right now: the others still get theirs
    actor.peers = _Peers({name: _Handle(inbox) for name, inbox in inboxes.items() if name != down})
    actor.bridge = AltDataBridge(redis_client, symbols=UNIVERSE)
    endpoints = load_source(UW_YAML, ENV).endpoints
    doc = _flow_document(CLOSE, limit=20)
    actor._on_payload("flow_alerts", endpoints["flow_alerts"], doc)
    actor._on_payload("flow_alerts", endpoints["flow_alerts"], doc)  # the next poll: nothing new
    actor._on_payload("spot_exposures", endpoints["spot_exposures"], doc)  # not an alt-data endpoint
    expected = convert(AltDataKind.FLOW_ALERT, doc["data"], fetched_at_ns=CLOSE).events
    for name, inbox in inboxes.items():
        assert inbox == ([] if name == down else [expected])
    assert actor.stats()["alt_delivered"] == 20


@pytest.mark.parametrize(("kind", "fetcher"), [("tws", True), ("tws", False), ("live", True)])
def test_ibkr_feed_keeps_only_the_simulated_history_in_tws(
    config: QuanticityConfig, embedded_redis: Any, kind: str, fetcher: bool
) -> None:
    from actors.ibkr_feed import IbkrFeedActor

    venue = config.system.venue.model_copy(update={"kind": kind, "fetcher": fetcher})
    system = config.system.model_copy(update={"venue": venue})
    cfg = config.model_copy(update={"system": system})
    spec = session_spec(cfg)
    symbols = ["SPY", "AAPL", "HIMS"]
    actor = IbkrFeedActor.__ray_metadata__.modified_class("quanticity:feed", cfg, spec, embedded_redis.url, symbols)
    if kind == "live":
        assert actor.alt_data.events == []  # the bridge is the only source
        return
    day = date.fromisoformat(spec.session_date)
    everything = session_alt_data(cfg, symbols, day, spec.seed)
    if not fetcher:  # no bridge running: the feed keeps delivering the whole simulated list
        assert actor.alt_data.events == everything
        return
    assert actor.alt_data.events == simulated_history(everything, day)
    left_out = [e for e in everything if e not in actor.alt_data.events]
    assert left_out and all(e.kind in SESSION_BRIDGED_KINDS and event_day(e) == day for e in left_out)
    kept = {e.kind for e in actor.alt_data.events if event_day(e) >= day}
    assert kept <= {AltDataKind.EARNINGS, AltDataKind.VOL_CLOSE}
