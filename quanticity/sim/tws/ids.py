"""Message ids, tick types and error codes of the TWS API, as ``ib_async`` 2.1 speaks them.

Names follow the official API (``EClient``/``EWrapper``) so a reader can look each one up in the
IBKR documentation. Only what the simulator sends or understands is listed.
"""

from __future__ import annotations

import enum

__all__ = ["ErrorCode", "In", "Out", "Tick", "error_text"]


class In(enum.IntEnum):
    """Requests a client sends (first field of the message)."""

    REQ_MKT_DATA = 1
    CANCEL_MKT_DATA = 2
    PLACE_ORDER = 3
    CANCEL_ORDER = 4
    REQ_OPEN_ORDERS = 5
    REQ_ACCT_DATA = 6
    REQ_EXECUTIONS = 7
    REQ_IDS = 8
    REQ_CONTRACT_DATA = 9
    REQ_MKT_DEPTH = 10
    CANCEL_MKT_DEPTH = 11
    REQ_AUTO_OPEN_ORDERS = 15
    REQ_ALL_OPEN_ORDERS = 16
    REQ_MANAGED_ACCTS = 17
    REQ_CURRENT_TIME = 49
    REQ_GLOBAL_CANCEL = 58
    REQ_MARKET_DATA_TYPE = 59
    REQ_POSITIONS = 61
    REQ_ACCOUNT_SUMMARY = 62
    CANCEL_ACCOUNT_SUMMARY = 63
    CANCEL_POSITIONS = 64
    START_API = 71
    REQ_ACCOUNT_UPDATES_MULTI = 76
    CANCEL_ACCOUNT_UPDATES_MULTI = 77
    REQ_SEC_DEF_OPT_PARAMS = 78
    REQ_PNL = 92
    CANCEL_PNL = 93
    REQ_PNL_SINGLE = 94
    CANCEL_PNL_SINGLE = 95
    REQ_TICK_BY_TICK_DATA = 97
    CANCEL_TICK_BY_TICK_DATA = 98
    REQ_COMPLETED_ORDERS = 99


class Out(enum.IntEnum):
    """Messages the server sends (first field of the message)."""

    TICK_PRICE = 1
    TICK_SIZE = 2
    ORDER_STATUS = 3
    ERR_MSG = 4
    OPEN_ORDER = 5
    ACCT_VALUE = 6
    PORTFOLIO_VALUE = 7
    ACCT_UPDATE_TIME = 8
    NEXT_VALID_ID = 9
    CONTRACT_DATA = 10
    EXECUTION_DATA = 11
    MARKET_DEPTH = 12
    MARKET_DEPTH_L2 = 13
    MANAGED_ACCTS = 15
    TICK_OPTION_COMPUTATION = 21
    TICK_GENERIC = 45
    TICK_STRING = 46
    CURRENT_TIME = 49
    CONTRACT_DATA_END = 52
    OPEN_ORDER_END = 53
    ACCT_DOWNLOAD_END = 54
    EXECUTION_DATA_END = 55
    TICK_SNAPSHOT_END = 57
    MARKET_DATA_TYPE = 58
    COMMISSION_REPORT = 59
    POSITION_DATA = 61
    POSITION_END = 62
    ACCOUNT_SUMMARY = 63
    ACCOUNT_SUMMARY_END = 64
    ACCOUNT_UPDATE_MULTI = 73
    ACCOUNT_UPDATE_MULTI_END = 74
    SECURITY_DEFINITION_OPTION_PARAMETER = 75
    SECURITY_DEFINITION_OPTION_PARAMETER_END = 76
    TICK_REQ_PARAMS = 81
    PNL = 94
    PNL_SINGLE = 95
    TICK_BY_TICK = 99
    COMPLETED_ORDER = 101
    COMPLETED_ORDERS_END = 102


class Tick(enum.IntEnum):
    """Tick types (https://interactivebrokers.github.io/tws-api/tick_types.html)."""

    BID_SIZE = 0
    BID = 1
    ASK = 2
    ASK_SIZE = 3
    LAST = 4
    LAST_SIZE = 5
    HIGH = 6
    LOW = 7
    VOLUME = 8
    CLOSE = 9
    BID_OPTION = 10
    ASK_OPTION = 11
    MODEL_OPTION = 13
    OPEN = 14
    HIST_VOLATILITY = 23  # generic tick 104
    IMPLIED_VOLATILITY = 24  # generic tick 106
    OPTION_CALL_OPEN_INTEREST = 27  # generic tick 101 (on an option: its own open interest)
    OPTION_PUT_OPEN_INTEREST = 28  # generic tick 101
    RT_VOLUME = 48  # generic tick 233
    DELAYED_BID = 66
    DELAYED_ASK = 67
    DELAYED_LAST = 68
    DELAYED_BID_SIZE = 69
    DELAYED_ASK_SIZE = 70
    DELAYED_LAST_SIZE = 71
    DELAYED_HIGH = 72
    DELAYED_LOW = 73
    DELAYED_VOLUME = 74
    DELAYED_CLOSE = 75
    DELAYED_OPEN = 76
    DELAYED_MODEL_OPTION = 83


DELAYED_OFFSET = {
    Tick.BID: Tick.DELAYED_BID,
    Tick.ASK: Tick.DELAYED_ASK,
    Tick.LAST: Tick.DELAYED_LAST,
    Tick.BID_SIZE: Tick.DELAYED_BID_SIZE,
    Tick.ASK_SIZE: Tick.DELAYED_ASK_SIZE,
    Tick.LAST_SIZE: Tick.DELAYED_LAST_SIZE,
    Tick.VOLUME: Tick.DELAYED_VOLUME,
    Tick.HIGH: Tick.DELAYED_HIGH,
    Tick.LOW: Tick.DELAYED_LOW,
    Tick.CLOSE: Tick.DELAYED_CLOSE,
    Tick.OPEN: Tick.DELAYED_OPEN,
    Tick.MODEL_OPTION: Tick.DELAYED_MODEL_OPTION,
}
"""Live tick type → the delayed (market data type 3/4) tick type TWS uses instead."""


class ErrorCode(enum.IntEnum):
    """Error and notice codes (https://www.interactivebrokers.com/campus/ibkr-api-page/tws-api-error-codes/)."""

    MAX_RATE_EXCEEDED = 100
    DUPLICATE_ORDER_ID = 103
    ORDER_MODIFY_MISMATCH = 105
    NO_SECURITY_DEFINITION = 200
    ORDER_REJECTED = 201
    ORDER_CANCELLED = 202
    DUPLICATE_TICKER_ID = 322
    NOT_CONNECTED_CLIENT_ID_IN_USE = 326
    MAX_DEPTH_REQUESTS = 309
    ORDER_MESSAGE_ERROR = 321
    MARKET_DATA_NOT_SUBSCRIBED = 354
    CONNECTIVITY_LOST = 1100
    CONNECTIVITY_RESTORED_DATA_LOST = 1101
    CONNECTIVITY_RESTORED_DATA_KEPT = 1102
    MARKET_DATA_FARM_OK = 2104
    HMDS_FARM_OK = 2106
    SEC_DEF_FARM_OK = 2158
    DELAYED_DATA_DISPLAYED = 10167
    MAX_TICK_BY_TICK = 10190
    CANCEL_NOT_FOUND = 10147
    CANCEL_NOT_CANCELLABLE = 10148


_TEXT = {
    ErrorCode.MAX_RATE_EXCEEDED: "Max rate of messages per second has been exceeded:max={limit} rec={received}",
    ErrorCode.DUPLICATE_ORDER_ID: "Duplicate order id",
    ErrorCode.ORDER_MODIFY_MISMATCH: "Order being modified does not match original order",
    ErrorCode.NO_SECURITY_DEFINITION: "No security definition has been found for the request",
    ErrorCode.ORDER_REJECTED: "Order rejected - reason:{reason}",
    ErrorCode.ORDER_CANCELLED: "Order Canceled - reason:{reason}",
    ErrorCode.DUPLICATE_TICKER_ID: "Error processing request:-'bc' : cause - Duplicate ticker id",
    ErrorCode.NOT_CONNECTED_CLIENT_ID_IN_USE: (
        "Unable to connect as the client id is already in use. Retry with a unique client id."
    ),
    ErrorCode.MAX_DEPTH_REQUESTS: (
        "Max number ({limit}) of market depth requests has been reached. "
        "Note: TWS currently limits users to a maximum of {limit} distinct market depth requests."
    ),
    ErrorCode.ORDER_MESSAGE_ERROR: "Error validating request.-'{detail}'",
    ErrorCode.MARKET_DATA_NOT_SUBSCRIBED: "Requested market data is not subscribed.{detail}",
    ErrorCode.DELAYED_DATA_DISPLAYED: "Requested market data is not subscribed. Displaying delayed market data.",
    ErrorCode.CONNECTIVITY_LOST: "Connectivity between IB and Trader Workstation has been lost.",
    ErrorCode.CONNECTIVITY_RESTORED_DATA_LOST: (
        "Connectivity between IB and Trader Workstation has been restored - data lost."
    ),
    ErrorCode.CONNECTIVITY_RESTORED_DATA_KEPT: (
        "Connectivity between IB and Trader Workstation has been restored - data maintained."
    ),
    ErrorCode.MARKET_DATA_FARM_OK: "Market data farm connection is OK:usfarm",
    ErrorCode.HMDS_FARM_OK: "HMDS data farm connection is OK:ushmds",
    ErrorCode.SEC_DEF_FARM_OK: "Sec-def data farm connection is OK:secdefil",
    ErrorCode.MAX_TICK_BY_TICK: "Max number of tick-by-tick requests has been reached.",
    ErrorCode.CANCEL_NOT_FOUND: "OrderId {order_id} that needs to be cancelled is not found.",
    ErrorCode.CANCEL_NOT_CANCELLABLE: (
        "OrderId {order_id} that needs to be cancelled cannot be cancelled, state: {state}."
    ),
}


def error_text(code: ErrorCode, **values: object) -> str:
    """The message TWS sends with ``code``, with its placeholders filled from ``values``."""
    return _TEXT[code].format(**values)
