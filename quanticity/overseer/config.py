"""Typed, frozen configuration of the overseer; defaults are the SPEC §12 / seed values.

Every threshold a check uses lives here, so a deployment tunes the overseer in YAML (validated,
unknown keys rejected with the key named) instead of in code. Two cross-field rules matter for
safety: a model call must time out well inside the 30 s check period, so the rule path always
alerts in time; and a CRITICAL level can never sit below its WARNING level.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

PositiveFloat = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]

#: The staleness sources the snapshot reader knows how to read (see :mod:`quanticity.overseer.reader`).
STALENESS_SOURCES = ("uw_spot_gex", "uw_flow_alerts", "uw_chains", "ibkr_heartbeat")
#: The UW-vs-IBKR divergence families of SPEC §12.
DIVERGENCE_KINDS = ("price", "greeks", "spread")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StalenessRule(_Frozen):
    """A source older than ``warn_after_s`` is a WARNING; older than ``critical_after_s`` a CRITICAL."""

    warn_after_s: PositiveFloat
    critical_after_s: PositiveFloat | None = None
    enabled: bool = True

    @model_validator(mode="after")
    def _ordered(self) -> StalenessRule:
        if self.critical_after_s is not None and self.critical_after_s < self.warn_after_s:
            raise ValueError(f"critical_after_s: {self.critical_after_s} is below warn_after_s {self.warn_after_s}")
        return self


class DivergenceRule(_Frozen):
    """|UW − IBKR| / max(|IBKR|, ``abs_floor``) at ``warn_ratio`` → WARNING, ``critical_ratio`` → CRITICAL.

    ``abs_floor`` keeps near-zero references (a far-OTM delta of 0.001) from turning rounding noise
    into a 100 % divergence; ``min_difference`` is the values' granularity (an option quote's one
    tick): an absolute difference no larger than it is never a finding, whatever the ratio.
    """

    warn_ratio: PositiveFloat
    critical_ratio: PositiveFloat | None = None
    abs_floor: NonNegativeFloat = 0.0
    min_difference: NonNegativeFloat = 0.0
    enabled: bool = True

    @model_validator(mode="after")
    def _ordered(self) -> DivergenceRule:
        if self.critical_ratio is not None and self.critical_ratio < self.warn_ratio:
            raise ValueError(f"critical_ratio: {self.critical_ratio} is below warn_ratio {self.warn_ratio}")
        return self


class SpikeRule(_Frozen):
    """A spike: the mean of the recent samples reaches ``warn_floor`` AND ``multiple`` × the baseline median.

    With fewer than ``min_baseline`` baseline samples only the floor applies (no history yet); the
    mean reaching ``critical_at`` is CRITICAL whatever the baseline. ``window_s`` is how far back
    "recent" reaches; ``baseline_size`` caps the history kept per series.
    """

    warn_floor: PositiveFloat
    multiple: Annotated[float, Field(gt=1)] = 3.0
    critical_at: PositiveFloat | None = None
    window_s: PositiveFloat = 300.0
    min_baseline: PositiveInt = 10
    baseline_size: PositiveInt = 200

    @model_validator(mode="after")
    def _ordered(self) -> SpikeRule:
        if self.critical_at is not None and self.critical_at < self.warn_floor:
            raise ValueError(f"critical_at: {self.critical_at} is below warn_floor {self.warn_floor}")
        return self


def _default_staleness() -> dict[str, StalenessRule]:
    # SPEC §12 alert levels; CRITICAL after a feed has been gone long enough to call it down
    # (seed 000: "UW API down for 2+ minutes" → emergency stop, "TWS disconnected" is critical).
    return {
        "uw_spot_gex": StalenessRule(warn_after_s=90, critical_after_s=300),
        "uw_flow_alerts": StalenessRule(warn_after_s=120, critical_after_s=300),
        "uw_chains": StalenessRule(warn_after_s=180, critical_after_s=600),
        "ibkr_heartbeat": StalenessRule(warn_after_s=30, critical_after_s=60),
    }


def _default_divergence() -> dict[str, DivergenceRule]:
    return {
        "price": DivergenceRule(warn_ratio=0.02, critical_ratio=0.05),
        "greeks": DivergenceRule(warn_ratio=0.10, critical_ratio=0.30, abs_floor=0.01),
        # relative spreads (of mid): judged against at least 10 % of mid, because for the tight, tick-quantised
        # ATM quotes one tick (or a 0DTE quote's drift within the pairing window) is already a 15-30 % change
        "spread": DivergenceRule(warn_ratio=0.15, abs_floor=0.05, min_difference=0.05),
    }


class ModelConfig(_Frozen):
    """The Claude calls: model, limits, a daily budget and a hard timeout; the key comes from the env."""

    enabled: bool = True
    model: str = "claude-haiku-4-5"
    api_key_env: str = "ANTHROPIC_API_KEY"
    base_url: str | None = None  # None = the SDK default (api.anthropic.com); the twin in embedded runs
    max_tokens: PositiveInt = 500
    review_max_tokens: PositiveInt = 200
    explanation_max_tokens: PositiveInt = 150
    summary_max_tokens: PositiveInt = 200
    timeout_s: PositiveFloat = 10.0
    daily_token_budget: PositiveInt = 200_000
    daily_request_budget: PositiveInt = 500


class OverseerConfig(_Frozen):
    """Everything the overseer checks and how it escalates."""

    check_interval_s: PositiveFloat = 30.0
    realert_after_s: PositiveFloat = 300.0
    model_can_downgrade: bool = False
    staleness: dict[str, StalenessRule] = Field(default_factory=_default_staleness)
    divergence: dict[str, DivergenceRule] = Field(default_factory=_default_divergence)
    slippage: SpikeRule = SpikeRule(warn_floor=50.0, multiple=3.0, critical_at=300.0)  # bps vs the limit
    latency: SpikeRule = SpikeRule(warn_floor=250.0, multiple=5.0, critical_at=2000.0)  # actor p99, ms
    #: divergence pairs: the UW and the IBKR value are compared only when their own times are at most
    #: this far apart (a minute of index drift is far below 2 %), and the IBKR value is at most
    #: ``pair_max_age_s`` old at the round (an older one is a staleness matter, not a divergence)
    #: watch the UW keys even where no fetcher runs (``venue.kind: sim``): a drill of the staleness path
    #: (nothing refreshes them there); off by default, so a sim session is not warned about a feed it lacks
    uw_without_fetcher: bool = False
    pair_tolerance_s: PositiveFloat = 60.0
    pair_max_age_s: PositiveFloat = 120.0
    model: ModelConfig = ModelConfig()
    #: advisory pre-trade review of complex entries (``signals:stream``), written to ``system:alerts``
    review_enabled: bool = True
    #: alert level of a review without red flags, and of one with (WARNING is pushed to the admin chat by
    #: default; add REVIEW to ``admin.push_levels`` to be sent the clean reviews too)
    review_level: Annotated[str, Field(pattern=r"^[A-Z]+$")] = "REVIEW"
    review_red_flag_level: Annotated[str, Field(pattern=r"^[A-Z]+$")] = "WARNING"
    #: a signal older than this (simulated s) when the overseer reaches it is not reviewed: its order is decided
    review_max_age_s: PositiveFloat = 300.0
    #: the "complex" strategies whose entries get the advisory pre-trade review: multi-trigger, longer-dated
    #: or overnight setups (the 0DTE gamma rule is one trigger, fast, and reviewed by the risk gate alone)
    review_strategies: tuple[str, ...] = (
        "one_dte_overnight",
        "moc_imbalance",
        "fourteen_day_directional",
        "fourteen_day_high_iv",
    )
    review_max_spread_pct: PositiveFloat = 10.0  # rule red flag: spread above this % of mid (SPEC §8)
    review_min_confidence: Annotated[int, Field(ge=0, le=100)] = 50  # rule red flag below this confidence
    #: explain each position-opening fill to premium subscribers (model, else the template)
    explain_fills: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> OverseerConfig:
        unknown = sorted(set(self.staleness) - set(STALENESS_SOURCES))
        if unknown:
            raise ValueError(f"staleness: unknown source(s) {unknown}; known: {list(STALENESS_SOURCES)}")
        if set(self.divergence) != set(DIVERGENCE_KINDS):
            raise ValueError(f"divergence: keys {sorted(self.divergence)} must be exactly {list(DIVERGENCE_KINDS)}")
        if self.model.timeout_s >= self.check_interval_s / 2:
            raise ValueError(
                f"model.timeout_s: {self.model.timeout_s} must be under half of check_interval_s "
                f"{self.check_interval_s}, so the rule path still alerts within the check period"
            )
        return self


def for_run_speed(config: OverseerConfig, speed: float) -> OverseerConfig:
    """The overseer config for a run whose clock goes ``speed`` times faster than the wall.

    Latency thresholds are wall milliseconds calibrated for live trading (1×). An accelerated
    simulation pushes ``speed`` times more market into every wall second, so the same actors
    queue more and their wall latency says more about the machine running the simulation than
    about the trading path. There a latency spike still warns the admin but never halts trading;
    at 1× (live, paper, unpaced tests) the configured rule applies unchanged.
    """
    if speed <= 1.0 or config.latency.critical_at is None:
        return config
    return config.model_copy(update={"latency": config.latency.model_copy(update={"critical_at": None})})
