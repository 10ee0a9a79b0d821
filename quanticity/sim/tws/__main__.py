"""``python -m quanticity.sim.tws --port 7497 --seed 7 [--speed 60]``: run the simulator until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from quanticity.config import load_config
from quanticity.sim.tws.config import TwsSimConfig
from quanticity.sim.tws.server import TwsSimulator
from quanticity.sim.tws.wire import ib_time

log = logging.getLogger("quanticity.sim.tws")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m quanticity.sim.tws", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7497, help="7497 = paper (default), 7496 = live, 0 = any")
    parser.add_argument("--seed", type=int, default=None, help="market seed (default: system.seed)")
    parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per wall second")
    parser.add_argument("--config-dir", default=None, help="config directory (default: the repository's)")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    config = load_config(args.config_dir)
    sim = TwsSimulator.from_config(config, seed=args.seed, sim_config=TwsSimConfig(host=args.host, port=args.port))
    port = await sim.start()
    log.info(
        "market %s, %d symbols, speed %gx; Ctrl-C to stop", sim.market.session_date, len(sim.market.symbols), args.speed
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # signal.signal works on every platform (loop.add_signal_handler does not on Windows);
        # the handler runs in the main thread, so hand the stop to the loop thread-safely
        signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
    pacer = asyncio.create_task(sim.run_paced(args.speed, stop))
    reporter = asyncio.create_task(_report(sim, stop))
    await stop.wait()
    await asyncio.gather(pacer, reporter)
    await sim.stop()
    log.info("stopped (port %d)", port)


async def _report(sim: TwsSimulator, stop: asyncio.Event) -> None:
    """Log a one-line status every 10 wall seconds: what the server is doing."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=10.0)
        log.info(
            "%s clients=%s subscriptions=%s orders=%d executions=%d stats=%s",
            ib_time(sim.now_ns),
            sim.clients,
            sim.hub.counts(),
            len(sim.engine.orders()),
            len(sim.engine.executions),
            dict(sim.stats),
        )


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
