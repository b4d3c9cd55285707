"""`quantize(model, ...)`: wrap a Keras 3 model for quantization-aware training.

The model graph is rebuilt so that it computes what the int8 TFLite model will:

- every Dense/Conv layer becomes a `QuantizeWrapper` (int8 per-channel
  kernel); a BatchNormalization right after it is folded in, and a ReLU/ReLU6
  after that is fused, as TFLite fuses them; a SeparableConv becomes a
  depthwise and a 1x1 convolution with a quantized tensor between them;
- an `ActivationQuantizer` sits at each float model input and after each op
  whose output TFLite stores with its own scale (fused Conv/Dense, Add,
  Concatenate, GlobalAveragePooling, other activations...). Ops that keep their
  input's scale (pooling, reshape, flatten, dropout, padding, upsampling) and
  ops with a fixed output range (softmax, sigmoid, tanh) get none, so the
  converted model holds no extra QUANTIZE/DEQUANTIZE ops;
- three layers are swapped for equivalents TFLite-Micro runs in int8: a
  Rescaling becomes a frozen 1x1 depthwise convolution (the converter keeps a
  Rescaling's MUL/ADD in float), a nearest-neighbour UpSampling2D becomes a
  Resizing (RESIZE_NEAREST_NEIGHBOR instead of TILE, which TFLite-Micro lacks),
  and an AveragePooling whose window covers its whole input (ResNet's final
  pooling) becomes a GlobalAveragePooling with `keepdims=True`: MEAN, whose
  output gets a scale of its own, where AVERAGE_POOL_2D must store the mean on
  its input's coarser grid (about 20 steps instead of 256 for ResNet-8).

Layers with weights that have no int8 path (LayerNormalization, Embedding, a
BatchNormalization not after a Conv/Dense, subclassed layers...) are all listed
in one error; `skip=[...]` keeps them float on purpose.

Example:

```python
import keras
import keras_compress as kc

model = keras.Sequential([
    keras.Input((28, 28, 1)),
    keras.layers.Conv2D(8, 3, use_bias=False),
    keras.layers.BatchNormalization(),
    keras.layers.ReLU(),
    keras.layers.Flatten(),
    keras.layers.Dense(10),
])
qat = kc.quantize(model)
[type(layer).__name__ for layer in qat.layers]
# ['ActivationQuantizer', 'QuantizeWrapper', 'ActivationQuantizer', 'Flatten',
#  'QuantizeWrapper', 'ActivationQuantizer']
```
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import numpy as np

from keras_compress import model_walk, registry
from keras_compress._wrapper_base import CompressionWrapper
from keras_compress.graph import ModelGraph
from keras_compress.pruning.api import LayerSelector, selector
from keras_compress.pruning.wrapper import PruningWrapper
from keras_compress.quantization import preserve as preserve_lib
from keras_compress.quantization.activations import ActivationQuantizer
from keras_compress.quantization.wrapper import (
    FUSABLE_ACTIVATIONS,
    QuantizeWrapper,
    activation_name,
    is_quantizable,
    quantizable_layers,
)

__all__ = ["quantize"]

L = keras.layers
_SEPARABLE = (L.SeparableConv1D, L.SeparableConv2D)
# keras.ops calls TFLite fuses a following ReLU into.
_FUSING_OPS = frozenset({"Add", "Subtract", "Multiply"})
# Activations whose int8 output range TFLite fixes itself.
_FIXED_RANGE = ("softmax", "sigmoid", "tanh", "hard_sigmoid", "log_softmax")


@dataclasses.dataclass
class _Plan:
    kind: str  # weighted | absorbed | same | fixed | nested | float | plain | rescaling | resize | mean
    batchnorm: Any = None
    activation: str | None = None  # fused ReLU/ReLU6
    split: str | None = None  # the layer's own activation, applied after a quantizer
    parts: tuple = ()  # a SeparableConv split into (depthwise, pointwise) wrappers
    quantize_output: bool = True


@dataclasses.dataclass(frozen=True)
class _Options:
    weight_bits: Any  # int or {name or class: bits}
    activation_bits: int
    momentum: float
    fold_batchnorm: bool
    skip: Any  # predicate or None
    per_tensor_dense: bool = False


def quantize(
    model: keras.layers.Layer,
    *,
    weight_bits: int | dict = 8,
    activation_bits: int = 8,
    skip: LayerSelector = None,
    fold_batchnorm: bool = True,
    momentum: float = 0.99,
    per_tensor_dense: bool = False,
    preserve: str = "auto",
) -> keras.layers.Layer:
    """Return a QAT copy of `model` (the input model is not modified).

    Works on Sequential and functional models, recursing into nested ones, and
    on models already wrapped by `prune` (the masks are kept: pruned weights
    stay exactly zero). Quantization is on from the first step; to start it
    later in the same `fit`, add `QuantizationCallback(start_epoch=...)`.

    Args:
        model: a Sequential/functional `keras.Model`, or one Dense/Conv layer,
            returned as a `QuantizeWrapper`.
        weight_bits: kernel bit width, 8 (int8) or 4 (packed INT4 in the
            converted model), for every layer or per layer as a dict keyed by
            layer name or layer class, e.g. `{"fc1": 4, keras.layers.Conv2D: 8}`
            (names win over classes; unlisted layers get 8).
        activation_bits: 8 for int8 models, or 16 for 16x8 models (int16
            activations, int8 weights; for models whose accuracy int8
            activations cost). A 16-bit model strips to plain layers with
            int8-grid kernels, and `tflite_export.convert(stripped,
            mode="int16x8", representative_data=...)` calibrates its int16
            ranges: the TFLite converter cannot convert 16-bit fake-quant ops.
        skip: layers to keep float on purpose (names, classes or a callable);
            TFLite then runs them in float between DEQUANTIZE and QUANTIZE ops.
        fold_batchnorm: fold a BatchNormalization that follows a Conv/Dense.
        momentum: moving-average momentum of the activation ranges.
        per_tensor_dense: one scale per Dense kernel instead of one per output
            unit (TFMOT's choice). `tflite_export.convert` detects such kernels
            and keeps them per tensor: a smaller flatbuffer and TFLite-Micro
            arena (no per-channel scales and multipliers) for some accuracy;
            for microcontroller targets with large Dense layers.
        preserve: what of a stripped pruned or clustered model QAT keeps:
            "auto" (default) keeps every exact zero and, where a kernel shares
            few values (per kernel or per output channel), exactly those
            values as trainable centroids; "zeros" keeps only the zeros;
            "none" neither. What was kept is printed (see
            `keras_compress.quantization.preserve`). Layers already wrapped by
            `prune` or `cluster` keep their masks and centroids regardless.
            A model whose Dense kernels share values per kernel has its Dense
            kernels quantized per tensor (`per_tensor_dense`), so each keeps
            at most that many int8 values.

    Raises:
        ValueError: for layers that cannot be quantized (all listed, each with
            its reason), bad arguments, or a subclassed model.
    """
    if not isinstance(model, keras.layers.Layer):
        raise ValueError(
            f"`model` must be a keras.Model or keras layer; received {type(model).__name__}."
        )
    if not isinstance(per_tensor_dense, bool):
        raise ValueError(f"`per_tensor_dense` must be True or False; received {per_tensor_dense!r}.")
    if not isinstance(fold_batchnorm, bool):
        raise ValueError(f"`fold_batchnorm` must be True or False; received {fold_batchnorm!r}.")
    ActivationQuantizer(bits=activation_bits, momentum=momentum)  # validates both
    if activation_bits not in (8, 16):
        raise ValueError(
            f"`activation_bits`={activation_bits}: TFLite runs 8-bit activations (int8 "
            "models) or 16-bit ones (16x8 models); pass 8 or 16.")
    if activation_bits == 16 and 4 in (
            weight_bits.values() if isinstance(weight_bits, dict) else (weight_bits,)):
        raise ValueError(
            "`weight_bits`=4 with `activation_bits`=16: TFLite's 16x8 models have int8 "
            "weights only; use 8-bit weights, or 4-bit weights with 8-bit activations.")
    model_walk.check_finite(model, "quantize")
    kept = preserve_lib.find(model, preserve)
    model = preserve_lib.wrap(model, kept)
    shared = preserve_lib.shared_dense(model)
    if kept or (shared and not per_tensor_dense):
        notes = [k.describe() for k in kept]
        if len(notes) > 4:  # a large model: a few examples and a count
            notes = [*notes[:3], f"and {len(notes) - 3} more layers alike"]
        if shared and not per_tensor_dense:
            # The converter's per-tensor Dense mode is model-wide.
            notes.append(f"Dense kernels quantized per tensor, so {', '.join(shared)} keep "
                         "their shared values as that many int8 values")
            per_tensor_dense = True
        print("quantize keeps " + "; ".join(notes) + " (preserve='none' to let QAT move "
              "stripped zeros and values)")
    if not model_walk.is_model(model):
        if skip is not None or isinstance(weight_bits, dict):
            raise ValueError("`skip` and per-layer `weight_bits` only apply to a model.")
        return QuantizeWrapper(model, weight_bits=weight_bits, per_tensor=per_tensor_dense
                               and isinstance(model, keras.layers.Dense))
    if not model_walk.is_graph_model(model):
        raise model_walk.subclassed_error(model)
    if not model.built or not model.inputs:
        raise ValueError(
            f"Model '{model.name}' has no defined inputs yet. Start it with "
            "keras.Input(shape) (or call it once on data) before quantize()."
        )
    names = {layer.name for layer in model_walk.iter_layers(model)}
    _check_bits_spec(weight_bits, names)
    options = _Options(
        weight_bits=weight_bits,
        activation_bits=activation_bits,
        momentum=momentum,
        fold_batchnorm=fold_batchnorm,
        skip=selector(skip, "skip", names),
        per_tensor_dense=per_tensor_dense,
    )
    problems: list[str] = []
    result = _Graph(model, options, problems, quantize_inputs=True).build()
    if problems:
        raise ValueError(
            f"Cannot quantize model '{model.name}':\n  - "
            + "\n  - ".join(problems)
            + "\nPass skip=[<layer names>] to keep these layers float on purpose "
            "(TFLite then runs them in float), or replace them."
        )
    return result


_WEIGHT_BITS = (4, 8)


def _check_bits_spec(spec: Any, names: set[str]) -> None:
    values = spec.values() if isinstance(spec, dict) else [spec]
    for bits in values:
        if isinstance(bits, bool) or bits not in _WEIGHT_BITS:
            raise ValueError(
                f"`weight_bits` values must be 8 (int8) or 4 (packed INT4); received {bits!r}.")
    if isinstance(spec, dict):
        for key in spec:
            if isinstance(key, str):
                if key not in names:
                    raise ValueError(
                        f"`weight_bits` names layer '{key}', which is not in the model. "
                        f"Layers: {sorted(names)}.")
            elif not (isinstance(key, type) and issubclass(key, keras.layers.Layer)):
                raise ValueError(
                    f"`weight_bits` keys must be layer names or keras layer classes; "
                    f"received {key!r}.")


def _bits_for(spec: Any, layer: keras.layers.Layer) -> int:
    if not isinstance(spec, dict):
        return spec
    base = layer.base_layer if isinstance(layer, CompressionWrapper) else layer
    for candidate in (layer, base):
        if candidate.name in spec:
            return spec[candidate.name]
    for key, bits in spec.items():
        if isinstance(key, type) and isinstance(base, key):
            return bits
    return 8


def _fusable(layer: keras.layers.Layer | None) -> str | None:
    """'relu'/'relu6' when `layer` is a standalone activation TFLite can fuse."""
    if isinstance(layer, L.ReLU):
        if float(layer.negative_slope) != 0.0 or float(layer.threshold) != 0.0:
            return None
        if layer.max_value is None:
            return "relu"
        return "relu6" if float(layer.max_value) == 6.0 else None
    if isinstance(layer, L.Activation):
        name = activation_name(layer)
        return name if name in FUSABLE_ACTIVATIONS else None
    return None


class _Graph:
    """One level of a Sequential/functional model: plan, then rebuild."""

    def __init__(self, model, options: _Options, problems: list[str], quantize_inputs: bool):
        self.model = model
        self.options = options
        self.problems = problems
        self.quantize_inputs = quantize_inputs
        self.graph = ModelGraph(model)
        self.plans: dict[int, _Plan] = {}
        self.by_new: dict[int, _Plan] = {}
        self.names = {layer.name for layer in model_walk.iter_layers(model)}
        self.input_cache: dict[int, Any] = {}
        self.new_inputs: set[int] = set()
        self.emitted: list[keras.layers.Layer] = []
        self._plan()

    # ---------------------------------------------------------------- analysis
    def _layers(self) -> list:
        """The model's operations in its own topological order."""
        if isinstance(self.model, keras.Sequential):
            return list(self.model.layers)
        return [op for op in self.model.operations if not isinstance(op, L.InputLayer)]

    def _skipped(self, layer) -> bool:
        skip = self.options.skip
        if skip is None:
            return False
        base = layer.base_layer if isinstance(layer, CompressionWrapper) else layer
        return bool(skip(layer) or skip(base))

    def _plan(self) -> None:
        single = self.graph.single_consumer
        for layer in self._layers():
            if id(layer) in self.plans:
                continue
            if self._skipped(layer):
                self.plans[id(layer)] = _Plan("float")
                continue
            if isinstance(layer, QuantizeWrapper) or isinstance(layer, ActivationQuantizer):
                self.problems.append(f"'{layer.name}' is already quantized; quantize a model once.")
                continue
            if model_walk.is_graph_model(layer):
                self.plans[id(layer)] = _Plan("nested", quantize_output=False)
                continue
            if not isinstance(layer, keras.layers.Layer):
                self.plans[id(layer)] = self._plan_op(layer, single)
                continue
            if is_quantizable(layer) or isinstance(_separable_base(layer), _SEPARABLE):
                self._plan_weighted(layer, single)
                continue
            self.plans[id(layer)] = self._plan_other(layer, single)

    def _plan_weighted(self, layer, single) -> None:
        base = layer.base_layer if isinstance(layer, CompressionWrapper) else layer
        own = activation_name(base)
        plan = _Plan("weighted")
        if registry.is_registered(base):
            # A registered custom layer computes what it computes: nothing is
            # folded or fused into it (its config has no activation to set).
            self.plans[id(layer)] = plan
            return
        end = layer
        if own == "linear":
            nxt = single(end)
            if (
                self.options.fold_batchnorm
                and isinstance(nxt, L.BatchNormalization)
                and not self._skipped(nxt)
                and id(nxt) not in self.plans
            ):
                plan.batchnorm = nxt
                self.plans[id(nxt)] = _Plan("absorbed")
                end = nxt
            nxt = single(end)
            fused = _fusable(nxt)
            if fused and not self._skipped(nxt) and id(nxt) not in self.plans:
                plan.activation = fused
                self.plans[id(nxt)] = _Plan("absorbed")
        elif own not in FUSABLE_ACTIVATIONS:
            plan.split = own
        self.plans[id(layer)] = plan

    def _plan_op(self, op, single) -> _Plan:
        """A `keras.ops` call in a functional graph (`x + 3.0` in hard-swish,
        `x[..., 0]`): an operation node that is not a layer."""
        kind = type(op).__name__
        if kind in registry.ELEMENTWISE_OPS:
            # ADD/SUB/MUL + ReLU fuse in TFLite: quantize after the activation only.
            return _Plan("op", quantize_output=not (kind in _FUSING_OPS and _fusable(single(op))))
        if kind in registry.SAME_SCALE_OPS:
            return _Plan("op", quantize_output=False)
        self.problems.append(
            f"op '{op.name}' (keras.ops {kind}) has no int8 QAT rule (supported: "
            f"{', '.join(sorted(registry.ELEMENTWISE_OPS | registry.SAME_SCALE_OPS))}); write it as a "
            "Keras layer, or skip=[...] the layers around it")
        return _Plan("float")

    def _plan_other(self, layer, single) -> _Plan:
        if isinstance(layer, L.Rescaling) and len(_input_shape(layer)) in (3, 4):
            return _Plan("rescaling")
        if _is_channel_normalization(layer) and len(_input_shape(layer)) in (3, 4):
            return _Plan("rescaling")
        if (isinstance(layer, L.BatchNormalization) and self.options.fold_batchnorm
                and _is_channel_batchnorm(layer) and len(_input_shape(layer)) in (3, 4)):
            # Nothing to fold it into (pre-activation, as in DenseNet): its
            # inference-mode affine map, frozen, as TFLite-Micro runs it in int8.
            return _Plan("rescaling")
        if (isinstance(layer, L.UpSampling2D) and layer.interpolation == "nearest"
                and layer.data_format == "channels_last"
                and None not in _input_shape(layer)[1:3]):
            return _Plan("resize", quantize_output=False)
        if _is_global_average(layer):
            return _Plan("mean")
        rule = registry.rule_for(layer)
        if rule is not None and rule.qat == "same_scale":
            return _Plan("same", quantize_output=False)
        if isinstance(layer, (L.Activation, L.Softmax)):
            name = "softmax" if isinstance(layer, L.Softmax) else activation_name(layer)
            if name in _FIXED_RANGE:
                return _Plan("fixed", quantize_output=False)
            return _Plan("plain")
        if layer.weights or isinstance(layer, CompressionWrapper):
            self.problems.append(self._reason(layer))
            return _Plan("float")
        plan = _Plan("plain")
        # ADD/SUB/MUL + ReLU fuse in TFLite: quantize after the activation only.
        if isinstance(layer, (L.Add, L.Subtract, L.Multiply)) and _fusable(single(layer)):
            plan.quantize_output = False
        return plan

    def _reason(self, layer) -> str:
        kind = type(layer).__name__
        if isinstance(layer, L.BatchNormalization) and not self.options.fold_batchnorm:
            why = ("is not folded (fold_batchnorm=False) and has no int8 QAT rule of its "
                   "own: keep the default fold_batchnorm=True")
        elif isinstance(layer, L.BatchNormalization):
            why = ("does not directly follow a Conv/Dense layer (with a linear "
                   "activation and no other consumer) it could be folded into")
        elif isinstance(layer, CompressionWrapper) and isinstance(layer.base_layer, _SEPARABLE):
            why = (f"is a SeparableConv inside a {type(layer).__name__}; QAT splits it into "
                   "a depthwise and a 1x1 convolution, which only a PruningWrapper follows: "
                   "build it as DepthwiseConv2D + Conv2D(kernel_size=1) instead")
        elif registry.rule_for(layer) and registry.rule_for(layer).no_qat_reason:
            why = registry.rule_for(layer).no_qat_reason
        elif model_walk.is_model(layer):
            why = "is a subclassed model whose graph cannot be rebuilt"
        else:
            why = (f"has weights but no int8 QAT rule (supported: "
                   f"{', '.join(quantizable_layers())})")
        return f"layer '{layer.name}' ({kind}) {why}"

    # ----------------------------------------------------------------- rebuild
    def _quantizer(self, name: str) -> ActivationQuantizer:
        unique, i = f"{name}_quant", 1
        while unique in self.names:
            unique, i = f"{name}_quant_{i}", i + 1
        self.names.add(unique)
        return ActivationQuantizer(
            bits=self.options.activation_bits, momentum=self.options.momentum, name=unique
        )

    def _emit(self, layer, *args, **kwargs):
        self.emitted.append(layer)
        return layer(*args, **kwargs)

    def _clone(self, layer):
        plan = self.plans.get(id(layer), _Plan("plain"))
        if not isinstance(layer, keras.layers.Layer):
            self.by_new[id(layer)] = plan
            return layer  # a keras.ops operation holds no state
        if plan.kind == "absorbed":
            new = L.Identity(name=f"{layer.name}_absorbed")
        elif plan.kind == "nested":
            new = _Graph(layer, self.options, self.problems, quantize_inputs=False).build()
        elif plan.kind == "weighted":
            new = self._wrap(layer, plan)
        elif plan.kind == "rescaling":
            new = self._wrap_rescaling(layer)
        elif plan.kind == "resize":
            # Keras lowers UpSampling2D to TILE, which TFLite-Micro lacks; a
            # nearest-neighbour Resizing computes the same for integer factors
            # and becomes RESIZE_NEAREST_NEIGHBOR, which it runs.
            _, height, width, _ = _input_shape(layer)
            new = L.Resizing(height * layer.size[0], width * layer.size[1],
                             interpolation="nearest", name=layer.name)
        elif plan.kind == "mean":
            # The same numbers in float; in int8 a MEAN with its own output
            # range instead of an AVERAGE_POOL_2D tied to its input's.
            new = _GLOBAL_AVERAGE[type(layer)](
                data_format=layer.data_format, keepdims=True, name=layer.name)
        else:
            new = model_walk.copy_layer(layer)
        self.by_new[id(new)] = plan
        return new

    def _wrap(self, layer, plan: _Plan) -> QuantizeWrapper:
        if isinstance(_separable_base(layer), _SEPARABLE):
            return self._wrap_separable(layer, plan)
        inner = model_walk.copy_layer(layer)
        if plan.split:
            base = inner.base_layer if isinstance(inner, CompressionWrapper) else inner
            base.activation = keras.activations.get("linear")
        batchnorm = model_walk.copy_layer(plan.batchnorm) if plan.batchnorm else None
        wrapper = QuantizeWrapper(
            inner,
            batchnorm=batchnorm,
            activation=plan.activation,
            weight_bits=_bits_for(self.options.weight_bits, layer),
            per_tensor=self.options.per_tensor_dense and isinstance(
                inner.base_layer if isinstance(inner, CompressionWrapper) else inner,
                keras.layers.Dense),
        )
        if layer.built:
            wrapper.build(layer.get_build_config()["input_shape"])
        return wrapper

    def _wrap_separable(self, layer, plan: _Plan) -> QuantizeWrapper:
        """SeparableConvND -> DepthwiseConvND + ActivationQuantizer + ConvND(1):
        TFLite runs it as those two ops and needs an int8 tensor between them.
        A pruned SeparableConv prunes its pointwise kernel only: the 1x1
        convolution gets a PruningWrapper with the same schedule, masks and step."""
        pruned = layer if isinstance(layer, PruningWrapper) else None
        layer = pruned.layer if pruned else layer
        two_d = isinstance(layer, L.SeparableConv2D)
        config = layer.get_config()
        common = dict(strides=config["strides"], padding=config["padding"],
                      dilation_rate=config["dilation_rate"])
        depthwise = (L.DepthwiseConv2D if two_d else L.DepthwiseConv1D)(
            config["kernel_size"], depth_multiplier=config["depth_multiplier"],
            use_bias=False, name=f"{layer.name}_depthwise", **common)
        pointwise = (L.Conv2D if two_d else L.Conv1D)(
            config["filters"], 1, use_bias=config["use_bias"],
            activation=config["activation"] if not plan.split else None,
            name=f"{layer.name}_pointwise")
        shape = layer.get_build_config()["input_shape"]
        depthwise.build(shape)
        depthwise.kernel.assign(layer.depthwise_kernel.numpy().reshape(tuple(depthwise.kernel.shape)))
        pointwise.build(depthwise.compute_output_shape(shape))
        pointwise.kernel.assign(
            layer.pointwise_kernel.numpy().reshape(tuple(pointwise.kernel.shape)))
        if config["use_bias"]:
            pointwise.bias.assign(layer.bias.numpy())
        if pruned:
            pointwise = _split_pruning(pruned, pointwise, depthwise.compute_output_shape(shape))
        bits = _bits_for(self.options.weight_bits, layer)
        plan.parts = (
            QuantizeWrapper(depthwise, weight_bits=bits),
            QuantizeWrapper(pointwise, batchnorm=model_walk.copy_layer(plan.batchnorm)
                            if plan.batchnorm else None,
                            activation=plan.activation, weight_bits=bits),
        )
        return plan.parts[1]

    def _wrap_rescaling(self, layer) -> QuantizeWrapper:
        """Rescaling (x * scale + offset), a Normalization over the channel
        axis ((x - mean) / std), or a BatchNormalization with nothing to fold
        into (its moving statistics) -> a frozen 1x1 depthwise convolution
        computing the same: TFLite keeps their MUL and ADD in float in a QAT graph, while
        the depthwise op runs in int8 (each channel's single weight sits exactly
        on its int8 grid)."""
        shape = _input_shape(layer)
        channels = shape[-1]
        conv = (L.DepthwiseConv2D if len(shape) == 4 else L.DepthwiseConv1D)(
            1, name=f"{layer.name}_depthwise", trainable=False)
        conv.build(shape)
        if isinstance(layer, L.BatchNormalization):  # gamma (x - mean) / sqrt(var + eps) + beta
            gamma = layer.gamma.numpy() if layer.scale else 1.0
            beta = layer.beta.numpy() if layer.center else 0.0
            scale = gamma / np.sqrt(layer.moving_variance.numpy() + layer.epsilon)
            offset = beta - layer.moving_mean.numpy() * scale
        elif isinstance(layer, L.Normalization):  # (x - mean) / max(sqrt(var), eps)
            std = np.maximum(np.sqrt(np.reshape(layer.variance.numpy(), (-1,))),
                             keras.config.epsilon())
            scale, offset = 1.0 / std, -np.reshape(layer.mean.numpy(), (-1,)) / std
        else:
            scale, offset = layer.scale, layer.offset
        scale = np.broadcast_to(np.asarray(scale, "float32"), (channels,))
        offset = np.broadcast_to(np.asarray(offset, "float32"), (channels,))
        conv.kernel.assign(scale.reshape(tuple(conv.kernel.shape)))
        conv.bias.assign(offset)
        wrapper = QuantizeWrapper(conv, weight_bits=8, name=f"quant_{layer.name}")
        wrapper.build(shape)
        wrapper.trainable = False
        return wrapper

    def _call(self, layer, *args, **kwargs):
        plan = self.by_new[id(layer)]
        if plan.kind == "absorbed":
            return args[0]
        if plan.kind == "rescaling":
            # The replacement convolution takes no `mask` (BatchNormalization's call does).
            kwargs = {k: v for k, v in kwargs.items() if k == "training"}
        if self.quantize_inputs:
            args, kwargs = keras.tree.map_structure(self._quantized_input, (args, kwargs))
        if plan.parts:
            depthwise = plan.parts[0]
            hidden = self._emit(depthwise, *args, **kwargs)
            args, kwargs = (self._emit(self._quantizer(depthwise.base_layer.name), hidden),), {}
        out = self._emit(layer, *args, **kwargs)
        base = layer.base_layer if isinstance(layer, CompressionWrapper) else layer
        if plan.kind == "weighted" and plan.split:
            out = self._emit(self._quantizer(base.name), out)
            out = self._emit(L.Activation(plan.split, name=f"{base.name}_{plan.split}"), out)
            if plan.split in _FIXED_RANGE:
                return out
        if plan.quantize_output and _is_float(out):
            out = self._emit(self._quantizer(base.name), out)
        return out

    def _quantized_input(self, value):
        if not isinstance(value, keras.KerasTensor) or id(value) not in self.new_inputs:
            return value
        if not _is_float(value):
            return value
        if id(value) not in self.input_cache:
            name = value._keras_history.operation.name
            self.input_cache[id(value)] = self._emit(self._quantizer(name), value)
        return self.input_cache[id(value)]

    def build(self) -> keras.Model:
        model = self.model
        inputs = keras.tree.map_structure(
            lambda t: keras.Input(batch_shape=t.shape, dtype=t.dtype,
                                  name=t._keras_history.operation.name),
            model.inputs if isinstance(model, keras.Sequential) else model.input,
        )
        self.new_inputs = {id(t) for t in keras.tree.flatten(inputs)}
        if isinstance(model, keras.Sequential):
            x = inputs[0]
            for layer in model.layers:
                x = self._call(self._clone(layer), x)
            if self.problems:
                return model
            # The layers above were called once to plan the graph; fresh copies
            # give the Sequential layers with a single node each (a second node
            # would make `layer.output` ambiguous, e.g. for distillation hints).
            first = inputs[0]
            fresh_input = keras.Input(batch_shape=first.shape, dtype=first.dtype,
                                      name=first._keras_history.operation.name)
            return keras.Sequential(
                [fresh_input, *(model_walk.copy_layer(layer) for layer in self.emitted)],
                name=model.name,
            )
        return keras.models.clone_model(
            model, input_tensors=inputs, clone_function=self._clone, call_function=self._call
        )


def _separable_base(layer):
    """The SeparableConv a layer is, or a PruningWrapper holds (else the layer)."""
    return layer.layer if isinstance(layer, PruningWrapper) else layer


def _split_pruning(pruned: PruningWrapper, pointwise, input_shape) -> PruningWrapper:
    """The pruned SeparableConv's pointwise state moved onto its 1x1 convolution:
    the same schedule, structure and ranking, masks and step (the layouts agree:
    input axis -2, output axis -1)."""
    wrapper = PruningWrapper(pointwise, schedule=pruned.schedule, structure=str(pruned.structure),
                             ranking=pruned.ranking, name=pruned.name)
    wrapper.build(input_shape)
    [(_, _, old)], [(_, _, new)] = pruned._targets, wrapper._targets
    new.assign(np.asarray(old.numpy()).reshape(tuple(new.shape)))
    for (_, old_bias), (_, new_bias) in zip(pruned._bias_targets, wrapper._bias_targets):
        new_bias.assign(old_bias.numpy())
    wrapper.pruning_step.assign(pruned.pruning_step.numpy())
    return wrapper


_GLOBAL_AVERAGE = {L.AveragePooling1D: L.GlobalAveragePooling1D,
                   L.AveragePooling2D: L.GlobalAveragePooling2D,
                   L.AveragePooling3D: L.GlobalAveragePooling3D}


def _is_global_average(layer) -> bool:
    """Whether `layer` is an AveragePooling whose single window is its whole
    (known) input: one output position, averaging every input position."""
    if type(layer) not in _GLOBAL_AVERAGE or layer.padding != "valid":
        return False
    # Pooling layers keep no build config: the shapes are those of the calls.
    shapes = {tuple(node.input_tensors[0].shape) for node in layer._inbound_nodes
              if node.input_tensors}
    if len(shapes) != 1:
        return False
    [shape] = shapes
    spatial = shape[1:-1] if layer.data_format == "channels_last" else shape[2:]
    return None not in spatial and tuple(layer.pool_size) == tuple(spatial)


def _is_channel_batchnorm(layer) -> bool:
    rank = len(_input_shape(layer))
    axes = layer.axis if isinstance(layer.axis, (tuple, list)) else (layer.axis,)
    return bool(rank) and tuple(a % rank for a in axes) == (rank - 1,) and not (
        getattr(layer, "renorm", False) or getattr(layer, "synchronized", False))


def _is_channel_normalization(layer) -> bool:
    """A Normalization over the last axis only: a per-channel affine map."""
    if not isinstance(layer, L.Normalization) or layer.invert or not layer.built:
        return False
    rank = len(_input_shape(layer))
    axes = layer.axis if isinstance(layer.axis, (tuple, list)) else (layer.axis,)
    return bool(rank) and tuple(a % rank for a in axes) == (rank - 1,)


def _input_shape(layer) -> tuple:
    config = layer.get_build_config() if layer.built else None
    return tuple(config["input_shape"]) if config else ()


def _is_float(tensor) -> bool:
    return all(
        "float" in str(t.dtype) for t in keras.tree.flatten(tensor) if hasattr(t, "dtype")
    )
