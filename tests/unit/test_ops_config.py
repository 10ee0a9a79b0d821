"""config/ops.yaml (overseer + admin), the admin env merge, the overseer's UW keys, the twin overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.overseer import closed_trades
from quanticity.config import ConfigError, load_config
from quanticity.messages import Fill, OptionContract, Right, Side, encode
from quanticity.overseer.reader import staleness_sources
from quanticity.overseer.sources import load_source_file

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def test_ops_defaults_are_safe() -> None:
    config = load_config(environ={})
    ops = config.ops
    assert ops.overseer.check_interval_s == 30 and ops.overseer.model.base_url is None  # the real API
    assert ops.admin_api_base is None and ops.admin.allowed_user_ids == frozenset()
    # on by default: the overseer only watches them when a fetcher runs (venue.kind tws/live), and the
    # loader checks each threshold against its endpoint's fetch interval
    assert all(ops.overseer.staleness[s].enabled for s in ("uw_spot_gex", "uw_flow_alerts", "uw_chains"))
    assert ops.overseer.staleness["ibkr_heartbeat"].enabled


def test_admin_allow_list_from_the_environment() -> None:
    config = load_config(environ={"TELEGRAM_ADMIN_IDS": "11, 22", "TELEGRAM_ADMIN_CHAT": "-100"})
    assert config.ops.admin.allowed_user_ids == frozenset({11, 22}) and config.ops.admin.admin_chat_id == -100
    with pytest.raises(ConfigError, match=r"TELEGRAM_ADMIN_IDS: '@bob' is not a numeric Telegram user id"):
        load_config(environ={"TELEGRAM_ADMIN_IDS": "11,@bob"})


def test_bad_ops_values_name_file_key_and_value() -> None:
    with pytest.raises(ConfigError, match=r"ops\.yaml: overseer\.check_interval_s = 'soon'"):
        load_config(overrides={"ops": {"overseer": {"check_interval_s": "soon"}}}, environ={})
    with pytest.raises(ConfigError, match=r"ops\.yaml: admin_api_base = 'ftp://x'"):
        load_config(overrides={"ops": {"admin_api_base": "ftp://x"}}, environ={})
    with pytest.raises(ConfigError, match=r"ops\.yaml: admin\.bogus = 1: unknown key"):
        load_config(overrides={"ops": {"admin": {"bogus": 1}}}, environ={})


def test_overseer_reads_the_keys_the_uw_fetcher_writes() -> None:
    uw = load_source_file(REPO / "config" / "sources" / "unusual_whales.yaml")
    watched = {m.key("SPY") for m in staleness_sources(uw) if m.source.startswith("uw_")}
    assert watched == {"raw:uw:spot_exposures:SPY", "raw:uw:flow_alerts", "raw:uw:chains:SPY"}


def test_closed_trades_for_the_summary_skip_entries_and_malformed_records() -> None:
    contract = OptionContract("SPY", "2026-11-20", 450.0, Right.CALL)
    fill = Fill(
        ts_event=1,
        ts_init=1,
        exec_id="e1",
        order_ref="r1",
        contract=contract,
        side=Side.SELL,
        quantity=1,
        price=2.0,
        commission=0.65,
        strategy="s",
    )
    records = [
        ("1-0", {"fill": encode(fill).decode(), "realized": "0"}),  # an entry: nothing closed
        ("2-0", {"fill": encode(fill).decode(), "realized": "-12.5"}),
        ("3-0", {"fill": "{broken", "realized": "3"}),
    ]
    trades = closed_trades(records)
    assert [(t.label, t.pnl) for t in trades] == [("SPY 450C", -12.5)]


def test_twin_overrides_validate(tmp_path: Path) -> None:
    from supervisors.twins import LoopbackTwins

    twins = LoopbackTwins(tmp_path / "watch")
    twins.start()
    try:
        config = load_config(overrides=twins.overrides(str(tmp_path / "channels")), environ={})
        env = twins.env()
    finally:
        twins.stop()
    assert set(config.distribution.channels) == {"local", "discord", "telegram"}
    assert config.distribution.channels["telegram"].tiers == ["premium", "basic", "free"]
    assert config.ops.overseer.model.base_url and config.ops.admin_api_base
    assert {"DISCORD_PREMIUM_WEBHOOK", "TELEGRAM_BOT_TOKEN", "ANTHROPIC_API_KEY"} <= set(env)


def test_telegram_twin_control_endpoints_for_other_processes() -> None:
    import json
    import urllib.request

    from quanticity.sim.telegram_server import TelegramTwin

    twin = TelegramTwin()
    twin.start_in_thread()
    try:
        body = json.dumps({"user_id": 7, "chat_id": 7, "text": "/status"}).encode()
        request = urllib.request.Request(
            f"{twin.base_url}/_twin/inject", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.loads(response.read())["ok"]
        with urllib.request.urlopen(f"{twin.base_url}/_twin/messages?chat_id=7", timeout=5) as response:
            assert json.loads(response.read()) == {"ok": True, "result": []}  # only the bot's own messages
        bad = urllib.request.Request(
            f"{twin.base_url}/_twin/inject", data=b"{}", headers={"Content-Type": "application/json"}
        )
        with pytest.raises(urllib.error.HTTPError) as failure:
            urllib.request.urlopen(bad, timeout=5)
        assert failure.value.code == 400
    finally:
        twin.stop_thread()
