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


def _free_ports(n: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _cluster(workers: int, tmp_path) -> list[dict]:
    """Run `workers` worker processes of one MultiWorkerMirroredStrategy cluster
    on loopback; each returns what `distributed_child.worker` wrote."""
    import json

    hosts = [f"127.0.0.1:{port}" for port in _free_ports(workers)]
    procs, outs = [], []
    for index in range(workers):
        outs.append(tmp_path / f"worker{workers}-{index}.json")
        config = {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}
        procs.append(subprocess.Popen(
            [sys.executable, str(CHILD), "worker", str(outs[-1])], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_CONFIG": json.dumps(config)}))
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=600)
            assert proc.returncode == 0, err[-3000:]
    finally:
        for proc in procs:
            proc.kill()
    return [json.loads(out.read_text()) for out in outs]


@pytest.mark.slow
def test_two_workers_train_and_export_what_one_worker_does(tmp_path):
    """Two worker processes on 127.0.0.1 (TF_CONFIG) run prune + QAT under
    MultiWorkerMirroredStrategy and export the same fully int8 model; each
    holds the same masks and weights, and they match a one-worker run."""
    first, second = _cluster(2, tmp_path)
    (alone,) = _cluster(1, tmp_path)
    assert first["replicas"] == second["replicas"] == 2 and alone["replicas"] == 1
    assert first["fully_integer"] and first["ops"] == ["FULLY_CONNECTED"]
    for key in ("ops", "tensors", "masks", "weights", "pruning_steps", "sparsity"):
        assert first[key] == second[key], key
    assert first["tensors"] == alone["tensors"] and first["masks"] == alone["masks"]
    # 2 epochs of ceil(1,437 digits / 64) steps: the schedule advanced once per global step
    assert first["pruning_steps"] == alone["pruning_steps"] == [2 * 23, 2 * 23]
    assert abs(first["sparsity"] - 0.8) < 0.01
    np.testing.assert_allclose(first["weights"], alone["weights"], rtol=1e-3)
