"""One entry per layer type: what pruning, QAT, clustering, low-rank
factorization and the model graph know about it.

A `LayerRule` states a layer's kernels and their axes (`KernelLayout`: the
axis N:M groups run along, the output-channel axes channel pruning removes,
the bias that goes with them), its QAT rule, its role for channel
dependencies, and whether low-rank factorization applies. Technique modules
ask `rule_for(layer)`; none keeps a table of layer types of its own.

A custom layer opts into every technique at once with `register_layer`.

Example:

```python
import keras
import keras_compress as kc


@keras.saving.register_keras_serializable(package="example")
class Scaled(keras.layers.Layer):
    '''x @ kernel, times a learned per-unit scale.'''

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units))
        self.scale = self.add_weight(shape=(self.units,), initializer="ones")

    def call(self, x):
        return keras.ops.matmul(x, self.kernel) * self.scale

    def get_config(self):
        return {**super().get_config(), "units": self.units}


kc.register_layer(Scaled, kernels=[kc.KernelLayout("kernel", input_axis=0,
                                                   output_axes=(-1,), bias=None)],
                  qat="kernel", channels="source")
kc.registry.rule_for(Scaled(4)).qat     # 'kernel'
```
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras

__all__ = ["KernelLayout", "LayerRule", "register_layer", "rule_for", "ELEMENTWISE_OPS",
           "SAME_SCALE_OPS"]

L = keras.layers

QAT_RULES = ("kernel", "weights", "output", "separable", "same_scale", None)
CHANNEL_ROLES = ("source", "depthwise", "through", "join", None)


@dataclasses.dataclass(frozen=True)
class KernelLayout:
    """Where a kernel lives in a layer and how it is laid out.

    Args:
        attr: attribute of the layer holding the variable; a dotted path
            reaches into sublayers ("cell.kernel", "_query_dense.kernel").
        input_axis: the axis the layer sums over, along which N:M groups run
            (None: no N:M pruning).
        output_axes: the output-channel axes (None: no channel pruning or
            per-channel quantization).
        bias: attribute of the bias masked and folded with those channels.
    """

    attr: str
    input_axis: int | None
    output_axes: tuple[int, ...] | None
    bias: str | None = "bias"

    @property
    def bias_attr(self) -> str | None:
        return self.bias


@dataclasses.dataclass(frozen=True)
class LayerRule:
    """What every technique knows about one layer type.

    Args:
        cls: the layer class (subclasses match too).
        kernels: its prunable, clusterable and quantizable kernels.
        qat: "kernel" (the kernels are fake-quantized per output channel and
            the output gets its own int8 scale; a following BatchNormalization
            and ReLU fold in), "weights" (a composite layer, attention or
            recurrent, an embedding: its kernels are fake-quantized, it
            computes as it is, its output gets its own scale), "output" (float parameters the converter quantizes, an output
            scale of its own: LayerNormalization), "separable" (split into a
            depthwise and a 1x1 convolution), "same_scale" (the int8 output
            keeps the input's scale: pooling, reshaping, padding), or None.
        channels: "source" (its kernels' output axis makes new channels),
            "depthwise" (per-channel kernels: channels pass through unless it
            multiplies them), "through" (each channel passes to the same
            output channel), "join" (elementwise: ties its inputs' channels),
            or None (the graph decides: concatenation and flattening map
            indices; anything else stops a channel group).
        lowrank: whether `factorize` can split it into two thinner layers.
        width: the config entry holding its output channel count ("units",
            "filters"), which `shrink` rewrites when channels are removed.
        no_qat_reason: why QAT refuses it, when `qat` is None for a layer
            with kernels.
        per_channel: whether its kernels are quantized per output channel
            (False: one scale per kernel, as TFLite's GATHER and fused LSTM
            store them).
    """

    cls: type
    kernels: tuple[KernelLayout, ...] = ()
    qat: str | None = None
    channels: str | None = None
    lowrank: bool = False
    no_qat_reason: str | None = None
    width: str | None = None
    per_channel: bool = True


def _k(attr: str, input_axis, output_axes) -> tuple[KernelLayout, ...]:
    return (KernelLayout(attr, input_axis, output_axes),)


_THREE_D = "is a 3D convolution, which TFLite-Micro has no int8 kernel for"
_SAME_SCALE_THROUGH = (
    L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D, L.AveragePooling1D, L.AveragePooling2D,
    L.AveragePooling3D, L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D,
    L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D, L.GaussianNoise,
    L.GaussianDropout, L.AlphaDropout, L.ActivityRegularization, L.ZeroPadding1D,
    L.ZeroPadding2D, L.ZeroPadding3D, L.Cropping1D, L.Cropping2D, L.Cropping3D,
    L.UpSampling1D, L.UpSampling2D, L.UpSampling3D, L.Identity,
)
_SAME_SCALE_ONLY = (L.InputLayer, L.Reshape, L.Flatten, L.Permute, L.RepeatVector)
_THROUGH_ONLY = (
    L.BatchNormalization, L.Activation, L.ReLU, L.LeakyReLU, L.PReLU, L.ELU, L.Softmax,
    L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalAveragePooling3D, L.Resizing,
)
# Composite layers whose kernels live in sublayers.
_ATTENTION = tuple(
    KernelLayout(f"_{part}_dense.kernel", 0 if part != "output" else None,
                 (1, 2) if part != "output" else (-1,), bias=f"_{part}_dense.bias")
    for part in ("query", "key", "value", "output"))
_RECURRENT = (KernelLayout("cell.kernel", 0, (-1,), bias="cell.bias"),
              KernelLayout("cell.recurrent_kernel", 0, (-1,), bias=None))
_JOINS = (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum)

# The first matching class wins: list a subclass before its base (none of the
# Keras layers below subclasses another).
_BUILTIN: tuple[LayerRule, ...] = (
    LayerRule(L.Dense, _k("kernel", 0, (-1,)), "kernel", "source", lowrank=True, width="units"),
    LayerRule(L.Conv1D, _k("kernel", -2, (-1,)), "kernel", "source", lowrank=True,
              width="filters"),
    LayerRule(L.Conv2D, _k("kernel", -2, (-1,)), "kernel", "source", lowrank=True,
              width="filters"),
    LayerRule(L.DepthwiseConv1D, _k("kernel", None, (-2, -1)), "kernel", "depthwise"),
    LayerRule(L.DepthwiseConv2D, _k("kernel", None, (-2, -1)), "kernel", "depthwise"),
    # Transposed convolutions store kernels as (*spatial, filters, in_channels).
    LayerRule(L.Conv1DTranspose, _k("kernel", -1, (-2,)), "kernel", "source", width="filters"),
    LayerRule(L.Conv2DTranspose, _k("kernel", -1, (-2,)), "kernel", "source", width="filters"),
    LayerRule(L.SeparableConv1D, _k("pointwise_kernel", -2, (-1,)), "separable", "source",
              width="filters"),
    LayerRule(L.SeparableConv2D, _k("pointwise_kernel", -2, (-1,)), "separable", "source",
              width="filters"),
    LayerRule(L.Conv3D, _k("kernel", -2, (-1,)), None, "source", no_qat_reason=_THREE_D,
              width="filters"),
    LayerRule(L.Conv3DTranspose, _k("kernel", -1, (-2,)), None, "source",
              no_qat_reason=_THREE_D, width="filters"),
    LayerRule(L.MultiHeadAttention, _ATTENTION, "weights"),
    LayerRule(L.EinsumDense, (KernelLayout("kernel", None, (-1,)),), "weights"),
    LayerRule(L.Embedding, (KernelLayout("embeddings", None, (-1,), bias=None),), "weights",
              per_channel=False),
    LayerRule(L.LSTM, _RECURRENT, "weights", per_channel=False),
    LayerRule(L.GRU, _RECURRENT, "weights"),
    LayerRule(L.SimpleRNN, _RECURRENT, "weights"),
    LayerRule(L.LayerNormalization, qat="output"),
    *(LayerRule(cls, qat="same_scale", channels="through") for cls in _SAME_SCALE_THROUGH),
    *(LayerRule(cls, qat="same_scale") for cls in _SAME_SCALE_ONLY),
    *(LayerRule(cls, channels="through") for cls in _THROUGH_ONLY),
    *(LayerRule(cls, channels="join") for cls in _JOINS),
)
_REGISTERED: list[LayerRule] = []
# keras-compress' own layers (e.g. the FakeQuant that `strip` leaves), added by
# the modules defining them.
_LIBRARY: list[LayerRule] = []


def add_library_rule(rule: LayerRule) -> None:
    """The rule of one of this package's own layer types."""
    _LIBRARY[:] = [r for r in _LIBRARY if r.cls is not rule.cls] + [rule]

# keras.ops calls a functional graph may hold, by operation class: elementwise
# ops get an int8 output scale of their own and tie their inputs' channels;
# indexing and reshaping keep their input's scale.
ELEMENTWISE_OPS = frozenset({"Add", "Subtract", "Multiply", "Divide", "TrueDivide",
                             "Maximum", "Minimum"})
SAME_SCALE_OPS = frozenset({"GetItem", "Reshape", "ExpandDims", "Squeeze", "Transpose"})


def rule_for(layer_or_class) -> LayerRule | None:
    """The rule of a layer (or layer class): registered custom layers first,
    then the built-in Keras layers; None for a layer nothing knows."""
    cls = layer_or_class if isinstance(layer_or_class, type) else type(layer_or_class)
    _load_integrations(cls)
    for rule in (*_REGISTERED, *_LIBRARY, *_BUILTIN):
        if issubclass(cls, rule.cls):
            return rule
    return None


# Packages whose layers get rules from a module of ours, imported the first
# time one of their layers is looked up (so that they stay optional).
_INTEGRATIONS = {"keras_hub": "keras_compress._keras_hub"}


def _load_integrations(cls: type) -> None:
    package = cls.__module__.split(".")[0]
    module = _INTEGRATIONS.pop(package, None)
    if module is not None:
        import importlib

        importlib.import_module(module)


def is_registered(layer_or_class) -> bool:
    """Whether `register_layer` named this layer's class (or a base of it)."""
    cls = layer_or_class if isinstance(layer_or_class, type) else type(layer_or_class)
    return any(issubclass(cls, rule.cls) for rule in _REGISTERED)


def kernels(layer) -> tuple[KernelLayout, ...]:
    rule = rule_for(layer)
    return rule.kernels if rule else ()


def names(predicate) -> list[str]:
    """Class names of the rules matching `predicate`, registered ones first."""
    return [r.cls.__name__ for r in (*_REGISTERED, *_BUILTIN) if predicate(r)]


def register_layer(
    cls: type,
    *,
    kernels: Sequence[KernelLayout] = (),
    qat: str | None = None,
    channels: str | None = None,
) -> LayerRule:
    """Teach every technique a custom layer type: its `kernels` become
    prunable (unstructured, N:M along `input_axis`, channels along
    `output_axes`), clusterable and, with `qat="kernel"` or `"weights"`,
    fake-quantized per output channel in QAT and converted to int8;
    `qat="output"` keeps a layer's parameters float (the converter quantizes
    them) and gives its output an int8 scale of its own (a position table
    added to tokens); `channels` places it in channel dependency groups.
    Registering a class again replaces its rule.

    Raises:
        ValueError: a class that is not a keras layer, an unknown `qat` or
            `channels` value, kernels that are not `KernelLayout`s, or
            `qat="kernel"` without a kernel.
    """
    if not (isinstance(cls, type) and issubclass(cls, keras.layers.Layer)):
        raise ValueError(f"`cls` must be a keras layer class; received {cls!r}.")
    kernels = tuple(kernels)
    if not all(isinstance(k, KernelLayout) for k in kernels):
        raise ValueError("`kernels` must be KernelLayout(attr, input_axis, output_axes, bias) "
                         f"values; received {kernels!r}.")
    if qat not in ("kernel", "weights", "output", "same_scale", None):
        raise ValueError(f"`qat` must be 'kernel', 'weights', 'output', 'same_scale' or None; "
                         f"received {qat!r}.")
    if channels not in CHANNEL_ROLES:
        raise ValueError(f"`channels` must be one of {CHANNEL_ROLES}; received {channels!r}.")
    if qat in ("kernel", "weights") and not kernels:
        raise ValueError(f"`qat`={qat!r} for {cls.__name__} needs its `kernels`.")
    rule = LayerRule(cls, kernels, qat, channels)
    _REGISTERED[:] = [r for r in _REGISTERED if r.cls is not cls]
    _REGISTERED.insert(0, rule)
    return rule
