"""Helpers shared by tests and benchmarks (no pytest import: benchmarks run without it)."""
