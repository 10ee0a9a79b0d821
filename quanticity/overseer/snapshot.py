"""The overseer's input: one immutable snapshot of everything a 30-second round looks at.

The checks are pure functions of this value and the config, so every rule is tested with
hand-built snapshots and an explicit ``now_ns``; only :mod:`quanticity.overseer.reader` knows
where the numbers live in Redis.
"""

from __future__ import annotations

from dataclasses import dataclass

NS = 1_000_000_000


@dataclass(frozen=True)
class SourceAge:
    """When ``source`` last updated for ``subject`` (a symbol, or ``*`` for a feed-wide source).

    ``last_ts_ns`` None means never seen since observation started: the source is then as old as
    the observation (absent = stale, never "fine because we know nothing").
    """

    source: str
    subject: str
    last_ts_ns: int | None


@dataclass(frozen=True)
class DivergenceSample:
    """The same quantity as Unusual Whales and IBKR (or our own computation from IBKR data) see it."""

    kind: str  # price | greeks | spread
    subject: str  # e.g. "SPY" or "SPY total_gex"
    uw: float
    ibkr: float


@dataclass(frozen=True)
class Series:
    """Samples of one measured quantity: the recent window and the history before it."""

    subject: str
    recent: tuple[float, ...]
    baseline: tuple[float, ...]


@dataclass(frozen=True)
class OverseerInput:
    """Everything one round checks, observed at ``now_ns``."""

    now_ns: int
    started_ns: int
    sources: tuple[SourceAge, ...] = ()
    divergences: tuple[DivergenceSample, ...] = ()
    slippage: tuple[Series, ...] = ()
    latency: tuple[Series, ...] = ()

    def age_s(self, source: SourceAge) -> float:
        """Age of ``source`` in seconds at ``now_ns`` (since observation start when never seen)."""
        last = source.last_ts_ns if source.last_ts_ns is not None else self.started_ns
        return max(0.0, (self.now_ns - last) / NS)
