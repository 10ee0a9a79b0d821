"""Loopback twin of the Telegram Bot API (``/bot<token>/<method>``), for python-telegram-bot.

Point the real library at it with ``telegram.Bot(token, base_url=f"{twin.base_url}/bot")``.
python-telegram-bot posts every method as ``application/x-www-form-urlencoded`` where nested
values (``reply_markup``, ``reply_parameters``) are JSON strings; the twin also accepts JSON
bodies and query strings, as the real API does. Responses and errors have the real shape:
``{"ok": true, "result": ...}`` and ``{"ok": false, "error_code": 429, "description": ...,
"parameters": {"retry_after": N}}``.

Methods: getMe, getUpdates (long poll with ``offset``/``timeout``), sendMessage (``parse_mode``
HTML is validated like Telegram does, ``reply_to_message_id``/``reply_parameters``,
``message_thread_id``, inline keyboards), editMessageText, answerCallbackQuery, deleteWebhook,
getWebhookInfo, setMyCommands. Unknown methods answer 404 like the real API.

The API other components build on (tests of the admin control and the overseer use it):

* :meth:`TelegramTwin.inject_message` ``(user_id, chat_id, text)`` — an incoming text message
  from a numeric user id (``/commands`` carry a ``bot_command`` entity, so ``CommandHandler``
  matches); returns the update id.
* :meth:`TelegramTwin.inject_callback` ``(user_id, chat_id, message_id, data)`` — an inline
  button press on a message the bot sent; returns the callback query id.
* :meth:`TelegramTwin.sent_messages` ``(chat_id)`` — every message the bot sent to that chat, as
  the Message objects the API returned (plus ``reply_markup`` when one was sent).
* :attr:`TelegramTwin.edits` — every accepted editMessageText call (chat_id, message_id, text).
* :attr:`TelegramTwin.callback_answers` — every accepted answerCallbackQuery call.
* ``POST /_twin/inject`` ``{"user_id", "chat_id", "text"}``, ``POST /_twin/press`` ``{"user_id",
  "chat_id", "message_id", "data"}``, ``GET /_twin/messages?chat_id=`` and ``GET /_twin/edits?chat_id=``
  — the same from another process (``quanticity admin "/status"`` talks to the admin bot this way,
  and ``quanticity admin --press Confirm "/halt drill"`` presses the button the bot answered with).
* :attr:`TelegramTwin.faults` — :class:`~quanticity.sim.twin_common.FaultPlan` (next N calls 429
  / 500 / slow; poison texts that always fail).

Run alone: ``python -m quanticity.sim.telegram_server --port 8081 --token 123:ABC``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import threading
import time
import zlib
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from aiohttp import web

from quanticity.sim.twin_common import FaultPlan, LoopbackServer, WatchLog, serve_forever

DEFAULT_TOKEN = "123456789:TEST-token_for-the-loopback-twin"
MAX_TEXT = 4096
_TOKEN = re.compile(r"^\d+:[A-Za-z0-9_-]{10,}$")
_JSON_FIELDS = {"reply_markup", "reply_parameters", "entities", "link_preview_options", "allowed_updates", "commands"}
_ALLOWED_TAGS = {
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "a",
    "code",
    "pre",
    "tg-spoiler",
    "span",
    "blockquote",
    "tg-emoji",
}
_FAULTABLE = {"sendmessage", "editmessagetext", "answercallbackquery"}


class TelegramApiError(Exception):
    """An error answer of the Bot API (status, description, optional parameters)."""

    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


class _HtmlCheck(HTMLParser):
    """Rejects what Telegram's HTML parse mode rejects: unknown tags and unbalanced tags."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.error: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _ALLOWED_TAGS and self.error is None:
            self.error = f'Unsupported start tag "{tag}"'
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if (not self.stack or self.stack[-1] != tag) and self.error is None:
            self.error = f'Unexpected end tag "{tag}"'
        elif self.stack:
            self.stack.pop()


def check_html(text: str) -> str | None:
    """The "can't parse entities" reason Telegram would give for ``text``, or None when it parses."""
    parser = _HtmlCheck()
    parser.feed(text)
    parser.close()
    if parser.error is None and parser.stack:
        parser.error = f'Can\'t find end tag corresponding to start tag "{parser.stack[-1]}"'
    if parser.error is None and re.search(r"&(?![a-zA-Z]+;|#\d+;|#x[0-9a-fA-F]+;)", text):
        parser.error = "Unsupported HTML entity or unescaped '&'"
    return parser.error


class TelegramTwin(LoopbackServer):
    """In-memory Bot API for one or more bot tokens (see the module docstring)."""

    def __init__(
        self,
        tokens: list[str] | None = None,
        *,
        bot_id: int | None = None,
        username: str = "quanticity_twin_bot",
        log_dir: Path | str | None = None,
    ) -> None:
        super().__init__()
        self.tokens = set(tokens or [DEFAULT_TOKEN])
        bad = sorted(t for t in self.tokens if not _TOKEN.match(t))
        if bad:
            raise ValueError(f"tokens: {bad} do not look like bot tokens (<digits>:<secret>)")
        first = sorted(self.tokens)[0]
        self.bot_user = {
            "id": bot_id if bot_id is not None else int(first.partition(":")[0]),
            "is_bot": True,
            "first_name": "Quanticity",
            "username": username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self.faults = FaultPlan()
        self.watch = WatchLog(log_dir, "telegram")
        self._lock = threading.Lock()
        self._chats: dict[int | str, list[dict[str, Any]]] = {}  # every message per chat (bot and injected)
        self._next_message_id: dict[int | str, itertools.count[int]] = {}
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._callback_ids = itertools.count(1)
        self._open_callbacks: set[str] = set()
        self.edits: list[dict[str, Any]] = []
        self.callback_answers: list[dict[str, Any]] = []
        self.calls: list[tuple[str, int]] = []  # (method, HTTP status) of every request, in order

    # --- records --------------------------------------------------------------------------------
    def sent_messages(self, chat_id: int | str) -> list[dict[str, Any]]:
        """Messages the bot sent to ``chat_id`` (Message objects as returned), oldest first."""
        with self._lock:
            return [m for m in self._chats.get(_chat_key(chat_id), []) if m.get("from", {}).get("is_bot")]

    def chats(self) -> list[int | str]:
        """Every chat id that has messages."""
        with self._lock:
            return list(self._chats)

    # --- injection --------------------------------------------------------------------------------
    def inject_message(self, user_id: int, chat_id: int | str, text: str) -> int:
        """Queue an incoming text message from ``user_id`` in ``chat_id``; returns its update id."""
        if not isinstance(user_id, int) or user_id <= 0:
            raise ValueError(f"user_id: {user_id!r} must be a positive integer Telegram user id")
        user = {"id": user_id, "is_bot": False, "first_name": f"user{user_id}"}
        message: dict[str, Any] = {
            "message_id": self._allocate_id(chat_id),
            "date": int(time.time()),
            "chat": _chat(chat_id, user),
            "from": user,
            "text": text,
        }
        command = re.match(r"^/[A-Za-z0-9_]+(@[A-Za-z0-9_]+)?", text)
        if command:
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command.group(0))}]
        with self._lock:
            self._chats.setdefault(_chat_key(chat_id), []).append(message)
            update_id = next(self._update_ids)
            self._updates.append({"update_id": update_id, "message": message})
        return update_id

    def inject_callback(self, user_id: int, chat_id: int | str, message_id: int, data: str) -> str:
        """Queue an inline-button press by ``user_id`` on bot message ``message_id``; returns the query id."""
        if not isinstance(user_id, int) or user_id <= 0:
            raise ValueError(f"user_id: {user_id!r} must be a positive integer Telegram user id")
        with self._lock:
            target = next((m for m in self._chats.get(_chat_key(chat_id), []) if m["message_id"] == message_id), None)
            if target is None:
                raise ValueError(f"message_id: {message_id} is not a message in chat {chat_id}")
            query_id = str(next(self._callback_ids))
            user = {"id": user_id, "is_bot": False, "first_name": f"user{user_id}"}
            query = {"id": query_id, "from": user, "message": target, "chat_instance": str(chat_id), "data": data}
            self._open_callbacks.add(query_id)
            self._updates.append({"update_id": next(self._update_ids), "callback_query": query})
        return query_id

    # --- server -----------------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_post("/_twin/inject", self._post_inject)
        app.router.add_get("/_twin/messages", self._get_messages)
        app.router.add_post("/_twin/press", self._post_press)
        app.router.add_get("/_twin/edits", self._get_edits)
        return app

    async def _post_inject(self, request: web.Request) -> web.Response:
        """Control endpoint for other processes: ``{"user_id", "chat_id", "text"}`` → an incoming message."""
        try:
            body = await request.json()
            update_id = self.inject_message(int(body["user_id"]), _chat_id(body["chat_id"]), str(body["text"]))
        except (KeyError, TypeError, ValueError, TelegramApiError) as exc:
            return web.json_response({"ok": False, "description": f"bad inject request: {exc}"}, status=400)
        return web.json_response({"ok": True, "update_id": update_id})

    async def _post_press(self, request: web.Request) -> web.Response:
        """Control endpoint: ``{"user_id", "chat_id", "message_id", "data"}`` → an inline-button press."""
        try:
            body = await request.json()
            query_id = self.inject_callback(
                int(body["user_id"]), _chat_id(body["chat_id"]), int(body["message_id"]), str(body["data"])
            )
        except (KeyError, TypeError, ValueError, TelegramApiError) as exc:
            return web.json_response({"ok": False, "description": f"bad press request: {exc}"}, status=400)
        return web.json_response({"ok": True, "callback_query_id": query_id})

    async def _get_edits(self, request: web.Request) -> web.Response:
        """Control endpoint: every editMessageText the bot made in ``?chat_id=``, oldest first."""
        try:
            chat = _chat_id(request.query["chat_id"])
        except (KeyError, TelegramApiError) as exc:
            return web.json_response({"ok": False, "description": f"chat_id: {exc}"}, status=400)
        with self._lock:
            edits = [dict(e) for e in self.edits if _chat_key(e["chat_id"]) == chat]
        return web.json_response({"ok": True, "result": edits})

    async def _get_messages(self, request: web.Request) -> web.Response:
        """Control endpoint: every message the bot sent to ``?chat_id=``."""
        try:
            chat = _chat_id(request.query["chat_id"])
        except (KeyError, TelegramApiError) as exc:
            return web.json_response({"ok": False, "description": f"chat_id: {exc}"}, status=400)
        return web.json_response({"ok": True, "result": self.sent_messages(chat)})

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"].lower()
        token = request.match_info["token"]
        if token not in self.tokens:
            return self._error(method, TelegramApiError(401, "Unauthorized"))
        try:
            params = await _params(request)
        except (ValueError, json.JSONDecodeError) as exc:
            return self._error(method, TelegramApiError(400, f"Bad Request: {exc}"))
        if method in _FAULTABLE:
            fault = self.faults.take(method)
            if fault is not None:
                if fault.kind == "429":
                    retry = max(1, int(round(fault.retry_after)))
                    error = TelegramApiError(429, f"Too Many Requests: retry after {retry}", {"retry_after": retry})
                    return self._error(method, error)
                if fault.kind == "500":
                    return self._error(method, TelegramApiError(500, "Internal Server Error"))
                await asyncio.sleep(fault.delay_s)
        handler = _METHODS.get(method)
        if handler is None:
            return self._error(method, TelegramApiError(404, "Not Found"))
        try:
            if method == "getupdates":
                result = await self._get_updates(params)
            else:
                result = handler(self, params)
        except TelegramApiError as exc:
            return self._error(method, exc)
        except (KeyError, TypeError, ValueError) as exc:
            return self._error(method, TelegramApiError(400, f"Bad Request: {exc}"))
        self.calls.append((method, 200))
        return web.json_response({"ok": True, "result": result})

    def _error(self, method: str, error: TelegramApiError) -> web.Response:
        self.calls.append((method, error.status))
        body: dict[str, Any] = {"ok": False, "error_code": error.status, "description": error.description}
        if error.parameters:
            body["parameters"] = error.parameters
        return web.json_response(body, status=error.status)

    def _allocate_id(self, chat_id: int | str) -> int:
        with self._lock:
            counter = self._next_message_id.setdefault(_chat_key(chat_id), itertools.count(1))
            return next(counter)

    # --- methods ----------------------------------------------------------------------------------
    def _get_me(self, params: dict[str, Any]) -> dict[str, Any]:
        return self.bot_user

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset", 0) or 0)
        limit = min(100, max(1, int(params.get("limit", 100) or 100)))
        timeout = max(0.0, float(params.get("timeout", 0) or 0))
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if offset:
                    self._updates = [u for u in self._updates if u["update_id"] >= offset]
                ready = self._updates[:limit]
            if ready or time.monotonic() >= deadline:
                return ready
            await asyncio.sleep(0.02)

    def _send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = _chat_id(params["chat_id"])
        text = str(params.get("text", ""))
        if not text.strip():
            raise TelegramApiError(400, "Bad Request: message text is empty")
        if len(text) > MAX_TEXT:
            raise TelegramApiError(400, "Bad Request: message is too long")
        rule = self.faults.poisoned(text)
        if rule is not None:
            raise TelegramApiError(rule.status, rule.description)
        if str(params.get("parse_mode", "")).upper() == "HTML":
            problem = check_html(text)
            if problem:
                raise TelegramApiError(400, f"Bad Request: can't parse entities: {problem}")
        reply = params.get("reply_parameters") or {}
        reply_id = reply.get("message_id") or params.get("reply_to_message_id")
        message: dict[str, Any] = {
            "message_id": 0,
            "date": int(time.time()),
            "chat": _chat(chat_id, None),
            "from": self.bot_user,
            "text": text,
        }
        thread_id = params.get("message_thread_id")
        if thread_id is not None:
            message["message_thread_id"] = int(thread_id)
            message["is_topic_message"] = True
        if reply_id is not None:
            original = self._find(chat_id, int(reply_id))
            if original is None:
                if not reply.get("allow_sending_without_reply") and not params.get("allow_sending_without_reply"):
                    raise TelegramApiError(400, "Bad Request: message to be replied not found")
            else:
                message["reply_to_message"] = {k: v for k, v in original.items() if k != "reply_to_message"}
        if params.get("reply_markup"):
            message["reply_markup"] = _inline_keyboard(params["reply_markup"])
        if params.get("parse_mode"):
            message["parse_mode"] = params["parse_mode"]  # recorded for tests; not part of the real object
        message["message_id"] = self._allocate_id(chat_id)
        with self._lock:
            self._chats.setdefault(_chat_key(chat_id), []).append(message)
        self.watch.append(chat_id, f"#{message['message_id']} reply_to={reply_id} {text}")
        return {k: v for k, v in message.items() if k != "parse_mode"}

    def _edit_message_text(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = _chat_id(params["chat_id"])
        message_id = int(params["message_id"])
        text = str(params.get("text", ""))
        if not text.strip():
            raise TelegramApiError(400, "Bad Request: text must be non-empty")
        if str(params.get("parse_mode", "")).upper() == "HTML" and check_html(text):
            raise TelegramApiError(400, f"Bad Request: can't parse entities: {check_html(text)}")
        markup = _inline_keyboard(params["reply_markup"]) if params.get("reply_markup") else None
        with self._lock:
            original = next((m for m in self._chats.get(_chat_key(chat_id), []) if m["message_id"] == message_id), None)
            if original is None or not original.get("from", {}).get("is_bot"):
                raise TelegramApiError(400, "Bad Request: message to edit not found")
            if original["text"] == text and original.get("reply_markup") == markup:
                raise TelegramApiError(
                    400,
                    "Bad Request: message is not modified: specified new message content and reply markup are "
                    "exactly the same as a current content and reply markup of the message",
                )
            original["text"] = text
            original["edit_date"] = int(time.time())
            if markup is not None:
                original["reply_markup"] = markup
            else:
                original.pop("reply_markup", None)
            self.edits.append({"chat_id": chat_id, "message_id": message_id, "text": text, "reply_markup": markup})
            result = {k: v for k, v in original.items() if k != "parse_mode"}
        self.watch.append(chat_id, f"#{message_id} edited: {text}")
        return result

    def _answer_callback_query(self, params: dict[str, Any]) -> bool:
        query_id = str(params["callback_query_id"])
        with self._lock:
            if query_id not in self._open_callbacks:
                raise TelegramApiError(
                    400, "Bad Request: query is too old and response timeout expired or query ID is invalid"
                )
            self._open_callbacks.discard(query_id)
            self.callback_answers.append(
                {
                    "callback_query_id": query_id,
                    "text": params.get("text"),
                    "show_alert": bool(params.get("show_alert", False)),
                }
            )
        return True

    def _delete_webhook(self, params: dict[str, Any]) -> bool:
        return True

    def _get_webhook_info(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            pending = len(self._updates)
        return {"url": "", "has_custom_certificate": False, "pending_update_count": pending}

    def _set_my_commands(self, params: dict[str, Any]) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise TelegramApiError(400, "Bad Request: commands must be a JSON array")
        return True

    def _find(self, chat_id: int | str, message_id: int) -> dict[str, Any] | None:
        with self._lock:
            return next((m for m in self._chats.get(_chat_key(chat_id), []) if m["message_id"] == message_id), None)


_METHODS = {
    "getme": TelegramTwin._get_me,
    "getupdates": TelegramTwin._get_updates,
    "sendmessage": TelegramTwin._send_message,
    "editmessagetext": TelegramTwin._edit_message_text,
    "answercallbackquery": TelegramTwin._answer_callback_query,
    "deletewebhook": TelegramTwin._delete_webhook,
    "getwebhookinfo": TelegramTwin._get_webhook_info,
    "setmycommands": TelegramTwin._set_my_commands,
}


async def _params(request: web.Request) -> dict[str, Any]:
    """Parameters from the query string, a JSON body or a form body; JSON-valued fields decoded."""
    params: dict[str, Any] = dict(request.query)
    if request.can_read_body:
        if request.content_type == "application/json":
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("request body must be a JSON object")
            params.update(body)
        else:
            form = await request.post()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
    for field in _JSON_FIELDS & params.keys():
        if isinstance(params[field], str):
            params[field] = json.loads(params[field])
    return params


def _chat_key(chat_id: int | str) -> int | str:
    return _chat_id(chat_id)


def _chat_id(raw: Any) -> int | str:
    """A numeric chat id or an ``@channelusername``, as the API accepts."""
    text = str(raw).strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if re.fullmatch(r"@[A-Za-z][A-Za-z0-9_]{3,}", text):
        return text
    raise TelegramApiError(400, "Bad Request: chat not found")


def _chat(chat_id: int | str, user: dict[str, Any] | None) -> dict[str, Any]:
    if isinstance(chat_id, int) and chat_id > 0:
        return {"id": chat_id, "type": "private", "first_name": (user or {}).get("first_name", f"user{chat_id}")}
    if isinstance(chat_id, str):
        return {"id": -1000000000000 - zlib.crc32(chat_id.encode()) % 10**9, "type": "channel", "username": chat_id[1:]}
    return {"id": chat_id, "type": "supergroup", "title": f"chat {chat_id}"}


def _inline_keyboard(markup: Any) -> dict[str, Any]:
    """Validate an InlineKeyboardMarkup the way the API does (rows of buttons with text + one action)."""
    if not isinstance(markup, dict) or not isinstance(markup.get("inline_keyboard"), list):
        raise TelegramApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
    for row in markup["inline_keyboard"]:
        if not isinstance(row, list):
            raise TelegramApiError(
                400, 'Bad Request: field "inline_keyboard" of the InlineKeyboardMarkup should be an Array of Arrays'
            )
        for button in row:
            if not isinstance(button, dict) or not button.get("text"):
                raise TelegramApiError(400, "Bad Request: text buttons are unallowed in the inline keyboard")
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode()) <= 64:
                raise TelegramApiError(400, "Bad Request: BUTTON_DATA_INVALID")
    return markup


def main(argv: list[str] | None = None) -> None:
    """Serve the twin until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--token", action="append", help="bot token to accept (repeatable)")
    parser.add_argument("--log-dir", default=None, help="append every accepted message to <dir>/telegram-<chat>.log")
    args = parser.parse_args(argv)
    serve_forever(TelegramTwin(args.token, log_dir=args.log_dir), args.port, "Telegram Bot API twin")


if __name__ == "__main__":
    main()
