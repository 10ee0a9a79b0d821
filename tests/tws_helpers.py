"""What the tests of the TWS simulator and the IBKR connector share: the session, an order, a config.

Every such test runs the synthetic market of 2025-01-03 from the open with one simulated second
per step, so the constants and builders live here once.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from quanticity.config import QuanticityConfig
from quanticity.messages import OptionContract, OrderIntent, Right, Side
from quanticity.sim.tws import TwsSimConfig, TwsSimulator
from quanticity.venues.ibkr import BackoffSpec, IbkrConfig

SESSION = dt.date(2025, 1, 3)
START_NS = 1_735_914_600_000_000_000  # 2025-01-03 09:30 ET
CONTRACT = OptionContract("SPY", "2025-01-03", 590.0, Right.CALL)


def tws_sim(config: QuanticityConfig, symbols: list[str], **overrides: Any) -> TwsSimulator:
    """A simulator of ``symbols`` on the test session (seed 7, 1 s steps); ``overrides`` go to TwsSimConfig."""
    return TwsSimulator.from_config(
        config, seed=7, symbols=symbols, session_date=SESSION, step_ms=1000, sim_config=TwsSimConfig(**overrides)
    )


def ibkr_config(port: int, **overrides: Any) -> IbkrConfig:
    """The connector's config for a simulator on ``port``: fast reconnects, one expiry, 3 strikes."""
    values: dict[str, Any] = {
        "port": port,
        "connect_timeout_s": 10.0,  # generous: only a broken test waits this long
        "request_timeout_s": 10.0,
        "reconnect": BackoffSpec(initial_s=0.05, max_s=0.2, jitter=0.2, seed=3),
        "depth_symbols": ["SPY", "QQQ", "IWM", "AAPL"],
        "tick_by_tick_symbols": ["SPY"],
        "option_expiries": 1,
        "option_strikes_each_side": 1,
    }
    values.update(overrides)
    return IbkrConfig(**values)


def intent(ref: str, quantity: int, limit: float, side: Side = Side.BUY) -> OrderIntent:
    """An order intent for :data:`CONTRACT` at the session open."""
    return OrderIntent(
        ts_event=START_NS,
        ts_init=START_NS,
        order_ref=ref,
        signal_id=f"sig-{ref}",
        strategy="zero_dte_gamma",
        contract=CONTRACT,
        side=side,
        quantity=quantity,
        limit_price=limit,
        origin_ts_init=START_NS,
    )
