"""The gate's account view: returns window (correlation), equity curve (drawdown), and the P&L
book fed from ``trades:fills`` and marks, persisted under ``pnl:*`` and restart-safe."""

from __future__ import annotations

import json
from datetime import date, datetime

import numpy as np
import pytest
import redis

from quanticity import keys
from quanticity.calendar import ET
from quanticity.config.models import RiskSection
from quanticity.execution.pnl import commission
from quanticity.execution.pnl_store import RedisPnLStore
from quanticity.execution.store import ExecutionStore
from quanticity.messages import Fill, OptionContract, Quote, Right, Side, TradingState, encode
from quanticity.risk.account import AccountMonitor
from quanticity.risk.correlation import ReturnCorrelation
from quanticity.risk.drawdown import EquityCurve
from quanticity.risk.gate import Exposure, MemoryRiskStore, RiskGate
from quanticity.risk.store import RedisRiskStore

pytestmark = pytest.mark.unit

NS = 1_000_000_000
SPY_C = OptionContract("SPY", "2026-03-10", 600.0, Right.CALL)
QQQ_P = OptionContract("QQQ", "2026-03-10", 500.0, Right.PUT)


def at(day: int, hour: int, minute: int = 0) -> int:
    return int(datetime(2026, 3, day, hour, minute, tzinfo=ET).timestamp()) * NS


# --- returns window ---------------------------------------------------------------------------
def test_correlation_matches_numpy_on_common_bars_and_rolls() -> None:
    rng = np.random.default_rng(3)
    window = ReturnCorrelation(bar_s=60, window=10, min_returns=5)
    a = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 20)))
    b = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, 20)))
    t0 = at(10, 10)
    for i in range(20):
        window.observe("A", t0 + i * 60 * NS + NS, float(a[i] * 0.99))  # overwritten by the bar's later price
        window.observe("A", t0 + i * 60 * NS + 59 * NS, float(a[i]))
        window.observe("B", t0 + i * 60 * NS + 30 * NS, float(b[i]))
    expected = np.corrcoef(np.diff(np.log(a))[-10:], np.diff(np.log(b))[-10:])[0, 1]
    assert window.correlation("A", "B") == pytest.approx(expected)
    assert window.correlation("B", "A") == pytest.approx(expected)
    assert len(window.common_returns("A", "B")[0]) == 10  # only the last 10 returns are kept


def test_thin_or_flat_history_is_unknown() -> None:
    window = ReturnCorrelation(bar_s=60, window=10, min_returns=5)
    t0 = at(10, 10)
    for i in range(5):  # 5 bars = 4 returns: one short
        window.observe("A", t0 + i * 60 * NS, 100.0 + i)
        window.observe("B", t0 + i * 60 * NS, 50.0 + (i % 2))
    assert window.correlation("A", "B") is None
    window.observe("A", t0 + 5 * 60 * NS, 106.0)
    window.observe("B", t0 + 5 * 60 * NS, 51.0)
    assert window.correlation("A", "B") is not None  # 5 returns: enough
    for i in range(6):
        window.observe("FLAT", t0 + i * 60 * NS, 10.0)
    assert window.correlation("A", "FLAT") is None  # zero variance: undefined, not 0
    assert window.correlation("A", "NEVER") is None


def test_bars_only_pair_on_common_instants() -> None:
    window = ReturnCorrelation(bar_s=60, window=30, min_returns=2)
    t0 = at(10, 10)
    for i in range(6):
        window.observe("A", t0 + i * 60 * NS, 100.0 * (1.01**i))
        if i % 2 == 0:  # B only has bars 0, 2, 4
            window.observe("B", t0 + i * 60 * NS, 50.0 * (1.02**i))
    ra, rb = window.common_returns("A", "B")
    assert len(ra) == 2 and ra == pytest.approx([2 * np.log(1.01)] * 2) and rb == pytest.approx([2 * np.log(1.02)] * 2)


def test_bad_and_late_prices_are_refused_and_counted() -> None:
    window = ReturnCorrelation(bar_s=60, window=10, min_returns=5)
    t0 = at(10, 10)
    assert window.observe("A", t0 + 120 * NS, 100.0)
    assert not window.observe("A", t0, 99.0)  # an older, closed bar
    assert not window.observe("A", t0 + 130 * NS, float("nan"))
    assert not window.observe("A", t0 + 130 * NS, -1.0)
    assert window.rejected == 3
    with pytest.raises(ValueError, match="min_returns"):
        ReturnCorrelation(bar_s=60, window=5, min_returns=6)
    with pytest.raises(ValueError, match="bar_s"):
        ReturnCorrelation(bar_s=0, window=5, min_returns=2)


def test_returns_window_round_trips_through_json() -> None:
    window = ReturnCorrelation(bar_s=60, window=10, min_returns=3)
    t0 = at(10, 10)
    for i in range(8):
        window.observe("A", t0 + i * 60 * NS, 100.0 + i * i)
        window.observe("B", t0 + i * 60 * NS, 80.0 - i)
    restored = ReturnCorrelation(bar_s=60, window=10, min_returns=3)
    restored.restore(json.loads(json.dumps({**window.state(), "BAD": [["x", 1.0], [1]]})))
    assert restored.correlation("A", "B") == pytest.approx(window.correlation("A", "B"))
    assert restored.rejected == 2 and restored.symbols() == ["A", "B"]


# --- equity curve -------------------------------------------------------------------------------
def test_equity_peak_over_a_rolling_window_of_days() -> None:
    curve = EquityCurve(window_days=3)
    curve.observe(at(2, 12), 110_000)  # 2 March: the old peak
    curve.observe(at(3, 12), 104_000)
    curve.observe(at(4, 12), 101_000)
    assert curve.peak(date(2026, 3, 4)) == 110_000
    assert curve.drawdown_pct(date(2026, 3, 4), 99_000) == pytest.approx(10.0)
    curve.observe(at(5, 12), 100_000)  # 2 March leaves the 3-day window
    assert curve.peak(date(2026, 3, 5)) == 104_000
    assert curve.drawdown_pct(date(2026, 3, 5), 105_000) == 0.0
    assert not curve.observe(at(5, 13), float("inf")) and curve.rejected == 1
    day = curve.day(date(2026, 3, 5))
    assert day is not None and (day.high, day.low, day.last) == (100_000, 100_000, 100_000)
    restored = EquityCurve(window_days=3)
    restored.restore(json.loads(json.dumps({**curve.state(), "2026-03-06": {"high": "x"}})))
    assert restored.state() == curve.state() and restored.rejected == 1


# --- P&L book fed from the fills stream -----------------------------------------------------------
def fill(exec_id: str, side: Side, qty: int, price: float, ts: int, contract: OptionContract, strategy: str) -> Fill:
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
        strategy=strategy,
    )


DAY1 = [
    fill("b1", Side.BUY, 4, 2.10, at(10, 10), SPY_C, "zero_dte_gamma"),  # fee 2.60
    fill("b2", Side.BUY, 2, 3.00, at(10, 10, 5), QQQ_P, "moc_imbalance"),  # fee 1.30
    fill("s1", Side.SELL, 1, 3.15, at(10, 11), SPY_C, "zero_dte_gamma"),  # +50 % rung: +105 − 1.00
    fill("s2", Side.SELL, 2, 4.20, at(10, 12), SPY_C, "zero_dte_gamma"),  # +100 % rung: +420 − 1.30
]
DAY2 = [
    fill("s3", Side.SELL, 1, 2.00, at(11, 10), SPY_C, "zero_dte_gamma"),  # −10 − 1.00
    fill("s4", Side.SELL, 2, 2.40, at(11, 10, 1), QQQ_P, "emergency"),  # −120 − 1.30, booked on moc
]


def follow(account: AccountMonitor, client: redis.Redis, cursor: str) -> list[str]:
    """What the risk actor's StreamFollower does: hand every entry after ``cursor`` to the book."""
    return [
        account.on_fill_record(entry_id, fields) for entry_id, fields in client.xrange(keys.FILLS_STREAM, f"({cursor}")
    ]


def monitor(client: redis.Redis, **overrides: object) -> AccountMonitor:
    config = RiskSection(**overrides)  # type: ignore[arg-type]
    pnl_store = RedisPnLStore(client)
    risk_store = RedisRiskStore(client)
    return AccountMonitor(config, pnl_store.load(), pnl_store, risk_store, risk_store.load_correlation())


def test_scripted_fills_give_pnl_per_position_strategy_and_day(redis_client: redis.Redis) -> None:
    router = ExecutionStore(redis_client)  # the real producer of trades:fills
    account = monitor(redis_client)
    for f in DAY1:
        assert router.book_fill(f)
    assert follow(account, redis_client, "0-0") == ["booked"] * 4
    account.on_marks({SPY_C.key: 3.00, QQQ_P.key: 2.50}, at(10, 15, 59))
    spy = account.book.position(SPY_C.key)
    assert spy is not None and spy.quantity == 1 and spy.realized == pytest.approx(-2.60 + 104 + 418.70)
    assert spy.unrealized == pytest.approx(90.0) and spy.commissions == pytest.approx(4.90)
    figures = account.figures(at(10, 16))
    assert figures.realized == pytest.approx(518.80) and figures.unrealized == pytest.approx(-10.0)
    assert figures.day_pnl == pytest.approx(508.80) and figures.equity == pytest.approx(100_508.80)

    for f in DAY2:
        assert router.book_fill(f)
    assert follow(account, redis_client, account.cursor) == ["booked"] * 2
    by_strategy = account.book.by_strategy()
    assert by_strategy["zero_dte_gamma"].realized == pytest.approx(509.10)
    assert by_strategy["moc_imbalance"].realized == pytest.approx(-122.60) and "emergency" not in by_strategy
    day2 = account.book.day(date(2026, 3, 11))
    assert day2 is not None and day2.realized == pytest.approx(-132.30) and day2.mtm == pytest.approx(-122.30)
    assert account.figures(at(11, 12)).day_pnl == pytest.approx(-122.30)
    total = account.book.total()
    assert total.realized == pytest.approx(386.50) and total.commissions == pytest.approx(8.50)
    assert total.realized == pytest.approx(router.realized_pnl()["total"])  # agrees with the router's ledger

    # the pnl:* views a reader (reports, status) sees
    pnl = RedisPnLStore(redis_client)
    assert pnl.positions()[SPY_C.key]["realized"] == pytest.approx(509.10)
    assert pnl.strategies()["moc_imbalance"]["commissions"] == pytest.approx(2.60)
    days = pnl.days()
    assert days["2026-03-10"]["mtm"] == pytest.approx(508.80) and days["2026-03-11"]["fills"] == 2
    # the day's equity high: after s2, the last SPY contract marked at its 4.20 fill
    assert json.loads(redis_client.hget(keys.PNL_EQUITY, "2026-03-10"))["high"] == pytest.approx(100_728.80)
    assert pnl.cursor() == account.cursor


def test_replayed_fills_are_not_counted_twice_after_a_restart(redis_client: redis.Redis) -> None:
    router = ExecutionStore(redis_client)
    first = monitor(redis_client)
    for f in DAY1[:3]:
        router.book_fill(f)
    follow(first, redis_client, "0-0")
    before = first.book.state()
    # restart: the worst case replays the whole stream from the beginning
    second = monitor(redis_client)
    assert second.book.state() == before and second.cursor == first.cursor
    assert follow(second, redis_client, "0-0") == ["duplicate"] * 3
    assert second.book.total().realized == pytest.approx(-2.60 - 1.30 + 104)
    router.book_fill(DAY1[3])  # a new fill after the restart is booked once
    assert follow(second, redis_client, second.cursor) == ["booked"]
    assert monitor(redis_client).book.total().realized == pytest.approx(518.80)
    assert second.fills_duplicate == 3 and second.fills_booked == 1


def test_unreadable_snapshot_is_rebuilt_from_the_stream(redis_client: redis.Redis) -> None:
    router = ExecutionStore(redis_client)
    account = monitor(redis_client)
    for f in DAY1:
        router.book_fill(f)
    follow(account, redis_client, "0-0")
    redis_client.set(keys.PNL_BOOK, "{not json")
    snapshot = RedisPnLStore(redis_client).load()
    assert snapshot.cursor == "0-0" and snapshot.problems and "pnl:book" in snapshot.problems[0]
    rebuilt = AccountMonitor(RiskSection(), snapshot)
    follow(rebuilt, redis_client, snapshot.cursor)
    assert rebuilt.book.total().realized == pytest.approx(518.80)


def test_bad_fill_records_are_rejected_and_counted_without_booking(redis_client: redis.Redis) -> None:
    account = monitor(redis_client)
    assert account.on_fill_record("1-0", {"nofill": "x"}).startswith("rejected")
    assert account.on_fill_record("2-0", {"fill": "{broken"}).startswith("rejected")
    sell = fill("x1", Side.SELL, 1, 2.0, at(10, 10), SPY_C, "zero_dte_gamma")
    assert "hold 0" in account.on_fill_record("3-0", {"fill": encode(sell).decode()})
    assert account.fills_rejected == 3 and account.book.positions() == {}
    assert redis_client.get(keys.PNL_BOOK) is None  # nothing half-written


def test_mark_only_changes_persist_on_their_cadence(redis_client: redis.Redis) -> None:
    account = monitor(redis_client, pnl_mark_persist_s=60)
    account.on_fill_record("1-0", {"fill": encode(DAY1[0]).decode()})
    account.on_marks({SPY_C.key: 2.50}, at(10, 10, 0) + 30 * NS)  # 30 s after the fill's persist: not yet
    assert RedisPnLStore(redis_client).positions()[SPY_C.key]["unrealized"] == 0.0
    account.on_marks({SPY_C.key: 2.60}, at(10, 10, 1) + 1 * NS)  # 61 s: persisted
    assert RedisPnLStore(redis_client).positions()[SPY_C.key]["unrealized"] == pytest.approx(200.0)
    account.on_marks({SPY_C.key: 2.70}, at(10, 10, 1) + 2 * NS)
    account.flush(at(10, 10, 1) + 3 * NS)  # shutdown writes what is pending
    assert RedisPnLStore(redis_client).positions()[SPY_C.key]["unrealized"] == pytest.approx(240.0)


def test_quotes_feed_the_correlation_window_and_survive_a_restart(redis_client: redis.Redis) -> None:
    account = monitor(redis_client, correlation_window=5, correlation_min_returns=3)
    t0 = at(10, 10)
    for i in range(6):
        for symbol, mid in (("SPY", 600 + i + (i % 2)), ("QQQ", 500 + i + (i % 2) * 0.9)):
            ts = t0 + i * 60 * NS
            quote = Quote(
                ts_event=ts, ts_init=ts, symbol=symbol, bid=mid - 0.01, ask=mid + 0.01, bid_size=1, ask_size=1
            )
            assert account.on_quote(symbol, encode(quote))
    assert not account.on_quote("SPY", b"garbage") and account.quotes_rejected == 1
    crossed = Quote(ts_event=t0, ts_init=t0, symbol="SPY", bid=2.0, ask=1.0, bid_size=1, ask_size=1)
    assert not account.on_quote("SPY", encode(crossed))
    rho = account.correlation("SPY", "QQQ")
    assert rho is not None and rho > 0.99
    account.persist(t0 + 6 * 60 * NS)
    restarted = monitor(redis_client, correlation_window=5, correlation_min_returns=3)
    assert restarted.correlation("SPY", "QQQ") == pytest.approx(rho)


def test_book_drives_the_daily_loss_and_drawdown_breakers(redis_client: redis.Redis) -> None:
    """Day 1 a winner makes the equity peak; day 2's loss is judged against today and that peak."""
    config = RiskSection(account_equity=100_000, max_drawdown_pct=10.0, daily_loss_halt_pct=12, daily_loss_warn_pct=11)
    pnl_store = RedisPnLStore(redis_client)
    account = AccountMonitor(config, pnl_store.load(), pnl_store)
    big = OptionContract("SPY", "2026-03-20", 600.0, Right.CALL)
    account.on_fill_record("1-0", {"fill": encode(fill("b", Side.BUY, 100, 10.0, at(10, 10), big, "x")).decode()})
    account.on_marks({big.key: 11.0}, at(10, 15))  # +10,000 open: peak 109,935
    gate = RiskGate(config, MemoryRiskStore())

    def exposure(now: int) -> Exposure:
        f = account.figures(now)
        return Exposure(day_pnl=f.day_pnl, equity=f.equity, equity_peak=f.equity_peak)

    account.on_marks({big.key: 10.0}, at(11, 10))  # day 2: −10,000 on the day, 9.09 % below the peak
    assert gate.daily_loss_check(exposure(at(11, 10)), at(11, 10)) is None
    assert gate.drawdown_check(exposure(at(11, 10)), at(11, 10)) is None
    account.on_marks({big.key: 9.0}, at(11, 11))  # 18.2 % below the peak
    figures = account.figures(at(11, 11))
    assert figures.day_pnl == pytest.approx(-20_000) and figures.equity_peak == pytest.approx(109_935)
    assert gate.drawdown_check(exposure(at(11, 11)), at(11, 11)) == "DRAWDOWN"
    assert gate.state is TradingState.REDUCING
    assert gate.daily_loss_check(exposure(at(11, 11)), at(11, 11)) == "HALT"  # 20 % today ≥ 12 %
    assert gate.state is TradingState.HALTED
