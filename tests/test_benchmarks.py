"""Smoke test: the pruning-overhead benchmark produces every column (numbers not asserted)."""

import json

import pytest

from benchmarks import _report, pruning_overhead


@pytest.mark.slow
def test_pruning_overhead_benchmark_writes_its_section(data_dir, tmp_path):
    config = {"data_dir": str(data_dir), "rounds": 1, "batch_size": 256, "seed": 0,
              "models": ["lenet_300_100"]}
    ours = pruning_overhead.measure_keras_compress(config)
    result = ours["results"]["lenet_300_100"]
    assert result["plain"] > 0 and result["pruned"] > 0 and result["ratio"] > 0
    markdown = pruning_overhead.render(ours, None, config)
    _report.update("pruning_overhead", markdown, {"keras_compress": ours}, docs=tmp_path)
    _report.update("other", "## other", {"x": 1}, docs=tmp_path)
    _report.update("pruning_overhead", markdown, {"keras_compress": ours}, docs=tmp_path)
    text = (tmp_path / "benchmarks.md").read_text()
    assert text.count("<!-- pruning_overhead:start -->") == 1 and "## other" in text
    assert "| lenet_300_100 |" in text and "not run" in text
    data = json.loads((tmp_path / "benchmarks.json").read_text())
    assert set(data) == {"pruning_overhead", "other"}
