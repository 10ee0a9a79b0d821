"""Malformed ``trades:fills`` / ``trades:position_events`` records: named, counted, dead-lettered, never lost."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
import redis

from quanticity import keys
from quanticity.clock import NS_PER_SECOND, SimulatedClock
from quanticity.config.models import ChannelSpec, DistributionFile
from quanticity.distribution.intake import (
    MalformedRecord,
    parse_fill_record,
    schedule_fill_record,
    schedule_followup_record,
)
from quanticity.distribution.publisher import Publisher
from quanticity.distribution.senders.local import LocalSender
from quanticity.messages import Fill, OptionContract, PositionEvent, PositionEventKind, Right, Side, encode

pytestmark = pytest.mark.unit

T0 = 1_763_735_400 * NS_PER_SECOND
SPY = OptionContract("SPY", "2025-11-21", 440.0, Right.CALL)


def _fill(exec_id: str = "E1", qty: int = 10) -> Fill:
    return Fill(
        ts_event=T0,
        ts_init=T0,
        exec_id=exec_id,
        order_ref="R1",
        contract=SPY,
        side=Side.BUY,
        quantity=qty,
        price=2.5,
        commission=6.5,
        strategy="zero_dte_gamma",
    )


def _record(fill: Fill, **extra: str) -> dict[str, str]:
    return {"fill": encode(fill).decode(), **extra}


def _publisher(client: redis.Redis, tmp_path: Path) -> Publisher:
    spec = ChannelSpec(tiers=["premium", "basic"])
    return Publisher(client, "local", spec, DistributionFile(), LocalSender(tmp_path, "local"), SimulatedClock(T0))


def _dead(client: redis.Redis) -> list[dict[str, str]]:
    return [fields for _, fields in client.xrange(keys.DISTRIBUTION_DEAD_LETTER)]


def test_errors_name_the_field_and_the_value() -> None:
    good = json.loads(encode(_fill()))
    with pytest.raises(MalformedRecord, match=r"^fill: None is missing"):
        parse_fill_record({"realized": "1"})
    with pytest.raises(MalformedRecord, match=r"^fill: '\{not json' is not valid JSON"):
        parse_fill_record({"fill": "{not json"})
    with pytest.raises(MalformedRecord, match=r"^fill\.quantity: 'ten' Expected `int`, got `str`$"):
        parse_fill_record({"fill": json.dumps({**good, "quantity": "ten"})})
    with pytest.raises(
        MalformedRecord, match=r"^fill\.contract: \{'symbol': 'SPY'\} Object missing required field `underlying`$"
    ):
        parse_fill_record({"fill": json.dumps({**good, "contract": {"symbol": "SPY"}})})
    with pytest.raises(MalformedRecord, match=r"^fill\.contract\.strike: 'x' Expected `float`, got `str`$"):
        parse_fill_record({"fill": json.dumps({**good, "contract": {**good["contract"], "strike": "x"}})})
    with pytest.raises(MalformedRecord, match=r"^realized: 'abc' is not a number$"):
        parse_fill_record(_record(_fill(), realized="abc"))
    with pytest.raises(MalformedRecord, match=r"^realized: 'nan' is not a finite number$"):
        parse_fill_record(_record(_fill(), realized="nan"))
    fill, realized = parse_fill_record(_record(_fill(), realized="-12.5"))
    assert fill == _fill() and realized == -12.5


def test_a_malformed_fill_is_dead_lettered_counted_and_the_next_one_still_scheduled(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    publisher = _publisher(redis_client, tmp_path)
    bad = {"fill": json.dumps({**json.loads(encode(_fill("E1"))), "quantity": "ten"})}
    intake = schedule_fill_record(publisher, redis_client, "1-0", bad)
    assert intake.outcome == "malformed" and intake.new == []
    assert intake.error == "fill.quantity: 'ten' Expected `int`, got `str`"
    assert publisher.counters["malformed"] == 1
    (dead,) = _dead(redis_client)
    assert (dead["cause"], dead["stream"], dead["entry"], dead["channel"]) == (
        "malformed_record",
        keys.FILLS_STREAM,
        "1-0",
        "local",
    )
    assert dead["error"] == intake.error and json.loads(dead["record"]) == bad  # the raw record, nothing lost
    (alert,) = [fields for _, fields in redis_client.xrange(keys.ALERTS)]
    assert alert["level"] == "WARNING" and "1-0" in alert["text"] and "fill.quantity" in alert["text"]
    assert publisher.schedule.pending_count() == 0  # nothing half-scheduled

    # a fill that decodes but fails the alert's validation is treated the same way
    zero = schedule_fill_record(publisher, redis_client, "2-0", _record(_fill("E2", qty=0)))
    assert zero.outcome == "malformed" and "fill.quantity" in zero.error and "0" in zero.error
    assert [d["entry"] for d in _dead(redis_client)] == ["1-0", "2-0"]

    # a replay of the same entry (cursor not saved before a restart) is counted, not recorded twice
    assert schedule_fill_record(publisher, redis_client, "1-0", bad).outcome == "malformed"
    assert len(_dead(redis_client)) == 2 and publisher.counters["malformed"] == 3

    # the next good record goes through: the follower's cursor moves on
    good = schedule_fill_record(publisher, redis_client, "3-0", _record(_fill("E3"), realized="0"))
    assert good.outcome == "scheduled" and good.new == ["E3:premium", "E3:basic"]
    assert schedule_fill_record(publisher, redis_client, "3-0", _record(_fill("E3"))).outcome == "replayed"


def test_an_unreadable_position_still_lets_the_alert_out(redis_client: redis.Redis, tmp_path: Path) -> None:
    publisher = _publisher(redis_client, tmp_path)
    redis_client.hset(keys.POSITIONS, SPY.key, "{corrupt")
    intake = schedule_fill_record(publisher, redis_client, "1-0", _record(_fill("E1")))
    assert intake.outcome == "scheduled" and publisher.counters["context_unreadable"] == 1
    assert _dead(redis_client) == []


def test_a_malformed_position_event_is_dead_lettered(redis_client: redis.Redis, tmp_path: Path) -> None:
    publisher = _publisher(redis_client, tmp_path)
    schedule_fill_record(publisher, redis_client, "1-0", _record(_fill("E1")))
    event = PositionEvent(
        event_id="S1", contract_key=SPY.key, kind=PositionEventKind.STOP_MOVED, ts_event=T0, ts_init=T0, new_stop=2.0
    )
    raw = json.loads(msgspec.json.encode(event))
    bad = schedule_followup_record(publisher, redis_client, "5-0", {"event": json.dumps({**raw, "kind": "teleport"})})
    assert bad.outcome == "malformed" and bad.error.startswith("event.kind: 'teleport'")
    missing = schedule_followup_record(publisher, redis_client, "6-0", {"evt": "{}"})
    assert missing.error == "event: None is missing (record fields: ['evt'])"
    no_stop = schedule_followup_record(publisher, redis_client, "7-0", {"event": json.dumps({**raw, "new_stop": None})})
    assert no_stop.outcome == "malformed" and "position_event.new_stop" in no_stop.error
    assert [(d["stream"], d["entry"]) for d in _dead(redis_client)] == [
        (keys.POSITION_EVENTS_STREAM, "5-0"),
        (keys.POSITION_EVENTS_STREAM, "6-0"),
        (keys.POSITION_EVENTS_STREAM, "7-0"),
    ]
    ok = schedule_followup_record(publisher, redis_client, "8-0", {"event": json.dumps(raw)})
    assert ok.outcome == "scheduled" and ok.new == ["S1:premium", "S1:basic"]
    assert publisher.counters["malformed"] == 3
