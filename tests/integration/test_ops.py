"""Distribution tiers, the admin bot and the overseer wired into a running system, on the loopback twins.

One session (the twins in this process, the actors under the RootSupervisor) proves, through the
real python-telegram-bot / discord.py / anthropic clients:
- a publisher killed mid-batch (held between two sends by its drill) is restarted and every fill
  reaches each channel/tier exactly once;
- the overseer (every ``check_interval_s`` of simulated time) escalates a stale source through the
  scripted Anthropic twin to CRITICAL and the risk gate goes HALTED within two check periods;
- the admin bot: a stranger changes nothing, ``/resume`` acts through the risk gate, ``/halt`` and
  ``/flatten`` do nothing until their Confirm button, the HALTED state survives a risk-actor restart
  and a confirmed flatten leaves trading HALTED.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import ray
import redis

from actors.common import RISK, publisher_name
from actors.ops_control import ADMIN, OVERSEER
from quanticity import keys
from quanticity.admin.controller import NOT_AUTHORISED
from quanticity.distribution.templates import ref_of
from quanticity.execution.store import ExecutionStore
from quanticity.observability.metrics import read_heartbeats
from supervisors.launch import start_system, stop_system, wait_until_done
from supervisors.twins import ADMIN_CHAT_ID, ADMIN_USER_ID, DISCORD_CHANNELS, TELEGRAM_CHATS, LoopbackTwins
from tests.system_harness import session_spec, system_config, wait_for

pytestmark = pytest.mark.integration

STRANGER = 999_001
CHECK_S = 30.0
STALE_AFTER_S = 600.0


def _state(config) -> str:  # noqa: ANN001
    risk = ray.get_actor(RISK, namespace=config.system.system.namespace)
    return ray.get(risk.trading_state.remote(), timeout=30)


def _replies(twins: LoopbackTwins, chat: int) -> list[str]:
    return [m["text"] for m in twins.telegram.sent_messages(chat)]


def test_twins_admin_and_overseer_in_a_running_system(
    ray_session: None,
    redis_client: redis.Redis,
    embedded_redis,
    tmp_path: Path,  # noqa: ANN001
) -> None:
    twins = LoopbackTwins(tmp_path / "watch")
    twins.start()
    # the scripted model escalates a stale-source finding (a WARNING by the rules) to CRITICAL
    twins.anthropic.add_rule("staleness", "VERDICT: CRITICAL")
    ops = {
        "overseer_enabled": True,
        "admin_enabled": True,
        "overseer": {
            "check_interval_s": CHECK_S,
            # only the staleness path here: wall-time latency and sim exit slippage are not this test's subject
            "slippage": {"warn_floor": 1e9, "critical_at": None},
            "latency": {"warn_floor": 1e9, "critical_at": None},
            "staleness": {
                "uw_spot_gex": {"warn_after_s": STALE_AFTER_S, "critical_after_s": None, "enabled": True},
                "uw_flow_alerts": {"warn_after_s": 120, "enabled": False},
                "uw_chains": {"warn_after_s": 180, "enabled": False},
            },
            "uw_without_fetcher": True,  # venue sim has no fetcher: the never-refreshed UW key is the stale source
        },
    }
    config = system_config(tmp_path, ops=ops, extra=twins.overrides(str(tmp_path / "channels")))
    spec = session_spec(config, minutes=20)
    supervisor = start_system(config, spec, embedded_redis.url, env=twins.env())
    namespace = config.system.system.namespace
    try:
        # --- a publisher killed mid-batch, between two sends (its drill holds it there) -------------
        wait_for(lambda: twins.telegram.sent_messages(TELEGRAM_CHATS["premium"]), 300, "a first premium message")
        tg_publisher = ray.get_actor(publisher_name("telegram"), namespace=namespace)
        ray.get(tg_publisher.drill_pause_after.remote(1), timeout=30)
        held: dict[str, int] = {}

        def publisher_held() -> bool:
            held.update(ray.get(tg_publisher.drill_paused.remote(), timeout=30) or {})
            return bool(held)

        wait_for(publisher_held, 300, "the drill to hold the telegram publisher between two sends")
        assert held["inflight"] == 0 and held["due"] >= 1, held  # messages owed, none of unknown outcome
        ray.kill(tg_publisher, no_restart=True)
        wait_until_done(config, timeout_s=300)

        # --- the overseer halted trading through the risk gate, within two check periods --------
        wait_for(lambda: _state(config) == "HALTED", 60, "the overseer's halt")
        alerts = [f for _, f in redis_client.xrange(keys.ALERTS) if f.get("source") == "overseer"]
        critical = [f for f in alerts if f["level"] == "CRITICAL"]
        assert critical and "staleness" in critical[0]["text"] and "HALTED" in critical[0]["text"], alerts
        # on time, judged on the overseer's own round log (simulated time), not on when the alert was
        # written: an unpaced clock runs on while a round waits for the model, by as much as the machine
        # is loaded. The first round past the threshold halted, through the model; none before it acted.
        rounds = ray.get(ray.get_actor(OVERSEER, namespace=namespace).round_log.remote())
        since_s = max(0.0, read_heartbeats(redis_client)[OVERSEER]["watching_since_s"])  # never seen: stale from here
        due = [r for r in rounds if r["at_s"] >= since_s + STALE_AFTER_S + 1]
        assert due, rounds
        assert (due[0]["action"], due[0]["source"]) == ("halt", "model"), rounds
        assert all(r["action"] == "none" for r in rounds if r["at_s"] < since_s + STALE_AFTER_S - 1), rounds
        wait_for(lambda: any("CRITICAL" in t for t in _replies(twins, ADMIN_CHAT_ID)), 30, "the alert push")

        # --- every fill on every channel/tier exactly once --------------------------------------
        fills = ExecutionStore(redis_client).fills()
        assert fills
        ray.get(supervisor.check_children.remote())
        wait_for(lambda: redis_client.get(keys.publisher_cursor("telegram")) is not None, 30, "the restarted publisher")

        local_log = tmp_path / "channels" / "local-premium.log"

        def delivered() -> bool:
            counts = twins.channel_counts()
            return counts["telegram/premium"] == counts["discord/premium"] == len(local_log.read_text().splitlines())

        try:
            wait_for(delivered, 60, "premium on both platforms")
        except AssertionError as exc:
            lines = len(local_log.read_text().splitlines())
            beats = {k: v for k, v in read_heartbeats(redis_client).items() if "publisher" in k}
            raise AssertionError(
                f"{twins.channel_counts()} local {lines} fills {len(fills)} {beats} {twins.discord.calls[-30:]}"
            ) from exc
        for tier, chat in TELEGRAM_CHATS.items():
            refs = Counter(
                m["text"].rsplit("ref ", 1)[-1].removesuffix("</i>") for m in twins.telegram.sent_messages(chat)
            )
            assert not [r for r, n in refs.items() if n > 1], f"telegram {tier} duplicated: {refs}"
            if tier == "premium":  # every fill's alert, exactly once
                assert {ref_of(f"{f.exec_id}:premium") for f in fills} <= set(refs), refs
        unclean = [
            a
            for _, a in redis_client.xrange(keys.DISTRIBUTION_AUDIT)
            if a["channel"] == "telegram" and a["outcome"] not in ("sent", "retry")
        ]
        assert unclean == [], unclean  # the kill left nothing of unknown outcome: no recovery, no resend
        for tier, channel in DISCORD_CHANNELS.items():
            contents = [m.get("content") or str(m.get("embeds")) for m in twins.discord_messages(channel)]
            assert not [t for t, n in Counter(contents).items() if n > 1], f"discord {tier} duplicated"
        assert int(redis_client.hget(keys.RESTARTS, publisher_name("telegram")) or 0) >= 1
        assert (tmp_path / "watch" / f"telegram-{TELEGRAM_CHATS['premium']}.log").exists()

        # --- admin through the real python-telegram-bot ----------------------------------------
        before = len(_replies(twins, ADMIN_CHAT_ID))
        twins.telegram.inject_message(STRANGER, ADMIN_CHAT_ID, "/resume")
        wait_for(lambda: len(_replies(twins, ADMIN_CHAT_ID)) > before, 30, "the refusal")
        assert _replies(twins, ADMIN_CHAT_ID)[-1] == NOT_AUTHORISED and _state(config) == "HALTED"

        def command(text: str) -> str:
            count = len(_replies(twins, ADMIN_CHAT_ID))
            twins.telegram.inject_message(ADMIN_USER_ID, ADMIN_CHAT_ID, text)
            wait_for(lambda: len(_replies(twins, ADMIN_CHAT_ID)) > count, 60, f"the reply to {text}")
            return "\n".join(_replies(twins, ADMIN_CHAT_ID)[count:])  # the reply (and any alert pushed meanwhile)

        def confirm(what: str) -> str:
            """Press Confirm on the last question; the text the settled message was edited to."""
            question = next(m for m in reversed(twins.telegram.sent_messages(ADMIN_CHAT_ID)) if "reply_markup" in m)
            data = question["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
            edits = len(twins.telegram.edits)
            twins.telegram.inject_callback(ADMIN_USER_ID, ADMIN_CHAT_ID, question["message_id"], data)
            try:
                wait_for(lambda: len(twins.telegram.edits) > edits, 120, f"the settled {what}")
            except AssertionError as exc:
                audit = [f for _, f in redis_client.xrange(keys.ADMIN_AUDIT)][-3:]
                raise AssertionError(f"{twins.telegram.callback_answers} {audit}") from exc
            return twins.telegram.edits[-1]["text"]

        assert "ACTIVE" in command("/resume") and _state(config) == "ACTIVE"
        assert "Confirm" in command("/halt drill")
        assert "drill" not in redis_client.hget(keys.TRADING_STATE, "reason")  # nothing before the button
        assert "HALTED" in confirm("halt") and _state(config) == "HALTED"
        ray.kill(ray.get_actor(RISK, namespace=namespace), no_restart=True)
        wait_for(lambda: ray.get(supervisor.check_children.remote()).get(RISK) == "ok", 60, "the risk restart")
        assert _state(config) == "HALTED"  # persisted before it took effect

        assert "Confirm" in command("/flatten")
        assert redis_client.xlen(keys.EMERGENCY_EVENTS) == 0  # nothing happens before the button
        flattened = confirm("flatten")
        assert "Flatten sent. Trading HALTED" in flattened, flattened  # the emergency path's state, not lowered
        assert redis_client.xlen(keys.EMERGENCY_EVENTS) > 0 and _state(config) == "HALTED"

        ray.get(supervisor.check_children.remote())
        beats = read_heartbeats(redis_client)
        assert beats[OVERSEER]["checks"] >= 2 and beats[OVERSEER]["model_calls"] >= 1
        assert beats[ADMIN]["refused"] >= 1 and beats[ADMIN]["bot_running"] == 1
    finally:
        stop_system(supervisor)
        twins.stop()
