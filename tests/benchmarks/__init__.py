"""Benchmarks (``nox -s benchmark``): speed, memory and statistical performance."""
