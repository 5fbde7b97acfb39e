"""Thotto's benchmarks: one module per claim; each prints a table and can write JSON.

Run ``python -m bench --help``. Benchmarks measure; tests never assert timings.
"""
