"""`predict(tfl, x)`: run a converted model on a batch of float samples.

Inputs are quantized with the model's own input scale (for int8/uint8 I/O),
fed one sample at a time (TFLite models here have a batch of 1), and outputs
are dequantized, so float, int8 and TFLite-Micro results compare directly with
`keras_model.predict(x)`.

Example:

```python
import keras
import numpy as np
import tflite_export

model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
tfl = tflite_export.convert(model, mode="float32")
y = tflite_export.predict(tfl, np.ones((3, 4), "float32"))   # shape (3, 2)
```
"""

from __future__ import annotations

import numpy as np

from tflite_export import micro as micro_lib
from tflite_export.model import TFLiteModel

__all__ = ["predict", "RUNTIMES"]

RUNTIMES = ("litert", "litert-reference", "micro")


def predict(
    tfl: TFLiteModel,
    x: np.ndarray,
    runtime: str = "litert",
    *,
    arena_size: int | None = None,
    num_threads: int = 1,
) -> np.ndarray:
    """Outputs of `tfl` (first output, dequantized) for every sample of `x`.

    Args:
        tfl: the converted model.
        x: float samples, batch on axis 0, each shaped like the model input.
        runtime: "litert" (LiteRT with its default XNNPACK delegate),
            "litert-reference" (LiteRT's reference kernels, the bit-exactness
            baseline TFLite-Micro is tested against) or "micro" (the
            TFLite-Micro Python interpreter).
        arena_size: TFLite-Micro arena bytes; default: the smallest that works
            (`find_arena_size`).
        num_threads: LiteRT threads.
    """
    if not isinstance(tfl, TFLiteModel):
        raise ValueError(f"`tfl` must be a TFLiteModel; received {type(tfl).__name__}.")
    if runtime not in RUNTIMES:
        raise ValueError(f"`runtime` must be one of {RUNTIMES}; received {runtime!r}.")
    x = np.asarray(x)
    want = tuple(tfl.inputs[0].shape[1:])
    if x.ndim == 0 or tuple(x.shape[1:]) != want:
        raise ValueError(
            f"`x` must hold samples shaped {want} on axis 0 (model input "
            f"'{tfl.inputs[0].name}'); received an array of shape {x.shape}."
        )
    results = []
    if runtime == "micro":
        interpreter = micro_lib.micro_interpreter(
            tfl.content, arena_size or micro_lib.find_arena_size(tfl)
        )
        for sample in x:
            interpreter.set_input(tfl.quantize_input(sample[None]), 0)
            interpreter.invoke()
            results.append(tfl.dequantize_output(interpreter.get_output(0))[0])
        return np.stack(results) if results else np.zeros((0,))
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = (
        OpResolverType.BUILTIN_REF if runtime == "litert-reference" else OpResolverType.AUTO
    )
    interpreter = Interpreter(
        model_content=tfl.content,
        num_threads=num_threads,
        experimental_op_resolver_type=resolver,
    )
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    for sample in x:
        interpreter.set_tensor(inp["index"], tfl.quantize_input(sample[None]))
        interpreter.invoke()
        results.append(tfl.dequantize_output(interpreter.get_tensor(out["index"]))[0])
    return np.stack(results) if results else np.zeros((0,))
