"""Execution: the order router's lifecycle, positions and P&L, and exit management."""
