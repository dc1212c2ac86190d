"""Benchmark scripts (run by hand, not by pytest): each prints a table and writes JSON under reports/."""
