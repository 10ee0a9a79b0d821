"""Positions and realized P&L from fills: pure arithmetic, shared by live and backtests."""

from __future__ import annotations

import msgspec

from quanticity.messages import Direction, Fill, OptionContract, Right, Side


class Position(msgspec.Struct, kw_only=True):
    """A long option position; ``avg_price`` is per share (× 100 per contract)."""

    contract: OptionContract
    quantity: int
    avg_price: float
    strategy: str
    opened_ns: int
    mark: float = 0.0

    @property
    def direction(self) -> Direction:
        """Calls are bullish, puts bearish (long options only)."""
        return Direction.BULLISH if self.contract.right is Right.CALL else Direction.BEARISH

    @property
    def unrealized(self) -> float:
        """Mark-to-market P&L of the open contracts."""
        return (self.mark - self.avg_price) * self.quantity * 100 if self.mark > 0 else 0.0


def apply_fill(position: Position | None, fill: Fill) -> tuple[Position | None, float]:
    """New position after ``fill`` and the realized P&L it produces (net of its commission).

    A BUY adds at a volume-weighted average price; a SELL realizes against the average. A SELL
    larger than the position is a broker/bookkeeping error and raises ``ValueError`` so it is
    never silently booked.
    """
    if fill.quantity <= 0:
        raise ValueError(f"fill.quantity: {fill.quantity} must be positive ({fill.exec_id})")
    if fill.side is Side.BUY:
        if position is None:
            new = Position(
                contract=fill.contract,
                quantity=fill.quantity,
                avg_price=fill.price,
                strategy=fill.strategy,
                opened_ns=fill.ts_event,
                mark=fill.price,
            )
        else:
            qty = position.quantity + fill.quantity
            avg = (position.avg_price * position.quantity + fill.price * fill.quantity) / qty
            new = msgspec.structs.replace(position, quantity=qty, avg_price=avg)
        return new, -fill.commission
    held = position.quantity if position else 0
    if fill.quantity > held:
        raise ValueError(f"fill.quantity: sell {fill.quantity} of {fill.contract.key} but hold {held} ({fill.exec_id})")
    assert position is not None
    realized = (fill.price - position.avg_price) * fill.quantity * 100 - fill.commission
    remaining = held - fill.quantity
    return (msgspec.structs.replace(position, quantity=remaining) if remaining else None), realized
