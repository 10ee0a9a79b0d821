"""The narrow doors through which admin commands act on the system.

The controller never reaches into actors: it calls a :class:`SystemControl` (the root supervisor
and the router behind it) and a :class:`RiskControl` (the risk gate). The lead plugs in adapters
over the Ray actor handles (``await risk.set_state.remote(state, reason)``); tests plug in small
in-memory implementations. Methods are async because the admin actor is async (SPEC §3).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class PositionView:
    """One open position as the admin sees it."""

    contract: str
    quantity: int
    avg_price: float
    mark: float | None = None
    unrealized: float = 0.0


@dataclass(frozen=True)
class PnlView:
    """Today's P&L: realized, unrealized, and realized per strategy."""

    realized: float
    unrealized: float
    by_strategy: Mapping[str, float]


class SystemControl(Protocol):
    """Supervisor-level operations the admin may trigger."""

    async def status(self) -> Mapping[str, str]:
        """Named health facts (actors alive, feed state, session clock …)."""
        ...

    async def positions(self) -> Sequence[PositionView]:
        """Open positions."""
        ...

    async def pnl(self) -> PnlView:
        """Today's P&L."""
        ...

    async def flatten(self, reason: str) -> str:
        """Emergency flatten: HALTED, cancel every working order, sell every position; a one-line summary."""
        ...

    async def set_strategy_enabled(self, name: str, enabled: bool) -> bool:
        """Enable/disable a strategy (persisted: it survives the strategy's restart); False when no
        strategy has that name."""
        ...

    async def add_symbol(self, symbol: str) -> str:
        """Add ``symbol`` to the universe; returns what was done."""
        ...

    async def remove_symbol(self, symbol: str) -> bool:
        """Remove ``symbol`` from the universe; False when it was not in it."""
        ...

    async def request_report(self) -> str:
        """Produce the current report now; returns where it went."""
        ...


class RiskControl(Protocol):
    """The risk gate's control surface (the RiskGate actor has exactly these methods)."""

    async def set_state(self, state: str, reason: str) -> str:
        """Move to ACTIVE / REDUCING / HALTED; returns the new state."""
        ...

    async def trading_state(self) -> str:
        """The current trading state."""
        ...
