"""Stale and future time stamps (SPEC §5 bad inputs): ``source.freshness`` in a source YAML.

The twin and the fetcher each get their own simulated clock, so a twin behind the fetcher serves
an old snapshot and a twin ahead of it serves records from the future — over real HTTP, as a vendor
with a stuck cache or a broken clock would. Rejected payloads are counted by reason (``stale``,
``future``) with the field and time named, and the last good payload stays in Redis.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from quanticity.clock import NS_PER_SECOND, SimulatedClock
from quanticity.config.loader import ConfigError
from quanticity.feeds.engine import SourceEngine
from quanticity.feeds.parse import PARSERS, Rejected, RejectReason
from quanticity.feeds.sources import load_source
from quanticity.sim.av_server import AvServer
from quanticity.sim.uw_server import UwServer
from tests.unit.test_fetcher import APIKEY, ENV, REPO, RTH, SESSION, SPOT, TOKEN, UNIVERSE, at, endpoint, source
from tests.unit.test_fetcher import write_yaml as write_source

pytestmark = pytest.mark.unit

HOUR_S = 3600
FRESHNESS = {"max_age_s": 900, "max_future_s": 300}
INTRADAY = endpoint(
    "/query",
    "av.time_series",
    "raw:av:intraday_5min:{ticker}",
    tier=1,
    interval=300,
    ttl=900,
    symbols=["SPY"],
    params={"function": "TIME_SERIES_INTRADAY", "symbol": "{ticker}", "interval": "5min"},
)


def fetch_twice(
    tmp_path: Path,
    client: redis.Redis,
    dialect: str,
    start_ns: int,
    twin_offset_s: float,
    freshness: dict[str, Any] | None = FRESHNESS,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """One fetch with the twin in step, one with the twin ``twin_offset_s`` off the fetcher's clock.

    Returns the engine's metrics and the stored document after each fetch.
    """
    uw = dialect == "unusual_whales"
    engine_clock, twin_clock = (
        SimulatedClock(start_ns),
        SimulatedClock(start_ns + max(0, int(twin_offset_s)) * NS_PER_SECOND),
    )
    overrides = {} if freshness is None else {"freshness": freshness}
    spec = {"source": source(dialect, **overrides), "endpoints": {"data": SPOT if uw else INTRADAY}}
    key = "raw:uw:spot_exposures:SPY" if uw else "raw:av:intraday_5min:SPY"

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        server = UwServer(TOKEN, clock=twin_clock, universe=UNIVERSE) if uw else AvServer(APIKEY, clock=twin_clock)
        await server.start()
        engine = SourceEngine(
            write_source(tmp_path / f"{dialect}.yaml", spec),
            redis=client,
            clock=engine_clock,
            universe=UNIVERSE,
            environ=ENV,
            base_url=server.base_url + ("/api" if uw else ""),
        )
        try:
            async with engine:
                if twin_offset_s > 0:  # the first fetch in step: the twin is ahead only from now on
                    engine_clock.set(twin_clock.now_ns())
                await engine.step()
                await engine.drain()
                first = json.loads(client.get(key))
                engine_clock.advance(max(0.0, -twin_offset_s) + 300)  # the fetcher moves on; a stale twin stays
                twin_clock.advance(300 + max(0.0, twin_offset_s))
                await engine.step()
                await engine.drain()
                return engine.metrics(), first, json.loads(client.get(key))
        finally:
            await server.stop()

    return asyncio.run(scenario())


@pytest.mark.parametrize("dialect", ["unusual_whales", "alpha_vantage"])
def test_a_stale_snapshot_in_regular_hours_is_rejected_and_the_last_good_one_stays(
    tmp_path: Path, redis_client: redis.Redis, dialect: str
) -> None:
    metrics, first, second = fetch_twice(tmp_path, redis_client, dialect, RTH, -HOUR_S)
    assert metrics["errors"] == {"data": {"stale": 1}} and metrics["writes"] == {"data": 1}
    assert second == first  # the good payload stays
    detail = metrics["last_error"]["data"]
    assert detail.startswith("stale: newest ") and "max_age_s 900" in detail
    assert ("time = " if dialect == "unusual_whales" else "ts = ") in detail  # names the field


@pytest.mark.parametrize("dialect", ["unusual_whales", "alpha_vantage"])
def test_records_from_the_future_are_rejected(tmp_path: Path, redis_client: redis.Redis, dialect: str) -> None:
    metrics, first, second = fetch_twice(tmp_path, redis_client, dialect, RTH, HOUR_S)
    assert metrics["errors"] == {"data": {"future": 1}} and second == first
    assert "s ahead of now" in metrics["last_error"]["data"] and "max_future_s 300" in metrics["last_error"]["data"]


@pytest.mark.parametrize(
    ("start", "offset_s", "freshness"),
    [
        (at(SESSION, 17), -HOUR_S, FRESHNESS),  # after hours the series stop moving: age is not checked
        (RTH, -HOUR_S, None),  # no freshness block: no check
        (RTH, -600, FRESHNESS),  # 10 min behind, within max_age_s
        (RTH, 240, FRESHNESS),  # 4 min ahead, within max_future_s
    ],
    ids=["after_hours", "not_configured", "within_age", "within_future"],
)
def test_within_limits_or_unchecked_is_accepted(
    tmp_path: Path, redis_client: redis.Redis, start: int, offset_s: float, freshness: dict[str, Any] | None
) -> None:
    metrics, first, second = fetch_twice(tmp_path, redis_client, "unusual_whales", start, offset_s, freshness)
    assert metrics["errors"] == {} and metrics["writes"] == {"data": 2} and second != first


@pytest.mark.parametrize(
    ("freshness", "expected"),
    [
        ({"max_age_s": -5}, "source.freshness.max_age_s = -5"),
        ({"max_future_s": 0}, "source.freshness.max_future_s = 0"),
        ({"max_age": 900}, "source.freshness.max_age"),
    ],
)
def test_freshness_config_errors_name_the_key_and_value(
    tmp_path: Path, freshness: dict[str, Any], expected: str
) -> None:
    path = write_source(tmp_path / "uw.yaml", {"source": source(freshness=freshness), "endpoints": {"spot": SPOT}})
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.")):
        load_source(path, ENV)


def test_parsers_stamp_the_newest_record_and_reject_a_bad_stamp() -> None:
    rows = [
        {"price": "1", "time": "2026-11-20 15:00:00+00:00"},
        {"price": "1", "time": "2026-11-20T15:01:00Z"},
    ]
    payload = PARSERS["uw.spot_exposures"](json.dumps({"data": rows}).encode())
    assert payload.time_field == "time" and payload.newest_ns == 1_795_186_860 * NS_PER_SECOND
    series = {"Time Series (5min)": {"2026-11-20 10:05:00": {k: "1" for k in ("1. open", "2. high", "3. low")}}}
    series["Time Series (5min)"]["2026-11-20 10:05:00"] |= {"4. close": "1", "5. volume": "5"}
    bars = PARSERS["av.time_series"](json.dumps(series).encode())
    assert bars.newest_ns == 1_795_187_100 * NS_PER_SECOND  # 10:05 US/Eastern = 15:05 UTC
    assert PARSERS["uw.max_pain"](b'{"data": []}').newest_ns is None  # not a time-stamped payload
    bad = {"Time Series (5min)": {"yesterday": series["Time Series (5min)"]["2026-11-20 10:05:00"]}}
    with pytest.raises(Rejected) as err:
        PARSERS["av.time_series"](json.dumps(bad).encode())
    assert err.value.reason is RejectReason.BAD_VALUE and "'yesterday'" in err.value.detail


def test_shipped_freshness_settings_load() -> None:
    for name in ("unusual_whales", "alpha_vantage"):
        raw = yaml.safe_load((REPO / f"config/sources/{name}.yaml").read_text())
        freshness = load_source(REPO / f"config/sources/{name}.yaml", ENV).source.freshness
        assert freshness.model_dump(exclude_none=True) == raw["source"].get("freshness", {})
