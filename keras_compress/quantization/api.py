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

from typing import Any

import keras

from keras_compress import model_walk
from keras_compress.model_walk import LayerSelector, selector
from keras_compress.quantization import preserve as preserve_lib
from keras_compress.quantization.activations import ActivationQuantizer
from keras_compress.quantization.planner import Options
from keras_compress.quantization.rewrite import Rewriter
from keras_compress.quantization.wrapper import QuantizeWrapper

__all__ = ["quantize"]


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
    options = Options(
        weight_bits=weight_bits,
        activation_bits=activation_bits,
        momentum=momentum,
        fold_batchnorm=fold_batchnorm,
        skip=selector(skip, "skip", names),
        per_tensor_dense=per_tensor_dense,
    )
    problems: list[str] = []
    result = Rewriter(model, options, problems, quantize_inputs=True).build()
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
