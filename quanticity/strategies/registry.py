"""The strategies of SPEC §7 by name: their config models and classes, in one table.

The config loader validates ``trading.yaml → strategies.<name>`` against these models, the
supervisor creates one Strategy actor per enabled entry, and backtests build the same objects.
"""

from __future__ import annotations

from quanticity.strategies.base import Strategy, StrategyConfig
from quanticity.strategies.fourteen_day_directional import FourteenDayDirectionalConfig, FourteenDayDirectionalStrategy
from quanticity.strategies.fourteen_day_high_iv import FourteenDayHighIvConfig, FourteenDayHighIvStrategy
from quanticity.strategies.moc_imbalance import MocImbalanceConfig, MocImbalanceStrategy
from quanticity.strategies.one_dte_overnight import OneDteOvernightConfig, OneDteOvernightStrategy
from quanticity.strategies.zero_dte_gamma import ZeroDteGammaConfig, ZeroDteGammaStrategy

#: name → (config model, strategy class)
STRATEGIES: dict[str, tuple[type[StrategyConfig], type[Strategy]]] = {
    "zero_dte_gamma": (ZeroDteGammaConfig, ZeroDteGammaStrategy),
    "one_dte_overnight": (OneDteOvernightConfig, OneDteOvernightStrategy),
    "moc_imbalance": (MocImbalanceConfig, MocImbalanceStrategy),
    "fourteen_day_directional": (FourteenDayDirectionalConfig, FourteenDayDirectionalStrategy),
    "fourteen_day_high_iv": (FourteenDayHighIvConfig, FourteenDayHighIvStrategy),
}


def build_strategy(config: StrategyConfig) -> Strategy:
    """The strategy object for a validated config (its ``name`` selects the class)."""
    try:
        _, cls = STRATEGIES[config.name]
    except KeyError as exc:
        raise ValueError(f"strategies: {config.name!r} is not one of {sorted(STRATEGIES)}") from exc
    return cls(config)  # type: ignore[call-arg]
