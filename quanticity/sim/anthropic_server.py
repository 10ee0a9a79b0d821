"""Loopback twin of the Anthropic Messages API (``POST /v1/messages``).

The build machines have no internet, yet the overseer must be exercised with the real
``anthropic`` SDK end to end (SPEC §11, §12). This server speaks the wire protocol the SDK
expects: the key in ``x-api-key`` or ``Authorization: Bearer`` (what SDK 2.x sends), the
``anthropic-version`` header, request validation with the real error envelope
``{"type": "error", "error": {"type": ..., "message": ...}}`` and status codes, a ``request-id``
header, and a response body of the real shape (``id``, ``type: "message"``, ``role``, ``model``,
``content: [{"type": "text", "text": ...}]``, ``stop_reason``, ``stop_sequence``, ``usage``).

Replies are canned but *derived from the prompt*, deterministically, so tests can drive outcomes:

- the prompt names its task on a ``TASK: <name>`` line (the overseer's prompts always do);
  ``anomaly_analysis`` answers ``VERDICT: CRITICAL|WARNING|OK`` — by default the worst
  ``[SEVERITY]`` tag found in the prompt — then a short analysis; ``signal_review`` answers
  ``REVIEW: OK`` (or ``REVIEW: RED FLAG …`` when a rule says so); ``trade_explanation`` and
  ``daily_summary`` answer sentences built from the prompt's ``Key: value`` lines;
- scripted rules (:meth:`AnthropicTwin.add_rule`, or ``POST /_twin/rules``) replace that first
  status line whenever their regular expression matches the prompt, first match wins — e.g.
  ``add_rule("staleness", "VERDICT: CRITICAL")`` escalates any staleness anomaly.

Fault injection, consumed one per request: ``rate_limit`` (429 ``rate_limit_error`` with
``retry-after``), ``api_error`` (500 ``api_error``), ``overloaded`` (529 ``overloaded_error``) and
``slow`` (reply after ``delay_s``; released at once when the server stops). Control endpoints for
other processes: ``POST /_twin/faults``, ``POST``/``DELETE /_twin/rules``, ``GET /_twin/requests``.

Run alone: ``python -m quanticity.sim.anthropic_server --port 8765 [--api-key KEY]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import re
import threading
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from quanticity.sim.twin_common import LoopbackServer, serve_forever

FaultKindName = Literal["rate_limit", "api_error", "overloaded", "slow"]
FAULT_KINDS: tuple[str, ...] = ("rate_limit", "api_error", "overloaded", "slow")
_FAULT_REPLY: dict[str, tuple[int, str, str]] = {
    "rate_limit": (429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    "api_error": (500, "api_error", "Internal server error"),
    "overloaded": (529, "overloaded_error", "Overloaded"),
}
_MODEL = re.compile(r"^claude-[a-z0-9][a-z0-9.\-]*$")
_TASK = re.compile(r"^\s*TASK:\s*([a-z_]+)\s*$", re.MULTILINE | re.IGNORECASE)
_FIELD = re.compile(r"^\s*([A-Za-z][A-Za-z &/_-]{0,40}):\s*(.+?)\s*$", re.MULTILINE)
_SEVERITY_TAG = re.compile(r"\[(CRITICAL|WARNING|OK)\]")
_KNOWN_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "metadata",
        "stream",
        "tools",
        "tool_choice",
        "thinking",
        "service_tier",
        "cache_control",
        "container",
        "diagnostics",
        "inference_geo",
        "output_config",
        "speed",
        "user_profile_id",
        "workspace_id",
    }
)
_REQUEST_LOG_SIZE = 200


class ApiRequestError(Exception):
    """A request the real API would refuse: carries the status, error type and message to send."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


@dataclass(frozen=True)
class TwinFault:
    """One injected failure; ``delay_s`` only matters for ``slow``."""

    kind: FaultKindName
    delay_s: float = 0.0
    retry_after_s: float = 1.0


@dataclass(frozen=True)
class TwinRule:
    """When ``pattern`` matches the prompt, the reply's first line becomes ``line``."""

    pattern: re.Pattern[str]
    line: str


@dataclass(frozen=True)
class RecordedRequest:
    """What the twin received (tests assert on prompts, models and token limits)."""

    request_id: str
    model: str
    max_tokens: int
    prompt: str
    system: str
    outcome: str


def estimate_tokens(text: str) -> int:
    """A stable token estimate (≈ 4 characters per token), so usage figures are deterministic."""
    return max(1, math.ceil(len(text) / 4))


def _error_body(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}}


def _text_of(content: Any, where: str) -> str:
    """Text of a message's ``content`` (a string or a list of blocks), validated like the API does."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise ApiRequestError(400, "invalid_request_error", f"{where}: Input should be a valid string or list")
    parts = []
    for i, block in enumerate(content):
        if not isinstance(block, dict) or "type" not in block:
            raise ApiRequestError(400, "invalid_request_error", f"{where}.{i}.type: Field required")
        if block["type"] == "text":
            if not isinstance(block.get("text"), str):
                raise ApiRequestError(400, "invalid_request_error", f"{where}.{i}.text: Field required")
            parts.append(block["text"])
    return "\n".join(parts)


def validate_request(body: Any) -> tuple[str, int, str, str]:
    """Check a Messages request as the real API does; returns (model, max_tokens, prompt, system)."""
    if not isinstance(body, dict):
        raise ApiRequestError(400, "invalid_request_error", "request body: Input should be a valid dictionary")
    for key in body:
        if key not in _KNOWN_FIELDS:
            raise ApiRequestError(400, "invalid_request_error", f"{key}: Extra inputs are not permitted")
    for required in ("model", "max_tokens", "messages"):
        if required not in body:
            raise ApiRequestError(400, "invalid_request_error", f"{required}: Field required")
    model = body["model"]
    if not isinstance(model, str) or not model:
        raise ApiRequestError(400, "invalid_request_error", "model: Input should be a valid string")
    max_tokens = body["max_tokens"]
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ApiRequestError(400, "invalid_request_error", f"max_tokens: {max_tokens!r} must be an integer ≥ 1")
    if body.get("stream"):
        raise ApiRequestError(400, "invalid_request_error", "stream: streaming is not supported by this twin")
    temperature = body.get("temperature")
    if temperature is not None and (not isinstance(temperature, int | float) or not 0.0 <= temperature <= 1.0):
        raise ApiRequestError(400, "invalid_request_error", f"temperature: {temperature!r} must be within [0, 1]")
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        raise ApiRequestError(400, "invalid_request_error", "messages: at least one message is required")
    texts = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ApiRequestError(400, "invalid_request_error", f"messages.{i}: Input should be a valid dictionary")
        if message.get("role") not in ("user", "assistant"):
            raise ApiRequestError(
                400, "invalid_request_error", f"messages.{i}.role: Input should be 'user' or 'assistant'"
            )
        if "content" not in message:
            raise ApiRequestError(400, "invalid_request_error", f"messages.{i}.content: Field required")
        texts.append(_text_of(message["content"], f"messages.{i}.content"))
    if messages[0]["role"] != "user":
        raise ApiRequestError(400, "invalid_request_error", 'messages: first message must use the "user" role')
    system = body.get("system", "")
    system_text = _text_of(system, "system") if system else ""
    if not _MODEL.match(model):
        raise ApiRequestError(404, "not_found_error", f"model: {model}")
    return model, max_tokens, "\n".join(texts), system_text


class CannedAnalyst:
    """Deterministic replies derived from the prompt, overridable by scripted rules."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[TwinRule] = []

    def add_rule(self, pattern: str, line: str) -> None:
        """First line of every reply whose prompt matches ``pattern`` (a regex) becomes ``line``."""
        if not line.strip():
            raise ValueError("line: must not be empty")
        compiled = re.compile(pattern, re.IGNORECASE)
        with self._lock:
            self._rules.append(TwinRule(compiled, line.strip()))

    def clear_rules(self) -> None:
        """Forget every scripted rule."""
        with self._lock:
            self._rules.clear()

    def _ruled_line(self, prompt: str) -> str | None:
        with self._lock:
            return next((rule.line for rule in self._rules if rule.pattern.search(prompt)), None)

    def reply(self, prompt: str) -> str:
        """The full reply text for ``prompt``."""
        match = _TASK.search(prompt)
        task = match.group(1).lower() if match else "generic"
        fields = {k.strip().lower(): v for k, v in _FIELD.findall(prompt)}
        ruled = self._ruled_line(prompt)
        if task == "anomaly_analysis":
            tags = set(_SEVERITY_TAG.findall(prompt))
            worst = "CRITICAL" if "CRITICAL" in tags else "WARNING" if "WARNING" in tags else "OK"
            count = len(_SEVERITY_TAG.findall(prompt))
            first = ruled or f"VERDICT: {worst}"
            body = (
                f"Analysis: {count} finding(s) reviewed; the worst is {worst.lower()}. "
                "Check the named feed before trusting new entries."
            )
        elif task == "signal_review":
            first = ruled or "REVIEW: OK"
            body = f"The {fields.get('symbol', 'underlying')} {fields.get('direction', '').lower()} setup is coherent."
        elif task == "trade_explanation":
            first = ruled or (
                f"We bought {fields.get('contract', 'the contract')} because "
                f"{fields.get('triggers', 'our signals lined up')}."
            )
            body = f"Confidence {fields.get('confidence', 'n/a')}; the risk is limited to the premium paid."
        elif task == "daily_summary":
            first = ruled or (
                f"Today: {fields.get('trades', '0')} trades, win rate {fields.get('win rate', 'n/a')}, "
                f"P&L {fields.get('p&l', 'n/a')}."
            )
            body = f"Best trade: {fields.get('best trade', 'none')}; worst trade: {fields.get('worst trade', 'none')}."
        else:
            first = ruled or "OK"
            body = f"Acknowledged: {prompt.strip()[:80]}"
        return f"{first}\n{body}"


class AnthropicTwin(LoopbackServer):
    """The Messages API on 127.0.0.1; ``api_key`` None accepts any non-empty key."""

    def __init__(self, api_key: str | None = None) -> None:
        super().__init__()
        self.api_key = api_key
        self.analyst = CannedAnalyst()
        self._faults: deque[TwinFault] = deque()
        self._lock = threading.Lock()
        self._release = asyncio.Event()
        self.requests: deque[RecordedRequest] = deque(maxlen=_REQUEST_LOG_SIZE)
        self.counts: dict[str, int] = {}

    # --- control (tests call these directly; other processes use the /_twin routes) ---------
    def inject_fault(self, kind: str, count: int = 1, delay_s: float = 0.0, retry_after_s: float = 1.0) -> None:
        """Make the next ``count`` requests fail with ``kind`` (see :data:`FAULT_KINDS`)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind: {kind!r} is not one of {', '.join(FAULT_KINDS)}")
        if count < 1:
            raise ValueError(f"count: {count} must be ≥ 1")
        if kind == "slow" and delay_s <= 0:
            raise ValueError(f"delay_s: {delay_s} must be > 0 for a slow reply")
        with self._lock:
            self._faults.extend([TwinFault(kind, delay_s, retry_after_s)] * count)  # type: ignore[arg-type]

    def clear_faults(self) -> None:
        """Drop every queued fault."""
        with self._lock:
            self._faults.clear()

    def add_rule(self, pattern: str, line: str) -> None:
        """See :meth:`CannedAnalyst.add_rule`."""
        self.analyst.add_rule(pattern, line)

    def _take_fault(self) -> TwinFault | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def _count(self, outcome: str) -> None:
        with self._lock:
            self.counts[outcome] = self.counts.get(outcome, 0) + 1

    # --- server -------------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/_twin/faults", self._post_fault)
        app.router.add_post("/_twin/rules", self._post_rule)
        app.router.add_delete("/_twin/rules", self._delete_rules)
        app.router.add_get("/_twin/requests", self._get_requests)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._release = asyncio.Event()
        return await super().start(host, port)

    async def stop(self) -> None:
        """Release slow replies first, so shutdown never waits for an injected delay."""
        self._release.set()
        await super().stop()

    def _error(self, request_id: str, status: int, error_type: str, message: str, **headers: str) -> web.Response:
        self._count(error_type)
        return web.json_response(
            _error_body(error_type, message), status=status, headers={"request-id": request_id, **headers}
        )

    def _authenticate(self, request: web.Request) -> None:
        # SDK 2.x sends the key as ``Authorization: Bearer``; older clients and curl use x-api-key.
        bearer = request.headers.get("authorization", "")
        key = request.headers.get("x-api-key") or (bearer[7:].strip() if bearer.lower().startswith("bearer ") else "")
        if not key:
            raise ApiRequestError(401, "authentication_error", "x-api-key header is required")
        if self.api_key is not None and key != self.api_key:
            raise ApiRequestError(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            raise ApiRequestError(400, "invalid_request_error", "anthropic-version: header is required")

    async def _messages(self, request: web.Request) -> web.Response:
        request_id = f"req_{uuid.uuid4().hex[:24]}"
        try:
            self._authenticate(request)
            try:
                body = json.loads(await request.text())
            except json.JSONDecodeError as exc:
                raise ApiRequestError(400, "invalid_request_error", f"request body: invalid JSON ({exc.msg})") from exc
            model, max_tokens, prompt, system = validate_request(body)
        except ApiRequestError as exc:
            return self._error(request_id, exc.status, exc.error_type, exc.message)
        fault = self._take_fault()
        outcome = "ok" if fault is None else fault.kind
        self.requests.append(RecordedRequest(request_id, model, max_tokens, prompt, system, outcome))
        if fault is not None and fault.kind != "slow":
            status, error_type, message = _FAULT_REPLY[fault.kind]
            extra = {"retry-after": f"{fault.retry_after_s:g}"} if fault.kind == "rate_limit" else {}
            return self._error(request_id, status, error_type, message, **extra)
        if fault is not None:  # slow: hold the reply, unless the server stops first
            stopping = False
            with contextlib.suppress(TimeoutError):
                stopping = await asyncio.wait_for(self._release.wait(), timeout=fault.delay_s)
            if stopping:
                return self._error(request_id, 529, "overloaded_error", "Overloaded")
        text = self.analyst.reply(prompt)
        stop_reason = "end_turn"
        words = text.split(" ")
        while estimate_tokens(text) > max_tokens and len(words) > 1:
            words = words[:-1]
            text = " ".join(words)
            stop_reason = "max_tokens"
        self._count("ok")
        return web.json_response(
            {
                "id": f"msg_{uuid.uuid4().hex[:24]}",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": {"input_tokens": estimate_tokens(system + prompt), "output_tokens": estimate_tokens(text)},
            },
            headers={"request-id": request_id},
        )

    async def _post_fault(self, request: web.Request) -> web.Response:
        try:
            spec = await request.json()
            self.inject_fault(
                str(spec["kind"]),
                int(spec.get("count", 1)),
                float(spec.get("delay_s", 0.0)),
                float(spec.get("retry_after_s", 1.0)),
            )
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
            return web.json_response(_error_body("invalid_request_error", f"fault: {exc}"), status=400)
        return web.json_response({"queued": len(self._faults)})

    async def _post_rule(self, request: web.Request) -> web.Response:
        try:
            spec = await request.json()
            self.add_rule(str(spec["pattern"]), str(spec["line"]))
        except (KeyError, TypeError, ValueError, re.error, json.JSONDecodeError) as exc:
            return web.json_response(_error_body("invalid_request_error", f"rule: {exc}"), status=400)
        return web.json_response({"ok": True})

    async def _delete_rules(self, request: web.Request) -> web.Response:
        self.analyst.clear_rules()
        return web.json_response({"ok": True})

    async def _get_requests(self, request: web.Request) -> web.Response:
        return web.json_response(
            [
                {"request_id": r.request_id, "model": r.model, "max_tokens": r.max_tokens, "outcome": r.outcome}
                for r in self.requests
            ]
        )


def main(argv: list[str] | None = None) -> None:
    """``python -m quanticity.sim.anthropic_server --port N``."""
    parser = argparse.ArgumentParser(description="Loopback twin of the Anthropic Messages API")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 = any free port)")
    parser.add_argument("--api-key", default=None, help="accept only this x-api-key (default: any non-empty key)")
    args = parser.parse_args(argv)
    serve_forever(AnthropicTwin(api_key=args.api_key), args.port, "Anthropic Messages twin")


if __name__ == "__main__":
    main()
