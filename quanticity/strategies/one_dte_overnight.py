"""1DTE overnight (SPEC §7; seed 000 lines 928–952): position for tomorrow at the 15:30 ET check.

Trigger (all must hold), evaluated once per symbol per session at the check:

1. **Skew shift**: today's 25-delta risk reversal (``metrics["rr25"]`` = IV(25Δ call) − IV(25Δ
   put)) is more than ``skew_sigma`` (1σ) away from the mean of the previous ``skew_window_days``
   (20, the seed's "20day_avg") sessions' closing readings, needing at least
   ``min_skew_days`` (10) of them. The strategy keeps that history itself: every snapshot, at any
   time of day, updates today's reading (the last one of a session is its close). Direction =
   the shift's sign: calls getting richer (rr25 up) → bullish, puts richer → bearish.
2. **Greek flow agrees**: the seed's "greek flow net delta" is not a snapshot scalar yet, so its
   proxy is the option premium flow: ``metrics["net_premium"]`` (bullish positive: bought calls
   and sold puts add delta) must have the direction's sign, and ``metrics["flow_momentum"]``
   must not point the other way (0 is fine). Replace with net delta once analytics publish it.
3. **No opposing congress trades**: no CONGRESS :class:`~quanticity.messages.AltDataEvent` for
   the symbol against the direction in the last ``congress_lookback_days`` (30) days. Congress
   trades in the same direction raise the confidence.

Timing: the check runs at the 0DTE cut-off (15:30 ET, 30 minutes before an early close) and
accepts the first snapshot with complete data in the following ``check_window_s`` (5 min);
after a decision (signal or not) the symbol is not re-checked that session, so the rule is one
test per day, not a search over the afternoon's noise.

Contract: first OTM strike of the next session's expiry (1 session to expiry: Friday → Monday).
Risk 2 % (SPEC §8 gives 1DTE 2–3 %; the seed only says "sized for overnight margin").

Confidence = 50 + 25 × skew shift beyond 1σ (full at 3σ) + 15 when flow momentum agrees
(not just "not opposing") + 10 when congress traded the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import Field

from quanticity.calendar import NyseCalendar
from quanticity.messages import AltDataEvent, AltDataKind, Direction, FeatureSnapshot, OptionQuote, Signal
from quanticity.strategies.base import (
    NS,
    ZERO_DTE_SYMBOLS,
    AltDataBook,
    DailySeries,
    DteBand,
    Strategy,
    StrategyConfig,
    StrikeRule,
    Ticker,
    confidence_score,
    direction_sign,
    et_datetime,
    excess,
    metric,
    right_for,
    sign,
)


class OneDteOvernightConfig(StrategyConfig):
    """Thresholds of the 1DTE overnight strategy."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9_]+$")] = "one_dte_overnight"
    symbols: tuple[Ticker, ...] = ZERO_DTE_SYMBOLS  # seed 000 line 881
    risk_pct: Annotated[float, Field(gt=0, le=5)] = 2.0  # SPEC §8 "1DTE 2–3 %" (low end)
    skew_sigma: Annotated[float, Field(gt=0)] = 1.0  # seed 000 line 949 "> 1 std dev from mean"
    skew_window_days: Annotated[int, Field(ge=2)] = 20  # seed 000 line 935 "20day_avg"
    min_skew_days: Annotated[int, Field(ge=2)] = 10  # spec silent: σ of < 10 days is noise
    congress_lookback_days: Annotated[int, Field(ge=0)] = 30  # spec silent
    check_window_s: Annotated[float, Field(gt=0)] = 300.0  # spec silent: the 15:30 check lasts 5 min
    strike_rule: StrikeRule = StrikeRule.FIRST_OTM  # spec silent; same rule as the 0DTE scalp
    dte_band: DteBand = DteBand(min_dte=1, max_dte=1)


class OneDteOvernightStrategy(Strategy):
    """Buys the next session's first OTM option when skew, flow and congress line up at 15:30."""

    config: OneDteOvernightConfig

    def __init__(self, config: OneDteOvernightConfig | None = None, calendar: NyseCalendar | None = None) -> None:
        super().__init__(config or OneDteOvernightConfig(), calendar)
        self.rr25 = DailySeries(self.config.skew_window_days)
        self.alt = AltDataBook(retention_days=max(120, self.config.congress_lookback_days))
        self.checked: dict[str, str] = {}  # symbol → ISO date of the session already checked

    def on_alt_data(self, event: AltDataEvent) -> None:
        """Keep the symbol's congress trades and prior sessions' closing rr25 (the skew baseline)."""
        if event.kind is AltDataKind.VOL_CLOSE:
            self._record_vol_close(event, self.rr25)
        elif event.kind is AltDataKind.CONGRESS and event.symbol in self.config.symbols:
            self.alt.add(event)

    def _evaluate(self, snap: FeatureSnapshot, now_ns: int, chain: Sequence[OptionQuote]) -> list[Signal]:
        cfg = self.config
        today = et_datetime(now_ns).date()
        rr25 = metric(snap, "rr25")
        session = self.sessions.session(today)
        if session is not None and now_ns < session.close_ns:
            self.rr25.update(snap.symbol, today, rr25)  # history first: every snapshot feeds it
        if session is None:
            return self._reject(snap.symbol, "not a trading day")
        check_end = session.cutoff_ns + int(cfg.check_window_s * NS)
        if not session.cutoff_ns <= now_ns < check_end:
            return self._reject(snap.symbol, f"not the {et_datetime(session.cutoff_ns):%H:%M} ET check")
        if self.checked.get(snap.symbol) == today.isoformat():
            return self._reject(snap.symbol, "already checked this session")

        z, mean, sd, n = self.rr25.zscore(snap.symbol, today, rr25, cfg.min_skew_days)
        net_premium = metric(snap, "net_premium")
        momentum = metric(snap, "flow_momentum")
        if not math.isfinite(z) or not math.isfinite(net_premium) or not math.isfinite(momentum):
            # incomplete data: let the next snapshot of the check window decide
            return self._reject(snap.symbol, f"incomplete data at the check (rr25 z {z}, {n} days of history)")
        self.checked[snap.symbol] = today.isoformat()

        if abs(z) <= cfg.skew_sigma:
            return self._reject(snap.symbol, f"rr25 shift {z:+.2f}σ within ±{cfg.skew_sigma:g}σ")
        direction = Direction.BULLISH if z > 0 else Direction.BEARISH
        want = direction_sign(direction)
        if sign(net_premium) != want:
            return self._reject(snap.symbol, f"net premium {net_premium:+,.0f} does not agree with {direction}")
        if sign(momentum) == -want:
            return self._reject(snap.symbol, f"flow momentum {momentum:+,.0f} opposes {direction}")
        congress = self.alt.window(snap.symbol, AltDataKind.CONGRESS, today, cfg.congress_lookback_days)
        opposing = [r for r in congress if r.direction == -want]
        supporting = [r for r in congress if r.direction == want]
        if opposing:
            days = cfg.congress_lookback_days
            return self._reject(snap.symbol, f"{len(opposing)} opposing congress trade(s) in {days}d")

        selection = self._select(snap, chain, direction, today, cfg.dte_band, cfg.strike_rule)
        if not selection.ok:
            # the rule fired but the chain had no tradable contract (yet): a data problem, not a
            # decision, so the next snapshot of the check window may try again
            del self.checked[snap.symbol]
            return self._reject(snap.symbol, selection.reason)
        confidence = confidence_score(
            50,
            [
                (25, excess(abs(z), cfg.skew_sigma, 3.0)),
                (15, 1.0 if sign(momentum) == want else 0.0),
                (10, 1.0 if supporting else 0.0),
            ],
        )
        if confidence < cfg.min_confidence:
            return self._reject(snap.symbol, f"confidence {confidence} < {cfg.min_confidence}")
        congress_text = (
            f"{len(supporting)} congress trade(s) agree, none oppose ({cfg.congress_lookback_days}d)"
            if supporting
            else f"no opposing congress trades ({cfg.congress_lookback_days}d)"
        )
        reasons = [
            f"{et_datetime(session.cutoff_ns):%H:%M} ET check",
            f"rr25 {rr25:+.4f} is {z:+.2f}σ from its {n}-day mean {mean:+.4f} (σ {sd:.4f}, |z| > {cfg.skew_sigma:g})",
            f"net premium {net_premium:+,.0f} and flow momentum {momentum:+,.0f} agree with "
            f"{right_for(direction).name}",
            congress_text,
        ]
        inputs = {
            "rr25": rr25,
            "rr25_mean": mean,
            "rr25_std": sd,
            "rr25_z": z,
            "rr25_days": float(n),
            "net_premium": net_premium,
            "flow_momentum": momentum,
            "congress_supporting": float(len(supporting)),
            "congress_opposing": 0.0,
            "iv_rank": metric(snap, "iv_rank"),
            "regime": metric(snap, "regime"),
        }
        return [self._signal(snap, now_ns, direction, selection, confidence, reasons, inputs)]

    def state(self) -> dict[str, Any]:
        """Counters, the rr25 daily history, congress trades and the sessions already checked."""
        return {**super().state(), "rr25": self.rr25.state(), "alt": self.alt.state(), "checked": dict(self.checked)}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Load a checkpoint written by :meth:`state`."""
        super().restore(state)
        self.rr25.restore(state.get("rr25", {}))
        self.alt.restore(state.get("alt", {}))
        self.checked = {str(k): str(v) for k, v in state.get("checked", {}).items()}
