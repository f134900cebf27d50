"""Benchmarks for aimfair-plugin (slow runs and speed ratios live here, not in the tests)."""
