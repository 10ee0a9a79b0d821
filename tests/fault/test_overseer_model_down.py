"""Fault: the model server hangs. The rules still alert on time, and every subscriber is served.

A paced session under the RootSupervisor with the Telegram/Discord/Anthropic twins, where every
request to the Anthropic twin hangs well past the overseer's timeout:

- a stale source (a WARNING by the rules) is pushed to the admin chat within one check period of
  crossing its threshold (plus the bounded model wait) and trading stays ACTIVE: a model that does
  not answer can neither escalate nor silence a rule;
- every position-opening fill gets its post-fill explanation from the template, in the premium
  thread of its entry alert, exactly once;
- after the last step the delayed tiers are still delivered (the clock runs on past the close):
  free gets every entry, basic every premium message except the premium-only explanations.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import ray
import redis

from actors.common import RISK
from actors.ops_control import OVERSEER
from quanticity import keys
from quanticity.execution.store import ExecutionStore
from quanticity.observability.metrics import read_heartbeats
from supervisors.launch import drain_deliveries, start_system, stop_system, wait_until_done, wait_until_quiet
from supervisors.twins import ADMIN_CHAT_ID, TELEGRAM_CHATS, LoopbackTwins
from tests.system_harness import session_spec, system_config, wait_for

pytestmark = pytest.mark.fault

SPEED = 15.0
CHECK_S = 30.0
STALE_AFTER_S = 90.0
MODEL_TIMEOUT_S = 0.8  # wall seconds: 12 simulated seconds at SPEED, under half a check period
MODEL_DELAY_S = 20.0  # the twin's reply delay: far beyond the timeout


def test_rules_alert_on_time_and_subscribers_are_served_while_the_model_hangs(
    ray_session: None,
    redis_client: redis.Redis,
    embedded_redis,  # noqa: ANN001
    tmp_path: Path,
) -> None:
    twins = LoopbackTwins(tmp_path / "watch")
    twins.start()
    twins.anthropic.inject_fault("slow", count=10_000, delay_s=MODEL_DELAY_S)
    ops = {
        "overseer_enabled": True,
        "admin_enabled": True,
        "overseer": {
            "check_interval_s": CHECK_S,
            "slippage": {"warn_floor": 1e9, "critical_at": None},
            "latency": {"warn_floor": 1e9, "critical_at": None},
            "staleness": {
                "uw_spot_gex": {"warn_after_s": STALE_AFTER_S, "critical_after_s": None, "enabled": True},
                "uw_flow_alerts": {"warn_after_s": 120, "enabled": False},
                "uw_chains": {"warn_after_s": 180, "enabled": False},
            },
            "uw_without_fetcher": True,  # venue sim has no fetcher: the never-refreshed UW key is the stale source
            "model": {"timeout_s": MODEL_TIMEOUT_S},
        },
    }
    config = system_config(tmp_path, ops=ops, extra=twins.overrides(str(tmp_path / "channels")))
    spec = session_spec(config, minutes=12, speed=SPEED, lead_s=8.0)
    supervisor = start_system(config, spec, embedded_redis.url, env=twins.env())
    try:
        wait_until_done(config, timeout_s=300)
        assert wait_until_quiet(redis_client, timeout_s=30)

        # --- the rule path alerted on time, the model neither escalated nor silenced it ----------
        alerts = [f for _, f in redis_client.xrange(keys.ALERTS) if f.get("source") == "overseer"]
        warnings = [f for f in alerts if f["level"] == "WARNING" and "staleness" in f["text"]]
        assert warnings, alerts
        # on time: the first round after the threshold alerted, by the rules, without waiting past the timeout
        overseer = ray.get_actor(OVERSEER, namespace=config.system.system.namespace)
        rounds = ray.get(overseer.round_log.remote())
        ray.get(supervisor.check_children.remote())
        since_s = max(0.0, read_heartbeats(redis_client)[OVERSEER]["watching_since_s"])  # never seen = stale from here
        due = [r for r in rounds if r["at_s"] >= since_s + STALE_AFTER_S + 1]
        assert due, rounds
        first = due[0]
        assert (first["action"], first["source"], first["fallback"]) == ("alert", "rules", "timeout"), rounds
        # the model wait is bounded: the round ended long before the twin's reply would have come (a
        # bound on wall time itself would measure this machine's load, not the timeout)
        assert first["wall_s"] < MODEL_DELAY_S / 2, first
        assert all(r["action"] == "none" for r in rounds if r["at_s"] < since_s + STALE_AFTER_S - 1), rounds
        assert not [f for f in alerts if f["level"] == "CRITICAL"]
        assert ray.get(ray.get_actor(RISK, namespace=config.system.system.namespace).trading_state.remote()) == (
            "ACTIVE"
        )
        wait_for(
            lambda: any("WARNING" in m["text"] for m in twins.telegram.sent_messages(ADMIN_CHAT_ID)),
            30,
            "the warning pushed to the admin chat",
        )

        # --- the delayed tiers go out after the close ---------------------------------------------
        assert drain_deliveries(config, spec, redis_client) == 0
        fills = ExecutionStore(redis_client).fills()
        assert fills, "the session traded nothing: nothing to explain"
        premium = twins.telegram.sent_messages(TELEGRAM_CHATS["premium"])
        entries = [m for m in premium if "✅ FILLED" in m["text"]]  # the twin keeps the HTML the bot sent
        explanations = [m for m in premium if "🧠 WHY THIS TRADE" in m["text"]]
        assert entries, [m["text"] for m in premium]
        # one explanation per entry, in that entry's thread, written by the template (no model)
        assert sorted(m["reply_to_message"]["message_id"] for m in explanations) == sorted(
            m["message_id"] for m in entries
        )
        assert all("We bought" in m["text"] for m in explanations)
        for tier, chat in TELEGRAM_CHATS.items():
            texts = [m["text"] for m in twins.telegram.sent_messages(chat)]
            assert not [t for t, n in Counter(texts).items() if n > 1], f"telegram {tier} duplicated"
        free = twins.telegram.sent_messages(TELEGRAM_CHATS["free"])
        basic = twins.telegram.sent_messages(TELEGRAM_CHATS["basic"])
        assert len(free) == len(entries)
        assert len(basic) == len(premium) - len(explanations)

        ray.get(supervisor.check_children.remote())
        beat = read_heartbeats(redis_client)[OVERSEER]
        assert beat["model_ok"] == 0 and beat["fallbacks"] >= 1 + len(entries)
        assert beat["explanations"] == len(entries)
    finally:
        stop_system(supervisor)
        twins.stop()
