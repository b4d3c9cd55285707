"""`QuantizeWrapper`: quantization-aware training of one Dense/Conv layer.

The wrapper hands the layer a fake-quantized kernel (symmetric int8 per output
channel, see `quantizers`) and, when a BatchNormalization follows the layer,
folds it in during training the way the deployed model computes it:

    s = gamma / sqrt(moving_var + eps)          # per output channel
    z = conv(x, fake_quant(W * s)) / s + b      # one convolution
    y = (z - mean) / sqrt(var + eps) * gamma + beta

With batch statistics (`mean`, `var` of `z`) while training, and moving
statistics once frozen and at inference, where `y` is exactly
`conv(x, fake_quant(W * s)) + (b - moving_mean) * s + beta`: the folded layer
`strip()` writes out. A following ReLU/ReLU6 is fused too (TFLite fuses it
into the convolution). The layer may itself be wrapped (e.g. a
`PruningWrapper`): its masked kernel is what gets folded and quantized, so
pruned zeros stay exactly zero.

Example:

```python
import keras
import numpy as np
import keras_compress as kc

conv = keras.layers.Conv2D(4, 3, use_bias=False)
layer = kc.QuantizeWrapper(conv, batchnorm=keras.layers.BatchNormalization(),
                           activation="relu")
y = layer(np.random.rand(2, 8, 8, 3).astype("float32"), training=True)
plain = layer.stripped()      # Conv2D(activation="relu", use_bias=True), BN folded
```
"""

from __future__ import annotations

import warnings
from typing import Any

import keras
import numpy as np

from keras_compress import registry
from keras_compress._wrapper_base import CompressionWrapper, lookup, unwrap
from keras_compress.model_walk import activation_name
from keras_compress.pruning import prunable
from keras_compress.quantization import quantizers
from keras_compress.quantization.kernel import QuantizedKernel, packable, per_tensor_for

__all__ = ["QuantizeWrapper", "quantizable_layers", "is_quantizable", "FUSABLE_ACTIVATIONS"]

FUSABLE_ACTIVATIONS = ("relu", "relu6")
# The registry's QAT rules whose layers this wrapper holds.
WRAPPED = ("kernel", "weights")


def quantizable_layers() -> list[str]:
    """Names of the layer types QAT wraps (registered custom layers first)."""
    return registry.names(lambda rule: rule.qat in WRAPPED)


def is_quantizable(layer: keras.layers.Layer) -> bool:
    """Whether `layer` (or the base layer of a wrapper) can be QAT-wrapped."""
    base = unwrap(layer)
    rule = registry.rule_for(base)
    return rule is not None and rule.qat in WRAPPED


def _apply_activation(name: str | None, x):
    if name in (None, "linear"):
        return x
    if name == "relu6":
        return keras.ops.relu6(x)
    return keras.ops.relu(x)


@keras.saving.register_keras_serializable(package="keras_compress")
class QuantizeWrapper(CompressionWrapper):
    """QAT for a Dense/Conv layer, with an optional folded BatchNormalization
    and a fused ReLU/ReLU6.

    Use `keras_compress.quantize(model)`, which also places the activation
    quantizers and finds the Conv+BN+ReLU patterns; use this class directly to
    build quantized layers by hand (e.g. inside a subclassed model).

    Args:
        layer: Dense, Conv1D/2D, DepthwiseConv1D/2D, Conv1D/2DTranspose, or a
            keras-compress wrapper (e.g. `PruningWrapper`) around one.
        batchnorm: a BatchNormalization (last axis) applied to the layer's
            output, folded into the kernel. The layer's own activation must then
            be linear.
        activation: "relu" or "relu6" applied after the (folded) layer, or None.
        weight_bits: kernel bit width: 8, or 4 for packed INT4 weights (per
            output channel for convolutions, per tensor for Dense and transposed
            convolutions); `strip` then returns a `QuantizedKernel`.
        per_tensor: one scale for the whole kernel instead of one per output
            channel (Dense only). `tflite_export.convert` detects such kernels
            and keeps them per tensor, which saves a scale and zero point per
            channel in the flatbuffer and TFLite-Micro's per-channel buffers in
            the arena, at some accuracy cost.
    """

    def __init__(
        self,
        layer: keras.layers.Layer,
        batchnorm: keras.layers.BatchNormalization | dict | None = None,
        activation: str | None = None,
        weight_bits: int = 8,
        per_tensor: bool = False,
        **kwargs: Any,
    ):
        if not isinstance(layer, keras.layers.Layer):
            raise ValueError(f"QuantizeWrapper wraps a keras layer; received {layer!r}.")
        if isinstance(layer, QuantizeWrapper):
            raise ValueError(f"Layer '{layer.name}' is already quantized (QuantizeWrapper).")
        base = unwrap(layer)
        if not is_quantizable(layer):
            raise ValueError(
                f"Layer '{base.name}' ({type(base).__name__}) cannot be QAT-wrapped. "
                f"Supported: {', '.join(quantizable_layers())}."
            )
        if getattr(base, "data_format", "channels_last") != "channels_last":
            raise ValueError(
                f"Layer '{base.name}' uses data_format='{base.data_format}'; TFLite "
                "kernels are channels_last. Rebuild the model with channels_last."
            )
        kwargs.setdefault("name", f"quant_{base.name}")
        super().__init__(layer, **kwargs)
        if isinstance(batchnorm, dict):
            batchnorm = keras.saving.deserialize_keras_object(batchnorm)
        if batchnorm is not None:
            _check_foldable(base, batchnorm)
        if activation not in (None, *FUSABLE_ACTIVATIONS):
            raise ValueError(
                f"`activation` of QuantizeWrapper '{self.name}' must be None, 'relu' "
                f"or 'relu6' (the activations TFLite fuses); received {activation!r}."
            )
        if activation is not None and activation_name(base) not in ("linear",):
            raise ValueError(
                f"Layer '{base.name}' already applies activation "
                f"'{activation_name(base)}'; a fused `activation` needs a linear layer."
            )
        self.batchnorm = batchnorm
        self.activation = activation
        quantizers.weight_levels(weight_bits)  # validates
        self.weight_bits = weight_bits
        layouts = registry.kernels(base)
        layout = layouts[0]
        if len(layouts) > 1 and batchnorm is not None:
            raise ValueError(
                f"Layer '{base.name}' has {len(layouts)} kernels; a BatchNormalization can "
                "only be folded into a layer with one.")
        rule = registry.rule_for(base)
        if weight_bits < 8 and (len(layouts) > 1 or registry.is_registered(base)
                                or rule.qat != "kernel"):
            raise ValueError(
                f"Layer '{base.name}' ({type(base).__name__}): 4-bit weights are for the "
                "built-in Dense and convolution layers, which the converter packs as INT4; "
                "give this layer `weight_bits=8`.")
        if not isinstance(per_tensor, bool) or (per_tensor and not isinstance(base, keras.layers.Dense)):
            raise ValueError(
                f"`per_tensor` of QuantizeWrapper '{self.name}' must be a bool, and True only "
                f"for Dense layers (the converter keeps convolutions per channel); received "
                f"{per_tensor!r} for {type(base).__name__}.")
        self.per_tensor = per_tensor
        per_channel = rule.per_channel and not per_tensor
        self._channel_axes = (layout.output_axes or ()) if per_channel and not per_tensor_for(
            base, weight_bits) else ()
        # Further kernels (a registered custom layer's, attention's, a
        # recurrent cell's): per output channel where the rule says so.
        self._more_axes = [(k.output_axes or ()) if per_channel else () for k in layouts[1:]]

    # ------------------------------------------------------------------ build
    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
        base = self.base_layer
        layouts = registry.kernels(base)
        self._kernel = prunable.variable(base, layouts[0].attr)
        self._bias = prunable.variable(base, layouts[0].bias) if layouts[0].bias else None
        self._more_kernels = [prunable.variable(base, k.attr) for k in layouts[1:]]
        if self.batchnorm is not None:
            out_shape = base.compute_output_shape(input_shape)
            axis = self.batchnorm.axis
            axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
            if not isinstance(axis, int) or axis % len(out_shape) != len(out_shape) - 1:
                raise ValueError(
                    f"BatchNormalization '{self.batchnorm.name}' normalizes axis "
                    f"{self.batchnorm.axis}; only the channel (last) axis can be folded "
                    f"into layer '{base.name}'."
                )
            if not self.batchnorm.built:
                self.batchnorm.build(out_shape)
        if self.batchnorm is not None:
            channels = int(np.prod([self._kernel.shape[a] for a in self._channel_axes]))
            if self.batchnorm.moving_mean.shape[0] != channels:
                raise ValueError(
                    f"BatchNormalization '{self.batchnorm.name}' normalizes "
                    f"{self.batchnorm.moving_mean.shape[0]} channels but layer "
                    f"'{base.name}' outputs {channels}."
                )
        self.enabled = self.add_weight(
            name="quantize_enabled", shape=(), initializer="ones", trainable=False
        )
        self.bn_frozen = self.add_weight(
            name="bn_frozen", shape=(), initializer="zeros", trainable=False
        )
        self.built = True

    # ------------------------------------------------------------- arithmetic
    def _kernel_shape_scale(self, s):
        """Per-channel factor `s` reshaped to broadcast over the kernel."""
        shape = [
            self._kernel.shape[i] if any(i == a % len(self._kernel.shape) for a in self._channel_axes)
            else 1
            for i in range(len(self._kernel.shape))
        ]
        return keras.ops.reshape(s, shape)

    def _bn_scale(self):
        bn = self.batchnorm
        gamma = bn.gamma if bn.scale else 1.0
        return gamma * keras.ops.rsqrt(bn.moving_variance + bn.epsilon)

    def substitutions(self, training):
        inner = self.inner_substitutions(training)
        w = lookup(inner, self._kernel)
        if self.batchnorm is not None:
            w = w * self._kernel_shape_scale(self._bn_scale())
        # A branch, not a blend: before QAT starts (quantizers observing) the
        # per-channel scale and rounding passes over the kernel are skipped.
        wq = keras.ops.cond(
            self.enabled > 0.5,
            lambda: quantizers.fake_quant_weight(w, self._channel_axes, self.weight_bits),
            lambda: w,
        )
        mapping = [(self._kernel, wq)]
        for var, axes in zip(self._more_kernels, self._more_axes):
            v = lookup(inner, var)
            mapping.append((var, keras.ops.cond(
                self.enabled > 0.5,
                lambda v=v, axes=axes: quantizers.fake_quant_weight(v, axes, self.weight_bits),
                lambda v=v: v)))
        if self._bias is not None:
            b = lookup(inner, self._bias)
            if self.batchnorm is not None:
                b = b * self._bn_scale()
            mapping.append((self._bias, b))
        done = {id(v) for v, _ in mapping}
        return mapping + [(v, val) for v, val in inner if id(v) not in done]

    def finish(self, y, training):
        if self.batchnorm is not None:
            y = self._batchnorm(y, training)
        return _apply_activation(self.activation, y)

    def _batchnorm(self, y, training):
        # `y` was computed with the kernel scaled by s = gamma / sqrt(var + eps),
        # so the convolution's own output is z = y / s. BatchNormalization of z
        # is applied as one per-channel multiply-add on y (statistics of z are
        # those of y divided by s, s^2): two passes over the tensor, not six.
        bn = self.batchnorm
        s = self._bn_scale()
        safe = keras.ops.where(keras.ops.equal(s, 0.0), 1.0, s)
        gamma = bn.gamma if bn.scale else 1.0
        beta = bn.beta if bn.center else 0.0
        if training and bn.trainable:
            axes = list(range(len(y.shape) - 1))
            y_mean, y_var = keras.ops.moments(y, axes=axes)
            batch_mean, batch_var = y_mean / safe, y_var / keras.ops.square(safe)
            frozen = self.bn_frozen
            mean = frozen * bn.moving_mean + (1.0 - frozen) * batch_mean
            var = frozen * bn.moving_variance + (1.0 - frozen) * batch_var
            m = bn.momentum
            live = 1.0 - frozen
            bn.moving_mean.assign(
                bn.moving_mean + live * (1.0 - m) * (keras.ops.stop_gradient(batch_mean) - bn.moving_mean)
            )
            bn.moving_variance.assign(
                bn.moving_variance
                + live * (1.0 - m) * (keras.ops.stop_gradient(batch_var) - bn.moving_variance)
            )
        else:
            mean, var = bn.moving_mean, bn.moving_variance
        a = keras.ops.rsqrt(var + bn.epsilon) * gamma
        return y * (a / safe) + (beta - mean * a)

    # ------------------------------------------------------------------ strip
    def folded_weights(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(kernel, bias) of the deployed layer: inner wrappers baked, BN folded,
        kernel on its int grid. The bias is None when the layer has none."""
        plain = self.inner_stripped()
        layout = registry.kernels(plain)[0]
        w = np.asarray(prunable.variable(plain, layout.attr).numpy(), np.float32)
        bias_var = prunable.variable(plain, layout.bias) if layout.bias else None
        b = None if bias_var is None else np.asarray(bias_var.numpy(), np.float32)
        if self.batchnorm is not None:
            bn = self.batchnorm
            s = np.asarray(keras.ops.convert_to_numpy(self._bn_scale()), np.float32)
            w = w * np.asarray(keras.ops.convert_to_numpy(self._kernel_shape_scale(s)))
            beta = bn.beta.numpy() if bn.center else 0.0
            b0 = 0.0 if b is None else b
            b = ((b0 - bn.moving_mean.numpy()) * s + beta).astype(np.float32)
        w = quantizers.quantize_weight_np(w, self._channel_axes, self.weight_bits)
        if b is not None and b.size > 1 and np.ptp(b) == 0 and b.flat[0] != 0:
            # The converter quantizes a bias whose values are all equal (a splat
            # constant) with the first channel's scale only (measured, TF 2.21):
            # make them differ by a few ulps, far below any int32 bias step.
            b = b + np.arange(b.size, dtype=np.float32).reshape(b.shape) * np.spacing(
                np.abs(b.flat[0]), dtype=np.float32)
        return w, b

    def stripped(self) -> keras.layers.Layer:
        kernel, bias = self.folded_weights()
        base = self.base_layer
        config = base.get_config()
        if self.activation is not None:
            config["activation"] = self.activation
        if bias is not None and "use_bias" in config:
            config["use_bias"] = True
        plain = base.__class__.from_config(config)
        plain.build_from_config(base.get_build_config())
        layouts = registry.kernels(base)
        if len(layouts) > 1 or registry.is_registered(base):
            # A registered custom layer: every weight as trained, the kernels
            # on their int grids.
            plain.set_weights(self.inner_stripped().get_weights())
            for k, axes in zip(layouts[1:], self._more_axes):
                var = prunable.variable(plain, k.attr)
                var.assign(quantizers.quantize_weight_np(
                    np.asarray(var.numpy(), np.float32), axes, self.weight_bits))
        prunable.variable(plain, layouts[0].attr).assign(kernel)
        if bias is not None:
            prunable.variable(plain, layouts[0].bias).assign(bias)
        if hasattr(plain, "stripped"):  # attention with inner quantizers: their ranges fixed
            return plain.stripped()
        if self.weight_bits < 8:
            # The converter must see the bit width to pack the kernel (INT4).
            storage = None
            if not packable(base):
                storage = 8
                warnings.warn(
                    f"Layer '{base.name}' ({type(base).__name__}): TFLite's "
                    f"TRANSPOSE_CONV takes no INT4 weights, so its {self.weight_bits}-bit "
                    "values are stored as int8 (exactly: every 4-bit level is an int8 "
                    "value). The flatbuffer keeps 8 bits per weight there; TFLite-Micro's "
                    "look-up-table compression can still shrink it.", stacklevel=2)
            low = QuantizedKernel(plain, self.weight_bits, self._channel_axes,
                                  storage_bits=storage)
            low.build(base.get_build_config()["input_shape"])
            return low
        return plain

    # ----------------------------------------------------------------- config
    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            batchnorm=None if self.batchnorm is None
            else keras.saving.serialize_keras_object(self.batchnorm),
            activation=self.activation,
            weight_bits=self.weight_bits,
            per_tensor=self.per_tensor,
        )
        return config


def _check_foldable(base: keras.layers.Layer, bn: keras.layers.Layer) -> None:
    if not isinstance(bn, keras.layers.BatchNormalization):
        raise ValueError(f"`batchnorm` must be a BatchNormalization layer; received {bn!r}.")
    if activation_name(base) != "linear":
        raise ValueError(
            f"BatchNormalization '{bn.name}' cannot be folded into '{base.name}', "
            f"which applies activation '{activation_name(base)}' before it. Use a "
            "linear layer followed by BatchNormalization and the activation."
        )
    if getattr(bn, "renorm", False) or getattr(bn, "synchronized", False):
        raise ValueError(
            f"BatchNormalization '{bn.name}' uses renorm/synchronized statistics, "
            "which QAT folding does not reproduce; use a plain BatchNormalization."
        )
