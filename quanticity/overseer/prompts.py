"""Prompts sent to Claude and the parsers of its replies.

Each prompt names its task on a ``TASK:`` line and asks for a machine-checkable first line
(``VERDICT: …`` / ``REVIEW: …``), so a reply in the wrong shape is detected and replaced by the
rule path instead of being half-understood. Facts go in as ``Key: value`` lines: easy for the
model, and easy for the loopback twin to derive deterministic answers from.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from quanticity.overseer.findings import Finding, Severity

_VERDICT = re.compile(r"^\s*VERDICT:\s*(CRITICAL|WARNING|OK)\b", re.IGNORECASE)
_REVIEW = re.compile(r"^\s*REVIEW:\s*(OK|RED FLAG)\b[\s:\-–—]*(.*)$", re.IGNORECASE)


def anomaly_prompt(findings: Sequence[Finding]) -> str:
    """Ask for a verdict on this round's findings."""
    lines = "\n".join(f"- {f.line()}" for f in findings)
    return (
        "TASK: anomaly_analysis\n"
        "The platform's deterministic monitors reported these anomalies in the last 30 seconds:\n"
        f"{lines}\n"
        "Decide how serious this is for live trading. Reply with a first line that is exactly one of "
        "'VERDICT: CRITICAL' (trading must halt now), 'VERDICT: WARNING' (a person should look) or "
        "'VERDICT: OK' (benign), then at most three short sentences of analysis."
    )


def parse_verdict(text: str) -> Severity | None:
    """The verdict of the reply's first line, or None when the reply is not in the asked shape."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    match = _VERDICT.match(first)
    return Severity(match.group(1).upper()) if match else None


def analysis_of(text: str) -> str:
    """The reply without its verdict line (the part worth showing to a person)."""
    lines = text.strip().splitlines()
    return " ".join(line.strip() for line in lines[1:] if line.strip())


def review_prompt(facts: dict[str, str]) -> str:
    """Ask for an advisory sanity review of a complex signal."""
    body = "\n".join(f"{k}: {v}" for k, v in facts.items())
    return (
        "TASK: signal_review\n"
        f"{body}\n"
        "Is this options trade logical given its triggers? Reply with a first line 'REVIEW: OK' or "
        "'REVIEW: RED FLAG - <reason>', then at most two sentences."
    )


def parse_review(text: str) -> tuple[bool, str] | None:
    """(red_flag, note) from a review reply, or None when the first line is not in the asked shape."""
    lines = text.strip().splitlines()
    match = _REVIEW.match(lines[0]) if lines else None
    if match is None:
        return None
    flagged = match.group(1).upper() == "RED FLAG"
    note = " ".join([match.group(2).strip(), *(line.strip() for line in lines[1:])]).strip()
    return flagged, note


def explanation_prompt(facts: dict[str, str]) -> str:
    """Ask for the subscriber-facing explanation of a fill."""
    body = "\n".join(f"{k}: {v}" for k, v in facts.items())
    return (
        "TASK: trade_explanation\n"
        f"{body}\n"
        "Write a brief explanation for premium subscribers of why we entered this trade. Keep it under "
        "three sentences, plain English, no promises of profit."
    )


def summary_prompt(facts: dict[str, str]) -> str:
    """Ask for the daily performance summary."""
    body = "\n".join(f"{k}: {v}" for k, v in facts.items())
    return f"TASK: daily_summary\n{body}\nWrite a brief, factual performance summary of the day in 2-3 sentences."
