"""`quantize_weights`: weight-only and dynamic int8/int4 for LiteRT through
ai-edge-quantizer, on a trained model and real digits."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import tflite_export
from conftest import compile_classifier


@pytest.fixture(scope="module")
def float_model(digits_split):
    (x, y), (xt, yt) = digits_split
    keras.utils.set_random_seed(5)
    model = compile_classifier(keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(256, activation="relu"),
        keras.layers.Dense(256, activation="relu"), keras.layers.Dense(10)]))
    model.fit(x, y, batch_size=64, epochs=15, verbose=0)
    return tflite_export.convert(model, "float32"), xt, yt


@pytest.mark.parametrize("bits, block, activations, max_ratio", [
    (8, None, "dynamic", 0.3), (4, None, "dynamic", 0.2), (4, 32, "dynamic", 0.2),
    (4, None, "float", 0.2)])
def test_weights_shrink_and_accuracy_holds(float_model, bits, block, activations, max_ratio):
    tfl, xt, yt = float_model
    small = tflite_export.quantize_weights(tfl, bits=bits, block_size=block,
                                           activations=activations)
    assert small.size <= max_ratio * tfl.size, (small.size, tfl.size)
    # Stored weights: a FULLY_CONNECTED's constant operand, or what a
    # DEQUANTIZE feeding it reads (weight-only).
    kernels = [inputs[1] if op == "FULLY_CONNECTED" else inputs[0]
               for op, inputs, _ in small.operators if op in ("FULLY_CONNECTED", "DEQUANTIZE")]
    kernels = [t for t in kernels if t.is_constant]
    assert kernels and all(t.dtype == ("INT8" if bits == 8 else "INT4") for t in kernels)
    accuracy = np.mean(tflite_export.predict(small, xt).argmax(-1) == yt)
    reference = np.mean(tflite_export.predict(tfl, xt).argmax(-1) == yt)
    assert accuracy >= reference - 0.02, (accuracy, reference)


@pytest.mark.parametrize("kwargs, match", [
    (dict(bits=3), "`bits` must be one of"),
    (dict(block_size=16), "`block_size` must be one of"),
    (dict(activations="int8"), "`activations` must be"),
    (dict(activations="float", block_size=32), "per channel only|block_size=None"),
])
def test_bad_arguments_are_named(float_model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        tflite_export.quantize_weights(float_model[0], **kwargs)


def test_an_integer_model_is_refused(float_model, digits_split):
    (x, _), _ = digits_split
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(10)])
    int8 = tflite_export.convert(model, "int8", representative_data=x[:50])
    with pytest.raises(ValueError, match="must be a float32 model"):
        tflite_export.quantize_weights(int8)
