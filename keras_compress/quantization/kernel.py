"""`QuantizedKernel`: the deployed form of a layer trained with fewer than 8
weight bits.

An 8-bit kernel needs nothing at deploy time: it is stored on its int8 grid and
the TFLite converter quantizes it with the same scale. For 4 bits the converter
must see the bit width, so the stripped layer keeps one constant-range
`FakeQuantWithMinMaxVars(num_bits=4)` op on its kernel; the converter then
stores the weights as packed INT4 (TFLite type 17), which LiteRT and
TFLite-Micro both run. Dense kernels use one scale per tensor (the converter
cannot pack a per-channel Dense kernel), convolutions one per output channel.

Example:

```python
import keras
import keras_compress as kc

qat = kc.quantize(keras.Sequential([keras.Input((16,)), keras.layers.Dense(8)]),
                  weight_bits={"dense": 4})
qat(keras.ops.ones((4, 16)), training=True)
plain = kc.strip(qat)
[type(layer).__name__ for layer in plain.layers]   # ['FakeQuant', 'QuantizedKernel', 'FakeQuant']
```
"""

from __future__ import annotations

from typing import Any

import keras

from keras_compress.pruning import prunable
from keras_compress.quantization import quantizers

__all__ = ["QuantizedKernel"]


@keras.saving.register_keras_serializable(package="keras_compress")
class QuantizedKernel(keras.layers.Wrapper):
    """A layer whose kernel passes through a fixed low-bit fake quantization.

    Args:
        layer: a built Dense/Conv layer whose kernel already sits on the grid.
        bits: weight bit width (below 8).
        channel_axes: kernel axes with one scale each (empty: per tensor).
        storage_bits: `bits` (packed, the default), or 8 for ops whose TFLite
            kernels take no INT4 weights (TRANSPOSE_CONV): the 8-bit scale is
            then an exact divisor of the 4-bit one, so every 4-bit level is an
            int8 value (multiples of 18 for 4 bits) and no value moves.
    """

    def __init__(self, layer: keras.layers.Layer, bits: int, channel_axes=(),
                 storage_bits: int | None = None, **kwargs: Any):
        quantizers.weight_levels(bits)
        storage_bits = bits if storage_bits is None else storage_bits
        if storage_bits not in (bits, 8):
            raise ValueError(f"`storage_bits` must be {bits} or 8; received {storage_bits!r}.")
        kwargs.setdefault("name", f"{layer.name}_int{bits}")
        super().__init__(layer, **kwargs)
        self.bits = bits
        self.storage_bits = storage_bits
        self.channel_axes = tuple(int(a) for a in channel_axes)

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
        self._kernel = prunable.variable(self.layer, "kernel")
        self.built = True

    def _absmax(self):
        kernel = self._kernel
        ndim = len(kernel.shape)
        keep = {a % ndim for a in self.channel_axes}
        axes = tuple(a for a in range(ndim) if a not in keep)
        return keras.ops.maximum(keras.ops.max(keras.ops.abs(kernel), axis=axes), 1e-30)

    def call(self, inputs, **kwargs):
        import tensorflow as tf

        kernel = self._kernel.value
        absmax = self._absmax()
        if self.storage_bits != self.bits:
            # 127 / (levels * step) with step = floor(127 / levels): e.g. 127/126
            # for 4 bits, so the int8 grid holds the 4-bit one exactly.
            levels = quantizers.weight_levels(self.bits)
            absmax = absmax * (127.0 / (levels * (127 // levels)))
        if not self.channel_axes:
            q = tf.quantization.fake_quant_with_min_max_vars(
                kernel, -absmax, absmax, num_bits=self.storage_bits, narrow_range=True)
        else:
            # The converter reads per-channel ranges on the last axis; fold the
            # channel axes there (depthwise kernels use two) and back.
            shape = tuple(kernel.shape)
            flat = tf.reshape(kernel, shape[: min(self.channel_axes) % len(shape)] + (-1,))
            q = tf.quantization.fake_quant_with_min_max_vars_per_channel(
                flat, -tf.reshape(absmax, (-1,)), tf.reshape(absmax, (-1,)),
                num_bits=self.storage_bits, narrow_range=True)
            q = tf.reshape(q, shape)
        with keras.StatelessScope(state_mapping=[(self._kernel, q)]):
            return self.layer(inputs, **kwargs)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "bits": self.bits,
                "channel_axes": list(self.channel_axes), "storage_bits": self.storage_bits}


def packable(layer: keras.layers.Layer) -> bool:
    """Whether the converter can store this layer's kernel as packed INT4
    (TRANSPOSE_CONV only takes 8- and 16-bit weights)."""
    return not isinstance(layer, (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose))


def per_tensor_for(layer: keras.layers.Layer, bits: int) -> bool:
    """Below 8 bits, Dense and transposed-convolution kernels use one scale:
    the converter packs FULLY_CONNECTED weights as INT4 only per tensor, and a
    transposed kernel's channel axis is not the last one."""
    return bits < 8 and isinstance(
        layer, (keras.layers.Dense, keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose))
