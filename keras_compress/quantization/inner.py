"""Activation quantizers inside LayerNormalization and attention: the
intermediate tensors TFLite's int8 kernels hold get QAT ranges too.

`quantize` swaps a `LayerNormalization` (last axis) for
`QuantizedLayerNormalization` and a `MultiHeadAttention` for
`QuantizedMultiHeadAttention`: the same config and weights, computing the
same function, with an `ActivationQuantizer` on each tensor the converted
graph stores (LayerNorm: mean, centred input, its square, variance, variance
+ epsilon, rsqrt, normalised, scaled; attention: projected query, key and
value, scaled query, scores, context; softmax's int8 range is fixed by
TFLite). `strip` turns them into `DecomposedLayerNormalization` and
`FrozenMultiHeadAttention` with those ranges as constants, so such models
convert to int8 without representative data (an attention mask still adds
ops whose ranges are calibrated).

Example:

```python
import keras
import numpy as np
from keras_compress.quantization import inner

norm = keras.layers.LayerNormalization()
norm.build((None, 4, 8))
qat = inner.qat_form(norm)
x = np.random.default_rng(0).normal(size=(2, 4, 8)).astype("float32")
_ = qat(x, training=True)                       # observes the ranges
plain = qat.stripped()                          # DecomposedLayerNormalization
sorted(plain.ranges)[:2]                        # ['centered', 'inv_std']
```
"""

from __future__ import annotations

from typing import Any

import keras

from keras_compress import model_walk
from keras_compress.deploy import DecomposedLayerNormalization, fixed_fake_quant, layer_norm_ops
from keras_compress.quantization.activations import ActivationQuantizer

__all__ = ["QuantizedLayerNormalization", "QuantizedMultiHeadAttention",
           "FrozenMultiHeadAttention", "qat_form"]

L = keras.layers
NORM_POINTS = ("mean", "centered", "square", "variance", "variance_eps", "inv_std",
               "normalized", "scaled")
ATTENTION_POINTS = ("query", "key", "value", "scaled_query", "scores", "context")


@keras.saving.register_keras_serializable(package="keras_compress")
class QuantizedLayerNormalization(L.LayerNormalization):
    """QAT form of a `LayerNormalization` over the last axis (see the module
    docstring). Args: those of `LayerNormalization`, plus `bits` and
    `momentum` of its activation quantizers."""

    def __init__(self, bits: int = 8, momentum: float = 0.99, **kwargs: Any):
        super().__init__(**kwargs)
        self.bits, self.momentum = bits, momentum

    def build(self, input_shape):
        super().build(input_shape)
        self.quantizers = {p: ActivationQuantizer(self.bits, self.momentum, name=f"{self.name}_{p}")
                           for p in NORM_POINTS}
        for q in self.quantizers.values():
            q.build()

    def call(self, inputs, training=None):
        return layer_norm_ops(self, inputs, lambda p, t: self.quantizers[p](t, training=training))

    def stripped(self) -> DecomposedLayerNormalization:
        config = {k: v for k, v in self.get_config().items() if k not in ("bits", "momentum")}
        plain = DecomposedLayerNormalization.from_config(
            {**config, "ranges": _ranges(self.quantizers), "bits": self.bits})
        plain.build_from_config(self.get_build_config())
        plain.set_weights([w.numpy() for w in (self.gamma, self.beta) if w is not None])
        return plain

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "bits": self.bits, "momentum": self.momentum}


def _ranges(quantizers_by_point: dict) -> dict[str, list[float]]:
    """Each point's range, as its quantizer's deploy form (a `FakeQuant`) holds
    it; a quantizer that saw no training batch says so, by name."""
    ranges = {}
    for point, q in quantizers_by_point.items():
        fake_quant = q.stripped()
        ranges[point] = [fake_quant.min_value, fake_quant.max_value]
    return ranges


def _attention(layer, query, key, value, attention_mask, training, use_causal_mask, at):
    """`MultiHeadAttention._compute_attention`'s explicit path (scores
    materialised), `at(point, tensor)` applied to each stored tensor."""
    if use_causal_mask:
        causal = layer._compute_causal_mask(query, value)
        attention_mask = causal if attention_mask is None else keras.ops.logical_and(
            keras.ops.cast(attention_mask, "bool"), causal)
    query, key, value = at("query", query), at("key", key), at("value", value)
    query = at("scaled_query", query * keras.ops.cast(layer._inverse_sqrt_key_dim, query.dtype))
    scores = at("scores", keras.ops.einsum(layer._dot_product_equation, key, query))
    probabilities = layer._masked_softmax(scores, attention_mask)
    if layer._dropout > 0.0:
        probabilities = layer._dropout_layer(probabilities, training=training)
    context = keras.ops.einsum(layer._combine_equation, probabilities, value)
    return at("context", context), probabilities


@keras.saving.register_keras_serializable(package="keras_compress")
class QuantizedMultiHeadAttention(L.MultiHeadAttention):
    """QAT form of a `MultiHeadAttention` (see the module docstring)."""

    def __init__(self, bits: int = 8, momentum: float = 0.99, **kwargs: Any):
        super().__init__(**kwargs)
        self.bits, self.momentum = bits, momentum

    def build(self, query_shape, value_shape, key_shape=None):
        super().build(query_shape, value_shape, key_shape)
        self.quantizers = {p: ActivationQuantizer(self.bits, self.momentum, name=f"{self.name}_{p}")
                           for p in ATTENTION_POINTS}
        for q in self.quantizers.values():
            q.build()

    def _compute_attention(self, query, key, value, attention_mask=None, training=None,
                           return_attention_scores=False, use_causal_mask=False):
        return _attention(self, query, key, value, attention_mask, training, use_causal_mask,
                          lambda p, t: self.quantizers[p](t, training=training))

    def stripped(self) -> "FrozenMultiHeadAttention":
        """The deploy form: the same weights, the ranges as constants."""
        config = {k: v for k, v in self.get_config().items() if k not in ("bits", "momentum")}
        plain = FrozenMultiHeadAttention.from_config(
            {**config, "ranges": _ranges(self.quantizers), "bits": self.bits})
        plain.build_from_config(self.get_build_config())
        weights = [w.numpy() for w in self.weights if not _is_quantizer_weight(self, w)]
        plain.set_weights(weights)
        return plain

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "bits": self.bits, "momentum": self.momentum}


def _is_quantizer_weight(layer, weight) -> bool:
    return any(weight is v for q in layer.quantizers.values() for v in q.weights)


@keras.saving.register_keras_serializable(package="keras_compress")
class FrozenMultiHeadAttention(L.MultiHeadAttention):
    """`MultiHeadAttention` computing its scores explicitly, with fixed
    fake-quant ranges on the tensors TFLite stores (from QAT)."""

    def __init__(self, ranges: dict | None = None, bits: int = 8, **kwargs: Any):
        super().__init__(**kwargs)
        self.ranges, self.bits = dict(ranges or {}), bits

    def _compute_attention(self, query, key, value, attention_mask=None, training=None,
                           return_attention_scores=False, use_causal_mask=False):
        return _attention(self, query, key, value, attention_mask, training, use_causal_mask,
                          fixed_fake_quant(self))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "ranges": self.ranges, "bits": self.bits}


def qat_form(layer):
    """The QAT form of a stock LayerNormalization (last axis) or
    MultiHeadAttention, built, weights copied; None for any other layer."""
    if type(layer) is L.LayerNormalization:
        if not model_walk.normalizes_last_axis(layer) or getattr(layer, "rms_scaling", False):
            return None
        new = QuantizedLayerNormalization.from_config({**layer.get_config(), "axis": -1})
    elif type(layer) is L.MultiHeadAttention and layer.built:
        new = QuantizedMultiHeadAttention.from_config(layer.get_config())
    else:
        return None
    new.build_from_config(layer.get_build_config())
    stock = layer.weights
    for target, source in zip(new.weights[:len(stock)], stock):
        if tuple(target.shape) != tuple(source.shape):
            raise ValueError(f"Layer '{layer.name}': weight {source.path} does not line up "
                             "with its QAT form's.")
        target.assign(source.numpy())
    return new
