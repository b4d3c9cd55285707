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

from tflite_export import micro_run as micro_lib
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
        x: samples, batch on axis 0, each shaped like the model input (float
            data is quantized; integer ids pass as they are); for several
            inputs a list of arrays or a dict by input name.
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
    arrays = _by_input(tfl, x)
    count = len(arrays[0])
    results = []
    if runtime == "micro":
        interpreter = micro_lib.micro_interpreter(
            tfl.content, arena_size or micro_lib.find_arena_size(tfl)
        )
        for i in range(count):
            if tfl.has_state and i:
                interpreter.reset()  # each sample is a sequence of its own
            for j, a in enumerate(arrays):
                interpreter.set_input(tfl.quantize_input(a[i:i + 1], j), j)
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
    inputs, out = interpreter.get_input_details(), interpreter.get_output_details()[0]
    for i in range(count):
        if tfl.has_state and i:
            interpreter.reset_all_variables()  # each sample is a sequence of its own
        for j, (detail, a) in enumerate(zip(inputs, arrays)):
            interpreter.set_tensor(detail["index"], tfl.quantize_input(a[i:i + 1], j))
        interpreter.invoke()
        results.append(tfl.dequantize_output(interpreter.get_tensor(out["index"]))[0])
    return np.stack(results) if results else np.zeros((0,))


def _input_name(info) -> str:
    """'serving_default_token_ids:0' -> 'serving_default_token_ids'."""
    return info.name.split(":")[0]


def _by_input(tfl: TFLiteModel, x) -> list[np.ndarray]:
    """`x` as one array per model input, in the model's input order: an array
    (one input), a list of arrays, or a dict keyed by input name (the Keras
    input name, or the TFLite tensor name)."""
    infos = tfl.inputs
    if isinstance(x, dict):
        arrays = []
        for info in infos:
            name = _input_name(info)
            keys = [k for k in x if k == name or k == info.name] or \
                [k for k in x if name.endswith(f"_{k}")]
            if len(keys) != 1:
                raise ValueError(f"`x` has keys {sorted(x)}; none (or several) match model "
                                 f"input '{info.name}'. Keys are the model's input names.")
            arrays.append(np.asarray(x[keys[0]]))
        if len(x) != len(infos):
            raise ValueError(f"`x` has keys {sorted(x)}, but the model has {len(infos)} "
                             "input(s).")
    elif isinstance(x, (list, tuple)):
        arrays = [np.asarray(a) for a in x]
        if len(arrays) != len(infos):
            raise ValueError(f"`x` holds {len(arrays)} arrays, but the model has "
                             f"{len(infos)} input(s).")
    else:
        arrays = [np.asarray(x)]
        if len(infos) != 1:
            raise ValueError(f"The model has {len(infos)} inputs: give `x` as a list of arrays "
                             "or a dict by input name.")
    for info, a in zip(infos, arrays):
        want = tuple(info.shape[1:])
        if a.ndim == 0 or tuple(a.shape[1:]) != want:
            raise ValueError(
                f"`x` must hold samples shaped {want} on axis 0 (model input "
                f"'{info.name}'); received an array of shape {a.shape}.")
    if len({len(a) for a in arrays}) != 1:
        raise ValueError(f"`x`: every input needs the same number of samples; received "
                         f"{[len(a) for a in arrays]}.")
    return arrays
