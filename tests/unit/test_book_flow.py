"""Book metrics and liquidity grades; option premium flow, blocks, sweeps, odd lots, unusual activity."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from quanticity.analytics.book import GRADES, BookState, book_metrics, liquidity_grade
from quanticity.analytics.flow import (
    FlowWindow,
    PrintDetector,
    classify_aggressor,
    detect_prints,
    option_flow,
    premium_bursts,
    unusual_volume_oi,
)
from quanticity.messages import BookSnapshot

pytestmark = pytest.mark.unit
NS = 1_000_000_000
MS = 1_000_000


# --- book helpers ----------------------------------------------------------------------------
def five_levels(best: float, step: float, depth: float) -> tuple[list[float], list[float]]:
    """Five levels from ``best`` moving by ``step``, sizes summing to exactly ``depth``."""
    base = math.floor(depth / 5)
    sizes = [float(base)] * 5
    sizes[0] += depth - 5 * base
    return [best + step * i for i in range(5)], sizes


def one_book(bid: float, ask: float, bid_depth: float, ask_depth: float) -> tuple[np.ndarray, ...]:
    bp, bq = five_levels(bid, -0.5, bid_depth)
    ap, aq = five_levels(ask, 0.5, ask_depth)
    return np.array([bp]), np.array([bq]), np.array([ap]), np.array([aq])


# --- book metrics ----------------------------------------------------------------------------
def test_book_metrics_by_hand() -> None:
    bid_px = np.array([[100.00, 99.99, 99.98, 99.97, 99.96, 99.95]])
    bid_sz = np.array([[300.0, 200, 100, 100, 100, 5000]])  # the 6th level is outside L5
    ask_px = np.array([[100.02, 100.03, 100.04, 100.05, 100.06, 100.07]])
    ask_sz = np.array([[100.0, 100, 100, 100, 100, 5000]])
    m = book_metrics(bid_px, bid_sz, ask_px, ask_sz)
    assert m.mid[0] == pytest.approx(100.01)
    assert m.spread_bps[0] == pytest.approx(0.02 / 100.01 * 1e4)
    assert m.imbalance_l1[0] == pytest.approx((300 - 100) / 400)
    assert m.imbalance_l5[0] == pytest.approx((800 - 500) / 1300)
    assert (m.bid_depth[0], m.ask_depth[0]) == (800.0, 500.0)
    assert m.microprice[0] == pytest.approx((100.00 * 100 + 100.02 * 300) / 400)
    assert m.grade_letters() == ["C"]  # min depth 500 is not > 500
    assert m.rejected == {}


@pytest.mark.parametrize(
    ("bid", "ask", "bid_depth", "ask_depth", "grade"),
    [
        (9997.5, 10002.5, 1001, 5000, "B"),  # exactly 5 bps is not < 5 → B
        (9997.51, 10002.49, 1001, 5000, "A"),  # just under 5 bps, min depth 1001 > 1000
        (9997.51, 10002.49, 1000, 5000, "B"),  # depth exactly 1000 is not > 1000
        (9997.51, 10002.49, 5000, 1000, "B"),  # the thinner side decides
        (9995.0, 10005.0, 5000, 5000, "C"),  # exactly 10 bps is not < 10
        (9995.01, 10004.99, 5000, 5000, "B"),  # just under 10 bps
        (9995.01, 10004.99, 501, 501, "B"),  # depth just past 500
        (9995.01, 10004.99, 500, 900, "C"),  # depth exactly 500
        (9990.0, 10010.0, 50_000, 50_000, "C"),  # wide
        (10000.0, 10000.0, 5000, 5000, "D"),  # locked
        (10001.0, 10000.0, 5000, 5000, "D"),  # crossed
    ],
)
def test_liquidity_grade_boundaries(bid: float, ask: float, bid_depth: float, ask_depth: float, grade: str) -> None:
    m = book_metrics(*one_book(bid, ask, bid_depth, ask_depth))
    assert m.grade_letters() == [grade]
    assert liquidity_grade(m.spread_bps[0], m.bid_depth[0], m.ask_depth[0], crossed=bid >= ask) == grade
    state = BookState()
    bp, bq, ap, aq = one_book(bid, ask, bid_depth, ask_depth)
    state.update(list(zip(bp[0], bq[0], strict=True)), list(zip(ap[0], aq[0], strict=True)), 0)
    assert state.value(0).grade == grade


def test_exact_five_bps_spread_is_computed_exactly() -> None:
    m = book_metrics(*one_book(9997.5, 10002.5, 2000, 2000))
    assert m.spread_bps[0] == 5.0


def test_stale_books_are_graded_d() -> None:
    books = one_book(9999.0, 10000.0, 5000, 5000)  # an A book
    at_limit = book_metrics(*books, ts_ns=[0], now_ns=5 * NS)
    past = book_metrics(*books, ts_ns=[0], now_ns=5 * NS + 1)
    assert at_limit.grade_letters() == ["A"] and past.grade_letters() == ["D"]
    state = BookState(max_age_s=5.0)
    bp, bq, ap, aq = books
    state.update(list(zip(bp[0], bq[0], strict=True)), list(zip(ap[0], aq[0], strict=True)), 1_000)
    assert state.value(1_000 + 5 * NS).grade == "A"
    assert state.value(1_000 + 5 * NS + 1).grade == "D"
    assert state.value().grade == "A"  # no clock → never stale


def test_empty_side_and_bad_levels() -> None:
    nan = np.nan
    bid_px = np.array([[100.0, nan, 99.0], [nan, nan, nan], [100.0, 99.5, -1.0]])
    bid_sz = np.array([[100.0, 0.0, -5.0], [0.0, 0.0, 0.0], [10.0, np.inf, 10.0]])
    ask_px = np.array([[101.0, 102.0, 0.0], [101.0, 102.0, 103.0], [101.0, 102.0, 103.0]])
    ask_sz = np.array([[100.0, 50.0, 0.0], [10.0, 10.0, 10.0], [10.0, 10.0, 10.0]])
    m = book_metrics(bid_px, bid_sz, ask_px, ask_sz)
    # row 0: (nan, 0) and (0, 0) are padding; (99, −5) is bad. Row 2: inf size and price −1 are bad.
    assert m.rejected == {"bad_level": 3, "empty_side": 1}
    assert m.bid_depth.tolist() == [100.0, 0.0, 10.0]
    assert m.grade_letters()[1] == "D" and math.isnan(m.mid[1]) and m.imbalance_l5[1] == -1.0


def test_ofi_follows_cont_kukanov_stoikov() -> None:
    bids = np.array([[100.0], [100.01], [100.01], [100.00]])
    bsz = np.array([[500.0], [200.0], [300.0], [400.0]])
    asks = np.array([[100.02], [100.02], [100.02], [100.01]])
    asz = np.array([[400.0], [400.0], [100.0], [250.0]])
    m = book_metrics(bids, bsz, asks, asz)
    expected = [
        0.0,  # first book
        200.0,  # bid up: + new bid size; ask unchanged: −400 + 400
        300.0 - 200.0 + (-100.0 + 400.0),  # bid same: +300 −200; ask same: −100 +400
        -300.0 - 250.0,  # bid down: −old bid size 300; ask down: −new ask size 250
    ]
    assert m.ofi.tolist() == pytest.approx(expected)
    state = BookState(ofi_window_s=100.0)
    for i in range(4):
        state.update([(bids[i, 0], bsz[i, 0])], [(asks[i, 0], asz[i, 0])], i * NS)
    assert state.value(3 * NS).ofi == pytest.approx(expected[-1])
    assert state.value(3 * NS).ofi_window == pytest.approx(sum(expected))


def test_book_state_equals_kernel_and_accepts_snapshots() -> None:
    rng = np.random.default_rng(5)
    n, levels = 300, 10
    mid = 50.0 + np.cumsum(rng.normal(0, 0.01, n))
    bp = np.round(mid[:, None] - 0.01 - 0.01 * np.arange(levels), 2)
    ap = np.round(mid[:, None] + 0.01 + 0.01 * np.arange(levels), 2)
    bq = rng.integers(0, 600, (n, levels)).astype(float)
    aq = rng.integers(0, 600, (n, levels)).astype(float)
    m = book_metrics(bp, bq, ap, aq)
    state = BookState()
    for i in range(n):
        snap = BookSnapshot(
            ts_event=i * MS,
            ts_init=i * MS,
            symbol="X",
            bids=tuple(zip(bp[i].tolist(), bq[i].astype(int).tolist(), strict=True)),
            asks=tuple(zip(ap[i].tolist(), aq[i].astype(int).tolist(), strict=True)),
        )
        state.update_snapshot(snap)
        r = state.value(i * MS)
        assert r.spread_bps == pytest.approx(m.spread_bps[i], nan_ok=True)
        assert (r.imbalance_l1, r.imbalance_l5) == pytest.approx((m.imbalance_l1[i], m.imbalance_l5[i]))
        assert (r.bid_depth, r.ask_depth, r.ofi) == pytest.approx((m.bid_depth[i], m.ask_depth[i], m.ofi[i]))
        assert r.grade == GRADES[m.grade[i]]
    restored = BookState()
    restored.restore(json.loads(json.dumps(state.state())))
    assert restored.value((n - 1) * MS) == state.value((n - 1) * MS)


_book_arrays = hnp.arrays(
    np.float64, st.tuples(st.integers(0, 6), st.integers(0, 7)), elements=st.floats(allow_nan=True, allow_infinity=True)
)


@settings(max_examples=150, deadline=None)
@given(bp=_book_arrays, bq=_book_arrays, ap=_book_arrays, aq=_book_arrays)
def test_book_metrics_never_raise(bp: np.ndarray, bq: np.ndarray, ap: np.ndarray, aq: np.ndarray) -> None:
    m = book_metrics(bp, bq, ap, aq, ts_ns=0, now_ns=1)
    assert set(m.grade.tolist()) <= {0, 1, 2, 3}
    assert np.all(np.isfinite(m.bid_depth) | np.isinf(m.bid_depth))  # never NaN


@settings(max_examples=100, deadline=None)
@given(
    px=hnp.arrays(np.float64, (4, 5), elements=st.floats(0.01, 1e6)),
    sz=hnp.arrays(np.float64, (4, 5), elements=st.floats(0.0, 1e9)),
    shift=st.floats(0.0, 1e3),
)
def test_book_metrics_are_finite_on_realistic_books(px: np.ndarray, sz: np.ndarray, shift: float) -> None:
    m = book_metrics(px, sz, px + shift + 0.01, sz[::-1])
    for field in (m.imbalance_l1, m.imbalance_l5):
        assert np.all(np.isfinite(field)) and np.all(np.abs(field) <= 1.0)
    ok = m.grade < 3
    assert np.all(np.isfinite(m.spread_bps[ok])) and np.all(m.spread_bps[ok] > 0)


# --- aggressor side --------------------------------------------------------------------------
def test_aggressor_quote_rule_mid_rule_and_tick_rule() -> None:
    price = [1.10, 1.15, 1.00, 0.95, 1.07, 1.03, 1.05, 1.06, 1.06, 1.06]
    bid = [1.00, 1.00, 1.00, 1.00, 1.00, 1.00, 1.00, np.nan, np.nan, np.nan]
    ask = [1.10, 1.10, 1.10, 1.10, 1.10, 1.10, 1.10, np.nan, np.nan, np.nan]
    side = classify_aggressor(price, bid, ask)
    # at ask, above ask, at bid, below bid, above mid, below mid,
    # at mid (1.05 after 1.03: up-tick → buy), no quote 1.06 (up-tick), 1.06 zero tick → last up
    assert side.tolist() == [1, 1, -1, -1, 1, -1, 1, 1, 1, 1]
    assert classify_aggressor([5.0], np.nan, np.nan).tolist() == [0]  # no quote, no history


def test_tick_rule_is_per_contract() -> None:
    price = [2.00, 5.00, 2.10, 4.90, 2.10]
    contract = ["A", "B", "A", "B", "A"]
    side = classify_aggressor(price, contract=contract)
    assert side.tolist() == [0, 0, 1, -1, 1]  # mixing contracts would give B a fake up-tick
    assert classify_aggressor(price).tolist() == [0, 1, -1, 1, -1]


# --- premium flow ----------------------------------------------------------------------------
def test_net_premium_sign_conventions() -> None:
    # call bought, call sold, put bought, put sold, unknown-side call (at mid, no history)
    ts = [0, 1, 2, 3, 4]
    price = [2.0, 1.0, 3.0, 0.5, 1.5]
    size = [10, 20, 5, 40, 7]
    bid = [1.9, 1.0, 2.9, 0.5, 1.4]
    ask = [2.0, 1.1, 3.0, 0.6, 1.6]
    is_call = [True, True, False, False, True]
    contract = ["C1", "C2", "P1", "P2", "C3"]
    f = option_flow(ts, price, size, bid, ask, is_call, contract)
    assert f.side.tolist() == [1, -1, 1, -1, 0]
    assert f.premium.tolist() == [2000.0, 2000.0, 1500.0, 2000.0, 1050.0]
    assert f.net_contribution.tolist() == [2000.0, -2000.0, -1500.0, 2000.0, 0.0]
    assert (f.call_bought[0], f.call_sold[0], f.put_bought[0], f.put_sold[0]) == (2000.0, 2000.0, 1500.0, 2000.0)
    assert f.net[0] == (2000.0 - 2000.0) - (1500.0 - 2000.0) == 500.0  # put selling is bullish
    assert f.gross[0] == 8550.0


def test_flow_windows_and_momentum() -> None:
    w = 60 * NS
    ts = [0, w + 1, 2 * w + 5, 4 * w]  # window 3 has no prints
    f = option_flow(ts, [1.0] * 4, [10, 30, 5, 20], 0.9, 1.0, True)  # all at the ask: call buying
    assert f.window_start_ns.tolist() == [0, w, 2 * w, 4 * w]
    assert f.net.tolist() == [1000.0, 3000.0, 500.0, 2000.0]
    assert f.momentum.tolist() == [1000.0, 2000.0, -2500.0, 2000.0]  # window 4 vs empty window 3


def test_flow_window_state_equals_batch() -> None:
    rng = np.random.default_rng(9)
    n = 3000
    ts = np.sort(rng.integers(0, 40 * 60 * NS, n))
    contract = rng.integers(0, 12, n)
    mid = 2.0 + 0.1 * contract + rng.normal(0, 0.02, n)
    price = np.round(mid + rng.choice([-0.05, -0.02, 0.0, 0.02, 0.05], n), 2)
    size = rng.integers(1, 300, n).astype(float)
    bid, ask = np.round(mid - 0.05, 2), np.round(mid + 0.05, 2)
    bid[::7] = np.nan  # some prints without a quote → tick rule
    is_call = contract % 2 == 0
    batch = option_flow(ts, price, size, bid, ask, is_call, contract, burst_min_premium=1.0)
    state = FlowWindow(burst_min_premium=1.0)
    sides = []
    for i in range(n):
        sides.append(state.update(int(ts[i]), price[i], size[i], bid[i], ask[i], bool(is_call[i]), int(contract[i])))
    assert sides == batch.side.tolist()
    r = state.value()
    assert r.window_start_ns == batch.window_start_ns[-1]
    assert (r.net, r.momentum, r.gross) == pytest.approx((batch.net[-1], batch.momentum[-1], batch.gross[-1]))
    assert r.burst == bool(batch.burst[-1])
    restored = FlowWindow(burst_min_premium=1.0)
    restored.restore(json.loads(json.dumps(state.state())))
    assert restored.value() == r


def test_out_of_order_and_bad_prints_are_counted() -> None:
    f = option_flow([100 * NS, 0, 100 * NS, 100 * NS], [1.0, 1.0, np.nan, 1.0], [5, 5, 5, -1], 0.9, 1.0, True)
    assert f.rejected == {"out_of_order": 1, "bad_price": 1, "bad_size": 1}
    state = FlowWindow()
    state.update(100 * NS, 1.0, 5, 0.9, 1.0, True)
    state.update(0, 1.0, 5, 0.9, 1.0, True)
    state.update(100 * NS, np.nan, 5, 0.9, 1.0, True)
    assert state.rejected == {"out_of_order": 1, "bad_price": 1}
    assert state.value().gross == 500.0


# --- bursts ----------------------------------------------------------------------------------
def test_premium_burst_thresholds() -> None:
    history = [100_000.0] * 10
    assert premium_bursts([*history, 300_001.0]).tolist()[-1]
    assert not premium_bursts([*history, 300_000.0]).tolist()[-1]  # exactly k × mean is not a burst
    assert not premium_bursts([*[10_000.0] * 10, 40_000.0]).tolist()[-1]  # below the $50k floor
    assert not premium_bursts([100_000.0] * 4 + [1e7]).tolist()[-1]  # 4 windows of history < 5
    assert premium_bursts([100_000.0] * 5 + [1e7]).tolist()[-1]


def test_premium_burst_counts_empty_windows_as_zero() -> None:
    # Windows 0..9 hold 100k, 10..19 are empty, window 20 holds 200k: mean of the last 20 = 50k.
    ids = [*range(10), 20]
    g = [100_000.0] * 10 + [200_000.0]
    assert premium_bursts(g, ids, k=3.0)[-1]  # 200k > 3 × 50k
    assert not premium_bursts(g, ids, k=4.0)[-1]


# --- blocks, sweeps, odd lots ----------------------------------------------------------------
def test_option_blocks_by_size_and_premium() -> None:
    size = [100, 99, 99, 99]
    price = [0.10, 1.00, 25.26, 25.25]  # 99 × 25.26 × 100 = 250,074; 99 × 25.25 × 100 = 249,975
    flags = detect_prints([0, 1, 2, 3], price, size, [0, 0, 0, 0], contract=["a", "b", "c", "d"])
    assert flags.block.tolist() == [True, False, True, False]
    assert not flags.odd_lot.any()


def test_equity_blocks_and_odd_lots() -> None:
    size = [10_000, 9_999, 9_999, 99, 100, 1]
    price = [1.0, 20.0, 20.01, 50.0, 50.0, 50.0]
    flags = detect_prints(range(6), price, size, [0] * 6, asset="equity")
    assert flags.block.tolist() == [True, False, True, False, False, False]
    assert flags.odd_lot.tolist() == [False, False, False, True, False, True]


def sweep_flags(ts_ms: list[int], price: list[float], side: list[int], contract: list[str] | None = None) -> list[bool]:
    flags = detect_prints([t * MS for t in ts_ms], price, [10] * len(price), side, contract)
    return flags.sweep.tolist()


def test_sweep_detection_and_near_misses() -> None:
    assert sweep_flags([0, 100, 500], [1.00, 1.05, 1.10], [1, 1, 1]) == [True] * 3
    assert sweep_flags([0, 100, 200], [1.10, 1.05, 1.05], [-1, -1, -1]) == [True] * 3  # sells walk down
    assert sweep_flags([0, 100, 200], [1.00, 1.00, 1.05], [1, 1, 1]) == [True] * 3  # equal, then worse
    # near misses
    assert sweep_flags([0, 100, 501], [1.00, 1.05, 1.10], [1, 1, 1]) == [False] * 3  # third print too late
    assert sweep_flags([0, 100], [1.00, 1.05], [1, 1]) == [False] * 2  # two prints only
    assert sweep_flags([0, 100, 200], [1.00, 1.00, 1.00], [1, 1, 1]) == [False] * 3  # one price level
    assert sweep_flags([0, 100, 200], [1.05, 1.00, 1.10], [1, 1, 1]) == [False] * 3  # price improved
    assert sweep_flags([0, 100, 200], [1.00, 1.05, 1.10], [1, -1, 1]) == [False] * 3  # side flipped
    assert sweep_flags([0, 100, 200], [1.00, 1.05, 1.10], [1, 0, 1]) == [False] * 3  # unknown side breaks
    assert sweep_flags([0, 100, 200], [1.00, 1.05, 1.10], [1, 1, 1], ["A", "B", "A"]) == [False] * 3


def test_interleaved_contracts_sweep_independently() -> None:
    flags = detect_prints(
        [0, 10 * MS, 20 * MS, 30 * MS, 40 * MS, 50 * MS],
        [1.0, 5.0, 1.1, 5.0, 1.2, 4.9],
        [10] * 6,
        [1, -1, 1, -1, 1, -1],
        ["A", "B", "A", "B", "A", "B"],
    )
    assert flags.sweep.tolist() == [True] * 6
    assert flags.sweep_id.tolist() == [0, 1, 0, 1, 0, 1]


def test_print_detector_equals_batch() -> None:
    rng = np.random.default_rng(4)
    n = 2000
    ts = np.cumsum(rng.integers(1, 200, n)) * MS
    contract = rng.integers(0, 5, n)
    price = np.round(1.0 + 0.01 * rng.integers(0, 20, n), 2)
    size = rng.integers(1, 150, n).astype(float)
    side = rng.choice([-1, 1, 1, 0], n)
    batch = detect_prints(ts, price, size, side, contract)
    det = PrintDetector()
    events = [det.update(int(ts[i]), price[i], size[i], int(side[i]), int(contract[i])) for i in range(n)]
    assert [e.block for e in events] == batch.block.tolist()
    assert {e.sweep_id for e in events if e.sweep} == set(batch.sweep_id[batch.sweep].tolist())
    assert sum(e.new_sweep for e in events) == len(set(batch.sweep_id[batch.sweep].tolist())) > 0
    for e, b_id in zip(events, batch.sweep_id.tolist(), strict=True):
        if e.sweep:  # flagged incrementally from the qualifying print on, always inside a batch sweep
            assert e.sweep_id == b_id
    restored = PrintDetector()
    restored.restore(json.loads(json.dumps(det.state())))
    assert restored.update(int(ts[-1]) + 1, 1.0, 1, 1, "x") == det.update(int(ts[-1]) + 1, 1.0, 1, 1, "x")


# --- unusual activity ------------------------------------------------------------------------
def test_volume_over_open_interest() -> None:
    ua = unusual_volume_oi([100, 101, 50, 10, np.nan], [100, 100, 0, 5, 10], threshold=1.0)
    assert ua.ratio[:2].tolist() == [1.0, 1.01] and math.isnan(ua.ratio[2])
    assert ua.unusual.tolist() == [False, True, False, True, False]  # exactly 1.0 is not > 1.0
    assert ua.rejected == {"no_oi": 1, "bad_volume": 1}


# --- properties ------------------------------------------------------------------------------
_floats = st.floats(allow_nan=True, allow_infinity=True)


@settings(max_examples=120, deadline=None)
@given(
    data=hnp.arrays(np.float64, st.tuples(st.just(5), st.integers(0, 40)), elements=_floats),
    ts=hnp.arrays(np.int64, st.integers(0, 40), elements=st.integers(-(2**62), 2**62)),
    calls=hnp.arrays(np.bool_, st.integers(0, 40)),
)
def test_flow_functions_never_raise(data: np.ndarray, ts: np.ndarray, calls: np.ndarray) -> None:
    price, size, bid, ask, side = data
    f = option_flow(ts, price, size, bid, ask, calls)
    assert set(f.side.tolist()) <= {-1, 0, 1}
    assert np.all(np.isnan(f.premium) | (f.premium >= 0))  # ≥: tiny prices underflow to 0
    flags = detect_prints(ts, price, size, side, asset="equity")
    assert flags.block.shape == flags.sweep.shape == flags.odd_lot.shape
    ua = unusual_volume_oi(price, size)
    assert np.all(np.isnan(ua.ratio) | (ua.ratio >= 0))
    state, det = FlowWindow(), PrintDetector("equity")
    for i in range(min(ts.size, price.size)):
        state.update(int(ts[i]), price[i], size[i], bid[i], ask[i], True)
        det.update(int(ts[i]), price[i], size[i], side[i])
    state.value()
