"""Adapters through which the overseer and the admin bot act on the running system — and nothing else.

The libraries (:mod:`quanticity.overseer`, :mod:`quanticity.admin`) only know small async
protocols; these classes implement them over Ray actor handles looked up *by name* at each call,
so a risk gate or supervisor replaced after a crash is reached on the next call. Every blocking
``ray.get`` runs in a worker thread (``asyncio.to_thread``) with a timeout, so a hung peer delays
one command, never the event loop that polls Telegram or runs the overseer round.

- :class:`RiskGateControl` → the risk actor's ``set_state`` / ``trading_state`` (both protocols).
- :class:`SupervisorControl` → the RootSupervisor's ``flatten`` / ``set_strategy_enabled`` /
  ``add_symbol`` / ``remove_symbol``, the overseer's ``report_now``; status, positions and P&L are
  read from Redis (heartbeats, ``positions``, ``pnl:realized``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import ray
import redis
from ray.exceptions import RayActorError

from actors.common import RISK, SUPERVISOR, Peers
from quanticity import keys
from quanticity.admin.protocols import PnlView, PositionView
from quanticity.calendar import ET
from quanticity.clock import Clock
from quanticity.execution.store import ExecutionStore
from quanticity.observability.metrics import read_heartbeats

CALL_TIMEOUT_S = 30.0
"""How long one control call may take (an emergency flatten waits for the router)."""
EMERGENCY_TIMEOUT_S = 180.0
OVERSEER = "quanticity:overseer"
ADMIN = "quanticity:admin"
STALE_HEARTBEAT_S = 10.0


class PeerUnavailable(RuntimeError):
    """The actor a control call needs is not alive right now (being restarted, or not in the topology)."""


async def call_peer(peers: Peers, name: str, method: str, *args: Any, timeout_s: float = CALL_TIMEOUT_S) -> Any:
    """``ray.get(peer.method.remote(*args))`` off the event loop.

    A handle of an actor that died since it was cached (the supervisor replaced it under the same
    name) fails with ``RayActorError``: the handle is forgotten and the call goes once more to
    whatever actor holds the name now. Other failures are raised as they are.
    """
    for attempt in (1, 2):
        handle = peers.get(name)
        if handle is None:
            raise PeerUnavailable(f"{name} is not running")

        def blocking(handle: Any = handle) -> Any:
            return ray.get(getattr(handle, method).remote(*args), timeout=timeout_s)

        try:
            return await asyncio.to_thread(blocking)
        except RayActorError:
            peers.forget(name)  # the next look-up finds the restarted actor
            if attempt == 2:
                raise
        except Exception:
            peers.forget(name)
            raise
    raise PeerUnavailable(f"{name} did not answer")


class RiskGateControl:
    """The risk gate's control surface for the overseer and the admin (``set_state``, ``trading_state``)."""

    def __init__(self, peers: Peers) -> None:
        self._peers = peers

    async def set_state(self, state: str, reason: str) -> str:
        """Move the gate to ``state``; the gate persists it before it takes effect."""
        return str(await call_peer(self._peers, RISK, "set_state", state, reason))

    async def trading_state(self) -> str:
        """The gate's current state."""
        return str(await call_peer(self._peers, RISK, "trading_state"))


class SupervisorControl:
    """The admin's :class:`~quanticity.admin.protocols.SystemControl` over the RootSupervisor and Redis."""

    def __init__(self, peers: Peers, client: redis.Redis, clock: Clock) -> None:
        self._peers = peers
        self._client = client
        self._clock = clock

    async def status(self) -> Mapping[str, str]:
        """Actors reporting, restarts and the session clock, read from Redis."""
        return await asyncio.to_thread(self._status_now)

    def _status_now(self) -> dict[str, str]:
        beats = read_heartbeats(self._client)
        now = time.time_ns()
        stale = sorted(
            n.removeprefix("quanticity:") for n, b in beats.items() if (now - int(b["ts"])) / 1e9 > STALE_HEARTBEAT_S
        )
        restarts = sum(int(v) for v in self._client.hgetall(keys.RESTARTS).values())
        sim = datetime.fromtimestamp(self._clock.now_ns() / 1e9, tz=UTC).astimezone(ET).strftime("%Y-%m-%d %H:%M:%S ET")
        return {
            "Session clock": sim,
            "Actors reporting": f"{len(beats) - len(stale)}/{len(beats)}",
            "Stale heartbeats": ", ".join(stale) or "none",
            "Restarts": str(restarts),
            "Fills": str(self._client.xlen(keys.FILLS_STREAM)),
        }

    async def positions(self) -> Sequence[PositionView]:
        """Open positions from the execution store."""
        positions = await asyncio.to_thread(ExecutionStore(self._client).positions)
        return [
            PositionView(
                contract=key,
                quantity=p.quantity,
                avg_price=p.avg_price,
                mark=p.mark or None,
                unrealized=p.unrealized if p.mark else 0.0,
            )
            for key, p in sorted(positions.items())
        ]

    async def pnl(self) -> PnlView:
        """Realized (total and per strategy) and unrealized P&L."""
        store = ExecutionStore(self._client)
        realized = await asyncio.to_thread(store.realized_pnl)
        positions = await asyncio.to_thread(store.positions)
        by_strategy = {k: v for k, v in realized.items() if k != "total"}
        return PnlView(realized.get("total", 0.0), sum(p.unrealized for p in positions.values() if p.mark), by_strategy)

    async def flatten(self, reason: str) -> str:
        """The supervisor's emergency flatten (HALTED first, then cancel and close everything)."""
        result = await call_peer(self._peers, SUPERVISOR, "flatten", reason, timeout_s=EMERGENCY_TIMEOUT_S)
        return _emergency_line(result)

    async def set_strategy_enabled(self, name: str, enabled: bool) -> bool:
        """The supervisor persists the flag and tells the strategy; False for a strategy not running."""
        return bool(await call_peer(self._peers, SUPERVISOR, "set_strategy_enabled", name, enabled))

    async def add_symbol(self, symbol: str) -> str:
        """The supervisor creates the symbol's actors and has the feed generate it."""
        name = await call_peer(self._peers, SUPERVISOR, "add_symbol", symbol, timeout_s=EMERGENCY_TIMEOUT_S)
        return f"added ({name})"

    async def remove_symbol(self, symbol: str) -> bool:
        """The supervisor stops generating ``symbol`` and retires its actor."""
        return bool(await call_peer(self._peers, SUPERVISOR, "remove_symbol", symbol))

    async def request_report(self) -> str:
        """Ask the overseer for the performance summary now; it goes to the alert stream and the summary log."""
        return str(await call_peer(self._peers, OVERSEER, "report_now", timeout_s=CALL_TIMEOUT_S))


def _emergency_line(result: Mapping[str, Any]) -> str:
    """One line of the supervisor's emergency result for a Telegram reply."""
    if not result.get("ok"):
        return f"FAILED: {result.get('error', 'unknown error')} (trading {result.get('trading_state')})"
    details = {k: v for k, v in result.items() if k not in ("ok", "reason", "action", "emergency_id")}
    return f"done ({json.dumps(details, default=str)[:600]})"
