"""Fake-quantization arithmetic shared by the QAT layers.

Weights: symmetric, narrow range (int8 values in [-127, 127], zero point 0)
and per output channel, with scale `max|w_c| / 127`: exactly what the TFLite
converter computes when it quantizes a kernel itself, so a kernel that sits on
this grid converts with no rounding error, and pruned zeros stay zero.

Activations: asymmetric over `[min, max]` (a range that always contains 0),
through `keras.quantizers.fake_quant_with_min_max_vars`, which on TensorFlow
is the `FakeQuantWithMinMaxVars` op the converter reads ranges from.

Example:

```python
import numpy as np
from keras_compress.quantization import quantizers

w = np.array([[0.5, -1.0], [0.25, 0.1]], "float32")
q = quantizers.quantize_weight_np(w, channel_axes=(1,))
scales = quantizers.weight_scales_np(w, channel_axes=(1,))
np.round(q / scales)           # integers in [-127, 127]
```
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

__all__ = [
    "fake_quant_activation",
    "fake_quant_weight",
    "quantize_weight_np",
    "weight_levels",
    "weight_scales_np",
]

# Smallest scale used for an all-zero channel (a fully pruned filter): any
# positive value keeps zeros at zero and avoids a division by zero.
_TINY = 1e-30


def weight_levels(bits: int) -> int:
    """Largest integer of a symmetric narrow-range grid: 127 for 8 bits."""
    if not isinstance(bits, int) or not 2 <= bits <= 8:
        raise ValueError(f"`weight_bits` must be an integer in [2, 8]; received {bits!r}.")
    return 2 ** (bits - 1) - 1


def _reduce_axes(ndim: int, channel_axes: Sequence[int]) -> tuple[int, ...]:
    keep = {a % ndim for a in channel_axes}
    return tuple(a for a in range(ndim) if a not in keep)


def fake_quant_weight(w, channel_axes: Sequence[int], bits: int = 8):
    """Symmetric per-channel fake quantization with a straight-through gradient.

    `channel_axes` are the kernel axes that index output channels (empty for
    per-tensor). The scale is not differentiated: it follows the weights.

    One fused fake-quant op over the range `[-max|w_c|, max|w_c|]`, narrow
    (TensorFlow's `FakeQuantWithMinMaxVars(PerChannel)`, whose grid for that
    range is `scale * [-levels, levels]` with `scale = max|w_c| / levels`): a
    single pass over the kernel instead of the eight of the spelled-out
    divide-round-clip-rescale (the gradient passes straight through). It rounds
    halves up where `quantize_weight_np` rounds them to even, so the two can
    differ by one level on a weight exactly halfway between two levels.
    """
    weight_levels(bits)  # validates
    w = keras.ops.convert_to_tensor(w)
    ndim = len(w.shape)
    reduced = _reduce_axes(ndim, channel_axes)
    channels = [a for a in range(ndim) if a not in reduced]
    perm = [*reduced, *channels]
    moved = w if perm == list(range(ndim)) else keras.ops.transpose(w, perm)
    n = int(np.prod([w.shape[a] for a in channels], dtype=np.int64))
    flat = keras.ops.reshape(moved, (-1, n))
    reduce_axis = 0 if channels else None
    absmax = keras.ops.maximum(keras.ops.max(flat, axis=reduce_axis),
                               -keras.ops.min(flat, axis=reduce_axis))
    hi = keras.ops.stop_gradient(keras.ops.maximum(absmax, _TINY))

    @keras.ops.custom_gradient
    def straight_through(x):
        def grad(*args, upstream=None):
            return args[0] if upstream is None else upstream

        q = keras.quantizers.fake_quant_with_min_max_vars(
            x, -hi, hi, num_bits=bits, narrow_range=True,
            axis=-1 if channels else None)
        return q, grad

    q = keras.ops.reshape(straight_through(flat), moved.shape)
    return q if moved is w else keras.ops.transpose(q, np.argsort(perm).tolist())


def weight_scales_np(w: np.ndarray, channel_axes: Sequence[int], bits: int = 8) -> np.ndarray:
    """The per-channel scales (broadcastable to `w`) of `fake_quant_weight`."""
    w = np.asarray(w, np.float32)
    absmax = np.max(np.abs(w), axis=_reduce_axes(w.ndim, channel_axes), keepdims=True)
    return (np.maximum(absmax, np.float32(_TINY)) / np.float32(weight_levels(bits))).astype(
        np.float32
    )


def quantize_weight_np(w: np.ndarray, channel_axes: Sequence[int], bits: int = 8) -> np.ndarray:
    """`w` moved onto its symmetric int grid (float32 values `q * scale`)."""
    w = np.asarray(w, np.float32)
    levels = weight_levels(bits)
    scale = weight_scales_np(w, channel_axes, bits)
    return (np.clip(np.round(w / scale), -levels, levels) * scale).astype(np.float32)


def fake_quant_activation(x, min_value, max_value, bits: int = 8):
    """Per-tensor fake quantization over `[min_value, max_value]` (no gradient
    into the range, which is tracked, not learned): asymmetric for 8 bits;
    above 8 bits symmetric and narrow, since TFLite's int16 activations (16x8
    models) have zero point 0."""
    lo, hi = keras.ops.stop_gradient(min_value), keras.ops.stop_gradient(max_value)
    if bits > 8:
        hi = keras.ops.maximum(keras.ops.abs(lo), keras.ops.abs(hi))
        lo = -hi
    return keras.quantizers.fake_quant_with_min_max_vars(
        x, lo, hi, num_bits=bits, narrow_range=bits > 8)
