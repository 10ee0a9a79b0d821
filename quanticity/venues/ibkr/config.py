"""Typed, frozen settings of the IBKR connector (SPEC §5, IBKR paragraph).

Loaded from a YAML mapping with :func:`load_ibkr_config`, whose errors name the file, the dotted
key and the offending value like the rest of the configuration. Defaults are the seeds' values:
paper port 7497 (live 7496), one client id per role (ingestion 101, execution 201, analytics 301,
reporting 401), depth rotation with a 15 s dwell over at most 3 lines of 10 levels at explicit
exchanges (SPY@ARCA, QQQ@ISLAND), generic ticks 106,104,233, pacing ≤ 45 messages per second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, model_validator

from quanticity.config.loader import ConfigError, format_errors, read_yaml
from quanticity.config.models import Strict, Ticker

__all__ = ["BackoffSpec", "ClientIds", "IbkrConfig", "Role", "load_ibkr_config"]

Role = Literal["ingestion", "execution", "analytics", "reporting"]
PositiveFloat = Annotated[float, Field(gt=0)]


class ClientIds(Strict):
    """One API client id per role: two connections with the same id knock each other out (326)."""

    ingestion: Annotated[int, Field(ge=0)] = 101
    execution: Annotated[int, Field(ge=0)] = 201
    analytics: Annotated[int, Field(ge=0)] = 301
    reporting: Annotated[int, Field(ge=0)] = 401

    @model_validator(mode="after")
    def _distinct(self) -> ClientIds:
        ids = [self.ingestion, self.execution, self.analytics, self.reporting]
        if len(set(ids)) != len(ids):
            raise ValueError(f"client ids must differ per role, got {ids}")
        return self

    def for_role(self, role: Role) -> int:
        """The client id of ``role``."""
        return int(getattr(self, role))


class BackoffSpec(Strict):
    """Reconnect delays: ``initial_s × multiplier^n`` capped at ``max_s``, ± ``jitter`` (a fraction)."""

    initial_s: PositiveFloat = 1.0
    max_s: PositiveFloat = 60.0
    multiplier: Annotated[float, Field(ge=1)] = 2.0
    jitter: Annotated[float, Field(ge=0, le=1)] = 0.2
    seed: int = 0
    """Seed of the jitter generator, so reconnect timing is reproducible in tests."""

    @model_validator(mode="after")
    def _ordered(self) -> BackoffSpec:
        if self.max_s < self.initial_s:
            raise ValueError(f"max_s {self.max_s} is below initial_s {self.initial_s}")
        return self


class IbkrConfig(Strict):
    """The ``ibkr`` settings."""

    host: str = "127.0.0.1"
    mode: Literal["paper", "live"] = "paper"
    port: Annotated[int, Field(ge=0, le=65535)] | None = None
    """None = the mode's standard TWS port (paper 7497, live 7496)."""
    account: str = ""
    """Account to trade; empty = the single account the login manages."""
    client_ids: ClientIds = ClientIds()
    market_data_type: Literal[1, 2, 3, 4] = 1
    """1 live, 2 frozen, 3 delayed, 4 delayed-frozen."""
    connect_timeout_s: PositiveFloat = 4.0
    request_timeout_s: PositiveFloat = 10.0
    """An answer not received within this long is *unanswered* (never read as empty or flat)."""
    reconnect: BackoffSpec = BackoffSpec()
    max_connect_attempts: Annotated[int, Field(ge=0)] = 0
    """Give up after this many failed attempts in a row (0 = keep trying)."""
    pacing_msgs_per_s: Annotated[int, Field(gt=0, le=50)] = 45
    """Client-side cap on messages per second; TWS disconnects above 50."""
    stale_after_s: PositiveFloat = 10.0
    """Market data older than this makes the connection unhealthy, whatever the socket says."""

    # --- market data ----------------------------------------------------------------------
    generic_ticks: str = "106,104,233"
    option_generic_ticks: str = "101"
    """Generic ticks of every option line: 101 = its open interest, without which the dealer
    exposures (GEX, walls, max pain) see no contract at all."""
    depth_symbols: list[Ticker] = Field(default_factory=lambda: ["SPY", "QQQ", "IWM"])
    depth_exchanges: dict[Ticker, str] = Field(default_factory=lambda: {"SPY": "ARCA", "QQQ": "ISLAND"})
    default_depth_exchange: str = "ISLAND"
    depth_lines: Annotated[int, Field(ge=1, le=3)] = 3
    depth_levels: Annotated[int, Field(ge=1, le=20)] = 10
    depth_dwell_s: PositiveFloat = 15.0
    depth_retry_after_s: PositiveFloat = 30.0
    """After error 309 (no depth line free), use one line fewer for this long."""
    tick_by_tick_symbols: list[Ticker] = Field(default_factory=lambda: ["SPY", "QQQ", "IWM"])
    tick_by_tick_type: Literal["Last", "AllLast"] = "AllLast"
    option_expiries: Annotated[int, Field(ge=1, le=20)] = 2
    """Nearest expiries of each chain to stream."""
    option_strikes_each_side: Annotated[int, Field(ge=0, le=50)] = 3
    """Strikes around the money (each side) of each streamed expiry."""
    max_trade_size: Annotated[int, Field(gt=0)] = 10_000_000
    """A print or book level larger than this is an impossible size and is rejected."""

    @property
    def resolved_port(self) -> int:
        """The port to connect to: explicit, else 7497 for paper and 7496 for live."""
        if self.port is not None:
            return self.port
        return 7497 if self.mode == "paper" else 7496

    def depth_exchange(self, symbol: str) -> str:
        """The explicit exchange depth is requested at for ``symbol`` (never SMART)."""
        return self.depth_exchanges.get(symbol, self.default_depth_exchange)


def load_ibkr_config(file: Path | str, section: str | None = "ibkr") -> IbkrConfig:
    """Read ``file`` (its ``section`` key, or the whole mapping when ``section`` is None)."""
    path = Path(file)
    raw = read_yaml(path)
    data = raw.get(section, {}) if section is not None else raw
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: {section} must be a mapping, got {type(data).__name__} {data!r}")
    try:
        return IbkrConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError("invalid IBKR configuration:\n" + format_errors(path, data, exc)) from exc
