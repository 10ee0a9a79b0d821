"""Strategies: pure decision logic over feature snapshots; each emits contract-level signals."""
