"""The 30-second checks of SPEC §12 as pure functions: snapshot + config → findings.

- staleness: UW spot GEX ≥ 90 s, flow alerts ≥ 120 s, chains ≥ 180 s, IBKR heartbeat ≥ 30 s
  (WARNING; CRITICAL past each rule's ``critical_after_s``);
- divergence UW vs IBKR: price 2 %, greeks 10 %, spreads 15 % relative to the IBKR value, which is
  the execution reference (seed 000: "always execute on IBKR prices");
- spikes: slippage (bps against the order's limit) and processing latency (actor p99, ms) whose
  recent mean jumps to a floor *and* a multiple of its own history — so a slow-but-steady actor is
  not an anomaly, a sudden jump is.

Thresholds are inclusive ("fires at its threshold"): a reading exactly at the limit is reported.
"""

from __future__ import annotations

import math
import statistics

from quanticity.overseer.config import DivergenceRule, OverseerConfig, SpikeRule, StalenessRule
from quanticity.overseer.findings import Finding, Severity
from quanticity.overseer.snapshot import DivergenceSample, OverseerInput, Series


def staleness_finding(source: str, subject: str, age_s: float, rule: StalenessRule, seen: bool) -> Finding | None:
    """A finding when ``age_s`` reaches the rule's warn level; None while fresh or the rule is off.

    A source never seen since the overseer started is at most a WARNING: it may not have started
    yet (a venue still subscribing at the open), and without its data nothing can trade on it
    anyway (the risk gate's stale-input rule). CRITICAL — a halt — is for data that flowed and
    stopped, the case where positions are being managed blind."""
    if not rule.enabled or age_s < rule.warn_after_s:
        return None
    critical = seen and rule.critical_after_s is not None and age_s >= rule.critical_after_s
    severity = Severity.CRITICAL if critical else Severity.WARNING
    limit = rule.critical_after_s if critical else rule.warn_after_s
    what = "last update" if seen else "never seen; observed for"
    return Finding(
        rule=f"staleness.{source}",
        subject=subject,
        severity=severity,
        message=f"{what} {age_s:.1f} s ago ≥ {limit:g} s",
        value=age_s,
        threshold=limit,
    )


_GRANULARITY_EPS = 1e-9


def divergence_finding(sample: DivergenceSample, rule: DivergenceRule) -> Finding | None:
    """A finding when UW and IBKR disagree by at least the rule's ratio; non-finite inputs are skipped."""
    if not rule.enabled or not (math.isfinite(sample.uw) and math.isfinite(sample.ibkr)):
        return None
    reference = max(abs(sample.ibkr), rule.abs_floor)
    # a difference within the values' granularity (one quote tick) is no disagreement; the epsilon
    # keeps 0.10 − 0.05 (= 0.05000000000000001 in floats) a one-tick difference
    if reference == 0.0 or abs(sample.uw - sample.ibkr) <= rule.min_difference + _GRANULARITY_EPS:
        return None
    ratio = abs(sample.uw - sample.ibkr) / reference
    if ratio < rule.warn_ratio:
        return None
    critical = rule.critical_ratio is not None and ratio >= rule.critical_ratio
    limit = rule.critical_ratio if critical and rule.critical_ratio is not None else rule.warn_ratio
    return Finding(
        rule=f"divergence.{sample.kind}",
        subject=sample.subject,
        severity=Severity.CRITICAL if critical else Severity.WARNING,
        message=f"UW {sample.uw:g} vs IBKR {sample.ibkr:g}: {ratio:.1%} ≥ {limit:.0%}",
        value=ratio,
        threshold=limit,
        details={"uw": sample.uw, "ibkr": sample.ibkr},
    )


def spike_finding(kind: str, series: Series, rule: SpikeRule, unit: str) -> Finding | None:
    """A finding when the recent mean of ``series`` is a spike under ``rule`` (see :class:`SpikeRule`).

    Without a baseline yet (the first fills or heartbeats of a session) a reading past the
    critical level is only a WARNING: one option fill far from its limit is not yet a pattern,
    and halting all trading on it stopped whole simulated sessions in their first minutes."""
    recent = [v for v in series.recent if math.isfinite(v)]
    if not recent:
        return None
    level = statistics.fmean(recent)
    baseline = [v for v in series.baseline if math.isfinite(v)]
    median = statistics.median(baseline) if len(baseline) >= rule.min_baseline else None
    threshold = rule.warn_floor if median is None else max(rule.warn_floor, rule.multiple * median)
    critical = median is not None and rule.critical_at is not None and level >= rule.critical_at
    if level < threshold and not critical:
        return None
    limit = rule.critical_at if critical and rule.critical_at is not None else threshold
    context = "no baseline yet" if median is None else f"baseline median {median:.1f} {unit}"
    return Finding(
        rule=f"spike.{kind}",
        subject=series.subject,
        severity=Severity.CRITICAL if critical else Severity.WARNING,
        message=f"recent mean {level:.1f} {unit} over {len(recent)} sample(s) ≥ {limit:.1f} {unit} ({context})",
        value=level,
        threshold=limit,
    )


def run_checks(snapshot: OverseerInput, config: OverseerConfig) -> list[Finding]:
    """Every finding of one round, in a stable order (staleness, divergence, slippage, latency)."""
    findings: list[Finding] = []
    for source in snapshot.sources:
        rule = config.staleness.get(source.source)
        if rule is None:
            continue
        found = staleness_finding(
            source.source, source.subject, snapshot.age_s(source), rule, source.last_ts_ns is not None
        )
        if found is not None:
            findings.append(found)
    for sample in snapshot.divergences:
        div_rule = config.divergence.get(sample.kind)
        if div_rule is None:
            continue
        found = divergence_finding(sample, div_rule)
        if found is not None:
            findings.append(found)
    for kind, rule, unit, all_series in (
        ("slippage", config.slippage, "bps", snapshot.slippage),
        ("latency", config.latency, "ms", snapshot.latency),
    ):
        for series in all_series:
            found = spike_finding(kind, series, rule, unit)
            if found is not None:
                findings.append(found)
    return findings
