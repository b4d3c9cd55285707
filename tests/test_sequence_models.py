"""Transformers and recurrent networks: QAT -> strip -> fully int8 LiteRT and
TFLite-Micro, on real MNIST (images as patch tokens, or rows as time steps)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_compress as kc
import tflite_export
from conftest import compile_classifier
from keras_compress import sequence_models
from keras_compress.deploy import sigmoid_gelu

L = keras.layers


MODELS = {  # builder, float epochs (the transformers reach about 0.92 in 5)
    "vit": (sequence_models.vit, 5),
    "tokens": (sequence_models.token_transformer, 5),
    "lstm": (lambda: sequence_models.recurrent("lstm"), 6),
    "gru": (lambda: sequence_models.recurrent("gru"), 6),
    "crnn": (lambda: sequence_models.recurrent("crnn"), 6),
}


@pytest.fixture(scope="module")
def mnist(mnist_split):
    return mnist_split  # 8,000 training and 2,000 test images in [0, 1]


def _data(name, images):
    # Token ids from real images (no text corpus is offline here).
    return kc.datasets.patch_tokens(images) if name == "tokens" else images


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_qat_converts_fully_int8_within_a_point_and_micro_agrees(name, mnist):
    (x, y), (xt, yt) = mnist
    x, xt = _data(name, x), _data(name, xt)
    build, epochs = MODELS[name]
    keras.utils.set_random_seed(1)
    model = compile_classifier(build(), 2e-3)
    model.fit(x, y, batch_size=64, epochs=epochs, verbose=0)
    float_acc = float(np.mean(model.predict(xt, verbose=0).argmax(-1) == yt))
    assert float_acc > 0.85

    qat = compile_classifier(kc.quantize(model), 2e-4)
    qat.fit(x[:2000], y[:2000], batch_size=64, epochs=1, verbose=0)  # ranges settle in 32 steps
    plain = kc.strip(qat)
    # Attention and LayerNormalization carry QAT ranges on every inner tensor:
    # no calibration; the fused LSTM's gates and the GRU's steps are calibrated.
    data = None if name in ("vit", "tokens") else x[:200]
    tfl = tflite_export.convert(plain, "int8", representative_data=data)
    assert tfl.is_fully_integer and not tfl.float_ops
    assert not {"QUANTIZE", "DEQUANTIZE", "WHILE"} & set(tfl.ops), tfl.op_counts
    if name == "lstm":
        assert tfl.op_counts["UNIDIRECTIONAL_SEQUENCE_LSTM"] == 1
    litert = tflite_export.predict(tfl, xt)
    litert_acc = float(np.mean(litert.argmax(-1) == yt))
    assert litert_acc >= float_acc - 0.01, (litert_acc, float_acc)

    if name == "vit":  # TFLite-Micro has no GELU kernel: its form for microcontrollers
        with pytest.raises(ValueError, match="GELU"):
            tflite_export.predict(tfl, xt[:1], runtime="micro")
        tfl = tflite_export.convert(kc.strip(qat, target="micro"), "int8")
        assert "GELU" not in tfl.ops and "LOGISTIC" in tfl.ops
        litert = tflite_export.predict(tfl, xt)
        assert float(np.mean(litert.argmax(-1) == yt)) >= float_acc - 0.01
    # TFLite-Micro against LiteRT: its reference kernels (the baseline TFLite-Micro
    # follows), and XNNPACK, whose int8 kernels round differently (measured up
    # to 14 output steps on the ViT), so near-ties may flip.
    micro = tflite_export.predict(tfl, xt[:500], runtime="micro").argmax(-1)
    reference = tflite_export.predict(tfl, xt[:500], runtime="litert-reference").argmax(-1)
    assert np.mean(micro == reference) >= 0.99
    assert np.mean(micro == litert[:500].argmax(-1)) >= 0.98


def test_deploy_forms_compute_what_the_stock_layers_compute():
    rows = keras.Input((12, 8))
    h = L.LayerNormalization(epsilon=1e-5)(rows)
    h = L.LSTM(6, return_sequences=True, go_backwards=True)(h)
    h = L.GRU(5)(L.Dense(8, activation="gelu")(h))
    model = keras.Model(rows, h)
    x = np.random.default_rng(0).normal(size=(4, 12, 8)).astype("float32")
    for layer in model.layers[1:]:  # nonzero biases and gammas
        layer.set_weights([w + 0.1 for w in layer.get_weights()])
    litert = kc.deploy(model)
    assert [type(layer).__name__ for layer in litert.layers[1:]] == [
        "DecomposedLayerNormalization", "FusedLSTM", "Dense", "GRU"]
    assert litert.layers[-1].unroll and litert.layers[3].activation is model.layers[3].activation
    np.testing.assert_allclose(litert.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-5)
    micro = kc.deploy(model, target="micro")
    assert micro.layers[3].activation is sigmoid_gelu
    gap = np.abs(micro.predict(x, verbose=0) - model.predict(x, verbose=0)).max()
    assert 0 < gap < 0.05  # the approximation, not the same function
    with pytest.raises(ValueError, match="`target` must be one of"):
        kc.deploy(model, target="android")


def test_deploy_refuses_a_gru_without_fixed_steps_naming_it():
    model = keras.Sequential([keras.Input((None, 4)), L.GRU(3, name="free_gru")])
    with pytest.raises(ValueError, match="GRU 'free_gru' has no fixed number of time steps"):
        kc.deploy(model)


def test_transformer_prunes_attention_and_qat_saves_and_resumes(tmp_path, mnist):
    (x, y), _ = mnist
    keras.utils.set_random_seed(2)
    model = compile_classifier(kc.prune(sequence_models.vit(), kc.ConstantSparsity(0.5, 0)))
    model.fit(x[:256], y[:256], batch_size=64, epochs=1, verbose=0,
              callbacks=[kc.PruningCallback()])
    plain = kc.strip(model)
    attention = [layer for layer in plain.layers if isinstance(layer, L.MultiHeadAttention)]
    for layer in attention:
        for part in ("_query_dense", "_key_dense", "_value_dense", "_output_dense"):
            kernel = getattr(layer, part).kernel.numpy()
            assert abs(np.mean(kernel == 0) - 0.5) < 0.01, (layer.name, part)

    qat = compile_classifier(kc.quantize(plain))
    qat.fit(x[:128], y[:128], batch_size=64, epochs=1, verbose=0)
    path = tmp_path / "vit_qat.keras"
    qat.save(path)
    again = keras.models.load_model(path)
    np.testing.assert_array_equal(again.predict(x[:16], verbose=0), qat.predict(x[:16], verbose=0))
    again.fit(x[:64], y[:64], batch_size=64, epochs=1, verbose=0)  # training resumes
    stripped = kc.strip(again)
    for layer in stripped.layers:  # pruned zeros survive QAT
        if isinstance(layer, L.MultiHeadAttention):
            assert np.mean(layer._query_dense.kernel.numpy() == 0) >= 0.49


def test_inner_quantizers_observe_and_strip_to_the_same_function():
    from keras_compress.quantization import inner

    rng = np.random.default_rng(1)
    x = (rng.normal(size=(8, 6, 16)) * 2 + 0.5).astype("float32")
    norm = L.LayerNormalization(epsilon=1e-5)
    norm.build(x.shape)
    norm.set_weights([rng.normal(size=16).astype("float32") + 1,
                      rng.normal(size=16).astype("float32")])
    attention = L.MultiHeadAttention(2, 8)
    attention(x, x)
    for layer in attention.weights:
        layer.assign(layer.numpy() + 0.05)
    for stock, run in ((norm, lambda layer, training=None: layer(x, training=training)),
                       (attention, lambda layer, training=None: layer(x, x, training=training))):
        qat = inner.qat_form(stock)
        np.testing.assert_allclose(run(qat), run(stock), atol=1e-5)  # nothing observed yet
        quantized = run(qat, training=True).numpy()   # observes, then fake-quantizes
        assert all(float(q.observed.numpy()) == 1.0 for q in qat.quantizers.values())
        reference = run(stock).numpy()   # int8 noise: a few steps of the output's range
        assert 0 < np.abs(quantized - reference).max() < 0.05 * np.ptp(reference)
        plain = qat.stripped()
        np.testing.assert_allclose(run(plain), run(qat), atol=1e-5)
        assert set(plain.ranges) == set(qat.quantizers)
