"""Where the overseer's Unusual Whales inputs live: the fetcher's own source YAML (SPEC §5, §12).

The fetcher writes every endpoint of ``config/sources/unusual_whales.yaml`` to Redis under that
endpoint's ``redis_key`` (:func:`quanticity.feeds.sink.write_payload`). The overseer reads the
same file through the same typed model (:class:`~quanticity.feeds.sources.SourceFile`), so the
keys it watches can never drift from the keys the fetcher writes: an endpoint that is market-wide
in the YAML (no ``{ticker}`` in its key) is watched as one feed-wide key, a per-ticker one only
for the symbols the fetcher fetches it for.

The staleness thresholds of SPEC §12 only make sense against the fetch cadence: a threshold at or
below the interval between two fetches would warn every cycle although nothing is wrong.
:func:`cadence_problems` checks that at config load (``quanticity.config.loader``) and when the
reader is built, naming the rule, the endpoint and both numbers.

The token is not needed here (the overseer never calls UW), which is why the file is validated
with the model directly rather than through :func:`quanticity.feeds.sources.load_source`, which
also resolves the token from the environment.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from quanticity.config.loader import ConfigError, format_errors, read_yaml
from quanticity.feeds.sources import EndpointSpec, SourceFile

if TYPE_CHECKING:
    from quanticity.overseer.config import OverseerConfig

REPO_ROOT = Path(__file__).resolve().parents[2]

STALENESS_ENDPOINTS: dict[str, str] = {
    "uw_spot_gex": "spot_exposures",
    "uw_flow_alerts": "flow_alerts",
    "uw_chains": "option_chains",
}
"""Staleness rule (``ops.yaml`` ``overseer.staleness``) → endpoint of the UW source YAML it watches."""

PRICE_ENDPOINT = "spot_exposures"
"""UW side of the price divergence: the newest per-minute row's ``price`` at its ``time``."""

CONTRACTS_ENDPOINT = "option_contracts"
"""UW side of the greeks (implied vol) and spread divergences: per-contract IV and NBBO."""


def resolve_path(path: str | Path) -> Path:
    """A source YAML path as the fetcher resolves it: absolute, relative to the working directory, or to the repo."""
    candidate = Path(path)
    if candidate.is_absolute() or candidate.exists():
        return candidate
    return REPO_ROOT / candidate


def load_source_file(path: str | Path) -> SourceFile:
    """Read and validate one source YAML; a problem is a :class:`ConfigError` naming the file, key and value."""
    resolved = resolve_path(path)
    if not resolved.is_file():
        raise ConfigError(f"{resolved}: source file does not exist")
    raw = read_yaml(resolved)
    try:
        return SourceFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError("invalid source configuration:\n" + format_errors(resolved, raw, exc)) from exc


def uw_source_path(paths: Sequence[str | Path]) -> Path | None:
    """The first of ``paths`` (``system.venue.sources``) that is an Unusual Whales source, else None."""
    for path in paths:
        resolved = resolve_path(path)
        if resolved.is_file() and load_source_file(resolved).source.dialect == "unusual_whales":
            return resolved
    return None


def effective_interval_s(source: SourceFile, endpoint: EndpointSpec) -> float | None:
    """Seconds between two fetches of ``endpoint`` in regular trading hours; None when paused then.

    The overseer only checks during the session, which is regular trading hours, so the RTH
    multiplier of the source's schedule is the one that applies.
    """
    multiplier = source.source.schedule.rth
    return None if multiplier is None else endpoint.cadence_s * multiplier


def cadence_problems(config: OverseerConfig, source: SourceFile, path: Path | str) -> list[str]:
    """One line per enabled UW staleness rule whose threshold is not above its endpoint's fetch interval."""
    problems = []
    for rule_name, endpoint_name in STALENESS_ENDPOINTS.items():
        rule = config.staleness.get(rule_name)
        if rule is None or not rule.enabled:
            continue
        where = f"overseer.staleness.{rule_name}"
        endpoint = source.endpoints.get(endpoint_name)
        if endpoint is None or not endpoint.enabled:
            state = "does not define" if endpoint is None else "disables"
            problems.append(f"{where}: watches endpoints.{endpoint_name}, which {path} {state}")
            continue
        interval = effective_interval_s(source, endpoint)
        if interval is None:
            problems.append(f"{where}: {path} pauses the source in RTH (schedule.rth = null); nothing would refresh it")
        elif rule.warn_after_s <= interval:
            problems.append(
                f"{where}.warn_after_s = {rule.warn_after_s:g} is not above the {interval:g} s fetch interval of "
                f"endpoints.{endpoint_name} in {path} (interval {endpoint.cadence_s:g} s × schedule.rth "
                f"{source.source.schedule.rth:g}): it would warn between two fetches"
            )
    return problems


def check_cadence(config: OverseerConfig, source_paths: Sequence[str | Path]) -> None:
    """Raise :class:`ConfigError` when a staleness threshold cannot hold against the fetcher's cadence.

    Called at config load with ``system.venue.sources``; without a UW source there is nothing to check.
    """
    path = uw_source_path(source_paths)
    if path is None:
        return
    problems = cadence_problems(config, load_source_file(path), path)
    if problems:
        raise ConfigError("invalid overseer configuration:\n" + "\n".join(problems))
