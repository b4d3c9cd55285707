"""`convert` with integer (token) inputs, dict inputs as KerasHub models take
them, and conversions that crash the converter (run in a child process)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

import tflite_export
from conftest import compile_classifier
from tflite_export.representative import InputSpec, samples

L = keras.layers


def _tokens(images: np.ndarray) -> np.ndarray:
    """Token ids built from real images (no text corpus is offline here): each
    8x8 digit becomes 16 tokens, one per 2x2 patch, its mean intensity in 32 levels."""
    patches = images[..., 0].reshape(len(images), 4, 2, 4, 2).mean(axis=(2, 4))
    return np.clip((patches * 32).astype("int32"), 0, 31).reshape(len(images), 16)


@pytest.fixture(scope="module")
def token_model(digits_split):
    """A KerasHub-style token classifier: dict inputs {"token_ids", "segment_ids"},
    int32 ids, token + position-like segment embeddings."""
    (x, y), (xt, yt) = digits_split
    keras.utils.set_random_seed(4)
    ids = keras.Input((16,), dtype="int32", name="token_ids")
    segments = keras.Input((16,), dtype="int32", name="segment_ids")
    h = L.Embedding(32, 24, name="token_embedding")(ids) + L.Embedding(
        4, 24, name="segment_embedding")(segments)
    h = L.Dense(32, activation="relu")(L.Flatten()(h))
    model = compile_classifier(keras.Model({"token_ids": ids, "segment_ids": segments},
                                           L.Dense(10)(h)))

    def inputs(images):
        tokens = _tokens(images)
        return {"token_ids": tokens,
                "segment_ids": np.tile(np.repeat(np.arange(4, dtype="int32"), 4), (len(tokens), 1))}

    model.fit(inputs(x), y, epochs=12, batch_size=32, verbose=0)
    return model, inputs(x), inputs(xt), yt


def _litert_predict(tfl, data: dict) -> np.ndarray:
    runner = Interpreter(model_content=tfl.content).get_signature_runner()
    out = []
    for i in range(len(next(iter(data.values())))):
        result = runner(**{k: v[i:i + 1] for k, v in data.items()})
        out.append(next(iter(result.values())))
    return np.concatenate(out)


def test_token_model_with_dict_inputs_converts_fully_int8(token_model):
    model, train, test, yt = token_model
    float_acc = np.mean(model.predict(test, verbose=0).argmax(-1) == yt)
    assert float_acc > 0.8
    tfl = tflite_export.convert(model, mode="int8", representative_data=train)
    assert tfl.is_fully_integer and "GATHER" in tfl.ops
    assert {t.dtype for t in tfl.inputs} == {"INT32"}          # ids stay integers
    int8_acc = np.mean(_litert_predict(tfl, test).argmax(-1) == yt)
    assert int8_acc >= float_acc - 0.02, (int8_acc, float_acc)
    # The same calibration given as an iterable of dict samples.
    rows = ({k: v[i] for k, v in train.items()} for i in range(100))
    again = tflite_export.convert(model, mode="int8", representative_data=rows)
    assert again.is_fully_integer


def test_representative_data_keeps_dtypes_and_names_wrong_keys():
    specs = [InputSpec("token_ids", (1, 4), "int32"), InputSpec("mask", (1, 4), "bool")]
    rows = samples({"token_ids": np.arange(8).reshape(2, 4), "mask": np.ones((2, 4), bool)},
                   specs, max_samples=5)
    assert len(rows) == 2 and rows[1][0].dtype == np.int32 and rows[1][1].dtype == np.bool_
    np.testing.assert_array_equal(rows[1][0], [[4, 5, 6, 7]])
    with pytest.raises(ValueError, match=r"missing \['mask'\]"):
        samples({"token_ids": np.zeros((2, 4))}, specs, 5)
    with pytest.raises(ValueError, match="takes int32 values .* fractions"):
        samples([np.full((2, 4), 0.5), np.ones((2, 4), bool)], specs, 5)


def test_the_traced_route_gives_the_saved_model_routes_file(digits_split):
    """`convert` traces a Keras model once and freezes its variables; the
    SavedModel route (taken for isolate=True) is the reference. On a model
    with two inputs whose names sort against their order, and dict outputs,
    both give the same signature, inputs (in the model's order), ops and int8
    outputs."""
    (x, y), (xt, _) = digits_split
    top, bottom = keras.Input((4, 8, 1), name="top"), keras.Input((4, 8, 1), name="bottom")
    h = L.Concatenate(axis=1)([top, bottom])
    h = L.Conv2D(8, 3, padding="same", activation="relu")(h)
    logits = L.Dense(10, name="logits")(L.Flatten()(h))
    compile_classifier(keras.Model([top, bottom], logits)).fit(
        [x[:, :4], x[:, 4:]], y, epochs=3, batch_size=32, verbose=0)
    model = keras.Model([top, bottom], {"logits": logits, "probs": L.Softmax()(logits)})
    calibration = [x[:100, :4], x[:100, 4:]]  # a list, in the model's input order
    traced = tflite_export.convert(model, mode="int8", representative_data=calibration)
    reference = tflite_export.convert(model, mode="int8", representative_data=calibration,
                                      isolate=True)
    signature = {"serving_default": {"inputs": ["bottom", "top"], "outputs": ["logits", "probs"]}}
    for tfl in (traced, reference):
        assert Interpreter(model_content=tfl.content).get_signature_list() == signature
        assert [t.name.split(":")[0] for t in tfl.inputs] == ["serving_default_top",
                                                              "serving_default_bottom"]
    assert traced.op_counts == reference.op_counts and traced.is_fully_integer
    data = {"top": xt[:50, :4], "bottom": xt[:50, 4:]}
    for a, b in zip(_litert_outputs(traced, data), _litert_outputs(reference, data)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(
        tflite_export.predict(traced, data), tflite_export.predict(reference, data))


def test_what_the_traced_route_fails_on_goes_through_a_saved_model():
    """A lookup table has no TFLite builtin: the traced route's error would
    name a leftover Placeholder; the SavedModel route, tried next, names the
    table op."""
    ids = keras.Input((4,), dtype="int64", name="ids")
    codes = L.IntegerLookup(vocabulary=[3, 5, 7, 9])(ids)
    model = keras.Model(ids, L.Dense(2)(L.Embedding(6, 3)(codes)))
    with pytest.raises(tflite_export.ConversionError, match="HashTableV2"):
        tflite_export.convert(model, mode="float32")


def _litert_outputs(tfl, data: dict) -> list[np.ndarray]:
    """Every output of the default signature, by output name, sample by sample."""
    runner = Interpreter(model_content=tfl.content).get_signature_runner()
    rows = [runner(**{k: tfl.quantize_input(v[i:i + 1], j)
                      for j, (k, v) in enumerate(data.items())})
            for i in range(len(next(iter(data.values()))))]
    return [np.concatenate([row[name] for row in rows]) for name in sorted(rows[0])]


def test_a_converter_crash_does_not_take_the_caller_down(digits_split):
    """Full-int8 calibration of a Keras 3 LSTM segfaults the TFLite converter;
    it runs in a child process and becomes an error naming the layer."""
    (x, y), _ = digits_split
    model = keras.Sequential([keras.Input((8, 8)), L.LSTM(8, name="rows_lstm"), L.Dense(10)])
    with pytest.raises(tflite_export.ConversionError,
                       match=r"crashed \(SIG\w+\).*unaffected.*'rows_lstm' \(LSTM\)"):
        tflite_export.convert(model, mode="int8", representative_data=x[:20, ..., 0])
    # This process carries on, converting the same model another way.
    assert tflite_export.convert(model, mode="dynamic").size > 0


def test_token_model_runs_in_tflite_micro_once_the_index_guard_is_dropped(token_model):
    model, train, test, yt = token_model
    tfl = tflite_export.convert(model, mode="int8", representative_data=train)
    assert "SELECT" in tfl.ops or "SELECT_V2" in tfl.ops
    with pytest.raises(ValueError, match=r"drop_index_guards"):
        tflite_export.export_micro(tfl, "unused")
    lean = tflite_export.drop_index_guards(tfl)
    assert not {"LESS", "SELECT", "SELECT_V2"} & set(lean.ops) and "GATHER" in lean.ops
    assert lean.is_fully_integer and lean.size < tfl.size
    litert = tfl.dequantize_output(_litert_predict(tfl, test))
    # `predict` takes the dict too, on either runtime.
    np.testing.assert_array_equal(tflite_export.predict(tfl, test, "litert"), litert)
    device = tflite_export.predict(lean, test, "micro")
    # Same int8 logits up to one step; the argmax almost everywhere.
    step = tfl.outputs[0].scale[0]
    assert np.abs(device - litert).max() <= step * 1.001
    assert np.mean(device.argmax(-1) == litert.argmax(-1)) >= 0.99
    with pytest.raises(ValueError, match="none \\(or several\\) match model input"):
        tflite_export.predict(tfl, {"ids": test["token_ids"], "segment_ids": test["segment_ids"]})


def test_child_processes_import_the_parents_tflite_export(tmp_path):
    """The converter, probe and decode-check children run `python -m
    tflite_export._...`: they must import the tflite_export their parent
    imported, even where another one is installed (here: a copy of the
    package, found by the parent only)."""
    copy = tmp_path / "elsewhere" / "tflite_export"
    shutil.copytree(Path(tflite_export.__file__).parent, copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    spec = importlib.util.spec_from_file_location("copied_child", copy / "_child.py")
    child = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(child)
    done = subprocess.run([sys.executable, "-c", "import tflite_export; print(tflite_export.__file__)"],
                          env=child.env(), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert Path(done.stdout.strip()) == copy / "__init__.py"
