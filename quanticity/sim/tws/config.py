"""Settings of the TWS/Gateway simulator (a frozen pydantic model: a typo fails at start).

The defaults are the real TWS limits the connector must respect: 3 concurrent depth requests,
50 messages per second, IBKR's option commission schedule ($0.65 per contract, $1 minimum per
order). Tests shrink the timing values; nothing else in the simulator is hard-coded.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from quanticity.config.models import Strict

__all__ = ["SERVER_VERSION", "TwsSimConfig"]

SERVER_VERSION = 176
"""TWS API server version the simulator announces (TWS 10.19-era; ib_async 2.1 speaks 157..178).

Every version-dependent field the simulator writes and reads is the one this version implies
for ib_async's decoder and encoder (e.g. contract details without a version field, errors with
an advanced-reject JSON field, placeOrder with ``faProfile`` because 176 < 177)."""


class TwsSimConfig(Strict):
    """How the simulated TWS behaves."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 0
    account: Annotated[str, Field(pattern=r"^[A-Z]{1,2}[0-9]{5,8}$")] = "DU1234567"
    max_msgs_per_s: Annotated[int, Field(gt=0)] = 50
    """More client messages than this within one second → error 100 and the connection is dropped."""
    max_depth_lines: Annotated[int, Field(ge=0)] = 3
    """Concurrent reqMktDepth subscriptions per account; one more gets error 309."""
    max_tick_by_tick: Annotated[int, Field(ge=0)] = 10
    """Concurrent tick-by-tick subscriptions per account; one more gets error 10190."""
    start_cash: Annotated[float, Field(gt=0)] = 1_000_000.0
    commission_per_contract: Annotated[float, Field(ge=0)] = 0.65
    min_commission: Annotated[float, Field(ge=0)] = 1.0
    max_fill_per_step: Annotated[int, Field(gt=0)] = 50
    """Contracts one order can fill per market step: larger orders fill in parts."""
    passive_fill_rate: Annotated[float, Field(ge=0, le=1)] = 0.3
    """Per-step probability scale of a passive (inside the spread) limit order filling."""
    fill_seed: int = 11
    first_order_id: Annotated[int, Field(gt=0)] = 1
    first_perm_id: Annotated[int, Field(gt=0)] = 1_000_000
    delayed_data_s: Annotated[float, Field(gt=0)] = 900.0
    """Market data type 3/4 streams what was live this many simulated seconds earlier (TWS: 15 minutes)."""
    pnl_interval_s: Annotated[float, Field(gt=0)] = 1.0
    """Simulated seconds between P&L updates of one reqPnL/reqPnLSingle subscription (TWS: about 1 s)."""
