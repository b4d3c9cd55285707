"""A TFMOT model on tf_keras (prune + PQAT) goes through tflite_export.convert and
export_micro, in a subprocess since TF_USE_LEGACY_KERAS is process-wide."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.slow
def test_tfmot_pqat_model_converts_and_runs_on_micro(tmp_path):
    if importlib.util.find_spec("tensorflow_model_optimization") is None:
        pytest.fail("tensorflow-model-optimization is not installed: pip install -e .[dev]")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, str(REPO / "tests" / "tfmot_peer.py"), str(tmp_path / "micro")],
        env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["fully_integer"], result["ops"]
    assert (tmp_path / "micro" / "tfmot_model_data.cc").is_file() and result["arena"] > 0
    assert abs(result["litert_accuracy"] - result["keras_accuracy"]) <= 0.02, result
    assert result["micro_agreement"] >= 0.995
    assert "tensorflow_model_optimization" not in sys.modules
