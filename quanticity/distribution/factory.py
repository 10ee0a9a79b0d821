"""Build a channel's sender from its config and the environment (where the secrets live).

Secrets are never in YAML: the config names environment variables (``token_env``,
``targets.<tier>.webhook_url_env``) and a missing or empty one fails here, at start, with the
channel and variable named — never at the first alert.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from quanticity.config.models import ChannelSpec, DistributionFile
from quanticity.distribution.senders.base import Sender
from quanticity.distribution.senders.discord import DiscordSender
from quanticity.distribution.senders.local import LocalSender
from quanticity.distribution.senders.telegram import TelegramSender


def _secret(environ: Mapping[str, str], channel: str, name: str) -> str:
    value = environ.get(name, "").strip()
    if not value:
        raise ValueError(f"channel {channel!r}: environment variable {name} is not set (see .env.example)")
    return value


def build_sender(
    channel: str, spec: ChannelSpec, distribution: DistributionFile, environ: Mapping[str, str] | None = None
) -> Sender:
    """The sender of ``channel`` (not started: the publisher starts it inside its event loop)."""
    environ = os.environ if environ is None else environ
    timeout = distribution.retry.send_timeout_s
    if spec.kind == "local":
        return LocalSender(distribution.log_dir, channel)
    if spec.kind == "telegram":
        token = _secret(environ, channel, spec.token_env or "")
        targets = {
            tier: (spec.targets[tier].chat_id, spec.targets[tier].message_thread_id)  # type: ignore[misc]
            for tier in spec.tiers
        }
        return TelegramSender(token, targets, base_url=spec.api_base, timeout_s=timeout)  # type: ignore[arg-type]
    webhooks = {
        tier: _secret(environ, channel, target.webhook_url_env)
        for tier, target in spec.targets.items()
        if tier in spec.tiers and target.webhook_url_env
    }
    channels = {tier: t.channel_id for tier, t in spec.targets.items() if tier in spec.tiers and t.channel_id}
    bot_token = _secret(environ, channel, spec.token_env) if spec.token_env else None
    return DiscordSender(webhooks, channels, bot_token=bot_token, api_base=spec.api_base, timeout_s=timeout)
