"""QAT of a stripped pruned or clustered model keeps its zeros and its shared
values: detected per kernel, with a `preserve=` override."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_compress as kc
import tflite_export
from conftest import compile_classifier

L = keras.layers


@pytest.fixture(scope="module")
def digits_flat(digits_split):
    (x, y), (xt, yt) = digits_split
    return (x.reshape(len(x), -1), y), (xt.reshape(len(xt), -1), yt)


@pytest.fixture(scope="module")
def stripped_pruned(digits_flat):
    """An MLP trained on digits, pruned to 90 % and stripped: plain layers."""
    (x, y), _ = digits_flat
    keras.utils.set_random_seed(0)
    model = compile_classifier(keras.Sequential([
        keras.Input((64,)), L.Dense(128, activation="relu", name="fc1"),
        L.Dense(64, activation="relu", name="fc2"), L.Dense(10, name="logits")]))
    model.fit(x, y, epochs=10, verbose=0)
    pruned = compile_classifier(kc.prune(model, schedule=kc.PolynomialDecay(
        0.0, 0.9, begin_epoch=0, end_epoch=4)))
    pruned.fit(x, y, epochs=6, verbose=0, callbacks=[kc.PruningCallback()])
    return kc.strip(pruned)


def _kernels(model):
    return {layer.name: layer.kernel.numpy() for layer in model.layers if hasattr(layer, "kernel")}


def _int8_kernels(tfl):
    return [tfl.constant(inputs[1]) for op, inputs, _ in tfl.operators
            if op == "FULLY_CONNECTED"]


def _fit_and_convert(qat, x, y):
    compile_classifier(qat, 1e-3).fit(x, y, epochs=2, verbose=0)
    return tflite_export.convert(kc.strip(qat), mode="int8", io_dtype="int8")


def test_strip_cluster_strip_quantize_keeps_every_zero_and_the_shared_values(
        stripped_pruned, digits_flat, capsys):
    """The issue's path: prune 90 % -> strip -> cluster(16) -> strip ->
    quantize -> fit -> int8 keeps the zeros and at most 16 values per kernel."""
    (x, y), (xt, yt) = digits_flat
    clustered = compile_classifier(kc.cluster(stripped_pruned, n_clusters=16))
    clustered.fit(x, y, epochs=1, verbose=0)
    plain = kc.strip(clustered)
    zeros = {name: k == 0 for name, k in _kernels(plain).items()}
    tfl = _fit_and_convert(kc.quantize(plain), x, y)
    said = capsys.readouterr().out
    assert "quantize keeps fc1: 16 shared values per kernel and 90.0 % zeros" in said
    for (name, zero), kernel in zip(zeros.items(), _int8_kernels(tfl)):
        assert np.all(kernel.T[zero] == 0), name  # TFLite stores Dense kernels (out, in)
        assert len(np.unique(kernel[kernel != 0])) <= 16, name
    accuracy = np.mean(np.argmax(tflite_export.predict(tfl, xt), 1) == yt)
    keras_accuracy = np.mean(np.argmax(plain.predict(xt, verbose=0), 1) == yt)
    assert accuracy >= keras_accuracy - 0.03
    # Without preservation QAT lets both drift: the detection is what keeps them.
    drifted = _int8_kernels(_fit_and_convert(kc.quantize(plain, preserve="none"), x, y))
    assert np.mean(drifted[0] == 0) < 0.9 and len(np.unique(drifted[0])) > 16


def test_per_channel_shared_values_stay_per_channel(stripped_pruned, digits_flat):
    (x, y), _ = digits_flat
    clustered = compile_classifier(kc.cluster(stripped_pruned, n_clusters=4, per_channel=True,
                                              layers=["fc1"]))
    clustered.fit(x, y, epochs=1, verbose=0)
    plain = kc.strip(clustered)
    [kept] = [k for k in kc.quantization.preserve.find(plain) if k.layer == "fc1"]
    assert kept.kind == "clusters" and kept.per_channel and kept.values == 4
    fc1 = _int8_kernels(_fit_and_convert(kc.quantize(plain), x, y))[0]
    assert max(len(np.unique(row[row != 0])) for row in fc1) <= 4  # one row per output unit


def test_stripped_pruned_zeros_survive_qat_and_the_recipe(stripped_pruned, digits_flat):
    (x, y), _ = digits_flat
    zeros = {n: k == 0 for n, k in _kernels(stripped_pruned).items()}
    found = kc.quantization.preserve.find(stripped_pruned, "zeros")
    assert {(k.layer, k.kind) for k in found} == {(n, "zeros") for n in zeros}
    for qat in (kc.quantize(stripped_pruned, preserve="zeros"),
                kc.recipe(stripped_pruned, qat_from_epoch=0)[0]):
        compile_classifier(qat, 1e-3) if not isinstance(qat, kc.Distiller) else None
        qat.fit(x, y, epochs=1, verbose=0)
        for name, kernel in _kernels(kc.strip(qat)).items():
            assert np.all(kernel[zeros[name]] == 0), name
    # preserve="zeros" does not pin the values: QAT moves them freely.
    assert len(np.unique(_kernels(kc.strip(qat))["fc1"])) > 256


def test_float_models_are_left_alone_and_bad_preserve_is_named(digits_flat, capsys):
    model = keras.Sequential([keras.Input((64,)), L.Dense(32, name="fc"), L.Dense(10)])
    assert kc.quantization.preserve.find(model) == []
    kc.quantize(model)
    assert "quantize keeps" not in capsys.readouterr().out
    with pytest.raises(ValueError, match="`preserve` must be one of"):
        kc.quantize(model, preserve="clusters")
