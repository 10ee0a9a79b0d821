"""The local channel: one append-only file per channel and tier that a person can ``tail -f``.

Lines keep the format of :mod:`quanticity.distribution.channel_log` (``[message key] text``), so
tools reading those files keep working; a follow-up names the message it replies to. The file is
its own record, so a send of unknown outcome is checked by looking for the line.
"""

from __future__ import annotations

import os
from pathlib import Path

from quanticity.distribution.pacing import credential_digest
from quanticity.distribution.schedule import Delivery
from quanticity.distribution.senders.base import Check, PermanentError, Posted, Sender


class LocalSender(Sender):
    """Writes deliveries of ``channel`` under ``log_dir``."""

    platform = "local"

    def __init__(self, log_dir: Path | str, channel: str) -> None:
        self.log_dir = Path(log_dir)
        self.channel = channel
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._credential = credential_digest(str(self.log_dir.resolve()))

    @property
    def rate_credential(self) -> str:
        """The log directory: one disk's budget, whichever channel writes."""
        return self._credential

    def path(self, tier: str) -> Path:
        """File of ``tier``."""
        return self.log_dir / f"{self.channel}-{tier}.log"

    async def send(self, delivery: Delivery, parent: Posted | None) -> Posted:
        text = delivery.text.replace("\n", " | ")
        if parent is not None:
            text = f"↳ re [{parent.message_id}] {text}"
        try:
            with self.path(delivery.tier).open("a") as handle:
                handle.write(f"[{delivery.key}] {text}\n")
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise PermanentError(f"{self.path(delivery.tier)}: {exc}") from exc
        return Posted(message_id=delivery.key, chat_id=str(self.path(delivery.tier)))

    async def find_existing(self, delivery: Delivery, parent: Posted | None) -> Posted | Check:
        path = self.path(delivery.tier)
        if path.exists():
            prefix = f"[{delivery.key}] "
            with path.open() as handle:
                if any(line.startswith(prefix) for line in handle):
                    return Posted(message_id=delivery.key, chat_id=str(path))
        return Check.NOT_FOUND
