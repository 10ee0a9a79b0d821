"""Validate and type the body of a UW or Alpha Vantage response, or say precisely why not.

A parser takes the raw bytes and returns a :class:`Payload` of typed records, or raises
:class:`Rejected` (the data is bad: malformed JSON, wrong shape, a NaN greek, a negative price,
a crossed quote) or :class:`Throttled` (Alpha Vantage's way of saying "slow down": HTTP 200 with
a ``Note`` or ``Information`` key). A response is accepted or rejected *as a whole*: one bad
record rejects the payload, so Redis keeps the last good one instead of a half-valid mix that a
strategy could trade on.

Parsers are looked up by the name an endpoint's YAML gives (``parser: uw.spot_exposures``), see
:data:`PARSERS`.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from typing import Any

from quanticity.calendar import ET
from quanticity.feeds.schemas import (
    AV_BAR,
    AV_GREEKS,
    AV_MACRO_POINT,
    AV_NEWS_ITEM,
    AV_OPTION,
    OCC_SYMBOL,
    UW_OPTION_CHAINS,
    UW_SCHEMAS,
    Check,
    Field,
    RecordSchema,
    Wire,
)


class RejectReason(enum.StrEnum):
    """Why a response was not accepted as data (the metric label)."""

    MALFORMED_JSON = "malformed_json"
    BAD_SHAPE = "bad_shape"
    MISSING_FIELD = "missing_field"
    BAD_VALUE = "bad_value"
    NON_FINITE = "non_finite"
    OUT_OF_RANGE = "out_of_range"
    CROSSED = "crossed"
    AV_ERROR = "av_error"
    STALE = "stale"  # the engine's freshness check: the newest record is older than ``max_age_s``
    FUTURE = "future"  # the engine's freshness check: a record stamped beyond ``max_future_s`` ahead


class Rejected(Exception):
    """The response is not usable data; ``reason`` is the metric label, ``detail`` names field and value."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class Throttled(Exception):
    """Alpha Vantage answered 200 but with a throttle message (``Note`` / ``Information``)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class Payload:
    """Typed records of one accepted response, plus scalar top-level metadata (e.g. AV ``Meta Data``).

    ``dropped`` holds the records left out of an otherwise good response, each with the reason
    naming field and value (only parsers that may drop single records fill it: an AV contract
    with a NaN greek); the engine counts them.
    """

    records: list[Any]
    meta: dict[str, Any] = field(default_factory=dict)
    dropped: list[Rejected] = field(default_factory=list)
    time_field: str | None = None
    """The record field that says when each record happened (parsers of :data:`TIME_FIELDS`)."""
    newest_ns: int | None = None
    """The latest ``time_field`` of the records, epoch ns (None: no time-stamped records)."""


def _reject_constant(token: str) -> float:
    raise Rejected(RejectReason.NON_FINITE, f"JSON constant {token} is not a number a feed may carry")


def decode_json(body: bytes) -> Any:
    """Strict JSON: ``NaN``/``Infinity`` tokens are rejected, not turned into floats."""
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except Rejected:
        raise
    except (ValueError, UnicodeDecodeError) as exc:
        snippet = body[:60].decode("utf-8", "replace")
        raise Rejected(
            RejectReason.MALFORMED_JSON, f"{exc.__class__.__name__}: {exc} (body starts {snippet!r})"
        ) from exc


# --- one field -------------------------------------------------------------------------------
def _number(where: str, raw: Any, integral: bool) -> float | int:
    if isinstance(raw, bool):
        raise Rejected(RejectReason.BAD_VALUE, f"{where} = {raw!r}: a boolean is not a number")
    if isinstance(raw, int | float):
        value: float | int = raw
    elif isinstance(raw, str):
        try:
            value = int(raw) if integral and re.fullmatch(r"[+-]?\d+", raw.strip()) else float(raw)
        except ValueError as exc:
            raise Rejected(RejectReason.BAD_VALUE, f"{where} = {raw!r}: not a number") from exc
    else:
        raise Rejected(RejectReason.BAD_VALUE, f"{where} = {raw!r}: expected a number, got {type(raw).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise Rejected(RejectReason.NON_FINITE, f"{where} = {raw!r}: not finite")
    if integral and isinstance(value, float):
        if value != int(value):
            raise Rejected(RejectReason.BAD_VALUE, f"{where} = {raw!r}: expected an integer")
        value = int(value)
    return value


def _checked(where: str, raw: Any, value: float | int, check: Check) -> float | int:
    if check is Check.POSITIVE and value <= 0:
        raise Rejected(RejectReason.OUT_OF_RANGE, f"{where} = {raw!r}: must be > 0")
    if check is Check.NON_NEGATIVE and value < 0:
        raise Rejected(RejectReason.OUT_OF_RANGE, f"{where} = {raw!r}: must be ≥ 0")
    if check is Check.SIGNED_UNIT and not -1.0 <= value <= 1.0:
        raise Rejected(RejectReason.OUT_OF_RANGE, f"{where} = {raw!r}: must be within [-1, 1]")
    return value


def parse_field(where: str, raw: Any, spec: Field) -> Any:
    """Decode one present, non-null field according to ``spec``."""
    wire = spec.wire
    if wire in (Wire.NUMSTR, Wire.INT, Wire.NUMBER):
        if wire is Wire.NUMBER and isinstance(raw, str):
            raise Rejected(RejectReason.BAD_VALUE, f"{where} = {raw!r}: expected a JSON number")
        return _checked(where, raw, _number(where, raw, integral=wire is Wire.INT), spec.check)
    if wire is Wire.BOOL:
        if not isinstance(raw, bool):
            raise Rejected(RejectReason.BAD_VALUE, f"{where} = {raw!r}: expected true/false")
        return raw
    if wire is Wire.LIST:
        if not isinstance(raw, list):
            raise Rejected(RejectReason.BAD_VALUE, f"{where} = {raw!r}: expected a list")
        return raw
    if wire is Wire.OBJECT:
        if not isinstance(raw, dict):
            raise Rejected(RejectReason.BAD_VALUE, f"{where} = {raw!r}: expected an object")
        return raw
    if not isinstance(raw, str):
        raise Rejected(RejectReason.BAD_VALUE, f"{where} = {raw!r}: expected a string")
    if wire is Wire.DATE:
        try:
            date.fromisoformat(raw)
        except ValueError as exc:
            raise Rejected(RejectReason.BAD_VALUE, f"{where} = {raw!r}: not a YYYY-MM-DD date") from exc
    elif wire is Wire.TIMESTAMP:
        try:
            datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError as exc:
            raise Rejected(RejectReason.BAD_VALUE, f"{where} = {raw!r}: not an ISO-8601 timestamp") from exc
    if spec.choices is not None and raw not in spec.choices:
        raise Rejected(RejectReason.BAD_VALUE, f"{where} = {raw!r}: expected one of {sorted(spec.choices)}")
    return raw


def parse_record(where: str, raw: Any, schema: RecordSchema, null_tokens: frozenset[str] = frozenset()) -> dict:
    """Typed copy of one record: known fields only, required ones present, every value checked.

    Empty strings (UW sends ``""`` for "no value") and ``null_tokens`` (AV's ``"."``) become None
    for optional fields. Unknown fields are dropped: the API grows fields over time, and a new
    field must not stop the feed.
    """
    if not isinstance(raw, dict):
        raise Rejected(RejectReason.BAD_SHAPE, f"{where} = {_short(raw)}: expected an object")
    out: dict[str, Any] = {}
    for name, spec in schema.fields.items():
        value = raw.get(name)
        empty = value is None or (isinstance(value, str) and (value == "" or value in null_tokens))
        if empty:
            if spec.required:
                raise Rejected(RejectReason.MISSING_FIELD, f"{where}.{name} = {value!r}: required by {schema.name}")
            out[name] = None
            continue
        out[name] = parse_field(f"{where}.{name}", value, spec)
    return out


def _short(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) <= 80 else text[:77] + "..."


# --- time stamps -----------------------------------------------------------------------------
TIME_FIELDS: dict[str, str] = {
    "uw.spot_exposures": "time",
    "uw.net_prem_ticks": "tape_time",
    "uw.flow_alerts": "created_at",
    "uw.darkpool": "executed_at",
    "uw.news_headlines": "created_at",
    "av.time_series": "ts",
}
"""Parser → the record field stamping when the record happened; the engine's freshness checks read the newest."""
AGE_CHECKED = frozenset({"uw.spot_exposures", "uw.net_prem_ticks", "av.time_series"})
"""Parsers of series that gain a point every minute (or bar) while the market is open: during regular
hours a newest point older than the source's ``max_age_s`` means the vendor served a stale snapshot.
Event lists (flow alerts, dark-pool prints, news) are not: a quiet hour is not an error."""


def timestamp_ns(where: str, raw: Any, local: tzinfo | None = None) -> int:
    """Epoch ns of an ISO-8601 time stamp; a naive one is in ``local`` (a tzinfo), else UTC."""
    if not isinstance(raw, str):
        raise Rejected(RejectReason.BAD_VALUE, f"{where} = {_short(raw)}: expected an ISO-8601 timestamp")
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise Rejected(RejectReason.BAD_VALUE, f"{where} = {raw!r}: not an ISO-8601 timestamp") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=local or UTC)
    return int(moment.timestamp() * 1_000_000) * 1_000


def _newest(name: str, records: list[Any], local: tzinfo | None = None) -> tuple[str | None, int | None]:
    """``(time field, newest stamp ns)`` of a parser's records (``(None, None)`` for parsers without one)."""
    time_field = TIME_FIELDS.get(name)
    if time_field is None:
        return None, None
    stamps = [
        timestamp_ns(f"{name} record {i}: {time_field}", rec[time_field], local)
        for i, rec in enumerate(records)
        if isinstance(rec, dict) and rec.get(time_field) is not None
    ]
    return time_field, max(stamps, default=None)


# --- Unusual Whales --------------------------------------------------------------------------
def _uw_data(body: bytes) -> tuple[list[Any], dict[str, Any]]:
    obj = decode_json(body)
    if not isinstance(obj, dict) or "data" not in obj:
        raise Rejected(RejectReason.BAD_SHAPE, f"<root> = {_short(obj)}: expected an object with a 'data' list")
    data = obj["data"]
    if not isinstance(data, list):
        raise Rejected(RejectReason.BAD_SHAPE, f"data = {_short(data)}: expected a list")
    meta = {k: v for k, v in obj.items() if k != "data" and isinstance(v, str | int | float | bool)}
    return data, meta


def uw_parser(schema: RecordSchema) -> Callable[[bytes], Payload]:
    """Parser of a UW endpoint whose ``data`` is a list of ``schema`` records."""

    def parse(body: bytes) -> Payload:
        data, meta = _uw_data(body)
        records = [parse_record(f"data[{i}]", rec, schema) for i, rec in enumerate(data)]
        time_field, newest = _newest(schema.name, records)
        return Payload(records, meta, time_field=time_field, newest_ns=newest)

    return parse


_OCC = re.compile(OCC_SYMBOL)


def parse_uw_option_chains(body: bytes) -> Payload:
    """``/option-chains``: a list of OCC symbols."""
    data, meta = _uw_data(body)
    for i, symbol in enumerate(data):
        if not isinstance(symbol, str) or not _OCC.match(symbol):
            raise Rejected(RejectReason.BAD_VALUE, f"data[{i}] = {_short(symbol)}: not an OCC option symbol")
    return Payload(list(data), meta)


# --- Alpha Vantage ---------------------------------------------------------------------------
def _av_object(body: bytes) -> dict[str, Any]:
    """Decode an AV body and surface its in-band error and throttle signals (HTTP 200 either way)."""
    obj = decode_json(body)
    if not isinstance(obj, dict):
        raise Rejected(RejectReason.BAD_SHAPE, f"<root> = {_short(obj)}: expected an object")
    if "Error Message" in obj:
        raise Rejected(RejectReason.AV_ERROR, f"Error Message = {_short(obj['Error Message'])}")
    for kind in ("Note", "Information"):
        if kind in obj:
            raise Throttled(kind.lower(), str(obj[kind]))
    return obj


_AV_QUOTE = RecordSchema(AV_OPTION.name + ".quote", {k: v for k, v in AV_OPTION.fields.items() if k not in AV_GREEKS})
_AV_GREEKS = RecordSchema(AV_OPTION.name + ".greeks", {k: v for k, v in AV_OPTION.fields.items() if k in AV_GREEKS})


def parse_av_realtime_options(body: bytes) -> Payload:
    """``REALTIME_OPTIONS``: every contract typed; a crossed quote (bid > ask > 0) rejects the chain.

    Greeks are the vendor's model output per contract, and one contract's NaN/inf delta or a
    delta outside [-1, 1] says nothing about the others' quotes: that contract is dropped (in
    ``Payload.dropped`` with the field and value) and the rest of the chain is kept. Everything
    else — the identity and quote fields, a crossed quote, the body's shape — is judged on the
    whole chain, and a chain whose every contract was dropped is rejected (the last good one stays).
    """
    obj = _av_object(body)
    data = obj.get("data")
    if not isinstance(data, list):
        raise Rejected(RejectReason.BAD_SHAPE, f"data = {_short(data)}: expected a list of contracts")
    records: list[dict[str, Any]] = []
    dropped: list[Rejected] = []
    for i, raw in enumerate(data):
        quote = parse_record(f"data[{i}]", raw, _AV_QUOTE)
        if quote["ask"] > 0 and quote["bid"] > quote["ask"]:
            raise Rejected(
                RejectReason.CROSSED, f"data[{i}] {quote['contractID']}: bid {quote['bid']} > ask {quote['ask']}"
            )
        try:
            greeks = parse_record(f"data[{i}] {quote['contractID']}", raw, _AV_GREEKS)
        except Rejected as reject:
            dropped.append(reject)
            continue
        records.append({name: (greeks | quote)[name] for name in AV_OPTION.fields})
    if dropped and not records:
        raise dropped[0]
    return Payload(records, {k: v for k, v in obj.items() if k in ("endpoint", "message")}, dropped)


def _av_series(obj: dict[str, Any], prefix: str) -> tuple[str, dict[str, Any]]:
    keys = [k for k in obj if k.startswith(prefix)]
    if len(keys) != 1 or not isinstance(obj[keys[0]], dict):
        raise Rejected(RejectReason.BAD_SHAPE, f"<root> keys {sorted(obj)}: expected one '{prefix}…' object")
    return keys[0], obj[keys[0]]


def _av_meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("Meta Data", {})
    return {str(k): v for k, v in meta.items() if isinstance(v, str | int | float)} if isinstance(meta, dict) else {}


def parse_av_time_series(body: bytes) -> Payload:
    """``TIME_SERIES_INTRADAY``: bars sorted by time, prices > 0, high ≥ low, as ``{ts, open, …}``."""
    obj = _av_object(body)
    key, series = _av_series(obj, "Time Series")
    records = []
    for ts in sorted(series):
        where = f"{key}[{ts}]"
        bar = parse_record(where, series[ts], AV_BAR)
        if bar["2. high"] < bar["3. low"]:
            raise Rejected(RejectReason.CROSSED, f"{where}: high {bar['2. high']} < low {bar['3. low']}")
        records.append(
            {
                "ts": ts,
                "open": bar["1. open"],
                "high": bar["2. high"],
                "low": bar["3. low"],
                "close": bar["4. close"],
                "volume": bar["5. volume"],
            }
        )
    time_field, newest = _newest("av.time_series", records, ET)  # AV stamps bars in US/Eastern, naive
    return Payload(records, _av_meta(obj), time_field=time_field, newest_ns=newest)


def parse_av_indicator(body: bytes) -> Payload:
    """A technical indicator (``RSI``, ``MACD``, ``BBANDS``, …): ``{ts, <line>: float, …}`` sorted by time."""
    obj = _av_object(body)
    key, series = _av_series(obj, "Technical Analysis: ")
    records = []
    for ts in sorted(series):
        point = series[ts]
        if not isinstance(point, dict) or not point:
            raise Rejected(RejectReason.BAD_SHAPE, f"{key}[{ts}] = {_short(point)}: expected an object of values")
        record: dict[str, Any] = {"ts": ts}
        for line, raw in point.items():
            record[line] = _number(f"{key}[{ts}].{line}", raw, integral=False)
        records.append(record)
    return Payload(records, _av_meta(obj))


def parse_av_news(body: bytes) -> Payload:
    """``NEWS_SENTIMENT``: the ``feed`` articles with sentiment scores in [-1, 1]."""
    obj = _av_object(body)
    feed = obj.get("feed")
    if not isinstance(feed, list):
        raise Rejected(RejectReason.BAD_SHAPE, f"feed = {_short(feed)}: expected a list of articles")
    meta = {k: v for k, v in obj.items() if k in ("items", "sentiment_score_definition", "relevance_score_definition")}
    return Payload([parse_record(f"feed[{i}]", rec, AV_NEWS_ITEM) for i, rec in enumerate(feed)], meta)


def parse_av_macro(body: bytes) -> Payload:
    """A macro series (``CPI``, ``TREASURY_YIELD``, …): ``{date, value}`` points, ``"."`` → None."""
    obj = _av_object(body)
    data = obj.get("data")
    if not isinstance(data, list):
        raise Rejected(RejectReason.BAD_SHAPE, f"data = {_short(data)}: expected a list of observations")
    records = [parse_record(f"data[{i}]", rec, AV_MACRO_POINT, frozenset({"."})) for i, rec in enumerate(data)]
    return Payload(records, {k: v for k, v in obj.items() if k in ("name", "interval", "unit")})


PARSERS: dict[str, Callable[[bytes], Payload]] = {
    **{name: uw_parser(schema) for name, schema in UW_SCHEMAS.items()},
    UW_OPTION_CHAINS: parse_uw_option_chains,
    "av.realtime_options": parse_av_realtime_options,
    "av.time_series": parse_av_time_series,
    "av.indicator": parse_av_indicator,
    "av.news_sentiment": parse_av_news,
    "av.macro": parse_av_macro,
}
"""Parser name (the ``parser:`` of an endpoint in a source YAML) → parser; ``uw.*`` / ``av.*`` by dialect."""
