"""Crash safety: a training process killed (SIGKILL) in the middle of an epoch
resumes from its last checkpoint, with pruning masks and step, QAT ranges and
switches, BatchNormalization state and the distillation schedule intact, and
ends with exactly the weights of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

CHILD = Path(__file__).with_name("crash_child.py")
REPO = Path(__file__).resolve().parents[1]


def _start(workdir: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, str(CHILD), str(workdir)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen) -> None:
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]


@pytest.mark.slow
def test_killed_training_resumes_to_the_uninterrupted_result(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir()
    killed.mkdir()
    uninterrupted = _start(whole)
    interrupted = _start(killed)

    # Kill the second run while it trains epoch 3 (QAT on, masks still ramping).
    deadline = time.monotonic() + 600
    while not (killed / "epoch_2").exists():
        assert interrupted.poll() is None, interrupted.stderr.read()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    interrupted.send_signal(signal.SIGKILL)
    interrupted.wait()
    assert interrupted.returncode == -signal.SIGKILL
    assert not (killed / "result.npz").exists()
    assert list((killed / "backup").iterdir())   # a checkpoint is there to resume from

    for marker in killed.glob("epoch_*"):
        marker.unlink()
    resumed = _start(killed)
    _finish(resumed)
    _finish(uninterrupted)
    # It resumed after epoch 2 (epoch 3 may have been saved before the kill).
    done = sorted(int(p.name.split("_")[1]) for p in killed.glob("epoch_*"))
    assert done[0] in (3, 4) and done[-1] == 5, done
    assert not (killed / "backup").exists()    # cleaned up after success

    a, b = np.load(whole / "result.npz"), np.load(killed / "result.npz")
    assert sorted(a.files) == sorted(b.files)
    assert float(a["sparsity"]) == pytest.approx(0.75, abs=0.01)
    for name in a.files:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


_WRITER = """
import sys
import numpy as np
from tflite_export.model import TFLiteModel
a, b = (TFLiteModel.load(p) for p in sys.argv[2:4])
print("ready", flush=True)
while True:
    for model in (a, b):
        model.save(sys.argv[1])
"""


def test_killed_export_never_leaves_a_partial_model(tmp_path):
    """A process saving .tflite files over and over is killed (SIGKILL) at
    random moments: the target is always absent or one complete model."""
    import keras

    import tflite_export

    models = []
    for units in (1200, 900):   # two multi-megabyte models with different bytes
        model = keras.Sequential([keras.Input((1000,)), keras.layers.Dense(units)])
        path = tmp_path / f"m{units}.tflite"
        tflite_export.convert(model, mode="float32").save(path)
        models.append(path.read_bytes())
    target = tmp_path / "out" / "model.tflite"
    target.parent.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    rng = np.random.default_rng(0)
    for _ in range(6):
        writer = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(target), str(tmp_path / "m1200.tflite"),
             str(tmp_path / "m900.tflite")], env=env, stdout=subprocess.PIPE, text=True)
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.05, 0.4)))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        if target.exists():
            assert target.read_bytes() in models
            tflite_export.TFLiteModel.load(target)
    # Temporary files are dot-files in the same folder; a kill can orphan one,
    # never the model itself.
    assert [p.name for p in target.parent.iterdir() if not p.name.startswith(".")] \
        in ([], ["model.tflite"])
