"""The IBKR broker adapter: the order router's broker interface over ``ib_async``.

Same operations as :class:`quanticity.sim.broker.SimBroker` (``place``, ``cancel``, ``replace``,
``lookup``, ``open_orders``, ``executions``, ``execution_count``), so the router's at-most-once protocol
(:mod:`quanticity.execution.router`) runs unchanged against a real account. The calls that
talk to TWS (``place``, ``cancel``, ``replace``, ``cancel_all``, ``reconcile``) are **coroutines**; an async
Ray actor shell awaits them and returns the router's types. The read-only views are plain
methods over what the adapter has seen.

Rules it keeps:

- ``OrderIntent.order_type`` LMT becomes a DAY limit, STP a DAY stop at ``stop_price``; a non-empty
  ``oca_group`` is sent as ``ocaGroup`` with ``ocaType`` 1 (an execution cancels the other members);
- every order carries ``orderRef = intent.order_ref`` (the platform's idempotency reference); a
  reference already placed is never sent again, and an order whose acknowledgement was not seen
  is *in doubt*: :meth:`IbkrBroker.lookup` answers for it only after a reconciliation, from TWS's
  open orders, completed orders and executions matched by ``orderRef`` — ``None`` means TWS
  positively has no such order, so only then may the router send it;
- fills are de-duplicated by execution id and booked with the commission of TWS's
  commissionReport (a fill waits for its report; a reconnect re-reads both);
- until the account is reconciled (positions, orders and executions all answered), the adapter
  refuses new orders and lookups with :class:`~quanticity.execution.router.BrokerError`: an
  unanswered request is never taken for an empty book or a flat position;
- account P&L is streamed with ``reqPnL(account)``, subscribed by a second sync hook after every
  connect, reconnect and 1101 (the broker's own view of P&L, next to the router's fill-based
  one); :meth:`IbkrBroker.pnl` returns the last values with their arrival time. IB sends
  ``DBL_MAX`` (or NaN) for a value it does not have: such a value is *unknown* (None), never a
  number. P&L is informational — a refused or missing subscription is counted and logged but
  never leaves the account unreconciled;
- account values (NetLiquidation, BuyingPower, AvailableFunds, ExcessLiquidity, TotalCashValue …)
  are streamed with ``reqAccountUpdates(account)``, a third sync hook, so they are re-read after
  every connect, reconnect and 1101; :meth:`IbkrBroker.account_values` returns the last numeric
  value of each tag. Like P&L they are informational: an unanswered request is counted, never
  blocks trading, and a value that is not a number is rejected (counted, logged with tag and value);
- order ids: each order's id is allocated and persisted by the connection *before* it is sent,
  and reconciliation raises the connection's floor above every order id TWS still reports (open
  orders, executions), so neither a TWS that rolls ``nextValidId`` back nor a restart reuses one.

Usage::

    conn = IbkrConnection(config, "execution")
    broker = IbkrBroker(conn)            # registers its reconciliation as a sync hook
    await conn.start()                   # connect + reconcile
    ack = await broker.place(intent)     # BrokerOrder
    fills = broker.executions(since=0)
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import math
from collections.abc import Callable
from typing import Any, TypedDict

from ib_async import Fill as IbFill
from ib_async import LimitOrder, Order, PnL, StopOrder, Trade
from ib_async.objects import AccountValue, CommissionReport

from quanticity.clock import Clock
from quanticity.execution.router import BrokerError
from quanticity.messages import BrokerOrder, Fill, OrderIntent, OrderStatus, Side
from quanticity.venues.ibkr.connection import IbkrConnection, SyncError
from quanticity.venues.ibkr.contracts import from_ib_option, to_ib_option

__all__ = ["ACCOUNT_TAGS", "IbkrBroker", "PnlSnapshot"]

log = logging.getLogger("quanticity.venues.ibkr.broker")

NS = 1_000_000_000
PENDING_STATES = frozenset({"", "PendingSubmit", "ApiPending"})
CANCELLED_STATES = frozenset({"Cancelled", "ApiCancelled"})
UNSET_ABOVE = 1e300
"""IB marks a value it does not have with DBL_MAX (~1.8e308); anything this large is unset."""
ACCOUNT_TAGS = ("NetLiquidation", "BuyingPower", "AvailableFunds", "ExcessLiquidity", "TotalCashValue")
"""The account values every consumer (heartbeat, risk) relies on: a non-number here is bad input."""
ACCOUNT_CURRENCIES = ("USD", "BASE")
"""Currencies whose values are the account's (TWS repeats some tags per currency held)."""


class PnlSnapshot(TypedDict):
    """Account P&L as IB last reported it; None = unknown (never reported, or reported unset)."""

    daily: float | None
    unrealized: float | None
    realized: float | None
    updated_ns: int | None
    """Clock time the last update arrived (None = none yet): consumers judge staleness by it."""


def _known(value: object) -> float | None:
    """An IB P&L field as a number, or None when IB sent NaN/DBL_MAX ("unset") or garbage."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and abs(number) < UNSET_ABOVE else None


@dataclasses.dataclass
class _Tracked:
    """What the adapter knows about one order reference."""

    order_ref: str
    intent: OrderIntent | None
    order_id: int = 0
    status: OrderStatus = OrderStatus.PENDING_SEND
    quantity: float = 0.0
    filled: float = 0.0
    avg_price: float = 0.0
    acked: bool = False
    trade: Trade | None = None


class IbkrBroker:
    """Orders, executions and positions of one IBKR account through one connection."""

    def __init__(self, connection: IbkrConnection, clock: Clock | None = None) -> None:
        self.conn = connection
        self.ib = connection.ib
        self.config = connection.config
        self.clock = clock or connection.clock
        self.stats: collections.Counter[str] = collections.Counter()
        self._orders: dict[str, _Tracked] = {}
        self._fills: dict[str, Fill] = {}
        self._fill_log: list[Fill] = []
        self._positions: dict[str, float] = {}
        self._positions_known = False
        self._pnl: PnlSnapshot = {"daily": None, "unrealized": None, "realized": None, "updated_ns": None}
        self._pnl_account = ""
        self.last_pnl_error = ""
        self._account_values: dict[str, float] = {}
        self.account_updated_ns: int | None = None
        """Clock time the last account value arrived (None = none yet): consumers judge staleness by it."""
        self.last_account_error = ""
        self._account = ""
        self._from_usd: dict[str, bool] = {}
        connection.add_sync_hook("broker", self.reconcile)
        connection.add_sync_hook("pnl", self.subscribe_pnl)
        connection.add_sync_hook("account", self.subscribe_account)
        self.ib.orderStatusEvent += self._on_trade
        self.ib.openOrderEvent += self._on_trade
        self.ib.commissionReportEvent += self._on_commission
        self.ib.positionEvent += self._on_position
        self.ib.pnlEvent += self._on_pnl
        self.ib.accountValueEvent += self._on_account_value
        self.ib.errorEvent += self._on_error

    # --- router interface -----------------------------------------------------------------
    async def place(self, intent: OrderIntent) -> BrokerOrder:
        """Send ``intent`` once (DAY limit or stop, OCA group if any); returns TWS's acknowledgement.

        Raises BrokerError when not reconciled (nothing is sent) or when no acknowledgement
        arrives in ``request_timeout_s`` (the order is then in doubt: see :meth:`lookup`).
        """
        known = self._orders.get(intent.order_ref)
        if known is not None:
            self.stats["duplicate_places"] += 1
            return self._view(known)
        if not self.conn.ready:
            raise BrokerError(f"not reconciled with IBKR ({self.conn.state.value}); {intent.order_ref} not sent")
        order = self._ib_order(intent)
        try:
            order.orderId = self.conn.next_order_id()  # reserved (and persisted) before it is sent
            trade = self.ib.placeOrder(to_ib_option(intent.contract), order)
        except ConnectionError as exc:
            raise BrokerError(f"{intent.order_ref} not sent: {exc}") from exc
        tracked = _Tracked(
            intent.order_ref, intent, order_id=trade.order.orderId, quantity=intent.quantity, trade=trade
        )
        self._orders[intent.order_ref] = tracked
        self.stats["placed"] += 1
        if not await self._wait_for(trade, lambda t: t.orderStatus.status not in PENDING_STATES):
            self.stats["unacknowledged"] += 1
            raise BrokerError(f"{intent.order_ref}: no acknowledgement from IBKR; in doubt until reconciled")
        self._update(tracked, trade)
        return self._view(tracked)

    async def cancel(self, order_ref: str) -> BrokerOrder | None:
        """Cancel a working order; a finished order is returned unchanged; unknown → None."""
        tracked = self._orders.get(order_ref)
        if tracked is None:
            return None
        if tracked.status in (OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED):
            return self._view(tracked)
        trade = self._live_trade(order_ref)
        if trade is None:
            raise BrokerError(f"{order_ref}: no live order to cancel on this connection; reconcile first")
        try:
            self.ib.cancelOrder(trade.order)
        except ConnectionError as exc:
            raise BrokerError(f"cancel of {order_ref} not sent: {exc}") from exc
        if not await self._wait_for(trade, lambda t: t.isDone()):
            raise BrokerError(f"{order_ref}: cancel not confirmed by IBKR")
        self._update(tracked, trade)
        return self._view(tracked)

    async def replace(self, order_ref: str, new_price: float) -> BrokerOrder | None:
        """Modify a working order's limit (LMT) or trigger (STP) in place (same order id, same ref).

        A finished order comes back unchanged; unknown → None; a non-positive or non-finite price
        raises ValueError naming the value (a client error, nothing is sent).
        """
        if not (math.isfinite(new_price) and new_price > 0):
            raise ValueError(f"new_price: {new_price!r} for {order_ref} must be a positive finite price")
        tracked = self._orders.get(order_ref)
        if tracked is None:
            return None
        if tracked.status in (OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED):
            self.stats["refused_replaces"] += 1
            return self._view(tracked)
        trade = self._live_trade(order_ref)
        if trade is None:
            raise BrokerError(f"{order_ref}: no live order to modify on this connection; reconcile first")
        order = trade.order
        if order.orderType == "STP":
            order.auxPrice = float(new_price)
        else:
            order.lmtPrice = float(new_price)
        echoed = asyncio.Event()

        def on_open_order(t: Trade) -> None:
            if t is trade:
                echoed.set()

        self.ib.openOrderEvent += on_open_order
        try:
            self.ib.placeOrder(trade.contract, order)
            # TWS confirms a modification by echoing the order (openOrder) with the new price
            await asyncio.wait_for(echoed.wait(), self.config.request_timeout_s)
        except ConnectionError as exc:
            raise BrokerError(f"modify of {order_ref} not sent: {exc}") from exc
        except TimeoutError:
            raise BrokerError(f"{order_ref}: modification not confirmed by IBKR") from None
        finally:
            self.ib.openOrderEvent -= on_open_order
        self.stats["replaces"] += 1
        self._update(tracked, trade)
        return self._view(tracked)

    async def cancel_all(self) -> int:
        """Emergency: reqGlobalCancel (every working order of the account); returns how many were open."""
        count = len(self.open_orders())
        try:
            self.ib.reqGlobalCancel()
        except ConnectionError as exc:
            raise BrokerError(f"global cancel not sent: {exc}") from exc
        return count

    def lookup(self, order_ref: str) -> BrokerOrder | None:
        """TWS's record of ``order_ref``; None only when a full reconciliation found no such order."""
        if not self.conn.ready:
            raise BrokerError(f"not reconciled with IBKR ({self.conn.state.value}); {order_ref} unknown")
        tracked = self._orders.get(order_ref)
        return self._view(tracked) if tracked is not None else None

    def open_orders(self) -> list[BrokerOrder]:
        """Orders still working, as last reported."""
        working = (OrderStatus.SUBMITTED, OrderStatus.PARTIALLY_FILLED, OrderStatus.PENDING_SEND)
        return [self._view(t) for t in self._orders.values() if t.status in working]

    def executions(self, since: int = 0) -> list[Fill]:
        """Booked executions from sequence number ``since`` on (0 = all), each exec id once."""
        return self._fill_log[since:]

    @property
    def execution_count(self) -> int:
        """Number of executions booked (the next sequence number)."""
        return len(self._fill_log)

    def positions(self) -> dict[str, float]:
        """Net position by contract key; BrokerError until TWS answered a positions request."""
        if not self._positions_known:
            raise BrokerError("positions not reconciled with IBKR: unknown (not flat)")
        return {k: v for k, v in self._positions.items() if v}

    def pnl(self) -> PnlSnapshot:
        """The account's daily, unrealized and realized P&L as IB last streamed them (a copy)."""
        return self._pnl.copy()

    def account_values(self) -> dict[str, float]:
        """The account's numeric values by tag (NetLiquidation, BuyingPower, …) as TWS last sent them.

        A tag missing from the answer is unknown (never sent, or sent unset) — never zero.
        """
        return dict(self._account_values)

    # --- account values (sync hook) -------------------------------------------------------
    async def subscribe_account(self, reason: str = "manual") -> bool:
        """(Re-)request ``reqAccountUpdates`` and wait for its end; False (counted) when unanswered.

        TWS streams changes afterwards (on every fill here, every few minutes at IBKR). After a
        reconnect or 1101 the subscription is gone, so it is requested again on every sync.
        """
        account = self.config.account or next(iter(self.ib.managedAccounts()), "")
        if not account:
            self.stats["account_no_account"] += 1
            log.warning("ibkr account values (%s): no account known; not subscribed", reason)
            return False
        self._account = account
        timeout = self.config.request_timeout_s
        try:
            await asyncio.wait_for(self.ib.reqAccountUpdatesAsync(account), timeout)
        except TimeoutError:
            self.stats["account_unanswered"] += 1
            self.last_account_error = f"reqAccountUpdates({account}) unanswered within {timeout} s"
            log.warning("ibkr account values (%s): %s", reason, self.last_account_error)
            return False
        except ConnectionError as exc:
            self.stats["account_unanswered"] += 1
            self.last_account_error = f"reqAccountUpdates({account}) not sent: {exc}"
            log.warning("ibkr account values (%s): %s", reason, self.last_account_error)
            return False
        self.stats["account_syncs"] += 1
        return True

    def _on_account_value(self, item: AccountValue) -> None:
        if (self._account and item.account != self._account) or item.modelCode:
            return
        if item.currency not in ACCOUNT_CURRENCIES:
            return
        if item.tag in self._account_values and item.currency != "USD" and self._from_usd.get(item.tag):
            return  # the USD line is the account's; a BASE repeat does not overwrite it
        try:
            number = float(item.value)
        except ValueError:
            if item.tag in ACCOUNT_TAGS:
                self.stats["account_values_rejected"] += 1
                self.last_account_error = f"account value {item.tag}: {item.value!r} is not a number"
                log.error("ibkr %s", self.last_account_error)
            return  # a text tag (AccountType, …) is not a figure
        known = _known(number)
        if known is None:
            self.stats["account_values_unset"] += 1
            self._account_values.pop(item.tag, None)
        else:
            self._account_values[item.tag] = known
        self._from_usd[item.tag] = item.currency == "USD"
        self.account_updated_ns = self.clock.now_ns()
        self.stats["account_updates"] += 1

    # --- P&L (sync hook) ------------------------------------------------------------------
    async def subscribe_pnl(self, reason: str = "manual") -> bool:
        """(Re-)subscribe ``reqPnL`` for the account; False (counted) when it could not be sent.

        After a reconnect ib_async has forgotten the old subscription; after a 1101 or a retried
        sync on the same socket it still holds it while TWS may have dropped it, so it is
        cancelled and requested again. A 1102 (data kept) leaves a live subscription alone.
        """
        account = self.config.account or next(iter(self.ib.managedAccounts()), "")
        if not account:
            self.stats["pnl_no_account"] += 1
            log.warning("ibkr P&L (%s): no account known; not subscribed", reason)
            return False
        held = bool(self.ib.pnl(account))
        if reason == "1102" and held and account == self._pnl_account:
            return True
        try:
            if held:
                self.ib.cancelPnL(account)
            self._pnl_account = account
            self.ib.reqPnL(account)
        except ConnectionError as exc:
            self.stats["pnl_unsubscribed"] += 1
            log.warning("ibkr P&L (%s): reqPnL not sent: %s", reason, exc)
            return False
        self.stats["pnl_subscriptions"] += 1
        return True

    def _on_pnl(self, pnl: PnL) -> None:
        if pnl.account != self._pnl_account or pnl.modelCode:
            return
        daily, unrealized, realized = _known(pnl.dailyPnL), _known(pnl.unrealizedPnL), _known(pnl.realizedPnL)
        unknown = sum(v is None for v in (daily, unrealized, realized))
        if unknown:
            self.stats["pnl_unset_values"] += unknown
        self._pnl = {"daily": daily, "unrealized": unrealized, "realized": realized, "updated_ns": self.clock.now_ns()}
        self.stats["pnl_updates"] += 1

    def _on_error(self, req_id: int, code: int, message: str, contract: Any) -> None:
        if req_id < 0 or not self._pnl_account:
            return
        if self.ib.wrapper.pnlKey2ReqId.get((self._pnl_account, "")) == req_id:
            self.stats["pnl_errors"] += 1
            self.last_pnl_error = f"{code} {message}"
            log.error("ibkr P&L subscription refused: %s %s", code, message)

    # --- reconciliation (sync hook) -------------------------------------------------------
    async def reconcile(self, reason: str = "manual") -> dict[str, int]:
        """Re-read positions, open orders, completed orders and executions; raises SyncError if unanswered."""
        timeout = self.config.request_timeout_s
        self._positions_known = False
        try:
            positions = await asyncio.wait_for(self.ib.reqPositionsAsync(), timeout)
        except TimeoutError:
            self.stats["positions_unanswered"] += 1
            raise SyncError(f"positions request unanswered within {timeout} s: account state unknown") from None
        try:
            open_trades = await asyncio.wait_for(self.ib.reqOpenOrdersAsync(), timeout)
            completed = await asyncio.wait_for(self.ib.reqCompletedOrdersAsync(False), timeout)
            fills = await asyncio.wait_for(self.ib.reqExecutionsAsync(), timeout)
        except TimeoutError:
            raise SyncError(f"orders or executions unanswered within {timeout} s") from None
        self._positions = {}
        for position in positions:
            self._on_position(position)
        self._positions_known = True
        booked = sum(1 for fill in fills if self._book(fill, fill.commissionReport))
        # every order id TWS still knows is used: keep the next one above them (a rolled-back
        # nextValidId, or a restart of this process, must not hand one out again)
        for fill in fills:
            if fill.execution.orderId > 0:
                self.conn.reserve_order_id(fill.execution.orderId)
        seen: set[str] = set()
        for trade in [*completed, *open_trades]:  # open last: a live state wins over a stale one
            if trade.order.orderId > 0:
                self.conn.reserve_order_id(trade.order.orderId)
            ref = trade.order.orderRef
            if not ref:
                continue
            seen.add(ref)
            tracked = self._orders.setdefault(ref, _Tracked(ref, None, quantity=trade.order.totalQuantity))
            self._update(tracked, trade)
        seen.update(f.order_ref for f in self._fill_log)
        dropped = 0
        for ref, tracked in list(self._orders.items()):
            if ref not in seen and not tracked.acked:
                # sent but never acknowledged, and TWS has no trace of it: it never arrived
                del self._orders[ref]
                dropped += 1
        self.stats["reconciles"] += 1
        result = {"fills_booked": booked, "orders": len(seen), "unknown_dropped": dropped}
        log.info("ibkr reconcile (%s): %s", reason, result)
        return result

    # --- events ---------------------------------------------------------------------------
    def _on_trade(self, trade: Trade) -> None:
        tracked = self._orders.get(trade.order.orderRef)
        if tracked is not None:
            self._update(tracked, trade)

    def _on_commission(self, trade: Trade, fill: IbFill, report: CommissionReport) -> None:
        if self._book(fill, report):
            tracked = self._orders.get(fill.execution.orderRef)
            if tracked is not None:
                self._update(tracked, trade)

    def _on_position(self, position: object) -> None:
        contract = position.contract  # type: ignore[attr-defined]
        try:
            key = from_ib_option(contract).key if contract.secType == "OPT" else contract.symbol
        except ValueError as exc:
            self.stats["rejected_positions"] += 1
            log.error("ibkr position rejected: %s", exc)
            return
        self._positions[key] = float(position.position)  # type: ignore[attr-defined]

    # --- helpers --------------------------------------------------------------------------
    def _book(self, fill: IbFill, report: CommissionReport) -> bool:
        """Book one execution once; False for a replay or a malformed execution (counted)."""
        execution = fill.execution
        if execution.execId in self._fills:
            self.stats["duplicate_fills"] += 1
            return False
        try:
            contract = from_ib_option(fill.contract)
            quantity = float(execution.shares)
            if not quantity.is_integer() or quantity <= 0:
                raise ValueError(f"shares: {execution.shares!r} is not a positive whole number")
            if not math.isfinite(execution.price) or execution.price <= 0:
                raise ValueError(f"price: {execution.price!r} is not positive")
            commission = float(report.commission)
            if not math.isfinite(commission) or commission < 0:
                raise ValueError(f"commission: {report.commission!r} is not a non-negative number")
            if execution.side not in ("BOT", "SLD"):
                raise ValueError(f"side: {execution.side!r} is not BOT or SLD")
        except ValueError as exc:
            self.stats["rejected_fills"] += 1
            log.error("ibkr execution %s rejected: %s", execution.execId, exc)
            return False
        tracked = self._orders.get(execution.orderRef)
        intent = tracked.intent if tracked is not None else None
        booked = Fill(
            ts_event=int(execution.time.timestamp() * NS),
            ts_init=self.clock.now_ns(),
            exec_id=execution.execId,
            order_ref=execution.orderRef,
            contract=contract,
            side=Side.BUY if execution.side == "BOT" else Side.SELL,
            quantity=int(quantity),
            price=float(execution.price),
            commission=round(commission, 4),
            strategy=intent.strategy if intent is not None else "",
        )
        self._fills[booked.exec_id] = booked
        self._fill_log.append(booked)
        self.stats["fills"] += 1
        return True

    def _update(self, tracked: _Tracked, trade: Trade) -> None:
        status = trade.orderStatus.status
        tracked.trade = trade if trade.order.orderId > 0 else tracked.trade
        if trade.order.orderId > 0:
            tracked.order_id = trade.order.orderId
        if trade.order.totalQuantity:
            tracked.quantity = float(trade.order.totalQuantity)
        own = [f for f in self._fill_log if f.order_ref == tracked.order_ref]
        filled_by_fills = sum(f.quantity for f in own)
        reported = float(trade.orderStatus.filled or 0.0)
        if not reported and trade.order.filledQuantity and trade.order.filledQuantity < 1e300:
            reported = float(trade.order.filledQuantity)  # completed orders carry the filled size here
        tracked.filled = max(reported, float(filled_by_fills))
        if filled_by_fills:
            tracked.avg_price = sum(f.quantity * f.price for f in own) / filled_by_fills
        elif trade.orderStatus.avgFillPrice:
            tracked.avg_price = float(trade.orderStatus.avgFillPrice)
        if status not in PENDING_STATES:
            tracked.acked = True
        tracked.status = self._status(trade, tracked)

    @staticmethod
    def _status(trade: Trade, tracked: _Tracked) -> OrderStatus:
        status = trade.orderStatus.status
        if status == "Filled":
            return OrderStatus.FILLED
        if status == "Inactive":
            return OrderStatus.REJECTED
        if status in CANCELLED_STATES:
            was_live = any(entry.status in ("Submitted", "PreSubmitted") for entry in trade.log)
            rejected = any(entry.errorCode not in (0, 202) for entry in trade.log)
            return OrderStatus.REJECTED if rejected and not was_live and not tracked.filled else OrderStatus.CANCELLED
        if status in PENDING_STATES:
            return OrderStatus.PENDING_SEND
        return OrderStatus.PARTIALLY_FILLED if tracked.filled else OrderStatus.SUBMITTED

    @staticmethod
    def _view(tracked: _Tracked) -> BrokerOrder:
        return BrokerOrder(
            order_ref=tracked.order_ref,
            status=tracked.status,
            filled=int(tracked.filled),
            remaining=max(int(tracked.quantity - tracked.filled), 0),
            avg_price=round(tracked.avg_price, 6),
        )

    def _ib_order(self, intent: OrderIntent) -> Order:
        """The ib_async order of an intent: DAY limit or stop, the reference, the OCA group."""
        common = {"orderRef": intent.order_ref, "tif": "DAY", "account": self.config.account}
        if intent.oca_group:
            common |= {"ocaGroup": intent.oca_group, "ocaType": 1}
        if intent.order_type == "STP":
            return StopOrder(intent.side.value, float(intent.quantity), float(intent.stop_price), **common)
        return LimitOrder(intent.side.value, float(intent.quantity), float(intent.limit_price), **common)

    def _live_trade(self, order_ref: str) -> Trade | None:
        for trade in self.ib.openTrades():
            if trade.order.orderRef == order_ref:
                return trade
        return None

    async def _wait_for(self, trade: Trade, done: Callable[[Trade], bool]) -> bool:
        """Wait until ``done(trade)`` holds (checked on every status event) or the request timeout."""
        if done(trade):
            return True
        event = asyncio.Event()

        def on_status(t: Trade) -> None:
            if done(t):
                event.set()

        trade.statusEvent += on_status
        try:
            await asyncio.wait_for(event.wait(), self.config.request_timeout_s)
            return True
        except TimeoutError:
            return False
        finally:
            trade.statusEvent -= on_status
