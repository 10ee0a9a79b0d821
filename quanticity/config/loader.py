"""Load ``config/*.yaml`` into :class:`QuanticityConfig`, failing loudly and precisely.

A bad file fails at start with one line per problem naming the file, the dotted key and the
offending value, e.g. ``config/trading.yaml: risk.max_orders_per_minute = 'many': Input should
be a valid integer``. Secrets never live in these files: they come from the environment only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from quanticity.admin.config import env_values as admin_env_values
from quanticity.config.models import (
    DistributionFile,
    MarketFile,
    OpsFile,
    QuanticityConfig,
    SystemFile,
    TradingFile,
)

#: file stem → model of that file
CONFIG_FILES: dict[str, type[BaseModel]] = {
    "system": SystemFile,
    "market": MarketFile,
    "trading": TradingFile,
    "distribution": DistributionFile,
    "ops": OpsFile,
}

DEFAULT_CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"


class ConfigError(ValueError):
    """A configuration file is missing, unreadable or invalid; the message names file, key and value."""


def _lookup(data: Any, path: tuple[int | str, ...]) -> Any:
    for part in path:
        if (
            isinstance(data, Mapping)
            and part in data
            or isinstance(data, list)
            and isinstance(part, int)
            and 0 <= part < len(data)
        ):
            data = data[part]
        else:
            return "<missing>"
    return data


def format_errors(file: Path, raw: Any, error: ValidationError) -> str:
    """One line per pydantic error naming the file, the dotted key and the offending value —
    shared by every YAML the platform reads (config/, config/sources/, the IBKR section)."""
    lines = []
    for item in error.errors():
        loc = tuple(p for p in item["loc"] if p not in ("function-after",))
        key = ".".join(str(p) for p in loc) or "<root>"
        value = _lookup(raw, loc) if item["type"] != "missing" else "<missing>"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"{file}: {key} = {value!r}: {message}")
    return "\n".join(lines)


def deep_merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``overrides`` laid over ``base``, nested mappings merged key by key (neither is modified)."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def read_yaml(file: Path) -> dict[str, Any]:
    """Read one YAML mapping; an unreadable file or a non-mapping top level is a ConfigError."""
    try:
        raw = yaml.safe_load(file.read_text()) if file.exists() else {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: top level must be a mapping, got {type(raw).__name__} {raw!r}")
    return raw


def load_config(
    config_dir: Path | str | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    environ: Mapping[str, str] | None = None,
) -> QuanticityConfig:
    """Load and validate every file of ``config_dir`` (default: the repository's ``config/``).

    ``overrides`` maps a file stem to a nested mapping merged over that file (tests and CLI
    flags use it); ``REDIS_URL`` from ``environ`` selects an external Redis.
    """
    directory = Path(config_dir) if config_dir is not None else DEFAULT_CONFIG_DIR
    if not directory.is_dir():
        raise ConfigError(f"{directory}: config directory does not exist")
    environ = os.environ if environ is None else environ
    overrides = overrides or {}
    unknown = sorted(set(overrides) - set(CONFIG_FILES))
    if unknown:
        raise ConfigError(f"overrides name unknown config files {unknown}; known: {sorted(CONFIG_FILES)}")
    stray = sorted(p.name for p in directory.glob("*.yaml") if p.stem not in CONFIG_FILES)
    if stray:
        raise ConfigError(f"{directory}: unknown config files {stray}; known: {sorted(CONFIG_FILES)}")

    sections: dict[str, BaseModel] = {}
    problems: list[str] = []
    for stem, model in CONFIG_FILES.items():
        file = directory / f"{stem}.yaml"
        raw = deep_merge(read_yaml(file), overrides.get(stem, {}))
        if stem == "system" and environ.get("REDIS_URL"):
            raw = deep_merge(raw, {"redis": {"url": environ["REDIS_URL"]}})
        if stem == "ops":  # the admin allow-list and chat may come from the environment
            try:
                admin_env = admin_env_values(environ)
            except ValueError as exc:
                problems.append(f"environment: {exc}")
                continue
            if admin_env:
                raw = deep_merge(raw, {"admin": admin_env})
        try:
            sections[stem] = model.model_validate(raw)
        except ValidationError as exc:
            problems.append(format_errors(file, raw, exc))
    if problems:
        raise ConfigError("invalid configuration:\n" + "\n".join(problems))
    config = QuanticityConfig(**sections)
    missing = sorted(set(config.system.universe.symbols) - set(config.market.underlyings))
    if missing:
        raise ConfigError(
            f"{directory / 'system.yaml'}: universe lists {missing} but "
            f"{directory / 'market.yaml'}: underlyings has no entry for them"
        )
    if config.ops.overseer_enabled:
        from quanticity.overseer.sources import check_cadence  # noqa: PLC0415 - it imports this module

        check_cadence(config.ops.overseer, config.system.venue.sources)  # thresholds vs the UW fetch cadence
    return config
