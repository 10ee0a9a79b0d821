"""Fault: bad input from every venue mid-session is rejected and counted; the venue clients keep running.

A ``venue.kind: tws`` system (TWS simulator and the UW/AV loopback twins in the venue host, the
IBKR feed through ``ib_async``, the REST/WS fetcher through ``aiohttp``). Once data flows, the
venue host injects one of each: a malformed UW REST body, a UW socket frame that is not JSON, an
AV throttle ``Note``, a malformed AV body, an AV contract with a NaN greek, and a crossed book plus
NaN greeks on the TWS ticks of SPY. Each must show up under its own counter in its actor's heartbeat
(the one Prometheus reads), and afterwards the fetcher must keep fetching, the socket keep
delivering and the IBKR feed keep delivering events, with no actor restarted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import ray
import redis

from actors.common import FEED
from actors.fetcher import FETCHER
from actors.venues import VENUES
from quanticity import keys
from quanticity.observability.metrics import QuanticityCollector
from supervisors.launch import start_system, stop_system
from tests.system_harness import session_spec, system_config, wait_for

pytestmark = pytest.mark.fault

SPEED = 30.0
MINUTES = 20  # 40 s of market at this speed: faults and recovery fit in it with room to spare

FETCHER_COUNTERS = (
    "unusual_whales_errors_malformed_json",  # the malformed UW REST body
    "uw_socket_bad_frames_malformed_json",  # the socket frame that is not JSON
    "alpha_vantage_throttled_note",  # the AV Note
    "alpha_vantage_errors_malformed_json",  # the malformed AV body
    "alpha_vantage_errors_non_finite",  # the AV contract with a NaN delta (dropped, the chain kept)
    "alpha_vantage_records_dropped",
)
FEED_COUNTERS = ("rejected_crossed_book", "rejected_non_finite_greek")
FETCHER_PROGRESS = ("unusual_whales_responses_2xx", "alpha_vantage_responses_2xx", "uw_socket_messages")
FEED_PROGRESS = ("accepted_quote", "accepted_option_quote")


def beat(client: redis.Redis, name: str) -> dict[str, Any]:
    """The actor's last heartbeat as written to Redis (what ``quanticity status`` and Prometheus read)."""
    raw = client.get(keys.heartbeat(name))
    return json.loads(raw) if raw else {}


def test_bad_input_from_every_venue_is_counted_and_the_clients_keep_going(
    ray_session: None,
    redis_client: redis.Redis,
    embedded_redis,  # noqa: ANN001
    tmp_path: Path,
) -> None:
    config = system_config(tmp_path, venue="tws")
    spec = session_spec(config, minutes=MINUTES, speed=SPEED)
    supervisor = start_system(config, spec, embedded_redis.url)
    ns = config.system.system.namespace
    try:
        venues = ray.get_actor(VENUES, namespace=ns)

        def flowing() -> bool:
            fetched, fed = beat(redis_client, FETCHER), beat(redis_client, FEED)
            return (
                all(fetched.get(k, 0) > 0 for k in ("unusual_whales_responses_2xx", "alpha_vantage_responses_2xx"))
                and fetched.get("uw_socket_connected") == 1
                and all(fed.get(k, 0) > 0 for k in FEED_PROGRESS)
            )

        wait_for(flowing, 180, "UW, AV, the UW socket and the IBKR feed all delivering")
        before_fetcher, before_feed = beat(redis_client, FETCHER), beat(redis_client, FEED)
        assert all(before_fetcher[k] == 0 for k in FETCHER_COUNTERS), before_fetcher  # present, and 0 so far

        ray.get(venues.inject_uw.remote("malformed"))
        ray.get(venues.inject_av.remote("note"))
        ray.get(venues.inject_av.remote("malformed"))
        ray.get(venues.inject_av.remote("nan_greeks", 1, "REALTIME_OPTIONS", field="delta", value="NaN"))
        assert ray.get(venues.uw_send_raw.remote('["price:SPY", {"close": "4')) == 1  # the fetcher's one socket
        ray.get(venues.corrupt_next.remote("crossed_book", "SPY"))
        ray.get(venues.corrupt_next.remote("nan_greeks", "SPY"))

        def counted() -> bool:
            fetched, fed = beat(redis_client, FETCHER), beat(redis_client, FEED)
            return all(fetched[k] > before_fetcher[k] for k in FETCHER_COUNTERS) and all(
                fed.get(k, 0) > before_feed.get(k, 0) for k in FEED_COUNTERS
            )

        wait_for(counted, 60, f"every bad input counted: {FETCHER_COUNTERS + FEED_COUNTERS}")
        after_fetcher, after_feed = beat(redis_client, FETCHER), beat(redis_client, FEED)
        for name in ("unusual_whales_errors_malformed_json", "alpha_vantage_throttled_note"):
            assert after_fetcher[name] == before_fetcher[name] + 1, name  # exactly the injected one

        # afterwards: fetching, the socket and the IBKR feed keep making progress
        assert ray.get(venues.uw_push.remote()) > 0

        def progressing() -> bool:
            fetched, fed = beat(redis_client, FETCHER), beat(redis_client, FEED)
            return all(fetched[k] > after_fetcher[k] for k in FETCHER_PROGRESS) and all(
                fed[k] > after_feed[k] for k in FEED_PROGRESS
            )

        wait_for(progressing, 60, f"progress after the faults: {FETCHER_PROGRESS + FEED_PROGRESS}")
        restarts = redis_client.hgetall(keys.RESTARTS)
        assert not {FETCHER, FEED, VENUES} & set(restarts), restarts
        final = beat(redis_client, FETCHER)
        assert final["start_failures"] == 0
        # the twins run on the fetcher's clock: the freshness checks of the shipped YAMLs reject nothing
        assert all(
            final[f"{s}_errors_{r}"] == 0 for s in ("unusual_whales", "alpha_vantage") for r in ("stale", "future")
        )
        host = beat(redis_client, VENUES)
        assert host["faults_injected_uw"] == 1 and host["faults_injected_av"] == 3 and host["faults_injected_tws"] == 2
        # the same counters as Prometheus serves them
        families = {f.name: f for f in QuanticityCollector(redis_client).collect()}
        served = {(s.labels["actor"], s.labels["stat"]): s.value for s in families["quanticity_actor_stat"].samples}
        assert all(served[(FETCHER, k)] > 0 for k in FETCHER_COUNTERS)
        assert all(served[(FEED, k)] > 0 for k in FEED_COUNTERS)
    finally:
        stop_system(supervisor)
