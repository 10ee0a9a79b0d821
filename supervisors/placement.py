"""Where per-symbol actors run: a balanced, sticky assignment of symbols to cluster nodes.

Pure logic (no Ray) so it is unit-tested directly. Sticky: a symbol whose node is still alive
stays there (moving an actor costs its warm state); symbols of a lost node, and new symbols, go
to the least-loaded alive nodes; ties break by node id so the result is deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def assign_symbols(
    symbols: Iterable[str], nodes: Iterable[str], current: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Map every symbol to a node id.

    ``nodes``: ids of the alive nodes that may host symbol actors; ``current``: the existing
    assignment. Raises ``ValueError`` when there is no node.
    """
    alive = sorted(set(nodes))
    if not alive:
        raise ValueError("nodes: no alive node to place symbol actors on")
    current = current or {}
    load = {node: 0 for node in alive}
    assignment: dict[str, str] = {}
    ordered = sorted(set(symbols))
    for symbol in ordered:
        node = current.get(symbol)
        if node in load:
            assignment[symbol] = node
            load[node] += 1
    # rebalance: move symbols off nodes holding more than their share (ceil) — keeps spread even
    share = -(-len(ordered) // len(alive))
    for symbol in sorted(assignment):
        node = assignment[symbol]
        if load[node] > share:
            del assignment[symbol]
            load[node] -= 1
    for symbol in ordered:
        if symbol not in assignment:
            node = min(alive, key=lambda n: (load[n], n))
            assignment[symbol] = node
            load[node] += 1
    return assignment
