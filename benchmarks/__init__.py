"""Benchmarks: reproducible measurements written to docs/benchmarks.md and .json."""
