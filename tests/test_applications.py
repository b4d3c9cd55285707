"""Keras' own model zoo, tried as a new user would: each `keras.applications`
family that fits a 2-core machine (weights=None, small inputs) goes prune ->
QAT -> strip -> int8 and ends fully int8 with TFLite-Micro agreeing with
LiteRT, or stops with an error naming the layer or op and why.
docs/applications.md records the outcomes (regenerate it with
`python tests/test_applications.py`)."""

from __future__ import annotations

import pathlib
import re

import keras
import numpy as np
import pytest

import keras_compress as kc
import tflite_export

SIZE = 32  # the smallest input every family accepts
# family -> "ok", or a pattern the refusal's message must match
FAMILIES = {
    "MobileNet": "ok",
    "MobileNetV2": "ok",
    "MobileNetV3Small": "ok",
    "MobileNetV3Large": "ok",
    "EfficientNetB0": "ok",
    "EfficientNetV2B0": "ok",
    "ResNet50": "ok",
    "DenseNet121": "ok",
    "ConvNeXtTiny": r"layer 'convnext_tiny_stage_0_block_0_layer_scale' \(LayerScale\) "
                    r"has weights but no int8 QAT rule",
}
# Families built from the same blocks as one the test runs: their docs rows come
# from `python tests/test_applications.py`, the test skips them (CI time).
SAME_BLOCKS = {"MobileNetV3Large": "MobileNetV3Small"}
DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "applications.md"


def run_family(name: str) -> dict:
    """Prune 50 % for one step, strip, QAT one step (the zeros kept), strip,
    convert to int8 without representative data, then run LiteRT's reference
    kernels and TFLite-Micro on the same images."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((8, SIZE, SIZE, 3), dtype="float32") * 255.0
    y = rng.integers(0, 10, len(x))
    model = getattr(keras.applications, name)(weights=None, input_shape=(SIZE, SIZE, 3),
                                              classes=10, classifier_activation=None)

    def fit(m, callbacks=()):
        # One step: eager skips tracing the large graphs (half the time for DenseNet121).
        m.compile(keras.optimizers.SGD(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), run_eagerly=True)
        m.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=list(callbacks))

    pruned = kc.prune(model, schedule=kc.ConstantSparsity(0.5, begin_step=0, frequency=1))
    fit(pruned, [kc.PruningCallback()])
    qat = kc.quantize(kc.strip(pruned))
    fit(qat)
    tfl = tflite_export.convert(kc.strip(qat), mode="int8", io_dtype="int8")
    litert = tflite_export.predict(tfl, x[:2], "litert-reference")
    micro = tflite_export.predict(tfl, x[:2], "micro")
    return {"tfl": tfl, "max_diff_steps": float(np.max(np.abs(litert - micro))
                                                / tfl.outputs[0].scale[0])}


def _outcome(name: str) -> str:
    try:
        r = run_family(name)
    except ValueError as exc:
        text = " ".join(str(exc).split())
        return "refused: " + (text if len(text) <= 400 else text[:400].rsplit(" - ", 1)[0]
                              + " - ... (every such layer is listed)")
    tfl = r["tfl"]
    return (f"fully int8: {tfl.is_fully_integer}; ops {', '.join(sorted(set(tfl.ops)))}; "
            f"{tfl.size:,} B; TFLite-Micro vs LiteRT: {r['max_diff_steps']:g} output steps")


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name in FAMILIES if name not in SAME_BLOCKS])
def test_application_family(name):
    expected = FAMILIES[name]
    if expected == "ok":
        r = run_family(name)
        assert r["tfl"].is_fully_integer, r["tfl"].float_ops
        assert r["max_diff_steps"] <= 1.0
    else:
        with pytest.raises(ValueError, match=expected):
            run_family(name)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_docs_row_states_the_expected_outcome(name):
    documented = DOC.read_text()
    row = re.search(rf"^\| {name} \| (.*?) \|$", documented, re.M)
    assert row, f"docs/applications.md has no row for {name}"
    ok = FAMILIES[name] == "ok"
    assert row.group(1).startswith("fully int8: True" if ok else "refused")
    if name in SAME_BLOCKS:  # the same ops as the family the test runs
        ops = re.compile(r"ops ([A-Z_0-9, ]+);")
        twin = re.search(rf"^\| {SAME_BLOCKS[name]} \| (.*?) \|$", documented, re.M)
        assert ops.search(row.group(1)).group(1) == ops.search(twin.group(1)).group(1)


def _write_doc() -> None:
    rows = [f"| {name} | {_outcome(name).replace('|', '/')} |" for name in FAMILIES]
    DOC.write_text(
        "# Keras applications\n\n"
        "`tests/test_applications.py` (regenerate this page with `python "
        "tests/test_applications.py`): each `keras.applications` family, built with "
        f"`weights=None` at {SIZE}x{SIZE}x3 with 10 classes, is pruned to 50 % "
        "(`kc.prune`, one eager step), stripped, QAT-trained one step (`kc.quantize`, the zeros "
        "kept), stripped and converted to int8 without representative data; LiteRT's "
        "reference kernels and TFLite-Micro then run it on the same images. A refusal names "
        "the layer or op and why (ConvNeXt's LayerScale has no int8 QAT rule yet).\n\n"
        "| family | outcome |\n|---|---|\n" + "\n".join(rows) + "\n")


if __name__ == "__main__":
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    _write_doc()
