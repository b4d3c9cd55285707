"""tflite_export.convert on real data: int8 kernels end to end, parity with Keras in
LiteRT, zeros kept, every mode, and clear errors for bad input."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

import keras_compress as kc
import tflite_export
from conftest import compile_classifier


@pytest.fixture(scope="module")
def trained_cnn(digits_split):
    keras.utils.set_random_seed(5)
    (x, y), _ = digits_split
    inputs = keras.Input((8, 8, 1), name="image")
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    h = keras.layers.MaxPooling2D(2, name="pool")(h)
    h = keras.layers.Reshape((4 * 4 * 16,), name="flatten")(h)
    h = keras.layers.Dense(32, activation="relu", name="fc1")(h)
    outputs = keras.layers.Dense(10, name="logits")(h)
    model = compile_classifier(keras.Model(inputs, outputs))
    model.fit(x, y, batch_size=32, epochs=8, verbose=0)
    return model


def litert_predict(tfl: tflite_export.TFLiteModel, images: np.ndarray) -> np.ndarray:
    interpreter = Interpreter(model_content=tfl.content)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    results = []
    for image in images:
        interpreter.set_tensor(inp["index"], tfl.quantize_input(image[None]))
        interpreter.invoke()
        results.append(tfl.dequantize_output(interpreter.get_tensor(out["index"]))[0])
    return np.stack(results)


def test_int8_is_integer_end_to_end_and_matches_keras_accuracy(trained_cnn, digits_split):
    (x, _), (xt, yt) = digits_split
    tfl = tflite_export.convert(trained_cnn, mode="int8", representative_data=x[:200])
    assert tfl.is_fully_integer
    assert {t.dtype for t in tfl.tensors} <= {"INT8", "INT32"}
    assert tfl.ops == ["CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED"]
    assert "QUANTIZE" not in tfl.ops and "DEQUANTIZE" not in tfl.ops
    assert tfl.inputs[0].dtype == tfl.outputs[0].dtype == "INT8"
    assert tfl.inputs[0].shape == (1, 8, 8, 1) and tfl.inputs[0].scale
    conv_weights = next(t for t in tfl.tensors if t.is_constant and len(t.shape) == 4)
    assert conv_weights.dtype == "INT8" and len(conv_weights.scale) == 16  # per channel
    keras_acc = np.mean(np.argmax(trained_cnn.predict(xt, verbose=0), 1) == yt)
    tflite_acc = np.mean(np.argmax(litert_predict(tfl, xt), 1) == yt)
    assert abs(tflite_acc - keras_acc) <= 0.01, (keras_acc, tflite_acc)


def test_float32_matches_keras_outputs(trained_cnn, digits_split):
    _, (xt, _) = digits_split
    tfl = tflite_export.convert(trained_cnn, mode="float32")
    assert not tfl.is_fully_integer and tfl.signatures == ["serving_default"]
    np.testing.assert_allclose(
        litert_predict(tfl, xt[:50]), trained_cnn.predict(xt[:50], verbose=0), atol=1e-4)


@pytest.mark.parametrize(
    "mode, kwargs, io, weight_type",
    [
        ("float16", {}, "FLOAT32", "FLOAT16"),
        ("dynamic", {}, "FLOAT32", "INT8"),
        ("int8", {"io_dtype": "uint8"}, "UINT8", "INT8"),
        ("int8", {"io_dtype": "float32"}, "FLOAT32", "INT8"),
        ("int16x8", {}, "INT16", "INT8"),
    ],
)
def test_every_mode(trained_cnn, digits_split, mode, kwargs, io, weight_type):
    (x, _), (xt, yt) = digits_split
    tfl = tflite_export.convert(trained_cnn, mode=mode, representative_data=x[:100], **kwargs)
    assert tfl.inputs[0].dtype == io and tfl.outputs[0].dtype == io
    # (the converter leaves weights under 1,024 values in float in 'dynamic' mode)
    fc = next(t for t in tfl.tensors if t.is_constant and t.shape == (32, 256))
    assert fc.dtype == weight_type
    acc = np.mean(np.argmax(litert_predict(tfl, xt), 1) == yt)
    keras_acc = np.mean(np.argmax(trained_cnn.predict(xt, verbose=0), 1) == yt)
    assert acc >= keras_acc - 0.02, (mode, acc, keras_acc)
    if mode == "int16x8":
        activations = [t for t in tfl.tensors if not t.is_constant]
        assert {t.dtype for t in activations} == {"INT16"}


def test_pruned_zeros_survive_int8_conversion(digits_split):
    (x, y), _ = digits_split
    model = compile_classifier(kc.prune(
        keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Reshape((64,)),
                          keras.layers.Dense(64, activation="relu", name="fc1"),
                          keras.layers.Dense(10, name="logits")]),
        schedule=kc.ConstantSparsity(0.75, 0)))
    model.fit(x, y, epochs=2, verbose=0, callbacks=[kc.PruningCallback()])
    plain = kc.strip(model)
    tfl = tflite_export.convert(plain, mode="int8", representative_data=x[:100])
    stored = sorted(int(np.count_nonzero(tfl.constant(t) == 0))
                    for t in tfl.tensors if t.is_constant and len(t.shape) == 2)
    assert stored == sorted(r.zeros for r in kc.sparsity(plain))


def test_files_in_and_out(trained_cnn, digits_split, tmp_path):
    (x, _), _ = digits_split
    trained_cnn.save(tmp_path / "m.keras")
    from_file = tflite_export.convert(tmp_path / "m.keras", mode="int8", representative_data=x[:50])
    trained_cnn.export(str(tmp_path / "saved"), format="tf_saved_model", verbose=False)
    from_saved = tflite_export.convert(tmp_path / "saved", mode="int8", representative_data=x[:50])
    assert from_file.is_fully_integer and from_saved.is_fully_integer
    path = from_file.save(tmp_path / "m.tflite")
    assert tflite_export.TFLiteModel.load(path).content == from_file.content
    assert not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(ValueError, match="already a TFLite model"):
        tflite_export.convert(path)
    with pytest.raises(FileNotFoundError, match="neither a .keras file nor a SavedModel"):
        tflite_export.convert(tmp_path / "nothing_here")


def test_save_refuses_bad_paths_and_leaves_nothing(trained_cnn, tmp_path):
    tfl = tflite_export.convert(trained_cnn, mode="float32")
    with pytest.raises(IsADirectoryError, match="is a directory"):
        tfl.save(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tfl.save(tmp_path / "missing" / "m.tflite")
    assert list(tmp_path.iterdir()) == []
    # An atomic write gets the permissions a plain open() would (not mkstemp's 0600),
    # and a file written again keeps its own.
    umask = os.umask(0o022)
    try:
        path = tfl.save(tmp_path / "m.tflite")
        assert path.stat().st_mode & 0o777 == 0o644
        path.chmod(0o640)
        tfl.save(path)
        assert path.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(umask)


def test_corrupted_tflite_is_named(tmp_path, trained_cnn):
    good = tflite_export.convert(trained_cnn, mode="float32")
    (tmp_path / "cut.tflite").write_bytes(good.content[:6])
    with pytest.raises(ValueError, match="cut.tflite.*Not a TFLite flatbuffer"):
        tflite_export.TFLiteModel.load(tmp_path / "cut.tflite")
    (tmp_path / "junk.tflite").write_bytes(b"\0\0\0\0TFL3" + b"\xff" * 40)
    with pytest.raises(ValueError, match="junk.tflite"):
        tflite_export.TFLiteModel.load(tmp_path / "junk.tflite")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(mode="int4"), ValueError, "`mode` must be one of"),
        (dict(mode="int8", io_dtype="int16"), ValueError, "`io_dtype`"),
        (dict(mode="float32", batch_size=0), ValueError, "`batch_size`"),
        (dict(mode="int8"), ValueError, "needs `representative_data`"),
        (dict(mode="int8", representative_data=np.zeros((10, 28, 28))), ValueError,
         r"a sample of shape \(28, 28\) does not match the model input shape \(8, 8, 1\)"),
        (dict(mode="int8", representative_data=np.zeros((0, 8, 8, 1))), ValueError, "empty"),
        (dict(mode="int8", representative_data=np.full((4, 8, 8, 1), np.nan)), ValueError,
         "NaN"),
        (dict(mode="int8", representative_data=np.array([["a"] * 64] * 2).reshape(2, 8, 8, 1)),
         ValueError, "not numeric"),
    ],
)
def test_bad_arguments_are_named(trained_cnn, kwargs, error, match):
    with pytest.raises(error, match=match):
        tflite_export.convert(trained_cnn, **kwargs)


def test_not_a_model():
    with pytest.raises(ValueError, match="must be a Keras model"):
        tflite_export.convert(object(), mode="float32")


# ---------------------------------------------------------------- TFLite-Micro
def test_micro_artifacts_compile_list_exact_ops_and_arena_is_tight(
        trained_cnn, digits_split, tmp_path):
    import re
    import shutil
    import subprocess

    from tflite_export import micro

    (x, _), (xt, yt) = digits_split
    tfl = tflite_export.convert(trained_cnn, mode="int8", representative_data=x[:200])
    art = tflite_export.export_micro(tfl, tmp_path / "out", name="digits")
    assert [p.name for p in art.files] == [
        "digits_model_data.cc", "digits_model_data.h", "digits_op_resolver.h"]
    cc, h, resolver = (p.read_text() for p in art.files)
    assert "alignas(16) const unsigned char g_digits_model_data[]" in cc
    assert f"g_digits_model_data_size = {tfl.size};" in h
    assert f"g_digits_tensor_arena_size = {art.arena_bytes};" in h
    # the C array holds exactly the flatbuffer
    data = bytes(int(b, 16) for b in re.findall(r"0x([0-9a-f]{2})", cc))
    assert data == tfl.content
    if shutil.which("g++"):
        subprocess.run(["g++", "-std=c++17", "-c", str(art.model_cc), "-o",
                        str(tmp_path / "model.o")], check=True, cwd=tmp_path / "out")
    # the resolver registers exactly the flatbuffer's op codes
    registered = re.findall(r"resolver\.(Add\w+)\(\)", resolver)
    assert registered == [micro.resolver_method(op) for op in tfl.ops]
    assert registered == ["AddConv2D", "AddMaxPool2D", "AddReshape", "AddFullyConnected"]
    assert f"MicroMutableOpResolver<{len(tfl.ops)}>" in resolver

    # the arena works, 10 % less does not
    assert micro.arena_works(tfl, art.arena_bytes)
    assert not micro.arena_works(tfl, int(art.arena_bytes * 0.9))

    # TFLite-Micro and LiteRT agree on the evaluation split
    litert = np.argmax(litert_predict(tfl, xt), 1)
    tflm = np.array([
        np.argmax(micro.run_micro(tfl, [tfl.quantize_input(img[None])], art.arena_bytes)[0])
        for img in xt])
    assert np.mean(litert == tflm) >= 0.995


def test_micro_refuses_hybrid_models_and_bad_out_dir(trained_cnn, digits_split, tmp_path):
    (x, _), _ = digits_split
    hybrid = tflite_export.convert(trained_cnn, mode="dynamic")
    with pytest.raises(ValueError, match="hybrid"):
        tflite_export.export_micro(hybrid, tmp_path)
    tfl = tflite_export.convert(trained_cnn, mode="int8", representative_data=x[:50])
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="not a directory"):
        tflite_export.export_micro(tfl, tmp_path / "file")


# ------------------------------------------------------------------ benchmark
def test_benchmark_report_int8_vs_float(trained_cnn, digits_split, tmp_path):
    (x, _), (xt, yt) = digits_split
    int8 = tflite_export.convert(trained_cnn, mode="int8", representative_data=x[:200])
    fp32 = tflite_export.convert(trained_cnn, mode="float32")
    results = [
        tflite_export.benchmark(t, xt, yt, keras_model=trained_cnn, name=n, runs=20,
                                progress=False)
        for n, t in (("int8", int8), ("float32", fp32))
    ]
    r8, r32 = results
    assert r8.size_bytes == int8.size and r8.gzip_bytes < r8.size_bytes
    assert r8.size_bytes < r32.size_bytes / 2
    assert r8.litert.runs == 20 and r8.litert.p5_ms <= r8.litert.median_ms <= r8.litert.p90_ms
    assert r8.micro is not None and r8.arena_bytes > 0
    assert r8.micro_agreement >= 0.995
    assert abs(r8.litert_accuracy - r8.keras_accuracy) <= 0.01
    assert r32.litert_accuracy == pytest.approx(r32.keras_accuracy, abs=0.003)
    report = tflite_export.Report(results)
    md = report.to_markdown()
    assert "| int8 | int8 |" in md and "| float32 | float32 |" in md
    files = report.save(tmp_path)
    assert [f.name for f in files] == ["report.md", "report.json", "size_vs_accuracy.png"]
    assert files[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import json

    assert json.loads(files[1].read_text())[0]["litert_accuracy"] == r8.litert_accuracy


def test_benchmark_bad_input(trained_cnn, digits_split):
    _, (xt, yt) = digits_split
    tfl = tflite_export.convert(trained_cnn, mode="float32")
    with pytest.raises(ValueError, match=r"expects \(8, 8, 1\)"):
        tflite_export.benchmark(tfl, xt[:, :4], yt, progress=False)
    with pytest.raises(ValueError, match="`y` has 3 labels"):
        tflite_export.benchmark(tfl, xt[:10], yt[:3], progress=False)
    with pytest.raises(ValueError, match="`runs`"):
        tflite_export.benchmark(tfl, runs=0)
    with pytest.raises(ValueError, match="TFLiteModel"):
        tflite_export.benchmark(tfl.content)


def test_compare_latency_interleaves_models(trained_cnn, digits_split):
    """Every model gets rounds x runs_per_round timed invocations; a model that
    does more work (a wider float copy) measures slower than its int8 twin
    timed in the same rounds; bad arguments are named."""
    (x, _), _ = digits_split
    wide = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(64, 3, padding="same"),
                             keras.layers.Conv2D(64, 3, padding="same"),
                             keras.layers.Flatten(), keras.layers.Dense(10)])
    tfls = {"int8": tflite_export.convert(trained_cnn, mode="int8", representative_data=x[:50]),
            "wide float32": tflite_export.convert(wide, mode="float32")}
    latency = tflite_export.compare_latency(tfls, rounds=6, runs_per_round=4, progress=False)
    assert list(latency) == ["int8", "wide float32"]
    assert all(lat.runs == 24 and lat.median_ms > 0 for lat in latency.values())
    assert latency["int8"].median_ms < latency["wide float32"].median_ms
    # TFLite-Micro too: a wider int8 model is slower there in the same rounds.
    int8 = {"int8": tfls["int8"],
            "wide int8": tflite_export.convert(wide, mode="int8", representative_data=x[:50])}
    micro = tflite_export.compare_latency(int8, rounds=3, runs_per_round=2, runtime="micro",
                                          progress=False)
    assert all(lat.runs == 6 for lat in micro.values())
    assert micro["int8"].median_ms < micro["wide int8"].median_ms
    with pytest.raises(ValueError, match="`runtime` must be 'litert' or 'micro'"):
        tflite_export.compare_latency(tfls, runtime="tflm")
    with pytest.raises(ValueError, match="`rounds`"):
        tflite_export.compare_latency(tfls, rounds=0)
    with pytest.raises(ValueError, match="TFLiteModel"):
        tflite_export.compare_latency({"a": tfls["int8"].content})


def test_float_island_names_the_op_and_layer(digits_split):
    (x, _), _ = digits_split
    model = keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Reshape((64,)),
        keras.layers.Dense(16, name="fc"), keras.layers.Activation("elu", name="act_elu"),
        keras.layers.Dense(10, name="logits")])
    with pytest.raises(tflite_export.ConversionError, match=r"op ELU .*Keras layer 'act_elu'"):
        tflite_export.convert(model, mode="int8", representative_data=x[:50])
    kept = tflite_export.convert(model, mode="int8", representative_data=x[:50],
                                 allow_float_ops=True)
    assert not kept.is_fully_integer and "ELU" in kept.ops


def test_micro_names_the_op_it_lacks(digits_split, tmp_path):
    (x, _), _ = digits_split
    model = keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Reshape((64,)),
        keras.layers.Dense(16, activation="gelu", name="fc"), keras.layers.Dense(10)])
    tfl = tflite_export.convert(model, mode="int8", representative_data=x[:50])
    assert "GELU" in tfl.ops and tfl.is_fully_integer  # fine for LiteRT ...
    with pytest.raises(ValueError, match="no kernel for op.*GELU"):  # ... not for TFLM
        tflite_export.export_micro(tfl, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# -------------------------------------------------------------------- Android
def test_weights_after_the_flatbuffer_are_refused_by_micro_then_moved_inside():
    """ai-edge-quantizer stores large weights after the flatbuffer (buffer
    offsets); TFLite-Micro reads garbage there, so the check refuses such a
    model by name, and `with_inline_buffers` gives one it runs exactly."""
    import keras_compress as kc
    from benchmarks import other_tools

    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).random((114, 28, 28), dtype="float32")
    xt = x[50:]
    f32 = tflite_export.convert(kc.models.lenet_300_100(), mode="float32")
    tfl, _ = other_tools.aeq_quantized(f32, "static_wi8_ai8", x[:50])
    assert tfl.has_external_buffers  # its 235,200-byte fc1 kernel, at least
    with pytest.raises(ValueError, match="after the flatbuffer.*with_inline_buffers"):
        tflite_export.export_micro(tfl, "unused")
    inline = tfl.with_inline_buffers()
    assert not inline.has_external_buffers and inline.ops == tfl.ops
    for t in tfl.tensors:
        if t.is_constant and t.dtype in ("INT8", "INT32"):
            np.testing.assert_array_equal(inline.constant(t.index), tfl.constant(t.index))
    micro = tflite_export.predict(inline, xt, "micro")
    litert = tflite_export.predict(tfl, xt, "litert-reference")
    assert np.max(np.abs(micro - litert)) <= 1.01 * tfl.outputs[0].scale[0]  # one step


def test_embedded_metadata(trained_cnn, digits_split, tmp_path):
    """Metadata round-trips, replaces itself, and leaves the model's outputs
    unchanged in LiteRT and in TFLite-Micro."""
    import io
    import zipfile

    (x, _), (xt, _) = digits_split
    tfl = tflite_export.convert(trained_cnn, mode="int8", representative_data=x[:100])
    assert tflite_export.read_metadata(tfl) is None
    content = tflite_export.embed_metadata(
        tfl, name="digits", description="8x8 digits", version="2.1", author="kc",
        license="Apache-2.0", mean=[0.5], std=[2.0], labels=list("0123456789"))
    meta = tflite_export.read_metadata(content)
    assert {k: meta[k] for k in ("name", "description", "version", "author", "license")} == {
        "name": "digits", "description": "8x8 digits", "version": "2.1", "author": "kc",
        "license": "Apache-2.0"}
    assert meta["inputs"][0]["mean"] == [0.5] and meta["inputs"][0]["std"] == [2.0]
    assert meta["outputs"][0]["labels_file"] == "labels.txt"
    # associated files are a plain zip appended to the flatbuffer, as the standard asks
    assert zipfile.ZipFile(io.BytesIO(content)).read("labels.txt").decode().split() == list(
        "0123456789")
    with_meta = tflite_export.TFLiteModel(content, mode="int8")
    assert with_meta.ops == tfl.ops
    for runtime in ("litert", "micro"):
        np.testing.assert_array_equal(tflite_export.predict(with_meta, xt[:32], runtime),
                                      tflite_export.predict(tfl, xt[:32], runtime))
    # embedding again replaces the metadata instead of adding a second entry
    again = tflite_export.embed_metadata(with_meta, name="v2")
    assert tflite_export.read_metadata(again)["name"] == "v2"
    assert [m.name for m in tflite_export.TFLiteModel(again)._fb.metadata].count(
        b"TFLITE_METADATA") == 1
    with pytest.raises(ValueError, match="`std` must not be zero"):
        tflite_export.embed_metadata(tfl, std=0.0)


def test_android_artifacts(trained_cnn, digits_split, tmp_path):
    import json

    (x, _), (xt, yt) = digits_split
    tfl = tflite_export.convert(trained_cnn, mode="int8", representative_data=x[:100],
                                signature_name="classify")
    assert tfl.signatures == ["classify"]
    art = tflite_export.export_android(tfl, tmp_path / "assets", name="digits",
                                       labels=[f"digit {i}" for i in range(10)], std=1.0)
    meta = json.loads(art.metadata.read_text())
    assert meta["signatures"] == {"classify": {"inputs": ["image"], "outputs": ["output_0"]}}
    assert meta["labels"] == "digits_labels.txt"
    assert meta["inputs"][0]["dtype"] == "int8" and meta["inputs"][0]["shape"] == [1, 8, 8, 1]
    assert art.labels.read_text().splitlines()[3] == "digit 3"
    # an app following the metadata gets the same answer as LiteRT via the signature
    interpreter = Interpreter(model_path=str(art.model))
    runner = interpreter.get_signature_runner("classify")
    scale, zero = meta["inputs"][0]["scale"][0], meta["inputs"][0]["zero_point"][0]
    q = np.clip(np.round(xt[:1] / scale + zero), -128, 127).astype(np.int8)
    (out,) = runner(image=q).values()
    assert np.argmax(out[0]) == np.argmax(litert_predict(tfl, xt[:1])[0])
    # the same file carries standard TFLite metadata with the labels packed inside
    embedded = tflite_export.read_metadata(art.model.read_bytes())
    assert embedded["name"] == "digits" and embedded["min_parser_version"] == "1.0.0"
    assert embedded["inputs"][0]["content"] == "image"
    assert embedded["inputs"][0]["color_space"] == "GRAYSCALE"
    assert embedded["inputs"][0]["std"] == [1.0]
    assert embedded["outputs"][0]["labels"] == [f"digit {i}" for i in range(10)]
    with pytest.raises(ValueError, match="`labels` has 3 entries.*10 classes"):
        tflite_export.export_android(tfl, tmp_path / "a2", labels=["a", "b", "c"])
    with pytest.raises(ValueError, match="`mean` has 2 values"):
        tflite_export.export_android(tfl, tmp_path / "a2", mean=[0.0, 1.0])
    with pytest.raises(ValueError, match="`signature_name`"):
        tflite_export.convert(trained_cnn, mode="float32", signature_name="not valid")


@pytest.mark.slow
def test_lenet5_mnist_int8_litert_and_micro_agree_on_evaluation_split(mnist_split, tmp_path):
    """LeNet-5 on the MNIST split: int8 kernels only, LiteRT vs TFLite-Micro argmax
    agreement >= 99.5 % on all 2,000 evaluation images, TFLite within 1 point of Keras."""
    (x, y), (xt, yt) = mnist_split
    x, xt = x[..., None], xt[..., None]
    keras.utils.set_random_seed(11)
    model = compile_classifier(kc.models.lenet5())
    model.fit(x, y, batch_size=128, epochs=2, verbose=0)
    tfl = tflite_export.convert(model, mode="int8", representative_data=x[:300])
    assert {t.dtype for t in tfl.tensors} <= {"INT8", "INT32"}
    result = tflite_export.benchmark(tfl, xt, yt, keras_model=model, runs=10, progress=False)
    assert result.eval_samples == 2000
    assert result.micro_agreement >= 0.995
    assert abs(result.litert_accuracy - result.keras_accuracy) <= 0.01
    art = tflite_export.export_micro(tfl, tmp_path, name="lenet5")
    assert art.arena_bytes == result.arena_bytes
    print(f"\nLeNet-5 int8: Keras {result.keras_accuracy:.4f}, LiteRT {result.litert_accuracy:.4f}, "
          f"TFLM {result.micro_accuracy:.4f}, agreement {result.micro_agreement:.4f}, "
          f"{tfl.size:,} B ({tfl.gzip_size:,} gzip), arena {art.arena_bytes:,} B")


def test_arena_search_survives_tflm_crashes_on_a_pruned_model(mnist_split, tmp_path):
    """Regression: recreating the TFLite-Micro interpreter after failed allocations
    crashed the process (segfault) for this stripped, 90 %-pruned LeNet-300-100;
    the search now probes in a child process."""
    (x, y), (xt, _) = mnist_split
    model = compile_classifier(
        kc.prune(kc.models.lenet_300_100(), schedule=kc.ConstantSparsity(0.9, 0)))
    model.fit(x[:1000], y[:1000], epochs=1, verbose=0, callbacks=[kc.PruningCallback()])
    tfl = tflite_export.convert(kc.strip(model), mode="int8", representative_data=x[:200])
    art = tflite_export.export_micro(tfl, tmp_path, name="lenet")
    from tflite_export import micro

    out = micro.run_micro(tfl, [tfl.quantize_input(xt[:1])], art.arena_bytes)[0]
    assert out.shape == (1, 10) and out.dtype == np.int8
