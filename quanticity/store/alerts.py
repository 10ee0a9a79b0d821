"""The operator alert stream (:data:`quanticity.keys.ALERTS`): one shape, one length cap, one writer.

Everything that must reach the operator — the risk gate's breakers, the overseer's findings, the
publishers' dead letters, the supervisor's emergency actions — appends ``{level, text, ts,
source}`` here; the Telegram admin bot pushes the stream to the admin chat. Going through Redis
(durable) means an alert raised while Telegram is down is delivered when it comes back.
"""

from __future__ import annotations

from typing import Any

import redis

from quanticity import keys

ALERTS_MAXLEN = 10_000


def alert_fields(level: str, text: str, ts_ns: int, source: str) -> dict[str, Any]:
    """One alert entry: ``level`` (INFO/WARNING/CRITICAL/HALT/…), the text, its time (ns) and who raised it."""
    return {"level": level, "text": text, "ts": int(ts_ns), "source": source}


def append_alert(client: redis.Redis | redis.client.Pipeline, level: str, text: str, ts_ns: int, source: str) -> None:
    """Append one alert (to a client, or queued on a pipeline so it lands with the writes it belongs to)."""
    client.xadd(keys.ALERTS, alert_fields(level, text, ts_ns, source), maxlen=ALERTS_MAXLEN, approximate=True)
