"""Message templates per tier and platform (the seeds' templates, SPEC §10 redaction).

* premium — everything: contract, size, fill price, stop, targets, triggers/reason, risk;
* basic — the contract and the fill, no analytics ("Stop: Set", "Targets: Set");
* free — a direction-only teaser, and no follow-ups.

Each tier's content is built once as a title plus rows and lines, then laid out per platform:
Telegram as HTML text (every dynamic value escaped, so a strategy's reason can never break the
parse mode), Discord as an embed (rows become fields), the local log as plain text. Every message
carries a short ``ref`` (in the embed footer / last line): it lets a publisher that crashed
mid-send find out on Discord whether the message landed, and lets a subscriber quote it.
"""

from __future__ import annotations

import hashlib
import html
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from quanticity.calendar import ET
from quanticity.distribution.alerts import Alert, AlertKind
from quanticity.messages import Direction, OptionContract, Right

NS = 1_000_000_000
COLOURS = {Direction.BULLISH: 0x2ECC71, Direction.BEARISH: 0xE74C3C}


@dataclass(frozen=True)
class Content:
    """Tier-redacted content: a title, label/value rows, free lines."""

    title: str
    rows: tuple[tuple[str, str], ...] = ()
    lines: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rendered:
    """One message laid out for every platform; ``ref`` identifies it on the platform."""

    ref: str
    text: str
    html: str
    embed: dict[str, Any] = field(default_factory=dict)


def ref_of(delivery_id: str) -> str:
    """Short stable reference of a delivery (10 hex chars of its SHA-256)."""
    return hashlib.sha256(delivery_id.encode()).hexdigest()[:10]


def contract_label(contract: OptionContract) -> str:
    """``SPY 440C 2026-11-20``: how traders write a contract."""
    return f"{contract.underlying} {contract.strike:g}{contract.right.value} {contract.expiry}"


def _pct(level: float, base: float | None) -> str:
    return f" ({(level / base - 1) * 100:+.0f}%)" if base else ""


def _when(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / NS, tz=UTC).astimezone(ET).strftime("%H:%M:%S ET")


def _entry(alert: Alert, tier: str) -> Content:
    c = alert.contract
    ctx = alert.context
    if tier == "premium":
        rows: list[tuple[str, str]] = [("Fill", f"BUY {alert.quantity} @ ${alert.price:.2f}")]
        rows.append(("Stop", f"${ctx.stop:.2f}{_pct(ctx.stop, alert.price)}" if ctx.stop else "not set"))
        for i, target in enumerate(ctx.targets, 1):
            rows.append((f"Target {i}", f"${target:.2f}{_pct(target, alert.price)}"))
        if ctx.triggers:
            rows.append(("Triggers", ", ".join(ctx.triggers)))
        if ctx.risk_amount is not None:
            share = f" ({ctx.risk_pct:.1f}% of account)" if ctx.risk_pct is not None else ""
            rows.append(("Risk", f"${ctx.risk_amount:,.0f}{share}"))
        lines = [f"Why: {ctx.reason}"] if ctx.reason else []
        lines.append(f"Strategy: {alert.strategy} · filled {_when(alert.ts_event)}")
        return Content(
            f"✅ FILLED: BUY {alert.quantity} {contract_label(c)} @ ${alert.price:.2f}", tuple(rows), tuple(lines)
        )
    if tier == "basic":
        return Content(
            f"✅ FILLED: BUY {contract_label(c)} @ ${alert.price:.2f}",
            (("Stop", "Set"), ("Targets", "Set")),
            ("Manage with trailing stop",),
        )
    side = "calls" if c.right is Right.CALL else "puts"
    view = "Bullish" if alert.direction is Direction.BULLISH else "Bearish"
    return Content(
        f"🔔 {view} signal on {c.underlying}!",
        (),
        (f"Premium members positioned in {side}.", "Join for exact details."),
    )


def _exit_pnl(alert: Alert) -> str:
    ctx = alert.context
    pct = ""
    if ctx.entry_price:
        pct = f" ({(alert.price / ctx.entry_price - 1) * 100:+.1f}%)"
    return f"${ctx.realized:+,.2f}{pct}"


def _followup(alert: Alert, tier: str) -> Content | None:
    if tier == "free":
        return None  # the teaser tier gets no position management (seeds: 'free': None)
    label = contract_label(alert.contract)
    ctx = alert.context
    premium = tier == "premium"
    if alert.kind is AlertKind.STOP_MOVED:
        if not premium:
            return Content("📈 UPDATE: Stop adjusted")
        what = "Stop raised to break-even" if alert.note == "break-even stop" else "Trailing stop moved"
        return Content(f"📈 UPDATE: {what} to ${alert.new_stop:.2f}")
    if alert.kind is AlertKind.EXPLANATION:
        # the overseer's post-fill analysis belongs to what premium pays for (SPEC §10, §12)
        return Content("🧠 WHY THIS TRADE", (), (alert.note,)) if premium else None
    if alert.kind is AlertKind.ADDED:
        if premium:
            return Content(f"➕ ADDED: Bought {alert.quantity} {label} @ ${alert.price:.2f}")
        return Content(f"➕ ADDED to {label}")
    if alert.kind is AlertKind.PARTIAL_EXIT:
        if premium:
            rows = [("Profit", _exit_pnl(alert))]
            if ctx.remaining is not None:
                rows.append(("Remaining", f"{ctx.remaining} contracts"))
            return Content(f"💰 PARTIAL EXIT: Sold {alert.quantity} @ ${alert.price:.2f}", tuple(rows))
        return Content(f"💰 PARTIAL EXIT: Target hit @ ${alert.price:.2f}")
    if premium:
        rows = [("Exit", f"${alert.price:.2f}"), ("P&L", _exit_pnl(alert))]
        if ctx.opened_ns is not None and alert.ts_event >= ctx.opened_ns:
            minutes = (alert.ts_event - ctx.opened_ns) // (60 * NS)
            rows.append(("Duration", f"{minutes // 60}h {minutes % 60:02d}m"))
        return Content(f"✅ POSITION CLOSED: {label}", tuple(rows))
    return Content(f"✅ CLOSED @ ${alert.price:.2f}")


def content(alert: Alert, tier: str) -> Content | None:
    """Tier-redacted content of ``alert``; None when the tier gets no such message."""
    if tier not in ("premium", "basic", "free"):
        raise ValueError(f"tier: {tier!r} is not one of premium, basic, free")
    return _entry(alert, tier) if alert.kind is AlertKind.ENTRY else _followup(alert, tier)


def render(alert: Alert, tier: str, delivery_id: str) -> Rendered | None:
    """Lay ``alert`` out for every platform for ``tier``; None when the tier gets no such message."""
    body = content(alert, tier)
    if body is None:
        return None
    ref = ref_of(delivery_id)
    plain = [body.title, *(f"{k}: {v}" for k, v in body.rows), *body.lines, f"ref {ref}"]
    esc = html.escape
    markup = [f"<b>{esc(body.title)}</b>", *(f"{esc(k)}: <code>{esc(v)}</code>" for k, v in body.rows)]
    markup += [esc(line) for line in body.lines]
    markup.append(f"<i>ref {ref}</i>")
    embed: dict[str, Any] = {
        "title": body.title[:256],
        "color": COLOURS[alert.direction],
        "footer": {"text": f"Quanticity · ref {ref}"},
        "fields": [{"name": k, "value": v, "inline": True} for k, v in body.rows],
    }
    if body.lines:
        embed["description"] = "\n".join(body.lines)
    return Rendered(ref=ref, text="\n".join(plain), html="\n".join(markup), embed=embed)
