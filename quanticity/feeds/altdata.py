"""Unusual Whales records → :class:`~quanticity.messages.AltDataEvent` for the strategies, each delivered once.

The fetcher (:mod:`quanticity.feeds.engine`) stores validated UW payloads in Redis; the
strategies consume :class:`AltDataEvent` (SPEC §7: congress buys, insider sells, dark-pool
accumulation, flow alerts, the next earnings date). This module is the step between them, with
no Ray in it:

- **converters** (:func:`convert`): one validated record (the typed dicts of
  :mod:`quanticity.feeds.parse`) → one event, or a counted rejection naming the field and value.
  A converter is a pure function of the record (plus the document's symbol and fetch day), so a
  re-fetched record yields the identical event — same ``detail["id"]`` — and the strategies'
  :class:`~quanticity.strategies.base.AltDataBook` (which de-duplicates by kind, direction,
  amount, day and detail) never counts a re-delivered filing twice.
- **the bridge** (:class:`AltDataBridge`): given a payload document, returns only the events not
  delivered before and remembers the delivered ids in Redis (one set per kind and event day,
  expiring when the source can no longer re-serve that day), so a restarted fetcher does not
  re-deliver a whole day.

How each kind is read (UW field names; "sim" is what the loopback twin renders from
:func:`quanticity.sim.altdata.alt_data_events`, for which each conversion is the exact inverse):

=============  =======================================================  ==============================
kind           direction                                                amount, when, id
=============  =======================================================  ==============================
flow_alert     ``type`` call → +1 / put → −1, times the side that paid:  ``total_premium``; ET date of
               ask-side premium > bid-side (buyers lifting the offer)   ``created_at``; hash of ticker,
               keeps it, bid-side > ask-side flips it (a sold call is   option_chain, created_at,
               bearish), equal → 0                                      alert_rule (UW has no id)
dark_pool      price above the NBBO mid → +1 (bought), below → −1,      ``premium`` (else price×size);
               at the mid or no NBBO → 0; canceled prints are skipped  ET date of ``executed_at``;
                                                                        ``tracking_id``
congress       ``txn_type`` Buy/Purchase → +1, Sell/Sale… → −1;         the **midpoint** of the
               Receive/Exchange are skipped (no view on the stock)      ``amounts`` band (STOCK Act
                                                                        bands; "Over $X" → X);
                                                                        ``transaction_date``; hash
insider        SEC Form 4 ``transaction_code`` P → +1, S → −1; other    abs(``amount`` shares) ×
               codes (awards, exercises, tax withholding, gifts) are    ``price``;
               skipped: they are not a view on the stock                ``transaction_date``; ``ids``
earnings       0                                                        0; ``report_date`` (only
                                                                        reports on/after the fetch
                                                                        day); ``{T}-earnings-{date}``
=============  =======================================================  ==============================

The congress midpoint is a choice: disclosures give only a band, the midpoint is the unbiased
guess under a uniform prior within it, a lower bound would understate every trade, and the
strategies compare sums of these amounts against thresholds in dollars. Date-only records
(congress, insider) are stamped at 00:00 ET of the transaction date; earnings at 00:00 ET of the
fetch day (the report date is in the future, and a future ``ts_event`` would move a strategy's
checkpoint clock ahead).
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import redis

from quanticity import keys
from quanticity.calendar import ET
from quanticity.clock import NS_PER_SECOND
from quanticity.messages import AltDataEvent, AltDataKind
from quanticity.strategies.base import event_day

log = logging.getLogger(__name__)

ALT_DATA_PARSERS: dict[AltDataKind, str] = {
    AltDataKind.FLOW_ALERT: "uw.flow_alerts",
    AltDataKind.DARK_POOL: "uw.darkpool",
    AltDataKind.CONGRESS: "uw.congress_trades",
    AltDataKind.INSIDER: "uw.insider_transactions",
    AltDataKind.EARNINGS: "uw.earnings",
}
"""The kinds an endpoint's ``alt_data:`` may name, and the parser whose records each converter reads."""

SESSION_BRIDGED_KINDS: frozenset[AltDataKind] = frozenset(
    {AltDataKind.FLOW_ALERT, AltDataKind.DARK_POOL, AltDataKind.CONGRESS, AltDataKind.INSIDER}
)
"""In ``tws`` the session day's events of these kinds come twin → fetcher → bridge, not from the sim list."""

KEEP_DAYS: dict[AltDataKind, int] = {
    AltDataKind.FLOW_ALERT: 3,  # the flow-alert endpoints serve the newest alerts: today's
    AltDataKind.DARK_POOL: 3,  # the dark-pool endpoint is asked for the session's prints
    AltDataKind.CONGRESS: 120,  # recent trades reach back months; the AltDataBook keeps 120 days
    AltDataKind.INSIDER: 120,
    AltDataKind.EARNINGS: 7,  # counted from the report date
}
"""Days after its event day that a delivered id is remembered. Older events are not delivered at
all: their set has expired, and a strategy's AltDataBook (120-day retention) would drop them."""

STOCK_ACT_BANDS: tuple[tuple[int, int], ...] = (
    (1_001, 15_000),
    (15_001, 50_000),
    (50_001, 100_000),
    (100_001, 250_000),
    (250_001, 500_000),
    (500_001, 1_000_000),
    (1_000_001, 5_000_000),
    (5_000_001, 25_000_000),
    (25_000_001, 50_000_000),
)
"""The amount bands of congressional periodic transaction reports; above the last: "Over $50,000,000"."""

MAX_ERRORS_KEPT = 20
_TICKER = re.compile(r"^[A-Z][A-Z0-9.]{0,9}$")
_MONEY = re.compile(r"\d[\d,]*(?:\.\d+)?")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- errors ----------------------------------------------------------------------------------
class BadRecord(Exception):
    """A record that cannot become an event; ``reason`` is the metric label, the message names field and value."""

    def __init__(self, reason: str, field_name: str, value: Any, why: str) -> None:
        super().__init__(f"{field_name} = {value!r}: {why}")
        self.reason = reason
        self.field = field_name
        self.value = value


class Skipped(Exception):
    """A valid record that is deliberately not an event (a canceled print, a past earnings report)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- field readers -----------------------------------------------------------------------------
def _required(record: Mapping[str, Any], name: str) -> Any:
    value = record.get(name)
    if value is None or value == "":
        raise BadRecord("missing_field", name, value, "required")
    return value


def _number(record: Mapping[str, Any], name: str, *, required: bool = True) -> float | None:
    """A finite number (the parser already typed UW's number strings; a raw string is accepted too)."""
    value = record.get(name)
    if value is None or value == "":
        if required:
            raise BadRecord("missing_field", name, value, "required")
        return None
    if isinstance(value, bool):
        raise BadRecord("bad_value", name, value, "a boolean is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadRecord("bad_value", name, value, "not a number") from None
    if not math.isfinite(number):
        raise BadRecord("bad_value", name, value, "not finite")
    return number


def _text(record: Mapping[str, Any], name: str) -> str:
    value = _required(record, name)
    if not isinstance(value, str):
        raise BadRecord("bad_value", name, value, "expected a string")
    return value


def _ticker(record: Mapping[str, Any], symbol: str | None) -> str:
    """The record's ``ticker``, else the document's symbol (per-ticker endpoints such as earnings omit it)."""
    value = record.get("ticker") or symbol
    if value is None or value == "":
        raise BadRecord("missing_field", "ticker", record.get("ticker"), "required")
    if not isinstance(value, str) or not _TICKER.match(value):
        raise BadRecord("bad_value", "ticker", value, "not a ticker (A-Z, digits, '.', ≤ 10 chars)")
    return value


def _timestamp_ns(record: Mapping[str, Any], name: str) -> int:
    """An ISO-8601 timestamp (``Z``, offset or naive = UTC) as exact integer ns."""
    raw = _text(record, name)
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadRecord("bad_value", name, raw, "not an ISO-8601 timestamp") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1_000


def _day(record: Mapping[str, Any], name: str) -> date:
    raw = _text(record, name)
    try:
        return date.fromisoformat(raw[:10])
    except ValueError:
        raise BadRecord("bad_value", name, raw, "not a YYYY-MM-DD date") from None


def et_day(ts_ns: int) -> date:
    """The New York calendar date of ``ts_ns``."""
    return datetime.fromtimestamp(ts_ns / NS_PER_SECOND, tz=ET).date()


def midnight_ns(day: date) -> int:
    """00:00 New York time of ``day``, in ns."""
    return int(datetime.combine(day, time(0), tzinfo=ET).timestamp()) * NS_PER_SECOND


def stable_id(prefix: str, *parts: Any) -> str:
    """A short id from the identifying fields of a record that carries no id of its own (same fields → same id)."""
    text = "\x1f".join("" if p is None else str(p) for p in parts)
    return f"{prefix}-{hashlib.sha1(text.encode()).hexdigest()[:16]}"


def _sign(value: float) -> int:
    return (value > 0) - (value < 0)


def _event(
    kind: AltDataKind, symbol: str, ts_ns: int, direction: int, amount: float, when: date, ident: str
) -> AltDataEvent:
    return AltDataEvent(
        ts_event=ts_ns,
        ts_init=ts_ns,
        kind=kind,
        symbol=symbol,
        direction=direction,
        amount=round(amount, 2),
        when=when.isoformat(),
        detail={"id": ident},
    )


# --- congress amount bands -------------------------------------------------------------------
def congress_amount_range(amount: float) -> str:
    """The STOCK Act band text UW shows for a trade of ``amount`` dollars (what the twin renders)."""
    for low, high in STOCK_ACT_BANDS:
        if amount <= high:
            return f"${low:,} - ${high:,}"
    return f"Over ${STOCK_ACT_BANDS[-1][1]:,}"


def amount_from_range(text: str) -> float:
    """Dollar amount of a disclosure band: the midpoint of "$15,001 - $50,000", the bound of "Over $50,000,000".

    Raises ValueError when the text holds no amount.
    """
    numbers = [float(n.replace(",", "")) for n in _MONEY.findall(text)]
    if len(numbers) == 2 and numbers[0] <= numbers[1]:
        return (numbers[0] + numbers[1]) / 2
    if len(numbers) == 1:
        return numbers[0]
    raise ValueError("expected '$low - $high', 'Over $X' or '$X'")


# --- converters --------------------------------------------------------------------------------
def flow_alert_event(record: Mapping[str, Any], symbol: str | None, fetched_at_ns: int) -> AltDataEvent:
    """A UW flow alert (``/option-trades/flow-alerts``, ``/stock/{ticker}/flow-alerts``)."""
    ticker = _ticker(record, symbol)
    ts = _timestamp_ns(record, "created_at")
    option_type = _text(record, "type").lower()
    if option_type not in ("call", "put"):
        raise BadRecord("bad_value", "type", record.get("type"), "expected call or put")
    premium = _number(record, "total_premium")
    assert premium is not None
    if premium < 0:
        raise BadRecord("bad_value", "total_premium", record.get("total_premium"), "must be ≥ 0")
    ask = _number(record, "total_ask_side_prem", required=False) or 0.0
    bid = _number(record, "total_bid_side_prem", required=False) or 0.0
    direction = _sign(ask - bid) * (1 if option_type == "call" else -1)
    ident = stable_id("uw-fa", ticker, record.get("option_chain"), record.get("created_at"), record.get("alert_rule"))
    return _event(AltDataKind.FLOW_ALERT, ticker, ts, direction, premium, et_day(ts), ident)


def dark_pool_event(record: Mapping[str, Any], symbol: str | None, fetched_at_ns: int) -> AltDataEvent:
    """A UW dark-pool print (``/darkpool/{ticker}``): direction from the price against the NBBO mid."""
    ticker = _ticker(record, symbol)
    if record.get("canceled") is True:
        raise Skipped("canceled")
    ts = _timestamp_ns(record, "executed_at")
    price = _number(record, "price")
    assert price is not None
    if price <= 0:
        raise BadRecord("bad_value", "price", record.get("price"), "must be > 0")
    premium = _number(record, "premium", required=False)
    if premium is None:
        size = _number(record, "size")
        assert size is not None
        premium = price * size
    if premium <= 0:
        raise BadRecord("bad_value", "premium", record.get("premium"), "must be > 0")
    bid = _number(record, "nbbo_bid", required=False)
    ask = _number(record, "nbbo_ask", required=False)
    direction = 0
    if bid is not None and ask is not None and 0 < bid <= ask:
        mid = (bid + ask) / 2
        direction = 0 if abs(price - mid) <= 1e-9 * mid else _sign(price - mid)
    tracking = record.get("tracking_id")
    if tracking is not None and tracking != "":
        ident = f"uw-dp-{tracking}"
    else:
        ident = stable_id(
            "uw-dp", ticker, record.get("executed_at"), price, record.get("size"), record.get("market_center")
        )
    return _event(AltDataKind.DARK_POOL, ticker, ts, direction, premium, et_day(ts), ident)


def congress_event(record: Mapping[str, Any], symbol: str | None, fetched_at_ns: int) -> AltDataEvent:
    """A congressional trade (``/congress/recent-trades``): buy/sell, the band's midpoint in dollars."""
    ticker = _ticker(record, symbol)
    txn = _text(record, "txn_type")
    lowered = txn.strip().lower()
    if lowered.startswith(("buy", "purchase")):
        direction = 1
    elif lowered.startswith(("sell", "sale")):
        direction = -1
    elif lowered.startswith(("receive", "exchange")):
        raise Skipped("txn_type")
    else:
        raise BadRecord("bad_value", "txn_type", txn, "expected Buy/Purchase/Sell/Sale/Receive/Exchange")
    amounts = _text(record, "amounts")
    try:
        amount = amount_from_range(amounts)
    except ValueError as exc:
        raise BadRecord("bad_value", "amounts", amounts, str(exc)) from None
    traded = _day(record, "transaction_date")
    ident = stable_id(
        "uw-cg",
        record.get("politician_id"),
        record.get("name"),
        ticker,
        traded.isoformat(),
        txn,
        amounts,
        record.get("filed_at_date"),
        record.get("issuer"),
        record.get("notes"),
    )
    return _event(AltDataKind.CONGRESS, ticker, midnight_ns(traded), direction, amount, traded, ident)


def insider_event(record: Mapping[str, Any], symbol: str | None, fetched_at_ns: int) -> AltDataEvent:
    """An insider transaction (``/insider/transactions``): open-market purchases and sales only."""
    ticker = _ticker(record, symbol)
    code = _text(record, "transaction_code").strip().upper()
    if code == "P":
        direction = 1
    elif code == "S":
        direction = -1
    else:
        raise Skipped("not_open_market")
    shares = _number(record, "amount")
    price = _number(record, "price")
    assert shares is not None and price is not None
    if shares == 0:
        raise BadRecord("bad_value", "amount", record.get("amount"), "a trade of 0 shares")
    if price <= 0:
        raise BadRecord("bad_value", "price", record.get("price"), "must be > 0")
    traded = _day(record, "transaction_date")
    ids = record.get("ids")
    if isinstance(ids, list) and ids:
        ident = "uw-in-" + ",".join(str(i) for i in ids)
    else:
        ident = stable_id(
            "uw-in",
            ticker,
            record.get("owner_name"),
            traded.isoformat(),
            code,
            record.get("amount"),
            record.get("price"),
        )
    return _event(AltDataKind.INSIDER, ticker, midnight_ns(traded), direction, abs(shares) * price, traded, ident)


def earnings_event(record: Mapping[str, Any], symbol: str | None, fetched_at_ns: int) -> AltDataEvent:
    """The next earnings report of a ticker (``/earnings/{ticker}``); past quarters are skipped."""
    ticker = _ticker(record, symbol)
    report = _day(record, "report_date")
    today = et_day(fetched_at_ns)
    if report < today:
        raise Skipped("past_report")
    ts = min(midnight_ns(report), midnight_ns(today))
    return _event(AltDataKind.EARNINGS, ticker, ts, 0, 0.0, report, f"{ticker}-earnings-{report.isoformat()}")


Converter = Callable[[Mapping[str, Any], str | None, int], AltDataEvent]

CONVERTERS: dict[AltDataKind, Converter] = {
    AltDataKind.FLOW_ALERT: flow_alert_event,
    AltDataKind.DARK_POOL: dark_pool_event,
    AltDataKind.CONGRESS: congress_event,
    AltDataKind.INSIDER: insider_event,
    AltDataKind.EARNINGS: earnings_event,
}


@dataclass
class Conversion:
    """Events of one payload plus what was rejected (bad data) or skipped (valid, not an event), by reason."""

    events: list[AltDataEvent] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)


def convert(
    kind: AltDataKind, records: Iterable[Any], *, fetched_at_ns: int, symbol: str | None = None, where: str = "data"
) -> Conversion:
    """Every record of a payload as an event; a bad record is rejected (counted, error kept), never raised.

    Records are judged one by one: unlike the parser (which rejects a whole response so Redis
    keeps the last good one), one odd filing must not hide the others from the strategies.
    """
    out = Conversion()
    converter = CONVERTERS.get(kind)
    if converter is None:
        out.rejected["unsupported_kind"] += 1
        out.errors.append(f"kind = {kind!r}: no converter (known: {sorted(k.value for k in CONVERTERS)})")
        return out
    for i, record in enumerate(records):
        try:
            if not isinstance(record, Mapping):
                raise BadRecord("bad_shape", "<record>", record, "expected an object")
            out.events.append(converter(record, symbol, fetched_at_ns))
        except Skipped as skip:
            out.skipped[skip.reason] += 1
        except BadRecord as bad:
            out.rejected[bad.reason] += 1
            if len(out.errors) < MAX_ERRORS_KEPT:
                out.errors.append(f"{where}[{i}].{bad}")
        except Exception as exc:  # a converter bug costs one record, never the fetcher
            out.rejected["internal"] += 1
            if len(out.errors) < MAX_ERRORS_KEPT:
                out.errors.append(f"{where}[{i}]: {exc!r}")
    return out


def simulated_history(events: Sequence[AltDataEvent], session_date: date) -> list[AltDataEvent]:
    """The part of a simulated session's alt data the feed still delivers directly in ``tws``.

    Everything except the session day's :data:`SESSION_BRIDGED_KINDS` events: those reach the
    strategies through the UW twin, the fetcher and the bridge (whose ``not_before`` is the
    session date), so ``make run`` exercises the live path and no event arrives twice.
    """
    return [e for e in events if e.kind not in SESSION_BRIDGED_KINDS or event_day(e) < session_date]


# --- the bridge ----------------------------------------------------------------------------------
class AltDataBridge:
    """Payload documents in, never-delivered events out; delivered ids remembered in Redis.

    Usage (the fetcher's ``on_payload`` hook)::

        bridge = AltDataBridge(client, symbols=universe, not_before=None)   # live
        bridge.process(AltDataKind.CONGRESS, document, send=to_strategies)

    :meth:`process` is :meth:`pending` (convert, keep what is new), then ``send``, then
    :meth:`commit` (one MULTI/EXEC: every id added and every set's TTL set, or nothing). Sending
    before committing makes delivery at-least-once: if the fetcher dies in between, the next
    fetch sends those events again, and the AltDataBook drops the repeat because the event is
    identical. The opposite order could lose them.

    Delivered ids live in one set per (kind, event day), ``keys.alt_delivered``, expiring
    :data:`KEEP_DAYS` after that day (counted from the fetch time, the injected clock's, so a
    simulated session keeps its sets at least as long as it needs them).
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        symbols: Collection[str] | None = None,
        not_before: date | None = None,
        keep_days: Mapping[AltDataKind, int] | None = None,
    ) -> None:
        self._redis = client
        self._symbols = frozenset(symbols) if symbols is not None else None
        self._not_before = not_before
        self._keep = {**KEEP_DAYS, **(keep_days or {})}
        self.converted: Counter[str] = Counter()
        self.delivered: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.last_errors: list[str] = []

    def set_symbols(self, symbols: Collection[str] | None) -> None:
        """Deliver events of ``symbols`` from now on (a run-time universe change; None: every symbol)."""
        self._symbols = frozenset(symbols) if symbols is not None else None

    def metrics(self) -> dict[str, Any]:
        """Counters as a plain dict: converted and delivered per kind, rejected/skipped per reason, errors."""
        return {
            "converted": dict(self.converted),
            "delivered": dict(self.delivered),
            "delivered_total": sum(self.delivered.values()),
            "rejected": dict(self.rejected),
            "rejected_total": sum(self.rejected.values()),
            "skipped": dict(self.skipped),
            "errors": dict(self.errors),
            "last_errors": list(self.last_errors),
        }

    def _note_errors(self, messages: Iterable[str]) -> None:
        self.last_errors = (self.last_errors + list(messages))[-MAX_ERRORS_KEPT:]

    def pending(self, kind: AltDataKind, document: Mapping[str, Any]) -> list[AltDataEvent]:
        """The events of ``document`` (a :mod:`~quanticity.feeds.sink` payload document) not delivered before.

        Read-only: nothing is remembered until :meth:`commit`. Never raises: a bad document, bad
        records and a Redis outage are counted and yield fewer (or no) events.
        """
        data = document.get("data") if isinstance(document, Mapping) else None
        fetched_at = document.get("fetched_at") if isinstance(document, Mapping) else None
        symbol = document.get("symbol") if isinstance(document, Mapping) else None
        endpoint = document.get("endpoint", "?") if isinstance(document, Mapping) else "?"
        if not isinstance(data, list) or not isinstance(fetched_at, int) or isinstance(fetched_at, bool):
            self.rejected["bad_document"] += 1
            self._note_errors([f"{endpoint}: document needs a 'data' list and an integer 'fetched_at'"])
            return []
        result = convert(
            kind,
            data,
            fetched_at_ns=fetched_at,
            symbol=symbol if isinstance(symbol, str) else None,
            where=str(endpoint),
        )
        self.rejected.update(result.rejected)
        self.skipped.update(result.skipped)
        self._note_errors(result.errors)
        self.converted[kind.value] += len(result.events)
        today = et_day(fetched_at)
        fresh: dict[tuple[str, str], AltDataEvent] = {}
        for event in result.events:
            day = event_day(event)
            if self._symbols is not None and event.symbol not in self._symbols:
                self.skipped["not_in_universe"] += 1
            elif self._not_before is not None and day < self._not_before:
                self.skipped["before_session"] += 1
            elif day + timedelta(days=self._keep[event.kind]) < today:
                self.skipped["too_old"] += 1
            else:
                fresh.setdefault((keys.alt_delivered(event.kind.value, day.isoformat()), event.detail["id"]), event)
        if not fresh:
            return []
        ordered = list(fresh.items())
        try:
            pipe = self._redis.pipeline(transaction=False)
            for (key, ident), _ in ordered:
                pipe.sismember(key, ident)
            seen = pipe.execute()
        except redis.RedisError as exc:
            self.errors["redis"] += 1
            self._note_errors([f"{endpoint}: delivered-id lookup failed: {exc!r}"])
            return []
        return [event for ((_, _), event), known in zip(ordered, seen, strict=True) if not known]

    def commit(self, events: Sequence[AltDataEvent], now_ns: int) -> bool:
        """Remember ``events`` as delivered, atomically (all ids and TTLs or none); False on a Redis error."""
        if not events:
            return True
        groups: dict[str, tuple[list[str], int]] = {}
        for event in events:
            day = event_day(event)
            key = keys.alt_delivered(event.kind.value, day.isoformat())
            expires = midnight_ns(day + timedelta(days=self._keep[event.kind] + 1))
            ttl = max(60, (expires - now_ns) // NS_PER_SECOND)
            ids, _ = groups.setdefault(key, ([], ttl))
            ids.append(event.detail["id"])
        try:
            pipe = self._redis.pipeline(transaction=True)
            for key, (ids, ttl) in groups.items():
                pipe.sadd(key, *ids)
                pipe.expire(key, int(ttl))
            pipe.execute()
        except redis.RedisError as exc:
            self.errors["redis"] += 1
            self._note_errors([f"delivered-id commit failed (events may be sent again): {exc!r}"])
            return False
        return True

    def process(
        self,
        kind: AltDataKind,
        document: Mapping[str, Any],
        send: Callable[[list[AltDataEvent]], object] | None = None,
    ) -> list[AltDataEvent]:
        """:meth:`pending`, ``send`` the new events, :meth:`commit` them; returns what was sent.

        When ``send`` raises, nothing is committed (the next fetch offers the events again) and
        an empty list is returned.
        """
        events = self.pending(kind, document)
        if not events:
            return []
        if send is not None:
            try:
                send(events)
            except Exception as exc:
                self.errors["send"] += 1
                self._note_errors([f"sending {len(events)} {kind.value} events failed: {exc!r}"])
                return []
        self.commit(events, int(document["fetched_at"]))
        self.delivered[kind.value] += len(events)
        return events
