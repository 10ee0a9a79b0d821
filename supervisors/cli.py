"""The ``quanticity`` command: ``run`` a session, ``status`` of a running system, and the emergency
controls ``flatten --yes`` and ``cancel-all`` of a running system.

``quanticity run`` starts everything on embedded defaults — a private Redis, a local Ray with
its dashboard on 127.0.0.1, the Prometheus endpoint, the root supervisor and its actors — trades
an accelerated simulated session with a live progress line, prints a summary and shuts it all
down. ``quanticity status`` reads the topology, heartbeats and trading state of a running system.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import ray
import redis
from prometheus_client import start_http_server
from prometheus_client.core import REGISTRY
from rich.console import Console
from rich.live import Live
from rich.table import Table

from actors.common import BROKER, FEED, RISK, SUPERVISOR
from actors.fetcher import FETCHER
from actors.venues import VENUES
from quanticity import keys
from quanticity.config import ConfigError, QuanticityConfig, load_config
from quanticity.execution.store import ExecutionStore
from quanticity.observability.metrics import QuanticityCollector, read_heartbeats
from quanticity.session import RunSpec, plan_session
from quanticity.store.client import connect
from quanticity.store.embedded import EmbeddedRedis
from quanticity.venues.profile import check_live_environment
from supervisors.launch import drain_deliveries, start_system, stop_system, wait_until_quiet
from supervisors.ops_run import command_admin, embedded_twins, print_ops_summary

STATE_FILE = Path("var/current.json")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smh]?)$")


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``6.5h`` → simulated seconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"--duration: {text!r} is not a duration like 90s, 30m or 6.5h")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return value * {"s": 1, "m": 60, "h": 3600}[unit]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="quanticity", description=__doc__)
    parser.add_argument("--config-dir", type=Path, default=None, help="directory of the YAML config (default: config/)")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="trade an accelerated simulated session on embedded defaults")
    run.add_argument("--speed", type=float, default=None, help="simulated seconds per wall second (0 = unpaced)")
    run.add_argument("--duration", type=parse_duration, default=None, help="simulated session length, e.g. 30m")
    run.add_argument("--seed", type=int, default=None, help="seed of the synthetic market")
    run.add_argument("--symbols", default=None, help="comma-separated subset of the universe")
    run.add_argument(
        "--lockstep",
        action="store_true",
        help="deterministic lock-step run: each feed step completes in the backtest's order before the next",
    )
    run.add_argument(
        "--live",
        action="store_true",
        help="venue.kind live: a real TWS (IB_HOST/IB_PORT) and the real UW/AV APIs, credentials from the environment",
    )
    sub.add_parser("status", help="topology, per-actor health and trading state of a running system")
    flatten = sub.add_parser("flatten", help="EMERGENCY: halt trading, cancel every order, close every position")
    flatten.add_argument("--yes", action="store_true", help="confirm: this sells every open position at the bid")
    flatten.add_argument("--reason", default="operator flatten (CLI)", help="why (audited)")
    cancel = sub.add_parser("cancel-all", help="EMERGENCY: halt trading and cancel every working order")
    cancel.add_argument("--reason", default="operator cancel-all (CLI)", help="why (audited)")
    admin = sub.add_parser(
        "admin",
        help="talk to the running session's Telegram admin bot through its loopback twin, e.g. admin /status",
    )
    admin.add_argument("text", nargs="+", help="the command and its arguments: /status, /halt drill, /pnl, …")
    admin.add_argument("--user-id", type=int, default=None, help="send as this Telegram user id (default: the admin)")
    admin.add_argument(
        "--press",
        default=None,
        help="then press the answer's button with this label, e.g. Confirm (for /halt, /flatten)",
    )
    return parser


# --- run -----------------------------------------------------------------------------------
class Session:
    """Everything one ``quanticity run`` started, so it can all be stopped in reverse order."""

    def __init__(self, config: QuanticityConfig, spec: RunSpec, run_dir: Path) -> None:
        self.config = config
        self.spec = spec
        self.run_dir = run_dir
        self.embedded: EmbeddedRedis | None = None
        self.redis_url = ""
        self.dashboard_url = ""
        self.supervisor: Any = None
        self.env: dict[str, str] | None = None  # secrets of the publishers/overseer/admin (embedded: the twins)

    def start(self) -> None:
        cfg = self.config.system
        if cfg.redis.url:
            self.redis_url = cfg.redis.url
        else:
            self.embedded = EmbeddedRedis(self.run_dir / "redis", cfg.redis.port, cfg.redis.appendonly)
            self.redis_url = self.embedded.start()
        init: dict[str, Any] = {"namespace": cfg.system.namespace, "log_to_driver": False, "configure_logging": False}
        if cfg.ray.address is None:
            # "local": start our own Ray even if a stale /tmp/ray/ray_current_cluster names another
            init.update(
                address="local",
                num_cpus=cfg.ray.num_cpus,
                include_dashboard=cfg.ray.include_dashboard,
                dashboard_host=cfg.ray.dashboard_host,
                dashboard_port=cfg.ray.dashboard_port,
            )
        else:
            init["address"] = cfg.ray.address
        context = ray.init(**init)
        self.dashboard_url = f"http://{context.dashboard_url}" if context.dashboard_url else "(dashboard disabled)"
        client = connect(self.redis_url)
        client.hset(
            keys.RUN_INFO,
            mapping={
                "session_date": self.spec.session_date,
                "speed": self.spec.speed,
                "seed": self.spec.seed,
                "dashboard": self.dashboard_url,
                "started_at": time.time_ns(),
            },
        )
        if self.config.system.metrics.enabled:
            REGISTRY.register(QuanticityCollector(client))
            start_http_server(self.config.system.metrics.port, addr=self.config.system.metrics.host)
        STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
        STATE_FILE.write_text(
            json.dumps(
                {
                    "redis_url": self.redis_url,
                    "namespace": cfg.system.namespace,
                    "dashboard": self.dashboard_url,
                    "run_dir": str(self.run_dir),
                }
            )
        )
        self.supervisor = start_system(self.config, self.spec, self.redis_url, env=self.env)

    def stop(self) -> None:
        if self.supervisor is not None:
            try:
                stop_system(self.supervisor)
            except Exception as exc:  # shutting down anyway
                print(f"warning: supervisor shutdown: {exc}", file=sys.stderr)
        if ray.is_initialized():
            ray.shutdown()
        if self.embedded is not None:
            self.embedded.stop()
        STATE_FILE.unlink(missing_ok=True)


def collect_summary(client: redis.Redis) -> dict[str, Any]:
    """Counts and P&L of the session so far, from Redis."""
    store = ExecutionStore(client)
    positions = store.positions()
    beats = read_heartbeats(client)
    feed = beats.get(FEED, {})
    return {
        "events": int(feed.get("events", 0)),
        "signals": client.xlen(keys.SIGNALS_STREAM),
        "orders": store.order_summary(),
        "fills": client.xlen(keys.FILLS_STREAM),
        "realized_pnl": store.realized_pnl().get("total", 0.0),
        "unrealized_pnl": sum(p.unrealized for p in positions.values()),
        "open_positions": {k: p.quantity for k, p in positions.items()},
        "restarts": {k: int(v) for k, v in client.hgetall(keys.RESTARTS).items()},
        "trading_state": client.hget(keys.TRADING_STATE, "state") or "ACTIVE",
        "risk_decisions": _decision_counts(beats),
        "venue": venue_summary(beats),
    }


def venue_summary(beats: dict[str, dict[str, float]]) -> dict[str, str]:
    """What the venues did (``tws``/``live``), from the broker's, venue host's and fetcher's heartbeats."""
    broker, venues, fetcher, feed = (beats.get(n, {}) for n in (BROKER, VENUES, FETCHER, FEED))
    out: dict[str, str] = {}
    if "link_ready" in broker:
        out["IBKR orders (ib_async)"] = (
            f"placed {int(broker.get('ibkr_placed', 0))}, fills {int(broker.get('executions', 0))}, "
            f"replaces {int(broker.get('ibkr_replaces', 0))}, reconciles {int(broker.get('ibkr_reconciles', 0))}"
        )
        out["IBKR reconnects"] = (
            f"execution {int(broker.get('count_disconnects', 0))}, ingestion {int(feed.get('count_disconnects', 0))}"
        )
    if venues:
        out["TWS simulator"] = (
            f"orders {int(venues.get('tws_orders', 0))}, executions {int(venues.get('tws_executions', 0))}, "
            f"pacing violations {int(venues.get('tws_pacing_violations', 0))}"
        )
    if "link_ready" in feed:
        accepted = sum(v for k, v in feed.items() if k.startswith("accepted_"))
        reasons = {k.removeprefix("rejected_"): int(v) for k, v in feed.items() if k.startswith("rejected_") and v}
        rejected = sum(reasons.values())
        top = ", ".join(f"{r} {n:,}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:3])
        out["IBKR market data"] = f"accepted {int(accepted):,}, rejected {rejected:,}" + (f" ({top})" if top else "")
    for source in ("unusual_whales", "alpha_vantage"):
        if f"{source}_requests" in fetcher:
            requests = int(fetcher[f"{source}_requests"])
            throttled = int(fetcher.get(f"{source}_responses_429", 0))
            errors = int(fetcher.get(f"{source}_errors_total", 0))
            out[f"fetcher {source}"] = f"requests {requests}, 429s {throttled}, errors {errors}"
    if "uw_socket_connects" in fetcher:
        out["fetcher UW socket"] = f"connects {int(fetcher['uw_socket_connects'])}"
    return out


def _decision_counts(beats: dict[str, dict[str, float]]) -> dict[str, int]:
    """Risk decisions by reason code, from the risk gate's heartbeat (not by re-reading the audit stream)."""
    risk = beats.get(RISK, {})
    return {k.removeprefix("decision_"): int(v) for k, v in risk.items() if k.startswith("decision_")}


def _progress_line(progress: dict[str, float], summary: dict[str, Any], wall_s: float) -> str:
    from datetime import UTC, datetime

    from quanticity.calendar import ET

    sim = datetime.fromtimestamp(progress["sim_now_ns"] / 1e9, tz=UTC).astimezone(ET).strftime("%H:%M:%S ET")
    orders = sum(summary["orders"].values())
    pnl = summary["realized_pnl"] + summary["unrealized_pnl"]
    return (
        f"[bold]{sim}[/] {wall_s:4.0f}s ev {progress['events']:,.0f} sig {summary['signals']} "
        f"ord {orders} fill {summary['fills']} P&L {pnl:+,.0f} rst {sum(summary['restarts'].values())} "
        f"{summary['trading_state']}"
    )


def command_run(config: QuanticityConfig, args: argparse.Namespace, console: Console) -> int:
    """``quanticity run``: the whole system on one simulated session; returns the exit code."""
    spec = plan_session(
        config.system.session,
        args.seed if args.seed is not None else config.system.system.seed,
        speed=args.speed,
        duration_s=args.duration,
        lockstep=bool(getattr(args, "lockstep", False)),
    )
    run_dir = Path("var/runs") / time.strftime("%Y%m%dT%H%M%S")
    twins, config, env = embedded_twins(config, args, run_dir)  # Telegram/Discord/Anthropic twins on 127.0.0.1
    session = Session(config, spec, run_dir)
    session.env = env
    console.print(
        f"[bold]Quanticity[/] simulated session {spec.session_date}, speed "
        f"{'unpaced' if not spec.paced else f'{spec.speed:g}x'}{', lock-step' if spec.lockstep else ''}, "
        f"seed {spec.seed}, "
        f"{len(config.system.universe.symbols)} symbols, venue {config.system.venue.kind}"
    )
    started = time.monotonic()
    try:
        session.start()
        console.print(
            f"Redis {session.redis_url} | Ray dashboard {session.dashboard_url} | metrics "
            f"http://{config.system.metrics.host}:{config.system.metrics.port}/metrics"
        )
        client = connect(session.redis_url)
        feed = ray.get_actor(FEED, namespace=config.system.system.namespace)
        progress: dict[str, float] = {}
        with Live(console=console, refresh_per_second=4, transient=False) as live:
            while True:
                try:
                    progress = ray.get(feed.progress.remote(), timeout=10)
                except Exception:  # the feed is being restarted by the supervisor
                    feed = ray.get_actor(FEED, namespace=config.system.system.namespace)
                    time.sleep(0.5)
                    continue
                summary = collect_summary(client)
                live.update(_progress_line(progress, summary, time.monotonic() - started))
                if progress.get("done"):
                    break
                time.sleep(0.5)
        if not spec.lockstep:  # lock-step: every stage was awaited; the final tick's exits stay unjudged
            wait_until_quiet(client)
        console.print("Session over: delivering the delayed tiers still owed to subscribers…")
        owed = drain_deliveries(config, spec, client)
        if owed:
            console.print(f"[yellow]{owed} deliveries still scheduled (kept in Redis) when the wait ran out[/]")
        ray.get(session.supervisor.check_children.remote())  # final heartbeats into Redis
        summary = collect_summary(client)
        _print_summary(console, summary, session, config, time.monotonic() - started)
        print_ops_summary(console, read_heartbeats(client), config, twins)
        return 0
    finally:
        session.stop()
        if twins is not None:
            twins.stop()


def _print_summary(
    console: Console, summary: dict[str, Any], session: Session, config: QuanticityConfig, wall_s: float
) -> None:
    table = Table(title="Session summary", show_header=False)
    table.add_row("market events", f"{summary['events']:,}")
    table.add_row("signals", str(summary["signals"]))
    table.add_row("risk decisions", ", ".join(f"{k} {v}" for k, v in sorted(summary["risk_decisions"].items())) or "-")
    table.add_row("orders", ", ".join(f"{k} {v}" for k, v in sorted(summary["orders"].items())) or "0")
    table.add_row("fills", str(summary["fills"]))
    table.add_row("realized P&L", f"{summary['realized_pnl']:+,.2f}")
    table.add_row("unrealized P&L", f"{summary['unrealized_pnl']:+,.2f}")
    table.add_row("open positions", ", ".join(f"{k} x{v}" for k, v in summary["open_positions"].items()) or "none")
    table.add_row("restarts", str(sum(summary["restarts"].values())))
    table.add_row("trading state", summary["trading_state"])
    table.add_row("venue", config.system.venue.kind)
    for label, value in summary.get("venue", {}).items():
        table.add_row(label, value)
    table.add_row("wall time", f"{wall_s:.1f} s")
    table.add_row("Ray dashboard", session.dashboard_url)
    table.add_row("channel log", str(Path(config.distribution.log_dir).resolve()))
    table.add_row("Redis data", str(session.run_dir / "redis"))
    console.print(table)


# --- status --------------------------------------------------------------------------------
def command_status(config: QuanticityConfig, console: Console) -> int:
    """``quanticity status``: topology, heartbeat ages and trading state of the running system."""
    if not STATE_FILE.exists() and not config.system.redis.url:
        console.print("no running system found (var/current.json missing; is `quanticity run` running?)")
        return 1
    state = json.loads(STATE_FILE.read_text()) if STATE_FILE.exists() else {}
    client = connect(config.system.redis.url or state["redis_url"])
    try:
        client.ping()
    except redis.RedisError as exc:
        console.print(f"Redis not reachable: {exc}")
        return 1
    topology = {n: json.loads(v) for n, v in client.hgetall(keys.TOPOLOGY).items()}
    beats = read_heartbeats(client)
    restarts = client.hgetall(keys.RESTARTS)
    now = time.time_ns()
    table = Table(title="Quanticity actors")
    for column in ("actor", "kind", "node", "heartbeat age", "events", "errors", "restarts"):
        table.add_column(column)
    for name in sorted(set(topology) | set(beats)):
        beat = beats.get(name, {})
        age = f"{(now - int(beat['ts'])) / 1e9:.1f}s" if beat else "none"
        node = (topology.get(name, {}).get("node") or "-")[:8]
        table.add_row(
            name.removeprefix("quanticity:"),
            topology.get(name, {}).get("kind", beat.get("kind", "?")),
            node,
            age,
            str(beat.get("events", "-")),
            str(beat.get("errors", "-")),
            restarts.get(name, "0"),
        )
    console.print(table)
    summary = collect_summary(client)
    console.print(
        f"trading state: [bold]{summary['trading_state']}[/] | fills {summary['fills']} | "
        f"realized P&L {summary['realized_pnl']:+,.2f} | dashboard {state.get('dashboard', '?')}"
    )
    try:
        ray.init(address="auto", namespace=config.system.system.namespace, log_to_driver=False, configure_logging=False)
        sup = ray.get_actor(SUPERVISOR, namespace=config.system.system.namespace)
        console.print(f"supervisor: {ray.get(sup.info.remote(), timeout=5)}")
    except Exception as exc:  # status still useful from Redis alone
        console.print(f"supervisor not reachable through Ray: {type(exc).__name__}")
    finally:
        if ray.is_initialized():
            ray.shutdown()
    return 0


# --- emergency -----------------------------------------------------------------------------
def command_emergency(config: QuanticityConfig, args: argparse.Namespace, console: Console) -> int:
    """``quanticity flatten --yes`` / ``quanticity cancel-all``: ask the running root supervisor.

    The supervisor sets HALTED through the risk gate first, then has the router cancel (and, for
    flatten, close) everything; the outcome is printed and audited in ``system:emergency:events``.
    """
    action = "flatten" if args.command == "flatten" else "cancel_all"
    if action == "flatten" and not args.yes:
        console.print("refusing to flatten without --yes (it sells every open position at the bid)")
        return 2
    state = json.loads(STATE_FILE.read_text()) if STATE_FILE.exists() else {}
    namespace = state.get("namespace", config.system.system.namespace)
    try:
        ray.init(address="auto", namespace=namespace, log_to_driver=False, configure_logging=False)
        supervisor = ray.get_actor(SUPERVISOR, namespace=namespace)
    except Exception as exc:
        console.print(f"no running system reachable through Ray ({type(exc).__name__}: {exc})")
        if ray.is_initialized():
            ray.shutdown()
        return 1
    try:
        call = supervisor.flatten if action == "flatten" else supervisor.cancel_all
        result = ray.get(call.remote(args.reason), timeout=180)
    finally:
        ray.shutdown()
    console.print_json(json.dumps(result, default=str))
    return 0 if result.get("ok") else 1


def check_venue(config: QuanticityConfig, args: argparse.Namespace) -> None:
    """Refuse a run its venue cannot serve: ``live`` without its credentials, ``tws`` unpaced."""
    if args.command != "run":
        return
    venue = config.system.venue
    if venue.kind == "live":
        check_live_environment(venue, os.environ)
    speed = args.speed if args.speed is not None else config.system.session.speed
    if venue.kind != "sim" and speed <= 0:
        raise ConfigError(
            f"--speed {speed:g}: venue.kind {venue.kind} runs on a paced clock (the TWS simulator or the real "
            "market); use a positive speed, or venue.kind sim for an unpaced run"
        )
    if venue.kind != "sim" and getattr(args, "lockstep", False):
        raise ConfigError(f"--lockstep: the lock-step mode drives the simulated feed; venue.kind is {venue.kind}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``quanticity`` console script."""
    args = _parser().parse_args(argv)
    console = Console()
    overrides: dict[str, dict[str, Any]] = {}
    if getattr(args, "symbols", None):
        chosen = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
        base = load_config(args.config_dir).system.universe
        overrides["system"] = {
            "universe": {
                "zero_dte": [s for s in chosen if s in base.zero_dte],
                "long_dated": [s for s in chosen if s not in base.zero_dte],
            }
        }
    if getattr(args, "live", False):
        overrides.setdefault("system", {})["venue"] = {"kind": "live"}
    try:
        config = load_config(args.config_dir, overrides=overrides)
        args.config_overrides = overrides  # the embedded run reloads with the loopback twins' channels on top
        check_venue(config, args)
    except ConfigError as exc:
        print(f"configuration error\n{exc}", file=sys.stderr)
        return 2
    if args.command == "run":
        return command_run(config, args, console)
    if args.command == "admin":
        return command_admin(" ".join(args.text), args.user_id, args.press)
    if args.command in ("flatten", "cancel-all"):
        return command_emergency(config, args, console)
    return command_status(config, console)


if __name__ == "__main__":
    sys.exit(main())
