"""Mapping between the platform's contracts and ``ib_async`` contracts."""

from __future__ import annotations

import datetime as dt

from ib_async import Contract, Index, Option, Stock

from quanticity.messages import OptionContract, Right

__all__ = ["INDEX_SYMBOLS", "from_ib_option", "to_ib_option", "underlying_contract"]

INDEX_SYMBOLS = {"SPX": "CBOE"}
"""Underlyings that are indices (no shares: options only), with their exchange."""


def underlying_contract(symbol: str) -> Contract:
    """The (unqualified) ib_async contract of an underlying: an Index for SPX, else a SMART stock."""
    if symbol in INDEX_SYMBOLS:
        return Index(symbol, INDEX_SYMBOLS[symbol], "USD")
    return Stock(symbol, "SMART", "USD")


def to_ib_option(contract: OptionContract) -> Option:
    """The ib_async Option of a platform contract (SMART routed, multiplier 100)."""
    expiry = dt.date.fromisoformat(contract.expiry).strftime("%Y%m%d")
    return Option(contract.underlying, expiry, float(contract.strike), contract.right.value, "SMART", "100", "USD")


def from_ib_option(contract: Contract) -> OptionContract:
    """The platform contract of an ib_async option; ValueError naming the field when it is not one."""
    if contract.secType != "OPT":
        raise ValueError(f"secType: {contract.secType!r} is not OPT")
    text = contract.lastTradeDateOrContractMonth
    try:
        expiry = dt.datetime.strptime(text[:8], "%Y%m%d").date()
    except ValueError:
        raise ValueError(f"lastTradeDateOrContractMonth: {text!r} is not YYYYMMDD") from None
    right = {"C": Right.CALL, "CALL": Right.CALL, "P": Right.PUT, "PUT": Right.PUT}.get(contract.right.upper())
    if right is None:
        raise ValueError(f"right: {contract.right!r} is not C or P")
    return OptionContract(contract.symbol, expiry.isoformat(), float(contract.strike), right)
