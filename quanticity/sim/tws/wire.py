"""Builders of the order, execution, position and account messages the simulator sends.

Field order and presence follow ``ib_async``'s decoder for :data:`~.config.SERVER_VERSION`
(176): e.g. ``openOrder`` carries ``faProfile`` (dropped at 177), ``duration``/``postToAts``/
``autoCancelParent`` (added at 159/160/162) and the five peg fields (added at 170). Every
builder returns the field list; :func:`~.protocol.encode_fields` frames it.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from quanticity.sim.tws.contracts import Listing
from quanticity.sim.tws.ids import Out
from quanticity.sim.tws.orders import ExecutionRecord, PositionRecord, SimOrder

__all__ = [
    "commission_report",
    "completed_order",
    "execution",
    "ib_time",
    "open_order",
    "order_status",
    "portfolio_value",
    "position",
]

ET = ZoneInfo("America/New_York")
NS = 1_000_000_000


def ib_time(ts_ns: int) -> str:
    """``20250103 10:15:30 America/New_York`` — the execution time format ib_async parses."""
    moment = dt.datetime.fromtimestamp(ts_ns / NS, tz=ET)
    return f"{moment:%Y%m%d %H:%M:%S} America/New_York"


def _exchange(listing: Listing) -> str:
    return "SMART"


def order_status(order: SimOrder) -> list[object]:
    """orderStatus (server version ≥ 131: no version field, with mktCapPrice)."""
    return [
        Out.ORDER_STATUS,
        order.order_id,
        order.status,
        order.filled,
        order.remaining,
        round(order.avg_fill_price, 6),
        order.perm_id,
        0,  # parentId
        order.last_fill_price,
        order.client_id,
        "",  # whyHeld
        0.0,  # mktCapPrice
    ]


def _order_core(order: SimOrder, account: str) -> list[object]:
    """action … orderRef: the block openOrder and completedOrder share."""
    req = order.request
    return [
        req.action,
        req.total_quantity,
        req.order_type,
        req.lmt_price,
        req.aux_price,
        req.tif or "DAY",
        req.oca_group,
        account,
        "",  # openClose
        0,  # origin: customer
        req.order_ref,
    ]


def open_order(order: SimOrder, account: str) -> list[object]:
    """openOrder with its order state (the field walk of ib_async's ``Decoder.openOrder``)."""
    listing = order.listing
    req = order.request
    fields: list[object] = [Out.OPEN_ORDER, order.order_id, *listing.contract_fields(_exchange(listing))]
    fields += _order_core(order, account)
    fields += [order.client_id, order.perm_id, False, False, 0.0, "", "", "", "", "", ""]
    # outsideRth, hidden, discretionaryAmt, goodAfterTime, sharesAllocation, faGroup, faMethod,
    # faPercentage, faProfile
    fields += ["", "", "", "", "", 0, "", "", None, None, None, None, None, None, None]
    # modelCode, goodTillDate, rule80A, percentOffset, settlingFirm, shortSaleSlot,
    # designatedLocation, exemptCode, auctionStrategy, startingPrice, stockRefPrice, delta,
    # stockRangeLower, stockRangeUpper, displaySize
    fields += [False, False, False, 0, req.oca_type, False, False, None, 0, 0, None, 0, "", None]
    # blockOrder, sweepToFill, allOrNone, minQty, ocaType, eTradeOnly, firmQuoteOnly,
    # nbboPriceCap, parentId, triggerMethod, volatility, volatilityType, deltaNeutralOrderType,
    # deltaNeutralAuxPrice
    fields += [0, 0, order.trail_stop, req.trailing_percent, None, "", ""]
    # continuousUpdate, referencePriceType, trailStopPrice, trailingPercent, basisPoints,
    # basisPointsType, comboLegsDescrip
    fields += [0, 0, 0]  # combo legs, order combo legs, smart combo routing params
    fields += [None, None, ""]  # scaleInitLevelSize, scaleSubsLevelSize, scalePriceIncrement
    fields += [""]  # hedgeType
    fields += [False, "", "", False, False]  # optOutSmartRouting, clearingAccount, clearingIntent, notHeld, dnc
    fields += [""]  # algoStrategy
    fields += [False, False, order.status]  # solicited, whatIf, status
    fields += ["", "", "", "", "", "", "", "", ""]  # margin before/change/after
    fields += [None, None, None, "USD", ""]  # commission, min, max, currency, warningText
    fields += [False, False]  # randomizeSize, randomizePrice
    fields += [0]  # conditions
    fields += ["", None, order.trail_stop, None, None, None, None, 0, "", "", "", None, False, False, False, False]
    # adjustedOrderType, triggerPrice, trailStopPrice, lmtPriceOffset, adjustedStopPrice,
    # adjustedStopLimitPrice, adjustedTrailingAmount, adjustableTrailingUnit, softDollarTier
    # name/val/displayName, cashQty, dontUseAutoPriceForHedge, isOmsContainer,
    # discretionaryUpToLimitPrice, usePriceMgmtAlgo
    fields += [None, False, False]  # duration, postToAts, autoCancelParent
    fields += [None, None, None, None, None]  # minTradeQty … midOffsetAtHalf
    return fields


def completed_order(order: SimOrder, account: str) -> list[object]:
    """completedOrder (no orderId or clientId on the wire; orderRef and permId identify it)."""
    listing = order.listing
    req = order.request
    fields: list[object] = [Out.COMPLETED_ORDER, *listing.contract_fields(_exchange(listing))]
    fields += _order_core(order, account)
    fields += [order.perm_id, False, False, 0.0, "", "", "", "", ""]
    # permId, outsideRth, hidden, discretionaryAmt, goodAfterTime, faGroup, faMethod,
    # faPercentage, faProfile
    fields += ["", "", "", "", "", 0, "", "", None, None, None, None, None, None]
    # modelCode, goodTillDate, rule80A, percentOffset, settlingFirm, shortSaleSlot,
    # designatedLocation, exemptCode, startingPrice, stockRefPrice, delta, stockRangeLower,
    # stockRangeUpper, displaySize
    fields += [False, False, 0, req.oca_type, 0, None, 0, "", None]
    # sweepToFill, allOrNone, minQty, ocaType, triggerMethod, volatility, volatilityType,
    # deltaNeutralOrderType, deltaNeutralAuxPrice
    fields += [0, 0, order.trail_stop, req.trailing_percent, ""]
    # continuousUpdate, referencePriceType, trailStopPrice, trailingPercent, comboLegsDescrip
    fields += [0, 0, 0]
    fields += [None, None, ""]
    fields += [""]  # hedgeType
    fields += ["", "", False, False]  # clearingAccount, clearingIntent, notHeld, dnc
    fields += [""]  # algoStrategy
    fields += [False, order.status, False, False]  # solicited, status, randomizeSize, randomizePrice
    fields += [0]  # conditions
    fields += [
        order.trail_stop,
        None,  # lmtPriceOffset
        None,  # cashQty
        False,
        False,
        "",  # autoCancelDate
        order.filled,
        0,  # refFuturesConId
        False,
        "",  # shareholder
        False,
        False,
        0,  # parentPermId
        ib_time(order.completed_ns) if order.completed_ns else "",
        order.completed_status,
    ]
    fields += [None, None, None, None, None]
    return fields


def execution(req_id: int, record: ExecutionRecord, account: str) -> list[object]:
    """execDetails (server version ≥ 136 layout: no version field; live fills use reqId −1)."""
    listing = record.listing
    return [
        Out.EXECUTION_DATA,
        req_id,
        record.order_id,
        *listing.contract_fields("SMART"),
        record.exec_id,
        ib_time(record.time_ns),
        account,
        listing.primary_exchange or "CBOE",
        record.side,
        record.shares,
        record.price,
        record.perm_id,
        record.client_id,
        0,  # liquidation
        record.cum_qty,
        record.avg_price,
        record.order_ref,
        "",  # evRule
        None,  # evMultiplier
        "",  # modelCode
        2,  # lastLiquidity: removed liquidity
    ]


def commission_report(record: ExecutionRecord) -> list[object]:
    """commissionReport of one execution."""
    return [Out.COMMISSION_REPORT, 1, record.exec_id, record.commission, "USD", record.realized_pnl, None, None]


def position(account: str, pos: PositionRecord) -> list[object]:
    """position (version 3): contract, quantity, average cost (multiplier included)."""
    return [Out.POSITION_DATA, 3, account, *pos.listing.contract_fields(""), pos.quantity, round(pos.avg_cost, 6)]


def portfolio_value(account: str, pos: PositionRecord, mark: float) -> list[object]:
    """updatePortfolio (version 8); the exchange slot carries the primary exchange."""
    listing = pos.listing
    mult = listing.multiplier_value
    market_value = pos.quantity * mark * mult
    contract = listing.contract_fields(listing.primary_exchange)
    return [
        Out.PORTFOLIO_VALUE,
        8,
        *contract,
        pos.quantity,
        mark,
        round(market_value, 2),
        pos.avg_cost,
        round(market_value - pos.quantity * pos.avg_cost, 2),
        round(pos.realized_pnl, 2),
        account,
    ]
