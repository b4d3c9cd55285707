"""The post-training tools a user would pick instead of keras-compress, run on
the same float weights as the suite's other rows.

- Keras 3's own `model.quantize("int8" | "int4")` then
  `model.export(format="litert")`: Keras' quantization is post-training,
  weight-only for Dense/EinsumDense/Embedding (convolutions stay float), and
  the export goes through the TFLite converter.
- ai-edge-quantizer (LiteRT's own post-training quantizer) on the float
  `.tflite`, with its named recipes: `static_wi8_ai8` (full int8),
  `static_wi8_ai16` (int8 weights, int16 activations), `dynamic_wi4_afp32`
  and `weight_only_wi4_afp32` (4-bit weights, float activations).

A tool that fails on a model gives a row-less note with its error's first
line instead of an artifact.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

KERAS_MODES = ("int8", "int4")
AEQ_RECIPES = ("static_wi8_ai8", "static_wi8_ai16", "dynamic_wi4_afp32",
               "weight_only_wi4_afp32")
LABELS = [f"Keras {m}" for m in KERAS_MODES] + [f"AEQ {r}" for r in AEQ_RECIPES]


def _first_line(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    for line in text.splitlines():  # the converter's first "error:" line says most
        if "error:" in line:
            return f"{type(exc).__name__}: {line.split('error:', 1)[1].strip()[:300]}"
    return f"{type(exc).__name__}: {text.splitlines()[0][:300]}"


def keras_quantized(make_model: Callable, weights, mode: str, x_test):
    """Keras' own route: a fresh model with `weights`, `quantize(mode)`,
    `export(format="litert")`. Returns (TFLiteModel, seconds, the quantized
    Keras model's predictions on `x_test`), or raises what Keras raised."""
    import os
    import tempfile

    import tflite_export

    model = make_model()
    model.set_weights(weights)
    began = time.perf_counter()
    with warnings.catch_warnings():  # "Layer Conv2D does not have a `quantize` method"
        warnings.simplefilter("ignore")
        model.quantize(mode)
    predictions = model.predict(x_test, verbose=0)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.tflite")
        model.export(path, format="litert", verbose=False)
        tfl = tflite_export.TFLiteModel.load(path)
    return tfl, time.perf_counter() - began, predictions


def aeq_quantized(float_tfl, recipe_name: str, calibration):
    """ai-edge-quantizer's `recipe_name` applied to the float `.tflite`,
    calibrated on `calibration` (samples, batch on axis 0) when the recipe
    needs it. Returns (TFLiteModel, seconds)."""
    import contextlib
    import io

    from ai_edge_quantizer import quantizer, recipe

    import tflite_export

    began = time.perf_counter()
    q = quantizer.Quantizer(bytearray(float_tfl.content))
    q.load_quantization_recipe(getattr(recipe, recipe_name)())
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        result = None
        if q.need_calibration:
            signature = float_tfl.signatures[0]
            name = float_tfl.signature_io[signature]["inputs"][0]
            result = q.calibrate({signature: [{name: calibration[i:i + 1]}
                                              for i in range(len(calibration))]})
        quantized = q.quantize(result, enable_progress_bar=False).quantized_model
    return tflite_export.TFLiteModel(bytes(quantized)), time.perf_counter() - began


def artifacts(make_model: Callable, weights, float_tfl, calibration, x_test, y_test,
              progress: Callable[[str], None] = print):
    """Every other tool's artifact of one float model: `{label: (tfl, seconds,
    Keras accuracy or None)}`, and `{label: why it has none}`."""
    import numpy as np

    out, failed = {}, {}
    for mode in KERAS_MODES:
        label = f"Keras {mode}"
        progress(f"   ({label}: model.quantize + model.export(format='litert'))")
        try:
            tfl, seconds, predictions = keras_quantized(make_model, weights, mode, x_test)
            out[label] = (tfl, seconds, float(np.mean(np.argmax(predictions, 1) == y_test)))
        except Exception as exc:  # noqa: BLE001 - a peer's failure is a finding
            failed[label] = _first_line(exc)
    for name in AEQ_RECIPES:
        label = f"AEQ {name}"
        progress(f"   ({label})")
        try:
            tfl, seconds = aeq_quantized(float_tfl, name, calibration)
            out[label] = (tfl, seconds, None)
        except Exception as exc:  # noqa: BLE001
            failed[label] = _first_line(exc)
    return out, failed


def raw_int16_accuracy(tfl, x_test, y_test) -> float:
    """Accuracy of a 16x8 model fed its float inputs cast to int16 without
    quantizing them (the mistake that makes `static_wi8_ai16` look broken):
    the [0, 1] pixels all become 0 or 1."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=tfl.content)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    hits = 0
    for x, y in zip(x_test, y_test):
        interpreter.set_tensor(inp["index"], x[None].astype(inp["dtype"]))
        interpreter.invoke()
        hits += int(np.argmax(interpreter.get_tensor(out["index"])[0]) == y)
    return hits / len(y_test)
