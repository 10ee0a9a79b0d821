"""The admin audit trail: every command and button press, authorised or not, with its outcome.

Written to the durable Redis stream :data:`quanticity.keys.ADMIN_AUDIT` *before* the reply goes
out, so even a refused stranger's attempt is on record. Entries carry the injected clock's time.
"""

from __future__ import annotations

import redis

from quanticity import keys
from quanticity.clock import Clock

AUDIT_MAXLEN = 100_000


class AdminAudit:
    """Appends audit entries and reads them back (for /status and tests)."""

    def __init__(self, client: redis.Redis, clock: Clock) -> None:
        self._client = client
        self._clock = clock

    def record(self, user_id: int, chat_id: int, kind: str, text: str, action: str, outcome: str, detail: str) -> str:
        """One entry; ``outcome`` is ok / refused / rejected / error / expired …; returns the entry id."""
        return str(
            self._client.xadd(
                keys.ADMIN_AUDIT,
                {
                    "ts": self._clock.now_ns(),
                    "user_id": user_id,
                    "chat_id": chat_id,
                    "kind": kind,
                    "text": text[:500],
                    "action": action,
                    "outcome": outcome,
                    "detail": detail[:1000],
                },
                maxlen=AUDIT_MAXLEN,
                approximate=True,
            )
        )

    def entries(self, count: int = 100) -> list[dict[str, str]]:
        """The last ``count`` entries, oldest first."""
        return [fields for _, fields in reversed(self._client.xrevrange(keys.ADMIN_AUDIT, count=count))]
