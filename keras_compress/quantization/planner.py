"""QAT planning: what each node of a Sequential or functional model becomes.

`Planner` walks one level of a model (`keras_compress.graph.ModelGraph`) and
decides per node: a weighted layer wrapped for QAT with the BatchNormalization
and ReLU it absorbs, an op that keeps its input's int8 scale, one with a fixed
range, an affine layer rewritten as a 1x1 depthwise convolution, a keras.ops
call, or a layer with no int8 rule (collected as a problem, named). The
rewrite itself is `keras_compress.quantization.rewrite`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras

from keras_compress import model_walk, registry
from keras_compress._wrapper_base import CompressionWrapper, unwrap
from keras_compress.graph import ModelGraph
from keras_compress.pruning.wrapper import PruningWrapper
from keras_compress.quantization.activations import ActivationQuantizer
from keras_compress.quantization.wrapper import (
    FUSABLE_ACTIVATIONS,
    QuantizeWrapper,
    activation_name,
    is_quantizable,
    quantizable_layers,
)

L = keras.layers
SEPARABLE = (L.SeparableConv1D, L.SeparableConv2D)
# keras.ops calls TFLite fuses a following ReLU into.
FUSING_OPS = frozenset({"Add", "Subtract", "Multiply"})
# Activations whose int8 output range TFLite fixes itself.
FIXED_RANGE = ("softmax", "sigmoid", "tanh", "hard_sigmoid", "log_softmax")


@dataclasses.dataclass
class Plan:
    kind: str  # weighted | absorbed | same | fixed | nested | float | plain | rescaling | resize | mean
    batchnorm: Any = None
    activation: str | None = None  # fused ReLU/ReLU6
    split: str | None = None  # the layer's own activation, applied after a quantizer
    parts: tuple = ()  # a SeparableConv split into (depthwise, pointwise) wrappers
    quantize_output: bool = True


@dataclasses.dataclass(frozen=True)
class Options:
    weight_bits: Any  # int or {name or class: bits}
    activation_bits: int
    momentum: float
    fold_batchnorm: bool
    skip: Any  # predicate or None
    per_tensor_dense: bool = False


def fusable(layer: keras.layers.Layer | None) -> str | None:
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


class Planner:
    """The QAT plan of one level of a Sequential/functional model."""

    def __init__(self, model, options: Options, problems: list[str], quantize_inputs: bool):
        self.model = model
        self.options = options
        self.problems = problems
        self.quantize_inputs = quantize_inputs
        self.graph = ModelGraph(model)
        self.plans: dict[int, Plan] = {}
        self.by_new: dict[int, Plan] = {}
        self.names = {layer.name for layer in model_walk.iter_layers(model)}
        self.input_cache: dict[int, Any] = {}
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
        base = unwrap(layer)
        return bool(skip(layer) or skip(base))

    def _plan(self) -> None:
        single = self.graph.single_consumer
        for layer in self._layers():
            if id(layer) in self.plans:
                continue
            if self._skipped(layer):
                self.plans[id(layer)] = Plan("float")
                continue
            if isinstance(layer, QuantizeWrapper) or isinstance(layer, ActivationQuantizer):
                self.problems.append(f"'{layer.name}' is already quantized; quantize a model once.")
                continue
            if model_walk.is_graph_model(layer):
                self.plans[id(layer)] = Plan("nested", quantize_output=False)
                continue
            if not isinstance(layer, keras.layers.Layer):
                self.plans[id(layer)] = self._plan_op(layer, single)
                continue
            if is_quantizable(layer) or isinstance(separable_base(layer), SEPARABLE):
                self._plan_weighted(layer, single)
                continue
            self.plans[id(layer)] = self._plan_other(layer, single)

    def _plan_weighted(self, layer, single) -> None:
        base = unwrap(layer)
        own = activation_name(base)
        plan = Plan("weighted")
        rule = registry.rule_for(base)
        if registry.is_registered(base) or rule.qat != "kernel":
            # A registered custom layer, attention, a recurrent layer or an
            # embedding computes what it computes: nothing is folded or fused
            # into it.
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
                self.plans[id(nxt)] = Plan("absorbed")
                end = nxt
            nxt = single(end)
            fused = fusable(nxt)
            if fused and not self._skipped(nxt) and id(nxt) not in self.plans:
                plan.activation = fused
                self.plans[id(nxt)] = Plan("absorbed")
        elif own not in FUSABLE_ACTIVATIONS:
            plan.split = own
        self.plans[id(layer)] = plan

    def _plan_op(self, op, single) -> Plan:
        """A `keras.ops` call in a functional graph (`x + 3.0` in hard-swish,
        `x[..., 0]`): an operation node that is not a layer."""
        kind = type(op).__name__
        if kind in registry.ELEMENTWISE_OPS:
            # ADD/SUB/MUL + ReLU fuse in TFLite: quantize after the activation only.
            return Plan("op", quantize_output=not (kind in FUSING_OPS and fusable(single(op))))
        if kind in registry.SAME_SCALE_OPS:
            return Plan("op", quantize_output=False)
        self.problems.append(
            f"op '{op.name}' (keras.ops {kind}) has no int8 QAT rule (supported: "
            f"{', '.join(sorted(registry.ELEMENTWISE_OPS | registry.SAME_SCALE_OPS))}); write it as a "
            "Keras layer, or skip=[...] the layers around it")
        return Plan("float")

    def _plan_other(self, layer, single) -> Plan:
        if is_per_channel_affine(layer, self.options.fold_batchnorm):
            return Plan("rescaling")
        if (isinstance(layer, L.UpSampling2D) and layer.interpolation == "nearest"
                and layer.data_format == "channels_last"
                and None not in input_shape(layer)[1:3]):
            return Plan("resize", quantize_output=False)
        if is_global_average(layer):
            return Plan("mean")
        rule = registry.rule_for(layer)
        if rule is not None and rule.qat == "same_scale":
            return Plan("same", quantize_output=False)
        if rule is not None and rule.qat == "output":
            return Plan("plain")
        if isinstance(layer, (L.Activation, L.Softmax)):
            name = "softmax" if isinstance(layer, L.Softmax) else activation_name(layer)
            if name in FIXED_RANGE:
                return Plan("fixed", quantize_output=False)
            return Plan("plain")
        if layer.weights or isinstance(layer, CompressionWrapper):
            self.problems.append(self._reason(layer))
            return Plan("float")
        plan = Plan("plain")
        # ADD/SUB/MUL + ReLU fuse in TFLite: quantize after the activation only.
        if isinstance(layer, (L.Add, L.Subtract, L.Multiply)) and fusable(single(layer)):
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
        elif isinstance(layer, CompressionWrapper) and isinstance(layer.base_layer, SEPARABLE):
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
def separable_base(layer):
    """The SeparableConv a layer is, or a PruningWrapper holds (else the layer)."""
    return layer.layer if isinstance(layer, PruningWrapper) else layer


GLOBAL_AVERAGE = {L.AveragePooling1D: L.GlobalAveragePooling1D,
                   L.AveragePooling2D: L.GlobalAveragePooling2D,
                   L.AveragePooling3D: L.GlobalAveragePooling3D}


def is_global_average(layer) -> bool:
    """Whether `layer` is an AveragePooling whose single window is its whole
    (known) input: one output position, averaging every input position."""
    if type(layer) not in GLOBAL_AVERAGE or layer.padding != "valid":
        return False
    # Pooling layers keep no build config: the shapes are those of the calls.
    shapes = {tuple(node.input_tensors[0].shape) for node in layer._inbound_nodes
              if node.input_tensors}
    if len(shapes) != 1:
        return False
    [shape] = shapes
    spatial = shape[1:-1] if layer.data_format == "channels_last" else shape[2:]
    return None not in spatial and tuple(layer.pool_size) == tuple(spatial)


def is_per_channel_affine(layer, fold_batchnorm: bool) -> bool:
    """A layer computing x * scale + offset per channel on a 3D/4D tensor,
    which QAT runs as a frozen 1x1 depthwise convolution: a Rescaling, a
    Normalization over the channel axis, or (with `fold_batchnorm`) a
    BatchNormalization over it that has no Conv/Dense to fold into
    (pre-activation, as in DenseNet: its inference-mode map)."""
    if len(input_shape(layer)) not in (3, 4):
        return False
    if isinstance(layer, L.Rescaling):
        return True
    if isinstance(layer, L.Normalization):
        return not layer.invert and model_walk.normalizes_last_axis(layer)
    if isinstance(layer, L.BatchNormalization):
        return fold_batchnorm and model_walk.normalizes_last_axis(layer) and not (
            getattr(layer, "renorm", False) or getattr(layer, "synchronized", False))
    return False


def input_shape(layer) -> tuple:
    return model_walk.build_input_shape(layer) or ()


