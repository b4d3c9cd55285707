"""Which weights of which Keras layers can be pruned, and along which axes.

The layouts come from the layer registry (`keras_compress.registry`):
`input_axis` is the axis summed over by the layer (where N:M groups run, as
sparse tensor cores and XNNPACK expect); `output_axes` index the output
channels (what channel pruning removes whole). A custom layer opts in with
`keras_compress.register_layer` (every structure, and QAT), or by defining
`get_prunable_weights()` (TFMOT's `PrunableLayer` protocol; unstructured only).
"""

from __future__ import annotations

import keras
import numpy as np

from keras_compress import registry
from keras_compress.registry import KernelLayout


# The layouts live in the one layer registry; the old name stays for callers.
PrunableWeight = KernelLayout


def supported_layers() -> list[str]:
    """Names of the layer types with prunable kernels (registered ones first)."""
    return registry.names(lambda rule: bool(rule.kernels))


def prunable_weights(layer: keras.layers.Layer) -> tuple[KernelLayout, ...]:
    """The prunable kernels of `layer`; empty when the layer has none."""
    if hasattr(layer, "get_prunable_weights") and not registry.is_registered(layer):
        return ()  # handled by that protocol, unstructured
    return registry.kernels(layer)


def is_prunable(layer: keras.layers.Layer) -> bool:
    return bool(prunable_weights(layer)) or hasattr(layer, "get_prunable_weights")


def variable(layer: keras.layers.Layer, attr: str) -> keras.Variable | None:
    """The `keras.Variable` behind `layer.<attr>` (Dense exposes `kernel` as a
    property over `_kernel`; a dotted `attr` reaches into sublayers), or None
    when the layer has no such weight."""
    *path, attr = attr.split(".") if attr else [attr]
    for part in path:
        layer = getattr(layer, part, None)
    for name in ("_" + attr, attr):
        value = getattr(layer, name, None)
        if isinstance(value, keras.Variable):
            return value
    return None


def channel_major(kernel: np.ndarray, output_axes) -> tuple[np.ndarray, list[int]]:
    """`kernel` as (output channels, rest), output-channel axes first, and the
    axis order that produced it (to transpose back)."""
    axes = [a % kernel.ndim for a in output_axes]
    order = axes + [a for a in range(kernel.ndim) if a not in axes]
    channels = int(np.prod([kernel.shape[a] for a in axes]))
    return np.transpose(kernel, order).reshape(channels, -1), order
