"""Android artifacts: the model plus what an app needs to feed it correctly.

`tflite-support` metadata writers are stuck at old Python versions, so the
metadata travels as a small JSON file beside the model instead of inside it:
the signature key, input/output names, shapes, types and quantization, the
input normalization `(pixel - mean) / std`, and the labels file.

Example:

```python
import keras
import numpy as np
import tflite_export

x = np.random.default_rng(0).random((200, 8, 8, 1), dtype="float32")
y = np.arange(200) % 10
model = keras.Sequential([keras.Input((8, 8, 1)),
                          keras.layers.Conv2D(4, 3, activation="relu"),
                          keras.layers.Flatten(), keras.layers.Dense(10)])
tfl = tflite_export.convert(model, mode="int8", representative_data=x)
tflite_export.export_android(tfl, "app/src/main/assets", name="digits",
                             labels=[str(i) for i in range(10)], mean=0.0, std=255.0)
```
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path

from tflite_export.model import TensorInfo, TFLiteModel, write_atomic

__all__ = ["export_android", "AndroidArtifacts"]


@dataclasses.dataclass(frozen=True)
class AndroidArtifacts:
    model: Path
    labels: Path | None
    metadata: Path

    @property
    def files(self) -> list[Path]:
        return [p for p in (self.model, self.labels, self.metadata) if p is not None]


def _tensor(info: TensorInfo) -> dict:
    return {"name": info.name, "shape": list(info.shape), "dtype": info.dtype.lower(),
            "scale": list(info.scale), "zero_point": list(info.zero_point)}


def _per_channel(name: str, value: float | Sequence[float], channels: int) -> list[float]:
    values = [float(value)] if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(values) not in (1, channels):
        raise ValueError(f"`{name}` has {len(values)} values; give one, or one per input "
                         f"channel ({channels}).")
    return values


def export_android(
    tfl: TFLiteModel,
    out_dir: str | os.PathLike,
    *,
    name: str = "model",
    labels: Sequence[str] | None = None,
    mean: float | Sequence[float] = 0.0,
    std: float | Sequence[float] = 1.0,
) -> AndroidArtifacts:
    """Write `<name>.tflite`, `<name>_labels.txt` and `<name>.json` to `out_dir`
    (typically an app's `src/main/assets`). Files are written atomically.

    Raises:
        ValueError: labels that do not match the output size, a zero `std`, or
            normalization values that do not match the input channels.
    """
    if not isinstance(tfl, TFLiteModel):
        raise ValueError(f"`tfl` must be a TFLiteModel; received {type(tfl).__name__}.")
    channels = tfl.inputs[0].shape[-1] if tfl.inputs[0].shape else 1
    means = _per_channel("mean", mean, channels)
    stds = _per_channel("std", std, channels)
    if any(s == 0 for s in stds):
        raise ValueError("`std` must not be zero.")
    outputs = tfl.outputs[0].shape[-1] if tfl.outputs[0].shape else 1
    if labels is not None:
        labels = [str(label) for label in labels]
        if len(labels) != outputs:
            raise ValueError(f"`labels` has {len(labels)} entries but the model output "
                             f"'{tfl.outputs[0].name}' has {outputs} classes.")
        if any("\n" in label for label in labels):
            raise ValueError("`labels` entries must not contain newlines.")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"`out_dir` {out} exists and is not a directory.")
    out.mkdir(parents=True, exist_ok=True)

    labels_path = out / f"{name}_labels.txt" if labels is not None else None
    metadata = {
        "model": f"{name}.tflite",
        "mode": tfl.mode,
        "signatures": tfl.signature_io,
        "inputs": [_tensor(t) for t in tfl.inputs],
        "outputs": [_tensor(t) for t in tfl.outputs],
        "normalization": {"mean": means, "std": stds,
                          "formula": "x = (pixel - mean) / std, then quantize with the "
                                     "input scale and zero_point when they are set"},
        "labels": labels_path.name if labels_path else None,
        "ops": tfl.ops,
    }
    model_path = tfl.save(out / f"{name}.tflite")
    if labels_path is not None:
        write_atomic(labels_path, ("\n".join(labels) + "\n").encode())
    meta_path = write_atomic(out / f"{name}.json", (json.dumps(metadata, indent=2) + "\n").encode())
    return AndroidArtifacts(model=model_path, labels=labels_path, metadata=meta_path)
