"""``venue.kind: tws``: symbols added and removed mid-session through the supervisor (SPEC §5, §11).

The hosted TWS simulator lists the added symbol, the IBKR feed qualifies and subscribes it through
ib_async and its analytics actor computes from its quotes and option quotes; a removed symbol's
lines are cancelled at the simulator and it stops being quoted. Every wait polls state against a
deadline.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import ray
import redis

from actors.common import analytics_name
from actors.venues import VENUES
from quanticity import keys
from quanticity.venues.ibkr import IbkrConfig
from supervisors.launch import feed_progress, start_system, stop_system
from tests.system_harness import session_spec, system_config, wait_for

pytestmark = pytest.mark.integration

SPEED = 12.0
MINUTES = 60  # 300 wall seconds: the session is still running while symbols come and go (test stops it early)


QQQ_GONE = ("simulated", "mkt_data", "depth", "tick_by_tick")


def _chain_rows(client: redis.Redis, symbol: str) -> int:
    """Option quotes the analytics actor's last chain computation saw, kept or rejected.

    Rejected rows count too: either way the symbol's option quotes reached its analytics actor.
    """
    raw = client.get(keys.analytics(symbol, "chain"))
    if not raw:
        return 0
    chain = json.loads(raw)
    return int(chain.get("contracts") or 0) + sum(int(v) for v in (chain.get("rejected") or {}).values())


@pytest.fixture
def tws_session(ray_session: None, redis_client: redis.Redis, embedded_redis, tmp_path: Path):  # noqa: ANN001, ANN201
    # no fetcher: two cores keep one heavy thing at a time (tests/fault/test_tws_reconnect.py runs it)
    config = system_config(
        tmp_path, symbols=("SPY", "QQQ"), venue="tws", extra={"system": {"venue": {"fetcher": False}}}
    )
    spec = session_spec(config, minutes=MINUTES, speed=SPEED, lead_s=0)
    supervisor = start_system(config, spec, embedded_redis.url)
    yield config, supervisor
    stop_system(supervisor)


def test_symbols_added_and_removed_mid_session(tws_session, redis_client: redis.Redis) -> None:  # noqa: ANN001
    config, supervisor = tws_session
    ns = config.system.system.namespace
    venues = ray.get_actor(VENUES, namespace=ns)
    feed_client = IbkrConfig.model_validate(config.system.venue.ibkr).client_ids.ingestion  # the broker has its own
    # the session is under way: the market steps and the feed delivers the start-up symbols
    wait_for(lambda: (feed_progress(config) or {}).get("events", 0) > 0, 120, "market data at the feed")
    wait_for(lambda: redis_client.get(keys.analytics("QQQ", "features")) is not None, 60, "QQQ analytics")
    assert ray.get(venues.market_data.remote("IWM", feed_client))["simulated"] == 0
    # the market opened when the feed and the symbol/strategy actors were up, not on the fallback deadline
    opened_after = json.loads(redis_client.get(keys.heartbeat(VENUES)))["market_open_wait_s"]
    assert 0 <= opened_after < config.system.venue.market_open_wait_s

    # a symbol market.yaml does not describe is refused by name, and nothing is left behind
    with pytest.raises(KeyError, match="NOPE"):
        ray.get(supervisor.add_symbol.remote("NOPE"))
    assert analytics_name("NOPE") not in ray.get(supervisor.topology.remote())

    assert ray.get(supervisor.add_symbol.remote("IWM")) == analytics_name("IWM")
    # TWS lists it and holds the feed's lines on it: L1 (+ tick-by-tick) and the streamed options
    # (the client paces its requests, so the last ones may still be on the way when add_symbol returns)
    assert ray.get(venues.market_data.remote("IWM", feed_client))["simulated"] == 1

    def iwm_lines() -> bool:
        lines = ray.get(venues.market_data.remote("IWM", feed_client))
        return lines["mkt_data"] > 1 and lines["tick_by_tick"] == 1 and lines["depth"] == 1

    wait_for(iwm_lines, 30, "IWM L1, options, tick-by-tick and depth at the simulator")
    # its quotes and option quotes reach its analytics actor
    wait_for(lambda: redis_client.get(keys.analytics("IWM", "features")) is not None, 60, "IWM analytics")
    wait_for(lambda: _chain_rows(redis_client, "IWM") > 0, 60, "IWM option quotes in its chain metrics")
    assert redis_client.keys("analytics:IWM:*")

    assert ray.get(supervisor.remove_symbol.remote("QQQ"))
    assert analytics_name("QQQ") not in ray.get(supervisor.topology.remote())
    # the feed cancelled every line it held on QQQ (cancelMktData, tick-by-tick, depth) and TWS stopped quoting it
    try:
        wait_for(
            lambda: ray.get(venues.market_data.remote("QQQ", feed_client)) == dict.fromkeys(QQQ_GONE, 0),
            30,
            "QQQ unsubscribed at the simulator",
        )
    except AssertionError as exc:  # name the lines left over
        raise AssertionError(f"{exc}: {ray.get(venues.market_data.remote('QQQ', feed_client))}") from None
    progress = feed_progress(config)
    assert progress is not None and progress["symbols"] == 2  # SPY and IWM
    # the session goes on for the rest: the feed keeps delivering after QQQ left
    wait_for(
        lambda: (feed_progress(config) or {}).get("events", 0) > progress["events"], 30, "market data after the removal"
    )
