"""Android artifacts: the model plus what an app needs to feed it correctly.

The `.tflite` carries standard TFLite metadata (`tflite_export.metadata`):
name, description, version, input normalization `(pixel - mean) / std` and
the labels packed inside, which Android Studio's model binding and the TFLite
Support library read. Beside it, a labels file and a small JSON file for apps
that read neither: the signature key, input/output names, shapes, types and
quantization, the normalization and the ops.

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

from tflite_export.metadata import embed_metadata, per_channel
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


def export_android(
    tfl: TFLiteModel,
    out_dir: str | os.PathLike,
    *,
    name: str = "model",
    labels: Sequence[str] | None = None,
    mean: float | Sequence[float] = 0.0,
    std: float | Sequence[float] = 1.0,
    description: str = "",
    version: str = "",
    author: str = "",
    license: str = "",  # noqa: A002 - the metadata schema's field name
) -> AndroidArtifacts:
    """Write `<name>.tflite` (with embedded metadata and labels),
    `<name>_labels.txt` and `<name>.json` to `out_dir` (typically an app's
    `src/main/assets`). Files are written atomically.

    Raises:
        ValueError: labels that do not match the output size, a zero `std`, or
            normalization values that do not match the input channels.
    """
    # validates the model, labels and normalization before anything is written
    content = embed_metadata(tfl, name=name, description=description, version=version,
                             author=author, license=license, mean=mean, std=std,
                             labels=labels, labels_file=f"{name}_labels.txt")
    channels = tfl.inputs[0].shape[-1] if tfl.inputs[0].shape else 1
    means, stds = per_channel("mean", mean, channels), per_channel("std", std, channels)
    labels = None if labels is None else [str(label) for label in labels]
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
    model_path = write_atomic(out / f"{name}.tflite", content)
    if labels_path is not None:
        write_atomic(labels_path, ("\n".join(labels) + "\n").encode())
    meta_path = write_atomic(out / f"{name}.json", (json.dumps(metadata, indent=2) + "\n").encode())
    return AndroidArtifacts(model=model_path, labels=labels_path, metadata=meta_path)
