"""Which weights of which Keras layers can be pruned, and along which axes.

`input_axis` is the axis summed over by the layer (where N:M groups run, as
sparse tensor cores and XNNPACK expect); `output_axes` index the output
channels (what channel pruning removes whole). A custom layer opts in by
defining `get_prunable_weights()` (TFMOT's `PrunableLayer` protocol); its
weights are then pruned unstructured only.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np


@dataclasses.dataclass(frozen=True)
class PrunableWeight:
    """Where a prunable kernel lives in a layer and how it is laid out."""

    attr: str  # attribute of the layer holding the variable
    input_axis: int | None  # N:M groups run along this axis (None: no N:M)
    output_axes: tuple[int, ...] | None  # output channels (None: no channel pruning)
    bias_attr: str | None = "bias"  # masked with the channels when pruning channels


# Order matters: the first matching class wins (subclasses before bases).
_LAYOUTS: tuple[tuple[type, tuple[PrunableWeight, ...]], ...] = (
    (keras.layers.Dense, (PrunableWeight("kernel", 0, (-1,)),)),
    (keras.layers.SeparableConv1D, (PrunableWeight("pointwise_kernel", -2, (-1,)),)),
    (keras.layers.SeparableConv2D, (PrunableWeight("pointwise_kernel", -2, (-1,)),)),
    (keras.layers.DepthwiseConv1D, (PrunableWeight("kernel", None, (-2, -1)),)),
    (keras.layers.DepthwiseConv2D, (PrunableWeight("kernel", None, (-2, -1)),)),
    # Transposed convolutions store kernels as (*spatial, filters, in_channels).
    (keras.layers.Conv1DTranspose, (PrunableWeight("kernel", -1, (-2,)),)),
    (keras.layers.Conv2DTranspose, (PrunableWeight("kernel", -1, (-2,)),)),
    (keras.layers.Conv3DTranspose, (PrunableWeight("kernel", -1, (-2,)),)),
    (keras.layers.Conv1D, (PrunableWeight("kernel", -2, (-1,)),)),
    (keras.layers.Conv2D, (PrunableWeight("kernel", -2, (-1,)),)),
    (keras.layers.Conv3D, (PrunableWeight("kernel", -2, (-1,)),)),
)

SUPPORTED_LAYERS = tuple(cls.__name__ for cls, _ in _LAYOUTS)


def prunable_weights(layer: keras.layers.Layer) -> tuple[PrunableWeight, ...]:
    """The prunable kernels of `layer`; empty when the layer has none."""
    if hasattr(layer, "get_prunable_weights"):
        return ()  # handled by the custom-layer protocol, see `custom_variables`
    for cls, layout in _LAYOUTS:
        if isinstance(layer, cls):
            return layout
    return ()


def is_prunable(layer: keras.layers.Layer) -> bool:
    return bool(prunable_weights(layer)) or hasattr(layer, "get_prunable_weights")


def variable(layer: keras.layers.Layer, attr: str) -> keras.Variable | None:
    """The `keras.Variable` behind `layer.<attr>` (Dense exposes `kernel` as a
    property over `_kernel`), or None when the layer has no such weight."""
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
