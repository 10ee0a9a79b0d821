"""What the loopback API twins (Telegram, Discord) share: fault injection, hosting, watch logs.

The twins exist because the build machines have no internet, yet the real client libraries must
run end to end (SPEC §11). Faults are injected per call, not by wall time, so a test can say
"the next 7 sends get a 429" and know exactly which requests see it; rules ("always 400 for text
containing X") model poison messages. A twin runs either inside the caller's event loop
(``await start()``, what async tests use) or in a background thread with its own loop
(``start_in_thread()``, what sync tests, ``python -m`` and other processes use).
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from aiohttp import web

FaultKind = Literal["429", "500", "slow"]


@dataclass(frozen=True)
class Fault:
    """One injected failure: ``429`` (with ``retry_after`` s), ``500``, or ``slow`` (``delay_s`` then serve)."""

    kind: FaultKind
    retry_after: float = 1.0
    delay_s: float = 0.0
    methods: frozenset[str] | None = None  # None = any method the twin counts as faultable


@dataclass(frozen=True)
class PoisonRule:
    """Every request whose text contains ``needle`` fails with ``status``/``description``, forever."""

    needle: str
    status: int = 400
    description: str = "Bad Request: poisoned by the test"


class FaultPlan:
    """Thread-safe queue of the next faults plus standing poison rules.

    Tests call :meth:`add` from any thread; the server pops one fault per matching request.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Fault] = deque()
        self._poison: list[PoisonRule] = []
        self.injected = 0

    def add(
        self,
        kind: FaultKind,
        count: int = 1,
        *,
        retry_after: float = 1.0,
        delay_s: float = 0.0,
        methods: set[str] | None = None,
    ) -> None:
        """Make the next ``count`` matching calls fail with ``kind``."""
        if kind not in ("429", "500", "slow"):
            raise ValueError(f"kind: {kind!r} is not one of 429, 500, slow")
        if count < 1:
            raise ValueError(f"count: {count} must be ≥ 1")
        fault = Fault(kind, retry_after, delay_s, frozenset(m.lower() for m in methods) if methods else None)
        with self._lock:
            self._queue.extend([fault] * count)

    def poison(self, needle: str, status: int = 400, description: str = "Bad Request: poisoned by the test") -> None:
        """Fail every request whose text contains ``needle`` (a message the platform always rejects)."""
        if not needle:
            raise ValueError("needle: must not be empty (it would poison every message)")
        with self._lock:
            self._poison.append(PoisonRule(needle, status, description))

    def clear(self) -> None:
        """Drop queued faults and poison rules."""
        with self._lock:
            self._queue.clear()
            self._poison.clear()

    def pending(self) -> int:
        """Faults still queued."""
        with self._lock:
            return len(self._queue)

    def take(self, method: str) -> Fault | None:
        """The fault for this call of ``method`` (removed from the queue), if any."""
        with self._lock:
            if self._queue and (self._queue[0].methods is None or method.lower() in self._queue[0].methods):
                self.injected += 1
                return self._queue.popleft()
        return None

    def poisoned(self, text: str) -> PoisonRule | None:
        """The poison rule matching ``text``, if any."""
        with self._lock:
            return next((rule for rule in self._poison if rule.needle in text), None)


class WatchLog:
    """Optional per-channel append-only files so a person can ``tail -f`` what the twin accepted."""

    def __init__(self, log_dir: Path | str | None, prefix: str) -> None:
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.prefix = prefix
        self._lock = threading.Lock()
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)

    def append(self, channel: str | int, line: str) -> None:
        """Append one line (newlines flattened) to the file of ``channel``."""
        if self.log_dir is None:
            return
        flat = line.replace("\n", " ⏎ ")
        with self._lock, (self.log_dir / f"{self.prefix}-{channel}.log").open("a") as handle:
            handle.write(flat + "\n")


class LoopbackServer(ABC):
    """Hosts an aiohttp application on 127.0.0.1, in the caller's loop or in a thread of its own."""

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self.host = "127.0.0.1"
        self.port = 0

    @abstractmethod
    def build_app(self) -> web.Application:
        """The application to serve; subclasses add their routes."""

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server."""
        if not self.port:
            raise RuntimeError("server is not started")
        return f"http://{self.host}:{self.port}"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve in the running loop; returns the bound port (``port=0`` picks a free one)."""
        self._runner = web.AppRunner(self.build_app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.host = host
        self.port = sockets[0].getsockname()[1] if sockets else port
        return self.port

    async def stop(self) -> None:
        """Stop serving (in the loop that started it)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start_in_thread(self, host: str = "127.0.0.1", port: int = 0, timeout_s: float = 10.0) -> int:
        """Serve from a daemon thread with its own loop; returns the bound port."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._thread_loop = loop
            try:
                loop.run_until_complete(self.start(host, port))
            except BaseException as exc:  # surfaced to the caller below
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        self._thread = threading.Thread(target=run, name=f"{type(self).__name__}-server", daemon=True)
        self._thread.start()
        if not ready.wait(timeout_s):
            raise TimeoutError(f"{type(self).__name__} did not start within {timeout_s} s")
        if failure:
            raise failure[0]
        return self.port

    def stop_thread(self, timeout_s: float = 10.0) -> None:
        """Stop a server started with :meth:`start_in_thread`."""
        if self._thread_loop is not None and self._thread is not None:
            self._thread_loop.call_soon_threadsafe(self._thread_loop.stop)
            self._thread.join(timeout_s)
            self._thread = None
            self._thread_loop = None


def serve_forever(server: LoopbackServer, port: int, banner: str) -> None:
    """``python -m`` entry: serve until interrupted."""

    async def main() -> None:
        bound = await server.start("127.0.0.1", port)
        print(f"{banner} on http://127.0.0.1:{bound}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await server.stop()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        return
