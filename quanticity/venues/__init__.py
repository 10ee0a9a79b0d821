"""Connectors to external trading venues (library code: no Ray). :mod:`.ibkr` is Interactive Brokers."""
