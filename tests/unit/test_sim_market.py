"""The seeded synthetic market: determinism, well-formed books and chains, checkpoints, the edge."""

from __future__ import annotations

import datetime as dt
import json
import math

import msgspec
import numpy as np
import pytest

from quanticity.calendar import NyseCalendar
from quanticity.config.loader import DEFAULT_CONFIG_DIR, read_yaml
from quanticity.config.models import MarketFile, UniverseSection
from quanticity.messages import MarketBatch, OptionContract, Right
from quanticity.sim.market import INDEX_PRODUCTS, SyntheticMarket

pytestmark = pytest.mark.unit

STEP_NS = 1_000_000_000
UNIVERSE = UniverseSection().symbols


@pytest.fixture(scope="module")
def market_cfg() -> MarketFile:
    return MarketFile.model_validate(read_yaml(DEFAULT_CONFIG_DIR / "market.yaml"))


@pytest.fixture(scope="module")
def calendar() -> NyseCalendar:
    return NyseCalendar()


@pytest.fixture(scope="module")
def session(calendar: NyseCalendar) -> dt.date:
    """A recent full-day session (inside the calendar's range whenever the tests run)."""
    day = calendar.session_on_or_before(dt.date.today() - dt.timedelta(days=30))
    while calendar.is_half_day(day):
        day = calendar.previous_session(day)
    return day


def _open_ns(calendar: NyseCalendar, day: dt.date) -> int:
    return round(calendar.session_open(day).timestamp()) * STEP_NS


def _make(cfg: MarketFile, calendar: NyseCalendar, day: dt.date, symbols: list[str], seed: int = 7) -> SyntheticMarket:
    return SyntheticMarket(cfg, list(symbols), day, seed, _open_ns(calendar, day), STEP_NS)


def _without_options(cfg: MarketFile) -> MarketFile:
    return cfg.model_copy(update={"chain": cfg.chain.model_copy(update={"refresh_steps": 10**9})})


def _encode(batches: dict[str, MarketBatch]) -> dict[str, bytes]:
    return {symbol: msgspec.json.encode(batch) for symbol, batch in batches.items()}


def _run(market: SyntheticMarket, steps: int) -> list[dict[str, bytes]]:
    return [_encode(market.step(ts_init_ns=0)) for _ in range(steps)]


def _tick_multiple(price: float, tick: float) -> bool:
    return abs(price / tick - round(price / tick)) < 1e-6


# --- determinism ---------------------------------------------------------------------------
def test_same_seed_gives_identical_batches_and_other_seed_differs(
    market_cfg: MarketFile, calendar: NyseCalendar, session: dt.date
) -> None:
    symbols = ["SPY", "AAPL", "HIMS"]
    first = _run(_make(market_cfg, calendar, session, symbols), 200)
    second = _run(_make(market_cfg, calendar, session, symbols), 200)
    other = _run(_make(market_cfg, calendar, session, symbols, seed=8), 200)
    assert first == second
    for symbol in symbols:
        assert [s[symbol] for s in first] != [s[symbol] for s in other]


def test_adding_or_removing_a_symbol_does_not_change_another_path(
    market_cfg: MarketFile, calendar: NyseCalendar, session: dt.date
) -> None:
    alone = _make(market_cfg, calendar, session, ["SPY"])
    crowd = _make(market_cfg, calendar, session, ["AAPL", "SPY", "TSLA"])
    late = _make(market_cfg, calendar, session, ["SPY"])
    spy_alone, spy_crowd, spy_late = [], [], []
    for i in range(300):
        if i == 100:
            late.add_symbol("NVDA")
            crowd.remove_symbol("TSLA")
        spy_alone.append(_encode(alone.step(0))["SPY"])
        spy_crowd.append(_encode(crowd.step(0))["SPY"])
        spy_late.append(_encode(late.step(0))["SPY"])
    assert spy_alone == spy_crowd == spy_late
    assert late.symbols == ["SPY", "NVDA"] and crowd.symbols == ["AAPL", "SPY"]


def test_a_symbol_path_depends_only_on_seed_and_symbol(
    market_cfg: MarketFile, calendar: NyseCalendar, session: dt.date
) -> None:
    fresh = _make(market_cfg, calendar, session, ["NVDA"])
    late = _make(market_cfg, calendar, session, ["SPY"])
    for _ in range(41):
        late.step(0)
    late.add_symbol("NVDA")
    late_batches = [late.step(0)["NVDA"] for _ in range(50)]
    fresh_bids = [fresh.step(0)["NVDA"].quotes[-1].bid for _ in range(50)]
    assert [b.quotes[-1].bid for b in late_batches] == fresh_bids
    # Step 42 is off the refresh cadence, but a newly added symbol gets its chain at once.
    assert len(late_batches[0].options) == len(late.chain("NVDA")) > 0
    assert late_batches[1].options == ()


# --- books, quotes and tapes ---------------------------------------------------------------
def test_books_quotes_and_trades_are_well_formed(
    market_cfg: MarketFile, calendar: NyseCalendar, session: dt.date
) -> None:
    cfg = _without_options(market_cfg)
    market = _make(cfg, calendar, session, UNIVERSE)
    levels = cfg.book.levels
    n_trades = 0
    start = market.now_ns
    for i in range(300):
        for symbol, batch in market.step(ts_init_ns=123).items():
            tick = cfg.underlyings[symbol].tick
            assert batch.symbol == symbol
            assert batch.ts_event == start + (i + 1) * STEP_NS and batch.ts_init == 123
            assert len(batch.quotes) == cfg.book.quotes_per_step and len(batch.books) == 1
            quote, book = batch.quotes[-1], batch.books[0]
            assert 0 < quote.bid < quote.ask
            assert quote.ask - quote.bid == pytest.approx(cfg.book.spread_ticks * tick)
            assert quote.bid_size > 0 and quote.ask_size > 0
            assert len(book.bids) == len(book.asks) == levels
            bid_prices = [p for p, _ in book.bids]
            ask_prices = [p for p, _ in book.asks]
            assert all(a > b for a, b in zip(bid_prices, bid_prices[1:], strict=False))  # best first
            assert all(b > a for a, b in zip(ask_prices, ask_prices[1:], strict=False))
            assert bid_prices[0] < ask_prices[0]
            assert (bid_prices[0], book.bids[0][1]) == (quote.bid, quote.bid_size)
            assert (ask_prices[0], book.asks[0][1]) == (quote.ask, quote.ask_size)
            assert all(_tick_multiple(p, tick) for p in bid_prices + ask_prices)
            assert all(isinstance(s, int) and s > 0 for _, s in book.bids + book.asks)
            for trade in batch.trades:
                assert trade.price in (quote.bid, quote.ask)
                assert isinstance(trade.size, int) and trade.size > 0
            n_trades += len(batch.trades)
            assert bool(batch.options) == (i == 0)  # the chain comes with the first step only
    mean_trades = n_trades / (300 * len(UNIVERSE))
    assert mean_trades == pytest.approx(cfg.book.trades_per_step, rel=0.1)


def test_several_quotes_per_step_are_time_ordered(
    market_cfg: MarketFile, calendar: NyseCalendar, session: dt.date
) -> None:
    cfg = market_cfg.model_copy(update={"book": market_cfg.book.model_copy(update={"quotes_per_step": 4})})
    market = _make(cfg, calendar, session, ["QQQ"])
    for _ in range(50):
        batch = market.step(0)["QQQ"]
        assert len(batch.quotes) == 4
        stamps = [q.ts_event for q in batch.quotes]
        assert stamps == sorted(stamps) and stamps[-1] == batch.ts_event == market.now_ns
        assert all(0 < q.bid < q.ask and q.bid_size > 0 and q.ask_size > 0 for q in batch.quotes)
        assert batch.books[0].bids[0][0] == batch.quotes[-1].bid


# --- options -------------------------------------------------------------------------------
def test_option_quotes_are_well_formed_and_refresh_on_schedule(
    market_cfg: MarketFile, calendar: NyseCalendar, session: dt.date
) -> None:
    market = _make(market_cfg, calendar, session, UNIVERSE)
    refresh = market_cfg.chain.refresh_steps
    for step in range(1, 2 * refresh + 2):
        batches = market.step(0)
        expect_options = (step - 1) % refresh == 0
        for symbol, batch in batches.items():
            assert bool(batch.options) == expect_options
            if not expect_options:
                continue
            assert [o.contract for o in batch.options] == market.chain(symbol)
            for option in batch.options:
                assert 0.01 <= option.bid < option.ask
                assert round(option.bid, 2) == option.bid and round(option.ask, 2) == option.ask
                values = (option.iv, option.delta, option.gamma, option.vega, option.theta)
                assert all(math.isfinite(v) for v in values)
                assert option.iv >= 0.05 and option.gamma >= 0 and option.vega >= 0
                if option.contract.right is Right.CALL:
                    assert 0.0 <= option.delta <= 1.0
                else:
                    assert -1.0 <= option.delta <= 0.0
                assert option.open_interest > 0 and option.volume > 0
                assert option.underlying_price == market.spot(symbol)
                assert option.ts_event == market.now_ns


def test_open_interest_is_largest_near_the_money(
    market_cfg: MarketFile, calendar: NyseCalendar, session: dt.date
) -> None:
    market = _make(market_cfg, calendar, session, ["AAPL"])
    options = market.step(0)["AAPL"].options
    expiry = options[0].contract.expiry
    calls = [o for o in options if o.contract.expiry == expiry and o.contract.right is Right.CALL]
    calls.sort(key=lambda o: o.contract.strike)
    middle = len(calls) // 2
    assert calls[middle].open_interest > calls[0].open_interest
    assert calls[middle].open_interest > calls[-1].open_interest


def test_chain_expiries_are_nyse_sessions_with_the_listing_rules(
    market_cfg: MarketFile, calendar: NyseCalendar, session: dt.date
) -> None:
    market = _make(market_cfg, calendar, session, UNIVERSE)
    chain_cfg = market_cfg.chain
    for symbol in UNIVERSE:
        contracts = market.chain(symbol)
        expiries = sorted({dt.date.fromisoformat(c.expiry) for c in contracts})
        assert expiries and all(calendar.is_session(e) for e in expiries)
        assert len(expiries) <= chain_cfg.expiries
        if symbol in INDEX_PRODUCTS:
            assert len(expiries) == chain_cfg.expiries
            assert expiries[0] == session  # 0DTE
            for earlier, later in zip(expiries, expiries[1:], strict=False):
                assert calendar.next_session(earlier) == later
        else:
            for expiry in expiries:
                assert 7 <= (expiry - session).days <= chain_cfg.max_dte
                assert expiry.weekday() == 4 or not calendar.is_session(
                    expiry + dt.timedelta(days=4 - expiry.weekday())
                )
        spec = market_cfg.underlyings[symbol]
        strikes = sorted({c.strike for c in contracts})
        atm = round(spec.spot / spec.strike_step) * spec.strike_step
        assert atm in strikes and all(k > 0 for k in strikes)
        assert len(strikes) == 2 * chain_cfg.strikes_each_side + 1
        assert len(contracts) == len(expiries) * len(strikes) * 2


def test_friday_holiday_moves_the_weekly_expiry_to_thursday(market_cfg: MarketFile, calendar: NyseCalendar) -> None:
    today = dt.date.today()
    fridays = [today - dt.timedelta(days=400) + dt.timedelta(days=d) for d in range(700)]
    holiday = next(
        d for d in fridays if d.weekday() == 4 and not calendar.is_session(d) and d > today - dt.timedelta(days=380)
    )
    day = calendar.session_on_or_before(holiday - dt.timedelta(days=10))
    expiries = {c.expiry for c in _make(market_cfg, calendar, day, ["AAPL"]).chain("AAPL")}
    assert calendar.session_on_or_before(holiday).isoformat() in expiries
    assert holiday.isoformat() not in expiries


def test_option_quote_prices_listed_and_unlisted_contracts(
    market_cfg: MarketFile, calendar: NyseCalendar, session: dt.date
) -> None:
    market = _make(market_cfg, calendar, session, ["SPY"])
    for _ in range(market_cfg.chain.refresh_steps):
        market.step(0)
    listed = market.step(0)["SPY"].options  # the step after a full refresh interval carries the chain
    assert listed
    for option in listed[::17]:
        again = market.option_quote(option.contract, ts_init_ns=0)
        assert (again.bid, again.ask) == (option.bid, option.ask)
        assert again.delta == pytest.approx(option.delta, rel=1e-12, abs=1e-15)
        assert again.open_interest == option.open_interest and again.volume == option.volume
    far = (session + dt.timedelta(days=90)).isoformat()
    unlisted = market.option_quote(OptionContract("SPY", far, 612.5, Right.CALL))
    assert 0.01 <= unlisted.bid < unlisted.ask and 0 < unlisted.delta < 1
    expired = market.option_quote(OptionContract("SPY", "2000-01-21", 100.0, Right.CALL))
    assert expired.delta == 1.0 and expired.gamma == 0.0
    assert expired.bid < market.spot("SPY") - 100.0 < expired.ask  # intrinsic value, usual spread
    with pytest.raises(KeyError):
        market.option_quote(OptionContract("ZZZZ", far, 10.0, Right.PUT))


def test_a_twin_driven_by_marks_quotes_like_the_feed(
    market_cfg: MarketFile, calendar: NyseCalendar, session: dt.date
) -> None:
    """The simulated broker prices fills on a twin fed only the feed's marks; quotes must agree."""
    feed = _make(market_cfg, calendar, session, ["SPY", "TSLA"])
    twin = SyntheticMarket(market_cfg, [], session, 7, _open_ns(calendar, session), STEP_NS)
    for _ in range(3):
        for _ in range(7):
            feed.step(0)
        twin.apply_marks(feed.marks(0))
        assert twin.symbols == ["SPY", "TSLA"] and twin.now_ns == feed.now_ns
        for symbol in ("SPY", "TSLA"):
            assert twin.spot(symbol) == feed.spot(symbol) and twin.vol(symbol) == feed.vol(symbol)
            for contract in feed.chain(symbol)[::23]:
                assert twin.option_quote(contract, 0) == feed.option_quote(contract, 0)
    bad = feed.marks(0)[0]
    with pytest.raises(ValueError, match="must be positive"):
        twin.apply_marks([msgspec.structs.replace(bad, spot=float("nan"))])


def test_zero_dte_near_and_after_the_close_stays_finite(
    market_cfg: MarketFile, calendar: NyseCalendar, session: dt.date
) -> None:
    close_ns = round(calendar.session_close(session).timestamp()) * STEP_NS
    market = SyntheticMarket(market_cfg, ["SPX"], session, 3, close_ns - 30 * STEP_NS, STEP_NS)
    zero_dte = session.isoformat()
    for _ in range(60):  # runs 30 s past the close
        for option in market.step(0)["SPX"].options:
            values = (
                option.bid,
                option.ask,
                option.iv,
                option.delta,
                option.gamma,
                option.vega,
                option.theta,
            )
            assert all(math.isfinite(v) for v in values)
            assert 0.01 <= option.bid < option.ask
    last = market.option_quote(OptionContract("SPX", zero_dte, market.spot("SPX"), Right.CALL))
    assert 0.0 < last.delta < 1.0  # one minute left at least, not expired


def test_marks_report_spot_and_vol(market_cfg: MarketFile, calendar: NyseCalendar, session: dt.date) -> None:
    market = _make(market_cfg, calendar, session, ["SPY", "TSLA"])
    market.step(0)
    marks = market.marks(ts_init_ns=5)
    assert [m.symbol for m in marks] == ["SPY", "TSLA"]
    for mark in marks:
        assert mark.ts_event == market.now_ns and mark.ts_init == 5
        assert mark.spot == market.spot(mark.symbol) and mark.vol == market.vol(mark.symbol)
        spec = market_cfg.underlyings[mark.symbol]
        assert _tick_multiple(mark.spot, spec.tick)
        assert mark.vol == pytest.approx(spec.vol, rel=0.2)


# --- checkpoints ---------------------------------------------------------------------------
@pytest.mark.parametrize("steps_before", [0, 137, 256, 300])
def test_state_round_trip_resumes_identically(
    market_cfg: MarketFile, calendar: NyseCalendar, session: dt.date, steps_before: int
) -> None:
    original = _make(market_cfg, calendar, session, ["SPY", "HOOD"])
    _run(original, steps_before)
    checkpoint = json.loads(json.dumps(original.state()))  # must survive JSON
    resumed = SyntheticMarket.from_state(market_cfg, checkpoint)
    assert resumed.now_ns == original.now_ns and resumed.symbols == original.symbols
    assert _run(resumed, 300) == _run(original, 300)


def test_from_state_rejects_an_unknown_version(market_cfg: MarketFile) -> None:
    with pytest.raises(ValueError, match="version"):
        SyntheticMarket.from_state(market_cfg, {"version": 99})


def test_bad_arguments_fail_loudly(market_cfg: MarketFile, calendar: NyseCalendar, session: dt.date) -> None:
    saturday = session + dt.timedelta(days=(5 - session.weekday()) % 7)
    with pytest.raises(ValueError, match="not an NYSE session"):
        SyntheticMarket(market_cfg, ["SPY"], saturday, 7, 0, STEP_NS)
    market = _make(market_cfg, calendar, session, ["SPY"])
    with pytest.raises(KeyError):
        market.add_symbol("NOPE")
    with pytest.raises(KeyError):
        market.remove_symbol("AAPL")
    with pytest.raises(ValueError):
        SyntheticMarket(market_cfg, ["SPY"], session, 7, 0, 0)


# --- the order-flow edge -------------------------------------------------------------------
def test_book_imbalance_predicts_subsequent_returns(
    market_cfg: MarketFile, calendar: NyseCalendar, session: dt.date
) -> None:
    """The L5 imbalance a book shows correlates positively with the next steps' mid returns.

    Deterministic (seeded): a regression check that the documented edge exists and stays small.
    """
    cfg = _without_options(market_cfg)
    symbols = ["SPY", "NVDA", "HIMS"]
    market = _make(cfg, calendar, session, symbols, seed=11)
    horizon = 10
    imbalance: dict[str, list[float]] = {s: [] for s in symbols}
    mids: dict[str, list[float]] = {s: [] for s in symbols}
    at_ask: list[tuple[float, bool]] = []
    for _ in range(30_000):
        for symbol, batch in market.step(0).items():
            book, quote = batch.books[0], batch.quotes[-1]
            bid_size = sum(size for _, size in book.bids[:5])
            ask_size = sum(size for _, size in book.asks[:5])
            imb = (bid_size - ask_size) / (bid_size + ask_size)
            imbalance[symbol].append(imb)
            mids[symbol].append((quote.bid + quote.ask) / 2)
            at_ask.extend((imb, trade.price == quote.ask) for trade in batch.trades)
    next_step, forward = [], []
    for symbol in symbols:
        imb = np.array(imbalance[symbol])
        log_mid = np.log(np.array(mids[symbol]))
        next_step.append(np.corrcoef(imb[:-1], np.diff(log_mid))[0, 1])
        forward.append(np.corrcoef(imb[:-horizon], log_mid[horizon:] - log_mid[:-horizon])[0, 1])
    assert all(c > 0 for c in next_step), next_step
    assert all(c > 0 for c in forward), forward
    assert 0.005 < float(np.mean(next_step)) < 0.1  # real, but small
    sides = np.array(at_ask)
    assert np.corrcoef(sides[:, 0], sides[:, 1])[0, 1] > 0.1  # more prints at the ask when bids are heavy
    assert 0.1 < float(np.std(imbalance["SPY"])) < 0.5
