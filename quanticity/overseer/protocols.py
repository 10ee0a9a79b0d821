"""The two narrow doors through which the overseer acts on the rest of the system.

The overseer never touches the risk gate or Telegram directly: it asks a :class:`RiskControl`
to halt and hands WARNING alerts to :class:`AdminAlerts`. The lead plugs in adapters over the
Ray actor handles (``await risk.set_state.remote("HALTED", reason)`` — the RiskGate actor has
exactly that method); tests plug in small in-memory implementations.
"""

from __future__ import annotations

from typing import Protocol


class RiskControl(Protocol):
    """The one risk-gate method the overseer may call."""

    async def set_state(self, state: str, reason: str) -> str:
        """Move the gate to ``state`` (the overseer only ever asks for ``HALTED``); returns the new state."""
        ...


class AdminAlerts(Protocol):
    """Where alerts for the human operator go (Telegram admin chat, via the alert stream)."""

    async def alert(self, level: str, text: str) -> None:
        """Deliver ``text`` at ``level`` (``WARNING`` or ``CRITICAL``)."""
        ...
