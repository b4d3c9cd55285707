"""The README's main demo runs offline on scikit-learn digits and writes its report."""

import json

import pytest

from keras_compress import demo


@pytest.mark.slow
def test_demo_writes_report_with_reached_sparsity(tmp_path):
    results = demo.run(out=str(tmp_path), epochs=3, sparsity=0.5, seed=1)
    assert (tmp_path / "report.md").read_text().startswith("# keras-compress demo")
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["reloaded_weights_identical"] is True
    layers = saved["sparsity"]["layers"]
    assert layers["conv1"]["sparsity"] == 0.0  # kept dense on purpose
    for name in ("conv2", "fc1", "logits"):
        assert layers[name]["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert 0.0 < results["pruned_accuracy"] <= 1.0
