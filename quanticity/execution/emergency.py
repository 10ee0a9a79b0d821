"""Emergency actions (SPEC §9): cancel every working order, flatten every open position.

Pure functions that return the same action types as :mod:`quanticity.execution.lifecycle`; the
router executes them. Cancel first, then flatten: a flatten sized from positions must not race
exit orders that are still working for the same contracts.

Flatten sells each position with a *marketable* limit at the current bid (a limit, not a market
order, so a broken quote cannot fill at any price), split into chunks of at most ``max_chunk``.
Order references derive from ``emergency_id`` and the contract only, so calling flatten again for
the same emergency yields the same references and the router's at-most-once check sends nothing
twice. A position without a usable bid cannot be sold by a limit at the bid: it is returned as
:class:`Unflattened` so the caller alerts a person instead of dropping it silently.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from quanticity.execution.lifecycle import Cancel, Place, child_refs, chunk_quantities
from quanticity.messages import BrokerOrder, OptionContract, OrderIntent, OrderStatus, Side

CANCEL_ALL_REASON = "emergency cancel-all"
FLATTEN_STRATEGY = "emergency"
_FINISHED = frozenset({OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED})


@dataclass(frozen=True)
class Unflattened:
    """A position flatten could not price (no quote or no bid); a person must handle it."""

    contract_key: str
    quantity: int
    reason: str


def flatten_ref(emergency_id: str, contract_key: str) -> str:
    """Deterministic parent reference of the flatten order of one contract in one emergency."""
    return "F" + hashlib.sha1(f"{emergency_id}|{contract_key}".encode()).hexdigest()[:20]


def flatten_actions(
    positions: Mapping[str, tuple[OptionContract, int]],
    quotes: Mapping[str, tuple[float, float]],
    *,
    now_ns: int = 0,
    emergency_id: str = "emergency",
    strategies: Mapping[str, str] | None = None,
    max_chunk: int = 100,
) -> list[Place | Unflattened]:
    """Sell-limit-at-the-bid orders closing every open position, in contract-key order.

    ``positions`` maps contract key → (contract, contracts held); ``quotes`` maps contract key →
    (bid, ask). ``strategies`` (contract key → strategy) keeps the realized P&L of the flatten on
    the strategy that owns the position; without it the intents carry ``"emergency"``.
    """
    actions: list[Place | Unflattened] = []
    for key in sorted(positions):
        contract, quantity = positions[key]
        if quantity <= 0:
            continue
        quote = quotes.get(key)
        if quote is None:
            actions.append(Unflattened(key, quantity, "no quote"))
            continue
        bid = quote[0]
        if not (math.isfinite(bid) and bid > 0):
            actions.append(Unflattened(key, quantity, f"no bid ({bid})"))
            continue
        ref = flatten_ref(emergency_id, key)
        sizes = chunk_quantities(quantity, max_chunk)
        strategy = (strategies or {}).get(key, FLATTEN_STRATEGY)
        for child, size in zip(child_refs(ref, len(sizes)), sizes, strict=True):
            actions.append(
                Place(
                    OrderIntent(
                        ts_event=now_ns,
                        ts_init=now_ns,
                        order_ref=child,
                        signal_id=f"{emergency_id}:flatten:{key}",
                        strategy=strategy,
                        contract=contract,
                        side=Side.SELL,
                        quantity=size,
                        limit_price=bid,
                        origin_ts_init=now_ns,
                    )
                )
            )
    return actions


def cancel_all_actions(open_orders: Iterable[BrokerOrder | str], reason: str = CANCEL_ALL_REASON) -> list[Cancel]:
    """One :class:`Cancel` per working order, de-duplicated, in reference order.

    Accepts the broker's order reports (finished orders are skipped: there is nothing to cancel)
    or bare references (assumed working).
    """
    refs: set[str] = set()
    for order in open_orders:
        if isinstance(order, str):
            refs.add(order)
        elif order.status not in _FINISHED:
            refs.add(order.order_ref)
    return [Cancel(ref, reason) for ref in sorted(refs)]
