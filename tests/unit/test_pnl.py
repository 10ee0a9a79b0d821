"""P&L book: realized/unrealized per position, strategy and ET trading day, net of commissions."""

from __future__ import annotations

import json
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from quanticity.execution.pnl import PnLBook, commission, trading_day
from quanticity.messages import Fill, OptionContract, Right, Side

pytestmark = pytest.mark.unit

ET = ZoneInfo("America/New_York")
SPY = OptionContract("SPY", "2026-11-20", 600.0, Right.CALL)
QQQ = OptionContract("QQQ", "2026-11-20", 500.0, Right.PUT)


def at(day: int, hour: int, minute: int = 0, month: int = 3) -> int:
    return int(datetime(2026, month, day, hour, minute, tzinfo=ET).timestamp()) * 1_000_000_000


def fill(
    exec_id: str,
    side: Side,
    qty: int,
    price: float,
    ts: int,
    contract: OptionContract = SPY,
    strategy: str = "momentum",
    fee: float | None = None,
) -> Fill:
    return Fill(
        ts_event=ts,
        ts_init=ts,
        exec_id=exec_id,
        order_ref=f"ref-{exec_id}",
        contract=contract,
        side=side,
        quantity=qty,
        price=price,
        commission=commission(qty) if fee is None else fee,
        strategy=strategy,
    )


def test_commission_is_per_contract_with_a_minimum_per_order() -> None:
    assert commission(1) == 1.00
    assert commission(4) == 2.60
    assert commission(100) == 65.00
    assert commission(0) == 0.0
    assert commission(10, per_contract=0.5, minimum=2.0) == 5.0
    assert commission(1, per_contract=0.5, minimum=2.0) == 2.0
    with pytest.raises(ValueError, match="negative"):
        commission(-1)


def test_round_trip_realized_net_of_commissions_and_duplicates_ignored() -> None:
    book = PnLBook()
    buy = fill("b1", Side.BUY, 4, 2.10, at(10, 10))
    assert book.on_fill(buy)
    assert not book.on_fill(buy)  # replayed execution
    position = book.position(SPY.key)
    assert position is not None and position.quantity == 4 and position.realized == pytest.approx(-2.60)
    assert book.on_fills([buy, fill("s1", Side.SELL, 4, 2.60, at(10, 11))]) == 1
    position = book.position(SPY.key)
    assert position is not None and position.quantity == 0 and position.unrealized == 0
    assert position.realized == pytest.approx(200 - 5.20)  # (2.60 − 2.10) × 4 × 100 − 2.60 − 2.60
    assert position.commissions == pytest.approx(5.20)
    assert book.total().realized == pytest.approx(194.80) and book.total().commissions == pytest.approx(5.20)
    assert book.positions(open_only=True) == {}


def test_partial_sells_and_unrealized_from_marks() -> None:
    book = PnLBook()
    book.on_fill(fill("b1", Side.BUY, 6, 2.00, at(10, 10)))
    book.on_fill(fill("b2", Side.BUY, 4, 2.50, at(10, 10, 5)))  # average 2.20
    book.on_fill(fill("s1", Side.SELL, 5, 3.00, at(10, 11)))
    position = book.position(SPY.key)
    assert position is not None and position.avg_price == pytest.approx(2.20) and position.quantity == 5
    assert position.realized == pytest.approx(-3.90 - 2.60 + 0.80 * 5 * 100 - 3.25)
    assert position.unrealized == pytest.approx((3.00 - 2.20) * 5 * 100)  # marked at the last fill
    book.mark(SPY.key, 1.90, at(10, 12))
    book.mark(SPY.key, float("nan"), at(10, 12, 1))  # ignored
    book.mark("UNKNOWN", 5.0, at(10, 12, 1))  # ignored
    marked = book.position(SPY.key)
    assert marked is not None and marked.unrealized == pytest.approx((1.90 - 2.20) * 500)


def test_sell_more_than_held_raises_and_books_nothing() -> None:
    book = PnLBook()
    book.on_fill(fill("b1", Side.BUY, 2, 2.00, at(10, 10)))
    with pytest.raises(ValueError, match="hold 2"):
        book.on_fill(fill("s1", Side.SELL, 3, 2.00, at(10, 11)))
    with pytest.raises(ValueError, match="hold 0"):
        book.on_fill(fill("s2", Side.SELL, 1, 2.00, at(10, 11), contract=QQQ))
    held = book.position(SPY.key)
    assert held is not None and held.quantity == 2
    assert book.on_fill(fill("s1", Side.SELL, 2, 2.00, at(10, 11)))  # the id was not burnt by the failure


def test_per_strategy_attribution_follows_the_position() -> None:
    book = PnLBook()
    book.on_fill(fill("b1", Side.BUY, 2, 1.00, at(10, 10), strategy="momentum"))
    book.on_fill(fill("b2", Side.BUY, 1, 4.00, at(10, 10), contract=QQQ, strategy="flow"))
    # an emergency flatten carries another strategy name: still booked on the owner
    book.on_fill(fill("s1", Side.SELL, 2, 1.50, at(10, 11), strategy="emergency"))
    book.marks({QQQ.key: 3.50}, at(10, 12))
    by = book.by_strategy()
    assert set(by) == {"momentum", "flow"}
    assert by["momentum"].realized == pytest.approx(100 - 2.60) and by["momentum"].unrealized == 0
    assert by["flow"].realized == pytest.approx(-1.0) and by["flow"].unrealized == pytest.approx(-50.0)
    assert by["flow"].total == pytest.approx(-51.0) and by["momentum"].commissions == pytest.approx(2.60)
    total = book.total()
    assert total.realized == pytest.approx(96.4) and total.unrealized == pytest.approx(-50.0)


def test_per_day_in_eastern_time_with_a_fill_after_midnight_landing_on_the_next_day() -> None:
    book = PnLBook()
    book.on_fill(fill("b1", Side.BUY, 2, 2.00, at(10, 15)))
    book.mark(SPY.key, 2.50, at(10, 16))  # day 1 closes 100 up, unrealized
    book.on_fill(fill("s1", Side.SELL, 1, 2.60, at(10, 23, 59)))
    book.on_fill(fill("s2", Side.SELL, 1, 2.70, at(11, 0, 5)))  # 00:05 ET (04:05 UTC): the next ET day
    assert trading_day(at(11, 0, 5)) == date(2026, 3, 11)
    assert trading_day(at(10, 23, 59)) == date(2026, 3, 10)
    days = book.by_day()
    assert list(days) == [date(2026, 3, 10), date(2026, 3, 11)]
    d1, d2 = days[date(2026, 3, 10)], days[date(2026, 3, 11)]
    assert d1.fills == 2 and d2.fills == 1
    assert d1.realized == pytest.approx(-1.30 + 60 - 1.0)
    assert d1.unrealized == pytest.approx((2.60 - 2.00) * 100)  # the last event of the day marked it at 2.60
    assert d2.realized == pytest.approx(70 - 1.0) and d2.unrealized == 0
    assert d2.mtm == pytest.approx(69 - 60)  # the 2.60 → 2.70 move of the last contract, less the fee
    assert d1.mtm + d2.mtm == pytest.approx(book.total().realized)
    assert d1.commissions == pytest.approx(2.30) and d1.by_strategy == {"momentum": pytest.approx(57.7)}
    assert book.day(date(2026, 3, 12)) is None


def test_day_boundary_follows_daylight_saving_time() -> None:
    def utc(month: int, day: int, hour: int, minute: int) -> int:
        return int(datetime(2026, month, day, hour, minute, tzinfo=ZoneInfo("UTC")).timestamp()) * 10**9

    assert trading_day(utc(1, 15, 4, 30)) == date(2026, 1, 14)  # 23:30 EST (UTC−5)
    assert trading_day(utc(7, 15, 4, 30)) == date(2026, 7, 15)  # 00:30 EDT (UTC−4)


def test_reopened_contract_keeps_its_history() -> None:
    book = PnLBook()
    book.on_fill(fill("b1", Side.BUY, 1, 1.00, at(10, 10)))
    book.on_fill(fill("s1", Side.SELL, 1, 1.20, at(10, 11)))
    book.on_fill(fill("b2", Side.BUY, 1, 2.00, at(10, 12)))
    position = book.position(SPY.key)
    assert position is not None and position.avg_price == 2.00 and position.quantity == 1
    assert position.realized == pytest.approx(20 - 3.0)


def test_state_restore_round_trips_through_json() -> None:
    book = PnLBook()
    book.on_fill(fill("b1", Side.BUY, 3, 2.00, at(10, 10)))
    book.on_fill(fill("s1", Side.SELL, 1, 2.40, at(10, 11)))
    book.mark(SPY.key, 2.30, at(10, 12))
    restored = PnLBook.restore(json.loads(json.dumps(book.state())))
    assert restored.state() == book.state()
    assert restored.by_day() == book.by_day() and restored.positions() == book.positions()
    assert not restored.on_fill(fill("s1", Side.SELL, 1, 2.40, at(10, 11)))
