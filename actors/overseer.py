"""Overseer actor: a thin shell running :class:`quanticity.overseer.Overseer` on the session clock (SPEC §12).

A round runs every ``ops.overseer.check_interval_s`` of SIMULATED time: the loop polls the shared
session clock (``ActorShell.clock``) and starts a round once that much simulated time has passed,
so a paced run at 80× checks every 30/80 wall seconds and an unpaced test run checks as fast as its
clock moves. It acts only through two doors: :class:`~actors.ops_control.RiskGateControl` (the risk
actor's ``set_state`` — a CRITICAL finding halts trading) and
:class:`~quanticity.overseer.alerts.RedisAdminAlerts` (``system:alerts``, which the admin actor pushes
to Telegram). The model budget lives in Redis, so a restarted overseer does not get a fresh budget.

Two stream followers run beside the rounds, each on its own persisted cursor: post-fill explanations
(``trades:fills``) and the advisory pre-trade review of complex entries (``signals:stream``,
:mod:`quanticity.overseer.reviews`), which never holds an order back.

At the end of the session (once per session date, remembered in Redis) it writes the daily
summary — Claude's, or the template's — to ``system:alerts`` (level ``SUMMARY``) and appends it to
``<distribution.log_dir>/<ops.summary_file>``; ``report_now`` (the admin's ``/report now``) does the
same on demand.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import ray

from actors.common import STALL_LIMIT_S, ActorShell, StreamFollower
from actors.ops_control import RiskGateControl
from actors.venue_link import fetch_clock
from quanticity import keys
from quanticity.clock import Clock
from quanticity.config.models import QuanticityConfig
from quanticity.messages import Fill, decode
from quanticity.overseer.alerts import RedisAdminAlerts
from quanticity.overseer.budget import Budget, RedisBudgetStore
from quanticity.overseer.config import for_run_speed
from quanticity.overseer.counters import Counters
from quanticity.overseer.explanations import explain_opening_fill
from quanticity.overseer.model import ModelGateway, build_client
from quanticity.overseer.narratives import ClosedTrade, Narrator
from quanticity.overseer.reader import RedisSnapshotReader
from quanticity.overseer.reviews import SignalReviewer
from quanticity.overseer.service import Overseer
from quanticity.overseer.sources import load_source_file, uw_source_path
from quanticity.session import RunSpec

CALL_TIMEOUT_S = 60.0
ROUND_LOG_SIZE = 256
SUMMARY_DONE = keys.OVERSEER_SUMMARY_DONE
"""Hash: session date → 1 once the end-of-session summary went out (a restart does not repeat it)."""
MAX_POLL_S = 1.0
"""Longest wall pause between two looks at the session clock."""


def closed_trades(fills: list[tuple[str, dict[str, str]]]) -> list[ClosedTrade]:
    """The exits of the day (fills that realized P&L), labelled like ``SPY 450C``; malformed entries skipped."""
    trades = []
    for _, fields in fills:
        try:
            realized = float(fields.get("realized", 0.0))
            if realized == 0.0:
                continue
            fill = decode(fields["fill"], Fill)
        except (KeyError, ValueError):
            continue
        contract = fill.contract
        label = f"{contract.underlying} {contract.strike:g}{contract.right.value[:1]}"
        trades.append(ClosedTrade(label, realized))
    return trades


@ray.remote(num_cpus=0, max_restarts=0, max_concurrency=4)
class OverseerActor(ActorShell):
    """Shell over :class:`Overseer` and :class:`Narrator`: an event-loop thread runs the rounds."""

    kind = "overseer"

    def __init__(self, name: str, config: QuanticityConfig, spec: RunSpec, redis_url: str) -> None:
        super().__init__(name, config, spec, redis_url)
        cfg = for_run_speed(config.ops.overseer, spec.speed if spec.paced else 1.0)
        self.counters = Counters()
        client = build_client(cfg.model)
        self.model_keyed = client is not None
        gateway = ModelGateway(
            cfg.model, client, Budget(cfg.model, RedisBudgetStore(self.redis), self.clock), self.counters
        )
        venue = config.system.venue
        # the UW keys come from the fetcher's own source YAML; without a fetcher nothing refreshes them
        fetching = venue.kind != "sim" and venue.fetcher
        uw_path = uw_source_path(venue.sources) if fetching or cfg.uw_without_fetcher else None
        uw = load_source_file(uw_path) if uw_path is not None else None
        # the clock the fetcher stamps with (actors/fetcher.py): the wall live, the hosted market's in tws
        uw_clock: Clock | None = fetch_clock(venue.kind == "live", self.redis, spec.sim_start_ns) if fetching else None
        reader = RedisSnapshotReader(
            self.redis, cfg, self.clock, self._symbols, self.counters, uw=uw, uw_path=str(uw_path), uw_clock=uw_clock
        )
        self.reader = reader
        alerts = RedisAdminAlerts(self.redis, self.clock)
        self.overseer = Overseer(cfg, reader, gateway, RiskGateControl(self.peers), alerts, self.clock, self.counters)
        self.narrator = Narrator(cfg, gateway, self.counters)
        self.alerts = alerts
        self.interval_ns = int(cfg.check_interval_s * 1e9)
        # wall pause between looks at the clock: a tenth of the check period at the run's speed
        self.poll_s = min(MAX_POLL_S, cfg.check_interval_s / spec.speed / 10) if spec.paced else 0.05
        self.summary_path = Path(config.distribution.log_dir) / config.ops.summary_file
        self.last_round_sim_ns: int | None = None
        self.rounds: deque[dict[str, Any]] = deque(maxlen=ROUND_LOG_SIZE)
        self.loop_wall_ns = 0
        self._stop = asyncio.Event()
        self.loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self.loop.run_forever, name="overseer-loop", daemon=True)
        self._loop_thread.start()
        self._task = asyncio.run_coroutine_threadsafe(self._watch(), self.loop)
        self.explainer = (
            StreamFollower(
                self.redis, keys.FILLS_STREAM, keys.OVERSEER_EXPLAIN_CURSOR, self._explain, self.log, "overseer-explain"
            )
            if cfg.explain_fills
            else None
        )
        self.reviewer = SignalReviewer(cfg, self.narrator, alerts, self.counters)
        self.review_follower = (
            StreamFollower(
                self.redis, keys.SIGNALS_STREAM, keys.OVERSEER_REVIEW_CURSOR, self._review, self.log, "overseer-review"
            )
            if cfg.review_enabled
            else None
        )

    def _review(self, entry_id: str, fields: dict[str, str]) -> None:
        """Advisory review of a complex entry signal (model, else the rule flags) to the admin alerts.

        Runs on its own follower thread, beside the risk gate's consumer of the same stream: it
        never holds an order back. A failure or timeout is counted and the signal passed over.
        """
        try:
            now = self.clock.now_ns()
            future = asyncio.run_coroutine_threadsafe(self.reviewer.on_entry(fields, now), self.loop)
            future.result(CALL_TIMEOUT_S)
        except Exception as exc:  # Redis trouble, a timeout: never stop following
            self.errors += 1
            self.counters.add("reviews.failed")
            self.log.warning("signal not reviewed", extra={"entry": entry_id, "error": f"{type(exc).__name__}: {exc}"})

    def _explain(self, entry_id: str, fields: dict[str, str]) -> None:
        """Explain a position-opening fill for premium subscribers (model, else the template).

        Runs on the follower thread and waits for the event loop, which bounds the model call by
        the gateway's timeout; a failure is counted and the fill is passed over — the premium
        alert itself never depends on the explanation.
        """
        try:
            fill = decode(fields["fill"], Fill)
            future = asyncio.run_coroutine_threadsafe(
                explain_opening_fill(self.redis, self.narrator, fill, fields, time.time_ns()), self.loop
            )
            event = future.result(CALL_TIMEOUT_S)
        except Exception as exc:  # a bad record, Redis trouble, a timeout: never stop following
            self.errors += 1
            self.counters.add("explanations.failed")
            self.log.warning("fill not explained", extra={"entry": entry_id, "error": f"{type(exc).__name__}: {exc}"})
            return
        if event is not None:
            self.counters.add(f"explanations.{event.source}")

    def _symbols(self) -> list[str]:
        """The symbols the reader checks: the live universe from the topology, else the configured one."""
        try:
            topology = self.redis.hgetall(keys.TOPOLOGY)
        except Exception:  # the reader counts its own failures; fall back to the config
            topology = {}
        live = sorted(
            n.removeprefix("quanticity:analytics:") for n in topology if n.startswith("quanticity:analytics:")
        )
        return live or list(self.config.system.universe.symbols)

    async def _watch(self) -> None:
        """Start a round whenever ``check_interval_s`` of simulated time has passed; summarise at the end."""
        while not self._stop.is_set():
            self.loop_wall_ns = time.time_ns()
            try:
                now = await asyncio.to_thread(self.clock.now_ns)
                # after the session's last step nothing is expected to update (the clock only runs on
                # for the delayed subscriber tiers): staleness then is the close, not an anomaly
                in_session = now < self.spec.sim_end_ns
                due = self.last_round_sim_ns is None or now - self.last_round_sim_ns >= self.interval_ns
                if in_session and due:
                    self.last_round_sim_ns = now
                    started = time.perf_counter()
                    outcome = await self.overseer.check_once()
                    took = time.perf_counter() - started
                    self.latency.add(took)
                    self.rounds.append(
                        {
                            "at_s": (now - self.spec.sim_start_ns) / 1e9,
                            "wall_s": took,
                            "findings": [f.key for f in outcome.findings],
                            "severity": outcome.severity.value,
                            "source": outcome.source,
                            "action": outcome.action,
                            "fallback": outcome.fallback_reason,
                        }
                    )
                    self.events += 1
                    if outcome.action in ("halt", "alert"):
                        self.log.warning(
                            "overseer acted",
                            extra={
                                "action": outcome.action,
                                "severity": outcome.severity.value,
                                "source": outcome.source,
                            },
                        )
                if now >= self.spec.sim_end_ns - self.spec.step_ns:
                    await self._session_summary()
            except Exception as exc:  # Redis trouble or a failed round: count it, keep watching
                self.errors += 1
                self.counters.add("rounds.failed")
                self.log.warning("overseer round failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            await asyncio.sleep(self.poll_s)

    async def _session_summary(self) -> None:
        """The end-of-session summary, once per session date."""
        first = await asyncio.to_thread(self.redis.hsetnx, SUMMARY_DONE, self.spec.session_date, 1)
        if first:
            await self._summarise("end of session")

    async def _summarise(self, why: str) -> str:
        fills = await asyncio.to_thread(self.redis.xrange, keys.FILLS_STREAM)
        narrative = await self.narrator.daily_summary(closed_trades(fills))
        text = f"Daily summary {self.spec.session_date} ({why}, by {narrative.source}): {narrative.text}"
        await self.alerts.alert("SUMMARY", text)
        await asyncio.to_thread(self._append_summary, text)
        self.counters.add(f"summaries.{narrative.source}")
        return text

    def _append_summary(self, text: str) -> None:
        self.summary_path.parent.mkdir(parents=True, exist_ok=True)
        with self.summary_path.open("a") as handle:
            handle.write(text.replace("\n", " ⏎ ") + "\n")

    def report_now(self) -> str:
        """The admin's ``/report now``: write the summary now; returns where it went."""
        future = asyncio.run_coroutine_threadsafe(self._summarise("on request"), self.loop)
        future.result(CALL_TIMEOUT_S)
        return f"summary sent to the admin chat and {self.summary_path}"

    def round_log(self) -> list[dict[str, Any]]:
        """The last rounds: when (simulated s into the session), how long (wall s), what they found and did."""
        return list(self.rounds)

    def check_now(self) -> dict[str, str]:
        """Run one round at once (drills and tests); returns what it found and did."""
        outcome = asyncio.run_coroutine_threadsafe(self.overseer.check_once(), self.loop).result(CALL_TIMEOUT_S)
        return {
            "severity": outcome.severity.value,
            "source": outcome.source,
            "action": outcome.action,
            "findings": "; ".join(f.line() for f in outcome.findings),
        }

    def stop(self) -> None:
        """Stop the rounds and the explanations."""
        for follower in (self.explainer, self.review_follower):
            if follower is not None:
                follower.stop()
        self.loop.call_soon_threadsafe(self._stop.set)

    def ping(self):  # noqa: ANN201 - same as ActorShell.ping
        stalled_s = (time.time_ns() - self.loop_wall_ns) / 1e9 if self.loop_wall_ns else 0.0
        if stalled_s > STALL_LIMIT_S:
            raise RuntimeError(f"overseer loop stalled for {stalled_s:.0f} s")
        if self.explainer is not None and self.explainer.stalled_for_s() > STALL_LIMIT_S:
            raise RuntimeError(f"explanation follower stalled for {self.explainer.stalled_for_s():.0f} s")
        if self.review_follower is not None and self.review_follower.stalled_for_s() > STALL_LIMIT_S:
            raise RuntimeError(f"review follower stalled for {self.review_follower.stalled_for_s():.0f} s")
        return super().ping()

    def stats(self) -> dict[str, float]:
        values = self.counters.snapshot()
        fallbacks = sum(v for k, v in values.items() if k.startswith("fallback.task."))
        findings = sum(v for k, v in values.items() if k.startswith("findings.severity.") and not k.endswith(".OK"))
        return {
            "checks": values.get("checks", 0.0),
            "findings": findings,
            "model_calls": values.get("model.calls", 0.0),
            "model_ok": values.get("model.ok", 0.0),
            "fallbacks": fallbacks,
            "halts": values.get("actions.halt", 0.0),
            "alerts": sum(v for k, v in values.items() if k.startswith("actions.alert.")),
            "model_keyed": float(self.model_keyed),
            "explanations": sum(v for k, v in values.items() if k.startswith("explanations.") and "failed" not in k),
            "explanations_failed": values.get("explanations.failed", 0.0),
            # UW-vs-IBKR pairs compared (price, and the ATM contracts' IV and spread) and the ones too far apart
            "divergence_pairs": sum(v for k, v in values.items() if k.startswith("reader.pairs.")),
            "divergence_unpaired": sum(v for k, v in values.items() if k.startswith("reader.unpaired.")),
            "reviews": values.get("reviews", 0.0),
            "reviews_red_flag": values.get("reviews.red_flag", 0.0),
            "reviews_failed": values.get("reviews.failed", 0.0) + values.get("reviews.rejected", 0.0),
            # simulated seconds into the session when watching began: a source never seen is stale from here
            "watching_since_s": (self.reader.started_ns - self.spec.sim_start_ns) / 1e9,
        }
