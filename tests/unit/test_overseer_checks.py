"""Overseer rules as pure functions: each fires at its threshold and not below."""

from __future__ import annotations

import pydantic
import pytest

from quanticity.overseer.checks import divergence_finding, run_checks, spike_finding, staleness_finding
from quanticity.overseer.config import OverseerConfig, SpikeRule, StalenessRule, for_run_speed
from quanticity.overseer.findings import Severity, worst
from quanticity.overseer.snapshot import NS, DivergenceSample, OverseerInput, Series, SourceAge

pytestmark = pytest.mark.unit

CFG = OverseerConfig()
T0 = 1_750_000_000 * NS


@pytest.mark.parametrize(
    ("source", "warn_s", "critical_s"),
    [("uw_spot_gex", 90, 300), ("uw_flow_alerts", 120, 300), ("uw_chains", 180, 600), ("ibkr_heartbeat", 30, 60)],
)
def test_staleness_fires_at_spec_threshold_and_not_below(source: str, warn_s: float, critical_s: float) -> None:
    rule = CFG.staleness[source]
    assert rule.warn_after_s == warn_s and rule.critical_after_s == critical_s
    assert staleness_finding(source, "SPY", warn_s - 0.001, rule, seen=True) is None
    at = staleness_finding(source, "SPY", warn_s, rule, seen=True)
    assert at is not None and at.severity is Severity.WARNING and at.rule == f"staleness.{source}"
    assert staleness_finding(source, "SPY", critical_s - 0.001, rule, seen=True).severity is Severity.WARNING
    assert staleness_finding(source, "SPY", critical_s, rule, seen=True).severity is Severity.CRITICAL


def test_staleness_through_the_snapshot_uses_now_and_treats_never_seen_as_old_as_the_observation() -> None:
    now = T0 + 1000 * NS
    snapshot = OverseerInput(
        now_ns=now,
        started_ns=now - 95 * NS,
        sources=(
            SourceAge("uw_spot_gex", "SPY", now - 89 * NS),
            SourceAge("uw_spot_gex", "QQQ", now - 90 * NS),
            SourceAge("uw_spot_gex", "IWM", None),  # never seen, observed for 95 s
            SourceAge("ibkr_heartbeat", "*", now - 29 * NS),
        ),
    )
    findings = run_checks(snapshot, CFG)
    assert [(f.subject, f.severity) for f in findings] == [("QQQ", Severity.WARNING), ("IWM", Severity.WARNING)]
    assert "never seen" in findings[1].message


def test_disabled_staleness_rule_is_silent() -> None:
    rule = StalenessRule(warn_after_s=90, enabled=False)
    assert staleness_finding("uw_spot_gex", "SPY", 10_000, rule, seen=True) is None


@pytest.mark.parametrize(("kind", "warn"), [("price", 0.02), ("greeks", 0.10), ("spread", 0.15)])
def test_divergence_fires_at_spec_threshold_and_not_below(kind: str, warn: float) -> None:
    rule = CFG.divergence[kind]
    assert rule.warn_ratio == warn
    at = divergence_finding(DivergenceSample(kind, "SPY", 100 + 100 * warn, 100.0), rule)
    assert at is not None and at.severity is Severity.WARNING and at.rule == f"divergence.{kind}"
    assert divergence_finding(DivergenceSample(kind, "SPY", 100 - 100 * warn, 100.0), rule) is not None
    assert divergence_finding(DivergenceSample(kind, "SPY", 100 + 100 * warn - 0.01, 100.0), rule) is None


def test_divergence_critical_level_floor_and_bad_numbers() -> None:
    assert divergence_finding(DivergenceSample("price", "SPY", 105.0, 100.0), CFG.divergence["price"]).severity is (
        Severity.CRITICAL
    )
    # a far-OTM delta of 0.0015 vs 0.001 is rounding noise, not a 50 % divergence (floor 0.01 → 5 %)
    assert divergence_finding(DivergenceSample("greeks", "SPY d", 0.0015, 0.001), CFG.divergence["greeks"]) is None
    assert divergence_finding(DivergenceSample("price", "SPY", float("nan"), 100.0), CFG.divergence["price"]) is None
    # the spread rule has no critical level: any size is a WARNING
    assert divergence_finding(DivergenceSample("spread", "SPY", 10.0, 1.0), CFG.divergence["spread"]).severity is (
        Severity.WARNING
    )


def test_spread_divergence_of_one_quote_tick_is_never_a_finding() -> None:
    """Spreads are tick-quantised dollars: one tick apart is granularity, two ticks on a tight market is not."""
    rule = CFG.divergence["spread"]
    one_tick = [(0.10, 0.05), (0.05, 0.10), (0.15, 0.10), (0.55, 0.50)]
    assert [divergence_finding(DivergenceSample("spread", "SPY", uw, ibkr), rule) for uw, ibkr in one_tick] == [
        None
    ] * len(one_tick)
    two_ticks = divergence_finding(DivergenceSample("spread", "SPY", 0.15, 0.05), rule)
    assert two_ticks is not None and two_ticks.value == pytest.approx(2.0)
    # a wide market: more than a tick and past 15 % of IBKR's spread fires; under 15 % does not
    assert divergence_finding(DivergenceSample("spread", "SPY", 0.60, 0.50), rule) is not None
    assert divergence_finding(DivergenceSample("spread", "SPY", 0.5749, 0.50), rule) is None


def test_spike_uses_the_floor_without_history_and_the_multiple_with_it() -> None:
    rule = SpikeRule(warn_floor=50, multiple=3, critical_at=300, min_baseline=5)
    assert spike_finding("slippage", Series("fills", (49.9,), ()), rule, "bps") is None
    assert spike_finding("slippage", Series("fills", (50.0,), ()), rule, "bps").severity is Severity.WARNING
    history = (40.0,) * 5  # median 40 → threshold max(50, 120) = 120
    assert spike_finding("slippage", Series("fills", (100.0, 110.0), history), rule, "bps") is None
    found = spike_finding("slippage", Series("fills", (120.0,), history), rule, "bps")
    assert found is not None and found.threshold == 120.0 and found.severity is Severity.WARNING
    assert spike_finding("slippage", Series("fills", (300.0,), history), rule, "bps").severity is Severity.CRITICAL
    assert spike_finding("latency", Series("risk", (), history), rule, "ms") is None


def test_latency_and_slippage_defaults_feed_run_checks() -> None:
    snapshot = OverseerInput(
        now_ns=T0,
        started_ns=T0,
        slippage=(Series("fills", (60.0,), ()),),
        latency=(Series("risk", (2500.0,), (10.0,) * 20), Series("feed", (12.0,), (10.0,) * 20)),
    )
    findings = run_checks(snapshot, CFG)
    assert [(f.rule, f.subject, f.severity) for f in findings] == [
        ("spike.slippage", "fills", Severity.WARNING),
        ("spike.latency", "risk", Severity.CRITICAL),
    ]
    assert worst(f.severity for f in findings) is Severity.CRITICAL


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"check_interval_s": 30, "model": {"timeout_s": 15}}, "model.timeout_s"),
        ({"staleness": {"uw_spot_gex": {"warn_after_s": 90, "critical_after_s": 60}}}, "critical_after_s"),
        ({"staleness": {"uw_typo": {"warn_after_s": 90}}}, "uw_typo"),
        ({"slippage": {"warn_floor": 50, "bogus": 1}}, "bogus"),
    ],
)
def test_bad_config_is_rejected_naming_the_field(overrides: dict, field: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=field):
        OverseerConfig.model_validate(overrides)


def test_a_source_never_seen_warns_but_never_halts() -> None:
    """A venue still subscribing at the open is not a dead feed: WARNING at most until data has flowed."""
    rule = StalenessRule(warn_after_s=30, critical_after_s=60)
    never = staleness_finding("ibkr_heartbeat", "SPY", 10_000, rule, seen=False)
    assert never is not None and never.severity is Severity.WARNING
    assert "never seen" in never.message
    assert staleness_finding("ibkr_heartbeat", "SPY", 60, rule, seen=True).severity is Severity.CRITICAL


def test_a_spike_without_baseline_warns_but_never_halts() -> None:
    rule = SpikeRule(warn_floor=50, multiple=3, critical_at=300, min_baseline=3)
    alone = spike_finding("slippage", Series("fills", (686.0,), ()), rule, "bps")
    assert alone is not None and alone.severity is Severity.WARNING and "no baseline yet" in alone.message
    with_baseline = spike_finding("slippage", Series("fills", (686.0,), (10.0, 12.0, 8.0)), rule, "bps")
    assert with_baseline is not None and with_baseline.severity is Severity.CRITICAL


def test_an_accelerated_run_turns_latency_criticals_into_warnings() -> None:
    """Wall latency at 100× measures the simulating machine: it warns, it never halts; 1× is unchanged."""
    live = OverseerConfig()
    spike = Series("quanticity:risk", (2200.0,), (300.0,) * 20)
    assert spike_finding("latency", spike, live.latency, "ms").severity is Severity.CRITICAL
    fast = for_run_speed(live, 100.0)
    assert spike_finding("latency", spike, fast.latency, "ms").severity is Severity.WARNING
    assert fast.slippage == live.slippage and fast.staleness == live.staleness  # only latency changes
    assert for_run_speed(live, 1.0) is live
