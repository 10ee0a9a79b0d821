"""Protective brackets at the broker: the orders that carry an :class:`~quanticity.execution.exits.Bracket`.

Pure functions and a record type; the router does the I/O. One bracket per open position is one
OCA group (IB ``ocaType`` 1: the first execution of any leg cancels the others) made of

* a ``STP`` sell for every available contract at the plan's stop price (hard, break-even or
  trailing — whichever is highest), triggered on the bid, and
* one ``LMT`` sell per ladder rung not yet reached, at the rung's price, for the rung's contracts.

Because the legs are one-cancels-all, at most one of them can ever execute: the group's working
exit quantity is its largest leg — the stop, which is exactly the plan's available contracts (held
minus those already in other exit orders). Hence the invariant the router checks before placing
a group: ``stop quantity + contracts in other exit orders ≤ position``.

Every placement gets a new sequence number, which makes the leg references and the group name
deterministic and unique for the life of the position (``{plan_id}-b{seq}-stop``,
``…-t{n}``): the intent of each leg is durable in Redis before it is sent, and a restarted router
that finds a leg in doubt asks the broker by that reference instead of sending it again.
"""

from __future__ import annotations

from typing import Any

import msgspec

from quanticity.execution.exits import Bracket
from quanticity.messages import OptionContract, OrderIntent, Side

STOP = "stop"
TARGET = "target"


class Leg(msgspec.Struct, kw_only=True):
    """One order of a bracket as the router placed it."""

    ref: str
    kind: str  # STOP or TARGET
    label: str  # the stop's reason or the rung's label ("rung +50%")
    quantity: int
    price: float


class BracketRecord(msgspec.Struct, kw_only=True):
    """What the router placed for one position: the plan revision it carries and its legs.

    ``legs`` is empty when nothing rests at the broker (no bracket wanted, or HALTED).
    """

    seq: int = 0
    revision: int = 0
    group: str = ""
    legs: list[Leg] = msgspec.field(default_factory=list)
    suppressed: bool = False  # taken down while HALTED: re-placed once trading resumes

    @property
    def stop(self) -> Leg | None:
        """The stop leg, if the bracket has one."""
        return next((leg for leg in self.legs if leg.kind == STOP), None)

    @property
    def working_quantity(self) -> int:
        """Contracts this OCA group can sell at most: its largest leg (only one leg executes)."""
        return max((leg.quantity for leg in self.legs), default=0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the store."""
        return msgspec.to_builtins(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> BracketRecord:
        """Rebuild from :meth:`to_dict` (an absent record is an empty one)."""
        return msgspec.convert(raw, cls) if raw else cls()


def same_shape(record: BracketRecord, bracket: Bracket) -> bool:
    """True when ``record`` already carries ``bracket`` apart, possibly, from the stop price.

    Then a trail or break-even move is a price modification of the stop leg (same reference, same
    group, no gap in protection) rather than a cancel and re-place of the whole group.
    """
    stop = record.stop
    if stop is None or bracket.stop_price is None or stop.quantity != bracket.quantity:
        return False
    targets = [(leg.label, leg.quantity, leg.price) for leg in record.legs if leg.kind == TARGET]
    return targets == [(t.label, t.quantity, t.price) for t in bracket.targets]


def leg_intents(
    bracket: Bracket,
    *,
    plan_id: str,
    seq: int,
    contract: OptionContract,
    strategy: str,
    now_ns: int,
    ts_init: int,
) -> tuple[BracketRecord, list[tuple[OrderIntent, dict[str, str]]]]:
    """The record and the leg intents (with their roles) of placement ``seq`` of ``bracket``.

    An empty bracket (nothing available) gives an empty record and no legs.
    """
    group = f"{plan_id}-b{seq}"
    record = BracketRecord(seq=seq, revision=bracket.revision, group=group)
    if bracket.quantity <= 0:
        return record, []
    legs: list[tuple[OrderIntent, dict[str, str]]] = []

    def add(ref: str, kind: str, label: str, quantity: int, price: float, stop: bool) -> None:
        intent = OrderIntent(
            ts_event=now_ns,
            ts_init=ts_init,
            order_ref=ref,
            signal_id=f"bracket:{group}",
            strategy=strategy,
            contract=contract,
            side=Side.SELL,
            quantity=quantity,
            limit_price=price,
            origin_ts_init=ts_init,
            order_type="STP" if stop else "LMT",
            stop_price=price if stop else 0.0,
            oca_group=group,
        )
        record.legs.append(Leg(ref=ref, kind=kind, label=label, quantity=quantity, price=price))
        legs.append((intent, {"contract": contract.key, "kind": kind, "label": label, "group": group}))

    if bracket.stop_price is not None:
        add(f"{group}-stop", STOP, bracket.stop_reason or STOP, bracket.quantity, bracket.stop_price, True)
    for n, target in enumerate(bracket.targets, start=1):
        add(f"{group}-t{n}", TARGET, target.label, target.quantity, target.price, False)
    return record, legs
