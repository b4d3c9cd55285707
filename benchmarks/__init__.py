"""Benchmarks: reproducible measurements written to docs/benchmarks.md and .json."""

from pathlib import Path

# Every benchmark's --data_dir default: the shared datasets folder beside a clone.
DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "datasets"
