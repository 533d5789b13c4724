"""Benchmarks (run as modules, e.g. ``python -m amad.bench.losses``)."""
