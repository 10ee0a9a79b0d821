"""The TWS API wire format: length-prefixed frames of NUL-terminated text fields.

Every message in either direction is ``struct.pack(">I", len(body)) + body`` where ``body`` is
the fields, each followed by ``\\0``. The one exception is the client's opening handshake: the
bytes ``API\\0`` followed by one length-prefixed frame carrying ``v{min}..{max}`` (plus optional
connect options), which is why :class:`FrameDecoder` starts in a handshake state.

Field encoding follows what ``ib_async`` (and the official client) decode: ints and floats as
their Python text, booleans as ``1``/``0``, ``None`` as the empty string; a non-finite float is
written as Python spells it (``nan``, ``inf``) because the fault injector must be able to send
exactly the malformed values a broken feed would.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence

__all__ = [
    "HANDSHAKE_PREFIX",
    "MAX_FRAME_BYTES",
    "FieldReader",
    "FrameDecoder",
    "ProtocolError",
    "encode_fields",
    "format_field",
    "parse_version_range",
]

HANDSHAKE_PREFIX = b"API\0"
MAX_FRAME_BYTES = 16 * 1024 * 1024
"""Largest frame accepted; anything longer is a corrupt or hostile stream (TWS's own limit is similar)."""

_LENGTH = struct.Struct(">I")


class ProtocolError(ValueError):
    """The peer sent bytes that are not the TWS API protocol; the session must be closed."""


def format_field(value: object) -> str:
    """Text of one field as TWS writes it (bool before int: ``True`` is an ``int`` in Python)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    return str(value)


def encode_fields(fields: Iterable[object]) -> bytes:
    """One framed message: the length prefix plus every field NUL-terminated."""
    body = "".join(format_field(f) + "\0" for f in fields).encode("utf-8")
    return _LENGTH.pack(len(body)) + body


def parse_version_range(text: str) -> tuple[int, int]:
    """``v157..178`` (optionally followed by connect options) → ``(157, 178)``.

    A single version ``v176`` is accepted as ``(176, 176)``. Anything else is a ProtocolError
    naming the text received.
    """
    head = text.split(" ", 1)[0]
    if not head.startswith("v"):
        raise ProtocolError(f"handshake version: {text!r} does not start with 'v'")
    lo_text, sep, hi_text = head[1:].partition("..")
    try:
        lo = int(lo_text)
        hi = int(hi_text) if sep else lo
    except ValueError:
        raise ProtocolError(f"handshake version: {text!r} is not v<min>..<max>") from None
    if lo > hi:
        raise ProtocolError(f"handshake version: {text!r} has min above max")
    return lo, hi


class FrameDecoder:
    """Incremental decoder of a client's byte stream into field lists.

    The first item it yields is ``["API", "<version text>"]`` for the handshake; every later
    item is the field list of one message (the trailing empty field removed).
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._handshake_done = False

    def feed(self, data: bytes) -> list[list[str]]:
        """Add received bytes; return every message they complete (possibly none)."""
        self._buffer += data
        messages: list[list[str]] = []
        while True:
            if not self._handshake_done:
                if len(self._buffer) < len(HANDSHAKE_PREFIX):
                    return messages
                if bytes(self._buffer[: len(HANDSHAKE_PREFIX)]) != HANDSHAKE_PREFIX:
                    raise ProtocolError(f"handshake: expected b'API\\x00', got {bytes(self._buffer[:4])!r}")
                body = self._take_frame(len(HANDSHAKE_PREFIX))
                if body is None:
                    return messages
                self._handshake_done = True
                messages.append(["API", body.decode("utf-8", errors="replace")])
                continue
            body = self._take_frame(0)
            if body is None:
                return messages
            fields = body.decode("utf-8", errors="replace").split("\0")
            if fields and fields[-1] == "":
                fields.pop()
            if not fields:
                raise ProtocolError("empty message")
            messages.append(fields)

    def _take_frame(self, offset: int) -> bytes | None:
        if len(self._buffer) < offset + 4:
            return None
        (length,) = _LENGTH.unpack_from(self._buffer, offset)
        if length > MAX_FRAME_BYTES:
            raise ProtocolError(f"frame length: {length} bytes exceeds {MAX_FRAME_BYTES}")
        end = offset + 4 + length
        if len(self._buffer) < end:
            return None
        body = bytes(self._buffer[offset + 4 : end])
        del self._buffer[:end]
        return body


class FieldReader:
    """Sequential, typed reader over one message's fields.

    Every accessor names the field it reads, so a malformed request is rejected with an error
    naming the field and the value received rather than an IndexError.
    """

    def __init__(self, fields: Sequence[str], start: int = 1) -> None:
        self._fields = fields
        self._pos = start

    @property
    def remaining(self) -> int:
        """Fields not read yet."""
        return len(self._fields) - self._pos

    def str(self, name: str) -> str:
        if self._pos >= len(self._fields):
            raise ProtocolError(f"{name}: missing (message has {len(self._fields)} fields)")
        value = self._fields[self._pos]
        self._pos += 1
        return value

    def int(self, name: str, default: int = 0) -> int:
        text = self.str(name)
        if text == "":
            return default
        try:
            return int(text)
        except ValueError:
            try:
                as_float = float(text)
            except ValueError:
                raise ProtocolError(f"{name}: {text!r} is not an integer") from None
            if not as_float.is_integer():
                raise ProtocolError(f"{name}: {text!r} is not an integer") from None
            return int(as_float)

    def float(self, name: str, default: float = 0.0) -> float:
        text = self.str(name)
        if text == "":
            return default
        if text == "Infinite":
            return math.inf
        try:
            return float(text)
        except ValueError:
            raise ProtocolError(f"{name}: {text!r} is not a number") from None

    def bool(self, name: str) -> bool:
        return self.int(name) != 0

    def skip(self, count: int, name: str) -> None:
        """Skip ``count`` fields the simulator does not use (still checks they are present)."""
        if self._pos + count > len(self._fields):
            raise ProtocolError(f"{name}: message ends before {count} more fields")
        self._pos += count
