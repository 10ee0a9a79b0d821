"""Discord through discord.py: embeds via the tier's webhook, follow-ups in a thread of the original.

Pointing discord.py elsewhere: every URL the library builds is ``discord.http.Route.BASE`` plus
a path, so :func:`use_api_base` sets that class attribute (process-wide, once, before any
request) to e.g. ``http://127.0.0.1:PORT/api/v10``; webhooks are built with the public
``discord.Webhook.partial(id, token, session=...)`` (``Webhook.from_url`` only accepts
discord.com URLs). The bot side is a ``discord.Client`` that only logs in over HTTP
(``Client.login``: ``GET /users/@me``) — no gateway connection is needed to fetch a channel,
start a thread from a message and read recent history.

Follow-ups: Discord cannot reply to a webhook message in place, so the first follow-up of an
alert starts a thread from it (the thread's id is the message's id; "already exists", code
160004, means another attempt started it) and every follow-up is posted into that thread.

Unknown outcomes (timeouts, dropped connections, 5xx after discord.py's own retries) are checked
with the bot: the channel's (or thread's) recent messages are searched for the delivery's
``ref`` (in every embed footer), so a message that did land is recorded, not posted twice.
"""

from __future__ import annotations

import re

import aiohttp
import discord
from discord.http import Route

from quanticity.distribution.pacing import credential_digest
from quanticity.distribution.schedule import Delivery
from quanticity.distribution.senders.base import (
    Check,
    PermanentError,
    Posted,
    Sender,
    TransientError,
    UnknownOutcome,
)

_WEBHOOK_URL = re.compile(r"^(?P<base>https?://[^/]+/api)(?:/v\d+)?/webhooks/(?P<id>\d+)/(?P<token>[A-Za-z0-9._-]+)$")
THREAD_EXISTS = 160004
HISTORY_LIMIT = 50


def use_api_base(base: str) -> None:
    """Make discord.py talk to ``base`` (``scheme://host[:port]/api/v10``); refuses a second, different base."""
    base = base.rstrip("/")
    if not re.match(r"^https?://[^/]+/api/v10$", base):
        raise ValueError(f"api_base: {base!r} must look like http(s)://host[:port]/api/v10")
    current = Route.BASE
    if current != base and current != "https://discord.com/api/v10":
        raise ValueError(f"api_base: {base!r} conflicts with {current!r} already in use in this process")
    Route.BASE = base


def parse_webhook_url(url: str) -> tuple[str, int, str]:
    """``(api base, webhook id, token)`` of a webhook URL; errors name the offending value's shape."""
    match = _WEBHOOK_URL.match(url.strip())
    if match is None:
        raise ValueError("webhook url: not of the form https://host/api/webhooks/<id>/<token>")
    return match["base"] + "/v10", int(match["id"]), match["token"]


class DiscordSender(Sender):
    """Posts each tier through its webhook (or the bot, for a tier without one).

    ``webhooks``: tier → webhook URL; ``channels``: tier → text channel id (the channel the
    tier's webhook posts into: needed to start threads and to check unknown outcomes).
    """

    platform = "discord"

    def __init__(
        self,
        webhooks: dict[str, str],
        channels: dict[str, int],
        *,
        bot_token: str | None = None,
        api_base: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.webhook_urls = dict(webhooks)
        self.channels = dict(channels)
        self.bot_token = bot_token
        self.timeout_s = timeout_s
        bases = {parse_webhook_url(url)[0] for url in self.webhook_urls.values()}
        if api_base:
            bases.add(api_base.rstrip("/"))
        if len(bases) > 1:
            raise ValueError(f"webhook urls and api_base point at different servers: {sorted(bases)}")
        self.api_base = bases.pop() if bases else None
        self.session: aiohttp.ClientSession | None = None
        self.client: discord.Client | None = None
        self.webhooks: dict[str, discord.Webhook] = {}
        self._channel_objects: dict[int, discord.abc.Messageable] = {}
        self._threads: dict[str, int] = {}  # parent message id → thread id (after a restart: code 160004)
        hooks = sorted(str(parse_webhook_url(url)[1]) for url in self.webhook_urls.values())
        self._credential = credential_digest(bot_token) if bot_token else credential_digest("webhooks", *hooks)

    @property
    def rate_credential(self) -> str:
        """Digest of the bot token — every channel of one bot shares its budget — else of the webhooks."""
        return self._credential

    async def start(self) -> None:
        if self.session is not None:
            return
        if self.api_base and self.api_base != "https://discord.com/api/v10":
            use_api_base(self.api_base)
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        for tier, url in self.webhook_urls.items():
            _, webhook_id, token = parse_webhook_url(url)
            self.webhooks[tier] = discord.Webhook.partial(webhook_id, token, session=self.session)
        if self.bot_token:
            self.client = discord.Client(intents=discord.Intents.none())
            await self.client.login(self.bot_token)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None
        if self.session is not None:
            await self.session.close()
            self.session = None

    # --- sending --------------------------------------------------------------------------------
    async def send(self, delivery: Delivery, parent: Posted | None) -> Posted:
        embed = discord.Embed.from_dict(delivery.embed)
        try:
            thread_id = await self._thread_for(parent) if parent is not None else None
            webhook = self.webhooks.get(delivery.tier)
            if webhook is not None:
                thread = discord.Object(id=thread_id) if thread_id is not None else discord.utils.MISSING
                message = await webhook.send(embed=embed, wait=True, thread=thread)
            else:
                target = thread_id if thread_id is not None else self._channel_id(delivery.tier)
                message = await self._bot().get_partial_messageable(target).send(embed=embed)
        except discord.RateLimited as exc:
            raise TransientError(f"discord rate limited: {exc}", exc.retry_after) from exc
        except discord.DiscordServerError as exc:
            raise UnknownOutcome(f"discord {exc.status}: {exc.text}") from exc
        except discord.HTTPException as exc:
            if exc.status == 429:
                raise TransientError(f"discord 429: {exc.text}", _retry_after(exc)) from exc
            raise PermanentError(f"discord {exc.status} (code {exc.code}): {exc.text}") from exc
        except aiohttp.ClientConnectorError as exc:
            raise TransientError(f"discord unreachable: {exc}") from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise UnknownOutcome(f"discord {type(exc).__name__}: {exc}") from exc
        channel_id = str(thread_id) if thread_id is not None else str(message.channel.id)
        return Posted(
            message_id=str(message.id),
            chat_id=channel_id,
            thread_id=str(thread_id) if thread_id is not None else None,
        )

    def _bot(self) -> discord.Client:
        if self.client is None:
            raise PermanentError("discord: this needs the bot (token_env) but none is configured")
        return self.client

    def _channel_id(self, tier: str) -> int:
        try:
            return self.channels[tier]
        except KeyError:
            raise PermanentError(f"tier: {tier!r} has no Discord channel_id configured") from None

    async def _thread_for(self, parent: Posted) -> int:
        """The thread started from the parent message (started now if it does not exist yet)."""
        if parent.thread_id:
            return int(parent.thread_id)
        if parent.message_id in self._threads:
            return self._threads[parent.message_id]
        client = self._bot()
        channel_id = int(parent.chat_id)
        channel = self._channel_objects.get(channel_id)
        if channel is None:
            channel = await client.fetch_channel(channel_id)
            self._channel_objects[channel_id] = channel
        message = channel.get_partial_message(int(parent.message_id))
        try:
            thread = await message.create_thread(name="Updates", auto_archive_duration=1440)
        except discord.HTTPException as exc:
            if exc.code != THREAD_EXISTS:
                raise
            thread_id = int(parent.message_id)  # a thread started from a message has the message's id
        else:
            thread_id = thread.id
        self._threads[parent.message_id] = thread_id
        return thread_id

    # --- checking -------------------------------------------------------------------------------
    async def find_existing(self, delivery: Delivery, parent: Posted | None) -> Posted | Check:
        if self.client is None:
            return Check.UNCHECKABLE
        # a follow-up lives in the thread started from its parent (same id as the parent message)
        where = int(parent.thread_id or parent.message_id) if parent is not None else self._channel_id(delivery.tier)
        try:
            async for message in self.client.get_partial_messageable(where).history(limit=HISTORY_LIMIT):
                if any(delivery.ref in (embed.footer.text or "") for embed in message.embeds):
                    thread = str(where) if parent is not None else None
                    return Posted(message_id=str(message.id), chat_id=str(where), thread_id=thread)
        except discord.NotFound:
            return Check.NOT_FOUND  # the thread was never started, so nothing was posted in it
        except (discord.HTTPException, aiohttp.ClientError, TimeoutError) as exc:
            raise TransientError(f"discord history check failed: {exc}") from exc
        return Check.NOT_FOUND


def _retry_after(exc: discord.HTTPException) -> float | None:
    headers = getattr(exc.response, "headers", None) or {}
    for name in ("X-RateLimit-Reset-After", "Retry-After"):
        try:
            return float(headers[name])
        except (KeyError, TypeError, ValueError):
            continue
    return None
