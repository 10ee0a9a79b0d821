"""Loopback twin of the Discord HTTP API v10, as discord.py 2.x uses it.

discord.py builds every URL from ``discord.http.Route.BASE`` (``https://discord.com/api/v10``);
:func:`quanticity.distribution.discord_sender.use_api_base` sets it to ``<twin>/api/v10`` and
webhooks are built with ``discord.Webhook.partial(id, token, session=...)``, so the real library
runs unchanged. Endpoints:

* ``POST /webhooks/{id}/{token}`` (``?wait=true``, ``?thread_id=``) — execute; returns the message;
* ``GET|PATCH /webhooks/{id}/{token}/messages/{message_id}`` — fetch / edit a webhook message;
* ``GET /webhooks/{id}/{token}`` — the webhook object;
* ``POST /channels/{id}/messages`` (bot) — ``nonce`` + ``enforce_nonce`` de-duplicate like Discord;
* ``GET /channels/{id}/messages?limit=&before=&after=`` (bot) — newest first;
* ``GET /channels/{id}`` (bot) — a guild text channel or a thread;
* ``POST /channels/{id}/messages/{message_id}/threads`` (bot) — the thread's id is the message's id
  (as on Discord); a second start answers 400 code 160004;
* ``GET /users/@me`` and ``GET /oauth2/applications/@me`` — what ``Client.login`` calls (no gateway).

Errors are the real JSON (``{"message": ..., "code": N}``); a 429 carries ``{"message": "You are
being rate limited.", "retry_after": s, "global": false}``, ``Retry-After``, ``X-RateLimit-*``
headers and ``Via`` (discord.py sleeps and retries only 429s that came through Discord's proxy;
``via=False`` on a fault models a Cloudflare ban, which discord.py raises at once).

Records: :meth:`DiscordTwin.messages` ``(channel_id)`` (threads are channels), :attr:`threads`,
:attr:`edits`, :attr:`calls`; faults via :attr:`faults` (:class:`~quanticity.sim.twin_common.FaultPlan`).

Run alone: ``python -m quanticity.sim.discord_server --port 8082 --channel 1100000000000000001``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from quanticity.sim.twin_common import FaultPlan, LoopbackServer, WatchLog, serve_forever

DISCORD_EPOCH_MS = 1_420_070_400_000
DEFAULT_BOT_TOKEN = "twin-bot-token.quanticity.loopback"
GUILD_ID = 1_000_000_000_000_000_001
MAX_CONTENT = 2000
MAX_EMBEDS = 10
_FAULTABLE = {"execute_webhook", "edit_webhook_message", "create_message", "start_thread"}


class DiscordApiError(Exception):
    """An error answer: HTTP status, Discord JSON error code and message."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class DiscordTwin(LoopbackServer):
    """In-memory Discord: one guild, text channels, webhooks, threads (see the module docstring)."""

    def __init__(self, *, bot_token: str = DEFAULT_BOT_TOKEN, log_dir: Path | str | None = None) -> None:
        super().__init__()
        self.bot_token = bot_token
        self.faults = FaultPlan()
        self.watch = WatchLog(log_dir, "discord")
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self._base_ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        self.bot_user = {
            "id": str(self._snowflake()),
            "username": "quanticity-twin",
            "discriminator": "0000",
            "global_name": None,
            "avatar": None,
            "bot": True,
            "flags": 0,
        }
        self._channels: dict[int, dict[str, Any]] = {}
        self._messages: dict[int, list[dict[str, Any]]] = {}
        self._webhooks: dict[int, dict[str, Any]] = {}
        self._nonces: dict[tuple[int, str], dict[str, Any]] = {}
        self.threads: dict[int, dict[str, Any]] = {}
        self.edits: list[dict[str, Any]] = []
        self.calls: list[tuple[str, int]] = []

    # --- set-up and records ---------------------------------------------------------------------
    def _snowflake(self) -> int:
        """Discord-style id: ms since the Discord epoch << 22, plus a sequence (17–20 digits)."""
        return (self._base_ms << 22) + next(self._seq)

    def add_channel(self, channel_id: int | None = None, name: str = "alerts") -> int:
        """Create a guild text channel; returns its id."""
        with self._lock:
            cid = channel_id if channel_id is not None else self._snowflake()
            self._channels[cid] = {
                "id": str(cid),
                "type": 0,
                "guild_id": str(GUILD_ID),
                "name": name,
                "position": len(self._channels),
                "permission_overwrites": [],
                "nsfw": False,
                "parent_id": None,
                "topic": None,
                "last_message_id": None,
                "rate_limit_per_user": 0,
                "flags": 0,
            }
            self._messages.setdefault(cid, [])
        return cid

    def create_webhook(self, channel_id: int, name: str = "Quanticity") -> str:
        """A webhook on ``channel_id`` (created when missing); returns its URL on this twin."""
        if channel_id not in self._channels:
            self.add_channel(channel_id)
        with self._lock:
            webhook_id = self._snowflake()
            token = hashlib.sha256(f"{webhook_id}:{name}".encode()).hexdigest()[:68]
            self._webhooks[webhook_id] = {
                "id": str(webhook_id),
                "type": 1,
                "token": token,
                "channel_id": str(channel_id),
                "guild_id": str(GUILD_ID),
                "name": name,
                "avatar": None,
                "application_id": None,
            }
        return f"{self.base_url}/api/webhooks/{webhook_id}/{token}"

    def messages(self, channel_id: int) -> list[dict[str, Any]]:
        """Messages in ``channel_id`` (a channel or a thread), oldest first, as last edited."""
        with self._lock:
            return [dict(m) for m in self._messages.get(int(channel_id), [])]

    # --- server ---------------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application()
        for version in ("v10", "v9"):
            base = f"/api/{version}"
            route = app.router.add_route
            route("POST", base + "/webhooks/{wid}/{token}", self._wrap("execute_webhook", self._execute_webhook))
            route("GET", base + "/webhooks/{wid}/{token}", self._wrap("get_webhook", self._get_webhook))
            route(
                "GET",
                base + "/webhooks/{wid}/{token}/messages/{mid}",
                self._wrap("get_webhook_message", self._get_webhook_message),
            )
            route(
                "PATCH",
                base + "/webhooks/{wid}/{token}/messages/{mid}",
                self._wrap("edit_webhook_message", self._edit_webhook_message),
            )
            route(
                "POST", base + "/channels/{cid}/messages", self._wrap("create_message", self._create_message, bot=True)
            )
            route("GET", base + "/channels/{cid}/messages", self._wrap("list_messages", self._list_messages, bot=True))
            route("GET", base + "/channels/{cid}", self._wrap("get_channel", self._get_channel, bot=True))
            route(
                "POST",
                base + "/channels/{cid}/messages/{mid}/threads",
                self._wrap("start_thread", self._start_thread, bot=True),
            )
            route("GET", base + "/users/@me", self._wrap("me", self._me, bot=True))
            route("GET", base + "/oauth2/applications/@me", self._wrap("application", self._application, bot=True))
        return app

    def _wrap(self, name: str, handler: Any, *, bot: bool = False) -> Any:
        async def endpoint(request: web.Request) -> web.Response:
            if bot and request.headers.get("Authorization") != f"Bot {self.bot_token}":
                return self._error(name, DiscordApiError(401, 0, "401: Unauthorized"))
            if name in _FAULTABLE:
                fault = self.faults.take(name)
                if fault is not None and fault.kind == "429":
                    return self._rate_limited(name, fault.retry_after)
                if fault is not None and fault.kind == "500":
                    return self._error(name, DiscordApiError(500, 0, "500: Internal Server Error"))
                if fault is not None:
                    await asyncio.sleep(fault.delay_s)
            try:
                body = await request.json() if request.can_read_body else {}
                if not isinstance(body, dict):
                    raise DiscordApiError(400, 50109, "The request body contains invalid JSON.")
                status, payload = handler(request, body)
            except json.JSONDecodeError:
                return self._error(name, DiscordApiError(400, 50109, "The request body contains invalid JSON."))
            except DiscordApiError as exc:
                return self._error(name, exc)
            self.calls.append((name, status))
            if status == 204:
                return web.Response(status=204, headers=_ok_headers(name))
            return _json_response(payload, status=status, headers=_ok_headers(name))

        return endpoint

    def _error(self, name: str, error: DiscordApiError) -> web.Response:
        self.calls.append((name, error.status))
        return _json_response({"message": error.message, "code": error.code}, status=error.status)

    def _rate_limited(self, name: str, retry_after: float) -> web.Response:
        self.calls.append((name, 429))
        headers = {
            "Retry-After": str(max(1, int(retry_after + 0.999))),
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
            "X-RateLimit-Reset-After": f"{retry_after:.3f}",
            "X-RateLimit-Bucket": hashlib.md5(name.encode()).hexdigest(),
            "X-RateLimit-Scope": "user",
            "Via": "1.1 google",
        }
        body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": False}
        return _json_response(body, status=429, headers=headers)

    # --- endpoints ------------------------------------------------------------------------------
    def _webhook(self, request: web.Request) -> dict[str, Any]:
        webhook = self._webhooks.get(_int(request.match_info["wid"]))
        if webhook is None or webhook["token"] != request.match_info["token"]:
            raise DiscordApiError(404, 10015, "Unknown Webhook")
        return webhook

    def _execute_webhook(self, request: web.Request, body: dict[str, Any]) -> tuple[int, Any]:
        webhook = self._webhook(request)
        channel_id = int(webhook["channel_id"])
        thread_id = request.query.get("thread_id")
        if thread_id is not None:
            thread = self.threads.get(_int(thread_id))
            if thread is None or int(thread["parent_id"]) != channel_id:
                raise DiscordApiError(400, 10003, "Unknown Channel")
            channel_id = _int(thread_id)
        author = {
            "id": webhook["id"],
            "username": body.get("username") or webhook["name"],
            "discriminator": "0000",
            "avatar": None,
            "bot": True,
        }
        message = self._post(channel_id, body, author, webhook_id=webhook["id"])
        wait = request.query.get("wait", "false").lower() in ("1", "true")
        return (200, message) if wait else (204, None)

    def _get_webhook(self, request: web.Request, body: dict[str, Any]) -> tuple[int, Any]:
        return 200, self._webhook(request)

    def _get_webhook_message(self, request: web.Request, body: dict[str, Any]) -> tuple[int, Any]:
        webhook = self._webhook(request)
        return 200, self._webhook_message(webhook, request)

    def _webhook_message(self, webhook: dict[str, Any], request: web.Request) -> dict[str, Any]:
        channel_id = _int(request.query.get("thread_id", webhook["channel_id"]))
        mid = _int(request.match_info["mid"])
        with self._lock:
            message = next((m for m in self._messages.get(channel_id, []) if int(m["id"]) == mid), None)
        if message is None or message.get("webhook_id") != webhook["id"]:
            raise DiscordApiError(404, 10008, "Unknown Message")
        return message

    def _edit_webhook_message(self, request: web.Request, body: dict[str, Any]) -> tuple[int, Any]:
        webhook = self._webhook(request)
        message = self._webhook_message(webhook, request)
        self._validate(body, partial=True)
        with self._lock:
            for field in ("content", "embeds", "components"):
                if field in body:
                    message[field] = body[field] if body[field] is not None else ([] if field != "content" else "")
            message["edited_timestamp"] = _iso_now()
            self.edits.append({"channel_id": int(message["channel_id"]), "message_id": int(message["id"]), **body})
        self.watch.append(message["channel_id"], f"#{message['id']} edited: {_summary(message)}")
        return 200, dict(message)

    def _create_message(self, request: web.Request, body: dict[str, Any]) -> tuple[int, Any]:
        channel_id = _int(request.match_info["cid"])
        if channel_id not in self._channels and channel_id not in self.threads:
            raise DiscordApiError(404, 10003, "Unknown Channel")
        nonce = body.get("nonce")
        if nonce is not None and body.get("enforce_nonce"):
            with self._lock:
                seen = self._nonces.get((channel_id, str(nonce)))
            if seen is not None:
                return 200, dict(seen)
        message = self._post(channel_id, body, self.bot_user, webhook_id=None)
        if nonce is not None:
            with self._lock:
                self._nonces[(channel_id, str(nonce))] = message
        return 200, message

    def _list_messages(self, request: web.Request, body: dict[str, Any]) -> tuple[int, Any]:
        channel_id = _int(request.match_info["cid"])
        if channel_id not in self._channels and channel_id not in self.threads:
            raise DiscordApiError(404, 10003, "Unknown Channel")
        limit = min(100, max(1, _int(request.query.get("limit", "50"))))
        before = request.query.get("before")
        after = request.query.get("after")
        with self._lock:
            items = list(self._messages.get(channel_id, []))
        if before is not None:
            items = [m for m in items if int(m["id"]) < _int(before)]
        if after is not None:
            items = [m for m in items if int(m["id"]) > _int(after)]
            return 200, [dict(m) for m in items[:limit]][::-1]
        return 200, [dict(m) for m in items[::-1][:limit]]

    def _get_channel(self, request: web.Request, body: dict[str, Any]) -> tuple[int, Any]:
        channel_id = _int(request.match_info["cid"])
        channel = self._channels.get(channel_id) or self.threads.get(channel_id)
        if channel is None:
            raise DiscordApiError(404, 10003, "Unknown Channel")
        return 200, channel

    def _start_thread(self, request: web.Request, body: dict[str, Any]) -> tuple[int, Any]:
        channel_id = _int(request.match_info["cid"])
        mid = _int(request.match_info["mid"])
        name = str(body.get("name") or "")
        if not 1 <= len(name) <= 100:
            raise DiscordApiError(400, 50035, "Invalid Form Body: name must be 1-100 characters")
        with self._lock:
            message = next((m for m in self._messages.get(channel_id, []) if int(m["id"]) == mid), None)
            if message is None:
                raise DiscordApiError(404, 10008, "Unknown Message")
            if mid in self.threads:
                raise DiscordApiError(400, 160004, "A thread has already been created for this message")
            thread = {
                "id": str(mid),
                "type": 11,
                "guild_id": str(GUILD_ID),
                "parent_id": str(channel_id),
                "owner_id": self.bot_user["id"],
                "name": name,
                "last_message_id": None,
                "message_count": 0,
                "member_count": 1,
                "rate_limit_per_user": 0,
                "flags": 0,
                "thread_metadata": {
                    "archived": False,
                    "auto_archive_duration": int(body.get("auto_archive_duration") or 1440),
                    "archive_timestamp": _iso_now(),
                    "locked": False,
                },
            }
            self.threads[mid] = thread
            self._messages.setdefault(mid, [])
            message["thread"] = thread
        self.watch.append(channel_id, f"#{mid} thread started: {name}")
        return 201, thread

    def _me(self, request: web.Request, body: dict[str, Any]) -> tuple[int, Any]:
        return 200, self.bot_user

    def _application(self, request: web.Request, body: dict[str, Any]) -> tuple[int, Any]:
        return 200, {
            "id": self.bot_user["id"],
            "name": "Quanticity",
            "icon": None,
            "description": "",
            "bot_public": False,
            "bot_require_code_grant": False,
            "owner": self.bot_user,
            "verify_key": "0" * 64,
            "flags": 0,
            "team": None,
        }

    # --- helpers --------------------------------------------------------------------------------
    def _validate(self, body: dict[str, Any], *, partial: bool = False) -> None:
        content = body.get("content") or ""
        embeds = body.get("embeds") or []
        if not isinstance(content, str) or not isinstance(embeds, list):
            raise DiscordApiError(400, 50035, "Invalid Form Body")
        if len(content) > MAX_CONTENT:
            raise DiscordApiError(400, 50035, "Invalid Form Body: content must be 2000 or fewer in length.")
        if len(embeds) > MAX_EMBEDS:
            raise DiscordApiError(400, 50035, "Invalid Form Body: embeds must be 10 or fewer in length.")
        total = 0
        for embed in embeds:
            if not isinstance(embed, dict):
                raise DiscordApiError(400, 50035, "Invalid Form Body: embed must be an object")
            if len(embed.get("title") or "") > 256 or len(embed.get("description") or "") > 4096:
                raise DiscordApiError(400, 50035, "Invalid Form Body: embed title ≤ 256, description ≤ 4096")
            total += len(embed.get("title") or "") + len(embed.get("description") or "")
            total += sum(len(f.get("name", "")) + len(f.get("value", "")) for f in embed.get("fields") or [])
            total += len((embed.get("footer") or {}).get("text", ""))
        if total > 6000:
            raise DiscordApiError(400, 50035, "Invalid Form Body: embeds exceed 6000 characters in total")
        if not partial and not content.strip() and not embeds:
            raise DiscordApiError(400, 50006, "Cannot send an empty message")
        rule = self.faults.poisoned(json.dumps(body, ensure_ascii=False))
        if rule is not None:
            raise DiscordApiError(rule.status, 50035, rule.description)

    def _post(self, channel_id: int, body: dict[str, Any], author: dict[str, Any], webhook_id: str | None) -> dict:
        self._validate(body)
        with self._lock:
            message_id = self._snowflake()
            message: dict[str, Any] = {
                "id": str(message_id),
                "channel_id": str(channel_id),
                "guild_id": str(GUILD_ID),
                "type": 0 if not body.get("message_reference") else 19,
                "content": body.get("content") or "",
                "author": author,
                "attachments": [],
                "embeds": body.get("embeds") or [],
                "mentions": [],
                "mention_roles": [],
                "pinned": False,
                "mention_everyone": False,
                "tts": bool(body.get("tts", False)),
                "timestamp": _iso_now(),
                "edited_timestamp": None,
                "flags": int(body.get("flags") or 0),
                "components": body.get("components") or [],
            }
            if webhook_id is not None:
                message["webhook_id"] = webhook_id
            if body.get("nonce") is not None:
                message["nonce"] = body["nonce"]
            if body.get("message_reference"):
                message["message_reference"] = body["message_reference"]
            self._messages.setdefault(channel_id, []).append(message)
            if channel_id in self._channels:
                self._channels[channel_id]["last_message_id"] = str(message_id)
            if channel_id in self.threads:
                self.threads[channel_id]["message_count"] += 1
                self.threads[channel_id]["last_message_id"] = str(message_id)
        self.watch.append(channel_id, f"#{message_id} {_summary(message)}")
        return dict(message)


def _json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """JSON with ``Content-Type: application/json`` exactly, as Discord sends it (discord.py compares the
    header verbatim and treats anything else — even ``; charset=utf-8`` — as text)."""
    return web.Response(
        body=json.dumps(payload).encode(),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def _int(raw: Any) -> int:
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise DiscordApiError(400, 50035, f"Invalid Form Body: {raw!r} is not snowflake.") from None


def _iso_now() -> str:
    return datetime.now(UTC).isoformat()


def _ok_headers(name: str) -> dict[str, str]:
    """Rate-limit headers of a successful call; a bucket never reported exhausted (discord.py would wait)."""
    return {
        "X-RateLimit-Limit": "5",
        "X-RateLimit-Remaining": "4",
        "X-RateLimit-Reset": f"{time.time() + 1:.3f}",
        "X-RateLimit-Reset-After": "1.000",
        "X-RateLimit-Bucket": hashlib.md5(name.encode()).hexdigest(),
    }


def _summary(message: dict[str, Any]) -> str:
    parts = [message.get("content") or ""]
    for embed in message.get("embeds") or []:
        parts.append(f"[{embed.get('title', '')}] {embed.get('description', '')}")
    return " ".join(p for p in parts if p)


def main(argv: list[str] | None = None) -> None:
    """Serve the twin until interrupted; ``--channel`` ids get a webhook each, printed at start."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--bot-token", default=DEFAULT_BOT_TOKEN)
    parser.add_argument("--channel", type=int, action="append", default=[], help="text channel id (repeatable)")
    parser.add_argument("--log-dir", default=None, help="append every accepted message to <dir>/discord-<channel>.log")
    args = parser.parse_args(argv)
    twin = DiscordTwin(bot_token=args.bot_token, log_dir=args.log_dir)
    twin.port = args.port  # so the printed webhook URLs carry the port before the server binds it
    for channel in args.channel:
        print(f"channel {channel}: webhook {twin.create_webhook(channel)}", flush=True)
    serve_forever(twin, args.port, "Discord API twin")


if __name__ == "__main__":
    main()
