"""MOC imbalance (SPEC §7; seed 000 lines 954–978): detect 14:00–15:30 ET, enter at 15:30.

Inputs (units as :mod:`quanticity.analytics.moc` produces them):

* ``metrics["moc_direction"]`` +1 (buy imbalance predicted) / −1 / 0 and
  ``metrics["moc_confidence"]`` 0–100, from the analytics predictor;
* flow asymmetry — the dominant side's share of the afternoon's classified volume, a fraction in
  [0.5, 1] — and dark/lit divergence — (dark/lit) / baseline − 1, a fraction. The snapshot does not
  carry them yet: they are read from ``metrics["moc_flow_asymmetry"]`` and
  ``metrics["moc_dark_lit_divergence"]``, or from the optional ``moc`` mapping passed to
  :meth:`MocImbalanceStrategy.on_features` (keys ``flow_asymmetry``, ``dark_lit_divergence``, and
  optionally ``direction`` and ``confidence``), which takes precedence.

Trigger (strict inequalities, as the seed states them): flow asymmetry > 0.60, dark/lit divergence
> 0.10, predictor confidence > 70, a non-zero direction.

Phases (all relative to the session's close, so an early close shifts them):

* **detection**, close − 2 h → cut-off (14:00–15:30 ET): every snapshot's reading is recorded;
  no entry is ever made here;
* **entry**, cut-off → cut-off + ``entry_window_s`` (15:30–15:32 ET): the first snapshot with a
  passing reading whose direction agrees with the last detection-phase reading enters, once per
  symbol per session. A direction that only appears at the entry snapshot is not an afternoon
  imbalance and is refused.

Contract: first OTM strike of the 0DTE expiry; risk 1 % (seed line 978). "Hard stop if direction
flips" is an exit rule for the position manager, not an entry condition here.

Note for the integration: the risk gate rejects 0DTE entries at or after the cut-off (SPEC §8), so
with the default expiry every MOC entry is refused there unless the gate exempts this strategy
(``dte_band`` can be set to 1DTE instead).

Confidence = 50 + 20 × predictor confidence beyond 70 (full at 100) + 15 × asymmetry beyond 0.60
(full at 0.80) + 15 × divergence beyond 0.10 (full at 0.30).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import Field

from quanticity.calendar import NyseCalendar
from quanticity.messages import Direction, FeatureSnapshot, OptionQuote, Signal
from quanticity.strategies.base import (
    NS,
    DteBand,
    Strategy,
    StrategyConfig,
    StrikeRule,
    Ticker,
    confidence_score,
    et_datetime,
    excess,
    finite,
    metric,
    right_for,
    sign,
)

METRIC_FLOW_ASYMMETRY = "moc_flow_asymmetry"
METRIC_DARK_LIT_DIVERGENCE = "moc_dark_lit_divergence"


class MocImbalanceConfig(StrategyConfig):
    """Thresholds and windows of the MOC imbalance strategy."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9_]+$")] = "moc_imbalance"
    symbols: tuple[Ticker, ...] = ("SPY", "QQQ", "IWM")  # seed 000 line 955
    risk_pct: Annotated[float, Field(gt=0, le=5)] = 1.0  # seed 000 line 978 "Max 1% per trade"
    min_flow_asymmetry: Annotated[float, Field(ge=0.5, lt=1)] = 0.60  # seed 000 line 974 "> 60%"
    min_dark_lit_divergence: Annotated[float, Field(ge=0)] = 0.10  # seed 000 line 975 "> 10%"
    min_predictor_confidence: Annotated[float, Field(ge=0, lt=100)] = 70.0  # seed 000 line 976 "> 70%"
    detect_before_close_s: Annotated[float, Field(gt=0)] = 7200.0  # seed 000 line 958 "2:00-3:30 PM"
    entry_window_s: Annotated[float, Field(gt=0)] = 120.0  # spec silent: "enter 15:30" = 15:30–15:32
    require_detection: bool = True  # the entry direction must have been seen in the detection phase
    strike_rule: StrikeRule = StrikeRule.FIRST_OTM
    dte_band: DteBand = DteBand(min_dte=0, max_dte=0)


class MocImbalanceStrategy(Strategy):
    """Buys the 0DTE first OTM option on the side of the predicted closing imbalance at 15:30."""

    config: MocImbalanceConfig

    def __init__(self, config: MocImbalanceConfig | None = None, calendar: NyseCalendar | None = None) -> None:
        super().__init__(config or MocImbalanceConfig(), calendar)
        self.detected: dict[str, tuple[str, int, int]] = {}  # symbol → (session, direction, readings)
        self.entered: dict[str, str] = {}  # symbol → ISO date of the session already entered
        self._moc: Mapping[str, float] | None = None

    def on_features(
        self,
        snap: FeatureSnapshot,
        now_ns: int,
        chain: Sequence[OptionQuote] = (),
        moc: Mapping[str, float] | None = None,
    ) -> list[Signal]:
        """Evaluate ``snap``; ``moc`` supplies predictor inputs the snapshot does not carry."""
        self._moc = moc
        try:
            return super().on_features(snap, now_ns, chain)
        finally:
            self._moc = None

    def _reading(self, snap: FeatureSnapshot) -> tuple[int, float, float, float]:
        """(direction, confidence, flow asymmetry, dark/lit divergence); NaN where unknown."""
        extra = self._moc or {}
        direction = finite(extra.get("direction", metric(snap, "moc_direction")))
        confidence = finite(extra.get("confidence", metric(snap, "moc_confidence")))
        asymmetry = finite(extra.get("flow_asymmetry", metric(snap, METRIC_FLOW_ASYMMETRY)))
        divergence = finite(extra.get("dark_lit_divergence", metric(snap, METRIC_DARK_LIT_DIVERGENCE)))
        return sign(direction), confidence, asymmetry, divergence

    def _passes(self, confidence: float, asymmetry: float, divergence: float) -> str | None:
        """None when the three SPEC gates pass, else the first failing one (unknown fails)."""
        cfg = self.config
        if not asymmetry > cfg.min_flow_asymmetry:
            return f"flow asymmetry {asymmetry:.3f} ≤ {cfg.min_flow_asymmetry:g}"
        if not divergence > cfg.min_dark_lit_divergence:
            return f"dark/lit divergence {divergence:.3f} ≤ {cfg.min_dark_lit_divergence:g}"
        if not confidence > cfg.min_predictor_confidence:
            return f"predictor confidence {confidence:.1f} ≤ {cfg.min_predictor_confidence:g}"
        return None

    def _evaluate(self, snap: FeatureSnapshot, now_ns: int, chain: Sequence[OptionQuote]) -> list[Signal]:
        cfg = self.config
        session = self.sessions.session_at(now_ns)
        if session is None:
            return self._reject(snap.symbol, "not a trading day")
        day = session.day.isoformat()
        detect_start = session.at_offset_before_close(cfg.detect_before_close_s)
        direction_sign, confidence, asymmetry, divergence = self._reading(snap)
        if detect_start <= now_ns < session.cutoff_ns:
            prev = self.detected.get(snap.symbol)
            count = prev[2] + 1 if prev and prev[0] == day and prev[1] == direction_sign else 1
            self.detected[snap.symbol] = (day, direction_sign, count)
            return self._reject(snap.symbol, "detection phase: no entry before the cut-off")
        if not session.cutoff_ns <= now_ns < session.cutoff_ns + int(cfg.entry_window_s * NS):
            return self._reject(snap.symbol, "outside the MOC detection and entry windows")
        if self.entered.get(snap.symbol) == day:
            return self._reject(snap.symbol, "already entered this session")
        failed = self._passes(confidence, asymmetry, divergence)
        if failed:
            return self._reject(snap.symbol, failed)
        if direction_sign == 0:
            return self._reject(snap.symbol, "no predicted imbalance direction")
        detected = self.detected.get(snap.symbol)
        detected_count = detected[2] if detected and detected[0] == day and detected[1] == direction_sign else 0
        if cfg.require_detection and detected_count == 0:
            return self._reject(snap.symbol, "direction not seen in the detection phase")
        direction = Direction.BULLISH if direction_sign > 0 else Direction.BEARISH

        selection = self._select(snap, chain, direction, session.day, cfg.dte_band, cfg.strike_rule)
        if not selection.ok:
            return self._reject(snap.symbol, selection.reason)
        score = confidence_score(
            50,
            [
                (20, excess(confidence, cfg.min_predictor_confidence, 100.0)),
                (15, excess(asymmetry, cfg.min_flow_asymmetry, 0.80)),
                (15, excess(divergence, cfg.min_dark_lit_divergence, 0.30)),
            ],
        )
        if score < cfg.min_confidence:
            return self._reject(snap.symbol, f"confidence {score} < {cfg.min_confidence}")
        self.entered[snap.symbol] = day
        side = "buy" if direction_sign > 0 else "sell"
        detect_text = (
            f"{detected_count} detection-phase reading(s) agree since {et_datetime(detect_start):%H:%M} ET"
            if detected_count
            else "detection not required"
        )
        reasons = [
            f"MOC entry at {et_datetime(now_ns):%H:%M:%S} ET (cut-off {et_datetime(session.cutoff_ns):%H:%M})",
            f"predicted {side} imbalance → {right_for(direction).name}",
            f"flow asymmetry {asymmetry:.1%} > {cfg.min_flow_asymmetry:.0%}",
            f"dark/lit divergence {divergence:+.1%} > {cfg.min_dark_lit_divergence:.0%}",
            f"predictor confidence {confidence:.1f} > {cfg.min_predictor_confidence:g}",
            detect_text,
        ]
        inputs = {
            "moc_direction": float(direction_sign),
            "moc_confidence": confidence,
            "moc_flow_asymmetry": asymmetry,
            "moc_dark_lit_divergence": divergence,
            "moc_detect_readings": float(detected_count),
            "imbalance_l5": finite(snap.imbalance_l5),
            "liquidity_grade": metric(snap, "liquidity_grade"),
        }
        return [self._signal(snap, now_ns, direction, selection, score, reasons, inputs)]

    def state(self) -> dict[str, Any]:
        """Counters, the detection-phase readings and the sessions already entered."""
        return {
            **super().state(),
            "detected": {s: list(v) for s, v in self.detected.items()},
            "entered": dict(self.entered),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Load a checkpoint written by :meth:`state`."""
        super().restore(state)
        self.detected = {str(s): (str(v[0]), int(v[1]), int(v[2])) for s, v in state.get("detected", {}).items()}
        self.entered = {str(k): str(v) for k, v in state.get("entered", {}).items()}
