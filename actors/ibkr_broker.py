"""IBKR broker actor: the router's venue over ``ib_async`` (``tws`` and ``live``).

Same name and remote methods as :class:`actors.broker.SimBrokerActor` (``place``, ``cancel``,
``replace``, ``lookup``, ``open_orders``, ``executions``, ``execution_count``, ``quotes``), so
:class:`actors.router.BrokerActorClient` and the router run unchanged. It holds one
:class:`IbkrConnection` (execution client id) and an :class:`IbkrBroker`, whose reconciliation
runs as the connection's sync hook after every (re)connect.

- New executions (de-duplicated by execution id, with TWS's commissions) are pushed to the router
  as they are booked; after a restart every execution TWS reports is pushed again and the router
  drops the ones it booked already — fills are booked once.
- Until the link is READY (connected *and* reconciled) every read raises :class:`BrokerError`: an
  unreconciled venue never looks flat or order-less to the router, which stays not-ready instead.
- ``quotes`` streams ``reqMktData`` for each contract asked about (kept subscribed, so later asks
  are immediate; a new contract waits briefly for its first quote).
- The order-id floor lives in Redis (:data:`quanticity.keys.IBKR_ORDER_ID_FLOOR`): a restarted
  actor never reuses an order id, whatever ``nextValidId`` TWS hands out.
- The heartbeat carries the account's key figures (``account_NetLiquidation``, ``account_BuyingPower``,
  ``account_AvailableFunds``, ``account_ExcessLiquidity``, ``account_TotalCashValue``) as TWS last
  sent them; an unknown figure is left out, never reported as zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import math

import ray
from ib_async import Ticker

from actors.common import ROUTER, ActorShell
from actors.venue_link import VenueClock, resolve_ibkr
from quanticity.config.models import QuanticityConfig
from quanticity.execution.router import BrokerError
from quanticity.messages import BrokerOrder, Fill, Heartbeat, OptionContract, OrderIntent
from quanticity.session import RunSpec
from quanticity.venues.ibkr import IbkrBroker, IbkrConnection, RedisOrderIdFloor
from quanticity.venues.ibkr.broker import ACCOUNT_TAGS
from quanticity.venues.ibkr.contracts import to_ib_option

PUSH_EVERY_S = 0.05
FIRST_QUOTE_WAIT_S = 1.0
MAX_QUOTE_SUBSCRIPTIONS = 80
"""Option quote lines this connection keeps at most (the oldest is cancelled first): TWS caps market data lines."""


@ray.remote(num_cpus=0, max_restarts=0, max_concurrency=32)
class IbkrBrokerActor(ActorShell):
    """Shell over :class:`IbkrBroker` (module docstring). Connects on the first ping."""

    kind = "broker"

    def __init__(self, name: str, config: QuanticityConfig, spec: RunSpec, redis_url: str) -> None:
        super().__init__(name, config, spec, redis_url)
        self.live = config.system.venue.kind == "live"
        self.venue_clock = VenueClock(self.redis, follow_venue=not self.live, start_ns=spec.sim_start_ns)
        self.conn: IbkrConnection | None = None
        self.broker: IbkrBroker | None = None
        self.pushed = 0
        self.connect_failures = 0
        self.quote_lines: dict[str, Ticker] = {}
        self.quote_errors = 0
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle ------------------------------------------------------------------------
    async def ping(self) -> Heartbeat:  # type: ignore[override]
        """Heartbeat; the first one starts connecting (in the background: a ping never waits on TWS)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return super().ping()

    async def _run(self) -> None:
        try:
            settings = await resolve_ibkr(self.config, self.redis)
            floor = RedisOrderIdFloor(self.redis, settings.client_ids.for_role("execution"))
            self.conn = IbkrConnection(settings, "execution", clock=self.venue_clock, order_ids=floor)
            self.broker = IbkrBroker(self.conn)
            await self.conn.start()
        except Exception:
            self.connect_failures += 1
            self.errors += 1
            self.log.exception("ibkr execution link failed to start")
            return
        while True:  # push new executions to the router as they are booked
            self.venue_clock.refresh()
            try:
                self._push()
            except Exception as exc:  # never let the pusher die: the router's tick replays what is missed
                self.errors += 1
                self.log.warning("fill push failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            await asyncio.sleep(PUSH_EVERY_S)

    def _push(self) -> None:
        if self.broker is None or self.broker.execution_count <= self.pushed:
            return
        fills = self.broker.executions(self.pushed)
        router = self.peers.get(ROUTER)
        if router is None:
            return  # the router replays from ``executions`` on its next tick
        router.on_fills.remote(fills)
        self.pushed += len(fills)
        self.events += len(fills)

    def _ready(self, what: str) -> IbkrBroker:
        """The adapter, if the link is READY; BrokerError ("unknown", never "empty") otherwise."""
        if self.broker is None or self.conn is None:
            raise BrokerError(f"{what}: IBKR execution link not started")
        if not self.conn.ready:
            raise BrokerError(f"{what}: not reconciled with IBKR ({self.conn.state.value})")
        return self.broker

    # --- client requests (the router's Broker) --------------------------------------------
    async def place(self, intent: OrderIntent) -> BrokerOrder:
        """Send once by orderRef (IbkrBroker refuses a reference it placed already)."""
        return await self._ready("place").place(intent)

    async def cancel(self, order_ref: str) -> BrokerOrder | None:
        return await self._ready("cancel").cancel(order_ref)

    async def replace(self, order_ref: str, new_price: float) -> BrokerOrder | None:
        return await self._ready("replace").replace(order_ref, new_price)

    async def cancel_all(self) -> int:
        """Emergency global cancel at TWS."""
        return await self._ready("cancel_all").cancel_all()

    async def lookup(self, order_ref: str) -> BrokerOrder | None:
        return self._ready("lookup").lookup(order_ref)

    async def open_orders(self) -> list[BrokerOrder]:
        return self._ready("open_orders").open_orders()

    async def execution_count(self) -> int:
        return self._ready("execution_count").execution_count

    async def executions(self) -> list[Fill]:
        return self._ready("executions").executions()

    async def positions(self) -> dict[str, float]:
        """Net positions by contract key as TWS reports them (BrokerError until answered)."""
        return self._ready("positions").positions()

    async def reconcile(self) -> dict[str, int]:
        """Re-read the account now (drills; the connection does this after every reconnect)."""
        return await self._ready("reconcile").reconcile("manual")

    async def quotes(self, contracts: list[OptionContract]) -> dict[str, tuple[float, float]]:
        """(bid, ask) of each contract TWS quotes; a contract asked about for the first time is
        qualified (ib_async keys tickers by conId) and waited for briefly."""
        if self.conn is None or not self.conn.ib.isConnected():
            raise BrokerError("quotes: IBKR execution link not connected")
        fresh = [c for c in dict.fromkeys(contracts) if c.key not in self.quote_lines]
        if fresh:
            await self._subscribe(self.conn, fresh)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + FIRST_QUOTE_WAIT_S
            waiting = [k for k in (c.key for c in fresh) if k in self.quote_lines]
            while loop.time() < deadline and not all(_two_sided(self.quote_lines[k]) for k in waiting):
                await asyncio.sleep(0.02)
        out = {}
        for contract in contracts:
            ticker = self.quote_lines.get(contract.key)
            if ticker is not None and _two_sided(ticker):
                out[contract.key] = (float(ticker.bid), float(ticker.ask))
        return out

    async def _subscribe(self, conn: IbkrConnection, contracts: list[OptionContract]) -> None:
        """Qualify and stream ``contracts``; one TWS does not know is counted and left out."""
        ib = conn.ib
        wanted = [to_ib_option(c) for c in contracts]
        try:
            await asyncio.wait_for(ib.qualifyContractsAsync(*wanted), conn.config.request_timeout_s)
        except TimeoutError:
            self.quote_errors += 1
            return
        for contract, ib_contract in zip(contracts, wanted, strict=True):
            if not ib_contract.conId:
                self.quote_errors += 1
                continue
            if len(self.quote_lines) >= MAX_QUOTE_SUBSCRIPTIONS:
                oldest = next(iter(self.quote_lines))
                with contextlib.suppress(ConnectionError):
                    ib.cancelMktData(self.quote_lines.pop(oldest).contract)
            self.quote_lines[contract.key] = ib.reqMktData(ib_contract, "", False, False)

    # --- introspection --------------------------------------------------------------------
    def stats(self) -> dict[str, float]:
        out: dict[str, float] = {
            "pushed_fills": self.pushed,
            "quote_lines": len(self.quote_lines),
            "quote_errors": self.quote_errors,
        }
        if self.conn is not None:
            out["link_ready"] = float(self.conn.ready)
            out.update({k: float(v) for k, v in self.conn.health().items() if k.startswith("count_")})
        if self.broker is not None:
            out["executions"] = self.broker.execution_count
            out["open_orders"] = len(self.broker.open_orders())
            out.update({f"ibkr_{k}": float(v) for k, v in self.broker.stats.items()})
            # IB's own account P&L (reqPnL); an unknown value is left out, never reported as a number
            out.update({f"pnl_{name}": float(v) for name, v in self.broker.pnl().items() if v is not None})
            values = self.broker.account_values()
            out.update({f"account_{tag}": values[tag] for tag in ACCOUNT_TAGS if tag in values})
        return out

    async def audit(self) -> dict[str, object]:
        """What the adapter saw: orders placed, duplicate places refused, executions, link state."""
        return {
            "state": self.conn.state.value if self.conn is not None else "NOT_STARTED",
            "placed": self.broker.stats["placed"] if self.broker is not None else 0,
            "duplicate_places": self.broker.stats["duplicate_places"] if self.broker is not None else 0,
            "executions": self.broker.execution_count if self.broker is not None else 0,
            "reconciles": self.broker.stats["reconciles"] if self.broker is not None else 0,
            "connects": self.conn.stats["connects"] if self.conn is not None else 0,
            "disconnects": self.conn.stats["disconnects"] if self.conn is not None else 0,
        }


def _two_sided(ticker: Ticker) -> bool:
    bid, ask = ticker.bid, ticker.ask
    return bool(math.isfinite(bid) and math.isfinite(ask) and 0 < bid <= ask)
