"""tf.distribute: pruning, QAT, distillation and the recipe on two logical CPU
devices (MirroredStrategy) train what one device trains. Each fit runs in a
child process (`distributed_child.py`): logical devices must be configured
before TensorFlow starts."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO

CHILD = REPO / "tests" / "distributed_child.py"


def _fit(devices: int, scenario: str, tmp_path):
    out = tmp_path / f"{scenario}-{devices}.npz"
    done = subprocess.run([sys.executable, str(CHILD), "local", str(devices), scenario, str(out)],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    return np.load(out)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["prune", "qat", "distill", "recipe"])
def test_two_replicas_train_what_one_device_trains(scenario, tmp_path):
    """Same masks, same step counts and quantization ranges, and the same weights
    up to float summation order: every replica holds one mask and one range,
    the schedule advances once per global step, and the distillation loss is
    divided over the replicas as Keras' own losses are."""
    one, two = _fit(1, scenario, tmp_path), _fit(2, scenario, tmp_path)
    assert int(one["replicas"]) == 1 and int(two["replicas"]) == 2
    state = [k for k in one.files if k.startswith("state_")]
    assert any("mask" in k for k in state) and any("pruning_step" in k for k in state)
    if scenario in ("qat", "recipe"):
        assert any("max_value" in k for k in state)
    for key in state:
        if "mask" in key or "pruning_step" in key:
            np.testing.assert_array_equal(one[key], two[key], err_msg=key)
        else:
            np.testing.assert_allclose(one[key], two[key], rtol=1e-4, atol=1e-5, err_msg=key)
    weights = sorted(k for k in one.files if k.startswith("w"))
    for key in weights:
        np.testing.assert_allclose(one[key], two[key], rtol=1e-3, atol=1e-4, err_msg=key)
    assert np.mean(np.argmax(one["predictions"], 1) == np.argmax(two["predictions"], 1)) >= 0.99
