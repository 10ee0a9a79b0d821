"""Post-fill explanations for the premium tier: which fills get one, and the event that carries it.

The overseer explains the fill that *opens* a position (SPEC §12): the premium entry alert goes
out the moment the broker confirms the fill — it never waits for a model — and the explanation
follows in that alert's thread as a premium-only :class:`~quanticity.messages.PositionEvent`.
The event id is ``why:<exec_id>``, so an overseer restarted mid-way that explains the same fill
again (the model may word it differently) still produces one message: the publishers schedule
the first and ignore the repeat.
"""

from __future__ import annotations

from collections.abc import Mapping

import redis

from quanticity import keys
from quanticity.messages import Fill, PositionEvent, PositionEventKind, Signal, decode, encode
from quanticity.overseer.narratives import Narrative, Narrator
from quanticity.risk.gate import order_ref_for

SIGNAL_SEARCH_DEPTH = 5000
"""How many of the newest signals are searched for the one behind a fill (they are minutes old)."""


def opens_position(fields: Mapping[str, str]) -> bool:
    """True when the ``trades:fills`` entry ``fields`` is the fill that opened its position.

    The router's store marks it when booking (``opened``), the only moment that is certain: by the
    time the overseer reads the entry the position may have been closed or opened again.
    """
    return fields.get("opened") == "1"


def signal_of(client: redis.Redis, fill: Fill, depth: int = SIGNAL_SEARCH_DEPTH) -> Signal | None:
    """The strategy signal behind ``fill`` (for its triggers and confidence), if still in the stream.

    Entry orders are referenced by their signal (:func:`order_ref_for`), children by that
    reference plus ``-c<n>``; the newest ``depth`` signals are searched.
    """
    parent = fill.order_ref.rsplit("-c", 1)[0]
    for _, fields in client.xrevrange(keys.SIGNALS_STREAM, count=depth):
        raw = fields.get("signal")
        if raw is None:
            continue
        try:
            signal = decode(raw, Signal)
        except ValueError:
            continue
        if order_ref_for(signal.signal_id) == parent:
            return signal
    return None


def explanation_event(fill: Fill, narrative: Narrative, now_ns: int) -> PositionEvent:
    """The premium follow-up carrying ``narrative`` about ``fill``."""
    return PositionEvent(
        ts_event=fill.ts_event,
        ts_init=now_ns,
        event_id=f"why:{fill.exec_id}",
        contract_key=fill.contract.key,
        thread=fill.exec_id,
        kind=PositionEventKind.EXPLANATION,
        text=narrative.text,
        source=narrative.source,
    )


async def explain_opening_fill(
    client: redis.Redis, narrator: Narrator, fill: Fill, fields: Mapping[str, str], now_ns: int
) -> PositionEvent | None:
    """Explain ``fill`` (its ``trades:fills`` entry is ``fields``) if it opened a position, and
    announce it; None for every other fill.

    Blocking Redis calls here are short (one bounded stream read, one append); the model call is
    bounded by the gateway's timeout and falls back to the template.
    """
    if not opens_position(fields):
        return None
    narrative = await narrator.explain_fill(fill, signal_of(client, fill))
    event = explanation_event(fill, narrative, now_ns)
    client.xadd(keys.POSITION_EVENTS_STREAM, {"event": encode(event).decode()})
    return event
