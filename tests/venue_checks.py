"""What the venue holds against what the router recorded — the exactly-once check of the system tests.

An order reference the router recorded either reached the venue exactly once, or never left the
router and was closed there (CANCELLED) — e.g. a bracket leg whose send timed out and which was
cancelled before any retry, so reconcile will never send it. Nothing may stay in doubt, and the
venue may hold no reference the router does not know.
"""

from __future__ import annotations

import ray

from quanticity.execution.store import ExecutionStore
from quanticity.messages import OrderStatus


def assert_venue_matches_records(store: ExecutionStore, broker: ray.actor.ActorHandle) -> None:
    """Fail unless every recorded reference is at the venue once or was closed before it was sent."""
    audit = ray.get(broker.audit.remote())
    assert audit["duplicate_places"] == 0, "an order reference reached the broker twice"
    refs = store.all_refs()
    at_venue = {ref for ref in refs if ray.get(broker.lookup.remote(ref)) is not None}
    assert audit["orders"] == len(at_venue), "the venue holds an order the router never recorded"
    for ref in sorted(set(refs) - at_venue):
        status = store.status(ref)
        assert status is OrderStatus.CANCELLED, f"order {ref} never reached the venue yet is {status}: lost"
    assert not store.pending_send(), "an order is still in doubt"
