"""Builds the overseer's snapshot from Redis: where every number of SPEC §12 is read from.

Mapping (keys are built by :mod:`quanticity.keys`; ``{S}`` is each watched symbol):

============================  ======================================================================
staleness ``uw_spot_gex``     ``raw:uw:spot_exposures:{S}``  — JSON payload of the UW fetcher
staleness ``uw_flow_alerts``  ``raw:uw:flow_alerts:{S}``     — JSON payload of the UW fetcher
staleness ``uw_chains``       ``raw:uw:chains:{S}``          — JSON payload of the UW fetcher
                              (the ``redis_key`` templates of ``config/sources/unusual_whales.yaml``,
                              written by :mod:`quanticity.feeds.sink`; ``fetched_at`` is in ns)
staleness ``ibkr_heartbeat``  ``raw:ibkr:depth:hb:{S}``      — integer ns; the freshest symbol counts
                              (depth rotates over 3 symbols at a time, so this is feed-wide: ``*``)
divergence ``price``          ``raw:uw:stock_state:{S}`` (``close``/``price``/``last``) vs the mid of
                              ``raw:ibkr:quote:last:{S}``, both younger than ``pair_max_age_s``
divergence by metric name     ``analytics:{S}:divergence``: ``{metric: {ours, theirs, …}}`` written by
                              the analytics actor when UW supplies a value it also computes from IBKR
                              data (``theirs`` = UW, ``ours`` = IBKR); ``*spread*`` → spread,
                              price-like names → price, anything else (greeks, GEX, DEX, IV) → greeks
slippage                      the last fills of ``trades:fills`` against the limit their order
                              worked at (``orders:{ref}`` ``limit`` after a chase, else the
                              intent's), in bps, positive = worse than the limit; limit orders
                              only (a triggered stop fills at market: gap risk). A chase is the
                              router's pricing decision, bounded by the entry policy, so it is
                              not the venue filling badly
latency                       ``p99`` (ms) of every ``heartbeat:*``, against its own history
============================  ======================================================================

A JSON payload's time is its ``fetched_at`` (else ``computed_at``, ``ts``, ``ts_event``) in
ns, µs, ms or s since the epoch, or ISO-8601. A key that is absent, or a payload without a
readable time, is *stale*: its age counts from the last time this reader saw it, or from the
reader's start. Malformed payloads are counted (``reader.rejected.<what>``) and never raise.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import msgspec
import redis

from quanticity import keys
from quanticity.clock import NS_PER_SECOND, Clock
from quanticity.messages import Fill, OrderIntent, Quote, Side, decode
from quanticity.observability.metrics import read_heartbeats
from quanticity.overseer.config import OverseerConfig
from quanticity.overseer.counters import Counters
from quanticity.overseer.snapshot import DivergenceSample, OverseerInput, Series, SourceAge

TIMESTAMP_FIELDS = ("fetched_at", "computed_at", "ts", "ts_event")
PRICE_FIELDS = ("close", "price", "last")
PRICE_METRICS = frozenset({"price", "spot", "last", "mid", "close", "underlying_price"})
FEED_WIDE = "*"


@dataclass(frozen=True)
class SourceMap:
    """How one staleness source is read: its key per symbol, payload kind, feed-wide or per symbol."""

    source: str
    key: Callable[[str], str]
    kind: Literal["json", "scalar"]
    feed_wide: bool = False


#: the fetcher's ``redis_key`` templates (``config/sources/unusual_whales.yaml``) the staleness checks read
UW_KEY_TEMPLATES: dict[str, str] = {
    "uw_spot_gex": "raw:uw:spot_exposures:{ticker}",
    "uw_flow_alerts": "raw:uw:flow_alerts:{ticker}",
    "uw_chains": "raw:uw:chains:{ticker}",
}


def _uw_key(source: str) -> Callable[[str], str]:
    template = UW_KEY_TEMPLATES[source]
    return lambda symbol: keys.raw_source(template, symbol)


DEFAULT_SOURCES: tuple[SourceMap, ...] = (
    SourceMap("uw_spot_gex", _uw_key("uw_spot_gex"), "json"),
    SourceMap("uw_flow_alerts", _uw_key("uw_flow_alerts"), "json"),
    SourceMap("uw_chains", _uw_key("uw_chains"), "json"),
    SourceMap("ibkr_heartbeat", keys.raw_depth_heartbeat, "scalar", feed_wide=True),
)


def to_ns(value: Any) -> int | None:
    """A timestamp in ns from ns/µs/ms/s numbers (by magnitude) or an ISO-8601 string; None if unreadable."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                return None
            return int(parsed.timestamp() * NS_PER_SECOND) if parsed.tzinfo else None
    elif isinstance(value, int | float):
        number = float(value)
    else:
        return None
    if not math.isfinite(number) or number <= 0:
        return None
    for limit, scale in ((1e11, 1e9), (1e14, 1e6), (1e17, 1e3)):
        if number < limit:
            return int(number * scale)
    return int(number)


def payload_time(payload: Any) -> int | None:
    """The time a JSON payload was produced (see the module doc), or None."""
    if not isinstance(payload, dict):
        return None
    for name in TIMESTAMP_FIELDS:
        if name in payload:
            found = to_ns(payload[name])
            if found is not None:
                return found
    return None


def classify_metric(metric: str) -> str:
    """The divergence family of an analytics metric name."""
    name = metric.lower()
    if "spread" in name:
        return "spread"
    if name in PRICE_METRICS:
        return "price"
    return "greeks"


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class RedisSnapshotReader:
    """The production :class:`~quanticity.overseer.service.SnapshotSource`."""

    def __init__(
        self,
        client: redis.Redis,
        config: OverseerConfig,
        clock: Clock,
        symbols: Callable[[], Sequence[str]],
        counters: Counters | None = None,
        sources: Sequence[SourceMap] = DEFAULT_SOURCES,
        pair_max_age_s: float = 60.0,
        fills_to_scan: int = 250,
    ) -> None:
        self._client = client
        self._config = config
        self._clock = clock
        self._symbols = symbols
        self.counters = counters or Counters()
        self._sources = tuple(sources)
        self._pair_max_age_ns = int(pair_max_age_s * NS_PER_SECOND)
        self._fills_to_scan = fills_to_scan
        self.started_ns = clock.now_ns()
        self._last_seen: dict[tuple[str, str], int] = {}
        self._latency_history: dict[str, deque[float]] = {}
        self._limits: dict[str, tuple[float, Side] | None] = {}

    async def read(self) -> OverseerInput:
        """The snapshot, read off the event loop (the Redis client is blocking)."""
        return await asyncio.to_thread(self.read_now)

    def read_now(self) -> OverseerInput:
        """The snapshot, read synchronously."""
        now = self._clock.now_ns()
        symbols = list(self._symbols())
        return OverseerInput(
            now_ns=now,
            started_ns=self.started_ns,
            sources=tuple(self._sources_ages(symbols)),
            divergences=tuple(self._divergences(symbols, now)),
            slippage=self._slippage(now),
            latency=tuple(self._latency()),
        )

    # --- helpers --------------------------------------------------------------------------------
    def _reject(self, what: str) -> None:
        self.counters.add("reader.rejected")
        self.counters.add(f"reader.rejected.{what}")

    def _json(self, key: str, what: str) -> Any:
        raw = self._client.get(key)
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, TypeError):
            self._reject(what)
            return None

    def _stamp(self, mapping: SourceMap, symbol: str) -> int | None:
        if mapping.kind == "scalar":
            raw = self._client.get(mapping.key(symbol))
            if raw is None:
                return None
            stamp = to_ns(raw)
        else:
            payload = self._json(mapping.key(symbol), mapping.source)
            if payload is None:
                return None
            stamp = payload_time(payload)
        if stamp is None:
            self._reject(mapping.source)
        return stamp

    def _sources_ages(self, symbols: list[str]) -> list[SourceAge]:
        ages = []
        for mapping in self._sources:
            rule = self._config.staleness.get(mapping.source)
            if rule is None or not rule.enabled:
                continue
            stamps = {symbol: self._stamp(mapping, symbol) for symbol in symbols}
            if mapping.feed_wide:
                seen = [s for s in stamps.values() if s is not None]
                stamps = {FEED_WIDE: max(seen) if seen else None}
            for subject, stamp in stamps.items():
                memo = (mapping.source, subject)
                if stamp is not None:
                    self._last_seen[memo] = max(stamp, self._last_seen.get(memo, stamp))
                ages.append(SourceAge(mapping.source, subject, self._last_seen.get(memo)))
        return ages

    def _divergences(self, symbols: list[str], now: int) -> list[DivergenceSample]:
        samples = []
        for symbol in symbols:
            price = self._price_pair(symbol, now)
            if price is not None:
                samples.append(price)
            records = self._json(keys.analytics(symbol, "divergence"), "divergence")
            if records is None:
                continue
            if not isinstance(records, dict):
                self._reject("divergence")
                continue
            for metric, record in records.items():
                if not isinstance(record, dict) or "ours" not in record:
                    continue  # the snapshot stamp fields, or a foreign shape
                ours, theirs = _number(record.get("ours")), _number(record.get("theirs"))
                if ours is None or theirs is None:
                    self._reject("divergence")
                    continue
                samples.append(DivergenceSample(classify_metric(metric), f"{symbol} {metric}", theirs, ours))
        return samples

    def _price_pair(self, symbol: str, now: int) -> DivergenceSample | None:
        payload = self._json(keys.raw_uw("stock_state", symbol), "uw_price")
        raw_quote = self._client.get(keys.raw_quote_last(symbol))
        if payload is None or raw_quote is None:
            return None
        stamp = payload_time(payload)
        data = payload.get("data", payload) if isinstance(payload, dict) else None
        uw_price = (
            next((p for p in (_number(data.get(f)) for f in PRICE_FIELDS) if p is not None), None)
            if isinstance(data, dict)
            else None
        )
        try:
            quote = decode(raw_quote, Quote)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
            self._reject("ibkr_quote")
            return None
        if stamp is None or uw_price is None:
            self._reject("uw_price")
            return None
        if now - stamp > self._pair_max_age_ns or now - quote.ts_event > self._pair_max_age_ns:
            return None  # an old value is a staleness matter, not a divergence
        if quote.bid <= 0 or quote.ask < quote.bid:
            return None
        return DivergenceSample("price", symbol, uw_price, (quote.bid + quote.ask) / 2)

    def _limit_of(self, order_ref: str) -> tuple[float, Side] | None:
        if order_ref not in self._limits:
            raw = self._client.hget(keys.order(order_ref), "intent")
            found = None
            if raw:
                try:
                    intent = decode(raw, OrderIntent)
                    # A stop becomes a market order once triggered: its fill below the stop is gap
                    # risk of the option, not execution slippage, and must not page (or halt) anyone.
                    priced = intent.limit_price > 0 and intent.order_type == "LMT"
                    found = (intent.limit_price, intent.side) if priced else None
                except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
                    self._reject("intent")
            if len(self._limits) > 10_000:
                self._limits.clear()
            self._limits[order_ref] = found
        return self._limits[order_ref]

    def _slippage(self, now: int) -> tuple[Series, ...]:
        rule = self._config.slippage
        entries = self._client.xrevrange(keys.FILLS_STREAM, count=self._fills_to_scan)
        recent: list[float] = []
        baseline: list[float] = []
        fills: list[Fill] = []
        for _, fields in entries:
            try:
                fills.append(decode(fields["fill"], Fill))
            except (KeyError, msgspec.DecodeError, msgspec.ValidationError, ValueError):
                self._reject("fill")
        pipe = self._client.pipeline(transaction=False)
        for fill in fills:
            pipe.hget(keys.order(fill.order_ref), "limit")
        working = pipe.execute() if fills else []
        for fill, worked_at in zip(fills, working, strict=True):
            limit = self._limit_of(fill.order_ref)
            if limit is None or fill.price <= 0:
                continue
            price, side = limit
            chased = _number(worked_at)
            if chased is not None and chased > 0:
                price = chased
            worse = fill.price - price if side is Side.BUY else price - fill.price
            bps = worse / price * 1e4
            if now - fill.ts_event <= rule.window_s * NS_PER_SECOND:
                recent.append(bps)
            elif len(baseline) < rule.baseline_size:
                baseline.append(bps)
        if not recent:
            return ()
        return (Series("fills", tuple(recent), tuple(baseline)),)

    def _latency(self) -> list[Series]:
        series = []
        for actor, beat in sorted(read_heartbeats(self._client).items()):
            p99 = _number(beat.get("p99"))
            if p99 is None:
                continue
            history = self._latency_history.setdefault(actor, deque(maxlen=self._config.latency.baseline_size))
            series.append(Series(actor, (p99,), tuple(history)))
            history.append(p99)
        return series
