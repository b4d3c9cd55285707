"""`strip(model)`: remove every keras-compress wrapper, baking its effect in.

The result is a plain Keras model whose kernels hold what the wrappers
computed (pruned zeros, shared values, folded BatchNormalization, weights on
their int grids), ready for `model.save`, `tflite_export.convert` or any
other tool. A pruned or clustered model keeps its layer names and types; a
QAT model keeps the layers QAT rewrote (a SeparableConv split in two, a
Rescaling as a 1x1 depthwise convolution, 4-bit kernels as `QuantizedKernel`)
and loses its activation quantizers. Stripping an already plain model
returns a weight-equal copy, so `strip` is idempotent.

Example:

```python
import keras
import keras_compress as kc

model = kc.prune(keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)]))
plain = kc.strip(model)
[type(layer).__name__ for layer in plain.layers]   # ['Dense']
```
"""

from __future__ import annotations

import keras

from keras_compress import graph, model_walk
from keras_compress._wrapper_base import CompressionWrapper
from keras_compress.distillation.distiller import Distiller
from keras_compress.quantization.activations import ActivationQuantizer
from keras_compress.quantization.inner import QuantizedLayerNormalization
from keras_compress.quantization.wrapper import QuantizeWrapper

__all__ = ["strip"]


def strip(model: keras.layers.Layer, shrink: bool = False,
          target: str | None = None) -> keras.layers.Layer:
    """Return a plain copy of `model` (or of a single wrapped layer) with all
    training wrappers removed and their effect baked into the weights: pruning
    masks applied, BatchNormalization folded into the preceding kernel, QAT
    kernels moved onto their int8 grid, and activation quantizers replaced by
    fixed-range `FakeQuant` layers the TFLite converter reads.

    A `Distiller` strips to its student alone. With `shrink=True` the
    channels that channel pruning removed are then taken out for real
    (`keras_compress.shrink`): the common end of `prune(structure="channel")`,
    also after QAT in the same fit.

    `target` ("litert" or "micro") rewrites layers into the forms that
    runtime's int8 kernels run (`keras_compress.deploy`: LayerNormalization
    decomposed, LSTM fused, GRU unrolled, GELU approximated for "micro"). A
    model with QAT wrappers gets the "litert" forms when `target` is None.

    Raises:
        ValueError: for a subclassed model, whose graph cannot be rebuilt; strip
            its wrapped layers one by one with `strip(layer)` instead.
    """
    if isinstance(model, (CompressionWrapper, ActivationQuantizer)):
        return model.stripped()
    if isinstance(model, Distiller):
        return strip(model.student, shrink=shrink, target=target)
    if not model_walk.is_model(model):
        return model_walk.copy_layer(model)
    if target is None and any(isinstance(layer, (QuantizeWrapper, ActivationQuantizer,
                                                 QuantizedLayerNormalization))
                              for layer in model_walk.iter_layers(model)):
        target = "litert"
    plain = graph.rebuild(model, _strip_layer)
    if shrink:
        from keras_compress.shrink import shrink as shrink_model

        plain = shrink_model(plain)
    if target is not None:
        from keras_compress.deploy import deploy

        plain = deploy(plain, target)
    return plain


def _strip_layer(layer: keras.layers.Layer) -> keras.layers.Layer | None:
    if isinstance(layer, (CompressionWrapper, ActivationQuantizer, QuantizedLayerNormalization)):
        return layer.stripped()
    return None
