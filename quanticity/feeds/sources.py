"""Typed model of a source YAML (``config/sources/*.yaml``): one generic fetcher, driven by config.

The seeds' rule: adding an endpoint is a YAML edit, not a code change. A source file names the
API (base URL, auth, rate limit, market-state schedule, breaker) and lists its endpoints (path
template, symbols, params, Redis key template, TTL, cadence tier, priority). Like every config
model here it is frozen and forbids unknown keys, and :func:`load_source` fails with one line
per problem naming the file, the dotted key and the value (the format of
:mod:`quanticity.config.loader`). Secrets never live in the file: ``auth.token_env`` names the
environment variable that holds the token.

Cadence tiers (SPEC §5): each tier is a band of intervals with a nominal default —
0 = 30–60 s (default 60), 1 = 1–15 min (5 min), 2 = 15 min–4 h (1 h), 3 = 4 h–1 day (daily).
An endpoint's ``interval_s`` must fall in its tier's band; the source's ``schedule`` multiplies
it per :class:`~quanticity.feeds.market_state.MarketState` (``null`` pauses the source then).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from quanticity import keys
from quanticity.config.loader import ConfigError, format_errors, read_yaml
from quanticity.feeds.altdata import ALT_DATA_PARSERS
from quanticity.feeds.market_state import MarketState
from quanticity.feeds.parse import PARSERS
from quanticity.feeds.templating import PARAM_PLACEHOLDERS, PATH_PLACEHOLDERS, PLACEHOLDER
from quanticity.messages import AltDataKind

PositiveFloat = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(gt=0)]
Ticker = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9.]{0,9}$")]
EnvVar = Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")]
Multiplier = Annotated[float, Field(gt=0)] | None
ParamValue = bool | int | float | str
Dialect = Literal["unusual_whales", "alpha_vantage"]

DEFAULT_SOURCES_DIR = Path(__file__).resolve().parents[2] / "config" / "sources"

TIER_BANDS_S: dict[int, tuple[float, float, float]] = {
    0: (30.0, 60.0, 60.0),
    1: (60.0, 900.0, 300.0),
    2: (900.0, 14_400.0, 3_600.0),
    3: (14_400.0, 86_400.0, 86_400.0),
}
"""tier → (shortest, longest, default) fetch interval in seconds, at a schedule multiplier of 1."""

UW_WS_CHANNELS = frozenset(
    {"option_trades", "flow-alerts", "news", "lit_trades", "off_lit_trades"}
    | {f"{c}:{{ticker}}" for c in ("option_trades", "gex", "gex_strike", "gex_strike_expiry", "price")}
)
"""Channels the UW socket documents (``…:{ticker}`` is expanded per symbol)."""

PARSER_PREFIX: dict[str, str] = {"unusual_whales": "uw.", "alpha_vantage": "av."}


class Strict(BaseModel):
    """Base: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _placeholders(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))


class AuthSpec(Strict):
    """``bearer``: ``Authorization: Bearer <token>`` (UW); ``query``: ``?<param>=<token>`` (AV's apikey)."""

    type: Literal["bearer", "query"]
    token_env: EnvVar
    param: str = "apikey"


class RateLimitSpec(Strict):
    """The source's budget, shared by all endpoints; ``critical_reserve`` tokens are for critical ones.

    ``throttle_pause_s`` is how long the whole source waits after a 429 without ``Retry-After``
    or an Alpha Vantage throttle note.
    """

    requests_per_minute: PositiveInt
    burst: PositiveInt
    critical_reserve: Annotated[int, Field(ge=0)] = 0
    throttle_pause_s: PositiveFloat = 60.0

    @field_validator("critical_reserve")
    @classmethod
    def _reserve_below_burst(cls, value: int, info: ValidationInfo) -> int:
        burst = info.data.get("burst")
        if burst is not None and value >= burst:
            raise ValueError(f"must be smaller than burst ({burst}), or nothing but critical requests could ever run")
        return value


class ScheduleSpec(Strict):
    """Cadence multiplier per market state (2.0 = half as often); ``null`` = do not fetch then."""

    rth: Multiplier = 1.0
    pre_market: Multiplier = 2.0
    after_hours: Multiplier = 4.0
    overnight: Multiplier = 12.0
    weekend: Multiplier = None

    def multiplier(self, state: MarketState) -> float | None:
        """The multiplier of ``state`` (None = paused)."""
        value: float | None = getattr(self, state.value)
        return value


class BreakerSpec(Strict):
    """Per-endpoint circuit breaker: open after N consecutive failures, half-open after the cool-down."""

    failures_to_open: PositiveInt = 5
    cooldown_s: PositiveFloat = 120.0


class WebSocketSpec(Strict):
    """The UW socket: URL (token added as ``?token=``), channels to join, symbols for ``…:{ticker}`` ones."""

    url: Annotated[str, Field(pattern=r"^wss?://")]
    url_env: EnvVar | None = None
    channels: list[str]
    symbols: Literal["universe"] | list[Ticker] = Field(default_factory=list)
    stream_maxlen: PositiveInt = 10_000

    @field_validator("channels")
    @classmethod
    def _known_channels(cls, value: list[str]) -> list[str]:
        unknown = [c for c in value if c not in UW_WS_CHANNELS]
        if unknown:
            raise ValueError(f"unknown channels {unknown}; known: {sorted(UW_WS_CHANNELS)}")
        return value


class FreshnessSpec(Strict):
    """Time-stamp checks of time-stamped payloads (SPEC §5: stale data is bad input).

    ``max_future_s``: a payload with a record stamped further ahead of the fetcher's clock than
    this is rejected (``future``) — a vendor clock or time-zone fault, whose "latest" value would
    win over the real latest. ``max_age_s``: during regular hours, a payload of a per-minute series
    (:data:`~quanticity.feeds.parse.AGE_CHECKED`) whose newest point is older than this is
    rejected (``stale``) — a cached snapshot served as fresh. Either off when omitted; the last
    good payload stays in Redis either way.
    """

    max_age_s: PositiveFloat | None = None
    max_future_s: PositiveFloat | None = None


class SourceSpec(Strict):
    """The API itself: where it is, how to authenticate, how fast it may be called."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    dialect: Dialect
    base_url: Annotated[str, Field(pattern=r"^https?://")]
    base_url_env: EnvVar | None = None
    auth: AuthSpec
    rate_limit: RateLimitSpec
    schedule: ScheduleSpec = ScheduleSpec()
    breaker: BreakerSpec = BreakerSpec()
    timeout_s: PositiveFloat = 10.0
    max_in_flight: PositiveInt = 8
    websocket: WebSocketSpec | None = None
    freshness: FreshnessSpec = FreshnessSpec()


class EndpointSpec(Strict):
    """One REST endpoint: what to call, for which symbols, where to store it, how often."""

    path: Annotated[str, Field(pattern=r"^/")]
    parser: str
    params: dict[str, ParamValue] = Field(default_factory=dict)
    redis_key: str
    tier: Literal[0, 1, 2, 3]
    interval_s: PositiveFloat | None = None
    ttl_s: PositiveInt
    symbols: Literal["universe"] | list[Ticker] | None = Field(default=None, validate_default=True)
    exclude: list[Ticker] = Field(default_factory=list)
    critical: bool = False
    enabled: bool = True
    alt_data: AltDataKind | None = None
    """Hand each accepted payload to the alt-data bridge as events of this kind (must match ``parser``)."""

    @field_validator("path")
    @classmethod
    def _path_placeholders(cls, value: str) -> str:
        unknown = _placeholders(value) - PATH_PLACEHOLDERS
        if unknown:
            raise ValueError(f"unknown placeholders {sorted(unknown)}; allowed: {sorted(PATH_PLACEHOLDERS)}")
        return value

    @field_validator("parser")
    @classmethod
    def _known_parser(cls, value: str) -> str:
        if value not in PARSERS:
            raise ValueError(f"unknown parser; known: {sorted(PARSERS)}")
        return value

    @field_validator("params")
    @classmethod
    def _param_placeholders(cls, value: dict[str, ParamValue]) -> dict[str, ParamValue]:
        for name, param in value.items():
            unknown = _placeholders(param) - PARAM_PLACEHOLDERS if isinstance(param, str) else set()
            if unknown:
                raise ValueError(f"{name}: unknown placeholders {sorted(unknown)}; allowed: {{ticker}}")
        return value

    @field_validator("redis_key")
    @classmethod
    def _redis_key(cls, value: str) -> str:
        unknown = _placeholders(value) - {"ticker"}
        if unknown:
            raise ValueError(f"unknown placeholders {sorted(unknown)}; allowed: {{ticker}}")
        if not any(value.startswith(p) for p in keys.RAW_SOURCE_PREFIXES.values()):
            raise ValueError(f"must start with one of {sorted(keys.RAW_SOURCE_PREFIXES.values())}")
        return value

    @field_validator("interval_s")
    @classmethod
    def _interval_in_tier(cls, value: float | None, info: ValidationInfo) -> float | None:
        tier = info.data.get("tier")
        if value is not None and tier is not None:
            low, high, _ = TIER_BANDS_S[tier]
            if not low <= value <= high:
                raise ValueError(f"tier {tier} fetches every {low:g}–{high:g} s")
        return value

    @field_validator("ttl_s")
    @classmethod
    def _ttl_covers_cadence(cls, value: int, info: ValidationInfo) -> int:
        tier = info.data.get("tier")
        if tier is not None:
            cadence = info.data.get("interval_s") or TIER_BANDS_S[tier][2]
            if value < cadence:
                raise ValueError(f"shorter than the {cadence:g} s cadence: the key would expire between fetches")
        return value

    @field_validator("symbols")
    @classmethod
    def _symbols_match_templates(cls, value: object, info: ValidationInfo) -> object:
        texts = [info.data.get("path", ""), info.data.get("redis_key", "")]
        texts += [p for p in info.data.get("params", {}).values() if isinstance(p, str)]
        per_ticker = any("{ticker}" in text for text in texts)
        if value is None and per_ticker:
            raise ValueError("path/params/redis_key use {ticker}, so the endpoint needs symbols (a list or 'universe')")
        if value is not None and "{ticker}" not in info.data.get("redis_key", "{ticker}"):
            raise ValueError("a per-symbol endpoint needs {ticker} in its redis_key, or symbols overwrite each other")
        if value is not None and not per_ticker:
            raise ValueError("symbols given but neither path nor params use {ticker}")
        return value

    @field_validator("alt_data")
    @classmethod
    def _alt_data_matches_parser(cls, value: AltDataKind | None, info: ValidationInfo) -> AltDataKind | None:
        """The bridge's converter of a kind reads one parser's records; any other pairing is a config error."""
        if value is None:
            return value
        expected = ALT_DATA_PARSERS.get(value)
        if expected is None:
            known = sorted(k.value for k in ALT_DATA_PARSERS)
            raise ValueError(f"no converter for this kind; alt_data is one of {known}")
        parser = info.data.get("parser")
        if parser is not None and parser != expected:
            raise ValueError(f"{value.value} events are converted from {expected} records, but parser is {parser!r}")
        return value

    @property
    def cadence_s(self) -> float:
        """Interval at a schedule multiplier of 1."""
        return self.interval_s if self.interval_s is not None else TIER_BANDS_S[self.tier][2]

    def symbols_for(self, universe: list[str]) -> list[str | None]:
        """The jobs' symbols: the list, the universe, or ``[None]`` for a market-wide endpoint."""
        if self.symbols is None:
            return [None]
        chosen = universe if self.symbols == "universe" else self.symbols
        return [s for s in chosen if s not in self.exclude]


class SourceFile(Strict):
    """A whole ``config/sources/<name>.yaml``."""

    source: SourceSpec
    endpoints: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")], EndpointSpec]

    @model_validator(mode="after")
    def _not_empty(self) -> SourceFile:
        if not self.endpoints:
            raise ValueError("endpoints: at least one endpoint is required")
        return self


@dataclass(frozen=True)
class SourceConfig:
    """A validated source file plus what comes from the environment (token, URL overrides)."""

    path: Path
    spec: SourceFile
    token: str
    base_url: str
    ws_url: str | None

    @property
    def source(self) -> SourceSpec:
        """The ``source:`` section."""
        return self.spec.source

    @property
    def endpoints(self) -> dict[str, EndpointSpec]:
        """The ``endpoints:`` section."""
        return self.spec.endpoints


def _dialect_problems(path: Path, spec: SourceFile) -> list[str]:
    dialect = spec.source.dialect
    prefix = PARSER_PREFIX[dialect]
    key_prefix = keys.RAW_SOURCE_PREFIXES[dialect]
    problems = []
    for name, endpoint in spec.endpoints.items():
        if not endpoint.parser.startswith(prefix):
            problems.append(
                f"{path}: endpoints.{name}.parser = {endpoint.parser!r}: a {dialect} source needs {prefix}*"
            )
        if not endpoint.redis_key.startswith(key_prefix):
            key = endpoint.redis_key
            problems.append(f"{path}: endpoints.{name}.redis_key = {key!r}: a {dialect} key starts with {key_prefix!r}")
    if spec.source.websocket is not None and dialect != "unusual_whales":
        problems.append(f"{path}: source.websocket = ...: only the unusual_whales dialect has a WebSocket")
    return problems


def load_source(path: Path | str, environ: Mapping[str, str] | None = None) -> SourceConfig:
    """Read, validate and resolve one source file; any problem is a :class:`ConfigError` naming file, key, value."""
    path = Path(path)
    environ = os.environ if environ is None else environ
    if not path.is_file():
        raise ConfigError(f"{path}: source file does not exist")
    raw = read_yaml(path)
    try:
        spec = SourceFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError("invalid source configuration:\n" + format_errors(path, raw, exc)) from exc
    problems = _dialect_problems(path, spec)
    token_env = spec.source.auth.token_env
    token = environ.get(token_env, "")
    if not token:
        problems.append(f"{path}: source.auth.token_env = {token_env!r}: environment variable is not set")
    if problems:
        raise ConfigError("invalid source configuration:\n" + "\n".join(problems))
    source = spec.source
    base_url = environ.get(source.base_url_env, "") if source.base_url_env else ""
    ws = source.websocket
    ws_url = None
    if ws is not None:
        ws_url = (environ.get(ws.url_env, "") if ws.url_env else "") or ws.url
    return SourceConfig(path=path, spec=spec, token=token, base_url=base_url or source.base_url, ws_url=ws_url)
