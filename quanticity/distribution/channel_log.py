"""A local channel: one append-only log file per channel and tier that a person can tail.

Messages are rendered only from fills the broker confirmed (SPEC §10). Each line starts with
the message id, and the ids already in the files are read back at start, so a publisher killed
between writing a line and recording it never writes that line twice.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from quanticity.calendar import ET
from quanticity.messages import Fill, Right, Side

NS = 1_000_000_000


def render(fill: Fill, tier: str, realized: float) -> str:
    """Message text of ``fill`` for ``tier``: premium has everything, lower tiers less.

    premium: contract, side, size, price, commission, realized P&L on exits;
    basic: contract, side and price (no sizing, no P&L);
    free: direction-only teaser.
    """
    when = datetime.fromtimestamp(fill.ts_event / NS, tz=UTC).astimezone(ET).strftime("%Y-%m-%d %H:%M:%S ET")
    action = "BOUGHT" if fill.side is Side.BUY else "SOLD"
    kind = "CALL" if fill.contract.right is Right.CALL else "PUT"
    if tier == "premium":
        text = (
            f"{when} {action} {fill.quantity} x {fill.contract.key} @ {fill.price:.2f} "
            f"(commission {fill.commission:.2f}, strategy {fill.strategy})"
        )
        if fill.side is Side.SELL:
            text += f" realized {realized:+.2f}"
        return text
    if tier == "basic":
        return f"{when} {action} {fill.contract.key} @ {fill.price:.2f}"
    if tier == "free":
        view = "bullish" if fill.contract.right is Right.CALL else "bearish"
        return (
            f"{when} {fill.contract.underlying}: {view} {kind} trade {'opened' if fill.side is Side.BUY else 'closed'}"
        )
    raise ValueError(f"tier: {tier!r} is not one of premium, basic, free")


class ChannelLog:
    """Append-only per-tier log files of one channel under ``log_dir``."""

    def __init__(self, log_dir: Path | str, channel: str, tiers: list[str]) -> None:
        self.log_dir = Path(log_dir)
        self.channel = channel
        self.tiers = list(tiers)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._seen = {tier: self._ids_in(tier) for tier in self.tiers}

    def path(self, tier: str) -> Path:
        """File of ``tier``."""
        return self.log_dir / f"{self.channel}-{tier}.log"

    def _ids_in(self, tier: str) -> set[str]:
        path = self.path(tier)
        if not path.exists():
            return set()
        return {line.partition(" ")[0].strip("[]") for line in path.read_text().splitlines() if line}

    def delivered_ids(self) -> set[str]:
        """Message ids present in every tier file (a message is delivered once all tiers have it)."""
        return set.intersection(*self._seen.values()) if self._seen else set()

    def write(self, message_id: str, fill: Fill, realized: float) -> None:
        """Append the message to every tier file not yet holding it, then fsync."""
        for tier in self.tiers:
            if message_id in self._seen[tier]:
                continue
            with self.path(tier).open("a") as handle:
                handle.write(f"[{message_id}] {render(fill, tier, realized)}\n")
                handle.flush()
                os.fsync(handle.fileno())
            self._seen[tier].add(message_id)
