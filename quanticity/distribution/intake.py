"""Stream records into scheduled alerts: the library side of the publisher actor's two followers.

The publisher actor follows ``trades:fills`` and ``trades:position_events`` from persisted
cursors. A record it cannot read must neither stop the follower (every later fill would wait
behind it) nor vanish with a log line: it gets a clear error naming the field and the value, is
counted (``Publisher.counters["malformed"]``, exported as the actor's ``malformed_records``), and
is moved — raw fields and reason — to the distribution dead-letter stream, with an operator alert,
in one MULTI; the follower's cursor then moves on. A replayed record (the cursor was not saved
before a restart) finds its entry id already dead-lettered and is not recorded twice.

The actor stays a thin shell: it passes each record here and only logs the returned outcome.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
import redis

from quanticity import keys
from quanticity.distribution.alerts import FillContext
from quanticity.distribution.context import fill_context
from quanticity.distribution.publisher import Publisher
from quanticity.messages import Fill, PositionEvent, decode
from quanticity.store.alerts import append_alert

DEAD_LETTER_MAXLEN = 100_000
_PATH = re.compile(r"at `\$((?:\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\])*)`")
_VALUE_CHARS = 80


class MalformedRecord(ValueError):
    """A stream record that cannot become an alert; the message names the field and its value."""

    def __init__(self, field_name: str, value: object, reason: str) -> None:
        super().__init__(f"{field_name}: {_show(value)} {reason}")
        self.field_name = field_name
        self.value = value


@dataclass(frozen=True)
class Intake:
    """What became of one record: ``scheduled`` (new deliveries), ``replayed`` (nothing new) or ``malformed``."""

    outcome: Literal["scheduled", "replayed", "malformed"]
    new: list[str] = field(default_factory=list)
    error: str = ""


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _VALUE_CHARS else text[: _VALUE_CHARS - 1] + "…"


def _lookup(data: Any, path: str) -> object:
    """The value at a msgspec error path such as ``.contract.strike`` or ``.legs[0]`` (``<missing>`` if absent)."""
    for name, index in re.findall(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]", path):
        try:
            data = data[name] if name else data[int(index)]
        except (KeyError, IndexError, TypeError):
            return "<missing>"
    return data


def decode_field(fields: dict[str, str], name: str, message_type: type[Any]) -> Any:
    """Decode the JSON message in ``fields[name]``; a bad one raises :class:`MalformedRecord` naming the inner field.

    msgspec reports *where* (``at `$.quantity```) but not the value, so the value is looked up in
    the raw JSON: the error then reads ``fill.quantity: 'ten' Expected `int`, got `str```.
    """
    raw = fields.get(name)
    if raw is None:
        raise MalformedRecord(name, None, f"is missing (record fields: {sorted(fields)})")
    try:
        return decode(raw, message_type)
    except msgspec.ValidationError as exc:
        match = _PATH.search(str(exc))
        path = match.group(1) if match else ""
        try:
            value = _lookup(json.loads(raw), path)
        except ValueError:
            value = raw
        reason = _PATH.sub("", str(exc)).rstrip(" -")
        raise MalformedRecord(f"{name}{path}", value, reason) from exc
    except msgspec.DecodeError as exc:
        raise MalformedRecord(name, raw, f"is not valid JSON ({exc})") from exc


def parse_fill_record(fields: dict[str, str]) -> tuple[Fill, float]:
    """``(fill, realized P&L)`` of a ``trades:fills`` record (``realized`` defaults to 0 on entries)."""
    fill = decode_field(fields, "fill", Fill)
    raw = fields.get("realized", "0")
    try:
        realized = float(raw)
    except ValueError:
        raise MalformedRecord("realized", raw, "is not a number") from None
    if not math.isfinite(realized):
        raise MalformedRecord("realized", raw, "is not a finite number")
    return fill, realized


def dead_letter_record(
    publisher: Publisher, client: redis.Redis, stream: str, entry_id: str, fields: dict[str, str], error: str
) -> bool:
    """Count the record and move it to the dead-letter stream (with an operator alert); False if already there."""
    publisher.counters["malformed"] += 1
    seen = keys.distribution_malformed_seen(publisher.channel)
    if not client.sadd(seen, f"{stream}/{entry_id}"):
        return False  # a replay after a restart: it was dead-lettered before the cursor was saved
    now = publisher.clock.now_ns()
    record = {
        "ts_ns": now,
        "channel": publisher.channel,
        "cause": "malformed_record",
        "stream": stream,
        "entry": entry_id,
        "error": error,
        "record": json.dumps(fields, sort_keys=True),
    }
    text = (
        f"channel {publisher.channel!r}: {stream} entry {entry_id} cannot be published ({error}); "
        f"moved to {keys.DISTRIBUTION_DEAD_LETTER}"
    )
    pipe = client.pipeline(transaction=True)
    pipe.xadd(keys.DISTRIBUTION_DEAD_LETTER, record, maxlen=DEAD_LETTER_MAXLEN, approximate=True)
    append_alert(pipe, "WARNING", text, now, f"publisher:{publisher.channel}")
    pipe.execute()
    return True


def schedule_fill_record(
    publisher: Publisher,
    client: redis.Redis,
    entry_id: str,
    fields: dict[str, str],
    account_equity: float | None = None,
) -> Intake:
    """Schedule the alert of one ``trades:fills`` record, or dead-letter it when it is malformed.

    The context (position, exit plan) is read from what the router stored; if that cannot be read
    the alert still goes out without those levels (counted as ``context_unreadable``) — a
    subscriber must not lose an alert over its decoration.
    """
    try:
        fill, realized = parse_fill_record(fields)
    except MalformedRecord as exc:
        dead_letter_record(publisher, client, keys.FILLS_STREAM, entry_id, fields, str(exc))
        return Intake("malformed", error=str(exc))
    try:
        context = fill_context(client, fill, realized, account_equity)
    except (ValueError, TypeError):  # a corrupt position record (msgspec errors are ValueErrors)
        publisher.counters["context_unreadable"] += 1
        context = FillContext(realized=realized, triggers=(fill.strategy,))
    try:
        new = publisher.on_fill(fill, context)
    except ValueError as exc:  # the fill decoded but is not a valid fill (quantity 0, price < 0, …)
        dead_letter_record(publisher, client, keys.FILLS_STREAM, entry_id, fields, str(exc))
        return Intake("malformed", error=str(exc))
    return Intake("scheduled" if new else "replayed", new)


def schedule_followup_record(
    publisher: Publisher, client: redis.Redis, entry_id: str, fields: dict[str, str]
) -> Intake:
    """Schedule one ``trades:position_events`` record in its thread, or dead-letter it when it is malformed."""
    try:
        event = decode_field(fields, "event", PositionEvent)
        new = publisher.on_followup(event)
    except ValueError as exc:  # MalformedRecord, or the event failed the alert's validation
        dead_letter_record(publisher, client, keys.POSITION_EVENTS_STREAM, entry_id, fields, str(exc))
        return Intake("malformed", error=str(exc))
    return Intake("scheduled" if new else "replayed", new)
