"""Scriptable faults of the simulated TWS (what tests and the control API switch on).

The connection-level faults (drop, 1100/1101/1102, daily restart, order-id rollback) are
methods of :class:`~.server.TwsSimulator` because they act on live sessions; this module holds
the state they and the sessions consult.
"""

from __future__ import annotations

import dataclasses

__all__ = ["FaultState"]


@dataclasses.dataclass
class FaultState:
    """Mutable fault switches; a fresh instance means "behave like a healthy TWS"."""

    silenced: set[int] = dataclasses.field(default_factory=set)
    """Request message ids (see :class:`~.ids.In`) read but never answered."""
    swallowed: dict[int, int] = dataclasses.field(default_factory=dict)
    """How many requests of each id were silenced."""
    refuse_until: float = 0.0
    """Monotonic time before which new connections are closed at once (daily restart)."""
    next_valid_id_override: int | None = None
    """When set, the nextValidId the server hands out (a rollback below ids already used)."""
    refused_connections: int = 0
