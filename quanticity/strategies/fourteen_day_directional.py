"""14-day+ directional (SPEC §7; seed 000 lines 1014–1046): follow institutional money, 14–21 DTE.

**BUY CALLS** when all hold:

1. congress buying: the CONGRESS events with direction +1 in the last ``congress_lookback_days``
   (30) sum to more than ``congress_min_buying`` ($500K, seed line 1036);
2. dark-pool accumulation (see below) in the bullish direction;
3. flow momentum positive: ``metrics["flow_momentum"]`` > 0 (the seed asks for a "3-day trend";
   the snapshot's momentum scalar is the proxy until analytics publish a multi-day one).

**BUY PUTS** when all hold:

1. insider selling cluster: ≥ ``insider_cluster_min`` (3, seed line 1037 "3+") INSIDER events with
   direction −1 in the last ``insider_window_days`` (30) — re-deliveries of one filing count once;
2. dark-pool distribution: the same test as accumulation, bearish;
3. put skew increasing: rr25 (call IV − put IV at 25Δ) is at least ``min_skew_change`` (0.5 vol
   point) *below* the mean of its last ``skew_trend_days`` (5) session closes.

**Dark-pool accumulation / distribution.** DARK_POOL events carry a direction (+1 print above the
market / accumulation, −1 below / distribution) and a dollar ``amount``. The recent flow is the
signed dollar sum over the last ``dark_pool_window_days`` (5) days. With at least
``dark_pool_min_history_days`` (30) days of stored dark-pool history, it must lie more than
``dark_pool_sigma`` (2σ, seed line 1036) from the mean of the earlier non-overlapping windows of
the same length in the ``dark_pool_baseline_days`` (60) before it. With less history (a fresh
start) σ means nothing, so the fallback is ``dark_pool_min_prints`` (3) prints in the wanted
direction in the recent window and a net flow of the wanted sign.

Both sides: skip when IV rank > 80 (or unknown); never within ``earnings_blackout_days`` (7) days
before a known earnings date (the seed exits "before earnings", so entering just before is
pointless); expiry 14–21 calendar days; ATM strike when the confidence reaches
``high_conviction`` (75), first OTM otherwise (seed line 1038 "ATM for high conviction, OTM for
lottery tickets"); risk 3 % (seed line 1042).

Confidence (calls) = 50 + 15 × congress buying beyond $500K (full at $2M) + 20 × dark-pool
strength (σ beyond 2, full at 4; or prints beyond 3, full at 6) + 15 × IV-rank room below 80
(full at 20). Puts: the congress term becomes the insider cluster (beyond 3, full at 6) and the
IV term the skew change (beyond 0.5 vol point, full at 2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Annotated

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
    sign,
)


class FourteenDayDirectionalConfig(LongDatedConfig):
    """Thresholds of the 14-day+ directional strategy."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9_]+$")] = "fourteen_day_directional"
    risk_pct: Annotated[float, Field(gt=0, le=5)] = 3.0  # seed 000 line 1042 "Max 3% risk per position"
    congress_min_buying: Annotated[float, Field(ge=0)] = 500_000.0  # seed 000 line 1036 "> $500K"
    insider_cluster_min: Annotated[int, Field(ge=1)] = 3  # seed 000 line 1037 "cluster (3+)"
    dark_pool_sigma: Annotated[float, Field(gt=0)] = 2.0  # seed 000 line 1036 "> 2σ"
    dark_pool_window_days: Annotated[int, Field(ge=1)] = 5  # spec silent
    dark_pool_baseline_days: Annotated[int, Field(ge=1)] = 60  # spec silent
    dark_pool_min_history_days: Annotated[int, Field(ge=1)] = 30  # spec silent
    dark_pool_min_prints: Annotated[int, Field(ge=1)] = 3  # spec silent (fallback without history)
    earnings_blackout_days: Annotated[int, Field(ge=0)] = 7  # spec silent
    high_conviction: Annotated[int, Field(ge=0, le=100)] = 75  # spec silent: ATM at/above, first OTM below


@dataclass(frozen=True, slots=True)
class DarkPoolReading:
    """The dark-pool test's numbers, for the decision, the reason chain and ``inputs``."""

    net: float  # signed $ over the recent window
    prints: int  # prints in the wanted direction in the recent window
    z: float  # NaN when the fallback was used
    method: str  # "sigma" or "prints"
    ok: bool


def _flat_baseline_z(diff: float) -> float:
    """z against a baseline with zero spread: any departure is infinitely unusual, none is 0."""
    return math.copysign(math.inf, diff) if diff != 0 else 0.0


class FourteenDayDirectionalStrategy(LongDatedStrategy):
    """Calls on congress + dark-pool accumulation + flow; puts on insider cluster + distribution + skew."""

    config: FourteenDayDirectionalConfig

    def __init__(
        self, config: FourteenDayDirectionalConfig | None = None, calendar: NyseCalendar | None = None
    ) -> None:
        super().__init__(config or FourteenDayDirectionalConfig(), calendar)

    def dark_pool(self, symbol: str, today: date, want: int) -> DarkPoolReading:
        """Accumulation (``want`` = +1) or distribution (−1) test over the stored DARK_POOL events."""
        cfg = self.config
        w = cfg.dark_pool_window_days
        events = self.alt.window(symbol, AltDataKind.DARK_POOL, today, w + cfg.dark_pool_baseline_days)

        def window_sum(k: int) -> float:
            end = today - timedelta(days=w * k)
            start = end - timedelta(days=w)
            return sum(r.direction * r.amount for r in events if start < r.day <= end)

        net = window_sum(0)
        prints = sum(1 for r in events if r.direction == want and today - timedelta(days=w) < r.day <= today)
        first = self.alt.first_day(symbol, AltDataKind.DARK_POOL)
        if first is not None and (today - first).days >= cfg.dark_pool_min_history_days:
            windows = cfg.dark_pool_baseline_days // w
            baseline = [window_sum(k) for k in range(1, windows + 1) if today - timedelta(days=w * k) >= first]
            if len(baseline) >= 3:
                mean = sum(baseline) / len(baseline)
                sd = math.sqrt(sum((x - mean) ** 2 for x in baseline) / (len(baseline) - 1))
                z = (net - mean) / sd if sd > 0 else _flat_baseline_z(net - mean)
                return DarkPoolReading(net, prints, z, "sigma", want * z > cfg.dark_pool_sigma)
        ok = prints >= cfg.dark_pool_min_prints and sign(net) == want
        return DarkPoolReading(net, prints, math.nan, "prints", ok)

    def _dark_pool_text(self, dp: DarkPoolReading, want: int) -> str:
        cfg = self.config
        word = "accumulation" if want > 0 else "distribution"
        if dp.method == "sigma":
            return (
                f"dark-pool {word} ${dp.net:+,.0f} over {cfg.dark_pool_window_days}d at {dp.z:+.1f}σ "
                f"(beyond {cfg.dark_pool_sigma:g}σ)"
            )
        return (
            f"dark-pool {word} ${dp.net:+,.0f} over {cfg.dark_pool_window_days}d with {dp.prints} prints "
            f"≥ {cfg.dark_pool_min_prints} (short history: print count instead of σ)"
        )

    def _dark_pool_strength(self, dp: DarkPoolReading) -> float:
        cfg = self.config
        if dp.method == "sigma":
            return excess(abs(dp.z), cfg.dark_pool_sigma, 2 * cfg.dark_pool_sigma)
        return excess(float(dp.prints), cfg.dark_pool_min_prints, 2.0 * cfg.dark_pool_min_prints)

    def _evaluate(self, snap: FeatureSnapshot, now_ns: int, chain: Sequence[OptionQuote]) -> list[Signal]:
        cfg = self.config
        today = et_datetime(now_ns).date()
        rr25, skew_trend, skew_days = self._skew_trend(snap, today)  # always record the reading
        iv_rank, iv_block = self._iv_rank_gate(snap)
        if iv_block:
            return self._reject(snap.symbol, iv_block)
        earnings = self.alt.next_earnings(snap.symbol, today)
        if earnings is not None and (earnings - today).days <= cfg.earnings_blackout_days:
            return self._reject(
                snap.symbol, f"earnings {earnings} within {cfg.earnings_blackout_days}d: no new 14-day entries"
            )
        earnings_text = (
            f"earnings {earnings} more than {cfg.earnings_blackout_days}d away"
            if earnings
            else "no earnings date known"
        )
        iv_text = f"IV rank {iv_rank:.0f} ≤ {cfg.max_iv_rank:g}" if math.isfinite(iv_rank) else "IV rank unknown"
        momentum = metric(snap, "flow_momentum")

        # --- calls ---------------------------------------------------------------------------
        buys = self.alt.window(snap.symbol, AltDataKind.CONGRESS, today, cfg.congress_lookback_days, direction=1)
        buying = sum(r.amount for r in buys)
        call_fail: str | None = None
        dp_bull = self.dark_pool(snap.symbol, today, +1)
        if not buying > cfg.congress_min_buying:
            call_fail = f"congress buying ${buying:,.0f} ≤ ${cfg.congress_min_buying:,.0f}"
        elif not dp_bull.ok:
            call_fail = "no dark-pool accumulation"
        elif not momentum > 0:
            call_fail = f"flow momentum {momentum:+,.0f} not positive"
        if call_fail is None:
            confidence = confidence_score(
                50,
                [
                    (15, excess(buying, cfg.congress_min_buying, 4 * cfg.congress_min_buying)),
                    (20, self._dark_pool_strength(dp_bull)),
                    (15, excess(iv_rank, cfg.max_iv_rank, 20.0)),
                ],
            )
            reasons = [
                f"congress buying ${buying:,.0f} in {cfg.congress_lookback_days}d "
                f"({len(buys)} trade(s)) > ${cfg.congress_min_buying:,.0f}",
                self._dark_pool_text(dp_bull, +1),
                f"flow momentum {momentum:+,.0f} > 0",
                iv_text,
                earnings_text,
            ]
            inputs = {
                "congress_buying": buying,
                "congress_buys": float(len(buys)),
                "dark_pool_net": dp_bull.net,
                "dark_pool_prints": float(dp_bull.prints),
                "dark_pool_z": dp_bull.z,
                "flow_momentum": momentum,
            }
            return self._emit(snap, now_ns, chain, today, Direction.BULLISH, confidence, reasons, inputs, iv_rank)

        # --- puts ----------------------------------------------------------------------------
        sells = self.alt.window(snap.symbol, AltDataKind.INSIDER, today, cfg.insider_window_days, direction=-1)
        put_fail: str | None = None
        dp_bear = self.dark_pool(snap.symbol, today, -1)
        if len(sells) < cfg.insider_cluster_min:
            put_fail = f"{len(sells)} insider sale(s) < cluster of {cfg.insider_cluster_min}"
        elif not dp_bear.ok:
            put_fail = "no dark-pool distribution"
        elif not skew_trend <= -cfg.min_skew_change:
            put_fail = f"rr25 change {skew_trend:+.4f} not ≤ −{cfg.min_skew_change:g} (put skew not increasing)"
        if put_fail is None:
            confidence = confidence_score(
                50,
                [
                    (15, excess(float(len(sells)), cfg.insider_cluster_min, 2.0 * cfg.insider_cluster_min)),
                    (20, self._dark_pool_strength(dp_bear)),
                    (15, excess(-skew_trend, cfg.min_skew_change, 4 * cfg.min_skew_change)),
                ],
            )
            reasons = [
                f"insider selling cluster: {len(sells)} sales in {cfg.insider_window_days}d "
                f"≥ {cfg.insider_cluster_min}",
                self._dark_pool_text(dp_bear, -1),
                f"put skew increasing: rr25 {rr25:+.4f} is {skew_trend:+.4f} vs its {skew_days}-day mean",
                iv_text,
                earnings_text,
            ]
            inputs = {
                "insider_sales": float(len(sells)),
                "dark_pool_net": dp_bear.net,
                "dark_pool_prints": float(dp_bear.prints),
                "dark_pool_z": dp_bear.z,
                "rr25": rr25,
                "rr25_change": skew_trend,
                "rr25_days": float(skew_days),
            }
            return self._emit(snap, now_ns, chain, today, Direction.BEARISH, confidence, reasons, inputs, iv_rank)
        return self._reject(snap.symbol, f"calls: {call_fail}; puts: {put_fail}")

    def _emit(
        self,
        snap: FeatureSnapshot,
        now_ns: int,
        chain: Sequence[OptionQuote],
        today: date,
        direction: Direction,
        confidence: int,
        reasons: list[str],
        inputs: dict[str, float],
        iv_rank: float,
    ) -> list[Signal]:
        cfg = self.config
        if confidence < cfg.min_confidence:
            return self._reject(snap.symbol, f"confidence {confidence} < {cfg.min_confidence}")
        high = confidence >= cfg.high_conviction
        rule = StrikeRule.ATM if high else StrikeRule.FIRST_OTM
        selection = self._select(snap, chain, direction, today, cfg.dte_band, rule)
        if not selection.ok:
            return self._reject(snap.symbol, selection.reason)
        conviction = (
            f"confidence {confidence} ≥ {cfg.high_conviction}: ATM"
            if high
            else f"confidence {confidence} < {cfg.high_conviction}: first OTM"
        )
        inputs = {**inputs, "iv_rank": iv_rank, "high_conviction": 1.0 if high else 0.0}
        return [self._signal(snap, now_ns, direction, selection, confidence, [*reasons, conviction], inputs)]
