"""Activation quantizers: `ActivationQuantizer` (training) and `FakeQuant` (deploy).

`ActivationQuantizer` tracks the range of the tensor it sees with an
exponential moving average (the first training batch sets it, later batches
move it by `1 - momentum`) and fake-quantizes with it. It is placed by
`quantize()` where TFLite will hold an int8 tensor: at the model input and
after each fused Conv/Dense+BN+ReLU, Add, Concatenate and similar op.

`strip()` turns it into a `FakeQuant` layer with the range as constants: the
op the TFLite converter reads activation scales from, with nothing else around
it, so the converted graph holds no extra arithmetic.

Example:

```python
import numpy as np
from keras_compress.quantization import ActivationQuantizer

q = ActivationQuantizer()
y = q(np.linspace(-1, 3, 8, dtype="float32")[None], training=True)
q.range   # (-1.0, 3.0)
```
"""

from __future__ import annotations

from typing import Any

import keras

from keras_compress import registry

from keras_compress.quantization import quantizers

__all__ = ["ActivationQuantizer", "FakeQuant"]

# A range narrower than this is widened (an all-zero tensor, e.g. a dead ReLU),
# so the quantization step is never zero.
_MIN_WIDTH = 1e-6


def _check_bits(bits: Any) -> int:
    if not isinstance(bits, int) or isinstance(bits, bool) or not 2 <= bits <= 16:
        raise ValueError(f"`activation_bits` must be an integer in [2, 16]; received {bits!r}.")
    return bits


def _valid_range(lo, hi):
    lo = keras.ops.minimum(lo, 0.0)
    hi = keras.ops.maximum(keras.ops.maximum(hi, 0.0), lo + _MIN_WIDTH)
    return lo, hi



def _across_replicas(lo, hi):
    """The batch's range over every replica under tf.distribute, where each
    replica sees a share of the global batch: all replicas then take the same
    range, the one a single device would take. Elsewhere `(lo, hi)`."""
    if keras.backend.backend() != "tensorflow":
        return lo, hi
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return lo, hi
    gathered = context.all_gather(tf.stack([lo, -hi])[None], axis=0)  # (replicas, 2)
    extremes = tf.reduce_min(gathered, axis=0)
    return extremes[0], -extremes[1]


@keras.saving.register_keras_serializable(package="keras_compress")
class ActivationQuantizer(keras.layers.Layer):
    """Fake-quantizes activations over a moving-average range.

    Args:
        bits: activation bit width (8 for int8 TFLite models).
        momentum: weight of the old range in the moving average, in [0, 1).

    State (saved with the model): `min_value`, `max_value`, `observed` (1 once a
    training batch was seen; until then inference passes the tensor through,
    as there is no range to quantize to), `enabled` (0 before QAT starts: the
    range is observed but the tensor passes through unchanged) and `frozen` (1
    stops range updates).

    Example:

    ```python
    import keras
    import keras_compress as kc

    q = kc.ActivationQuantizer(bits=8)
    x = keras.ops.convert_to_tensor([[-1.0, 0.3, 2.0]])
    assert bool(keras.ops.all(q(x) == x))  # nothing observed yet: pass-through
    q(x, training=True)                     # observes the range and quantizes
    q.range                                 # (-1.0, 2.0)
    ```
    """

    def __init__(self, bits: int = 8, momentum: float = 0.99, **kwargs: Any):
        super().__init__(**kwargs)
        self.bits = _check_bits(bits)
        if not isinstance(momentum, (int, float)) or not 0.0 <= momentum < 1.0:
            raise ValueError(f"`momentum` must be in [0, 1); received {momentum!r}.")
        self.momentum = float(momentum)
        self.supports_masking = True

    def build(self, input_shape=None):
        def scalar(name, value, aggregation="only_first_replica"):
            return self.add_weight(
                name=name, shape=(), initializer=keras.initializers.Constant(value),
                trainable=False, dtype="float32", aggregation=aggregation,
            )

        # Under tf.distribute each replica observes its share of the batch: the
        # range updates are averaged over replicas, so all hold one range.
        self.min_value = scalar("min_value", 0.0, "mean")
        self.max_value = scalar("max_value", 0.0, "mean")
        self.observed = scalar("observed", 0.0)
        self.enabled = scalar("enabled", 1.0)
        self.frozen = scalar("frozen", 0.0)
        self.built = True

    def call(self, inputs, training=None):
        x = keras.ops.cast(inputs, "float32")
        if training:
            # Range update as one blend per bound, var + c * (batch - var), with
            # c shared: 1 on the first batch (take it), 1 - momentum after it
            # (moving average), 0 once frozen. Few scalar ops, since on small
            # models the per-op cost of observing shows in the step time.
            observed = self.observed
            c = (1.0 - self.frozen * observed) * (1.0 - self.momentum * observed)
            batch_lo, batch_hi = _across_replicas(keras.ops.minimum(keras.ops.min(x), 0.0),
                                                  keras.ops.maximum(keras.ops.max(x), 0.0))
            lo = self.min_value + c * (batch_lo - self.min_value)
            hi = self.max_value + c * (batch_hi - self.max_value)
            self.min_value.assign(lo)
            self.max_value.assign(hi)
            self.observed.assign(1.0)
            active = self.enabled
        else:
            lo, hi = self.min_value, self.max_value
            # Never observed: there is no range yet, and (0, 0) would quantize
            # every activation to zero; a freshly wrapped model evaluates float.
            active = self.enabled * self.observed

        def quantize():
            low, high = _valid_range(lo, hi)
            return quantizers.fake_quant_activation(x, low, high, self.bits)

        # A branch on the switch, not a blend: the blend x + e * (q - x) costs
        # four more passes over the tensor (forward and backward) every step;
        # while off (observing before QAT) the range checks are skipped too.
        out = keras.ops.cond(active > 0.5, quantize, lambda: x)
        return keras.ops.cast(out, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    @property
    def range(self) -> tuple[float, float]:
        """The (min, max) the converter will use, as plain floats."""
        lo, hi = _valid_range(self.min_value, self.max_value)
        return float(keras.ops.convert_to_numpy(lo)), float(keras.ops.convert_to_numpy(hi))

    def stripped(self) -> keras.layers.Layer:
        """The deploy form: a `FakeQuant` with this range as constants; for
        16-bit activations an `Identity`, because the TFLite converter cannot
        convert 16-bit fake-quant ops (int16x8 conversion calibrates the
        ranges from representative data instead)."""
        if self.bits > 8:
            return keras.layers.Identity(name=self.name)
        if not self.built or float(self.observed.numpy()) == 0.0:
            raise ValueError(
                f"ActivationQuantizer '{self.name}' has not seen any training batch, so "
                "it has no range to export. Train the quantized model (model.fit) "
                "before strip(), or call it once with training=True on calibration data."
            )
        lo, hi = self.range
        return FakeQuant(min_value=lo, max_value=hi, bits=self.bits, name=self.name)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "bits": self.bits, "momentum": self.momentum}


@keras.saving.register_keras_serializable(package="keras_compress")
class FakeQuant(keras.layers.Layer):
    """Fixed-range fake quantization (the stripped form of `ActivationQuantizer`).

    Args:
        min_value: lower end of the range (<= 0).
        max_value: upper end of the range (>= 0, > min_value).
        bits: bit width.
    """

    def __init__(self, min_value: float, max_value: float, bits: int = 8, **kwargs: Any):
        super().__init__(**kwargs)
        lo, hi = float(min_value), float(max_value)
        if not (lo <= 0.0 <= hi and hi > lo):
            raise ValueError(
                f"FakeQuant '{kwargs.get('name', '')}': the range must contain 0 and be "
                f"non-empty; received min_value={lo}, max_value={hi}."
            )
        self.min_value, self.max_value, self.bits = lo, hi, _check_bits(bits)
        self.supports_masking = True

    def call(self, inputs):
        x = keras.ops.cast(inputs, "float32")
        out = quantizers.fake_quant_activation(x, self.min_value, self.max_value, self.bits)
        return keras.ops.cast(out, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "min_value": self.min_value,
            "max_value": self.max_value,
            "bits": self.bits,
        }


# A fixed-range fake quantization passes each channel through and keeps 0 at
# 0 (its zero point is exact), so channel groups (and `shrink`) see through it.
registry.add_library_rule(registry.LayerRule(FakeQuant, channels="through"))
