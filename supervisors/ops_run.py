"""The embedded run's operations side: the loopback twins, and what the channels, overseer and admin did.

``quanticity run`` (simulated venue) starts the Telegram, Discord and Anthropic twins on 127.0.0.1
(:class:`~supervisors.twins.LoopbackTwins`), reloads the config with the twins' channels, admin bot
and model URL, and hands the twins' credentials to the actors that read them; at the end it prints
messages per channel/tier (from the twins' records and the publishers' heartbeats), the overseer's
checks, findings, model calls and fallbacks, and the admin's actions. A live run (``--live``) uses
the configured platforms and real secrets instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from actors.common import publisher_name
from actors.ops_control import ADMIN, OVERSEER
from quanticity.config import QuanticityConfig, load_config
from quanticity.config.loader import deep_merge
from supervisors.twins import ADMIN_CHAT_ID, ADMIN_USER_ID, LoopbackTwins

TWINS_FILE = Path("var/twins.json")
"""Where a running embedded session says where its twins listen (for ``python -m supervisors.ops_run``)."""
REPLY_TIMEOUT_S = 30.0


class EmbeddedTwins(LoopbackTwins):
    """The twins of one embedded session; stopping them also removes :data:`TWINS_FILE`."""

    def stop(self) -> None:
        """Stop the servers and forget where they listened."""
        super().stop()
        TWINS_FILE.unlink(missing_ok=True)


def embedded_twins(
    config: QuanticityConfig, args: argparse.Namespace, run_dir: Path
) -> tuple[LoopbackTwins | None, QuanticityConfig, dict[str, str] | None]:
    """Start the twins for a simulated run; returns them, the config pointing at them and the actors' env.

    A live run gets ``(None, config, None)``: its channels and secrets are the real ones.
    """
    if getattr(args, "live", False):
        return None, config, None
    channels_dir = run_dir / "channels"
    twins = EmbeddedTwins(channels_dir)
    twins.start()
    TWINS_FILE.parent.mkdir(parents=True, exist_ok=True)
    TWINS_FILE.write_text(
        json.dumps(
            {
                "telegram": twins.telegram.base_url,
                "discord": twins.discord.base_url,
                "anthropic": twins.anthropic.base_url,
                "admin_user_id": ADMIN_USER_ID,
                "admin_chat_id": ADMIN_CHAT_ID,
                "watch_dir": str(channels_dir.resolve()),
            }
        )
    )
    overrides = deep_merge(dict(getattr(args, "config_overrides", {}) or {}), twins.overrides(str(channels_dir)))
    return twins, load_config(args.config_dir, overrides=overrides), twins.env()


def print_ops_summary(
    console: Console, beats: dict[str, dict[str, float]], config: QuanticityConfig, twins: LoopbackTwins | None
) -> None:
    """Messages per channel/tier, overseer and admin figures, and how to watch / talk to the bot."""
    table = Table(title="Channels, overseer, admin")
    for column in ("what", "figures"):
        table.add_column(column)
    received = twins.channel_counts() if twins is not None else {}
    for channel, spec in config.distribution.channels.items():
        beat = beats.get(publisher_name(channel), {})
        tiers = ", ".join(f"{t} {received.get(f'{spec.kind}/{t}', '-')}" for t in spec.tiers) if twins else ""
        table.add_row(
            f"channel {channel} ({spec.kind})",
            f"sent {int(beat.get('sent', 0))}, retried {int(beat.get('retried', 0))}, "
            f"dead-lettered {int(beat.get('dead_lettered', 0))}" + (f" | on the twin: {tiers}" if tiers else ""),
        )
    overseer = beats.get(OVERSEER)
    if overseer is not None:
        table.add_row(
            "overseer",
            f"checks {int(overseer.get('checks', 0))}, findings {int(overseer.get('findings', 0))}, "
            f"model calls {int(overseer.get('model_calls', 0))}, fallbacks {int(overseer.get('fallbacks', 0))}, "
            f"halts {int(overseer.get('halts', 0))}, alerts {int(overseer.get('alerts', 0))}",
        )
    admin = beats.get(ADMIN)
    if admin is not None:
        table.add_row(
            "admin bot",
            f"running {bool(admin.get('bot_running'))}, commands {int(admin.get('commands', 0))}, "
            f"buttons {int(admin.get('callbacks', 0))}, refused {int(admin.get('refused', 0))}, "
            f"alerts pushed {int(admin.get('alerts_pushed', 0))}",
        )
    if twins is not None and twins.watch_dir is not None:
        table.add_row("watch the channels", f"tail -f {twins.watch_dir.resolve()}/*.log")
        table.add_row(
            "admin (twin)", f"user {ADMIN_USER_ID}, chat {ADMIN_CHAT_ID}; replies in telegram-{ADMIN_CHAT_ID}.log"
        )
    console.print(table)


def _request(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(json.loads(response.read()))


def _twins() -> dict[str, Any]:
    if not TWINS_FILE.exists():
        raise RuntimeError(f"{TWINS_FILE} missing: is `quanticity run` (simulated venue) running?")
    return dict(json.loads(TWINS_FILE.read_text()))


def _wait_for_more(read: Callable[[], list[dict[str, Any]]], before: int, what: str, timeout_s: float) -> list[dict]:
    """Poll ``read`` until it holds more than ``before`` entries; the new ones (a short settle for stragglers)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(read()) > before:
            time.sleep(0.3)  # a command may answer with more than one message (an alert pushed meanwhile)
            return read()[before:]
        time.sleep(0.1)
    raise TimeoutError(f"no reply to {what} within {timeout_s} s")


def talk_to_admin_bot(
    text: str, user_id: int | None = None, timeout_s: float = REPLY_TIMEOUT_S, press: str | None = None
) -> list[str]:
    """Send ``text`` as the twin admin (or ``user_id``) to the running session's bot; returns its replies.

    With ``press`` (a button label such as ``Confirm`` or ``Cancel``), the button of the bot's answer
    whose label contains it is pressed by the same user, and the bot's answer to the press (the edit
    of the question, or a new message) is returned too — how ``/halt`` and ``/flatten`` are confirmed.
    """
    twins = _twins()
    base, chat = twins["telegram"], twins["admin_chat_id"]
    sender = user_id or twins["admin_user_id"]

    def messages() -> list[dict[str, Any]]:
        return list(_request(f"{base}/_twin/messages?chat_id={chat}")["result"])

    before = len(messages())
    _request(f"{base}/_twin/inject", {"user_id": sender, "chat_id": chat, "text": text})
    replies = _wait_for_more(messages, before, repr(text), timeout_s)
    out = [m["text"] for m in replies]
    if press is None:
        return out
    button = next(
        (
            (message, b)
            for message in reversed(replies)
            for row in (message.get("reply_markup") or {}).get("inline_keyboard", [])
            for b in row
            if press.lower() in str(b.get("text", "")).lower()
        ),
        None,
    )
    if button is None:
        raise RuntimeError(f"press: no button labelled {press!r} in the reply to {text!r}")
    message, chosen = button

    def answers() -> list[dict[str, Any]]:
        edits = _request(f"{base}/_twin/edits?chat_id={chat}")["result"]
        return [*edits, *messages()]

    seen = len(answers())
    _request(
        f"{base}/_twin/press",
        {"user_id": sender, "chat_id": chat, "message_id": message["message_id"], "data": chosen["callback_data"]},
    )
    after = _wait_for_more(answers, seen, f"the {chosen['text']!r} press", timeout_s)
    return [*out, *(m["text"] for m in after)]


def command_admin(text: str, user_id: int | None = None, press: str | None = None) -> int:
    """Send ``text`` to the running session's admin bot (pressing ``press`` on its answer); print the replies."""
    try:
        replies = talk_to_admin_bot(text, user_id, press=press)
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n---\n".join(replies))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m supervisors.ops_run "/status"``: talk to the admin bot of the running session via its twin."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("text", help='a command such as "/status", "/halt drill", "/pnl"')
    parser.add_argument("--user-id", type=int, default=None, help="send as this Telegram user id (default: the admin)")
    parser.add_argument(
        "--press", default=None, help="then press the answer's button with this label (Confirm, Cancel)"
    )
    args = parser.parse_args(argv)
    return command_admin(args.text, args.user_id, args.press)


if __name__ == "__main__":
    sys.exit(main())
