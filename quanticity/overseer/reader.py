"""Builds the overseer's snapshot from Redis: where every number of SPEC §12 is read from.

UW keys are never written by hand here: they come from the ``redis_key`` of the endpoints of the
fetcher's source YAML (``config/sources/unusual_whales.yaml``, see :mod:`quanticity.overseer.sources`),
whose payloads :func:`quanticity.feeds.sink.write_payload` stores as ``{…, "fetched_at" (ns), "data":
[records]}``. Without a UW source (``venue.kind: sim``, or no fetcher) the UW rows below are skipped:
nothing in the topology would refresh them. ``{S}`` is a symbol.

===========================  =======================================================================
staleness ``uw_spot_gex``    endpoint ``spot_exposures`` (``raw:uw:spot_exposures:{S}``), each symbol
                             the endpoint is fetched for; age from ``fetched_at``
staleness ``uw_flow_alerts`` endpoint ``flow_alerts`` (``raw:uw:flow_alerts``): market-wide, one key,
                             subject ``*`` (the per-ticker ``stock_flow_alerts`` skip the indices)
staleness ``uw_chains``      endpoint ``option_chains`` (``raw:uw:chains:{S}``), each symbol fetched
staleness ``ibkr_heartbeat`` ``raw:ibkr:depth:hb:{S}`` — integer ns; the freshest symbol counts
                             (depth rotates over 3 symbols at a time, so this is feed-wide: ``*``)
divergence ``price``         UW: the newest row of ``spot_exposures`` — its ``price`` at its ``time``.
                             IBKR: the mid of ``raw:ibkr:quote:last:{S}`` at its ``ts_event``.
                             Sample ``{S}``: UW price vs IBKR mid
divergence ``greeks``        UW: ``option_contracts`` — ``implied_volatility`` of a contract, at the
                             payload's ``fetched_at``. IBKR: ``analytics:{S}:features`` — the ATM call
                             and put (:class:`~quanticity.messages.OptionQuote`, IBKR's model greeks)
                             at the snapshot's ``computed_at``. Sample ``{S} {OCC} iv`` per contract
                             found on both sides (matched by OCC symbol; root ``{S}`` or ``{S}W``)
divergence ``spread``        the same two contracts' quoted spread ask − bid (in dollars): UW
                             ``nbbo_bid``/``nbbo_ask`` vs IBKR bid/ask. Sample ``{S} {OCC} spread``
divergence by metric name    ``analytics:{S}:divergence``: ``{metric: {ours, theirs, …}}`` when a
                             caller hands the analytics actor a UW value (``on_external``)
slippage                     the last fills of ``trades:fills`` against the limit their order
                             worked at (``orders:{ref}`` ``limit`` after a chase, else the
                             intent's), in bps, positive = worse than the limit; limit orders
                             only (a triggered stop fills at market: gap risk). A chase is the
                             router's pricing decision, bounded by the entry policy, so it is
                             not the venue filling badly
latency                      ``p99`` (ms) of every ``heartbeat:*``, against its own history
===========================  =======================================================================

Divergence freshness: a pair is compared only when the UW time and the IBKR time are at most
``pair_tolerance_s`` apart (default 60 s: a minute of drift is far below the 2 % price rule, and
the UW endpoints are fetched every 30–120 s) and the IBKR value is at most ``pair_max_age_s`` old
at the round; otherwise the pair is skipped this round — an old value is a staleness matter.

UW times are on the fetcher's clock (``uw_clock``), which need not be exactly the overseer's
(``system:clock``, the market time the IBKR feed publishes once per flush). In a ``tws`` run the
fetcher and the UW twin both run on the hosted market's own time (``venue:tws:now``,
:func:`actors.venue_link.fetch_clock`), which ``system:clock`` follows a flush behind; live, both
are the wall. To stay right whatever small lead remains, a UW payload's age is measured on the
fetcher's own clock (its ``now`` − ``fetched_at``), and a UW time is put on the overseer's clock,
for pairing, by subtracting the current lead (fetcher ``now`` − overseer ``now``). A stamp more
than ``MAX_UW_AHEAD_S`` ahead of the fetcher's clock is rejected (``uw_future``): it would
otherwise look fresh for ever.

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
from quanticity.config.loader import ConfigError
from quanticity.feeds.sources import EndpointSpec, SourceFile
from quanticity.messages import FeatureSnapshot, Fill, OptionContract, OptionQuote, OrderIntent, Quote, Side, decode
from quanticity.observability.metrics import read_heartbeats
from quanticity.overseer.config import OverseerConfig
from quanticity.overseer.counters import Counters
from quanticity.overseer.snapshot import DivergenceSample, OverseerInput, Series, SourceAge
from quanticity.overseer.sources import CONTRACTS_ENDPOINT, PRICE_ENDPOINT, STALENESS_ENDPOINTS, cadence_problems

TIMESTAMP_FIELDS = ("fetched_at", "computed_at", "ts", "ts_event")
PRICE_METRICS = frozenset({"price", "spot", "last", "mid", "close", "underlying_price"})
FEED_WIDE = "*"
MAX_UW_AHEAD_S = 60.0
"""The furthest a UW stamp may be ahead of the fetcher's clock (request and clock-read jitter) and still be used."""


@dataclass(frozen=True)
class SourceMap:
    """How one staleness source is read: its key per symbol, payload kind, and which subjects it has.

    ``subjects(watched)`` are the symbols whose key is read (None for a market-wide key);
    ``feed_wide`` sources report one subject ``*``: the freshest of their keys.
    """

    source: str
    key: Callable[[str | None], str]
    kind: Literal["json", "scalar"]
    subjects: Callable[[list[str]], list[str | None]]
    feed_wide: bool = False


def _every_symbol(symbols: list[str]) -> list[str | None]:
    return list(symbols)


def _ibkr_heartbeat_key(symbol: str | None) -> str:
    if symbol is None:
        raise ValueError("ibkr_heartbeat: the depth heartbeat is per symbol")
    return keys.raw_depth_heartbeat(symbol)


IBKR_HEARTBEAT = SourceMap("ibkr_heartbeat", _ibkr_heartbeat_key, "scalar", _every_symbol, feed_wide=True)


def uw_source_map(rule: str, endpoint: EndpointSpec) -> SourceMap:
    """The staleness source ``rule`` read from ``endpoint``'s own ``redis_key`` and symbols (module doc)."""
    template = endpoint.redis_key
    market_wide = "{ticker}" not in template
    return SourceMap(
        rule,
        lambda symbol: keys.raw_source(template, symbol),
        "json",
        (lambda _: [None]) if market_wide else endpoint.symbols_for,
        feed_wide=market_wide,
    )


def staleness_sources(uw: SourceFile | None) -> tuple[SourceMap, ...]:
    """The IBKR heartbeat plus, with a UW source, every enabled endpoint a UW staleness rule watches."""
    found = [IBKR_HEARTBEAT]
    if uw is not None:
        for rule, name in STALENESS_ENDPOINTS.items():
            endpoint = uw.endpoints.get(name)
            if endpoint is not None and endpoint.enabled:
                found.append(uw_source_map(rule, endpoint))
    return tuple(found)


def occ_symbols(contract: OptionContract) -> tuple[str, ...]:
    """The OCC symbols ``contract`` may carry at UW: root = the underlying, or its weekly root (SPXW)."""
    tail = f"{contract.expiry[2:4]}{contract.expiry[5:7]}{contract.expiry[8:10]}{contract.right.value[:1]}"
    strike = f"{round(contract.strike * 1000):08d}"
    return tuple(f"{root}{tail}{strike}" for root in (contract.underlying, f"{contract.underlying}W"))


def quoted_spread(bid: float, ask: float) -> float | None:
    """ask − bid of a two-sided market, else None (no bid, crossed, or not finite).

    In dollars, not relative to mid: the spread rule compares the two feeds' spreads with each other
    (ratio to IBKR's), and its ``min_difference`` of one tick is a dollar amount — a relative spread
    of a cheap 0DTE option jumps by tens of percent on one tick and would warn all afternoon.
    """
    if not (math.isfinite(bid) and math.isfinite(ask)) or bid <= 0 or ask < bid:
        return None
    return ask - bid


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


def _enabled(uw: SourceFile | None, name: str) -> EndpointSpec | None:
    endpoint = uw.endpoints.get(name) if uw is not None else None
    return endpoint if endpoint is not None and endpoint.enabled else None


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class RedisSnapshotReader:
    """The production :class:`~quanticity.overseer.service.SnapshotSource`.

    ``uw`` is the fetcher's UW source file (None without a fetcher: the UW rows are skipped) and
    ``uw_clock`` the clock the fetcher stamps with (default: ``clock``); a staleness threshold that
    cannot hold against its endpoint's cadence is a :class:`ConfigError`.
    """

    def __init__(
        self,
        client: redis.Redis,
        config: OverseerConfig,
        clock: Clock,
        symbols: Callable[[], Sequence[str]],
        counters: Counters | None = None,
        uw: SourceFile | None = None,
        fills_to_scan: int = 250,
        uw_path: str = "the UW source file",
        uw_clock: Clock | None = None,
    ) -> None:
        if uw is not None:
            problems = cadence_problems(config, uw, uw_path)
            if problems:
                raise ConfigError("invalid overseer configuration:\n" + "\n".join(problems))
        self._client = client
        self._config = config
        self._clock = clock
        self._symbols = symbols
        self.counters = counters or Counters()
        self._sources = staleness_sources(uw)
        self._price_endpoint = _enabled(uw, PRICE_ENDPOINT)
        self._contracts_endpoint = _enabled(uw, CONTRACTS_ENDPOINT)
        self._pair_tolerance_ns = int(config.pair_tolerance_s * NS_PER_SECOND)
        self._pair_max_age_ns = int(config.pair_max_age_s * NS_PER_SECOND)
        self._fills_to_scan = fills_to_scan
        self.started_ns = clock.now_ns()
        self._uw_clock = uw_clock or clock
        self.uw_lead_ns = 0  # how far the fetcher's clock runs ahead of ours, measured at each read (module doc)
        self._uw_now = self.started_ns
        self._last_seen: dict[tuple[str, str], int] = {}
        self._latency_history: dict[str, deque[float]] = {}
        self._limits: dict[str, tuple[float, Side] | None] = {}

    @property
    def sources(self) -> tuple[SourceMap, ...]:
        """The staleness sources this reader watches."""
        return self._sources

    async def read(self) -> OverseerInput:
        """The snapshot, read off the event loop (the Redis client is blocking)."""
        return await asyncio.to_thread(self.read_now)

    def read_now(self) -> OverseerInput:
        """The snapshot, read synchronously."""
        now = self._clock.now_ns()
        self._uw_now = self._uw_clock.now_ns()
        self.uw_lead_ns = self._uw_now - now
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

    def _uw_ahead(self, stamp: int, what: str) -> bool:
        """True (counted) for a UW stamp too far ahead of the fetcher's own clock to be a real fetch time."""
        if stamp - self._uw_now > MAX_UW_AHEAD_S * NS_PER_SECOND:
            self._reject("uw_future")
            self._reject(what)
            return True
        return False

    def _uw_time(self, stamp: int, what: str) -> int | None:
        """A UW stamp on the overseer's clock: less the fetcher's current lead (module doc)."""
        return None if self._uw_ahead(stamp, what) else stamp - self.uw_lead_ns

    def _stamp(self, mapping: SourceMap, symbol: str | None) -> int | None:
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
            return None
        if mapping.source.startswith("uw_") and self._uw_ahead(stamp, mapping.source):
            return None
        return stamp  # on the source's own clock: UW ages are converted when reported (_sources_ages)

    def _sources_ages(self, symbols: list[str]) -> list[SourceAge]:
        ages = []
        for mapping in self._sources:
            rule = self._config.staleness.get(mapping.source)
            if rule is None or not rule.enabled:
                continue
            subjects = mapping.subjects(symbols)
            stamps: dict[str | None, int | None] = {s: self._stamp(mapping, s) for s in subjects}
            if mapping.feed_wide:
                seen = [s for s in stamps.values() if s is not None]
                stamps = {FEED_WIDE: max(seen) if seen else None}
            lead = self.uw_lead_ns if mapping.source.startswith("uw_") else 0
            for subject, stamp in stamps.items():
                memo = (mapping.source, subject or FEED_WIDE)
                if stamp is not None:
                    self._last_seen[memo] = max(stamp, self._last_seen.get(memo, stamp))
                last = self._last_seen.get(memo)
                ages.append(SourceAge(mapping.source, subject or FEED_WIDE, None if last is None else last - lead))
        return ages

    def _paired(self, uw_ns: int, ibkr_ns: int, now: int, what: str) -> bool:
        """Both values describe (nearly) the same moment, and the IBKR one is recent (module doc).

        Counted either way (``reader.pairs.<what>`` / ``reader.unpaired.<what>``), so a deployment can
        see that the divergence checks actually compare something."""
        paired = abs(uw_ns - ibkr_ns) <= self._pair_tolerance_ns and now - ibkr_ns <= self._pair_max_age_ns
        self.counters.add(f"reader.{'pairs' if paired else 'unpaired'}.{what}")
        return paired

    def _divergences(self, symbols: list[str], now: int) -> list[DivergenceSample]:
        samples = []
        for symbol in symbols:
            price = self._price_pair(symbol, now)
            if price is not None:
                samples.append(price)
            samples.extend(self._contract_pairs(symbol, now))
            samples.extend(self._recorded(symbol))
        return samples

    def _recorded(self, symbol: str) -> list[DivergenceSample]:
        """UW values handed to the analytics actor (``analytics:{S}:divergence``), by metric name."""
        records = self._json(keys.analytics(symbol, "divergence"), "divergence")
        if records is None:
            return []
        if not isinstance(records, dict):
            self._reject("divergence")
            return []
        samples = []
        for metric, record in records.items():
            if not isinstance(record, dict) or "ours" not in record:
                continue  # the snapshot stamp fields, or a foreign shape
            ours, theirs = _number(record.get("ours")), _number(record.get("theirs"))
            if ours is None or theirs is None:
                self._reject("divergence")
                continue
            samples.append(DivergenceSample(classify_metric(metric), f"{symbol} {metric}", theirs, ours))
        return samples

    def _uw_payload(self, endpoint: EndpointSpec | None, symbol: str, what: str) -> tuple[int, list[Any]] | None:
        """(fetched_at on our clock, records) of the fetcher's payload of ``endpoint`` for ``symbol``, if usable."""
        if endpoint is None or "{ticker}" not in endpoint.redis_key or symbol not in endpoint.symbols_for([symbol]):
            return None
        payload = self._json(keys.raw_source(endpoint.redis_key, symbol), what)
        if payload is None:
            return None
        stamp = payload_time(payload)
        records = payload.get("data") if isinstance(payload, dict) else None
        if stamp is None or not isinstance(records, list):
            self._reject(what)
            return None
        ours = self._uw_time(stamp, what)
        return None if ours is None else (ours, records)

    def _ibkr_quote(self, symbol: str) -> Quote | None:
        raw = self._client.get(keys.raw_quote_last(symbol))
        if raw is None:
            return None
        try:
            return decode(raw, Quote)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
            self._reject("ibkr_quote")
            return None

    def _price_pair(self, symbol: str, now: int) -> DivergenceSample | None:
        """UW's newest spot-exposure price vs the IBKR mid, when both describe the same minute."""
        found = self._uw_payload(self._price_endpoint, symbol, "uw_price")
        if found is None:
            return None
        rows = [(to_ns(r.get("time")), _number(r.get("price"))) for r in found[1] if isinstance(r, dict)]
        rows = [(None if t is None else t - self.uw_lead_ns, p) for t, p in rows]  # the row times: the same clock
        priced = [(t, p) for t, p in rows if t is not None and p is not None and p > 0]
        if not priced:
            if found[1]:  # rows, but none with a usable price and time (an empty day is not an error)
                self._reject("uw_price")
            return None
        uw_ns, uw_price = max(priced)
        quote = self._ibkr_quote(symbol)
        if quote is None or not self._paired(uw_ns, quote.ts_event, now, "price"):
            return None
        if quote.bid <= 0 or quote.ask < quote.bid:
            return None
        return DivergenceSample("price", symbol, uw_price, (quote.bid + quote.ask) / 2)

    def _features(self, symbol: str) -> FeatureSnapshot | None:
        raw = self._client.get(keys.analytics(symbol, "features"))
        if raw is None:
            return None
        try:
            return decode(raw, FeatureSnapshot)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
            self._reject("features")
            return None

    def _contract_pairs(self, symbol: str, now: int) -> list[DivergenceSample]:
        """Implied vol and quoted spread of the ATM call and put: UW ``option_contracts`` vs IBKR's quotes."""
        found = self._uw_payload(self._contracts_endpoint, symbol, "uw_contracts")
        if found is None:
            return []
        features = self._features(symbol)
        if features is None or not self._paired(found[0], features.computed_at, now, "contracts"):
            return []
        by_occ = {r.get("option_symbol"): r for r in found[1] if isinstance(r, dict)}
        samples = []
        for quote in (features.atm_call, features.atm_put):
            if quote is None:
                continue
            record = next((by_occ[o] for o in occ_symbols(quote.contract) if o in by_occ), None)
            if record is not None:
                samples.extend(self._contract_samples(symbol, quote, record))
        return samples

    def _contract_samples(self, symbol: str, quote: OptionQuote, record: dict[str, Any]) -> list[DivergenceSample]:
        occ = occ_symbols(quote.contract)[0]
        samples = []
        uw_iv = _number(record.get("implied_volatility"))
        if uw_iv is not None and uw_iv > 0 and math.isfinite(quote.iv) and quote.iv > 0:
            samples.append(DivergenceSample("greeks", f"{symbol} {occ} iv", uw_iv, quote.iv))
        uw_bid, uw_ask = _number(record.get("nbbo_bid")), _number(record.get("nbbo_ask"))
        uw_spread = quoted_spread(uw_bid, uw_ask) if uw_bid is not None and uw_ask is not None else None
        ibkr_spread = quoted_spread(quote.bid, quote.ask)
        if uw_spread is not None and ibkr_spread is not None:
            samples.append(DivergenceSample("spread", f"{symbol} {occ} spread", uw_spread, ibkr_spread))
        return samples

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
