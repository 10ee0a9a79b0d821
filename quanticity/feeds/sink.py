"""Write one accepted payload to Redis: a single SET with the endpoint's TTL, never a partial write.

The document is ``{"source", "endpoint", "symbol", "fetched_at" (ns), "meta", "data"}``, so a
reader sees the typed records and how fresh they are; the key expires when the feed stops, so
a strategy can never trade on data the fetcher stopped refreshing long ago.
"""

from __future__ import annotations

import json

import redis

from quanticity import keys
from quanticity.feeds.parse import Payload


def payload_document(source: str, endpoint: str, symbol: str | None, fetched_at_ns: int, payload: Payload) -> str:
    """The JSON stored for one fetch (NaN/inf cannot appear: the parser rejected them)."""
    doc = {
        "source": source,
        "endpoint": endpoint,
        "symbol": symbol,
        "fetched_at": fetched_at_ns,
        "meta": payload.meta,
        "data": payload.records,
    }
    return json.dumps(doc, separators=(",", ":"), allow_nan=False)


def write_payload(
    client: redis.Redis,
    key_template: str,
    ttl_s: int,
    *,
    source: str,
    endpoint: str,
    symbol: str | None,
    fetched_at_ns: int,
    payload: Payload,
) -> str:
    """Store the payload under the templated key with ``ttl_s``; returns the key."""
    key = keys.raw_source(key_template, symbol)
    client.set(key, payload_document(source, endpoint, symbol, fetched_at_ns, payload), ex=int(ttl_s))
    return key
