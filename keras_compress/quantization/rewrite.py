"""QAT rewrite: one level of a model rebuilt as its `Planner` decided.

`Rewriter.build()` rebuilds the model through `keras_compress.graph.rebuild`,
replacing each node by its QAT form and placing `ActivationQuantizer`s where
TFLite stores an int8 tensor with its own scale.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from keras_compress import graph as graph_lib
from keras_compress import model_walk
from keras_compress._wrapper_base import unwrap
from keras_compress.pruning.wrapper import PruningWrapper
from keras_compress.quantization import inner as inner_quantizers
from keras_compress.quantization.activations import ActivationQuantizer
from keras_compress.quantization.planner import (
    FIXED_RANGE,
    GLOBAL_AVERAGE,
    SEPARABLE,
    Plan,
    Planner,
    input_shape,
    separable_base,
)
from keras_compress.quantization.wrapper import QuantizeWrapper

L = keras.layers


class Rewriter(Planner):
    """Plan one level of a model, then rebuild it for QAT."""

    def _quantizer(self, name: str) -> ActivationQuantizer:
        unique, i = f"{name}_quant", 1
        while unique in self.names:
            unique, i = f"{name}_quant_{i}", i + 1
        self.names.add(unique)
        return ActivationQuantizer(
            bits=self.options.activation_bits, momentum=self.options.momentum, name=unique
        )

    def _clone(self, layer):
        plan = self.plans.get(id(layer), Plan("plain"))
        if not isinstance(layer, keras.layers.Layer):
            self.by_new[id(layer)] = plan
            return layer  # a keras.ops operation holds no state
        if plan.kind == "absorbed":
            new = L.Identity(name=f"{layer.name}_absorbed")
        elif plan.kind == "nested":
            new = Rewriter(layer, self.options, self.problems, quantize_inputs=False).build()
        elif plan.kind == "weighted":
            new = self._wrap(layer, plan)
        elif plan.kind == "rescaling":
            new = self._wrap_rescaling(layer)
        elif plan.kind == "resize":
            # Keras lowers UpSampling2D to TILE, which TFLite-Micro lacks; a
            # nearest-neighbour Resizing computes the same for integer factors
            # and becomes RESIZE_NEAREST_NEIGHBOR, which it runs.
            _, height, width, _ = input_shape(layer)
            new = L.Resizing(height * layer.size[0], width * layer.size[1],
                             interpolation="nearest", name=layer.name)
        elif plan.kind == "mean":
            # The same numbers in float; in int8 a MEAN with its own output
            # range instead of an AVERAGE_POOL_2D tied to its input's.
            new = GLOBAL_AVERAGE[type(layer)](
                data_format=layer.data_format, keepdims=True, name=layer.name)
        else:
            new = self._inner_form(layer) or model_walk.copy_layer(layer)
        self.by_new[id(new)] = plan
        return new

    def _inner_form(self, layer):
        """A LayerNormalization or attention with activation quantizers on its
        intermediate tensors (8-bit only: 16-bit ranges come from calibration)."""
        return inner_quantizers.qat_form(layer) if self.options.activation_bits == 8 else None

    def _wrap(self, layer, plan: Plan) -> QuantizeWrapper:
        if isinstance(separable_base(layer), SEPARABLE):
            return self._wrap_separable(layer, plan)
        inner = self._inner_form(layer) or model_walk.copy_layer(layer)
        if plan.split:
            base = unwrap(inner)
            base.activation = keras.activations.get("linear")
        batchnorm = model_walk.copy_layer(plan.batchnorm) if plan.batchnorm else None
        wrapper = QuantizeWrapper(
            inner,
            batchnorm=batchnorm,
            activation=plan.activation,
            weight_bits=bits_for(self.options.weight_bits, layer),
            per_tensor=self.options.per_tensor_dense and isinstance(
                unwrap(inner),
                keras.layers.Dense),
        )
        if layer.built:
            wrapper.build(input_shape(layer) or None)
        return wrapper

    def _wrap_separable(self, layer, plan: Plan) -> QuantizeWrapper:
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
            pointwise = split_pruning(pruned, pointwise, depthwise.compute_output_shape(shape))
        bits = bits_for(self.options.weight_bits, layer)
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
        shape = input_shape(layer)
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
            hidden = depthwise(*args, **kwargs)
            args, kwargs = (self._quantizer(depthwise.base_layer.name)(hidden),), {}
        out = layer(*args, **kwargs)
        base = unwrap(layer)
        if plan.kind == "weighted" and plan.split:
            out = self._quantizer(base.name)(out)
            out = L.Activation(plan.split, name=f"{base.name}_{plan.split}")(out)
            if plan.split in FIXED_RANGE:
                return out
        if plan.quantize_output and is_float(out):
            out = self._quantizer(base.name)(out)
        return out

    def _quantized_input(self, value):
        # Only the rebuilt model's own inputs: each is quantized once, where it enters.
        if not isinstance(value, keras.KerasTensor) or not isinstance(
                value._keras_history.operation, L.InputLayer):
            return value
        if not is_float(value):
            return value
        if id(value) not in self.input_cache:
            name = value._keras_history.operation.name
            self.input_cache[id(value)] = self._quantizer(name)(value)
        return self.input_cache[id(value)]

    def build(self) -> keras.Model:
        return graph_lib.rebuild(self.graph, self._clone, call=self._call)


def split_pruning(pruned: PruningWrapper, pointwise, input_shape) -> PruningWrapper:
    """The pruned SeparableConv's pointwise state moved onto its 1x1 convolution:
    the same schedule, structure and ranking, masks and step (the layouts agree:
    input axis -2, output axis -1)."""
    wrapper = PruningWrapper(pointwise, schedule=pruned.schedule, structure=str(pruned.structure),
                             ranking=pruned.ranking, name=pruned.name)
    wrapper.build(input_shape)
    [(_, _, old)], [(_, _, new)] = pruned.targets, wrapper.targets
    new.assign(np.asarray(old.numpy()).reshape(tuple(new.shape)))
    for (_, old_bias), (_, new_bias) in zip(pruned.bias_targets, wrapper.bias_targets):
        new_bias.assign(old_bias.numpy())
    wrapper.pruning_step.assign(pruned.pruning_step.numpy())
    return wrapper


def bits_for(spec: Any, layer: keras.layers.Layer) -> int:
    if not isinstance(spec, dict):
        return spec
    base = unwrap(layer)
    for candidate in (layer, base):
        if candidate.name in spec:
            return spec[candidate.name]
    for key, bits in spec.items():
        if isinstance(key, type) and isinstance(base, key):
            return bits
    return 8


def is_float(tensor) -> bool:
    return all(
        "float" in str(t.dtype) for t in keras.tree.flatten(tensor) if hasattr(t, "dtype")
    )

