"""The overseer round end to end: rules → the real anthropic SDK against the twin → halt / alert / fallback."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable

import pytest

from quanticity.clock import SimulatedClock
from quanticity.messages import Direction, Fill, OptionContract, Right, Side, Signal
from quanticity.overseer.budget import Budget, MemoryBudgetStore
from quanticity.overseer.config import ModelConfig, OverseerConfig
from quanticity.overseer.counters import Counters
from quanticity.overseer.findings import Severity
from quanticity.overseer.model import ModelGateway, build_client
from quanticity.overseer.narratives import ClosedTrade, Narrator
from quanticity.overseer.service import Overseer
from quanticity.overseer.snapshot import NS, OverseerInput, SourceAge
from quanticity.sim.anthropic_server import AnthropicTwin

pytestmark = pytest.mark.unit

T0 = 1_750_000_000 * NS
KEY = "sk-overseer-test"


class MemoryRisk:
    """RiskControl that records what it was asked."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, str]] = []
        self.state = "ACTIVE"
        self.fail = fail

    async def set_state(self, state: str, reason: str) -> str:
        if self.fail:
            raise ConnectionError("risk gate unreachable")
        self.calls.append((state, reason))
        self.state = state
        return state


class MemoryAlerts:
    """AdminAlerts that keeps what it was given."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def alert(self, level: str, text: str) -> None:
        self.sent.append((level, text))


class MutableSource:
    """A snapshot source whose ages the test sets."""

    def __init__(self, clock: SimulatedClock) -> None:
        self.clock = clock
        self.ages: dict[tuple[str, str], float | None] = {}

    async def read(self) -> OverseerInput:
        now = self.clock.now_ns()
        sources = tuple(
            SourceAge(src, subject, None if age is None else now - int(age * NS))
            for (src, subject), age in self.ages.items()
        )
        return OverseerInput(now_ns=now, started_ns=T0, sources=sources)


class Rig:
    """One overseer wired to the twin (or to nothing) with in-memory risk and alerts."""

    def __init__(self, base_url: str | None, config: OverseerConfig | None = None, env_key: str | None = KEY) -> None:
        base = config or OverseerConfig()
        model = base.model.model_copy(update={"base_url": base_url, "timeout_s": 0.5})
        self.config = base.model_copy(update={"model": model})
        self.clock = SimulatedClock(T0)
        self.counters = Counters()
        env = {"ANTHROPIC_API_KEY": env_key} if env_key else {}
        self.budget = Budget(self.config.model, MemoryBudgetStore(), self.clock)
        self.gateway = ModelGateway(self.config.model, build_client(self.config.model, env), self.budget, self.counters)
        self.source = MutableSource(self.clock)
        self.risk = MemoryRisk()
        self.alerts = MemoryAlerts()
        self.overseer = Overseer(
            self.config, self.source, self.gateway, self.risk, self.alerts, self.clock, self.counters
        )
        self.narrator = Narrator(self.config, self.gateway, self.counters)


def with_twin(body: Callable[[AnthropicTwin], Awaitable[None]]) -> None:
    async def main() -> None:
        twin = AnthropicTwin(api_key=KEY)
        await twin.start()
        try:
            await body(twin)
        finally:
            await twin.stop()

    asyncio.run(main())


def test_model_critical_verdict_halts_trading_even_when_rules_only_warn() -> None:
    async def body(twin: AnthropicTwin) -> None:
        twin.add_rule(r"staleness\.uw_spot_gex", "VERDICT: CRITICAL")
        rig = Rig(twin.base_url)
        rig.source.ages[("uw_spot_gex", "SPY")] = 95.0
        outcome = await rig.overseer.check_once()
        assert outcome.rule_severity is Severity.WARNING
        assert (outcome.severity, outcome.source, outcome.action) == (Severity.CRITICAL, "model", "halt")
        assert rig.risk.calls and rig.risk.calls[0][0] == "HALTED"
        assert "staleness.uw_spot_gex SPY" in rig.risk.calls[0][1]
        assert rig.alerts.sent[0][0] == "CRITICAL" and "trading HALTED" in rig.alerts.sent[0][1]
        assert rig.counters.get("model.calls") == 1 and rig.counters.get("actions.halt") == 1
        assert "TASK: anomaly_analysis" in twin.requests[-1].prompt

    with_twin(body)


def test_model_warning_alerts_the_admin_without_halting() -> None:
    async def body(twin: AnthropicTwin) -> None:
        rig = Rig(twin.base_url)
        rig.source.ages[("uw_chains", "QQQ")] = 200.0
        outcome = await rig.overseer.check_once()
        assert (outcome.severity, outcome.source, outcome.action) == (Severity.WARNING, "model", "alert")
        assert rig.risk.calls == []
        assert rig.alerts.sent[0][0] == "WARNING" and "Analysis:" in rig.alerts.sent[0][1]

    with_twin(body)


def test_model_cannot_downgrade_a_rule_critical_unless_configured() -> None:
    async def body(twin: AnthropicTwin) -> None:
        twin.add_rule(r"ibkr_heartbeat", "VERDICT: OK")
        rig = Rig(twin.base_url)
        rig.source.ages[("ibkr_heartbeat", "*")] = 61.0
        assert (await rig.overseer.check_once()).action == "halt"
        lenient = Rig(twin.base_url, OverseerConfig(model_can_downgrade=True))
        lenient.source.ages[("ibkr_heartbeat", "*")] = 61.0
        outcome = await lenient.overseer.check_once()
        assert (outcome.severity, outcome.action) == (Severity.OK, "none") and lenient.risk.calls == []

    with_twin(body)


def test_without_a_key_the_rules_decide_and_the_model_is_not_called() -> None:
    async def main() -> None:
        rig = Rig(None, env_key=None)
        rig.source.ages[("ibkr_heartbeat", "*")] = 70.0
        outcome = await rig.overseer.check_once()
        assert (outcome.source, outcome.fallback_reason, outcome.action) == ("rules", "no_key", "halt")
        assert rig.risk.calls[0][0] == "HALTED" and rig.counters.get("fallback.no_key") == 1
        assert rig.counters.get("model.calls") == 0

    asyncio.run(main())


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_model_server_down_still_alerts_by_rule() -> None:
    async def main() -> None:
        rig = Rig(f"http://127.0.0.1:{_closed_port()}")
        rig.source.ages[("uw_flow_alerts", "SPY")] = 130.0
        outcome = await rig.overseer.check_once()
        assert (outcome.source, outcome.fallback_reason, outcome.action) == ("rules", "connection", "alert")
        assert rig.alerts.sent[0][0] == "WARNING" and "(rules)" in rig.alerts.sent[0][1]
        assert rig.counters.get("model.failures.connection") == 1

    asyncio.run(main())


@pytest.mark.parametrize(
    ("fault", "reason"), [("overloaded", "status_529"), ("rate_limit", "status_429"), ("api_error", "status_500")]
)
def test_api_errors_fall_back_to_rules(fault: str, reason: str) -> None:
    async def body(twin: AnthropicTwin) -> None:
        twin.inject_fault(fault)
        rig = Rig(twin.base_url)
        rig.source.ages[("ibkr_heartbeat", "*")] = 65.0
        outcome = await rig.overseer.check_once()
        assert (outcome.source, outcome.fallback_reason, outcome.action) == ("rules", reason, "halt")
        assert rig.risk.state == "HALTED"

    with_twin(body)


def test_slow_model_still_alerts_within_the_check_period() -> None:
    async def body(twin: AnthropicTwin) -> None:
        twin.inject_fault("slow", delay_s=60)
        rig = Rig(twin.base_url)
        rig.source.ages[("ibkr_heartbeat", "*")] = 31.0
        started = time.perf_counter()
        outcome = await rig.overseer.check_once()
        elapsed = time.perf_counter() - started
        assert (outcome.source, outcome.fallback_reason) == ("rules", "timeout")
        assert rig.alerts.sent and rig.alerts.sent[0][0] == "WARNING"
        # the model timeout (0.5 s) bounds the round; far inside the 30 s check period
        assert elapsed < rig.config.model.timeout_s + 2.0 < rig.config.check_interval_s

    with_twin(body)


def test_unparseable_reply_falls_back_to_rules() -> None:
    async def body(twin: AnthropicTwin) -> None:
        twin.add_rule(r"anomaly", "I think everything is probably fine")
        rig = Rig(twin.base_url)
        rig.source.ages[("uw_spot_gex", "SPY")] = 100.0
        outcome = await rig.overseer.check_once()
        assert (outcome.source, outcome.fallback_reason, outcome.severity) == ("rules", "unparseable", Severity.WARNING)

    with_twin(body)


def test_persisting_anomaly_is_not_re_alerted_until_it_worsens_or_the_cooldown_passes() -> None:
    async def body(twin: AnthropicTwin) -> None:
        rig = Rig(twin.base_url)
        rig.source.ages[("uw_spot_gex", "SPY")] = 95.0
        assert (await rig.overseer.check_once()).action == "alert"
        rig.clock.advance(30)
        assert (await rig.overseer.check_once()).action == "suppressed"
        rig.source.ages[("uw_spot_gex", "SPY")] = 301.0  # now CRITICAL: worse, so new
        assert (await rig.overseer.check_once()).action == "halt"
        rig.clock.advance(rig.config.realert_after_s)
        assert (await rig.overseer.check_once()).action == "halt"
        del rig.source.ages[("uw_spot_gex", "SPY")]
        assert (await rig.overseer.check_once()).action == "none"
        assert rig.counters.get("model.calls") == 3 and rig.counters.get("rounds.suppressed") == 1

    with_twin(body)


def test_budget_exhaustion_switches_to_rules_and_templates() -> None:
    async def body(twin: AnthropicTwin) -> None:
        config = OverseerConfig(model=ModelConfig(daily_request_budget=1))
        rig = Rig(twin.base_url, config)
        rig.source.ages[("uw_spot_gex", "SPY")] = 95.0
        assert (await rig.overseer.check_once()).source == "model"
        rig.source.ages[("uw_chains", "SPY")] = 190.0
        outcome = await rig.overseer.check_once()
        assert (outcome.source, outcome.fallback_reason) == ("rules", "budget_requests")
        summary = await rig.narrator.daily_summary([ClosedTrade("SPY 450C", 120.0), ClosedTrade("QQQ 380P", -40.0)])
        assert summary.source == "template" and "win rate of 50%" in summary.text and "$+80.00" in summary.text
        assert rig.budget.used()[0] == 1 and len(twin.requests) == 1
        tokens = ModelConfig(daily_token_budget=100, max_tokens=500)
        starved = Rig(twin.base_url, OverseerConfig(model=tokens))
        starved.source.ages[("uw_spot_gex", "SPY")] = 95.0
        assert (await starved.overseer.check_once()).fallback_reason == "budget_tokens"

    with_twin(body)


def test_risk_gate_failure_is_reported_to_the_admin() -> None:
    async def main() -> None:
        rig = Rig(None, env_key=None)
        rig.overseer._risk = MemoryRisk(fail=True)
        rig.source.ages[("ibkr_heartbeat", "*")] = 90.0
        outcome = await rig.overseer.check_once()
        assert outcome.action == "halt" and rig.counters.get("actions.halt_failed") == 1
        assert "HALT REQUEST FAILED" in rig.alerts.sent[0][1]

    asyncio.run(main())


def test_run_loop_checks_on_its_period_until_stopped() -> None:
    async def main() -> None:
        rig = Rig(None, env_key=None)
        stop = asyncio.Event()
        task = asyncio.create_task(rig.overseer.run(stop, interval_s=0.01))
        for _ in range(500):
            if rig.counters.get("checks") >= 3:
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 5)
        assert rig.counters.get("checks") >= 3

    asyncio.run(main())


def _contract() -> OptionContract:
    return OptionContract("SPY", "2025-07-18", 450.0, Right.CALL)


def _signal(strategy: str = "moc_imbalance", bid: float = 2.0, ask: float = 2.1, confidence: int = 80) -> Signal:
    return Signal(
        ts_event=T0,
        ts_init=T0,
        signal_id="s1",
        strategy=strategy,
        symbol="SPY",
        direction=Direction.BULLISH,
        contract=_contract(),
        confidence=confidence,
        reference_bid=bid,
        reference_ask=ask,
        reason="flow asymmetry 68% and dark/lit divergence 12%",
        inputs={},
        origin_ts_init=T0,
    )


def test_pre_trade_review_is_advisory_with_model_and_rule_flags() -> None:
    async def body(twin: AnthropicTwin) -> None:
        rig = Rig(twin.base_url)
        assert rig.narrator.needs_review(_signal()) and not rig.narrator.needs_review(_signal("zero_dte_gamma"))
        clean = await rig.narrator.review_signal(_signal())
        assert (clean.red_flag, clean.source) == (False, "model")
        twin.add_rule(r"dark/lit", "REVIEW: RED FLAG - earnings tomorrow")
        flagged = await rig.narrator.review_signal(_signal())
        assert flagged.red_flag and "earnings tomorrow" in flagged.note
        keyless = Rig(None, env_key=None)
        wide = await keyless.narrator.review_signal(_signal(bid=1.0, ask=1.5, confidence=30))
        assert wide.red_flag and wide.source == "rules" and "spread" in wide.note and "confidence 30" in wide.note

    with_twin(body)


def test_fill_explanation_from_model_or_template() -> None:
    fill = Fill(
        ts_event=T0,
        ts_init=T0,
        exec_id="e1",
        order_ref="o1",
        contract=_contract(),
        side=Side.BUY,
        quantity=3,
        price=2.05,
        commission=1.95,
        strategy="moc_imbalance",
    )

    async def body(twin: AnthropicTwin) -> None:
        model = await Rig(twin.base_url).narrator.explain_fill(fill, _signal())
        assert model.source == "model" and "SPY 2025-07-18 450.00 C" in model.text
        twin.inject_fault("api_error")
        template = await Rig(twin.base_url).narrator.explain_fill(fill, _signal())
        assert template.source == "template"
        assert template.text.startswith("We bought 3 SPY 2025-07-18 450.00 C at $2.05 because flow asymmetry")
        assert "$615.00" in template.text

    with_twin(body)
