"""Deploy-time forms: a trained model rewritten into layers that int8 runtimes
run, computing the same function.

Training keeps the stock Keras layers; `deploy(model, target)` (and
`strip(model, target=...)`) swaps in, layer by layer:

- `LayerNormalization` -> `DecomposedLayerNormalization`: the same weights,
  computed as mean, subtract, multiply, mean, add, rsqrt, multiply, add, ops
  that have int8 kernels in LiteRT and TFLite-Micro (the stock layer lowers to
  a float NEG).
- `LSTM` -> `FusedLSTM`: the same weights, traced as the function TFLite's
  converter fuses into one UNIDIRECTIONAL_SEQUENCE_LSTM op (int8 weights, an
  int16 cell state) instead of a WHILE loop it cannot quantize.
- `GRU` -> the same layer with `unroll=True`: TFLite has no fused GRU, and
  the unrolled steps are int8 FULLY_CONNECTED, LOGISTIC, TANH and MUL ops.
- `Embedding` -> `GatherEmbedding`: the same table, looked up with one
  GATHER, without the negative-id guard (LESS, ADD, SELECT) Keras adds, which
  TFLite-Micro cannot run; ids are >= 0.
- Layers holding such layers as attributes (KerasHub's TransformerEncoder and
  its LayerNormalizations): a copy with its sublayers swapped.
- GELU, for `target="micro"` only: TFLite-Micro has no GELU kernel, so
  `x * sigmoid(1.702 x)` (`sigmoid_gelu`) stands in; LiteRT keeps the exact
  GELU, which it runs in int8. The substitute changes the function: measure
  its cost (docs/transformers.md).

Example:

```python
import keras
import keras_compress as kc

inputs = keras.Input((6, 8))
x = keras.layers.LayerNormalization()(inputs)
x = keras.layers.Dense(8, activation="gelu")(x)
model = keras.Model(inputs, keras.layers.LSTM(4)(x))
micro = kc.deploy(model, target="micro")
[type(layer).__name__ for layer in micro.layers[1:]]
# ['DecomposedLayerNormalization', 'Dense', 'FusedLSTM']
```
"""

from __future__ import annotations

import uuid
from typing import Any

import keras

from keras_compress import graph, model_walk

__all__ = ["TARGETS", "deploy", "sigmoid_gelu", "SigmoidGELU", "DecomposedLayerNormalization",
           "FusedLSTM", "GatherEmbedding"]

TARGETS = ("litert", "micro")
L = keras.layers


@keras.saving.register_keras_serializable(package="keras_compress")
def sigmoid_gelu(x):
    """GELU's sigmoid approximation, x * sigmoid(1.702 x): LOGISTIC and MUL,
    which TFLite-Micro runs in int8 (it has no GELU kernel)."""
    return x * keras.ops.sigmoid(1.702 * x)


@keras.saving.register_keras_serializable(package="keras_compress")
class SigmoidGELU(L.Layer):
    """`sigmoid_gelu` as a layer, for an `Activation("gelu")` in a QAT model:
    given the range of its input (`input_range`, the fake-quant before it), the
    1.702 x tensor gets its range too, so the converter needs no calibration."""

    def __init__(self, input_range: tuple | list | None = None, bits: int = 8, **kwargs: Any):
        super().__init__(**kwargs)
        self.input_range = None if input_range is None else [float(v) for v in input_range]
        self.bits = bits
        self.ranges = {} if input_range is None else {
            "scaled": [1.702 * v for v in self.input_range]}

    def call(self, x):
        return x * keras.ops.sigmoid(fixed_fake_quant(self)("scaled", 1.702 * x))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "input_range": self.input_range, "bits": self.bits}


def fixed_fake_quant(layer):
    """`at(point, tensor)` fake-quantizing with the constant `layer.ranges`
    {point: (min, max)} at `layer.bits` (points without a range pass)."""
    from keras_compress.quantization import quantizers

    def at(point, tensor):
        if point not in layer.ranges:
            return tensor
        lo, hi = layer.ranges[point]
        return quantizers.fake_quant_activation(tensor, lo, hi, layer.bits)

    return at


def layer_norm_ops(layer, inputs, at=None):
    """LayerNormalization over the last axis as int8 kernels compute it: mean,
    subtract, multiply, mean, add, rsqrt, multiply (gamma), add (beta);
    `at(point, tensor)` sees each intermediate (QAT places its quantizers
    there)."""
    at = at or (lambda point, tensor: tensor)
    x = keras.ops.cast(inputs, "float32")
    if getattr(layer, "rms_scaling", False):
        inv = keras.ops.rsqrt(keras.ops.mean(x * x, axis=-1, keepdims=True) + layer.epsilon)
        return keras.ops.cast(x * inv * layer.gamma, inputs.dtype)
    mean = at("mean", keras.ops.mean(x, axis=-1, keepdims=True))
    centered = at("centered", x - mean)
    square = at("square", centered * centered)
    variance = at("variance", keras.ops.mean(square, axis=-1, keepdims=True))
    inv_std = at("inv_std", keras.ops.rsqrt(at("variance_eps", variance + layer.epsilon)))
    y = at("normalized", centered * inv_std)
    if layer.scale:
        y = at("scaled", y * layer.gamma)
    if layer.center:
        y = y + layer.beta
    return keras.ops.cast(y, inputs.dtype)


@keras.saving.register_keras_serializable(package="keras_compress")
class DecomposedLayerNormalization(L.LayerNormalization):
    """`LayerNormalization` over the last axis, computed from ops with int8
    kernels (`layer_norm_ops`). Same config and weights as the stock layer,
    plus optional fixed `ranges` {point: (min, max)} from QAT, fake-quantizing
    its intermediate tensors for the converter."""

    def __init__(self, ranges: dict | None = None, bits: int = 8, **kwargs: Any):
        super().__init__(**kwargs)
        self.ranges, self.bits = dict(ranges or {}), bits

    def call(self, inputs):
        return layer_norm_ops(self, inputs, fixed_fake_quant(self) if self.ranges else None)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        if self.ranges:
            config.update(ranges=self.ranges, bits=self.bits)
        return config


@keras.saving.register_keras_serializable(package="keras_compress")
class GatherEmbedding(L.Embedding):
    """`Embedding` (same config and table) looked up with one gather: ids must
    be >= 0 (Keras' own lookup also wraps negative ids, a guard TFLite-Micro
    has no SELECT kernel for)."""

    def call(self, inputs):
        import tensorflow as tf

        ids = tf.cast(inputs, "int32") if inputs.dtype != "int64" else inputs
        return tf.cast(tf.gather(self.embeddings, ids), self.compute_dtype)


def _lstm_function(time_major: bool, go_backwards: bool):
    """A tf.function with the attributes the TFLite converter fuses into a
    UNIDIRECTIONAL_SEQUENCE_LSTM (the Keras standard-LSTM contract: inputs,
    initial h and c, kernel, recurrent kernel, bias; returns the last output,
    every output, the final h and c, and a runtime marker). Its body is what
    TensorFlow runs; the converter replaces it with the fused op."""
    import tensorflow as tf

    def standard_lstm(inputs, init_h, init_c, kernel, recurrent_kernel, bias):
        steps = tf.unstack(inputs, axis=0 if time_major else 1)
        if go_backwards:
            steps = steps[::-1]
        h, c, outputs = init_h, init_c, []
        for step in steps:
            z = tf.matmul(step, kernel) + tf.matmul(h, recurrent_kernel) + bias
            i, f, g, o = tf.split(z, 4, axis=1)
            c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
            h = tf.sigmoid(o) * tf.tanh(c)
            outputs.append(h)
        sequence = tf.stack(outputs, axis=0 if time_major else 1)
        return h, sequence, h, c, tf.constant(0.0, name="runtime")

    attributes = {"api_implements": f"lstm_{uuid.uuid4()}", "api_preferred_device": "CPU",
                  "time_major": time_major, "go_backwards": go_backwards}
    return tf.function(standard_lstm, autograph=False, experimental_attributes=attributes)


@keras.saving.register_keras_serializable(package="keras_compress")
class FusedLSTM(L.LSTM):
    """`LSTM` (same config and weights) whose TensorFlow graph is the function
    TFLite's converter fuses into one UNIDIRECTIONAL_SEQUENCE_LSTM op. Takes
    no mask and no initial state; `tanh`/`sigmoid` activations only."""

    def call(self, sequences, initial_state=None, mask=None, training=False):
        if initial_state is not None or mask is not None:
            raise ValueError(f"FusedLSTM '{self.name}' takes no initial_state or mask: the "
                             "fused TFLite op starts from zero state and reads every step.")
        cell = self.cell
        import tensorflow as tf

        x = tf.cast(sequences, "float32")
        batch = x.shape[0] if x.shape[0] is not None else tf.shape(x)[0]
        # h and c as two tensors: the converter gives each its own type
        # (the cell state is int16) and cannot split one shared value.
        h0 = tf.zeros((batch, self.units), x.dtype, name="initial_h")
        c0 = tf.zeros((batch, self.units), x.dtype, name="initial_c")
        bias = cell.bias if cell.use_bias else tf.zeros((4 * self.units,), x.dtype)
        fn = _lstm_function(False, bool(self.go_backwards))
        last, sequence, _, _, _ = fn(x, h0, c0, tf.convert_to_tensor(cell.kernel),
                                     tf.convert_to_tensor(cell.recurrent_kernel),
                                     tf.convert_to_tensor(bias))
        return sequence if self.return_sequences else last


def _fusable_lstm(layer) -> str | None:
    """Why an LSTM cannot become a `FusedLSTM` (None: it can)."""
    if keras.activations.serialize(layer.cell.activation) != "tanh" or \
            keras.activations.serialize(layer.cell.recurrent_activation) != "sigmoid":
        return "its activations are not tanh and sigmoid"
    if layer.return_state or layer.stateful:
        return "it returns or keeps its state"
    return None


def _replacement(layer, target: str):
    if not isinstance(layer, keras.layers.Layer):
        return None
    if type(layer) is L.LayerNormalization:
        if model_walk.normalizes_last_axis(layer):
            return _retype(layer, DecomposedLayerNormalization, axis=-1)
        return None
    if type(layer) is L.Embedding and not getattr(layer, "quantization_mode", None):
        return _retype(layer, GatherEmbedding)
    if type(layer) is L.LSTM and _fusable_lstm(layer) is None:
        return _retype(layer, FusedLSTM)
    if type(layer) is L.GRU and not layer.unroll:
        return _retype(layer, L.GRU, unroll=True)
    if target == "micro" and "gelu" in model_walk.activation_name(layer):  # and gelu_approximate
        new = _retype(layer, type(layer), activation=sigmoid_gelu)
        return _with_sublayers_deployed(new, target) or new
    return _with_sublayers_deployed(layer, target)


def _with_sublayers_deployed(layer, target: str):
    """A copy of a layer whose sublayers (attributes, as KerasHub's
    TransformerEncoder holds its LayerNormalizations) need deploy forms, with
    those swapped in; None when none does."""
    subs = {name: value for name, value in vars(layer).items()
            if isinstance(value, keras.layers.Layer) and not model_walk.is_model(value)}
    if not any(_replacement(value, target) is not None for value in subs.values()):
        return None
    new = _retype(layer, type(layer))
    for name in subs:
        old = getattr(new, name)
        replacement = _replacement(old, target)
        if replacement is not None:
            # A built layer's tracker is locked against new state: the swap
            # replaces a tracked sublayer by one computing the same.
            new._tracker.unlock()
            new._tracker.untrack(old)
            setattr(new, name, replacement)
            new._tracker.lock()
    return new


def _retype(layer, cls, **changes: Any):
    """A built copy of `layer` as `cls`, its config changed by `changes`, its
    weights copied."""
    config = {**layer.get_config(), **changes}
    new = cls.from_config(config)
    if layer.built:
        new.build_from_config(layer.get_build_config())
        new.set_weights(layer.get_weights())
    return new


def deploy(model: keras.Model, target: str = "litert") -> keras.Model:
    """Return a copy of `model` with each layer in the form `target`'s int8
    kernels run (see the module docstring): the same function, except GELU's
    approximation for `target="micro"`.

    Args:
        model: a plain Sequential or functional model (nested ones included),
            e.g. the result of `strip`.
        target: "litert" (phones: LiteRT) or "micro" (TFLite-Micro).

    Raises:
        ValueError: an unknown target; a GRU without a fixed number of time
            steps (it must unroll); an LSTM the fused op cannot express, named.
    """
    if target not in TARGETS:
        raise ValueError(f"`target` must be one of {TARGETS}; received {target!r}.")
    for layer in model_walk.iter_layers(model):
        if isinstance(layer, L.GRU) and not layer.unroll and layer.built:
            steps = layer.get_build_config()["input_shape"][1]
            if steps is None:
                raise ValueError(
                    f"GRU '{layer.name}' has no fixed number of time steps: TFLite has no "
                    "fused GRU op, so it must unroll. Give the model's input a fixed length.")
        if type(layer) is L.LSTM and _fusable_lstm(layer):
            raise ValueError(
                f"LSTM '{layer.name}' cannot become TFLite's fused LSTM op: "
                f"{_fusable_lstm(layer)}. Use tanh/sigmoid and no returned state.")

    from keras_compress.quantization.activations import FakeQuant

    model_graph = graph.ModelGraph(model)
    # The converter cannot give a fused LSTM both a fake-quant input range and
    # a fake-quant output range (it fails splitting the op's state operands):
    # its output range is calibrated from representative data instead.
    after_lstm = {id(n.op) for n in model_graph.nodes if isinstance(n.op, FakeQuant)
                  and any(type(p) is L.LSTM for p in model_graph.producers(n.op))}

    def replace(layer):
        if model_walk.is_graph_model(layer):
            return deploy(layer, target)
        if id(layer) in after_lstm:
            return L.Identity(name=layer.name)
        if target == "micro" and type(layer) is L.Activation and \
                "gelu" in model_walk.activation_name(layer):
            producers = model_graph.producers(layer)
            known = producers[0] if len(producers) == 1 and isinstance(
                producers[0], FakeQuant) else None
            return SigmoidGELU(None if known is None else (known.min_value, known.max_value),
                               bits=known.bits if known else 8, name=layer.name)
        return _replacement(layer, target)

    return graph.rebuild(model, replace)

