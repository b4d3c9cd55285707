"""Low-rank factorization: parameter counts follow the rank, exact for
low-rank kernels, energy kept as asked, fine-tunes on real data, converts."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_compress as kc
import tflite_export
from conftest import compile_classifier

L = keras.layers


def _model():
    return keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(32, 3, activation="relu",
                                                              name="conv"),
                             L.Flatten(), L.Dense(64, activation="relu", name="fc"),
                             L.Dense(10, name="logits")])


def test_parameter_count_matches_the_requested_rank():
    model = _model()
    small = kc.factorize(model, rank={"fc": 8, "conv": 4})
    # conv: 3*3*1*4 (no bias) + 1*1*4*32 + 32; fc: 1152*8 + 8*64 + 64; logits unchanged.
    expected = (9 * 4 + 4 * 32 + 32) + (1152 * 8 + 8 * 64 + 64) + (64 * 10 + 10)
    assert small.count_params() == expected
    assert [layer.name for layer in small.layers] == ["conv_lowrank", "flatten", "fc_lowrank",
                                                       "logits"]


def test_low_rank_kernels_are_reproduced_exactly(digits_split):
    (_, _), (xt, _) = digits_split
    model = _model()
    rng = np.random.default_rng(0)
    fc = model.get_layer("fc")
    fc.kernel.assign((rng.normal(size=(1152, 5)) @ rng.normal(size=(5, 64)) / 40).astype("float32"))
    small = kc.factorize(model, rank={"fc": 5})
    np.testing.assert_allclose(small.predict(xt, verbose=0), model.predict(xt, verbose=0),
                               rtol=1e-4, atol=1e-4)


def test_energy_and_budget_choose_the_rank():
    model = _model()
    w = model.get_layer("fc").kernel.numpy()
    s = np.linalg.svd(w, compute_uv=False)
    r = kc.lowrank.rank_for(s, 0.5)
    assert np.sum(s[:r] ** 2) / np.sum(s ** 2) >= 0.5 > np.sum(s[:r - 1] ** 2) / np.sum(s ** 2)
    by_energy = kc.factorize(model, energy=0.5, layers=["fc"])
    assert by_energy.get_layer("fc_lowrank").get_layer("fc_u").kernel.shape == (1152, r)
    by_budget = kc.factorize(model, budget=0.25, layers=["fc"])
    u = by_budget.get_layer("fc_lowrank").get_layer("fc_u").kernel
    assert u.shape[1] == int(0.25 * 1152 * 64 // (1152 + 64))


def test_factorized_model_fine_tunes_and_converts_to_int8(digits_split):
    (x, y), (xt, yt) = digits_split
    keras.utils.set_random_seed(0)
    model = compile_classifier(_model())
    model.fit(x, y, epochs=6, verbose=0)
    dense_acc = model.evaluate(xt, yt, verbose=0)[1]
    small = compile_classifier(kc.factorize(model, budget=0.2, layers=["fc"]))
    assert small.count_params() < 0.3 * model.count_params()
    small.fit(x, y, epochs=3, verbose=0)
    assert small.evaluate(xt, yt, verbose=0)[1] >= dense_acc - 0.03
    qat = compile_classifier(kc.quantize(small), learning_rate=1e-4)
    qat.fit(x, y, epochs=1, verbose=0)
    tfl = tflite_export.convert(kc.strip(qat), mode="int8", io_dtype="int8")
    assert tfl.is_fully_integer and not {"QUANTIZE", "DEQUANTIZE"} & set(tfl.ops)


@pytest.mark.parametrize("kwargs, match", [
    (dict(energy=0), "energy"), (dict(budget=1.5), "budget"), (dict(rank=0), "rank"),
    (dict(rank={"nope": 3}), "nope"), (dict(rank=10_000, layers=["logits"]), "no layer would"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kc.factorize(_model(), **kwargs)
