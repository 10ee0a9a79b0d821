"""14-day+ high-IV (SPEC §7; seed 000 lines 980–1012): pay up for premium only ahead of a catalyst.

**BUY CALLS** when all hold:

1. congress buying: net CONGRESS dollar flow (buys − sells) in the last ``congress_lookback_days``
   (30) is positive and above ``congress_min_buying`` ($0: the seed gives no amount);
2. call skew rising: rr25 (call IV − put IV at 25Δ) at least ``min_skew_change`` (0.5 vol point)
   *above* the mean of its last ``skew_trend_days`` (5) session closes;
3. spot above the gamma support: the put wall (``metrics["put_wall"]``), or the zero-gamma level
   when no put wall is known.

**BUY PUTS** when all hold:

1. insider selling: ≥ ``insider_min_sales`` (1) INSIDER events with direction −1 in the last
   ``insider_window_days`` (30);
2. put skew rising: rr25 at least ``min_skew_change`` *below* its recent mean;
3. spot below the gamma resistance: the call wall, or the zero-gamma level when unknown.

Both sides:

* a **catalyst inside the expiry** (seed line 1010): the next known earnings date must fall on or
  after today and strictly *before* the chosen expiry, so the report's reaction happens while the
  option lives whether it comes before the open or after the close. Without a known earnings
  date the strategy does not trade (the catalyst is the thesis);
* IV rank ≤ 80 (seed line 1011 "Avoid if IV rank > 80%") and ≥ ``min_iv_rank`` (50): the seed's
  premise is "IV elevated" (line 982) — below that this is the directional strategy's job;
* expiry 14–21 calendar days — the nearest such expiry after the earnings date;
* strike delta-targeted at ``target_delta`` (0.40): with IV high the listed strikes sit closer in
  probability terms, so targeting delta keeps the moneyness (and premium outlay) stable where a
  fixed "first OTM" rule would drift toward ATM;
* risk 2 % per position (seed line 1012, "high IV = expensive premium").

Confidence = 50 + 20 × skew change beyond 0.5 vol point (full at 2) + 15 × the insider/congress
evidence (congress $ up to $1M; insider sales beyond the minimum up to 3 more) + 15 × IV-rank room
below 80 (full at 50).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date
from typing import Annotated, NamedTuple

from pydantic import Field

from quanticity.calendar import NyseCalendar
from quanticity.messages import AltDataKind, Direction, FeatureSnapshot, OptionQuote, Signal
from quanticity.strategies.base import (
    LongDatedConfig,
    LongDatedStrategy,
    StrikeRule,
    confidence_score,
    et_datetime,
    excess,
    metric,
)


class FourteenDayHighIvConfig(LongDatedConfig):
    """Thresholds of the 14-day+ high-IV strategy."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9_]+$")] = "fourteen_day_high_iv"
    risk_pct: Annotated[float, Field(gt=0, le=5)] = 2.0  # seed 000 line 1012 "Max 2% per position"
    min_iv_rank: Annotated[float, Field(ge=0, le=100)] = 50.0  # spec silent: "IV elevated" (seed line 982)
    congress_min_buying: Annotated[float, Field(ge=0)] = 0.0  # seed line 1008 "Congress buying" (no amount)
    insider_min_sales: Annotated[int, Field(ge=1)] = 1  # seed line 1009 "Insider selling" (no count)
    strike_rule: StrikeRule = StrikeRule.DELTA  # spec silent
    target_delta: Annotated[float, Field(gt=0, lt=1)] = 0.40  # spec silent


class _SkewMove(NamedTuple):
    """Today's rr25, its change vs the recent mean, and how many days that mean covers."""

    rr25: float
    change: float
    days: int


class FourteenDayHighIvStrategy(LongDatedStrategy):
    """Calls/puts 14–21 DTE through an earnings date when flow, skew and gamma levels agree."""

    config: FourteenDayHighIvConfig

    def __init__(self, config: FourteenDayHighIvConfig | None = None, calendar: NyseCalendar | None = None) -> None:
        super().__init__(config or FourteenDayHighIvConfig(), calendar)

    def _evaluate(self, snap: FeatureSnapshot, now_ns: int, chain: Sequence[OptionQuote]) -> list[Signal]:
        cfg = self.config
        today = et_datetime(now_ns).date()
        rr25, skew_trend, skew_days = self._skew_trend(snap, today)  # always record the reading
        iv_rank, iv_block = self._iv_rank_gate(snap)
        if iv_block:
            return self._reject(snap.symbol, iv_block)
        if not (math.isfinite(iv_rank) and iv_rank >= cfg.min_iv_rank):
            return self._reject(snap.symbol, f"IV rank {iv_rank:.0f} < {cfg.min_iv_rank:g}: IV not elevated")
        earnings = self.alt.next_earnings(snap.symbol, today)
        if earnings is None:
            return self._reject(snap.symbol, "no earnings catalyst known")
        if (earnings - today).days >= cfg.dte_band.max_dte:
            return self._reject(snap.symbol, f"earnings {earnings} beyond the {cfg.dte_band.max_dte}-day expiry band")
        spot = snap.mid

        # --- calls ---------------------------------------------------------------------------
        congress = self.alt.window(snap.symbol, AltDataKind.CONGRESS, today, cfg.congress_lookback_days)
        congress_net = sum(r.direction * r.amount for r in congress)
        support_name, support = self._level(snap, "put_wall")
        call_fail: str | None = None
        if not (congress_net > 0 and congress_net > cfg.congress_min_buying):
            call_fail = f"congress net buying ${congress_net:+,.0f} not > ${cfg.congress_min_buying:,.0f}"
        elif not skew_trend >= cfg.min_skew_change:
            call_fail = f"rr25 change {skew_trend:+.4f} not ≥ {cfg.min_skew_change:g} (call skew not rising)"
        elif not spot > support:
            call_fail = f"spot {spot:.2f} not above gamma support {support_name} {support:.2f}"
        if call_fail is None:
            reasons = [
                f"congress net buying ${congress_net:+,.0f} in {cfg.congress_lookback_days}d",
                f"call skew rising: rr25 {rr25:+.4f} is {skew_trend:+.4f} vs its {skew_days}-day mean",
                f"spot {spot:.2f} above gamma support ({support_name}) {support:.2f}",
            ]
            evidence = excess(congress_net, 0.0, 1_000_000.0)
            inputs = {"congress_net": congress_net, "gamma_support": support}
            move = _SkewMove(rr25, skew_trend, skew_days)
            return self._emit(snap, now_ns, chain, today, earnings, Direction.BULLISH, move, evidence, reasons, inputs)

        # --- puts ----------------------------------------------------------------------------
        sells = self.alt.window(snap.symbol, AltDataKind.INSIDER, today, cfg.insider_window_days, direction=-1)
        resistance_name, resistance = self._level(snap, "call_wall")
        put_fail: str | None = None
        if len(sells) < cfg.insider_min_sales:
            put_fail = f"{len(sells)} insider sale(s) < {cfg.insider_min_sales}"
        elif not skew_trend <= -cfg.min_skew_change:
            put_fail = f"rr25 change {skew_trend:+.4f} not ≤ −{cfg.min_skew_change:g} (put skew not rising)"
        elif not spot < resistance:
            put_fail = f"spot {spot:.2f} not below gamma resistance {resistance_name} {resistance:.2f}"
        if put_fail is None:
            reasons = [
                f"insider selling: {len(sells)} sale(s) in {cfg.insider_window_days}d",
                f"put skew rising: rr25 {rr25:+.4f} is {skew_trend:+.4f} vs its {skew_days}-day mean",
                f"spot {spot:.2f} below gamma resistance ({resistance_name}) {resistance:.2f}",
            ]
            evidence = excess(float(len(sells)), cfg.insider_min_sales, cfg.insider_min_sales + 3.0)
            inputs = {"insider_sales": float(len(sells)), "gamma_resistance": resistance}
            move = _SkewMove(rr25, skew_trend, skew_days)
            return self._emit(snap, now_ns, chain, today, earnings, Direction.BEARISH, move, evidence, reasons, inputs)
        return self._reject(snap.symbol, f"calls: {call_fail}; puts: {put_fail}")

    @staticmethod
    def _level(snap: FeatureSnapshot, wall: str) -> tuple[str, float]:
        """The named gamma wall, or zero-gamma when the wall is unknown (NaN when both are)."""
        value = metric(snap, wall)
        if math.isfinite(value):
            return wall.replace("_", " "), value
        return "zero gamma", metric(snap, "zero_gamma")

    def _emit(
        self,
        snap: FeatureSnapshot,
        now_ns: int,
        chain: Sequence[OptionQuote],
        today: date,
        earnings: date,
        direction: Direction,
        move: _SkewMove,
        evidence: float,
        reasons: list[str],
        inputs: dict[str, float],
    ) -> list[Signal]:
        cfg = self.config
        iv_rank = metric(snap, "iv_rank")
        skew_move = move.change if direction is Direction.BULLISH else -move.change  # in the trade's favour
        confidence = confidence_score(
            50,
            [
                (20, excess(skew_move, cfg.min_skew_change, 4 * cfg.min_skew_change)),
                (15, evidence),
                (15, excess(iv_rank, cfg.max_iv_rank, 50.0)),
            ],
        )
        if confidence < cfg.min_confidence:
            return self._reject(snap.symbol, f"confidence {confidence} < {cfg.min_confidence}")
        selection = self._select(
            snap,
            chain,
            direction,
            today,
            cfg.dte_band,
            cfg.strike_rule,
            target_delta=cfg.target_delta,
            expiry_ok=lambda expiry: expiry > earnings,
        )
        if not selection.ok:
            return self._reject(snap.symbol, f"{selection.reason} after earnings {earnings}")
        reasons = [
            *reasons,
            f"earnings {earnings} before expiry {selection.quote.contract.expiry if selection.quote else '?'}",
            f"IV rank {iv_rank:.0f} in [{cfg.min_iv_rank:g}, {cfg.max_iv_rank:g}]",
        ]
        inputs = {
            **inputs,
            "rr25": move.rr25,
            "rr25_change": move.change,
            "rr25_days": float(move.days),
            "iv_rank": iv_rank,
            "days_to_earnings": float((earnings - today).days),
            "spot": snap.mid,
        }
        return [self._signal(snap, now_ns, direction, selection, confidence, reasons, inputs)]
