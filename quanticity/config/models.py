"""Typed models of every configuration file under ``config/``.

Every model forbids unknown keys and is frozen: a typo in a YAML file (``max_oder_rate``) must
fail at start with the file and key named, not silently fall back to a default while real money
trades. Values that must be positive, ordered or drawn from a set are constrained here, so the
rest of the code can trust a loaded config.
"""

from __future__ import annotations

import datetime as dt
from datetime import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from quanticity.admin.config import AdminConfig
from quanticity.overseer.config import OverseerConfig
from quanticity.strategies.base import StrategyConfig
from quanticity.strategies.fourteen_day_directional import FourteenDayDirectionalConfig
from quanticity.strategies.fourteen_day_high_iv import FourteenDayHighIvConfig
from quanticity.strategies.moc_imbalance import MocImbalanceConfig
from quanticity.strategies.one_dte_overnight import OneDteOvernightConfig
from quanticity.strategies.zero_dte_gamma import ZeroDteGammaConfig

PositiveFloat = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(gt=0)]
Percent = Annotated[float, Field(ge=0, le=100)]
Ticker = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9.]{0,9}$")]


class Strict(BaseModel):
    """Base: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- system.yaml ---------------------------------------------------------------------------
class SystemSection(Strict):
    """Identity of a deployment; the namespace isolates Ray actor names and Redis-backed runs."""

    name: str = "quanticity"
    namespace: Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]+$")] = "quanticity"
    seed: int = 7
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class RedisSection(Strict):
    """Redis: ``url`` (or the ``REDIS_URL`` environment variable) selects an external server;
    otherwise a private ``redis-server`` is started with AOF under ``data_dir``."""

    url: str | None = None
    data_dir: str = "var/redis"
    appendonly: bool = True
    port: Annotated[int, Field(ge=0, le=65535)] = 0  # 0 = pick a free port


class RaySection(Strict):
    """Ray: ``address`` joins an existing cluster (``auto``); ``None`` starts a local one."""

    address: str | None = None
    num_cpus: PositiveInt | None = None
    include_dashboard: bool = True
    dashboard_host: str = "127.0.0.1"
    dashboard_port: Annotated[int, Field(ge=1, le=65535)] = 8265


class MetricsSection(Strict):
    """Prometheus endpoint served by the CLI process from the counters the actors report."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 9464


class SupervisorSection(Strict):
    """Health checking: a child that misses ``hung_after_missed`` pings in a row is restarted."""

    heartbeat_interval_s: PositiveFloat = 1.0
    ping_timeout_s: PositiveFloat = 5.0
    hung_after_missed: PositiveInt = 3


class UniverseSection(Strict):
    """Symbols traded: 0/1DTE index products and the 14-day+ single names (SPEC §1)."""

    zero_dte: list[Ticker] = Field(default_factory=lambda: ["SPX", "SPY", "QQQ", "IWM"])
    long_dated: list[Ticker] = Field(
        default_factory=lambda: [
            "AAPL",
            "MSFT",
            "GOOGL",
            "AMZN",
            "NVDA",
            "META",
            "TSLA",
            "COST",
            "WMT",
            "DIS",
            "V",
            "NFLX",
            "HOOD",
            "HIMS",
            "ORCL",
        ]
    )

    @model_validator(mode="after")
    def _no_duplicates(self) -> UniverseSection:
        symbols = self.zero_dte + self.long_dated
        dupes = sorted({s for s in symbols if symbols.count(s) > 1})
        if dupes:
            raise ValueError(f"symbols listed twice: {dupes}")
        return self

    @property
    def symbols(self) -> list[str]:
        """Every symbol of the universe, 0DTE products first."""
        return [*self.zero_dte, *self.long_dated]


class SessionSection(Strict):
    """The simulated session ``quanticity run`` trades (``date: null`` = the last NYSE session)."""

    date: dt.date | None = None
    start: time = time(9, 30)
    end: time | None = None  # None = the session's close (16:00, 13:00 on half days)
    speed: Annotated[float, Field(ge=0)] = 100.0  # 0 = unpaced: as fast as the actors go
    step_ms: PositiveInt = 1000

    @field_validator("speed")
    @classmethod
    def _speed_cap(cls, value: float) -> float:
        if value > 100_000:
            raise ValueError(f"speed {value} is above the 100000x the simulator can pace")
        return value


class FeedSection(Strict):
    """How the feed batches events to the per-symbol actors (batching is what makes it fast)."""

    flush_ms: PositiveFloat = 40.0
    max_steps_per_flush: PositiveInt = 10
    max_inflight_flushes: PositiveInt = 4
    router_tick_every_s: PositiveFloat = 5.0
    raw_snapshot_every_s: PositiveFloat = 1.0
    checkpoint_every_s: PositiveFloat = 60.0


class VenueSection(Strict):
    """Where the system trades and gets its data (SPEC §5, §11).

    ``sim`` is the embedded simulated feed and broker (the fastest path, used by most tests);
    ``tws`` hosts the TWS/Gateway simulator and the UW/AV loopback twins on 127.0.0.1 and trades
    through ``ib_async`` and the REST/WS fetcher exactly as live; ``live`` connects to a real TWS and
    the real APIs with credentials from the environment (``quanticity run --live``).
    """

    kind: Literal["sim", "tws", "live"] = "sim"
    ibkr: dict[str, Any] = Field(default_factory=dict)
    """Settings of :class:`quanticity.venues.ibkr.IbkrConfig` (validated at load; host/port come from
    the venue host in ``tws`` and from ``IB_HOST``/``IB_PORT`` in ``live``)."""
    fetcher: bool = True
    """Run the UW/AV fetcher actor in ``tws``/``live``."""
    sources: list[str] = Field(
        default_factory=lambda: ["config/sources/unusual_whales.yaml", "config/sources/alpha_vantage.yaml"]
    )
    """Source YAMLs the fetcher runs (relative to the working directory, or absolute)."""
    option_symbols: list[Ticker] | None = None
    """Underlyings whose option chains the IBKR feed streams (None = every symbol of the universe)."""
    depth_rotate_every_s: PositiveFloat = 1.0
    """Wall seconds between depth-rotation checks of the IBKR feed (the dwell itself is ``ibkr.depth_dwell_s``)."""
    venue_clock_every_ms: PositiveFloat = 20.0
    """Wall milliseconds between pacing checks of the hosted TWS simulator."""
    market_open_wait_s: PositiveFloat = 120.0
    """The hosted simulator's market opens when the IBKR feed has subscribed, or after this many wall seconds."""

    @field_validator("ibkr")
    @classmethod
    def _valid_ibkr(cls, value: dict[str, Any]) -> dict[str, Any]:
        from quanticity.venues.ibkr.config import IbkrConfig  # noqa: PLC0415 - the IBKR model imports this module

        IbkrConfig.model_validate(value)
        return value


class SystemFile(Strict):
    """``config/system.yaml``."""

    system: SystemSection = SystemSection()
    redis: RedisSection = RedisSection()
    ray: RaySection = RaySection()
    metrics: MetricsSection = MetricsSection()
    supervisor: SupervisorSection = SupervisorSection()
    universe: UniverseSection = UniverseSection()
    session: SessionSection = SessionSection()
    feed: FeedSection = FeedSection()
    venue: VenueSection = VenueSection()


# --- market.yaml ---------------------------------------------------------------------------
class UnderlyingSpec(Strict):
    """Starting point of one simulated underlying."""

    spot: PositiveFloat
    vol: PositiveFloat = 0.2
    tick: PositiveFloat = 0.01
    dividend_yield: Annotated[float, Field(ge=0, le=0.2)] = 0.0
    strike_step: PositiveFloat = 1.0


class HestonSpec(Strict):
    """Stochastic-volatility dynamics shared by all simulated underlyings (Heston-style)."""

    kappa: PositiveFloat = 3.0
    vol_of_vol: PositiveFloat = 0.5
    rho: Annotated[float, Field(ge=-1, le=1)] = -0.6
    drift: float = 0.0


class BookSpec(Strict):
    """Shape of the simulated L2 books and tapes."""

    levels: Annotated[int, Field(ge=1, le=20)] = 10
    base_size: PositiveInt = 400
    spread_ticks: PositiveInt = 1
    trades_per_step: Annotated[float, Field(ge=0)] = 4.0
    quotes_per_step: Annotated[int, Field(ge=1)] = 1


class ChainSpec(Strict):
    """Option chains the simulator lists: expiries up to ``max_dte`` and strikes around spot."""

    max_dte: Annotated[int, Field(ge=0, le=365)] = 45
    strikes_each_side: Annotated[int, Field(ge=1, le=200)] = 10
    expiries: Annotated[int, Field(ge=1, le=60)] = 6
    option_half_spread_pct: Annotated[float, Field(gt=0, lt=50)] = 1.5
    refresh_steps: PositiveInt = 60
    risk_free_rate: Annotated[float, Field(ge=-0.05, le=0.25)] = 0.045


class MarketFile(Strict):
    """``config/market.yaml``: the seeded synthetic market of SPEC §11."""

    heston: HestonSpec = HestonSpec()
    book: BookSpec = BookSpec()
    chain: ChainSpec = ChainSpec()
    underlyings: dict[Ticker, UnderlyingSpec]


# --- trading.yaml --------------------------------------------------------------------------
class AnalyticsSection(Strict):
    """Per-symbol analytics: windows and when to forward a feature snapshot to strategies."""

    realized_vol_window: Annotated[int, Field(ge=2)] = 300
    momentum_window: Annotated[int, Field(ge=2)] = 30
    forward_every_s: PositiveFloat = 5.0
    material_change_bps: PositiveFloat = 5.0
    snapshot_ttl_s: PositiveFloat = 30.0
    checkpoint_every_s: PositiveFloat = 30.0
    book_max_age_s: PositiveFloat = 5.0
    write_every_s: PositiveFloat = 1.0
    min_forward_interval_s: Annotated[float, Field(ge=0)] = 1.0
    vpin_buckets: PositiveInt = 50
    flow_window_s: PositiveFloat = 60.0
    block_contracts: PositiveInt = 100
    min_open_interest: Annotated[int, Field(ge=0)] = 5
    unusual_volume_oi: PositiveFloat = 1.0


class StrategySection(Strict):
    """The foundation's book-imbalance momentum rule (documented in docs/strategy.md).

    Bullish when L5 imbalance ≥ ``imbalance_threshold`` and momentum ≥ ``momentum_bps``
    (bearish mirrored); liquidity gate on the underlying spread; one signal per symbol per
    ``cooldown_s``; buys the nearest-expiry first OTM contract.
    """

    name: str = "imbalance_momentum"
    enabled: bool = True
    imbalance_threshold: Annotated[float, Field(gt=0, le=1)] = 0.35
    momentum_bps: Annotated[float, Field(ge=0)] = 8.0
    max_spread_bps: PositiveFloat = 10.0
    cooldown_s: Annotated[float, Field(ge=0)] = 900.0
    min_confidence: Annotated[int, Field(ge=0, le=100)] = 50


class StrategiesSection(Strict):
    """The SPEC §7 strategies, one actor each; every key is that strategy's typed config.

    Defaults are the seeds' trigger rules; ``enabled: false`` leaves a strategy out of the run.
    """

    zero_dte_gamma: ZeroDteGammaConfig = ZeroDteGammaConfig()
    one_dte_overnight: OneDteOvernightConfig = OneDteOvernightConfig()
    moc_imbalance: MocImbalanceConfig = MocImbalanceConfig()
    fourteen_day_directional: FourteenDayDirectionalConfig = FourteenDayDirectionalConfig()
    fourteen_day_high_iv: FourteenDayHighIvConfig = FourteenDayHighIvConfig()

    def enabled(self) -> list[StrategyConfig]:
        """Configs of the enabled strategies, in a fixed order."""
        configs = [getattr(self, name) for name in type(self).model_fields]
        return [c for c in configs if c.enabled]


class RiskSection(Strict):
    """Risk-gate limits (SPEC §8)."""

    account_equity: PositiveFloat = 100_000.0
    risk_per_trade_pct: Annotated[float, Field(gt=0, le=5)] = 1.0
    max_open_per_direction: PositiveInt = 3
    daily_loss_warn_pct: Percent = 4.0
    daily_loss_halt_pct: Percent = 6.0
    max_orders_per_minute: PositiveInt = 30
    max_notional_per_order: PositiveFloat = 10_000.0
    max_contracts_per_order: PositiveInt = 100
    max_option_spread_pct: Percent = 10.0
    zero_dte_cutoff: time = time(15, 30)
    zero_dte_cutoff_exempt: list[str] = Field(default_factory=lambda: ["moc_imbalance"])
    """Strategies whose 0DTE entry *is* the 15:30 close trade (SPEC §7 MOC: enter at 15:30)."""
    max_input_age_s: PositiveFloat = 60.0
    risk_pct_bands: dict[Literal["0dte", "1dte", "14d"], tuple[float, float]] = Field(
        default_factory=lambda: {"0dte": (1.0, 2.0), "1dte": (2.0, 3.0), "14d": (3.0, 5.0)}
    )
    """Allowed risk per trade by DTE class, % of equity (SPEC §8); a strategy's risk_pct is clipped into it."""
    max_correlation: Annotated[float, Field(gt=0, le=1)] = 0.7
    """Deny an entry whose underlying's return correlation with one held in the same direction exceeds this."""
    correlation_bar_s: PositiveFloat = 60.0
    """Bar length (simulated seconds) of the underlying closes the correlation is computed from."""
    correlation_window: Annotated[int, Field(ge=2)] = 30
    """Number of bar-to-bar returns in the rolling correlation window."""
    correlation_min_returns: Annotated[int, Field(ge=2)] = 20
    """Fewer common returns than this = thin history: the pair is not judged (the entry is allowed, counted)."""
    max_drawdown_pct: Percent = 10.0
    """Equity peak-to-trough limit over ``drawdown_window_days`` (seed 002: HWM tracking, 10 % max)."""
    drawdown_window_days: PositiveInt = 30
    """Calendar days (ET) the equity high-water mark is taken over."""
    drawdown_state: Literal["REDUCING", "HALTED"] = "REDUCING"
    """State a drawdown breach moves to: REDUCING lets the exit plans close positions (seed 001: forced exits)."""
    pnl_mark_persist_s: PositiveFloat = 60.0
    """Simulated seconds between persists of mark-only P&L changes (every fill is persisted at once)."""

    @model_validator(mode="after")
    def _warn_before_halt(self) -> RiskSection:
        if self.daily_loss_warn_pct >= self.daily_loss_halt_pct:
            raise ValueError(
                f"daily_loss_warn_pct ({self.daily_loss_warn_pct}) must be below "
                f"daily_loss_halt_pct ({self.daily_loss_halt_pct})"
            )
        return self

    @model_validator(mode="after")
    def _min_returns_fit_window(self) -> RiskSection:
        if self.correlation_min_returns > self.correlation_window:
            raise ValueError(
                f"correlation_min_returns ({self.correlation_min_returns}) must not exceed "
                f"correlation_window ({self.correlation_window})"
            )
        return self


class ExecutionSection(Strict):
    """Order routing against the simulated broker (the full lifecycle is SPEC §9)."""

    commission_per_contract: Annotated[float, Field(ge=0)] = 0.65
    min_commission: Annotated[float, Field(ge=0)] = 1.0
    limit_offset_of_spread: Annotated[float, Field(ge=0, le=1)] = 0.25
    chase_after_s: Annotated[float, Field(ge=0)] = 30.0
    """An entry unfilled after this long (simulated seconds) is re-priced toward the ask (SPEC §9)."""
    chase_fraction: Annotated[float, Field(ge=0, le=1)] = 0.25
    """A chased entry's limit: mid + this fraction of the full spread."""
    max_entry_spread_pct: Annotated[float, Field(gt=0, le=100)] = 10.0
    """A working entry is cancelled when the option spread widens past this % of mid."""
    max_chunk: PositiveInt = 100
    """Entries above this many contracts are split into child orders of at most this size."""
    zero_dte_flat_at: time = time(15, 50)
    """0DTE positions are closed from this ET time; on an early-close day the same lead before the
    close applies (15:50 → 10 minutes before a 13:00 close: 12:50). 1DTE positions are held overnight."""


class TradingFile(Strict):
    """``config/trading.yaml``."""

    analytics: AnalyticsSection = AnalyticsSection()
    strategy: StrategySection = StrategySection()
    strategies: StrategiesSection = StrategiesSection()
    risk: RiskSection = RiskSection()
    execution: ExecutionSection = ExecutionSection()


# --- distribution.yaml ---------------------------------------------------------------------
DistributionTier = Literal["premium", "basic", "free"]
EnvName = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]*$")]


class TierTarget(Strict):
    """Where one tier of a channel lands on its platform (secrets are named, never stored here).

    Telegram: ``chat_id`` (numeric id or ``@channelusername``) and optionally a forum topic
    (``message_thread_id``). Discord: ``webhook_url_env`` names the environment variable holding
    the tier's webhook URL; ``channel_id`` is the text channel the webhook posts into (the bot
    uses it to start follow-up threads and to check whether a send of unknown outcome landed).
    """

    chat_id: int | Annotated[str, Field(pattern=r"^@[A-Za-z][A-Za-z0-9_]{3,}$")] | None = None
    message_thread_id: PositiveInt | None = None
    webhook_url_env: EnvName | None = None
    channel_id: PositiveInt | None = None


class TierDelays(Strict):
    """Seconds after the fill's event time at which each tier may see a message (SPEC §10)."""

    premium: Annotated[float, Field(ge=0)] = 0.0
    basic: Annotated[float, Field(ge=0)] = 60.0
    free: Annotated[float, Field(ge=0)] = 300.0

    def of(self, tier: str) -> float:
        """Delay of ``tier`` in seconds."""
        return float(getattr(self, tier))


class RateLimitSpec(Strict):
    """Token bucket of one platform: ``per_second`` sustained, ``burst`` at once.

    The bucket counts in exact integers in Redis (:mod:`quanticity.distribution.pacing`): hence at
    most three decimals on the rate and a burst of at most 9000.
    """

    per_second: PositiveFloat
    burst: Annotated[int, Field(ge=1, le=9000)]

    @model_validator(mode="after")
    def _exact_rate(self) -> RateLimitSpec:
        if abs(self.per_second * 1000 - round(self.per_second * 1000)) > 1e-9:
            raise ValueError(f"per_second: {self.per_second} must have at most three decimals")
        return self


class RetrySpec(Strict):
    """Retries of a failed send: exponential backoff ``base_s · 2^(attempt-1)`` capped at ``cap_s``
    (never sooner than a 429's ``retry_after``); dead-letter once ``max_attempts`` sends failed."""

    max_attempts: PositiveInt = 5
    base_s: PositiveFloat = 2.0
    cap_s: PositiveFloat = 300.0
    send_timeout_s: PositiveFloat = 15.0


class ChannelSpec(Strict):
    """One outbound channel; ``local`` writes a log file a person can tail.

    ``discord`` and ``telegram`` channels name per-tier targets and the environment variable of
    the bot token (``token_env``); ``api_base`` points the client library at another server (the
    loopback twins: ``http://127.0.0.1:PORT/bot`` for Telegram, ``http://127.0.0.1:PORT/api/v10``
    for Discord). ``unknown_outcome`` decides what happens to a send whose result is unknown when
    the platform offers no way to check (Telegram, after a crash or timeout inside the HTTP call):
    ``resend`` (default, at-least-once: subscribers never miss an alert; the second copy is labelled
    as a possible repeat and audited) or ``dead_letter`` (at-most-once: never twice; dead-lettered
    with an operator alert). See :mod:`quanticity.distribution.publisher` for the trade-off.
    """

    kind: Literal["local", "discord", "telegram"] = "local"
    tiers: list[DistributionTier] = Field(default_factory=lambda: ["premium"])
    targets: dict[DistributionTier, TierTarget] = Field(default_factory=dict)
    token_env: EnvName | None = None
    api_base: Annotated[str, Field(pattern=r"^https?://")] | None = None
    follow_ups: bool = True
    unknown_outcome: Literal["resend", "dead_letter"] = "resend"
    delays_s: TierDelays | None = None  # None = the file's delays_s

    @model_validator(mode="after")
    def _targets_complete(self) -> ChannelSpec:
        if self.kind == "local":
            return self
        missing = sorted(set(self.tiers) - set(self.targets))
        if missing:
            raise ValueError(f"{self.kind} channel: tiers {missing} have no entry under targets")
        for tier in self.tiers:
            target = self.targets[tier]
            if self.kind == "telegram" and target.chat_id is None:
                raise ValueError(f"telegram channel: targets.{tier}.chat_id is required")
            if self.kind == "discord" and target.webhook_url_env is None and target.channel_id is None:
                raise ValueError(f"discord channel: targets.{tier} needs webhook_url_env or channel_id")
            if self.kind == "discord" and target.webhook_url_env is None and self.token_env is None:
                raise ValueError(f"discord channel: targets.{tier} posts through the bot, so token_env is required")
        if self.kind == "telegram" and self.token_env is None:
            raise ValueError("telegram channel: token_env (the variable holding the bot token) is required")
        return self


class DistributionFile(Strict):
    """``config/distribution.yaml``."""

    log_dir: str = "var/channels"
    channels: dict[Annotated[str, Field(pattern=r"^[a-z0-9_-]+$")], ChannelSpec] = Field(
        default_factory=lambda: {"local": ChannelSpec()}
    )
    delays_s: TierDelays = TierDelays()
    rate_limits: dict[Literal["local", "discord", "telegram"], RateLimitSpec] = Field(
        default_factory=lambda: {
            "local": RateLimitSpec(per_second=1000.0, burst=1000),
            "discord": RateLimitSpec(per_second=5.0, burst=10),
            "telegram": RateLimitSpec(per_second=30.0, burst=50),
        }
    )
    """Per-platform token buckets; the seeds' numbers (Discord 5/s burst 10, Telegram 30/s burst 50).

    One bucket in Redis per platform and bot credential, shared by every channel using that bot."""
    retry: RetrySpec = RetrySpec()
    tick_s: PositiveFloat = 0.25
    """How often (wall seconds) the publisher actor looks for due messages."""


# --- ops.yaml ------------------------------------------------------------------------------
class OpsFile(Strict):
    """``config/ops.yaml``: the AI overseer (SPEC §12) and the Telegram admin control (SPEC §13).

    The thresholds live in the overseer's own model; the admin allow-list and chat may also come
    from ``TELEGRAM_ADMIN_IDS`` / ``TELEGRAM_ADMIN_CHAT`` (the loader merges them, naming the
    variable on a bad value). ``admin_api_base`` points the admin bot at another Bot API server
    (the loopback twin ``http://127.0.0.1:PORT``); None = api.telegram.org. Without the bot token
    in the environment the admin actor stays idle; without ``ANTHROPIC_API_KEY`` the overseer
    runs on rules and templates.
    """

    overseer_enabled: bool = True
    overseer: OverseerConfig = OverseerConfig()
    admin_enabled: bool = True
    admin: AdminConfig = AdminConfig()
    admin_api_base: Annotated[str, Field(pattern=r"^https?://")] | None = None
    summary_file: str = "daily-summary.log"
    """File (under ``distribution.log_dir``) the overseer appends the end-of-session summary to."""


class QuanticityConfig(Strict):
    """The whole configuration, one attribute per file under ``config/``."""

    system: SystemFile
    market: MarketFile
    trading: TradingFile
    distribution: DistributionFile
    ops: OpsFile = OpsFile()
