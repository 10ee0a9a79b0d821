"""What a subscriber alert is about: a confirmed fill with its context, or a follow-up event.

Alerts are built only from fills the broker confirmed (SPEC §10) and carry everything the
richest tier shows; the templates redact per tier. Values are validated here because they come
from outside the distribution code (the router's records, the exit manager): a bad value is
rejected with the field named, before anything is scheduled.
"""

from __future__ import annotations

import enum
import math

import msgspec

from quanticity.messages import Direction, Fill, OptionContract, PositionEvent, PositionEventKind, Right, Side


class AlertKind(enum.StrEnum):
    """Entry alerts start a thread; every other kind is a follow-up posted in that thread."""

    ENTRY = "entry"
    ADDED = "added"
    STOP_MOVED = "stop_moved"
    PARTIAL_EXIT = "partial_exit"
    CLOSED = "closed"
    EXPLANATION = "explanation"


class FillContext(msgspec.Struct, frozen=True, kw_only=True):
    """What the fill alone does not say: the protective bracket, why it traded, the risk taken.

    ``remaining`` is the position left after the fill (0 = closed; None = unknown, treated as
    open); ``entry_price`` is the average entry, for an exit's P&L percentage.
    """

    realized: float = 0.0
    remaining: int | None = None
    entry_price: float | None = None
    stop: float | None = None
    targets: tuple[float, ...] = ()
    triggers: tuple[str, ...] = ()
    reason: str = ""
    risk_amount: float | None = None
    risk_pct: float | None = None
    opened_ns: int | None = None


class Alert(msgspec.Struct, frozen=True, kw_only=True):
    """One message to publish, before tier redaction; ``thread_key`` names the entry it replies to."""

    key: str
    kind: AlertKind
    ts_event: int
    contract: OptionContract
    direction: Direction
    side: Side | None = None
    quantity: int = 0
    price: float = 0.0
    strategy: str = ""
    context: FillContext = FillContext()
    new_stop: float | None = None
    note: str = ""  # STOP_MOVED: why it moved; EXPLANATION: the explanation's text
    thread_key: str | None = None


def _finite(name: str, value: float | None, *, positive: bool = False) -> None:
    if value is None:
        return
    if not math.isfinite(value) or (positive and value <= 0):
        raise ValueError(f"{name}: {value!r} must be a {'positive ' if positive else ''}finite number")


def validate_fill(fill: Fill, context: FillContext) -> None:
    """Reject a fill or context a subscriber must never see (non-positive size, NaN prices)."""
    if fill.quantity <= 0:
        raise ValueError(f"fill.quantity: {fill.quantity!r} must be ≥ 1")
    _finite("fill.price", fill.price, positive=True)
    if not fill.exec_id:
        raise ValueError("fill.exec_id: must not be empty (it is the message id)")
    _finite("context.realized", context.realized)
    _finite("context.entry_price", context.entry_price, positive=True)
    _finite("context.stop", context.stop, positive=True)
    _finite("context.risk_amount", context.risk_amount)
    _finite("context.risk_pct", context.risk_pct)
    for i, target in enumerate(context.targets):
        _finite(f"context.targets[{i}]", target, positive=True)
    if context.remaining is not None and context.remaining < 0:
        raise ValueError(f"context.remaining: {context.remaining!r} must be ≥ 0")


def direction_of(contract: OptionContract) -> Direction:
    """The view a long option expresses: calls are bullish, puts bearish."""
    return Direction.BULLISH if contract.right is Right.CALL else Direction.BEARISH


def fill_alert(fill: Fill, context: FillContext, open_thread: str | None) -> Alert:
    """The alert of a fill: an entry, or a follow-up in ``open_thread`` (the position's entry alert).

    A buy with no open thread (or whose thread *is* this fill, on a replay) opens the thread; a
    further buy adds to it; a sell is a partial exit, or the close once nothing remains.
    """
    validate_fill(fill, context)
    if fill.side is Side.BUY:
        kind = AlertKind.ENTRY if open_thread in (None, fill.exec_id) else AlertKind.ADDED
    else:
        kind = AlertKind.CLOSED if context.remaining == 0 else AlertKind.PARTIAL_EXIT
    return Alert(
        key=fill.exec_id,
        kind=kind,
        ts_event=fill.ts_event,
        contract=fill.contract,
        direction=direction_of(fill.contract),
        side=fill.side,
        quantity=fill.quantity,
        price=fill.price,
        strategy=fill.strategy,
        context=context,
        thread_key=None if kind is AlertKind.ENTRY else open_thread,
    )


def parse_contract_key(key: str) -> OptionContract:
    """Inverse of :attr:`OptionContract.key` (``SPY 2026-11-20 450.00 C``); errors name the value."""
    parts = key.split()
    if len(parts) != 4 or parts[3] not in ("C", "P"):
        raise ValueError(f"contract_key: {key!r} is not '<UNDERLYING> <YYYY-MM-DD> <STRIKE> <C|P>'")
    try:
        strike = float(parts[2])
    except ValueError:
        raise ValueError(f"contract_key: {key!r} has a non-numeric strike") from None
    return OptionContract(parts[0], parts[1], strike, Right(parts[3]))


MAX_EXPLANATION_CHARS = 1500
"""An explanation longer than this is cut (Discord embeds and Telegram messages have limits)."""


def followup_alert(event: PositionEvent, thread_key: str) -> Alert:
    """The alert of a non-fill position event, replying to ``thread_key``; errors name the field."""
    contract = parse_contract_key(event.contract_key)
    if not event.event_id:
        raise ValueError("position_event.event_id: must not be empty (it is the message id)")
    if event.kind is PositionEventKind.STOP_MOVED:
        _finite("position_event.new_stop", event.new_stop, positive=True)
        if event.new_stop is None:
            raise ValueError("position_event.new_stop: required for stop_moved")
        kind, note = AlertKind.STOP_MOVED, event.reason
    else:
        text = " ".join(event.text.split())
        if not text:
            raise ValueError(f"position_event.text: {event.text!r} is empty (an explanation needs text)")
        if len(text) > MAX_EXPLANATION_CHARS:
            text = text[: MAX_EXPLANATION_CHARS - 1].rstrip() + "…"
        kind, note = AlertKind.EXPLANATION, text
    return Alert(
        key=event.event_id,
        kind=kind,
        ts_event=event.ts_event,
        contract=contract,
        direction=direction_of(contract),
        new_stop=event.new_stop,
        note=note,
        thread_key=thread_key,
    )
