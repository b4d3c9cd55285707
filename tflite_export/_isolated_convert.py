"""Conversion in a child process, for models whose conversion can crash the
TFLite converter (full-integer calibration of Keras 3 LSTM / GRU layers
segfaults in the calibrator's `FeedTensor`).

The parent writes the exported SavedModel's folder, the converter settings
and the calibration samples; this module, run as `python -m
tflite_export._isolated_convert <folder>`, converts and writes `model.tflite`
or `error.json`. A child killed by a signal becomes a `ConversionError` in
the parent naming the signal and the layers that can cause it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from tflite_export import _child

__all__ = ["convert_in_child"]


def convert_in_child(saved_model: str, signature_key: str, settings: dict,
                     samples: list[list[np.ndarray]] | None, suspects: list[str],
                     work_dir: str, timeout: float = 3600.0) -> bytes:
    """Convert the SavedModel in `saved_model` in a child process, exchanging
    files through `work_dir` (a scratch folder of the caller's).

    Raises:
        ConversionError: the child crashed (naming `suspects`, the layers
            that can crash the converter) or the converter refused the model.
    """
    from tflite_export.converter import ConversionError

    work = Path(work_dir) / "isolated"
    work.mkdir(exist_ok=True)
    (work / "settings.json").write_text(json.dumps({**settings, "saved_model": saved_model,
                                                    "signature_key": signature_key}))
    if samples is not None:
        np.savez(work / "samples.npz", **{f"s{i}_{j}": a for i, row in enumerate(samples)
                                          for j, a in enumerate(row)},
                 count=np.array([len(samples), len(samples[0])]))
    try:
        proc = subprocess.run([sys.executable, "-m", "tflite_export._isolated_convert",
                               str(work)], capture_output=True, text=True, timeout=timeout,
                              env=_child.env(TF_CPP_MIN_LOG_LEVEL="3"))
    except subprocess.TimeoutExpired:
        raise ConversionError(f"The TFLite converter ran for more than {timeout:.0f} s "
                              "converting the model in a child process; it was stopped.") from None
    output = work / "model.tflite"
    if proc.returncode == 0 and output.is_file():
        return output.read_bytes()
    error = work / "error.json"
    if error.is_file():
        raise RuntimeError(json.loads(error.read_text())["message"])
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        culprit = (f" The model holds {', '.join(suspects)}, whose full-integer calibration "
                   "crashes the TFLite converter (its WHILE loop; a known converter bug)."
                   if suspects else "")
        raise ConversionError(
            f"The TFLite converter crashed ({name}) converting to '{settings['mode']}'. It "
            f"ran in a child process, so this process is unaffected.{culprit} Convert with "
            "mode='dynamic' or 'float16' for LiteRT, or replace the layer (e.g. a GRU with "
            "unroll=True, which converts to FULLY_CONNECTED / LOGISTIC / TANH ops).")
    tail = " ".join(proc.stderr.strip().splitlines()[-3:])[-500:]
    raise ConversionError(f"The TFLite converter's child process failed (exit status "
                          f"{proc.returncode}): {tail}")


def _main(folder: str) -> None:
    import tensorflow as tf

    from tflite_export.converter import configure
    from tflite_export.model import write_atomic

    work = Path(folder)
    settings = json.loads((work / "settings.json").read_text())
    samples = None
    if (work / "samples.npz").is_file():
        with np.load(work / "samples.npz") as saved:
            count, width = (int(v) for v in saved["count"])
            samples = [[saved[f"s{i}_{j}"] for j in range(width)] for i in range(count)]
    converter = tf.lite.TFLiteConverter.from_saved_model(
        settings["saved_model"], signature_keys=[settings["signature_key"]])
    configure(converter, settings["mode"], settings["io_dtype"], settings["dense_per_tensor"],
              samples, settings["allow_float_ops"], settings.get("names"))
    try:
        content = converter.convert()
    except Exception as exc:  # noqa: BLE001 - handed to the parent, which explains it
        write_atomic(work / "error.json", json.dumps({"message": str(exc)}).encode())
        return
    write_atomic(work / "model.tflite", content)


if __name__ == "__main__":
    _main(sys.argv[1])
