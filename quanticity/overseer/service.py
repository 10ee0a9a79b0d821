"""The overseer round: read → check → (ask Claude) → act, every ``check_interval_s``.

Escalation (SPEC §12): the worst rule severity of the round is the floor; the model is asked
for a verdict only when something *new* is found (a finding not already acted on within
``realert_after_s``, or one that got worse), which keeps a persisting anomaly from spending the
budget every 30 s and the admin from being paged every 30 s. A CRITICAL verdict asks the risk gate
to HALT and pages the admin; a WARNING pages the admin. Without a key, on an API error, a timeout,
an unparseable reply or a spent budget, the rule severity decides alone — and because the model
call is bounded by ``model.timeout_s`` (validated to be under half the check period), the rule
path acts within the round. By default the model may escalate but not downgrade a rule finding
(``model_can_downgrade``): a language model must not talk the system out of a dead feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Protocol

from quanticity.clock import NS_PER_SECOND, Clock
from quanticity.overseer import prompts, templates
from quanticity.overseer.checks import run_checks
from quanticity.overseer.config import OverseerConfig
from quanticity.overseer.counters import Counters
from quanticity.overseer.findings import Finding, Severity, worst
from quanticity.overseer.model import ModelGateway
from quanticity.overseer.protocols import AdminAlerts, RiskControl
from quanticity.overseer.snapshot import OverseerInput

log = logging.getLogger(__name__)


class SnapshotSource(Protocol):
    """Produces the round's input (Redis in production, hand-built values in tests)."""

    async def read(self) -> OverseerInput:
        """The current snapshot."""
        ...


@dataclass(frozen=True)
class RoundOutcome:
    """What one round found and did (returned for tests, logs and the heartbeat)."""

    findings: tuple[Finding, ...]
    rule_severity: Severity
    severity: Severity
    source: str  # "model" | "rules" | "none"
    action: str  # "halt" | "alert" | "none" | "suppressed"
    fallback_reason: str | None = None
    analysis: str = ""
    new_keys: tuple[str, ...] = field(default=())


class Overseer:
    """Runs the checks and escalates through :class:`RiskControl` and :class:`AdminAlerts`."""

    def __init__(
        self,
        config: OverseerConfig,
        source: SnapshotSource,
        gateway: ModelGateway,
        risk: RiskControl,
        alerts: AdminAlerts,
        clock: Clock,
        counters: Counters | None = None,
        action_timeout_s: float = 5.0,
    ) -> None:
        self.config = config
        self.counters = counters or Counters()
        self._source = source
        self._gateway = gateway
        self._risk = risk
        self._alerts = alerts
        self._clock = clock
        self._action_timeout_s = action_timeout_s
        self._acted: dict[str, tuple[int, Severity]] = {}  # finding key → (when, severity) last acted on
        self.last: RoundOutcome | None = None

    # --- one round ------------------------------------------------------------------------------
    async def check_once(self) -> RoundOutcome:
        """One full round; never raises for a failing model, risk gate or alert sink."""
        self.counters.add("checks")
        snapshot = await self._source.read()
        findings = run_checks(snapshot, self.config)
        for finding in findings:
            self.counters.add(f"findings.{finding.rule}")
            self.counters.add(f"findings.severity.{finding.severity.value}")
        rule_severity = worst(f.severity for f in findings)
        now = self._clock.now_ns()
        self._forget_resolved(findings)
        fresh = [f for f in findings if self._is_new(f, now)]
        if not findings:
            outcome = RoundOutcome((), Severity.OK, Severity.OK, "none", "none")
        elif not fresh:
            self.counters.add("rounds.suppressed")
            outcome = RoundOutcome(tuple(findings), rule_severity, rule_severity, "none", "suppressed")
        else:
            outcome = await self._escalate(findings, fresh, rule_severity, now)
        self.last = outcome
        return outcome

    async def _escalate(
        self, findings: list[Finding], fresh: list[Finding], rule_severity: Severity, now: int
    ) -> RoundOutcome:
        reply = await self._gateway.complete(
            "anomaly_analysis", prompts.anomaly_prompt(findings), self.config.model.max_tokens
        )
        verdict = prompts.parse_verdict(reply.text) if reply.text is not None else None
        fallback_reason = reply.fallback_reason
        if reply.text is not None and verdict is None:
            self.counters.add("fallback.unparseable")
            fallback_reason = "unparseable"
        if verdict is None:
            severity, source, analysis = rule_severity, "rules", ""
            self.counters.add("verdicts.rules")
        else:
            severity = verdict if self.config.model_can_downgrade else worst([verdict, rule_severity])
            source, analysis = "model", prompts.analysis_of(reply.text or "")
            self.counters.add("verdicts.model")
        self.counters.add(f"verdicts.{severity.value}")
        action = await self._act(findings, severity, source, analysis)
        for finding in fresh:
            self._acted[finding.key] = (now, finding.severity)
        return RoundOutcome(
            tuple(findings),
            rule_severity,
            severity,
            source,
            action,
            fallback_reason,
            analysis,
            tuple(f.key for f in fresh),
        )

    async def _act(self, findings: list[Finding], severity: Severity, source: str, analysis: str) -> str:
        if severity is Severity.OK:
            return "none"
        action_text = ""
        if severity is Severity.CRITICAL:
            cause = [f for f in findings if f.severity is Severity.CRITICAL] or findings  # the model escalated
            reason = f"overseer {source}: " + "; ".join(f.line() for f in cause)
            if len(reason) > 500:
                reason = reason[:499] + "…"
            try:
                state = await asyncio.wait_for(self._risk.set_state("HALTED", reason), self._action_timeout_s)
                self.counters.add("actions.halt")
                action_text = f"trading {state}"
            except Exception as exc:  # the gate unreachable must not stop the admin page below
                self.counters.add("actions.halt_failed")
                action_text = f"HALT REQUEST FAILED ({type(exc).__name__}: {exc}) — halt manually with /halt"
                log.error("overseer could not halt trading", extra={"error": str(exc)})
        text = templates.anomaly_alert(findings, severity, source, analysis, action_text)
        try:
            await asyncio.wait_for(self._alerts.alert(severity.value, text), self._action_timeout_s)
            self.counters.add(f"actions.alert.{severity.value}")
        except Exception as exc:
            self.counters.add("actions.alert_failed")
            log.error("overseer alert not delivered", extra={"error": str(exc), "text": text})
        return "halt" if severity is Severity.CRITICAL else "alert"

    def _is_new(self, finding: Finding, now: int) -> bool:
        acted = self._acted.get(finding.key)
        if acted is None:
            return True
        when, severity = acted
        return finding.severity.rank > severity.rank or now - when >= self.config.realert_after_s * NS_PER_SECOND

    def _forget_resolved(self, findings: list[Finding]) -> None:
        """A finding that cleared and comes back later is new again."""
        current = {f.key for f in findings}
        for key in [k for k in self._acted if k not in current]:
            del self._acted[key]

    # --- loop -----------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event, interval_s: float | None = None) -> None:
        """Run rounds until ``stop`` is set; ``interval_s`` is wall seconds (check period / speed)."""
        interval = self.config.check_interval_s if interval_s is None else interval_s
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            started = loop.time()
            try:
                await self.check_once()
            except Exception as exc:  # a failed read (Redis down) must not end the watch
                self.counters.add("rounds.failed")
                log.error("overseer round failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            remaining = max(0.0, interval - (loop.time() - started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), remaining)

    def stats(self) -> dict[str, float]:
        """Counters for the actor heartbeat."""
        return self.counters.snapshot()
