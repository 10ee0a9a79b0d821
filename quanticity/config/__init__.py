"""Configuration: YAML files under ``config/`` validated into typed, frozen models."""

from quanticity.config.loader import ConfigError, load_config
from quanticity.config.models import QuanticityConfig

__all__ = ["ConfigError", "QuanticityConfig", "load_config"]
