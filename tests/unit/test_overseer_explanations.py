"""Post-fill explanations: only the fill that opens a position is explained, once, in its thread."""

from __future__ import annotations

import asyncio

import pytest
import redis

from quanticity import keys
from quanticity.clock import SimulatedClock
from quanticity.execution.store import ExecutionStore
from quanticity.messages import (
    Direction,
    Fill,
    OptionContract,
    PositionEventKind,
    Right,
    Side,
    Signal,
    decode,
    encode,
)
from quanticity.overseer.budget import Budget, MemoryBudgetStore
from quanticity.overseer.config import OverseerConfig
from quanticity.overseer.counters import Counters
from quanticity.overseer.explanations import explain_opening_fill, opens_position, signal_of
from quanticity.overseer.model import ModelGateway, build_client
from quanticity.overseer.narratives import Narrator
from quanticity.risk.gate import order_ref_for

pytestmark = pytest.mark.unit

T0 = 1_750_000_000 * 1_000_000_000
SPY = OptionContract("SPY", "2025-07-18", 450.0, Right.CALL)


def _signal(signal_id: str) -> Signal:
    return Signal(
        ts_event=T0,
        ts_init=T0,
        signal_id=signal_id,
        strategy="zero_dte_gamma",
        symbol="SPY",
        direction=Direction.BULLISH,
        contract=SPY,
        confidence=81,
        reference_bid=2.0,
        reference_ask=2.1,
        reason="negative gamma below the flip at 449",
        inputs={},
        origin_ts_init=T0,
    )


def _fill(exec_id: str, order_ref: str, side: Side = Side.BUY, quantity: int = 4) -> Fill:
    return Fill(
        ts_event=T0,
        ts_init=T0,
        exec_id=exec_id,
        order_ref=order_ref,
        contract=SPY,
        side=side,
        quantity=quantity,
        price=2.05,
        commission=2.6,
        strategy="zero_dte_gamma",
    )


def _narrator() -> Narrator:
    """No API key: the template writes (the model path is covered in test_overseer_service)."""
    config = OverseerConfig()
    counters = Counters()
    budget = Budget(config.model, MemoryBudgetStore(), SimulatedClock(T0))
    return Narrator(config, ModelGateway(config.model, build_client(config.model, {}), budget, counters), counters)


def test_only_the_opening_buy_is_explained(redis_client: redis.Redis) -> None:
    """The store marks the fill that opens a position when it books it; adds and exits are not marked."""
    store = ExecutionStore(redis_client)
    for fill in (_fill("E1", "Qx-c1"), _fill("E2", "Qx-c2"), _fill("X1", "Qy", Side.SELL, 8), _fill("E3", "Qz")):
        assert store.book_fill(fill)
    marks = [
        (f["fill"].split('"exec_id":"')[1][:2], opens_position(f)) for _, f in redis_client.xrange(keys.FILLS_STREAM)
    ]
    assert marks == [("E1", True), ("E2", False), ("X1", False), ("E3", True)]  # E3 re-opens after the close
    assert not opens_position({"fill": "{}"})  # an entry written before the mark existed


def test_the_explanation_names_the_signal_and_is_announced_once_per_fill(redis_client: redis.Redis) -> None:
    signal = _signal("zero_dte_gamma:SPY:1")
    redis_client.xadd(keys.SIGNALS_STREAM, {"signal": encode(_signal("other")).decode()})
    redis_client.xadd(keys.SIGNALS_STREAM, {"signal": encode(signal).decode()})
    redis_client.xadd(keys.SIGNALS_STREAM, {"signal": "{garbage"})  # a bad record is passed over
    parent = order_ref_for(signal.signal_id)
    fill = _fill("E1", f"{parent}-c1")
    assert signal_of(redis_client, fill) == signal
    narrator = _narrator()
    opened = {"fill": encode(fill).decode(), "opened": "1"}
    event = asyncio.run(explain_opening_fill(redis_client, narrator, fill, opened, T0 + 5))
    assert event is not None and event.kind is PositionEventKind.EXPLANATION
    assert (event.event_id, event.contract_key, event.source) == ("why:E1", SPY.key, "template")
    assert "negative gamma below the flip at 449" in event.text and "$820.00" in event.text
    (entry,) = redis_client.xrange(keys.POSITION_EVENTS_STREAM)
    assert decode(entry[1]["event"], type(event)) == event
    # an add is not explained; nothing more is announced
    add = _fill("E2", f"{parent}-c2")
    added = {"fill": encode(add).decode(), "opened": "0"}
    assert asyncio.run(explain_opening_fill(redis_client, narrator, add, added, T0)) is None
    assert redis_client.xlen(keys.POSITION_EVENTS_STREAM) == 1
