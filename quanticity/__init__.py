"""Quanticity: the trading library. Pure logic and I/O clients; it never imports Ray, so the same
code runs in the live actors, in the simulator and in backtests."""

__version__ = "0.1.0"
