"""Market-on-close (MOC) imbalance predictor from afternoon flow, dark/lit divergence and the book.

The closing auction's imbalance is published only from 15:50 ET; the MOC strategy (SPEC §7) wants
to position earlier, so it predicts the imbalance's direction from what the afternoon tape shows.

**Inputs** (afternoon window, 14:00–15:30 ET by default, ``[start, end)``):

* ``buy_share`` = buy volume / (buy + sell volume) of the prints with a known aggressor side
  (:func:`quanticity.analytics.flow.classify_aggressor`), in [0, 1]; 0.5 is balanced.
  ``flow_asymmetry`` = max(buy_share, 1 − buy_share) ∈ [0.5, 1] — the dominant side's share,
  which the SPEC threshold "flow asymmetry > 60 %" compares (> 0.60).
* ``dark_lit_divergence`` = (dark volume / lit volume) / ``baseline_dark_lit`` − 1: how much
  more (positive) or less of the afternoon volume printed off-exchange than usual. Elevated dark
  activity marks institutions working orders into the close; SPEC threshold "> 10 %" (> 0.10).
  ``baseline_dark_lit`` is the symbol's normal ratio (e.g. a 20-day mean); the default 0.7 (≈ 41 %
  of US equity volume off-exchange) is a placeholder until per-symbol baselines are wired in.
* ``book_imbalance`` — L5 order-book imbalance in [−1, 1] (:mod:`quanticity.analytics.book`).

**Scoring model** (simple, documented, monotone). Each input is standardised by a scale that
makes "1" mean "at the SPEC threshold" (or a typical meaningful value for the book):

    z_f = (2·buy_share − 1) / 0.2          (60 % buy share → 1, 40 % → −1)
    z_b = book_imbalance / 0.3
    z_d = clip(dark_lit_divergence / 0.10, 0, 3)      (10 % above baseline → 1)
    S   = w_f·z_f + w_b·z_b                 (w_f = 1, w_b = 0.5; direction = sign(S))
    m   = |S| · (1 + w_d·z_d)               (w_d = 0.5: dark activity amplifies, never directs)
    confidence = 100 · (2·logistic(k·m) − 1) = 100 · tanh(k·m / 2)

``k`` is calibrated so that the joint SPEC threshold point (buy share 60 %, divergence 10 %,
neutral book) scores exactly 70 — the strategy's confidence gate — so the strategy fires only
when at least one input is beyond its threshold or the book agrees. Properties: ``S`` (hence the
signed confidence) is non-decreasing in ``buy_share`` and ``book_imbalance``; the confidence is
non-decreasing in ``dark_lit_divergence`` and in ``|S|``; confidence ∈ [0, 100).

**Outputs**: direction BUY (S > 0) / SELL (S < 0) / NONE (S = 0 or no classified afternoon
volume); predicted imbalance size ``|buy − sell| · confidence / 100`` shares (a heuristic scale, to
be calibrated against the published 15:50 imbalances) and its notional at the last price.

Bad numbers never raise: non-finite inputs count as neutral (0) in :func:`moc_score`; bad prints are
skipped and counted in ``rejected``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import ArrayLike, NDArray

from quanticity.analytics.coerce import to_float as _to_float

__all__ = [
    "MocAccumulator",
    "MocInputs",
    "MocModel",
    "MocPrediction",
    "moc_inputs",
    "moc_score",
    "moc_window_ns",
    "predict_moc",
]

ET = ZoneInfo("America/New_York")
NS = 1_000_000_000
MOC_WINDOW_START = time(14, 0)
MOC_WINDOW_END = time(15, 30)
DEFAULT_BASELINE_DARK_LIT = 0.7
SPEC_MIN_ASYMMETRY = 0.60
SPEC_MIN_DIVERGENCE = 0.10
SPEC_MIN_CONFIDENCE = 70.0


@dataclass(frozen=True)
class MocModel:
    """Parameters of the scoring model (module docstring); defaults are the documented ones."""

    flow_scale: float = 0.2
    book_scale: float = 0.3
    divergence_scale: float = 0.10
    divergence_cap: float = 3.0
    w_flow: float = 1.0
    w_book: float = 0.5
    w_divergence: float = 0.5
    reference_confidence: float = SPEC_MIN_CONFIDENCE

    @property
    def k(self) -> float:
        """Logistic slope: confidence = ``reference_confidence`` at z_f = 1, z_d = 1, z_b = 0."""
        m_ref = self.w_flow * (1.0 + self.w_divergence * min(1.0, self.divergence_cap))
        return 2.0 * math.atanh(self.reference_confidence / 100.0) / m_ref


class MocInputs(NamedTuple):
    """Afternoon-window aggregates feeding the predictor (shares)."""

    buy_volume: float
    sell_volume: float
    unknown_volume: float  # prints without a known aggressor side
    dark_volume: float
    lit_volume: float
    buy_share: float  # NaN without classified volume
    flow_asymmetry: float  # max(buy_share, 1 − buy_share); NaN without classified volume
    dark_lit_divergence: float  # (dark/lit) / baseline − 1; NaN without lit volume
    rejected: dict[str, int]


class MocPrediction(NamedTuple):
    """Predicted closing-auction imbalance."""

    direction: str  # "BUY" | "SELL" | "NONE"
    size_shares: float
    notional: float  # size × last price (NaN when the price is unknown)
    confidence: float  # 0–100
    score: float  # S, the signed standardised score
    flow_asymmetry: float
    dark_lit_divergence: float
    book_imbalance: float

    def passes(
        self,
        min_asymmetry: float = SPEC_MIN_ASYMMETRY,
        min_divergence: float = SPEC_MIN_DIVERGENCE,
        min_confidence: float = SPEC_MIN_CONFIDENCE,
    ) -> bool:
        """The SPEC strategy gates: asymmetry > 60 %, divergence > 10 %, confidence > 70 (strict)."""
        return (
            self.direction != "NONE"
            and self.flow_asymmetry > min_asymmetry
            and self.dark_lit_divergence > min_divergence
            and self.confidence > min_confidence
        )


def moc_window_ns(day: date, start: time = MOC_WINDOW_START, end: time = MOC_WINDOW_END) -> tuple[int, int]:
    """``[start, end)`` of ``day`` in ET as ns since the epoch (half days: pass the shifted times)."""
    t0 = datetime.combine(day, start, tzinfo=ET)
    t1 = datetime.combine(day, end, tzinfo=ET)
    return int(t0.timestamp()) * NS + t0.microsecond * 1000, int(t1.timestamp()) * NS + t1.microsecond * 1000


def moc_score(
    buy_share: ArrayLike,
    dark_lit_divergence: ArrayLike,
    book_imbalance: ArrayLike,
    model: MocModel = MocModel(),  # noqa: B008 - frozen dataclass, immutable default
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Vectorised (score S, confidence 0–100); inputs broadcast, non-finite values count as neutral."""
    f = np.asarray(buy_share, dtype=np.float64)
    d = np.asarray(dark_lit_divergence, dtype=np.float64)
    b = np.asarray(book_imbalance, dtype=np.float64)
    f, d, b = np.broadcast_arrays(f, d, b)
    with np.errstate(invalid="ignore", over="ignore"):
        z_f = np.where(np.isfinite(f), (2.0 * np.clip(f, 0.0, 1.0) - 1.0) / model.flow_scale, 0.0)
        z_b = np.where(np.isfinite(b), np.clip(b, -1.0, 1.0) / model.book_scale, 0.0)
        z_d = np.where(np.isfinite(d), np.clip(d / model.divergence_scale, 0.0, model.divergence_cap), 0.0)
        score = model.w_flow * z_f + model.w_book * z_b
        m = np.abs(score) * (1.0 + model.w_divergence * z_d)
        confidence = 100.0 * np.tanh(model.k * m / 2.0)
    return score, confidence


def _inputs_from_sums(buy: float, sell: float, unknown: float, dark: float, lit: float, baseline: float) -> tuple:
    classified = buy + sell
    share = buy / classified if classified > 0 else math.nan
    asym = max(share, 1.0 - share) if classified > 0 else math.nan
    div = (dark / lit) / baseline - 1.0 if lit > 0 and math.isfinite(baseline) and baseline > 0 else math.nan
    return buy, sell, unknown, dark, lit, share, asym, div


def moc_inputs(
    ts_ns: ArrayLike,
    price: ArrayLike,
    size: ArrayLike,
    side: ArrayLike,
    is_dark: ArrayLike,
    *,
    start_ns: int,
    end_ns: int,
    baseline_dark_lit: float = DEFAULT_BASELINE_DARK_LIT,
) -> MocInputs:
    """Aggregate equity prints (shares) in ``[start_ns, end_ns)`` into the predictor's inputs."""
    t = np.asarray(ts_ns).reshape(-1)
    p = np.asarray(price, dtype=np.float64).reshape(-1)
    q = np.asarray(size, dtype=np.float64).reshape(-1)
    s = np.asarray(side, dtype=np.float64).reshape(-1)
    dk = np.asarray(is_dark, dtype=np.bool_).reshape(-1)
    n = min(t.size, p.size, q.size, s.size, dk.size)
    rejected: dict[str, int] = {}
    if t.size + p.size + q.size + s.size + dk.size - 5 * n:
        rejected["length_mismatch"] = int(t.size + p.size + q.size + s.size + dk.size - 5 * n)
    t, p, q, s, dk = t[:n], p[:n], q[:n], s[:n], dk[:n]
    tf = t.astype(np.float64) if t.dtype.kind == "f" else None
    t_ok = np.isfinite(tf) if tf is not None else np.ones(n, dtype=np.bool_)
    ti = np.where(t_ok, tf, 0.0).astype(np.int64) if tf is not None else t.astype(np.int64)
    with np.errstate(invalid="ignore"):
        bad_p = ~(np.isfinite(p) & (p > 0))
        bad_q = ~bad_p & ~(np.isfinite(q) & (q > 0))
    bad_t = ~bad_p & ~bad_q & ~t_ok
    for key, mask in (("bad_price", bad_p), ("bad_size", bad_q), ("bad_time", bad_t)):
        if np.any(mask):
            rejected[key] = int(np.count_nonzero(mask))
    inside = ~bad_p & ~bad_q & t_ok & (ti >= int(start_ns)) & (ti < int(end_ns))
    qs = np.where(inside, q, 0.0)
    sign = np.where(np.isfinite(s), np.sign(s), 0.0)
    with np.errstate(over="ignore"):  # absurd sizes overflow to inf, they do not raise
        buy = float(qs[sign > 0].sum())
        sell = float(qs[sign < 0].sum())
        unknown = float(qs[sign == 0].sum())
        dark = float(qs[dk].sum())
        lit = float(qs[~dk].sum())
    return MocInputs(*_inputs_from_sums(buy, sell, unknown, dark, lit, baseline_dark_lit), rejected)


def predict_moc(
    inputs: MocInputs,
    book_imbalance: float,
    price: float = math.nan,
    model: MocModel = MocModel(),  # noqa: B008 - frozen dataclass, immutable default
) -> MocPrediction:
    """Direction, size and confidence of the closing imbalance from the afternoon inputs."""
    book = _to_float(book_imbalance)
    if not (inputs.buy_volume + inputs.sell_volume > 0):
        return MocPrediction("NONE", 0.0, 0.0, 0.0, 0.0, math.nan, inputs.dark_lit_divergence, book)
    score_a, conf_a = moc_score(inputs.buy_share, inputs.dark_lit_divergence, book, model)
    score, confidence = float(score_a), float(conf_a)
    direction = "BUY" if score > 0 else "SELL" if score < 0 else "NONE"
    size = abs(inputs.buy_volume - inputs.sell_volume) * confidence / 100.0 if direction != "NONE" else 0.0
    px = _to_float(price)
    px = px if math.isfinite(px) and px > 0 else math.nan
    return MocPrediction(
        direction, size, size * px, confidence, score, inputs.flow_asymmetry, inputs.dark_lit_divergence, book
    )


class MocAccumulator:
    """Afternoon flow of one symbol, fed print by print; :meth:`predict` gives the MOC prediction.

    Same aggregation as :func:`moc_inputs`. ``start_ns``/``end_ns`` bound the window (see
    :func:`moc_window_ns`); :meth:`set_window` starts a new day.
    """

    def __init__(
        self,
        start_ns: int,
        end_ns: int,
        *,
        baseline_dark_lit: float = DEFAULT_BASELINE_DARK_LIT,
        model: MocModel = MocModel(),  # noqa: B008 - frozen dataclass, immutable default
    ) -> None:
        self.baseline_dark_lit = baseline_dark_lit
        self.model = model
        self.set_window(start_ns, end_ns)
        self.rejected: dict[str, int] = {}

    def set_window(self, start_ns: int, end_ns: int) -> None:
        """New window (a new day): clears the sums, keeps the rejection counters."""
        self.start_ns, self.end_ns = int(start_ns), int(end_ns)
        self._sums = [0.0, 0.0, 0.0, 0.0, 0.0]  # buy, sell, unknown, dark, lit
        self._last_price = math.nan

    def _count(self, key: str) -> None:
        self.rejected[key] = self.rejected.get(key, 0) + 1

    def update(self, ts_ns: int, price: float, size: float, side: int, is_dark: bool) -> None:
        """Add one equity print (shares); prints outside the window are ignored (not rejected)."""
        p, q = _to_float(price), _to_float(size)
        if not (math.isfinite(p) and p > 0):
            self._count("bad_price")
            return
        if not (math.isfinite(q) and q > 0):
            self._count("bad_size")
            return
        try:
            ts = int(ts_ns)
        except (TypeError, ValueError, OverflowError):
            self._count("bad_time")
            return
        if not (self.start_ns <= ts < self.end_ns):
            return
        sf = _to_float(side)
        if not math.isfinite(sf):
            sf = 0.0
        sums = self._sums
        sums[0 if sf > 0 else 1 if sf < 0 else 2] += q
        sums[3 if is_dark else 4] += q
        self._last_price = p

    def inputs(self) -> MocInputs:
        """The window's aggregates so far."""
        return MocInputs(*_inputs_from_sums(*self._sums, self.baseline_dark_lit), dict(self.rejected))

    def predict(self, book_imbalance: float, price: float | None = None) -> MocPrediction:
        """Prediction from the flow so far and the current book imbalance (price: last print's)."""
        px = self._last_price if price is None else price
        return predict_moc(self.inputs(), book_imbalance, px, self.model)

    def state(self) -> dict[str, Any]:
        """JSON-serialisable checkpoint."""
        return {
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "sums": list(self._sums),
            "last_price": self._last_price,
            "rejected": dict(self.rejected),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Load a checkpoint written by :meth:`state`."""
        self.set_window(int(state["start_ns"]), int(state["end_ns"]))
        self._sums = [float(x) for x in state["sums"]]
        self._last_price = float(state["last_price"])
        self.rejected = {str(k): int(c) for k, c in state["rejected"].items()}
