"""Run every benchmark in bench/ (``make bench``): each prints its summary and writes its JSON."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ["analytics", "backtest", "pipeline"]


def main(argv: list[str]) -> int:
    chosen = argv or BENCHMARKS
    for name in chosen:
        module = importlib.import_module(f"bench.{name}")
        module.main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
