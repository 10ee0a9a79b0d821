"""The root supervisor (topology, health, restart + restore, placement) and the CLI that starts it."""
