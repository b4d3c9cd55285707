"""`slim`: identical constant tensors merged and inner names dropped; the
model computes bit for bit the same in LiteRT and TFLite-Micro."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_compress as kc
import tflite_export
from conftest import compile_classifier


@pytest.fixture(scope="module")
def gru_int8(mnist_split):
    (x, y), (xt, _) = mnist_split
    keras.utils.set_random_seed(6)
    model = compile_classifier(kc.sequence_models.recurrent("gru", units=16))
    model.fit(x[:1024], y[:1024], batch_size=64, epochs=1, verbose=0)
    return tflite_export.convert(kc.deploy(model), "int8", representative_data=x[:100]), xt[:64]


def test_unrolled_gru_shares_its_weight_tensors(gru_int8):
    tfl, xt = gru_int8
    small = tflite_export.slim(tfl)
    assert small.size <= 0.75 * tfl.size, (small.size, tfl.size)
    weights = {op: [] for op in ("FULLY_CONNECTED",)}
    for op, inputs, _ in small.operators:
        if op in weights:
            weights[op].append(inputs[1].index)
    assert len(set(weights["FULLY_CONNECTED"])) <= 3   # input, recurrent kernel, head
    assert len(weights["FULLY_CONNECTED"]) > 50        # used by every unrolled step
    for runtime in ("litert-reference", "micro"):
        np.testing.assert_array_equal(tflite_export.predict(small, xt, runtime),
                                      tflite_export.predict(tfl, xt, runtime))
    assert [t.name for t in small.inputs] == [t.name for t in tfl.inputs]
    assert all(t.name == "" for t in small.tensors if t not in small.inputs + small.outputs)
    assert tflite_export.find_arena_size(small) <= tflite_export.find_arena_size(tfl)


def test_slim_keeps_named_signatures_and_refuses_other_input(digits_split):
    (x, y), (xt, _) = digits_split
    ids = keras.Input((8,), dtype="int32", name="token_ids")
    h = keras.layers.Flatten()(keras.layers.Embedding(17, 4)(ids))
    model = keras.Model({"token_ids": ids}, keras.layers.Dense(10)(h))
    tokens = np.round(x[:64, 0, :, 0] * 16).astype("int32")
    tfl = tflite_export.convert(model, "int8", representative_data={"token_ids": tokens})
    small = tflite_export.slim(tfl)
    np.testing.assert_array_equal(tflite_export.predict(small, {"token_ids": tokens}),
                                  tflite_export.predict(tfl, {"token_ids": tokens}))
    assert small.signatures == tfl.signatures
    with pytest.raises(ValueError, match="must be a TFLiteModel"):
        tflite_export.slim(tfl.content)
