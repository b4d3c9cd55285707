"""TFLite-Micro look-up-table compression of low-entropy weights.

`compress_lut(tfl)` finds the constant int8 weight tensors whose values come
from a small set (clustered weights, 4-bit values stored as int8, heavily
pruned kernels) and rewrites them with the `tflite-micro` package's
compressor: each such tensor becomes a table of its distinct values plus
1-7-bit indices, decoded on the device by a DECODE operator. The result is
for TFLite-Micro only (LiteRT does not run DECODE); its outputs equal the
uncompressed model's in TFLite-Micro.

Example:

```python
import keras
import numpy as np
import tflite_export

x = np.random.default_rng(0).random((100, 64), dtype="float32")
model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(128)])
kernel = model.layers[0].kernel
kernel.assign(np.round(kernel.numpy() * 8) / 8)     # few distinct values
tfl = tflite_export.convert(model, mode="int8", representative_data=x)
result = tflite_export.compress_lut(tfl)
result.model.size < tfl.size, result.tensors         # True, [CompressedTensor(...)]
```
"""

from __future__ import annotations

import dataclasses
import importlib
import math

import numpy as np

from tflite_export.model import TFLiteModel

__all__ = ["CompressedTensor", "LutCompression", "compress_lut"]

# Bytes a compressed tensor costs beyond its table and indices (DECODE op,
# metadata), a conservative estimate used to skip tensors that would not shrink.
_OVERHEAD = 256
# Ops whose input 1 is a weight tensor.
_WEIGHT_OPS = {"FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV"}


@dataclasses.dataclass(frozen=True)
class CompressedTensor:
    """One weight tensor stored as a value table plus indices."""

    name: str
    index: int
    distinct_values: int  # per tensor, or the most in any channel
    index_bits: int
    per_channel: bool
    original_bytes: int


@dataclasses.dataclass(frozen=True)
class LutCompression:
    """The compressed model and what was compressed."""

    model: TFLiteModel
    tensors: list[CompressedTensor]
    original_size: int

    @property
    def saved_bytes(self) -> int:
        return self.original_size - self.model.size


def index_bits(count: int) -> int:
    """Bits of a look-up-table index over `count` values (at least 1)."""
    return max(1, math.ceil(math.log2(max(count, 1))))


def compress_lut(tfl: TFLiteModel, max_index_bits: int = 7) -> LutCompression:
    """Compress every int8 weight tensor whose distinct values fit
    `max_index_bits`-bit indices (one table per output channel for tensors
    quantized per channel, else one per tensor). Tensors that would not shrink
    are left as they are, and so is the model when nothing shrinks.

    Raises:
        ValueError: for a bad `max_index_bits` (1-7, what TFLite-Micro decodes).
        ImportError: without the `tflite-micro` package.
    """
    if not isinstance(tfl, TFLiteModel):
        raise ValueError(f"`tfl` must be a TFLiteModel; received {type(tfl).__name__}.")
    if isinstance(max_index_bits, bool) or max_index_bits not in range(1, 8):
        raise ValueError(f"`max_index_bits` must be an integer in 1-7 (TFLite-Micro's "
                         f"DECODE range); received {max_index_bits!r}.")
    try:
        compress = importlib.import_module("tflite_micro.tensorflow.lite.micro.compression.compress")
        spec = importlib.import_module("tflite_micro.tensorflow.lite.micro.compression.spec")
    except ImportError as exc:  # pragma: no cover - tflite-micro is a declared extra
        raise ImportError("compress_lut needs the `tflite-micro` package (a dependency of "
                          "keras-compress): pip install tflite-micro") from exc
    chosen, specs, seen = [], [], set()
    for op, inputs, _ in tfl.operators:
        if op not in _WEIGHT_OPS or len(inputs) < 2:
            continue
        weights = inputs[1]
        if weights.index in seen or weights.dtype != "INT8" or not weights.is_constant:
            continue
        seen.add(weights.index)
        values = tfl.constant(weights)
        # Tensors quantized per channel need one table per channel: measured,
        # TFLite-Micro decodes a single table over per-channel scales wrongly.
        use_channel = len(weights.scale) > 1
        if use_channel:
            distinct = max(len(np.unique(channel)) for channel in values.reshape(len(values), -1))
        else:
            distinct = len(np.unique(values))
        bits = index_bits(distinct)
        tables = (len(values) if use_channel else 1) * distinct
        if bits > max_index_bits or values.size * (8 - bits) / 8 <= tables + _OVERHEAD:
            continue  # would not shrink
        mode = spec.PerChannel(axis=0) if use_channel else spec.PerTensor()
        specs.append(spec.Tensor(subgraph=0, tensor=weights.index, compression=[
            spec.LookUpTableCompression(index_bitwidth=bits, mode=mode)]))
        chosen.append(CompressedTensor(
            name=weights.name, index=weights.index, distinct_values=distinct, index_bits=bits,
            per_channel=use_channel, original_bytes=int(values.size)))
    if not specs:
        return LutCompression(tfl, [], tfl.size)
    content = bytes(compress.compress(tfl.content, specs))
    if len(content) >= tfl.size:
        return LutCompression(tfl, [], tfl.size)
    return LutCompression(TFLiteModel(content, mode=tfl.mode), chosen, tfl.size)
