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


_ALT_KIND = re.compile(r"^[a-z][a-z_]{0,31}$")
_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def alt_delivered(kind: str, day: str) -> str:
    """Set of the ids of ``kind`` alt-data events dated ``day`` (YYYY-MM-DD) already sent to the strategies.

    Written by :class:`quanticity.feeds.altdata.AltDataBridge` in one MULTI/EXEC, expiring some
    days after ``day``, so a restarted fetcher does not re-deliver what it already sent.
    """
    if not _ALT_KIND.match(kind) or not _ISO_DAY.match(day):
        raise ValueError(f"alt_delivered: kind {kind!r} / day {day!r} must be an AltDataKind value and YYYY-MM-DD")
    return f"alt:delivered:{kind}:{day}"


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


STRATEGY_ENABLED = "system:strategy:enabled"
"""Hash: strategy name → "1"/"0", the admin's run-time enable/disable (``/strategy``); the strategy
actor restores it in its constructor, so a restart does not silently re-enable a disabled strategy."""


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

POSITION_EVENTS_STREAM = "trades:position_events"
"""Stream of position events that are not fills, for the subscribers' threads: the router's
protective stop moving up (trail, break-even) and the overseer's post-fill explanations. Each
entry is an encoded :class:`~quanticity.messages.PositionEvent` under ``event``; its
``event_id`` is deterministic, so re-emitting one after a restart schedules nothing twice."""

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


def publisher_followup_cursor(channel: str) -> str:
    """Last ``trades:position_events`` entry the publisher of ``channel`` has scheduled."""
    return f"system:publisher:{channel}:followup_cursor"


def publisher_sent(channel: str) -> str:
    """Set of message ids already delivered on ``channel`` (exactly-once delivery)."""
    return f"system:publisher:{channel}:sent"


def publisher_delivery(channel: str, delivery_id: str) -> str:
    """Hash of one scheduled (message, tier) delivery on ``channel``: payload, state, attempts, platform ids."""
    return f"system:publisher:{channel}:delivery:{delivery_id}"


def publisher_due(channel: str) -> str:
    """Sorted set of pending delivery ids of ``channel`` scored by the simulated time (ns) they fall due."""
    return f"system:publisher:{channel}:due"


def publisher_inflight(channel: str) -> str:
    """Set of delivery ids of ``channel`` claimed for sending whose outcome is not yet recorded."""
    return f"system:publisher:{channel}:inflight"


def publisher_threads(channel: str) -> str:
    """Hash: contract key → message key of the entry alert that follow-ups of the position reply to."""
    return f"system:publisher:{channel}:threads"


def distribution_malformed_seen(channel: str) -> str:
    """Set of ``stream/entry id`` records ``channel``'s publisher has dead-lettered as malformed (no double)."""
    return f"system:publisher:{channel}:malformed"


def distribution_rate(platform: str, credential: str) -> str:
    """Hash: the token bucket shared by every publisher sending to ``platform`` with one credential (a digest)."""
    return f"system:distribution:rate:{platform}:{credential}"


DISTRIBUTION_AUDIT = "system:distribution:audit"
"""Stream: one record per outbound send attempt (channel, tier, platform ids, attempt, outcome)."""

DISTRIBUTION_DEAD_LETTER = "system:distribution:deadletter"
"""Stream of deliveries given up after the configured attempts, with the last error, for an operator."""


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
VENUE_PORTS = "venue:ports"
"""Hash: service (``tws``, ``uw``, ``av``) → loopback port of the venues hosted in ``tws`` mode (a restarted
venue host binds the same ports again, so connected clients reconnect to the same address)."""
VENUE_CLOCK = "venue:tws:now"
"""The hosted TWS simulator's market time (ns): the IBKR feed stamps and publishes market data on it."""
VENUE_FEED_READY = "venue:feed:ready"
"""Set by the IBKR feed once subscribed: the hosted simulator's market opens then (or after a timeout)."""

SIM_BROKER_ORDERS = "sim:broker:orders"
"""Hash: order reference → the simulated venue's record of it (the venue outlives the router)."""

SIM_BROKER_EXECUTIONS = "sim:broker:executions"
"""List of the simulated venue's executions, in order."""

SIM_BROKER_META = "sim:broker:meta"
"""Hash: the simulated venue's fill-generator state and duplicate-send counter."""

HEARTBEAT_PATTERN = "heartbeat:*"
"""Pattern matching every heartbeat key, for ``quanticity status``."""


# --- execution lifecycle (entries, brackets, emergencies) ------------------------------------
ENTRY_REFS = "orders:entry_refs"
"""Set of every entry (parent) reference the router has accepted: a replayed intent is worked once."""

ENTRY_ORDERS = "orders:entries"
"""Hash: parent reference → JSON working entry (children, limits, chase state) while it can still fill."""

BRACKETS = "positions:brackets"
"""Hash: contract key → JSON protective bracket at the broker (OCA group, revision, leg references)."""

BRACKET_LEGS = "positions:bracket_legs"
"""Hash: bracket leg reference → JSON {contract, kind, label}, so a leg's fill is attributed to its rung."""

EMERGENCY_EVENTS = "system:emergency:events"
"""Stream of emergency actions (flatten, cancel-all): who asked, why, what was cancelled and sent."""


# --- P&L book and risk monitor (appended) ------------------------------------------------------
PNL_BOOK = "pnl:book"
"""JSON snapshot of the risk gate's P&L book (fills, marks, days); what a restarted gate restores."""

PNL_CURSOR = "pnl:cursor"
"""Last ``trades:fills`` entry included in :data:`PNL_BOOK` (written in the same transaction)."""

PNL_POSITIONS = "pnl:positions"
"""Hash: contract key → JSON P&L of that position (realized, unrealized, commissions)."""

PNL_STRATEGIES = "pnl:strategies"
"""Hash: strategy → JSON realized / unrealized / commissions."""

PNL_DAYS = "pnl:days"
"""Hash: ET trading day (ISO) → JSON day P&L (realized, unrealized, mark-to-market, by strategy)."""

PNL_EQUITY = "pnl:equity"
"""Hash: ET day (ISO) → JSON equity high / low / last, the drawdown rule's high-water marks."""

RISK_CORRELATION = "system:risk:correlation"
"""JSON state of the rolling underlying-returns window the correlation rule reads."""


# --- config-driven alternative-data sources (Unusual Whales, Alpha Vantage REST) ---------------
RAW_SOURCE_PREFIXES: dict[str, str] = {"unusual_whales": "raw:uw:", "alpha_vantage": "raw:av:"}
"""Source dialect → prefix every Redis key of that source's YAML must start with."""


def raw_source(template: str, symbol: str | None = None) -> str:
    """Key of one REST payload of a config-driven source: the YAML's ``redis_key`` with ``{ticker}`` filled.

    The template comes from ``config/sources/*.yaml`` (validated there); this is where it becomes a
    key, so a template outside the ``raw:uw:`` / ``raw:av:`` families, or a malformed ticker, can
    never create a stray key family.
    """
    if not any(template.startswith(prefix) for prefix in RAW_SOURCE_PREFIXES.values()):
        raise ValueError(f"redis_key: {template!r} must start with one of {sorted(RAW_SOURCE_PREFIXES.values())}")
    if "{ticker}" in template:
        if symbol is None:
            raise ValueError(f"redis_key: {template!r} needs a ticker")
        return template.replace("{ticker}", _symbol(symbol))
    return template


# --- overseer and admin control (SPEC §12, §13) ------------------------------------------------
OVERSEER_SUMMARY_DONE = "system:overseer:summary_done"
"""Hash: session date → 1 once that session's daily summary was written (one per session)."""

OVERSEER_EXPLAIN_CURSOR = "system:overseer:explain_cursor"
"""Last ``trades:fills`` entry the overseer has looked at for a post-fill explanation."""

OVERSEER_REVIEW_CURSOR = "system:overseer:review_cursor"
"""Last ``signals:stream`` entry the overseer has looked at for an advisory pre-trade review."""


def overseer_budget(day: str) -> str:
    """Hash: ``requests`` and ``tokens`` the overseer spent on the model on ``day`` (ET, YYYY-MM-DD)."""
    return f"system:overseer:budget:{day}"


ADMIN_AUDIT = "system:admin:audit"
"""Stream of every admin command and button press, authorised or refused, with its outcome."""

ADMIN_APPROVALS = "system:admin:approvals"
"""Hash: approval id → JSON of a pending high-risk trade or report awaiting /approve or /reject."""

ADMIN_DECISIONS = "system:admin:decisions"
"""Stream of approval decisions (id, kind, approved, by whom); the requesters read it."""


def admin_confirmation(token: str) -> str:
    """A pending confirmation (e.g. of /flatten): JSON of who asked, what, and until when."""
    return f"system:admin:confirm:{token}"


ADMIN_ALERTS_CURSOR = "system:admin:alerts:cursor"
"""Last ``system:alerts`` entry the Telegram admin transport has pushed to the admin chat."""

RISK_APPROVALS_PARKED = "system:risk:approvals:parked"
"""Hash: order ref → JSON of an approved high-risk entry parked by the risk gate until an admin decides."""

RISK_APPROVAL_REQUESTS = "system:risk:approvals:requests"
"""Stream of approval requests the risk gate publishes for parked entries; the admin actor turns each
into a Telegram message with Approve/Reject buttons."""

RISK_APPROVALS_CURSOR = "system:risk:approvals:cursor"
"""Last ``system:admin:decisions`` entry the risk gate has acted on (released or denied a parked entry)."""

ADMIN_APPROVAL_REQUESTS_CURSOR = "system:admin:approvals:requests_cursor"
"""Last ``system:risk:approvals:requests`` entry the admin actor has put in front of the admin."""

IBKR_ORDER_ID_FLOOR = "venue:ibkr:order_id_floor"
"""Hash: IBKR API client id → the lowest order id it may still use (one above every id it ever sent).

Written before each order is sent and only ever raised, so a restarted execution actor never reuses
an order id even when TWS hands out a ``nextValidId`` below ids already used (error 103)."""
