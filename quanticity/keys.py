"""Every Redis key the platform reads or writes is built here, and nowhere else.

Keeping the schema in one module (SPEC §4) means a rename is one edit, a reader and a writer can
never disagree on a spelling, and ``quanticity status`` can find everything a running system
wrote. Hot data carries a TTL (see :data:`TTL_SECONDS`); orders, fills, positions and the audit
trail are durable streams and hashes that a restarted actor replays.
"""

from __future__ import annotations

import re

_SYMBOL = re.compile(r"^[A-Z][A-Z0-9.]{0,9}$")

#: TTLs (seconds) of hot keys. Durable keys (orders, fills, positions, audit) have none.
TTL_SECONDS: dict[str, int] = {
    "analytics": 120,
    "heartbeat": 60,
    "raw_depth_last": 60,
    "raw_depth_hb": 30,
}


def _symbol(symbol: str) -> str:
    """Validate a ticker so a typo can never create a stray key family."""
    if not _SYMBOL.match(symbol):
        raise ValueError(f"symbol: {symbol!r} is not a valid ticker (A-Z, digits, '.', ≤ 10 chars)")
    return symbol


# --- raw feed data -------------------------------------------------------------------------
def raw_depth_stream(symbol: str) -> str:
    """Stream of L2 depth snapshots of ``symbol`` from IBKR (or the simulator)."""
    return f"raw:ibkr:depth:stream:{_symbol(symbol)}"


def raw_depth_last(symbol: str) -> str:
    """Latest L2 depth snapshot of ``symbol``."""
    return f"raw:ibkr:depth:last:{_symbol(symbol)}"


def raw_depth_heartbeat(symbol: str) -> str:
    """Freshness marker of the depth feed of ``symbol``."""
    return f"raw:ibkr:depth:hb:{_symbol(symbol)}"


def raw_quote_last(symbol: str) -> str:
    """Latest top-of-book quote of ``symbol``."""
    return f"raw:ibkr:quote:last:{_symbol(symbol)}"


def raw_uw(endpoint: str, symbol: str) -> str:
    """Unusual Whales REST payload of ``endpoint`` for ``symbol``."""
    return f"raw:uw:{endpoint}:{_symbol(symbol)}"


def uw_ws_stream(channel: str) -> str:
    """Stream of Unusual Whales WebSocket messages of ``channel``."""
    return f"uw:ws:{channel}:stream"


# --- analytics -----------------------------------------------------------------------------
def analytics(symbol: str, metric: str) -> str:
    """Snapshot of one analytics ``metric`` of ``symbol`` (JSON with computed_at/valid_until)."""
    return f"analytics:{_symbol(symbol)}:{metric}"


def analytics_state(symbol: str) -> str:
    """Checkpoint of a SymbolAnalytics actor, restored after a restart."""
    return f"analytics:{_symbol(symbol)}:state"


# --- signals -------------------------------------------------------------------------------
SIGNALS_STREAM = "signals:stream"
"""Stream of every signal the strategies emit; the risk gate consumes it."""


def signal_dedupe(fingerprint: str) -> str:
    """Marker that a signal with this contract fingerprint was already enqueued."""
    return f"signals:dedupe:{fingerprint}"


def strategy_state(strategy: str) -> str:
    """Checkpoint of a strategy actor (cooldowns, last signal per symbol)."""
    return f"signals:strategy:{strategy}:state"


# --- risk ----------------------------------------------------------------------------------
TRADING_STATE = "system:trading_state"
"""Hash: ``state``, ``reason``, ``changed_at`` of the risk gate; survives restarts."""

RISK_CURSOR = "system:risk:cursor"
"""Last ``signals:stream`` entry the risk gate has fully processed."""

RISK_DECISIONS = "system:risk:decisions"
"""Stream of every risk decision, approvals and denials, for the audit trail."""

RISK_ORDER_TIMES = "system:risk:order_times"
"""Sorted set of recent approval times (ns) that enforces the max order rate."""


# --- orders, fills, positions, P&L ----------------------------------------------------------
def order(order_ref: str) -> str:
    """Hash of one order: its intent and its current status."""
    return f"orders:{order_ref}"


ORDERS_INDEX = "orders:index"
"""Set of every order reference the router has recorded."""

ORDERS_PENDING = "orders:pending_send"
"""Set of order references whose intent is durable but whose broker ack is unconfirmed."""

FILLS_STREAM = "trades:fills"
"""Stream of every fill the router has booked (the publisher and reports read it)."""

FILLS_SEEN = "trades:exec_ids"
"""Set of execution ids already booked, so a replayed execution is never counted twice."""

POSITIONS = "positions:open"
"""Hash: contract key → JSON position (quantity, average price, strategy)."""

EXIT_PLANS = "positions:exit_plans"
"""Hash: contract key → JSON exit plan (ladder rungs done, high-water mark, stop) of an open position."""

EXIT_ORDERS = "positions:exit_orders"
"""Hash: exit order reference → JSON {contract, quantity, created_ns} while its outcome is unknown."""

POSITIONS_VERSION = "positions:version"
"""Counter bumped on every change of positions, marks or realized P&L (readers cache by it)."""

PNL_REALIZED = "pnl:realized"
"""Hash: ``total`` and per-strategy realized P&L, net of commissions."""


# --- distribution --------------------------------------------------------------------------
def publisher_cursor(channel: str) -> str:
    """Last ``trades:fills`` entry the publisher of ``channel`` has delivered."""
    return f"system:publisher:{channel}:cursor"


def publisher_sent(channel: str) -> str:
    """Set of message ids already delivered on ``channel`` (exactly-once delivery)."""
    return f"system:publisher:{channel}:sent"


# --- system --------------------------------------------------------------------------------
TOPOLOGY = "system:topology"
"""Hash: actor name → JSON spec (kind, symbol, node), written by the root supervisor."""

RESTARTS = "system:restarts"
"""Hash: actor name → number of times the supervisor restarted it."""

RUN_INFO = "system:run"
"""Hash describing the running session (started_at, speed, seed, dashboard URL)."""

SUPERVISOR_EVENTS = "system:supervisor:events"
"""Stream of supervisor actions (create, adopt, restart, re-place) for the audit trail."""


def heartbeat(actor: str) -> str:
    """Latest heartbeat of ``actor`` (JSON), TTL ``TTL_SECONDS['heartbeat']``."""
    return f"heartbeat:{actor}"


ALERTS = "system:alerts"
"""Stream of alerts for the admin (daily-loss warning, halts); Telegram delivery reads it."""

SIM_CLOCK = "system:clock"
"""Simulated time (ns) of the feed's last step: the shared "now" of a simulated session."""

FEED_STATE = "system:feed:state"
"""Checkpoint of the simulated feed (market state, step count), so a restarted feed resumes."""

SIM_BROKER_ORDERS = "sim:broker:orders"
"""Hash: order reference → the simulated venue's record of it (the venue outlives the router)."""

SIM_BROKER_EXECUTIONS = "sim:broker:executions"
"""List of the simulated venue's executions, in order."""

SIM_BROKER_META = "sim:broker:meta"
"""Hash: the simulated venue's fill-generator state and duplicate-send counter."""

HEARTBEAT_PATTERN = "heartbeat:*"
"""Pattern matching every heartbeat key, for ``quanticity status``."""
