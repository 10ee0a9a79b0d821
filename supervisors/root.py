"""The RootSupervisor: builds the actor topology, heartbeats it, restarts what fails.

- Named and detached, restarted by Ray forever (``max_restarts=-1``). Its children are named and
  detached too, so they outlive a supervisor crash; a restarted supervisor re-adopts every child
  that is still alive (looked up by name) instead of creating a second one.
- Every ``heartbeat_interval_s`` it pings all children at once. A dead child (``RayActorError``)
  is recreated under the same name and restores its state from Redis in its constructor; a child
  that misses ``hung_after_missed`` pings in a row is killed and recreated the same way.
- Per-symbol actors are spread over the alive nodes (``supervisors.placement``); when a node is
  lost its actors die with it and are recreated on the remaining nodes.
- ``add_symbol`` / ``remove_symbol`` change the universe at run time; ``set_strategy_enabled``
  (admin ``/strategy``) persists a strategy's on/off flag, which its actor restores when recreated.
- ``flatten`` / ``cancel_all`` are the emergency controls (``quanticity flatten --yes``,
  ``quanticity cancel-all``): trading goes HALTED through the risk gate first, so no new entry can
  be approved while the router cancels and closes; every step is audited.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.admin import AdminActor
from actors.analytics import SymbolAnalyticsActor
from actors.broker import SimBrokerActor
from actors.common import (
    BROKER,
    FEED,
    RISK,
    ROUTER,
    SUPERVISOR,
    analytics_name,
    publisher_name,
    strategy_name,
)
from actors.feed import SimFeedActor
from actors.fetcher import FETCHER, FetcherActor
from actors.ibkr_broker import IbkrBrokerActor
from actors.ibkr_feed import IbkrFeedActor
from actors.ops_control import ADMIN, OVERSEER
from actors.overseer import OverseerActor
from actors.publisher import PublisherActor
from actors.risk import RiskGateActor
from actors.router import OrderRouterActor
from actors.strategy import StrategyActor
from actors.venues import VENUES, VenueHostActor
from quanticity import keys
from quanticity.config.models import QuanticityConfig
from quanticity.observability.logs import configure_logging
from quanticity.session import RunSpec
from quanticity.store.alerts import append_alert
from quanticity.store.client import connect
from supervisors.placement import assign_symbols

ACTOR_CLASSES = {
    "broker": SimBrokerActor,
    "router": OrderRouterActor,
    "risk": RiskGateActor,
    "publisher": PublisherActor,
    "strategy": StrategyActor,
    "analytics": SymbolAnalyticsActor,
    "feed": SimFeedActor,
    "overseer": OverseerActor,
    "admin": AdminActor,
    "venues": VenueHostActor,
    "fetcher": FetcherActor,
}
#: the venue clients of ``venue.kind`` tws/live, under the same names and kinds as the simulated ones
IBKR_CLASSES = {"feed": IbkrFeedActor, "broker": IbkrBrokerActor}
EMERGENCY_TIMEOUT_S = 60.0
"""How long an emergency step may take before it is reported as failed."""
#: creation order: downstream first, so nothing sends to an actor that does not exist yet
CREATION_ORDER = [
    "venues",
    "broker",
    "router",
    "risk",
    "publisher",
    "overseer",
    "admin",
    "strategy",
    "analytics",
    "feed",
    "fetcher",
]
#: kinds created without waiting for each other (all are ready before the feed is created)
PARALLEL_KINDS = frozenset({"publisher", "overseer", "admin", "strategy", "analytics"})
#: kinds that read secrets (bot tokens, webhook URLs, the model key) from their environment
SECRET_KINDS = frozenset({"publisher", "overseer", "admin"})


@dataclass
class Child:
    """One supervised actor."""

    name: str
    kind: str
    key: str | None = None  # the symbol (analytics) or channel (publisher)
    node: str | None = None
    handle: Any = None
    missed: int = 0


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0, max_concurrency=16)
class RootSupervisor:
    """See the module docstring."""

    def __init__(
        self, config: QuanticityConfig, spec: RunSpec, redis_url: str, env: dict[str, str] | None = None
    ) -> None:
        self.config = config
        self.spec = spec
        self.redis_url = redis_url
        # environment variables (secrets of the channels, the admin bot and the model) given to the
        # children of SECRET_KINDS; None = they inherit the cluster's environment
        self.env = dict(env or {})
        self.namespace = config.system.system.namespace
        self.redis = connect(redis_url)
        self.log = configure_logging(config.system.system.log_level, "supervisor")
        self.children: dict[str, Child] = {}
        self.adopted: list[str] = []
        self.created: list[str] = []
        self._planned_symbols: list[str] = []  # the symbol actors a build creates (set by _build)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self.incarnation = int(self.redis.hincrby(keys.RUN_INFO, "supervisor_incarnation", 1))
        self._build()
        if self.redis.hget(keys.RUN_INFO, "started") == "1":
            self._start_feed()
        self._monitor = threading.Thread(target=self._monitor_loop, name="supervisor-monitor", daemon=True)
        self._monitor.start()

    # --- topology -------------------------------------------------------------------------
    def _desired(self) -> list[Child]:
        stored = self.redis.hgetall(keys.TOPOLOGY)
        if stored:
            return [
                Child(name=n, kind=s["kind"], key=s.get("key"), node=s.get("node"))
                for n, s in ((n, json.loads(v)) for n, v in stored.items())
            ]
        cfg = self.config
        wanted = [Child(BROKER, "broker"), Child(ROUTER, "router"), Child(RISK, "risk")]
        wanted += [Child(publisher_name(c), "publisher", c) for c in cfg.distribution.channels]
        if cfg.ops.overseer_enabled:
            wanted.append(Child(OVERSEER, "overseer"))
        if cfg.ops.admin_enabled:
            wanted.append(Child(ADMIN, "admin"))
        if cfg.trading.strategy.enabled:
            wanted.append(Child(strategy_name(cfg.trading.strategy.name), "strategy", cfg.trading.strategy.name))
        wanted += [Child(strategy_name(s.name), "strategy", s.name) for s in cfg.trading.strategies.enabled()]
        wanted += [Child(analytics_name(s), "analytics", s) for s in cfg.system.universe.symbols]
        wanted.append(Child(FEED, "feed"))
        venue = cfg.system.venue
        if venue.kind == "tws":  # the loopback TWS simulator and UW/AV twins, before their clients
            wanted.insert(0, Child(VENUES, "venues"))
        if venue.kind != "sim" and venue.fetcher:
            wanted.append(Child(FETCHER, "fetcher"))
        return wanted

    def _build(self) -> None:
        resumed = bool(self.redis.exists(keys.TOPOLOGY))
        order = self._creation_order()
        desired = sorted(self._desired(), key=lambda c: order.index(c.kind))
        self._planned_symbols = [c.key for c in desired if c.kind == "analytics" and c.key]
        self._place([c for c in desired if c.kind == "analytics"])
        starting: list[Child] = []
        for child in desired:
            if child.kind == "feed" and starting:  # the feed sends to them: they must be up first
                self._wait_ready(starting)
                starting = []
            try:
                child.handle = ray.get_actor(child.name, namespace=self.namespace)
                ray.get(child.handle.ping.remote(), timeout=self.config.system.supervisor.ping_timeout_s)
                self.adopted.append(child.name)
                self._event("adopt", child)
            except (ValueError, RayActorError, GetTimeoutError):
                if resumed and child.kind == "analytics" and child.node not in set(self._alive_nodes()):
                    self._replace_on_alive_node(child)
                # the order path (broker → router → risk) starts in order, downstream first: the
                # router reconciles with the broker as it starts. The rest call their peers only
                # once the session runs, so they start in parallel and are awaited before the feed
                parallel = child.kind in PARALLEL_KINDS
                self._create(child, wait=not parallel)
                if parallel:
                    starting.append(child)
                self.created.append(child.name)
                if resumed:  # it ran before this incarnation and is gone: that is a restart
                    self.redis.hincrby(keys.RESTARTS, child.name, 1)
                    self._event("restart", child, "missing at adoption")
            self.children[child.name] = child
            self._save_topology(child)
        if starting:
            self._wait_ready(starting)

    def _creation_order(self) -> list[str]:
        """:data:`CREATION_ORDER`, except that in ``tws`` the IBKR feed comes right after the venues.

        The hosted market opens only once the feed has subscribed, and the feed connects as soon
        as it is up (:meth:`IbkrFeedActor.ping`): created early, its worker starts while the CPUs
        are still idle and it qualifies and subscribes while the other ~30 actors start, instead
        of after them. It delivers nothing before :meth:`start` (after the whole build), and the
        market does not step before then, so no data is lost to actors not created yet.
        """
        order = list(CREATION_ORDER)
        if self.config.system.venue.kind == "tws":
            order.remove("feed")
            order.insert(order.index("venues") + 1, "feed")
        return order

    def _alive_nodes(self) -> list[str]:
        return [n["NodeID"] for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]

    def _place(self, symbol_children: list[Child]) -> None:
        """Assign each symbol actor a node (sticky to its current one while that node lives)."""
        if not symbol_children:
            return
        current = {c.key: c.node for c in symbol_children if c.key and c.node}
        assignment = assign_symbols([c.key for c in symbol_children if c.key], self._alive_nodes(), current)
        for child in symbol_children:
            child.node = assignment.get(child.key or "")

    def _wait_name_released(self, name: str, timeout_s: float = 15.0) -> None:
        """A killed actor's name is freed asynchronously; creating too early would fail."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                handle = ray.get_actor(name, namespace=self.namespace)
            except ValueError:
                return
            try:
                ray.kill(handle, no_restart=True)
            except Exception as exc:  # already dying
                self.log.debug("kill while waiting for name", extra={"actor": name, "error": str(exc)})
            time.sleep(0.05)

    def _replace_on_alive_node(self, child: Child) -> None:
        """Pick a new node for ``child`` only; the other symbol actors stay where they run."""
        peers = [c for c in self.children.values() if c.kind == "analytics" and c.key]
        current = {c.key: c.node for c in peers if c is not child and c.node}
        assignment = assign_symbols([c.key for c in peers], self._alive_nodes(), current)
        child.node = assignment.get(child.key or "")

    def _create(self, child: Child, wait: bool = True) -> None:
        cls = ACTOR_CLASSES[child.kind]
        if self.config.system.venue.kind != "sim":
            cls = IBKR_CLASSES.get(child.kind, cls)
        options: dict[str, Any] = {"name": child.name, "namespace": self.namespace, "lifetime": "detached"}
        if child.kind == "analytics" and child.node:
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(child.node, soft=False)
        if self.env and child.kind in SECRET_KINDS:
            options["runtime_env"] = {"env_vars": dict(self.env)}
        args: list[Any] = [child.name, self.config, self.spec, self.redis_url]
        if child.kind in ("analytics", "publisher", "strategy"):
            args.append(child.key)
        if child.kind in ("feed", "venues", "fetcher"):
            # during a build the feed and the venues come before the symbol actors: use the planned
            # universe (run-time additions included, from the saved topology) rather than the config's
            symbols = [c.key for c in self.children.values() if c.kind == "analytics" and c.key]
            args.append(symbols or list(self._planned_symbols or self.config.system.universe.symbols))
        deadline = time.monotonic() + 30
        while True:
            try:
                child.handle = cls.options(**options).remote(*args)
                break
            except ValueError:  # the dead actor's name is not released yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        child.missed = 0
        if wait:
            self._wait_ready([child])
        self._event("create", child)

    def _wait_ready(self, children: list[Child]) -> None:
        """Wait for the constructors (state restore) so peers find ready actors under the names."""
        timeout = self.config.system.supervisor.ping_timeout_s * 2 + len(children)
        refs = {c.name: c.handle.ping.remote() for c in children}
        ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout)
        for name, ref in refs.items():
            if ref not in ready:
                self.log.warning("child not ready after create", extra={"actor": name})
                continue
            try:
                ray.get(ref)
            except RayActorError as exc:
                self.log.warning("child died while starting", extra={"actor": name, "error": str(exc)})

    def _save_topology(self, child: Child) -> None:
        self.redis.hset(
            keys.TOPOLOGY, child.name, json.dumps({"kind": child.kind, "key": child.key, "node": child.node})
        )

    def _event(self, action: str, child: Child, detail: str = "") -> None:
        self.redis.xadd(
            keys.SUPERVISOR_EVENTS,
            {"action": action, "actor": child.name, "detail": detail, "ts": time.time_ns()},
            maxlen=10_000,
            approximate=True,
        )
        self.log.info(f"{action} {child.name}", extra={"action": action, "actor": child.name, "detail": detail})

    # --- health ---------------------------------------------------------------------------
    def _monitor_loop(self) -> None:
        interval = self.config.system.supervisor.heartbeat_interval_s
        while not self._stop.wait(interval):
            try:
                self.check_children()
            except Exception:  # the monitor must never die: log and keep watching
                self.log.exception("health check failed")

    def check_children(self) -> dict[str, str]:
        """Ping every child once; restart the dead and the hung. Returns name → verdict."""
        sup = self.config.system.supervisor
        with self._lock:
            children = list(self.children.values())
        refs = {c.name: c.handle.ping.remote() for c in children if c.handle is not None}
        ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=sup.ping_timeout_s)
        ready_set = set(ready)
        verdicts: dict[str, str] = {}
        for child in children:
            ref = refs.get(child.name)
            if ref is None or ref not in ready_set:
                child.missed += 1
                verdicts[child.name] = f"missed {child.missed}"
                if child.missed >= sup.hung_after_missed:
                    self._restart(child, "hung")
                    verdicts[child.name] = "restarted (hung)"
                continue
            try:
                ray.get(ref)
                child.missed = 0
                verdicts[child.name] = "ok"
            except RayActorError:
                self._restart(child, "dead")
                verdicts[child.name] = "restarted (dead)"
            except Exception as exc:  # the child answered "unhealthy" (e.g. a stalled loop): treat as a miss
                child.missed += 1
                verdicts[child.name] = f"unhealthy {child.missed}: {exc.__class__.__name__}"
                if child.missed >= sup.hung_after_missed:
                    self._restart(child, "unhealthy")
                    verdicts[child.name] = "restarted (unhealthy)"
        return verdicts

    def _restart(self, child: Child, why: str) -> None:
        with self._lock:
            if child.handle is not None:
                try:
                    ray.kill(child.handle, no_restart=True)
                except Exception as exc:  # already gone
                    self.log.debug("kill before restart failed", extra={"actor": child.name, "error": str(exc)})
            self._wait_name_released(child.name)
            if child.kind == "analytics" and child.node not in set(self._alive_nodes()):
                self._replace_on_alive_node(child)
            self._create(child)
            self._save_topology(child)
            self.redis.hincrby(keys.RESTARTS, child.name, 1)
            self._event("restart", child, why)
            if child.kind == "feed" and self.redis.hget(keys.RUN_INFO, "started") == "1":
                self._start_feed()

    # --- run control ----------------------------------------------------------------------
    def _start_feed(self) -> None:
        feed = self.children.get(FEED)
        if feed is not None and feed.handle is not None:
            feed.handle.start.remote()

    def start(self) -> bool:
        """Start the session (the feed begins stepping); remembered across supervisor restarts."""
        self.redis.hset(keys.RUN_INFO, "started", "1")
        self._start_feed()
        return True

    def handle(self, name: str) -> Any:
        """Handle of a child (tests and the CLI use it)."""
        return self.children[name].handle

    def topology(self) -> dict[str, dict[str, Any]]:
        """name → kind, key, node, actor id, missed pings."""
        with self._lock:
            return {
                c.name: {
                    "kind": c.kind,
                    "key": c.key,
                    "node": c.node,
                    "missed": c.missed,
                    "actor_id": c.handle._actor_id.hex() if c.handle is not None else None,
                }
                for c in self.children.values()
            }

    def info(self) -> dict[str, Any]:
        """What this incarnation did at start: adopted vs created children."""
        return {"incarnation": self.incarnation, "adopted": list(self.adopted), "created": list(self.created)}

    def add_symbol(self, symbol: str) -> str:
        """Create the symbol's analytics actor, then have the feed generate it.

        A simulated market (``sim``, ``tws``) can only simulate what market.yaml describes: any
        other symbol is refused with a KeyError naming it before an actor is created. In ``tws``
        the hosted simulator lists the symbol before the IBKR feed qualifies and subscribes it.
        """
        name = analytics_name(symbol)
        venue = self.config.system.venue.kind
        if venue != "live" and symbol not in self.config.market.underlyings:
            raise KeyError(f"symbol: {symbol} has no entry under underlyings in market.yaml")
        with self._lock:
            if name in self.children:
                return name
            if venue == "tws":
                ray.get(self.children[VENUES].handle.add_symbol.remote(symbol))
            child = Child(name, "analytics", symbol)
            peers = [c for c in self.children.values() if c.kind == "analytics"]
            self._place([*peers, child])
            self._create(child)
            self.children[name] = child
            self._save_topology(child)
        ray.get(child.handle.ping.remote())
        try:
            ray.get(self.children[FEED].handle.add_symbol.remote(symbol))
        except Exception:  # refused by the venue (no contract): leave no half-added symbol behind
            self.remove_symbol(symbol)
            raise
        self._tell_fetcher("add_symbol", symbol)
        return name

    def _tell_fetcher(self, method: str, symbol: str) -> None:
        """Pass a universe change to the UW/AV fetcher, if the venue has one.

        Market data does not depend on it, so a fetcher that cannot be told is logged, not fatal:
        when the supervisor next (re)creates it, it gets the universe of the analytics actors.
        """
        fetcher = self.children.get(FETCHER)
        if fetcher is None or fetcher.handle is None:
            return
        timeout_s = self.config.system.supervisor.ping_timeout_s
        try:
            ray.get(getattr(fetcher.handle, method).remote(symbol), timeout=timeout_s)
        except Exception as exc:
            self.log.warning("fetcher not told of a universe change", extra={"symbol": symbol, "error": str(exc)})

    def remove_symbol(self, symbol: str) -> bool:
        """Stop generating ``symbol`` and retire its analytics actor."""
        name = analytics_name(symbol)
        with self._lock:
            child = self.children.pop(name, None)
            if child is None:
                return False
            ray.get(self.children[FEED].handle.remove_symbol.remote(symbol))
            venues = self.children.get(VENUES)
            if venues is not None and venues.handle is not None:  # tws: the market stops quoting it
                ray.get(venues.handle.remove_symbol.remote(symbol))
            self.redis.hdel(keys.TOPOLOGY, name)
            ray.kill(child.handle, no_restart=True)
            self._event("remove", child)
        self._tell_fetcher("remove_symbol", symbol)
        return True

    # --- strategies -----------------------------------------------------------------------
    def set_strategy_enabled(self, strategy: str, enabled: bool) -> bool:
        """Enable or disable a running strategy (admin ``/strategy``); False when none has that name.

        The flag is written to Redis first — the strategy actor restores it in its constructor, so a
        restart keeps a disabled strategy disabled — then told to the live actor. An actor that does
        not answer (being restarted) picks the flag up when it comes back, so that is not an error.
        """
        with self._lock:
            child = next((c for c in self.children.values() if c.kind == "strategy" and c.key == strategy), None)
        if child is None:
            return False
        self.redis.hset(keys.STRATEGY_ENABLED, strategy, "1" if enabled else "0")
        self._event("strategy_enabled" if enabled else "strategy_disabled", child)
        if child.handle is not None:
            try:
                ray.get(child.handle.set_enabled.remote(enabled), timeout=self.config.system.supervisor.ping_timeout_s)
            except Exception as exc:
                self.log.warning(
                    "strategy not told; it restores the flag when restarted",
                    extra={"strategy": strategy, "error": f"{type(exc).__name__}: {exc}"},
                )
        return True

    # --- emergency ----------------------------------------------------------------------
    def flatten(self, reason: str) -> dict[str, Any]:
        """Emergency flatten: HALTED, then cancel every working order and close every position."""
        return self._emergency("flatten", reason)

    def cancel_all(self, reason: str) -> dict[str, Any]:
        """Emergency cancel-all: HALTED, then cancel every working order (positions stay open)."""
        return self._emergency("cancel_all", reason)

    def _emergency(self, action: str, reason: str) -> dict[str, Any]:
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"reason: {reason!r} must name why ({action})")
        emergency_id = f"{action}:{time.time_ns()}"
        timeout = EMERGENCY_TIMEOUT_S
        result: dict[str, Any] = {"emergency_id": emergency_id, "action": action, "reason": reason}
        self._audit_emergency(emergency_id, "requested", reason)
        try:  # first, so nothing new is approved while the book is being closed
            risk = ray.get_actor(RISK, namespace=self.namespace)
            result["trading_state"] = ray.get(
                risk.set_state.remote("HALTED", f"emergency {action}: {reason}"), timeout=timeout
            )
        except Exception as exc:  # proceed: an emergency does not wait for a gate that does not answer
            result["trading_state"] = f"not confirmed ({type(exc).__name__}: {exc})"
            self.log.error("emergency: HALTED not confirmed", extra={"error": str(exc)})
        self._audit_emergency(emergency_id, "halted", str(result["trading_state"]))
        try:
            router = ray.get_actor(ROUTER, namespace=self.namespace)
            if action == "flatten":
                result.update(ray.get(router.flatten.remote(emergency_id, reason), timeout=timeout))
            else:
                result["cancelled"] = ray.get(router.cancel_all.remote(), timeout=timeout)
            result["ok"] = True
        except Exception as exc:
            result["ok"] = False
            result["error"] = f"{type(exc).__name__}: {exc}"
            self.log.error("emergency action failed", extra={"action": action, "error": str(exc)})
        self._audit_emergency(emergency_id, "done" if result["ok"] else "failed", json.dumps(result, default=str))
        append_alert(
            self.redis,
            "EMERGENCY",
            f"{action} ({reason}): {json.dumps(result, default=str)}",
            time.time_ns(),
            "supervisor",
        )
        return result

    def _audit_emergency(self, emergency_id: str, step: str, detail: str) -> None:
        self.redis.xadd(
            keys.EMERGENCY_EVENTS,
            {"emergency_id": emergency_id, "step": step, "detail": detail, "ts": time.time_ns()},
            maxlen=10_000,
            approximate=True,
        )

    def shutdown(self) -> bool:
        """Stop monitoring and kill every child (end of session)."""
        self._stop.set()
        with self._lock:
            for child in self.children.values():
                if child.handle is not None:
                    try:
                        ray.kill(child.handle, no_restart=True)
                    except Exception as exc:
                        self.log.debug("kill at shutdown failed", extra={"actor": child.name, "error": str(exc)})
        return True


def supervisor_options(namespace: str) -> dict[str, Any]:
    """Options of the root supervisor actor: named, detached, preferably on the launching (head) node.

    On a cluster the head node lives as long as the cluster does; workers come and go with the
    autoscaler, so the supervisor prefers not to share their fate (soft: it may still move).
    """
    node = ray.get_runtime_context().get_node_id()
    return {
        "name": SUPERVISOR,
        "namespace": namespace,
        "lifetime": "detached",
        "get_if_exists": True,
        "scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=True),
    }
