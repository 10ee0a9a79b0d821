"""The foundation's strategy: buy the first OTM option in the direction of book pressure.

Rule (documented in docs/strategy.md):
- bullish when the L5 book imbalance ≥ ``imbalance_threshold`` and the mid momentum ≥
  ``momentum_bps``; bearish when both are at or beyond their negatives;
- only when the underlying is liquid (spread ≤ ``max_spread_bps``) and the snapshot is fresh;
- buys the first OTM call (bullish) or put (bearish) of the traded expiry;
- at most one signal per symbol per ``cooldown_s`` (simulated time);
- confidence 0–100 grows with how far imbalance and momentum exceed their thresholds.

The signal id is derived from the strategy, contract and cooldown bucket, so the same decision
taken twice (a replay after a restart, two workers) has the same id and is enqueued once.
"""

from __future__ import annotations

import math
from typing import Any

from quanticity.config.models import StrategySection
from quanticity.messages import Direction, FeatureSnapshot, OptionQuote, Signal

NS = 1_000_000_000


class ImbalanceMomentumStrategy:
    """Decides on each feature snapshot whether to emit a signal; keeps per-symbol cooldowns."""

    def __init__(self, config: StrategySection) -> None:
        self.config = config
        self.last_signal_ns: dict[str, int] = {}
        self.evaluated = 0
        self.emitted = 0

    def on_features(self, snap: FeatureSnapshot, now_ns: int, ts_init: int) -> Signal | None:
        """Return a signal when the rule fires for ``snap``, else None."""
        self.evaluated += 1
        cfg = self.config
        if not cfg.enabled or now_ns > snap.valid_until or not math.isfinite(snap.mid):
            return None
        if snap.spread_bps > cfg.max_spread_bps:
            return None
        if now_ns - self.last_signal_ns.get(snap.symbol, -(10**30)) < cfg.cooldown_s * NS:
            return None
        if snap.imbalance_l5 >= cfg.imbalance_threshold and snap.momentum_bps >= cfg.momentum_bps:
            direction, quote = Direction.BULLISH, snap.atm_call
        elif snap.imbalance_l5 <= -cfg.imbalance_threshold and snap.momentum_bps <= -cfg.momentum_bps:
            direction, quote = Direction.BEARISH, snap.atm_put
        else:
            return None
        if quote is None:
            return None
        confidence = self._confidence(snap)
        if confidence < cfg.min_confidence:
            return None
        self.last_signal_ns[snap.symbol] = now_ns
        self.emitted += 1
        return self._signal(snap, direction, quote, confidence, now_ns, ts_init)

    def _confidence(self, snap: FeatureSnapshot) -> int:
        imbalance_excess = abs(snap.imbalance_l5) / self.config.imbalance_threshold
        momentum_excess = abs(snap.momentum_bps) / max(self.config.momentum_bps, 1e-9)
        score = 50 + 25 * min(imbalance_excess - 1, 1) + 25 * min(momentum_excess - 1, 1)
        return int(max(0, min(100, round(score))))

    def _signal(
        self,
        snap: FeatureSnapshot,
        direction: Direction,
        quote: OptionQuote,
        confidence: int,
        now_ns: int,
        ts_init: int,
    ) -> Signal:
        bucket = now_ns // int(self.config.cooldown_s * NS) if self.config.cooldown_s > 0 else now_ns
        return Signal(
            ts_event=now_ns,
            ts_init=ts_init,
            signal_id=f"{self.config.name}:{quote.contract.key.replace(' ', '_')}:{bucket}",
            strategy=self.config.name,
            symbol=snap.symbol,
            direction=direction,
            contract=quote.contract,
            confidence=confidence,
            reference_bid=quote.bid,
            reference_ask=quote.ask,
            reason=(
                f"L5 imbalance {snap.imbalance_l5:+.2f} vs ±{self.config.imbalance_threshold:.2f}, "
                f"momentum {snap.momentum_bps:+.1f} bps vs ±{self.config.momentum_bps:.1f}, "
                f"spread {snap.spread_bps:.1f} bps"
            ),
            inputs={
                "mid": snap.mid,
                "imbalance_l1": snap.imbalance_l1,
                "imbalance_l5": snap.imbalance_l5,
                "momentum_bps": snap.momentum_bps,
                "spread_bps": snap.spread_bps,
                "realized_vol": snap.realized_vol,
                "option_iv": quote.iv,
                "option_delta": quote.delta,
                "computed_at": float(snap.computed_at),
            },
            origin_ts_init=snap.origin_ts_init,
        )

    def state(self) -> dict[str, Any]:
        """Checkpoint: cooldowns and counters."""
        return {"last_signal_ns": self.last_signal_ns, "evaluated": self.evaluated, "emitted": self.emitted}

    def restore(self, state: dict[str, Any]) -> None:
        """Load a checkpoint written by :meth:`state`."""
        self.last_signal_ns = {k: int(v) for k, v in state.get("last_signal_ns", {}).items()}
        self.evaluated = int(state.get("evaluated", 0))
        self.emitted = int(state.get("emitted", 0))
