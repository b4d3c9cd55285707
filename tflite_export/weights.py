"""Weight-only and dynamic-range quantization of a float `.tflite` for LiteRT,
with 8-, 4- or 2-bit weights per channel or in blocks: the route for
weight-heavy transformers on phones, where the weights dominate the file and
the memory traffic. Built on ai-edge-quantizer's recipes (which own this
transformation for LiteRT), not written here.

Example:

```python
import keras
import tflite_export

model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(256),
                          keras.layers.Dense(10)])
float_model = tflite_export.convert(model, mode="float32")
small = tflite_export.quantize_weights(float_model, bits=4, block_size=32)
small.size < float_model.size / 5     # True
```
"""

from __future__ import annotations

import contextlib
import io

from tflite_export.model import TFLiteModel

__all__ = ["quantize_weights"]

_BITS = (8, 4, 2)
_BLOCKS = (None, 32, 64)


def _recipe_name(bits: int, block_size: int | None, activations: str) -> str:
    if activations == "float":
        return f"weight_only_wi{bits}_afp32"
    granularity = "c" if block_size is None else f"b{block_size}"
    return f"dynamic_wi{bits}{granularity}_afp32"


def quantize_weights(tfl: TFLiteModel, bits: int = 4, block_size: int | None = 32,
                     activations: str = "dynamic") -> TFLiteModel:
    """Quantize the weights of a float32 model (`convert(model, "float32")`)
    for LiteRT.

    Args:
        tfl: a float32 TFLiteModel.
        bits: weight bits: 8, 4 or 2.
        block_size: weights share a scale in blocks of 32 or 64 along the
            input axis, or per output channel (None).
        activations: "dynamic" (LiteRT quantizes activations on the fly and
            computes in integers) or "float" (weights dequantized before
            float kernels; per channel only).

    Raises:
        ValueError: bad arguments (named), a model that is not float32, or
            ai-edge-quantizer missing (`pip install keras-compress[litert]`).
    """
    if not isinstance(tfl, TFLiteModel):
        raise ValueError(f"`tfl` must be a TFLiteModel; received {type(tfl).__name__}.")
    if bits not in _BITS:
        raise ValueError(f"`bits` must be one of {_BITS}; received {bits!r}.")
    if block_size not in _BLOCKS:
        raise ValueError(f"`block_size` must be one of {_BLOCKS}; received {block_size!r}.")
    if activations not in ("dynamic", "float"):
        raise ValueError(f"`activations` must be 'dynamic' or 'float'; received {activations!r}.")
    if activations == "float" and (block_size is not None or bits == 2):
        raise ValueError("activations='float' (weight-only) takes 8- or 4-bit weights per "
                         "channel: pass block_size=None.")
    if tfl.mode not in (None, "float32") or not any(t.is_float and t.is_constant
                                                    for t in tfl.tensors):
        raise ValueError(f"`tfl` must be a float32 model (mode {tfl.mode!r}): convert the "
                         "Keras model with mode='float32' first.")
    try:
        from ai_edge_quantizer import quantizer, recipe
    except ImportError:
        raise ValueError("quantize_weights needs ai-edge-quantizer: "
                         "pip install keras-compress[litert].") from None
    name = _recipe_name(bits, block_size, activations)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        result = quantizer.Quantizer(tfl.content, getattr(recipe, name)()).quantize()
    return TFLiteModel(bytes(result.quantized_model),
                       mode="dynamic" if activations == "dynamic" else "weight_only")
