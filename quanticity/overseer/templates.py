"""Deterministic texts used when the model is unavailable, failing, slow or out of budget.

They say the same things the model would be asked to say, from the same facts, so subscribers
and the admin always get a message — just a plainer one.
"""

from __future__ import annotations

from collections.abc import Sequence

from quanticity.messages import Signal
from quanticity.overseer.findings import Finding, Severity

_MAX_LINES = 12


def anomaly_alert(
    findings: Sequence[Finding], severity: Severity, source: str, analysis: str = "", action: str = ""
) -> str:
    """The admin alert of one round: verdict, who decided, the findings, the action taken."""
    header = f"{'🚨' if severity is Severity.CRITICAL else '⚠️'} Overseer {severity.value} ({source})"
    shown = [f"• {f.line()}" for f in findings[:_MAX_LINES]]
    if len(findings) > _MAX_LINES:
        shown.append(f"• … and {len(findings) - _MAX_LINES} more")
    parts = [header, *shown]
    if analysis:
        parts.append(f"Analysis: {analysis}")
    if action:
        parts.append(f"Action: {action}")
    return "\n".join(parts)


def review_note(flags: Sequence[str]) -> str:
    """The template review of a signal: its rule-based red flags, or a plain OK."""
    return "Rule review: " + ("; ".join(flags) if flags else "no red flags")


def review_alert(signal: Signal, note: str, source: str, red_flag: bool) -> str:
    """The admin's advisory review of one entry signal (the order goes ahead either way)."""
    header = f"{'⚠️ Pre-trade review: RED FLAG' if red_flag else '🔎 Pre-trade review: OK'} ({source}, advisory)"
    what = (
        f"{signal.strategy} {signal.direction.value} {signal.contract.key} — bid {signal.reference_bid:g} / "
        f"ask {signal.reference_ask:g}, confidence {signal.confidence}"
    )
    return "\n".join([header, what, f"Triggers: {signal.reason}", note])


def trade_explanation(facts: dict[str, str]) -> str:
    """Subscriber explanation built from the fill facts."""
    triggers = facts.get("Triggers", "").strip() or "our entry conditions were met"
    return (
        f"We bought {facts.get('Quantity', '?')} {facts.get('Contract', 'contracts')} at "
        f"{facts.get('Fill price', '?')} because {triggers}. "
        f"The most we can lose is the premium paid ({facts.get('Premium at risk', 'n/a')})."
    )


def daily_summary(facts: dict[str, str]) -> str:
    """The day's summary from its figures."""
    return (
        f"Today we closed {facts.get('Trades', '0')} trades with a win rate of {facts.get('Win rate', 'n/a')} "
        f"and a net P&L of {facts.get('P&L', 'n/a')}. Best trade: {facts.get('Best trade', 'none')}; "
        f"worst trade: {facts.get('Worst trade', 'none')}."
    )
