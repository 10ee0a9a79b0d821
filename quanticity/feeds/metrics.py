"""Counters of one source's fetcher, readable as a plain dict for the feed actor's heartbeat / Prometheus."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SourceMetrics:
    """Everything countable about a source's fetching; mutated only by the engine.

    ``errors`` is keyed by endpoint then reason (``http_500``, ``timeout``, ``connection``,
    ``malformed_json``, ``bad_shape``, ``missing_field``, ``bad_value``, ``non_finite``,
    ``out_of_range``, ``crossed``, ``av_error``, ``stale``, ``future``, ``redis``, ``internal``). A
    record dropped from an otherwise accepted response (an AV contract with a NaN greek) counts
    under its reason here and in ``records_dropped``.
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
    records_dropped: int = 0
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
            "records_dropped": self.records_dropped,
            "backlog": self.backlog,
            "reloads": self.reloads,
            "reload_errors": self.reload_errors,
            "last_reload_error": self.last_reload_error,
        }


# --- flattening for the heartbeat ------------------------------------------------------------
SOURCE_ERROR_REASONS = (
    "malformed_json",
    "bad_shape",
    "missing_field",
    "bad_value",
    "non_finite",
    "out_of_range",
    "crossed",
    "av_error",
    "stale",
    "future",
    "timeout",
    "connection",
    "redis",
    "internal",
    "hook",
)
"""Reasons a source's ``errors`` counts, always reported (0 until seen) so dashboards and alerts see the series
from the start; ``http_<status>`` reasons appear when first seen."""
THROTTLE_KINDS = ("note", "information")
"""Alpha Vantage's in-band throttle messages (``throttled`` by kind)."""
SOCKET_BAD_FRAME_REASONS = (
    "malformed_json",
    "non_finite",
    "bad_shape",
    "missing_field",
    "bad_value",
    "out_of_range",
    "unknown_channel",
    "binary",
)
"""Why the UW socket client drops a frame (``bad_frames`` by reason)."""
BY_LABEL: dict[str, tuple[str, ...]] = {
    "errors": SOURCE_ERROR_REASONS,
    "throttled": THROTTLE_KINDS,
    "bad_frames": SOCKET_BAD_FRAME_REASONS,
    "rejected": (),
}
"""Dict-valued counters reported per label (``<prefix>_<name>_<label>``), with the labels always present."""
_LABEL = re.compile(r"[^A-Za-z0-9_]+")


def _scalar(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return None


def _by_label(value: Mapping[str, Any]) -> Counter[str]:
    """Counts by label of ``{label: n}`` or ``{group: {label: n}}`` (errors by endpoint then reason)."""
    out: Counter[str] = Counter()
    for label, inner in value.items():
        if isinstance(inner, Mapping):
            for sub, count in inner.items():
                number = _scalar(count)
                if number is not None:
                    out[str(sub)] += int(number)
        else:
            number = _scalar(inner)
            if number is not None:
                out[str(label)] += int(number)
    return out


def flat_counters(prefix: str, metrics: Mapping[str, Any]) -> dict[str, float]:
    """The scalar counters of a ``metrics()`` dict, named ``<prefix>_<key>[_<label>]``, for heartbeats.

    A heartbeat carries only numbers (Prometheus turns each into ``quanticity_actor_stat{stat=…}``), so a
    nested counter would silently vanish there. Here:

    - numbers (booleans as 0/1) stay as they are: ``unusual_whales_requests``;
    - the counters keyed by reason or kind (:data:`BY_LABEL`: ``errors`` by endpoint then reason,
      ``throttled``, ``bad_frames``, ``rejected``) become one counter per label, summed over
      endpoints — ``alpha_vantage_errors_non_finite``, ``alpha_vantage_throttled_note``,
      ``uw_socket_bad_frames_malformed_json`` — with the known labels present at 0, so a series
      exists before the first bad input (alerts use ``increase()``) and its name never changes;
    - other counters keyed by endpoint or channel (``writes``, ``dispatched``, ``messages``,
      ``breaker_opened``, …) become their total: ``<prefix>_writes``;
    - ``breakers`` (endpoint → state) becomes how many are not closed: ``<prefix>_breakers_open``;
    - text (last errors by endpoint, the source name) is left out — it is in ``metrics()``, not a number.
    """
    out: dict[str, float] = {}
    for key, value in metrics.items():
        number = _scalar(value)
        if number is not None:
            out[f"{prefix}_{key}"] = number
        elif key == "breakers" and isinstance(value, Mapping):
            out[f"{prefix}_breakers_open"] = float(sum(1 for state in value.values() if state != "closed"))
        elif isinstance(value, Mapping) and not any(isinstance(v, str) for v in value.values()):
            counts = _by_label(value)
            if key in BY_LABEL:
                for label in (*BY_LABEL[key], *sorted(counts)):
                    out[f"{prefix}_{key}_{_LABEL.sub('_', label)}"] = float(counts[label])
                out.setdefault(f"{prefix}_{key}_total", float(sum(counts.values())))
            else:
                out[f"{prefix}_{key}"] = float(sum(counts.values()))
    return out
