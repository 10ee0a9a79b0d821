"""Analytics kernels benchmark: VPIN trades/s, book metrics books/s, incremental per-event costs.

One core, no Ray. Every compiled kernel is warmed up (numba compilation or cache load) on a small
input before it is timed, and each timing is the best of ``repeats`` runs, so the figures are the
steady-state throughput a per-symbol actor sees. Targets (SPEC §6 budget): ≥ 1,000,000 trades/s
for VPIN and ≥ 1,000,000 books/s (10 levels) for the book metrics.

The incremental state classes are timed on 100,000 events fed one by one from Python — the cost
an actor pays per event when it does not batch.

``python -m bench.analytics_flow`` prints the dict; ``main()`` (the ``bench`` runner convention)
also writes ``bench/results/analytics_flow.json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from quanticity.analytics.book import BookState, book_metrics
from quanticity.analytics.flow import FlowWindow, PrintDetector, detect_prints, option_flow
from quanticity.analytics.moc import MocAccumulator
from quanticity.analytics.volatility import RealizedVolState, realized_vol_bars
from quanticity.analytics.vpin import VpinState, vpin_from_trades

SEED = 20_261_120
NS = 1_000_000_000
TARGET_PER_S = 1_000_000


def _best(fn: Callable[[], Any], repeats: int) -> float:
    """Best wall time of ``repeats`` calls, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _tape(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A seeded equity tape: cent-rounded random-walk prices, sizes 1–500, ~20 ms apart (1M ≈ one session)."""
    prices = np.round(100.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-4, n))), 2)
    return {
        "prices": prices,
        "sizes": rng.integers(1, 501, n).astype(np.float64),
        "ts": np.cumsum(rng.integers(1, 40_000_000, n)).astype(np.int64),
    }


def _books(n: int, levels: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    mid = 100.0 + np.cumsum(rng.normal(0.0, 0.005, n))
    offsets = 0.01 * np.arange(levels)
    bid_px = np.round(mid[:, None] - 0.01 - offsets, 2)
    ask_px = np.round(mid[:, None] + 0.01 + offsets, 2)
    bid_sz = rng.integers(0, 1000, (n, levels)).astype(np.float64)
    ask_sz = rng.integers(0, 1000, (n, levels)).astype(np.float64)
    return bid_px, bid_sz, ask_px, ask_sz


def _per_event_ns(fn: Callable[[int], Any], n: int) -> float:
    t0 = time.perf_counter_ns()
    for i in range(n):
        fn(i)
    return (time.perf_counter_ns() - t0) / n


def measure(n_trades: int = 1_000_000, n_books: int = 1_000_000, n_events: int = 100_000, repeats: int = 3) -> dict:
    """Throughput of the batch kernels and per-event cost of the incremental classes."""
    rng = np.random.default_rng(SEED)
    tape = _tape(n_trades, rng)
    p, s, ts = tape["prices"], tape["sizes"], tape["ts"]
    bucket = float(s.sum()) / 500  # 500 buckets over the tape (ADV = 10 × tape volume / 10 days)
    books = _books(n_books, 10, rng)
    is_call = rng.random(n_trades) < 0.5
    contract = rng.integers(0, 200, n_trades)
    opt_price = np.round(1.0 + 0.01 * rng.integers(0, 200, n_trades), 2)
    opt_bid, opt_ask = opt_price - 0.02 * rng.integers(0, 3, n_trades), opt_price + 0.02 * rng.integers(0, 3, n_trades)
    side = rng.choice(np.array([-1, 0, 1]), n_trades)

    # warm-up: compile or load every kernel once
    vpin_from_trades(p[:1000], s[:1000], bucket / 100)
    book_metrics(*(b[:100] for b in books))
    option_flow(ts[:1000], opt_price[:1000], s[:1000], opt_bid[:1000], opt_ask[:1000], is_call[:1000], contract[:1000])
    detect_prints(ts[:1000], opt_price[:1000], s[:1000], side[:1000], contract[:1000])
    realized_vol_bars(ts[:1000], p[:1000])

    result: dict[str, Any] = {"n_trades": n_trades, "n_books": n_books, "book_levels": 10, "repeats": repeats}
    t = _best(lambda: vpin_from_trades(p, s, bucket), repeats)
    result["vpin_trades_per_s"] = n_trades / t
    t = _best(lambda: book_metrics(*books), repeats)
    result["book_metrics_books_per_s"] = n_books / t
    t = _best(lambda: option_flow(ts, opt_price, s, opt_bid, opt_ask, is_call, contract), repeats)
    result["option_flow_prints_per_s"] = n_trades / t
    t = _best(lambda: detect_prints(ts, opt_price, s, side, contract), repeats)
    result["detect_prints_prints_per_s"] = n_trades / t
    t = _best(lambda: realized_vol_bars(ts, p), repeats)
    result["realized_vol_trades_per_s"] = n_trades / t
    result["vpin_meets_target"] = result["vpin_trades_per_s"] >= TARGET_PER_S
    result["book_meets_target"] = result["book_metrics_books_per_s"] >= TARGET_PER_S

    # incremental classes, one Python call per event
    m = min(n_events, n_trades, n_books)
    pl, sl, tl = p[:m].tolist(), s[:m].tolist(), ts[:m].tolist()
    vpin = VpinState(bucket * 50 / 10)
    per_event: dict[str, float] = {}
    per_event["VpinState.update"] = _per_event_ns(lambda i: vpin.update(pl[i], sl[i]), m)
    vpin_batch = VpinState(bucket * 50 / 10)
    t0 = time.perf_counter_ns()
    vpin_batch.update_many(p[:m], s[:m])
    per_event["VpinState.update_many"] = (time.perf_counter_ns() - t0) / m
    bp, bq, ap, aq = (b[:m] for b in books)
    levels = [
        (
            list(zip(bp[i, :5].tolist(), bq[i, :5].tolist(), strict=True)),
            list(zip(ap[i, :5].tolist(), aq[i, :5].tolist(), strict=True)),
        )
        for i in range(m)
    ]
    book = BookState()
    per_event["BookState.update (5 levels)"] = _per_event_ns(
        lambda i: book.update(levels[i][0], levels[i][1], tl[i]), m
    )
    flow = FlowWindow()
    op, ob, oa, oc, ok = (x[:m].tolist() for x in (opt_price, opt_bid, opt_ask, is_call, contract))
    per_event["FlowWindow.update"] = _per_event_ns(
        lambda i: flow.update(tl[i], op[i], sl[i], ob[i], oa[i], oc[i], ok[i]), m
    )
    sides = side[:m].tolist()
    det = PrintDetector()
    per_event["PrintDetector.update"] = _per_event_ns(lambda i: det.update(tl[i], op[i], sl[i], sides[i], ok[i]), m)
    rv = RealizedVolState()
    per_event["RealizedVolState.update"] = _per_event_ns(lambda i: rv.update(tl[i], pl[i]), m)
    moc = MocAccumulator(0, 2**62)
    per_event["MocAccumulator.update"] = _per_event_ns(
        lambda i: moc.update(tl[i], pl[i], sl[i], sides[i], i % 3 == 0), m
    )
    result["incremental_events"] = m
    result["incremental_ns_per_event"] = per_event
    result["readings"] = {
        "vpin": vpin.value().vpin,
        "book_grade": book.value().grade,
        "flow_net": flow.value().net,
        "rv": rv.value().rv,
    }
    return result


def main() -> None:
    """``bench`` runner entry point: print the figures and write the JSON result."""
    from bench.common import write_result

    result = measure()
    print(result)
    write_result("analytics_flow", result)


if __name__ == "__main__":
    print(measure())
