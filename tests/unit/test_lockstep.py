"""The shared step order (:mod:`quanticity.lockstep`) and the risk desk both lock-step drivers call."""

from __future__ import annotations

from datetime import datetime

import pytest
import redis

from quanticity import keys
from quanticity.calendar import ET, NyseCalendar
from quanticity.config.models import RiskSection
from quanticity.execution.pnl import commission
from quanticity.execution.store import ExecutionStore
from quanticity.lockstep import (
    AltDataCursor,
    TickSchedule,
    drain_stream,
    sorted_exits,
    step_quotes,
    tick_contracts,
    vol_close_by_symbol,
)
from quanticity.messages import (
    AltDataEvent,
    AltDataKind,
    Direction,
    Fill,
    MarketBatch,
    OptionContract,
    OrderIntent,
    Quote,
    Right,
    Side,
    Signal,
    encode,
)
from quanticity.risk.account import AccountMonitor
from quanticity.risk.desk import RiskDesk
from quanticity.risk.gate import MemoryRiskStore, RiskGate

pytestmark = pytest.mark.unit

NS = 1_000_000_000
SPY_C = OptionContract("SPY", "2026-12-04", 600.0, Right.CALL)
QQQ_C = OptionContract("QQQ", "2026-12-04", 500.0, Right.CALL)


def at(hhmm: str) -> int:
    return int(datetime.fromisoformat(f"2026-11-20T{hhmm}").replace(tzinfo=ET).timestamp() * NS)


def alt(kind: AltDataKind, symbol: str, ts: int) -> AltDataEvent:
    return AltDataEvent(ts_event=ts, ts_init=ts, kind=kind, symbol=symbol, direction=1)


def quote(symbol: str, ts: int, mid: float) -> Quote:
    return Quote(ts_event=ts, ts_init=ts, symbol=symbol, bid=mid - 0.01, ask=mid + 0.01, bid_size=1, ask_size=1)


def signal(sid: str, contract: OptionContract, now: int, side: Side = Side.BUY, quantity: int = 0) -> Signal:
    return Signal(
        ts_event=now,
        ts_init=now,
        signal_id=sid,
        strategy="test",
        symbol=contract.underlying,
        direction=Direction.BULLISH,
        contract=contract,
        confidence=80,
        reference_bid=2.00,
        reference_ask=2.10,
        reason="test",
        inputs={"computed_at": float(now)},
        origin_ts_init=now,
        side=side,
        quantity=quantity,
    )


def fill(exec_id: str, contract: OptionContract, side: Side, qty: int, price: float, ts: int) -> Fill:
    return Fill(
        ts_event=ts,
        ts_init=ts,
        exec_id=exec_id,
        order_ref=f"ref-{exec_id}",
        contract=contract,
        side=side,
        quantity=qty,
        price=price,
        commission=commission(qty),
        strategy="test",
    )


# --- the step order's pieces --------------------------------------------------------------------
def test_alt_data_cursor_hands_out_each_event_once_in_time() -> None:
    t0 = at("10:00")
    events = [
        alt(AltDataKind.NEWS, "SPY", t0 - NS),
        alt(AltDataKind.VOL_CLOSE, "QQQ", t0),
        alt(AltDataKind.NEWS, "SPY", t0 + NS),
    ]
    cursor = AltDataCursor(events)
    assert cursor.due(t0 - 2 * NS) == []
    assert cursor.due(t0) == events[:2]
    assert cursor.due(t0) == []  # never twice
    assert cursor.due(t0 + 5 * NS) == events[2:]
    assert vol_close_by_symbol(events) == {"QQQ": [events[1]]}


def test_tick_schedule_is_due_every_interval_of_simulated_time() -> None:
    ticks = TickSchedule(5, start_ns=0)
    due = []
    for step in range(1, 13):
        if ticks.due(step * NS):
            ticks.ticked(step * NS)
            due.append(step)
    assert due == [5, 10]


def test_tick_contracts_step_quotes_and_exits_are_in_key_order() -> None:
    assert tick_contracts([SPY_C, QQQ_C], [SPY_C]) == [QQQ_C, SPY_C]
    t = at("10:00")
    exits = [signal("b", SPY_C, t, Side.SELL, 1), signal("a", QQQ_C, t, Side.SELL, 1)]
    assert [s.signal_id for s in sorted_exits(exits)] == ["a", "b"]
    batches = {
        "SPY": MarketBatch(ts_event=t, ts_init=t, symbol="SPY", quotes=(quote("SPY", t, 600), quote("SPY", t, 601))),
        "AAPL": MarketBatch(ts_event=t, ts_init=t, symbol="AAPL"),
    }
    assert step_quotes(batches) == {"SPY": quote("SPY", t, 601)}


def test_drain_stream_stops_at_the_end_it_saw_and_resumes_after_its_cursor(redis_client: redis.Redis) -> None:
    for n in range(5):
        redis_client.xadd("s", {"n": str(n)})
    seen: list[str] = []

    def handle(entry_id: str, fields: dict[str, str]) -> None:
        seen.append(fields["n"])
        if fields["n"] == "1":
            redis_client.xadd("s", {"n": "late"})  # added while draining: waits for the next drain

    assert drain_stream(redis_client, "s", "cursor", handle, chunk=2) == 5
    assert seen == ["0", "1", "2", "3", "4"]
    assert drain_stream(redis_client, "s", "cursor", handle) == 1
    assert seen[-1] == "late"
    assert drain_stream(redis_client, "s", "cursor", handle) == 0
    assert drain_stream(redis_client, "empty", "cursor2", handle) == 0


# --- the risk desk --------------------------------------------------------------------------------
def desk(client: redis.Redis, **risk: object) -> RiskDesk:
    config = RiskSection(**risk)  # type: ignore[arg-type]
    account = AccountMonitor(config)
    gate = RiskGate(config, MemoryRiskStore(), calendar=NyseCalendar(), correlation=account)
    return RiskDesk(gate, account, ExecutionStore(client))


def test_desk_books_fills_and_judges_the_stream_in_order_delivering_before_the_next(
    redis_client: redis.Redis,
) -> None:
    risk = desk(redis_client)
    store = ExecutionStore(redis_client)
    t = at("10:00")
    store.book_fill(fill("e1", SPY_C, Side.BUY, 2, 2.0, t))
    assert risk.book_fills(redis_client) == 1
    assert risk.account.figures(t).realized < 0  # the commission of the entry
    exposure = risk.exposure(t)
    assert exposure.held_underlyings == {Direction.BULLISH: frozenset({"SPY"})}
    assert exposure.position_qty == {SPY_C.key: 2} and exposure.day_pnl is not None

    redis_client.xadd(keys.SIGNALS_STREAM, {"signal": encode(signal("x1", SPY_C, t, Side.SELL, 1)).decode()})
    redis_client.xadd(keys.SIGNALS_STREAM, {"signal": "not a signal"})
    redis_client.xadd(keys.SIGNALS_STREAM, {"signal": encode(signal("n1", QQQ_C, t)).decode()})
    order: list[str] = []

    def deliver(intent: OrderIntent) -> None:
        order.append(f"deliver {intent.contract.underlying}")

    judged = risk.drain_signals(redis_client, t, deliver, lambda j: order.append(f"judge {j.signal.signal_id}"))
    assert judged == 3 and risk.malformed == 1
    assert order == ["judge x1", "deliver SPY", "judge n1", "deliver QQQ"]
    assert redis_client.get(keys.RISK_CURSOR) == redis_client.xrevrange(keys.SIGNALS_STREAM, count=1)[0][0]


def test_desk_monitor_samples_quotes_for_the_correlation_rule_and_marks_the_book(redis_client: redis.Redis) -> None:
    risk = desk(redis_client, correlation_bar_s=60, correlation_window=10, correlation_min_returns=5)
    t0 = at("10:00")
    for i in range(8):
        t = t0 + i * 60 * NS
        mid = 100.0 * (1 + 0.01 * ((-1) ** i) * (i + 1))
        assert risk.monitor(t, {"SPY": quote("SPY", t, mid), "QQQ": quote("QQQ", t, mid / 2)}) == []
    assert risk.gate.correlation is risk.account
    assert risk.account.correlation("SPY", "QQQ") == pytest.approx(1.0)
    store = ExecutionStore(redis_client)
    store.book_fill(fill("e1", SPY_C, Side.BUY, 1, 2.0, t0))
    assert risk.mark_book(t0) is True and risk.mark_book(t0) is False  # only when the ledger changed


def test_lockstep_is_off_by_default_and_selected_by_the_cli_flag() -> None:
    from datetime import date

    from quanticity.clock import SimulatedClock
    from quanticity.config import load_config
    from quanticity.session import plan_session
    from supervisors.cli import _parser

    section = load_config().system.session.model_copy(update={"date": date(2026, 11, 20)})
    assert plan_session(section, seed=1, duration_s=60, wall=SimulatedClock(0)).lockstep is False
    assert plan_session(section, seed=1, duration_s=60, wall=SimulatedClock(0), lockstep=True).lockstep is True
    assert _parser().parse_args(["run", "--lockstep"]).lockstep is True
    assert _parser().parse_args(["run"]).lockstep is False
