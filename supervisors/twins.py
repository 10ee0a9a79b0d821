"""The loopback twins of Telegram, Discord and Anthropic for embedded runs and system tests.

``quanticity run`` (embedded profile) and the Ray tests start the three twins on 127.0.0.1 in
threads of the launching process and point the system at them: :meth:`LoopbackTwins.overrides`
adds a Discord and a Telegram channel with all three tiers (next to the local log), the admin bot
and the overseer's model base URL; :meth:`LoopbackTwins.env` holds the twin "secrets" (bot tokens,
webhook URLs, a model key) handed to the actors that read them. The production defaults in
``config/`` stay the real APIs. Every message a twin accepts is appended to
``<watch_dir>/telegram-<chat>.log`` / ``discord-<channel>.log`` — one file per platform, channel
and tier — so a person can ``tail -f`` them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quanticity.sim.anthropic_server import AnthropicTwin
from quanticity.sim.discord_server import DEFAULT_BOT_TOKEN, DiscordTwin
from quanticity.sim.telegram_server import DEFAULT_TOKEN, TelegramTwin

TIERS = ("premium", "basic", "free")
TELEGRAM_CHATS = {"premium": -1001000000001, "basic": -1001000000002, "free": -1001000000003}
DISCORD_CHANNELS = {"premium": 1100000000000000001, "basic": 1100000000000000002, "free": 1100000000000000003}
ADMIN_USER_ID = 424242
"""The twin admin's numeric Telegram user id (on the allow-list of embedded runs)."""
ADMIN_CHAT_ID = 424242
"""The admin's private chat with the bot (Telegram: a private chat's id is the user's id)."""
ANTHROPIC_TWIN_KEY = "sk-ant-twin-loopback-key"


class LoopbackTwins:
    """Starts, describes and stops the three twins."""

    def __init__(self, watch_dir: Path | str | None) -> None:
        self.watch_dir = Path(watch_dir) if watch_dir is not None else None
        self.telegram = TelegramTwin(log_dir=self.watch_dir)
        self.discord = DiscordTwin(log_dir=self.watch_dir)
        self.anthropic = AnthropicTwin(api_key=ANTHROPIC_TWIN_KEY)
        self._webhooks: dict[str, str] = {}
        self.started = False

    def start(self) -> None:
        """Serve all three from threads; create the Discord channels and their webhooks."""
        self.telegram.start_in_thread()
        self.discord.start_in_thread()
        self.anthropic.start_in_thread()
        for tier, channel in DISCORD_CHANNELS.items():
            self.discord.add_channel(channel, name=f"alerts-{tier}")
            self._webhooks[tier] = self.discord.create_webhook(channel, name=f"quanticity-{tier}")
        self.started = True

    def stop(self) -> None:
        """Stop the servers (the records stay readable)."""
        for twin in (self.telegram, self.discord, self.anthropic):
            twin.stop_thread()
        self.started = False

    def env(self) -> dict[str, str]:
        """The twins' credentials, as the environment variables the config names."""
        env = {
            "TELEGRAM_DISTRIBUTION_BOT_TOKEN": DEFAULT_TOKEN,
            "TELEGRAM_BOT_TOKEN": DEFAULT_TOKEN,
            "DISCORD_BOT_TOKEN": DEFAULT_BOT_TOKEN,
            "ANTHROPIC_API_KEY": ANTHROPIC_TWIN_KEY,
        }
        env.update({f"DISCORD_{tier.upper()}_WEBHOOK": url for tier, url in self._webhooks.items()})
        return env

    def overrides(self, log_dir: str, tiers: tuple[str, ...] = TIERS) -> dict[str, dict[str, Any]]:
        """Config overrides: local + Discord + Telegram channels, the admin bot and the model on the twins."""
        telegram = {
            "kind": "telegram",
            "tiers": list(tiers),
            "token_env": "TELEGRAM_DISTRIBUTION_BOT_TOKEN",
            "api_base": f"{self.telegram.base_url}/bot",
            "targets": {t: {"chat_id": TELEGRAM_CHATS[t]} for t in tiers},
        }
        discord = {
            "kind": "discord",
            "tiers": list(tiers),
            "token_env": "DISCORD_BOT_TOKEN",
            "api_base": f"{self.discord.base_url}/api/v10",
            "targets": {
                t: {"webhook_url_env": f"DISCORD_{t.upper()}_WEBHOOK", "channel_id": DISCORD_CHANNELS[t]} for t in tiers
            },
        }
        return {
            "distribution": {
                "log_dir": log_dir,
                "channels": {
                    "local": {"kind": "local", "tiers": ["premium"]},
                    "discord": discord,
                    "telegram": telegram,
                },
            },
            "ops": {
                "admin_api_base": self.telegram.base_url,
                "admin": {"allowed_user_ids": [ADMIN_USER_ID], "admin_chat_id": ADMIN_CHAT_ID},
                "overseer": {"model": {"base_url": self.anthropic.base_url}},
            },
        }

    def channel_counts(self) -> dict[str, int]:
        """Messages each twin channel/tier received, threads included: ``telegram/premium`` → n."""
        counts = {f"telegram/{t}": len(self.telegram.sent_messages(c)) for t, c in TELEGRAM_CHATS.items()}
        counts.update({f"discord/{t}": len(self.discord_messages(c)) for t, c in DISCORD_CHANNELS.items()})
        return counts

    def discord_messages(self, channel_id: int) -> list[dict[str, Any]]:
        """Messages of a Discord channel including its threads (follow-ups reply in the alert's thread)."""
        threads = [
            int(tid) for tid, t in list(self.discord.threads.items()) if str(t.get("parent_id")) == str(channel_id)
        ]
        messages = self.discord.messages(channel_id)
        for thread in threads:
            messages.extend(self.discord.messages(thread))
        return messages
