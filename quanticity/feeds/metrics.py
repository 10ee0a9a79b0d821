"""Counters of one source's fetcher, readable as a plain dict for the feed actor's heartbeat / Prometheus."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SourceMetrics:
    """Everything countable about a source's fetching; mutated only by the engine.

    ``errors`` is keyed by endpoint then reason (``http_500``, ``timeout``, ``connection``,
    ``malformed_json``, ``bad_shape``, ``missing_field``, ``bad_value``, ``non_finite``,
    ``out_of_range``, ``crossed``, ``av_error``, ``redis``, ``internal``).
    """

    requests: int = 0
    responses_2xx: int = 0
    responses_429: int = 0
    throttled: Counter[str] = field(default_factory=Counter)
    errors: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    last_error: dict[str, str] = field(default_factory=dict)
    writes: Counter[str] = field(default_factory=Counter)
    dispatched: Counter[str] = field(default_factory=Counter)
    skipped_breaker_open: Counter[str] = field(default_factory=Counter)
    discarded_stale: int = 0
    backlog: int = 0
    reloads: int = 0
    reload_errors: int = 0
    last_reload_error: str | None = None

    def error(self, endpoint: str, reason: str, detail: str = "") -> None:
        """Count one failure of ``endpoint``; keep the latest detail for the operator."""
        self.errors[endpoint][reason] += 1
        self.last_error[endpoint] = f"{reason}: {detail}" if detail else reason

    def errors_total(self) -> int:
        """All failures of all endpoints."""
        return sum(sum(c.values()) for c in self.errors.values())

    def as_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON-serialisable) of every counter."""
        return {
            "requests": self.requests,
            "responses_2xx": self.responses_2xx,
            "responses_429": self.responses_429,
            "throttled": dict(self.throttled),
            "errors": {endpoint: dict(reasons) for endpoint, reasons in self.errors.items()},
            "errors_total": self.errors_total(),
            "last_error": dict(self.last_error),
            "writes": dict(self.writes),
            "dispatched": dict(self.dispatched),
            "skipped_breaker_open": dict(self.skipped_breaker_open),
            "discarded_stale": self.discarded_stale,
            "backlog": self.backlog,
            "reloads": self.reloads,
            "reload_errors": self.reload_errors,
            "last_reload_error": self.last_reload_error,
        }
