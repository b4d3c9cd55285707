"""Mixed precision: 4-bit weights trained with QAT become packed INT4 tensors
that LiteRT and TFLite-Micro run with matching outputs."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_compress as kc
import tflite_export
from conftest import compile_classifier

L = keras.layers


def _weight_types(tfl) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for op, inputs, _ in tfl.operators:
        if op in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D") and len(inputs) > 1:
            found.setdefault(op, []).append(inputs[1].dtype)
    return found


@pytest.mark.slow
def test_lenet5_with_int4_dense_weights(mnist_split):
    (x, y), (xt, yt) = mnist_split
    x, xt = x[..., None], xt[..., None]
    results = {}
    for bits in (8, 4):
        keras.utils.set_random_seed(0)
        qat = compile_classifier(kc.quantize(kc.models.lenet5(),
                                             weight_bits={keras.layers.Dense: bits}))
        qat.fit(x, y, batch_size=64, epochs=3, verbose=0)
        tfl = tflite_export.convert(kc.strip(qat), mode="int8", io_dtype="int8")
        assert tfl.is_fully_integer
        litert = np.argmax(tflite_export.predict(tfl, xt), 1)
        micro = np.argmax(tflite_export.predict(tfl, xt, "micro"), 1)
        results[bits] = dict(tfl=tfl, acc=float(np.mean(litert == yt)),
                             agree=float(np.mean(litert == micro)))
    four, eight = results[4], results[8]
    assert _weight_types(four["tfl"]) == {"CONV_2D": ["INT8", "INT8"],
                                          "FULLY_CONNECTED": ["INT4", "INT4"]}
    assert _weight_types(eight["tfl"])["FULLY_CONNECTED"] == ["INT8", "INT8"]
    assert four["agree"] >= 0.995
    assert four["acc"] >= eight["acc"] - 0.01
    assert four["tfl"].size <= eight["tfl"].size * 2 / 3
    print(f"\nLeNet-5 int8 {eight['acc']:.4f} ({eight['tfl'].size:,} B), 4-bit Dense "
          f"{four['acc']:.4f} ({four['tfl'].size:,} B), TFLite-Micro = LiteRT on "
          f"{four['agree']:.2%}")


def test_int4_conv_and_dense_run_in_micro_within_one_step(digits_split, tmp_path):
    (x, y), (xt, _) = digits_split
    model = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(8, 3, use_bias=False),
                              L.BatchNormalization(), L.ReLU(), L.DepthwiseConv2D(3),
                              L.Flatten(), L.Dense(16, activation="relu"), L.Dense(10)])
    # Depthwise stays 8-bit here: LiteRT's reference kernels have no INT4
    # DEPTHWISE_CONV_2D (op version 7) to compare TFLite-Micro against.
    qat = compile_classifier(kc.quantize(model, weight_bits={L.Conv2D: 4, L.Dense: 4}))
    qat.fit(x, y, epochs=2, verbose=0)
    plain = kc.strip(qat)
    assert sum(isinstance(layer, kc.QuantizedKernel) for layer in plain.layers) == 3
    np.testing.assert_allclose(plain.predict(xt, verbose=0), qat.predict(xt, verbose=0),
                               atol=1e-5)
    tfl = tflite_export.convert(plain, mode="int8", io_dtype="int8")
    types = _weight_types(tfl)
    assert types == {"CONV_2D": ["INT4"], "DEPTHWISE_CONV_2D": ["INT8"],
                     "FULLY_CONNECTED": ["INT4", "INT4"]}
    # Every stored value fits 4 bits: at most 15 levels per channel.
    for op, inputs, _ in tfl.operators:
        if op in ("CONV_2D", "FULLY_CONNECTED"):
            values = tfl.constant(inputs[1])
            assert values.min() >= -7 and values.max() <= 7 and values.max() == 7
    # TFLite-Micro's INT4 kernels round some outputs one step away from LiteRT's
    # reference kernels (measured: never more than one step).
    micro = tflite_export.predict(tfl, xt, "micro")
    reference = tflite_export.predict(tfl, xt, "litert-reference")
    step = tfl.outputs[0].scale[0]
    assert np.max(np.abs(micro - reference)) <= step * 1.001
    # So the top class can only change where the reference's two best logits
    # are within two steps (measured over seeds: 0 to 4 of 359 images, all at
    # a gap of 0 or 1 step).
    ranked = np.sort(reference, 1)
    gap = (ranked[:, -1] - ranked[:, -2]) / step
    differs = np.argmax(micro, 1) != np.argmax(reference, 1)
    assert np.all(gap[differs] <= 2.001), gap[differs]
    assert np.mean(differs) <= 0.02
    # Saved and reloaded, the stripped model computes the same and stays INT4.
    plain.save(tmp_path / "int4.keras")
    reloaded = keras.models.load_model(tmp_path / "int4.keras")
    np.testing.assert_array_equal(reloaded.predict(xt, verbose=0), plain.predict(xt, verbose=0))
    again = tflite_export.convert(reloaded, mode="int8", io_dtype="int8")
    assert _weight_types(again) == types


def test_weight_bits_arguments_are_checked():
    model = keras.Sequential([keras.Input((4,)), L.Dense(2, name="fc")])
    for spec, match in ((3, "8 \\(int8\\) or 4"), ({"nope": 4}, "'nope'"),
                        ({"fc": 6}, "8 \\(int8\\) or 4"), ({1: 4}, "keys")):
        with pytest.raises(ValueError, match=match):
            kc.quantize(model, weight_bits=spec)


def test_sensitivity_policy_measures_every_layer_and_respects_its_budget(digits_split):
    (x, y), (xt, yt) = digits_split
    keras.utils.set_random_seed(0)
    model = compile_classifier(keras.Sequential([
        keras.Input((8, 8, 1)), L.Conv2D(8, 3, activation="relu", name="conv"),
        L.Flatten(), L.Dense(32, activation="relu", name="fc"), L.Dense(10, name="logits")]))
    model.fit(x, y, epochs=5, verbose=0)
    before = [w.copy() for w in model.get_weights()]
    report = kc.quantization.sensitivity(model, xt, yt)
    assert [r.name for r in report.layers] == ["conv", "fc", "logits"]
    assert [r.params for r in report.layers] == [72, 288 * 32, 320]
    for row in report.layers:
        assert row.drop == pytest.approx(report.baseline - row.accuracy)
    for a, b in zip(before, model.get_weights()):  # the model is left as it was
        np.testing.assert_array_equal(a, b)
    strict = report.choose_bits(max_drop=0.0)
    assert report.chosen_accuracy >= report.baseline
    loose = report.choose_bits(max_drop=1.0)
    assert loose == {"conv": 4, "fc": 4, "logits": 4} and report.low_bit_fraction == 1.0
    assert set(strict) == set(loose)
    assert "| **chosen mix** |" in report.to_markdown()
    qat = kc.quantize(model, weight_bits=strict)  # the dict plugs straight in
    assert {w.base_layer.name: w.weight_bits for w in qat.layers
            if isinstance(w, kc.QuantizeWrapper)} == strict
    with pytest.raises(ValueError, match="max_drop"):
        report.choose_bits(max_drop=-1)
    with pytest.raises(ValueError, match="same, non-zero number"):
        kc.quantization.sensitivity(model, xt, yt[:-1])


def test_transposed_conv_keeps_its_4_bit_values_in_int8_storage(digits_split):
    """TRANSPOSE_CONV takes no INT4 weights: a clear warning, and the 4-bit
    levels stored exactly as int8 values (multiples of 18)."""
    (x, _), (xt, _) = digits_split
    model = keras.Sequential([keras.Input((8, 8, 1)),
                              L.Conv2DTranspose(4, 3, strides=2, padding="same", name="up"),
                              L.Flatten(), L.Dense(10)])
    qat = _calibrated(model, x, weight_bits={L.Conv2DTranspose: 4})
    with pytest.warns(UserWarning, match="'up' .*TRANSPOSE_CONV takes no INT4"):
        plain = kc.strip(qat)
    np.testing.assert_allclose(plain.predict(xt, verbose=0), qat.predict(xt, verbose=0),
                               atol=1e-5)
    tfl = tflite_export.convert(plain, mode="int8", io_dtype="int8")
    weights = next(inputs[1] for op, inputs, _ in tfl.operators if op == "TRANSPOSE_CONV")
    assert weights.dtype == "INT8"
    values = tfl.constant(weights).astype(int)
    assert np.all(values % 18 == 0) and len(np.unique(values)) <= 15
    micro = tflite_export.predict(tfl, xt[:50], "micro")
    assert np.mean(np.argmax(micro, 1) == np.argmax(tflite_export.predict(tfl, xt[:50]), 1)) >= 0.98


def test_lut_compression_shrinks_4_bit_int8_weights_and_keeps_micro_outputs(digits_split):
    """4-bit values stored as int8 (a transposed convolution) compress to 4-bit
    indices in TFLite-Micro's look-up-table format, with identical outputs."""
    (x, _), (xt, _) = digits_split
    model = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(8, 3, padding="same"),
                              L.Conv2DTranspose(32, 3, strides=2, padding="same", name="up"),
                              L.GlobalAveragePooling2D(), L.Dense(10)])
    qat = _calibrated(model, x, weight_bits={L.Conv2DTranspose: 4})
    with pytest.warns(UserWarning, match="TRANSPOSE_CONV"):
        tfl = tflite_export.convert(kc.strip(qat), mode="int8", io_dtype="int8")
    result = tflite_export.compress_lut(tfl)
    [tensor] = result.tensors
    assert tensor.original_bytes == 3 * 3 * 32 * 8 and tensor.index_bits == 4
    assert result.model.size < tfl.size and result.saved_bytes >= tensor.original_bytes // 4
    assert "TFLM_DECODE" in result.model.ops
    np.testing.assert_array_equal(tflite_export.predict(result.model, xt[:40], "micro"),
                                  tflite_export.predict(tfl, xt[:40], "micro"))
    # 8-bit weights use their full range: nothing to gain, the model comes back as is.
    plain8 = tflite_export.convert(kc.strip(_calibrated(model, x)), mode="int8")
    assert tflite_export.compress_lut(plain8).tensors == []
    with pytest.raises(ValueError, match="max_index_bits"):
        tflite_export.compress_lut(tfl, max_index_bits=8)


def _calibrated(model, x, **quantize_args):
    """`kc.quantize(model, **quantize_args)` with ranges from 3 training calls."""
    qat = kc.quantize(model, **quantize_args)
    for _ in range(3):
        qat(x[:64].astype("float32"), training=True)
    return qat


def _residual_cnn() -> keras.Model:
    inputs = keras.Input((28, 28, 1))
    x = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(inputs)
    x = L.ReLU()(L.BatchNormalization()(x))
    y = L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    y = L.ReLU(6.0)(L.BatchNormalization()(y))
    x = L.ReLU()(L.Add()([x, L.Conv2D(8, 1)(y)]))
    x = L.MaxPooling2D()(x)
    return keras.Model(inputs, L.Dense(10)(L.Flatten()(x)))


def test_16x8_qat_converts_to_int16_activations_that_match_keras(mnist_split):
    """16-bit activation QAT: the stripped model converts with int16x8, every
    activation tensor int16 and every kernel int8, and LiteRT and TFLite-Micro
    follow Keras far more closely than the int8 conversion of the same model."""
    (x, y), (xt, yt) = mnist_split
    x, xt = x[:4000, ..., None], xt[:1000, ..., None]
    keras.utils.set_random_seed(0)
    float_model = compile_classifier(_residual_cnn())
    float_model.fit(x, y[:4000], batch_size=64, epochs=1, verbose=0)
    qat = compile_classifier(kc.quantize(float_model, activation_bits=16))
    qat.fit(x, y[:4000], batch_size=64, epochs=1, verbose=0)
    plain = kc.strip(qat)
    assert not any(type(layer).__name__ == "FakeQuant" for layer in plain.layers)
    keras_out = plain.predict(xt, verbose=0)
    # Stripping drops only the 16-bit rounding (steps of range / 32,767).
    np.testing.assert_allclose(keras_out, qat.predict(xt, verbose=0), atol=5e-3)

    tfl = tflite_export.convert(plain, mode="int16x8", representative_data=x[:300])
    assert tfl.is_fully_integer
    assert {t.dtype for t in tfl.tensors if not t.is_constant} == {"INT16"}
    assert set(sum(_weight_types(tfl).values(), [])) == {"INT8"}
    litert = tflite_export.predict(tfl, xt)
    micro = tflite_export.predict(tfl, xt, "micro")
    keras_acc = np.mean(np.argmax(keras_out, 1) == yt[:1000])
    assert np.mean(np.argmax(litert, 1) == yt[:1000]) >= keras_acc - 0.003
    assert np.mean(np.argmax(litert, 1) == np.argmax(keras_out, 1)) >= 0.995
    assert np.mean(np.argmax(micro, 1) == np.argmax(litert, 1)) >= 0.995
    int8 = tflite_export.predict(
        tflite_export.convert(plain, mode="int8", representative_data=x[:300]), xt)
    error16 = np.median(np.abs(litert - keras_out))
    assert error16 < np.median(np.abs(int8 - keras_out)) / 4, error16


def test_16x8_conversion_needs_representative_data_and_micro_names_missing_kernels(
        digits_split):
    (x, _), _ = digits_split
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.ops.exp(L.Conv2D(4, 3, name="conv")(inputs)))
    with pytest.raises(ValueError, match="int16x8' needs `representative_data`"):
        tflite_export.convert(model, mode="int16x8")
    tfl = tflite_export.convert(model, mode="int16x8", representative_data=x[:100])
    assert {"CONV_2D", "EXP"} <= set(tfl.ops)
    # LiteRT runs it; TFLite-Micro has no int16 EXP kernel, and says so.
    assert tflite_export.predict(tfl, x[:4]).shape == (4, 6, 6, 4)
    with pytest.raises(ValueError, match=r"no 16-bit \(16x8\) EXP kernel.*mode='int8'"):
        tflite_export.predict(tfl, x[:4], "micro")
    with pytest.raises(ValueError, match="EXP kernel failed to prepare"):
        tflite_export.export_micro(tfl, "unused_dir")
