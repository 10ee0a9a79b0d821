"""Bad input from the UW and AV twins is rejected, counted by reason, and reaches the heartbeat and Prometheus.

The real ``aiohttp`` clients (REST engines and the UW socket client) against the loopback twins on a
simulated clock, with faults injected into the twins; the counters are read the way an operator
sees them: :meth:`FetcherActor.stats` (the heartbeat, flattened by
:func:`~quanticity.feeds.metrics.flat_counters`) and the Prometheus collector reading the heartbeat
from Redis. Also: AV greeks that are NaN, infinite or (delta) outside [-1, 1] cost that contract, not
the chain.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import redis

from actors.common import ActorShell
from quanticity.clock import SimulatedClock
from quanticity.config.models import QuanticityConfig
from quanticity.feeds.engine import SourceEngine
from quanticity.feeds.metrics import flat_counters
from quanticity.feeds.parse import PARSERS, Rejected, RejectReason
from quanticity.feeds.uw_ws import Backoff, UwSocketClient
from quanticity.observability.metrics import QuanticityCollector
from quanticity.sim.av_server import AvServer
from quanticity.sim.uw_server import UwServer
from tests.async_helpers import until
from tests.system_harness import session_spec
from tests.unit.test_fetcher import APIKEY, ENV, MAX_PAIN, RTH, SPOT, TOKEN, UNIVERSE, av_endpoints, run_for, source
from tests.unit.test_fetcher import write_yaml as write_source

pytestmark = pytest.mark.unit

TIMEOUT_S = 10.0


async def _no_sleep(_: float) -> None:
    """Injected backoff wait (a reconnect is not what these tests are about)."""
    await asyncio.sleep(0)


def test_flat_counters_keep_every_reason_as_a_number() -> None:
    metrics: dict[str, Any] = {
        "source": "alpha_vantage",
        "requests": 12,
        "connected": True,
        "throttled": {"note": 2},
        "errors": {"options": {"non_finite": 1, "http_503": 2}, "cpi": {"non_finite": 3}},
        "errors_total": 6,
        "last_error": {"options": "non_finite: data[0].delta = 'NaN'"},
        "writes": {"options": 4, "cpi": 1},
        "breakers": {"options": "open", "cpi": "closed", "rsi": "half_open"},
        "bad_frames": {"weird reason!": 1},
        "last_reload_error": None,
    }
    flat = flat_counters("av", metrics)
    assert flat["av_requests"] == 12 and flat["av_connected"] == 1.0
    assert flat["av_throttled_note"] == 2 and flat["av_throttled_information"] == 0  # known labels present at 0
    assert flat["av_errors_non_finite"] == 4 and flat["av_errors_http_503"] == 2  # summed over endpoints
    assert flat["av_errors_malformed_json"] == 0 and flat["av_errors_total"] == 6
    assert flat["av_writes"] == 5 and flat["av_breakers_open"] == 2
    assert flat["av_bad_frames_weird_reason_"] == 1 and flat["av_bad_frames_binary"] == 0
    assert all(isinstance(v, float) for v in flat.values())
    assert not {"av_source", "av_last_error", "av_last_reload_error"} & set(flat)


def test_bad_rest_bodies_socket_frames_and_av_notes_reach_the_heartbeat_and_prometheus(
    tmp_path: Path, config: QuanticityConfig, embedded_redis: Any, redis_client: redis.Redis
) -> None:
    from actors.fetcher import FetcherActor

    clock = SimulatedClock(RTH)
    actor = FetcherActor.__ray_metadata__.modified_class(
        "t:fetcher-bad-inputs", config, session_spec(config), embedded_redis.url
    )
    uw_spec = {"source": source(), "endpoints": {"spot_exposures": SPOT, "max_pain": MAX_PAIN}}
    av_spec = {"source": source("alpha_vantage", rate_limit={"throttle_pause_s": 5}), "endpoints": av_endpoints()}
    received: list[tuple[str, dict[str, Any]]] = []

    async def scenario() -> dict[str, float]:
        uw, av = UwServer(TOKEN, clock=clock, universe=UNIVERSE), AvServer(APIKEY, clock=clock)
        await uw.start()
        await av.start()
        engines = [
            SourceEngine(
                write_source(tmp_path / f"{name}.yaml", spec),
                redis=redis_client,
                clock=clock,
                universe=UNIVERSE,
                environ=ENV,
                base_url=base,
            )
            for name, spec, base in [("uw", uw_spec, uw.base_url + "/api"), ("av", av_spec, av.base_url)]
        ]
        socket = UwSocketClient(
            uw.ws_url,
            TOKEN,
            ["price:SPY"],
            lambda c, p: received.append((c, p)),
            backoff=Backoff(seed=1),
            sleep=_no_sleep,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(socket.run(stop))
        actor.engines, actor.socket = engines, socket
        try:
            for engine in engines:
                await engine.start()
            await until(socket.connected.is_set, TIMEOUT_S, "the socket joined")
            before = actor.stats()
            uw.inject("malformed", path="spot-exposures")
            av.inject("note", function="CPI")
            av.inject("nan_greeks", function="REALTIME_OPTIONS", field="gamma", value="NaN")
            assert await uw.send_raw('["price:SPY", {"close": "4') == 1  # truncated JSON
            assert await uw.send_raw('["price:SPY", {"close": "-1", "time": 1, "vol": 5}]') == 1  # negative price
            assert await uw.push("price:SPY") == 1  # and a good one after them
            await until(lambda: sum(socket.messages.values()) == 1, TIMEOUT_S, "the good socket message")
            for _ in range(40):  # 40 simulated seconds: every job fetched twice, the note's pause sat out
                clock.advance(1)
                for engine in engines:
                    await engine.step()
                for engine in engines:
                    await engine.drain()
            after = actor.stats()
            ActorShell.ping(actor)  # the heartbeat the supervisor's ping writes
        finally:
            stop.set()
            await asyncio.wait_for(task, TIMEOUT_S)
            for engine in engines:
                await engine.close()
            await uw.stop()
            await av.stop()
        for name in (
            "unusual_whales_errors_malformed_json",
            "alpha_vantage_throttled_note",
            "alpha_vantage_errors_non_finite",
            "uw_socket_bad_frames_malformed_json",
            "uw_socket_bad_frames_out_of_range",
        ):
            assert before[name] == 0 and after[name] == 1, name  # present from the start, then counted once
        assert after["alpha_vantage_records_dropped"] == 1
        assert after["unusual_whales_responses_2xx"] > before["unusual_whales_responses_2xx"] + 1  # kept fetching
        assert after["alpha_vantage_writes"] >= 3 and after["uw_socket_messages"] == 1
        return after

    after = asyncio.run(scenario())
    assert len(received) == 1 and received[0][0] == "price:SPY"  # only the good frame was delivered
    assert float(received[0][1]["close"]) > 0
    chain = json.loads(redis_client.get("raw:av:options:SPY"))["data"]
    assert chain and all(c["gamma"] is not None for c in chain)
    # the heartbeat in Redis → Prometheus' quanticity_actor_stat{actor, stat}
    families = {f.name: f for f in QuanticityCollector(redis_client).collect()}
    stats = {
        s.labels["stat"]: s.value for s in families["quanticity_actor_stat"].samples if s.labels["actor"] == actor.name
    }
    for name in (
        "alpha_vantage_throttled_note",
        "uw_socket_bad_frames_malformed_json",
        "alpha_vantage_errors_non_finite",
    ):
        assert stats[name] == after[name] == 1


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("delta", "NaN", RejectReason.NON_FINITE),
        ("gamma", "inf", RejectReason.NON_FINITE),
        ("vega", "-Infinity", RejectReason.NON_FINITE),
        ("delta", "1.7", RejectReason.OUT_OF_RANGE),
        ("delta", "-1.0001", RejectReason.OUT_OF_RANGE),
        ("implied_volatility", "-0.2", RejectReason.OUT_OF_RANGE),
        ("theta", "n/a", RejectReason.BAD_VALUE),
    ],
)
def test_a_bad_av_greek_drops_that_contract_and_keeps_the_chain(
    tmp_path: Path, redis_client: redis.Redis, field: str, value: str, reason: RejectReason
) -> None:
    clock = SimulatedClock(RTH)
    spec = {"source": source("alpha_vantage"), "endpoints": {"options": av_endpoints()["options"]}}

    async def scenario() -> dict[str, Any]:
        server = AvServer(APIKEY, clock=clock)
        await server.start()
        engine = SourceEngine(
            write_source(tmp_path / "alpha_vantage.yaml", spec),
            redis=redis_client,
            clock=clock,
            universe=UNIVERSE,
            environ=ENV,
            base_url=server.base_url,
        )
        try:
            async with engine:
                server.inject("nan_greeks", function="REALTIME_OPTIONS", field=field, value=value)
                await run_for(engine, clock, 1)
                return engine.metrics()
        finally:
            await server.stop()

    redis_client.delete("raw:av:options:SPY")
    metrics = asyncio.run(scenario())
    full = AvServer(APIKEY, clock=clock).respond(
        "REALTIME_OPTIONS", {"symbol": "SPY", "require_greeks": "true"}, RTH + 1_000_000_000
    )["data"]
    stored = json.loads(redis_client.get("raw:av:options:SPY"))["data"]
    assert [c["contractID"] for c in stored] == [c["contractID"] for c in full[1:]]  # only the spoilt one is gone
    assert metrics["errors"] == {"options": {reason.value: 1}} and metrics["records_dropped"] == 1
    assert f"{full[0]['contractID']}.{field} = {value!r}" in metrics["last_error"]["options"]  # names field and value
    assert metrics["breakers"] == {"options": "closed"} and metrics["writes"] == {"options": 1}


def test_a_chain_whose_every_contract_is_dropped_is_rejected_whole() -> None:
    chain = AvServer(APIKEY, clock=SimulatedClock(RTH)).respond(
        "REALTIME_OPTIONS", {"symbol": "SPY", "require_greeks": "true"}, RTH
    )
    spoilt = chain | {"data": [c | {"delta": "nan"} for c in chain["data"][:3]]}
    with pytest.raises(Rejected) as err:
        PARSERS["av.realtime_options"](json.dumps(spoilt).encode())
    assert err.value.reason is RejectReason.NON_FINITE and ".delta = 'nan'" in err.value.detail
    bare_nan = b'{"data": [{"contractID": "X", "delta": NaN}]}'  # a JSON NaN token: the body is not JSON data
    with pytest.raises(Rejected) as err:
        PARSERS["av.realtime_options"](bare_nan)
    assert err.value.reason is RejectReason.NON_FINITE


def test_fault_controls_reject_what_they_cannot_do() -> None:
    av = AvServer(APIKEY, clock=SimulatedClock(RTH))
    with pytest.raises(ValueError, match="field: 'strike'"):
        av.inject("nan_greeks", field="strike")
    with pytest.raises(ValueError, match="value: 1.5"):
        av.inject("nan_greeks", value=1.5)
    with pytest.raises(ValueError, match="kind: 'nan_greeks'"):
        UwServer(TOKEN, clock=SimulatedClock(RTH)).inject("nan_greeks")  # UW's greeks come per strike, not per contract
    av.inject("nan_greeks", 2, function="REALTIME_OPTIONS", field="rho", value="inf")
    assert av.faults.pending() == 2
