"""0DTE gamma scalp (SPEC §7; seed 000 lines 896–926): trade the pin at the max-|GEX| strike.

Trigger (all must hold):

1. spot (the snapshot mid) within ``max_distance_pct`` (0.1 %) of the max-|GEX| strike
   (``metrics["max_abs_gex_strike"]``), where dealer hedging is heaviest;
2. liquidity grade ≥ B (``metrics["liquidity_grade"]`` ≥ 2; 3 = A);
3. the L5 book imbalance "supports the direction": ``|imbalance_l5|`` ≥ ``min_imbalance``. The
   seed gives no number and no separate direction source, so **the direction is the sign of the
   L5 imbalance** (buyers stacked on the book → calls). Spot's side of the strike is reported in
   the reason and inputs but does not set the direction: at the strike itself it flips on every
   tick, which would make the signal flap;
4. inside the session and strictly before the 0DTE cut-off (15:30 ET, or 30 minutes before an
   early close), so the risk gate's "no 0DTE entries after 15:30" never has to reject it.

Contract: first OTM strike of today's expiry (0 sessions to expiry), liquidity-filtered
(option spread ≤ 10 % of mid, OI ≥ 100). Risk 2 % per trade (seed line 926).

Confidence = 50 + 20 × closeness to the strike + 20 × imbalance beyond its threshold (up to
±1) + 10 when liquidity is A.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated

from pydantic import Field

from quanticity.calendar import NyseCalendar
from quanticity.messages import Direction, FeatureSnapshot, OptionQuote, Signal
from quanticity.strategies.base import (
    LIQUIDITY_GRADES,
    NS,
    ZERO_DTE_SYMBOLS,
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
)


class ZeroDteGammaConfig(StrategyConfig):
    """Thresholds of the 0DTE gamma scalp; defaults are the seed's numbers where it has them."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9_]+$")] = "zero_dte_gamma"
    symbols: tuple[Ticker, ...] = ZERO_DTE_SYMBOLS  # seed 000 line 881
    risk_pct: Annotated[float, Field(gt=0, le=5)] = 2.0  # seed 000 line 926 "Max 2% per trade"
    max_distance_pct: Annotated[float, Field(gt=0)] = 0.1  # seed 000 line 923 "within 0.1%"
    min_liquidity_grade: Annotated[float, Field(ge=0, le=3)] = 2.0  # seed 000 line 924 ">= B"
    min_imbalance: Annotated[float, Field(gt=0, lt=1)] = 0.25  # "supports direction": spec silent
    strike_rule: StrikeRule = StrikeRule.FIRST_OTM  # SPEC §7 "first OTM strike"
    dte_band: DteBand = DteBand(min_dte=0, max_dte=0)


class ZeroDteGammaStrategy(Strategy):
    """Buys the first OTM 0DTE option in the book's direction when spot pins the max-gamma strike."""

    config: ZeroDteGammaConfig

    def __init__(self, config: ZeroDteGammaConfig | None = None, calendar: NyseCalendar | None = None) -> None:
        super().__init__(config or ZeroDteGammaConfig(), calendar)

    def _evaluate(self, snap: FeatureSnapshot, now_ns: int, chain: Sequence[OptionQuote]) -> list[Signal]:
        cfg = self.config
        session = self.sessions.session_at(now_ns)
        if session is None:
            return self._reject(snap.symbol, "not a trading day")
        if not session.open_ns <= now_ns < session.cutoff_ns:
            cutoff = et_datetime(session.cutoff_ns)
            return self._reject(snap.symbol, f"outside the 0DTE entry window (open – {cutoff:%H:%M} ET)")

        spot = snap.mid
        strike = metric(snap, "max_abs_gex_strike")
        if not math.isfinite(strike) or strike <= 0:
            return self._reject(snap.symbol, "max-gamma strike unknown")
        distance_pct = abs(spot - strike) / strike * 100
        if distance_pct > cfg.max_distance_pct:
            return self._reject(
                snap.symbol, f"spot {spot:.2f} {distance_pct:.3f}% from max-gamma {strike:g} > {cfg.max_distance_pct}%"
            )
        grade = metric(snap, "liquidity_grade")
        if not math.isfinite(grade) or grade < cfg.min_liquidity_grade:
            return self._reject(snap.symbol, f"liquidity grade {LIQUIDITY_GRADES.get(grade, '?')} below minimum")
        imbalance = finite(snap.imbalance_l5)
        if not math.isfinite(imbalance) or abs(imbalance) < cfg.min_imbalance:
            return self._reject(snap.symbol, f"L5 imbalance {imbalance:+.2f} weaker than ±{cfg.min_imbalance}")
        direction = Direction.BULLISH if imbalance > 0 else Direction.BEARISH

        today = et_datetime(now_ns).date()
        selection = self._select(snap, chain, direction, today, cfg.dte_band, cfg.strike_rule)
        if not selection.ok:
            return self._reject(snap.symbol, selection.reason)

        confidence = confidence_score(
            50,
            [
                (20, excess(distance_pct, cfg.max_distance_pct, 0.0)),
                (20, excess(abs(imbalance), cfg.min_imbalance, 1.0)),
                (10, 1.0 if grade >= 3 else 0.0),
            ],
        )
        if confidence < cfg.min_confidence:
            return self._reject(snap.symbol, f"confidence {confidence} < {cfg.min_confidence}")
        side = "above" if spot > strike else "below" if spot < strike else "at"
        grade_label = LIQUIDITY_GRADES.get(grade, f"{grade:g}")
        min_label = LIQUIDITY_GRADES.get(cfg.min_liquidity_grade, f"{cfg.min_liquidity_grade:g}")
        reasons = [
            f"spot {spot:.2f} within {distance_pct:.3f}% of max-gamma strike {strike:g} "
            f"(≤ {cfg.max_distance_pct:g}%, {side} it)",
            f"liquidity {grade_label} ≥ {min_label}",
            f"L5 imbalance {imbalance:+.2f} supports {right_for(direction).name} (|imb| ≥ {cfg.min_imbalance:g})",
            f"{(session.cutoff_ns - now_ns) / NS / 60:.0f} min before the 0DTE cut-off "
            f"{et_datetime(session.cutoff_ns):%H:%M} ET",
        ]
        inputs = {
            "max_abs_gex_strike": strike,
            "distance_pct": distance_pct,
            "liquidity_grade": grade,
            "imbalance_l5": imbalance,
            "imbalance_l1": finite(snap.imbalance_l1),
            "spread_bps": finite(snap.spread_bps),
            "gex": metric(snap, "gex"),
            "zero_gamma": metric(snap, "zero_gamma"),
            "vpin": metric(snap, "vpin"),
            "minutes_to_cutoff": (session.cutoff_ns - now_ns) / NS / 60,
        }
        return [self._signal(snap, now_ns, direction, selection, confidence, reasons, inputs)]
