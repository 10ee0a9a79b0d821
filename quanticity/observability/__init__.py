"""Logs, latency statistics and Prometheus metrics shared by every actor."""
