"""The simulated account's order book, fill engine, positions and cash.

Order types: LMT, MKT, STP and TRAIL (trailing amount in ``auxPrice`` or ``trailingPercent``),
optionally in an OCA group. Fill model, applied on every market step against the current quote
of the order's contract (the same model as :mod:`quanticity.sim.broker`, which fills the
platform's embedded runs, extended with the order types a bracket needs):

- a marketable order (MKT, a triggered STP/TRAIL, a BUY limit at or above the ask, a SELL
  limit at or below the bid) fills at the touch, never worse than its limit;
- a limit inside the spread fills at its limit with probability ``passive_fill_rate × reach``
  per step, ``reach`` being how far into the spread it sits (the market trading through it),
  drawn from a seeded generator so runs are reproducible;
- at most ``max_fill_per_step`` contracts per order per step, so a large order fills in parts;
- commissions follow IBKR's options schedule: ``per_contract × contracts`` with a per-*order*
  minimum, so each execution is charged what takes the order's total to
  ``max(minimum, per_contract × filled)``;
- OCA: type 1 cancels the other orders of the group on any fill, types 2 and 3 reduce them by
  the filled quantity.

The engine knows nothing about sockets: it reports every change to an :class:`OrderSink`
(the server turns those into openOrder/orderStatus/execDetails/commissionReport messages).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Protocol

import numpy as np

from quanticity.sim.tws.config import TwsSimConfig
from quanticity.sim.tws.contracts import Listing

__all__ = ["ExecutionRecord", "OrderEngine", "OrderRequest", "OrderSink", "PnlValues", "PositionRecord", "SimOrder"]

QuoteFn = Callable[[Listing], tuple[float, float] | None]
"""Current (bid, ask) of a listing, or None when it has no market now."""
MarkFn = Callable[[Listing], float | None]
"""Current mark (mid) of a listing, or None when it has no market now."""

ORDER_TYPES = frozenset({"LMT", "MKT", "STP", "TRAIL"})
WORKING = frozenset({"PreSubmitted", "Submitted"})
DONE = frozenset({"Filled", "Cancelled", "Inactive"})


class OrderRejected(ValueError):
    """An order request the account refuses; ``code`` is the TWS error code to send."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclasses.dataclass(frozen=True, slots=True)
class OrderRequest:
    """The fields of a placeOrder the simulator acts on."""

    action: str  # BUY / SELL
    total_quantity: float
    order_type: str
    lmt_price: float | None
    aux_price: float | None
    tif: str
    oca_group: str
    oca_type: int
    order_ref: str
    account: str
    trailing_percent: float | None
    trail_stop_price: float | None
    transmit: bool


@dataclasses.dataclass(slots=True)
class SimOrder:
    """One order as the account holds it."""

    client_id: int
    order_id: int
    perm_id: int
    listing: Listing
    request: OrderRequest
    status: str
    filled: float = 0.0
    notional: float = 0.0
    last_fill_price: float = 0.0
    commission_charged: float = 0.0
    triggered: bool = False
    trail_stop: float | None = None
    submitted_ns: int = 0
    completed_ns: int = 0
    completed_status: str = ""

    @property
    def remaining(self) -> float:
        return max(self.request.total_quantity - self.filled, 0.0)

    @property
    def avg_fill_price(self) -> float:
        return self.notional / self.filled if self.filled else 0.0

    @property
    def working(self) -> bool:
        return self.status in WORKING


@dataclasses.dataclass(frozen=True, slots=True)
class ExecutionRecord:
    """One execution (fill) with its commission report."""

    exec_id: str
    client_id: int
    order_id: int
    perm_id: int
    listing: Listing
    side: str  # BOT / SLD
    shares: float
    price: float
    time_ns: int
    cum_qty: float
    avg_price: float
    order_ref: str
    commission: float
    realized_pnl: float


@dataclasses.dataclass(slots=True)
class PositionRecord:
    """Net position of one contract; ``avg_cost`` includes the multiplier, as TWS reports it."""

    listing: Listing
    quantity: float = 0.0
    avg_cost: float = 0.0
    realized_pnl: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class PnlValues:
    """P&L of the account or of one contract, as reqPnL / reqPnLSingle report it.

    ``realized`` is net of every commission charged (the simulator does not fold the opening
    commission into ``avgCost`` the way TWS does, so it is realized when charged — the same
    convention as the ``RealizedPnL`` account value); ``unrealized`` is quantity × (mark −
    avgCost); the account opens flat at the session start, so ``daily`` is realized +
    unrealized, i.e. the change of NetLiquidation since the open.
    """

    daily: float
    unrealized: float
    realized: float
    position: float = 0.0
    value: float = 0.0


class OrderSink(Protocol):
    """Receiver of everything the engine changes (the server fans it out to client sessions)."""

    def order_changed(self, order: SimOrder) -> None: ...

    def executed(self, order: SimOrder, execution: ExecutionRecord) -> None: ...

    def position_changed(self, position: PositionRecord) -> None: ...


class OrderEngine:
    """Orders, executions, positions and cash of the one simulated account."""

    def __init__(self, config: TwsSimConfig, sink: OrderSink) -> None:
        self._config = config
        self._sink = sink
        self._rng = np.random.Generator(np.random.PCG64(config.fill_seed))
        self._orders: dict[tuple[int, int], SimOrder] = {}
        self._used_ids: dict[int, set[int]] = {}
        self._next_perm = config.first_perm_id
        self._exec_seq = 0
        self.executions: list[ExecutionRecord] = []
        self.positions: dict[int, PositionRecord] = {}
        self.cash = config.start_cash
        self.commissions = 0.0
        self.commissions_by_contract: dict[int, float] = {}
        """Commission charged per conId (reqPnLSingle's realized P&L is net of it)."""

    # --- requests -------------------------------------------------------------------------
    def max_order_id(self) -> int:
        """Highest order id any client has used (the server's next valid id is above it)."""
        return max((max(ids) for ids in self._used_ids.values() if ids), default=0)

    def place(self, client_id: int, order_id: int, listing: Listing, request: OrderRequest, now_ns: int) -> SimOrder:
        """Accept a new order or modify a working one; raises :class:`OrderRejected` (with the code)."""
        if order_id <= 0:
            raise OrderRejected(103, f"orderId: {order_id} must be positive")
        existing = self._orders.get((client_id, order_id))
        if existing is not None:
            return self._modify(existing, listing, request)
        if order_id in self._used_ids.get(client_id, set()):
            raise OrderRejected(103, "Duplicate order id")
        self._validate(request)
        if request.oca_group and self._group_executed(request.oca_group):
            raise OrderRejected(201, f"ocaGroup: {request.oca_group!r} has already executed (OCA group is done)")
        self._used_ids.setdefault(client_id, set()).add(order_id)
        perm_id = self._next_perm
        self._next_perm += 1
        pending_trigger = request.order_type in ("STP", "TRAIL")
        order = SimOrder(
            client_id=client_id,
            order_id=order_id,
            perm_id=perm_id,
            listing=listing,
            request=request,
            status="PreSubmitted" if pending_trigger else "Submitted",
            trail_stop=request.trail_stop_price,
            submitted_ns=now_ns,
        )
        self._orders[(client_id, order_id)] = order
        self._sink.order_changed(order)
        return order

    def _validate(self, request: OrderRequest) -> None:
        if request.order_type not in ORDER_TYPES:
            raise OrderRejected(201, f"orderType: {request.order_type!r} is not one of {sorted(ORDER_TYPES)}")
        if request.action not in ("BUY", "SELL"):
            raise OrderRejected(201, f"action: {request.action!r} must be BUY or SELL")
        qty = request.total_quantity
        if not math.isfinite(qty) or qty <= 0 or not float(qty).is_integer():
            raise OrderRejected(201, f"totalQuantity: {qty} must be a positive whole number")
        if request.order_type == "LMT" and not _positive(request.lmt_price):
            raise OrderRejected(201, f"lmtPrice: {request.lmt_price} must be positive for a LMT order")
        if request.order_type == "STP" and not _positive(request.aux_price):
            raise OrderRejected(201, f"auxPrice: {request.aux_price} must be a positive stop price")
        if request.order_type == "TRAIL" and not (_positive(request.aux_price) or _positive(request.trailing_percent)):
            raise OrderRejected(201, "TRAIL needs a positive auxPrice (amount) or trailingPercent")
        if request.oca_type not in (0, 1, 2, 3):
            raise OrderRejected(201, f"ocaType: {request.oca_type} must be 1, 2 or 3")

    def _modify(self, order: SimOrder, listing: Listing, request: OrderRequest) -> SimOrder:
        if not order.working:
            raise OrderRejected(103, "Duplicate order id")
        if listing.con_id != order.listing.con_id or request.action != order.request.action:
            raise OrderRejected(105, "Order being modified does not match original order")
        self._validate(request)
        if request.total_quantity < order.filled:
            raise OrderRejected(321, f"totalQuantity: {request.total_quantity} is below the filled {order.filled}")
        order.request = request
        if request.trail_stop_price is not None:
            order.trail_stop = request.trail_stop_price
        self._sink.order_changed(order)
        return order

    def cancel(self, client_id: int, order_id: int, now_ns: int) -> SimOrder:
        """Cancel a working order; raises OrderRejected 10147 (unknown) or 10148 (already done)."""
        order = self._orders.get((client_id, order_id))
        if order is None:
            raise OrderRejected(10147, f"OrderId {order_id} that needs to be cancelled is not found.")
        if not order.working:
            raise OrderRejected(
                10148, f"OrderId {order_id} that needs to be cancelled cannot be cancelled, state: {order.status}."
            )
        self._finish(order, "Cancelled", now_ns)
        return order

    def global_cancel(self, now_ns: int) -> list[SimOrder]:
        """Cancel every working order of every client (reqGlobalCancel)."""
        cancelled = [o for o in self._orders.values() if o.working]
        for order in cancelled:
            self._finish(order, "Cancelled", now_ns)
        return cancelled

    # --- views ----------------------------------------------------------------------------
    def orders(self) -> list[SimOrder]:
        """Every order of the session, oldest first."""
        return list(self._orders.values())

    def open_orders(self, client_id: int | None = None) -> list[SimOrder]:
        """Working orders, of one client or all."""
        return [o for o in self._orders.values() if o.working and (client_id is None or o.client_id == client_id)]

    def completed_orders(self) -> list[SimOrder]:
        """Orders no longer working (filled, cancelled, rejected)."""
        return [o for o in self._orders.values() if o.status in DONE]

    def order(self, client_id: int, order_id: int) -> SimOrder | None:
        return self._orders.get((client_id, order_id))

    # --- matching -------------------------------------------------------------------------
    def on_market(self, quotes: QuoteFn, now_ns: int) -> list[ExecutionRecord]:
        """Match every working order against the current quotes; returns the new executions."""
        fills: list[ExecutionRecord] = []
        for order in list(self._orders.values()):
            if not order.working:
                continue
            market = quotes(order.listing)
            if market is None:
                continue
            bid, ask = market
            if not (math.isfinite(bid) and math.isfinite(ask)) or ask <= 0 or bid > ask:
                continue
            fill = self._match(order, bid, ask, now_ns)
            if fill is not None:
                fills.append(fill)
        return fills

    def _match(self, order: SimOrder, bid: float, ask: float, now_ns: int) -> ExecutionRecord | None:
        request = order.request
        buy = request.action == "BUY"
        kind = request.order_type
        if kind in ("STP", "TRAIL") and not order.triggered:
            if not self._triggered(order, bid, ask):
                return None
            order.triggered = True
            order.status = "Submitted"
            self._sink.order_changed(order)
        touch = ask if buy else bid
        if kind == "LMT":
            limit = float(request.lmt_price or 0.0)
            marketable = limit >= ask if buy else limit <= bid
            if marketable:
                price = touch
            else:
                reach = ((limit - bid) if buy else (ask - limit)) / (ask - bid) if ask > bid else 0.0
                if reach <= 0 or self._rng.random() >= self._config.passive_fill_rate * min(reach, 1.0):
                    return None
                price = limit
        else:
            price = touch
        if price <= 0:
            return None
        qty = float(min(order.remaining, self._config.max_fill_per_step))
        return self._execute(order, qty, round(price, 4), now_ns)

    def _triggered(self, order: SimOrder, bid: float, ask: float) -> bool:
        """Stop/trailing trigger: a SELL stop watches the bid falling, a BUY stop the ask rising."""
        request = order.request
        buy = request.action == "BUY"
        reference = ask if buy else bid
        if request.order_type == "TRAIL":
            if _positive(request.trailing_percent):
                offset = reference * float(request.trailing_percent or 0.0) / 100.0
            else:
                offset = float(request.aux_price or 0.0)
            candidate = reference + offset if buy else reference - offset
            if (
                order.trail_stop is None
                or buy
                and candidate < order.trail_stop
                or not buy
                and candidate > order.trail_stop
            ):
                order.trail_stop = candidate
            stop = order.trail_stop
        else:
            stop = float(request.aux_price or 0.0)
        return reference >= stop if buy else reference <= stop

    def _execute(self, order: SimOrder, qty: float, price: float, now_ns: int) -> ExecutionRecord:
        listing = order.listing
        mult = listing.multiplier_value
        order.filled += qty
        order.notional += qty * price
        order.last_fill_price = price
        due = max(self._config.min_commission, self._config.commission_per_contract * order.filled)
        commission = round(due - order.commission_charged, 4)
        order.commission_charged += commission
        signed = qty if order.request.action == "BUY" else -qty
        closed, gross = self._book_position(listing, signed, price, mult)
        # TWS reports realized P&L (net of commission) only for executions that close a position
        realized = gross - commission if closed else 0.0
        self.cash -= signed * price * mult + commission
        self.commissions += commission
        by_contract = self.commissions_by_contract
        by_contract[listing.con_id] = by_contract.get(listing.con_id, 0.0) + commission
        self._exec_seq += 1
        record = ExecutionRecord(
            exec_id=f"{order.perm_id:08x}.{self._exec_seq:08x}.01.01",
            client_id=order.client_id,
            order_id=order.order_id,
            perm_id=order.perm_id,
            listing=listing,
            side="BOT" if order.request.action == "BUY" else "SLD",
            shares=qty,
            price=price,
            time_ns=now_ns,
            cum_qty=order.filled,
            avg_price=round(order.avg_fill_price, 6),
            order_ref=order.request.order_ref,
            commission=commission,
            realized_pnl=round(realized, 4),
        )
        self.executions.append(record)
        if order.remaining <= 0:
            order.status = "Filled"
            order.completed_ns = now_ns
            order.completed_status = f"Filled Size: {order.filled:g}"
        self._sink.executed(order, record)
        self._sink.order_changed(order)
        self._sink.position_changed(self.positions[listing.con_id])
        self._apply_oca(order, qty, now_ns)
        return record

    def _book_position(self, listing: Listing, signed_qty: float, price: float, mult: float) -> tuple[float, float]:
        """Update the net position; returns (contracts closed, realized P&L before commission)."""
        pos = self.positions.setdefault(listing.con_id, PositionRecord(listing))
        realized = 0.0
        closing = 0.0
        if pos.quantity == 0 or (pos.quantity > 0) == (signed_qty > 0):
            new_qty = pos.quantity + signed_qty
            pos.avg_cost = (pos.avg_cost * abs(pos.quantity) + price * mult * abs(signed_qty)) / abs(new_qty)
            pos.quantity = new_qty
        else:
            closing = min(abs(signed_qty), abs(pos.quantity))
            direction = 1.0 if pos.quantity > 0 else -1.0
            realized = (price * mult - pos.avg_cost) * closing * direction
            pos.quantity += signed_qty
            if abs(pos.quantity) < 1e-9:
                pos.quantity = 0.0
                pos.avg_cost = 0.0
            elif (pos.quantity > 0) != (direction > 0):
                pos.avg_cost = price * mult  # flipped through zero: the rest opened at this price
            pos.realized_pnl += realized
        return closing, realized

    def _apply_oca(self, filled: SimOrder, qty: float, now_ns: int) -> None:
        group = filled.request.oca_group
        if not group:
            return
        for other in self._orders.values():
            if other is filled or not other.working or other.request.oca_group != group:
                continue
            if filled.request.oca_type in (0, 1):
                self._finish(other, "Cancelled", now_ns)
            else:
                reduced = other.request.total_quantity - qty
                if reduced <= other.filled:
                    self._finish(other, "Cancelled", now_ns)
                else:
                    other.request = dataclasses.replace(other.request, total_quantity=reduced)
                    self._sink.order_changed(other)

    def _group_executed(self, group: str) -> bool:
        return any(o.request.oca_group == group and o.filled > 0 for o in self._orders.values())

    def _finish(self, order: SimOrder, status: str, now_ns: int) -> None:
        order.status = status
        order.completed_ns = now_ns
        order.completed_status = status
        self._sink.order_changed(order)

    # --- account --------------------------------------------------------------------------
    @staticmethod
    def _valued(pos: PositionRecord, marks: MarkFn) -> tuple[float, float]:
        """(market value, unrealized P&L) of one position; without a market it is carried at cost."""
        if pos.quantity == 0:
            return 0.0, 0.0
        mult = pos.listing.multiplier_value
        mark = marks(pos.listing)
        if mark is None:
            mark = pos.avg_cost / mult
        market_value = pos.quantity * mark * mult
        return market_value, market_value - pos.quantity * pos.avg_cost

    def account_values(self, marks: MarkFn) -> dict[str, float]:
        """Account values TWS reports (NetLiquidation, cash, P&L …) at the current marks."""
        market_value = 0.0
        unrealized = 0.0
        for pos in self.positions.values():
            value, gain = self._valued(pos, marks)
            market_value += value
            unrealized += gain
        realized = sum(p.realized_pnl for p in self.positions.values()) - self.commissions
        net = self.cash + market_value
        return {
            "NetLiquidation": round(net, 2),
            "TotalCashValue": round(self.cash, 2),
            "AvailableFunds": round(self.cash, 2),
            "BuyingPower": round(max(self.cash, 0.0), 2),
            # long options carry no loan value and no maintenance margin: what is left is the cash
            "ExcessLiquidity": round(self.cash, 2),
            "GrossPositionValue": round(abs(market_value), 2),
            "UnrealizedPnL": round(unrealized, 2),
            "RealizedPnL": round(realized, 2),
        }

    def pnl(self, marks: MarkFn) -> PnlValues:
        """Account P&L (reqPnL): the ``UnrealizedPnL``/``RealizedPnL`` account values, and their sum as daily."""
        values = self.account_values(marks)
        unrealized, realized = values["UnrealizedPnL"], values["RealizedPnL"]
        return PnlValues(daily=round(unrealized + realized, 2), unrealized=unrealized, realized=realized)

    def position_pnl(self, con_id: int, marks: MarkFn) -> PnlValues:
        """P&L of one contract (reqPnLSingle); a contract never traded is all zeros.

        The per-contract values add up to :meth:`pnl` (each contract's realized P&L is net of
        the commissions charged on it).
        """
        pos = self.positions.get(con_id)
        if pos is None:
            return PnlValues(0.0, 0.0, 0.0)
        value, unrealized = self._valued(pos, marks)
        realized = pos.realized_pnl - self.commissions_by_contract.get(con_id, 0.0)
        return PnlValues(
            daily=round(unrealized + realized, 2),
            unrealized=round(unrealized, 2),
            realized=round(realized, 2),
            position=pos.quantity,
            value=round(value, 2),
        )


def _positive(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0
