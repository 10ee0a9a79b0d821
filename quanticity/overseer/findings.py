"""Severities and findings: the vocabulary every overseer check speaks.

A check never acts; it reports a :class:`Finding` with a severity, and the overseer decides what
the worst severity of a round means (SPEC §12: CRITICAL halts, WARNING alerts the admin). Keeping
findings as plain frozen values makes every rule testable without Redis, a model or a clock.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field


class Severity(enum.StrEnum):
    """How bad a finding or a verdict is; ordered OK < WARNING < CRITICAL."""

    OK = "OK"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"

    @property
    def rank(self) -> int:
        """0, 1, 2 — for comparisons (a StrEnum compares alphabetically, which would be wrong)."""
        return _RANK[self]

    def at_least(self, other: Severity) -> bool:
        """True when this severity is ``other`` or worse."""
        return self.rank >= other.rank


_RANK = {Severity.OK: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


def worst(severities: Iterable[Severity]) -> Severity:
    """The worst of ``severities`` (OK for none)."""
    return max(severities, key=lambda s: s.rank, default=Severity.OK)


@dataclass(frozen=True)
class Finding:
    """One anomaly: which rule, about what (``subject``: a source, symbol or actor), how bad, why.

    ``key`` identifies the same anomaly across rounds, so the overseer can re-alert on a cooldown
    instead of every 30 s.
    """

    rule: str
    subject: str
    severity: Severity
    message: str
    value: float | None = None
    threshold: float | None = None
    details: dict[str, float | str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Stable identity of this anomaly: ``rule|subject``."""
        return f"{self.rule}|{self.subject}"

    def line(self) -> str:
        """One line for prompts, alerts and logs: ``[WARNING] staleness.uw_spot_gex SPY: …``."""
        return f"[{self.severity.value}] {self.rule} {self.subject}: {self.message}"
