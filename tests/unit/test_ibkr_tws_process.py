"""``python -m quanticity.sim.tws`` as its own process: a plain ``ib_async.IB`` connects and leaves.

The standalone simulator is what a developer points TWS-facing tools at; this checks the real
entry point (argument parsing, the bound port reported in the log, serving, a clean stop on
SIGTERM), not just the in-process server the other tests use.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest
from ib_async import IB

pytestmark = pytest.mark.unit

LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
START_TIMEOUT_S = 60.0  # building the configured universe's market is the slow part of a cold start


async def _read_until(stream: asyncio.StreamReader, pattern: re.Pattern[str], lines: list[str]) -> re.Match[str]:
    """Read log lines until one matches ``pattern`` (every line kept for the failure message)."""
    while True:
        raw = await stream.readline()
        if not raw:
            raise AssertionError("the simulator exited before logging its port:\n" + "".join(lines))
        line = raw.decode("utf-8", errors="replace")
        lines.append(line)
        match = pattern.search(line)
        if match is not None:
            return match


def test_standalone_simulator_serves_a_plain_ib_client(repo_root: Path) -> None:
    async def scenario() -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "quanticity.sim.tws",
            "--port",
            "0",
            "--seed",
            "7",
            "--speed",
            "1",
            cwd=repo_root,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stderr is not None
        lines: list[str] = []
        try:
            match = await asyncio.wait_for(_read_until(process.stderr, LISTENING, lines), START_TIMEOUT_S)
            port = int(match.group(1))
            assert port > 0
            ib = IB()
            await ib.connectAsync("127.0.0.1", port, clientId=401, timeout=10)
            assert ib.isConnected() and ib.managedAccounts() == ["DU1234567"]
            server_time = await asyncio.wait_for(ib.reqCurrentTimeAsync(), 10)
            assert server_time.year >= 2000  # the simulated session's clock, answered over the wire
            ib.disconnect()
            assert not ib.isConnected()
            # the server saw the client come and go (its log, as an operator would read it)
            await asyncio.wait_for(_read_until(process.stderr, re.compile(r"client 401 disconnected"), lines), 10)
            assert any("client 401 connected" in line for line in lines)
            process.send_signal(signal.SIGTERM)
            stopped = re.compile(rf"stopped \(port {port}\)")
            await asyncio.wait_for(_read_until(process.stderr, stopped, lines), 30)
            assert await asyncio.wait_for(process.wait(), 30) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    asyncio.run(scenario())
