"""`python -m tflite_export convert|micro|bench` round trip on files, and its errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import REPO, compile_classifier


def cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "tflite_export", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_cli_round_trip_on_files(digits_split, tmp_path):
    (x, y), (xt, yt) = digits_split
    model = compile_classifier(keras.Sequential([
        keras.Input((8, 8, 1), name="image"), keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.Reshape((-1,)), keras.layers.Dense(10)]))
    model.fit(x, y, epochs=4, verbose=0)
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "rep.npy", x[:100])
    np.save(tmp_path / "xt.npy", xt)
    np.save(tmp_path / "yt.npy", yt)

    done = cli("convert", "--model=m.keras", "--mode=int8", "--representative=rep.npy",
               "--output=m.tflite", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "fully integer: True" in done.stdout and (tmp_path / "m.tflite").is_file()

    done = cli("micro", "--tflite=m.tflite", "--out_dir=micro", "--name=digits", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "micro" / "digits_model_data.cc").is_file() and "arena" in done.stdout

    done = cli("bench", "--tflite=m.tflite", "--x=xt.npy", "--y=yt.npy", "--model=m.keras",
               "--out_dir=report", "--runs=10", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "report" / "report.json").read_text())[0]
    assert abs(result["litert_accuracy"] - result["keras_accuracy"]) <= 0.01
    assert result["micro_agreement"] >= 0.995


@pytest.mark.slow
def test_cli_errors_name_the_problem(tmp_path):
    (tmp_path / "bad.tflite").write_bytes(b"not a model at all")
    done = cli("micro", "--tflite=bad.tflite", "--out_dir=o", cwd=tmp_path)
    assert done.returncode == 1 and "Not a TFLite flatbuffer" in done.stderr
    done = cli("convert", "--model=missing.keras", "--output=x.tflite", cwd=tmp_path)
    assert done.returncode == 1 and "missing.keras" in done.stderr
    done = cli("explode", cwd=tmp_path)
    assert done.returncode != 0 and "convert | micro | bench" in done.stderr
    done = cli("convert", cwd=tmp_path)
    assert done.returncode != 0 and "--model" in done.stderr
