"""The context of a fill for its alert, read from what the router already stored in Redis.

The router books a fill (position, realized P&L) and keeps the position's exit plan; the alert
shows that plan's protective stop and targets, so subscribers see the very levels the bracket
rests at. A missing or unreadable plan only leaves those fields out (premium then says "not
set"); it never blocks the alert.
"""

from __future__ import annotations

import json

import msgspec
import redis

from quanticity import keys
from quanticity.distribution.alerts import FillContext
from quanticity.execution.exits import ExitPlan
from quanticity.execution.positions import Position
from quanticity.messages import Fill

CONTRACT_MULTIPLIER = 100


def fill_context(client: redis.Redis, fill: Fill, realized: float, account_equity: float | None = None) -> FillContext:
    """Context of ``fill`` from the positions and exit plans hashes (read after the fill was booked)."""
    raw_position = client.hget(keys.POSITIONS, fill.contract.key)
    position = msgspec.json.decode(raw_position, type=Position) if raw_position else None
    stop: float | None = None
    targets: tuple[float, ...] = ()
    raw_plan = client.hget(keys.EXIT_PLANS, fill.contract.key)
    if raw_plan:
        try:
            bracket = ExitPlan.restore(json.loads(raw_plan)).bracket()
        except (ValueError, KeyError, TypeError, msgspec.ValidationError):
            bracket = None
        if bracket is not None:
            stop = bracket.stop_price
            targets = tuple(t.price for t in bracket.targets)
    entry = position.avg_price if position is not None else None
    risk = fill.price * fill.quantity * CONTRACT_MULTIPLIER  # long options: the premium paid is the risk
    return FillContext(
        realized=realized,
        remaining=position.quantity if position is not None else 0,
        entry_price=entry if entry and entry > 0 else None,
        stop=stop,
        targets=targets,
        triggers=(fill.strategy,),
        risk_amount=risk,
        risk_pct=risk / account_equity * 100 if account_equity else None,
        opened_ns=position.opened_ns if position is not None else None,
    )
