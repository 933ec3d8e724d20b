"""Benchmarks of Keel against a bare Temporal floor; run on demand with `python -m bench.run`."""
