"""Quantization-aware training on real data: fully int8 TFLite models with no
QUANTIZE/DEQUANTIZE inside, accuracy parity with the QAT Keras model, pruned
zeros kept, BatchNormalization folded exactly, save/resume, clear errors."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_compress as kc
import tflite_export
from conftest import compile_classifier

L = keras.layers
# Non-constant tensors that are shapes (e.g. RESHAPE's target) may be int32.
INTEGER_TYPES = {"INT8", "INT32"}


def residual_cnn() -> keras.Model:
    """Conv2D+BN+ReLU, DepthwiseConv2D+BN+ReLU6, a 1x1 Conv+BN, a residual Add
    with ReLU, pooling and a Dense head."""
    inputs = keras.Input((28, 28, 1), name="image")
    x = L.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="stem")(inputs)
    x = L.BatchNormalization(momentum=0.9, name="stem_bn")(x)
    x = L.ReLU(name="stem_relu")(x)
    y = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    y = L.BatchNormalization(momentum=0.9, name="dw_bn")(y)
    y = L.ReLU(6.0, name="dw_relu6")(y)
    y = L.Conv2D(16, 1, use_bias=False, name="pw")(y)
    y = L.BatchNormalization(momentum=0.9, name="pw_bn")(y)
    x = L.Add(name="residual")([x, y])
    x = L.ReLU(name="residual_relu")(x)
    x = L.MaxPooling2D(2, name="pool")(x)
    x = L.Reshape((7 * 7 * 16,), name="flatten")(x)
    return keras.Model(inputs, L.Dense(10, name="logits")(x), name="residual_cnn")


def images(split):
    (x, y), (xt, yt) = split
    return (x[..., None], y), (xt[..., None], yt)


def assert_int8_graph(tfl: tflite_export.TFLiteModel) -> None:
    """int8 I/O, only int8/int32 tensors, no QUANTIZE/DEQUANTIZE op inside."""
    assert tfl.inputs[0].dtype == "INT8" and tfl.outputs[0].dtype == "INT8"
    assert not {"QUANTIZE", "DEQUANTIZE"} & set(tfl.ops), tfl.ops
    dtypes = {t.dtype for t in tfl.tensors}
    assert dtypes <= INTEGER_TYPES, dtypes
    for t in tfl.tensors:
        if t.dtype == "INT32" and not t.is_constant:
            pytest.fail(f"non-constant int32 tensor {t.name}")
    assert tfl.is_fully_integer


def _set_qat(model, on: bool) -> None:
    """Switch fake quantization of every quantizer in `model` on or off (off:
    the wrapped model computes exactly what the float model does)."""
    for layer in model.layers:
        if hasattr(layer, "enabled"):
            layer.enabled.assign(float(on))


def qat_and_convert(model, split, epochs, batch_size=64, callbacks=()):
    (x, y), (xt, yt) = split
    qat = compile_classifier(kc.quantize(model))
    qat.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, callbacks=list(callbacks))
    keras_acc = qat.evaluate(xt, yt, verbose=0)[1]
    plain = kc.strip(qat)
    tfl = tflite_export.convert(plain, mode="int8", io_dtype="int8")
    return qat, plain, tfl, keras_acc


@pytest.mark.slow
def test_residual_cnn_qat_is_int8_end_to_end_within_half_a_point(mnist_split):
    split = images(mnist_split)
    _, (xt, yt) = split
    qat, plain, tfl, keras_acc = qat_and_convert(residual_cnn(), split, epochs=3)
    assert_int8_graph(tfl)
    assert set(tfl.ops) == {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MAX_POOL_2D",
                            "RESHAPE", "FULLY_CONNECTED"}
    # BN folded and ReLU fused: one weight layer per conv, nothing else.
    assert [type(layer).__name__ for layer in plain.layers if layer.weights] == [
        "Conv2D", "DepthwiseConv2D", "Conv2D", "Dense"]
    litert = np.argmax(tflite_export.predict(tfl, xt), 1)
    litert_acc = float(np.mean(litert == yt))
    print(f"\nresidual CNN QAT: Keras {keras_acc:.4f}, LiteRT int8 {litert_acc:.4f}")
    assert keras_acc > 0.93
    assert abs(litert_acc - keras_acc) <= 0.005
    # TFLite-Micro runs it and agrees with LiteRT's reference kernels.
    n = 300
    micro = np.argmax(tflite_export.predict(tfl, xt[:n], "micro"), 1)
    reference = np.argmax(tflite_export.predict(tfl, xt[:n], "litert-reference"), 1)
    assert np.mean(micro == reference) >= 0.995


@pytest.mark.slow
def test_lenet5_qat_is_int8_end_to_end_within_half_a_point(mnist_split):
    split = images(mnist_split)
    _, (xt, yt) = split
    qat, plain, tfl, keras_acc = qat_and_convert(kc.models.lenet5(), split, epochs=2)
    assert_int8_graph(tfl)
    litert_acc = float(np.mean(np.argmax(tflite_export.predict(tfl, xt), 1) == yt))
    print(f"\nLeNet-5 QAT: Keras {keras_acc:.4f}, LiteRT int8 {litert_acc:.4f}")
    assert keras_acc > 0.95
    assert abs(litert_acc - keras_acc) <= 0.005


def _fc_weight_zeros(tfl: tflite_export.TFLiteModel) -> list[int]:
    zeros = []
    for op, inputs, _ in tfl.operators:
        if op == "FULLY_CONNECTED":
            zeros.append(int(np.count_nonzero(tfl.constant(inputs[1]) == 0)))
    return zeros


@pytest.mark.slow
def test_prune_then_qat_in_one_fit_keeps_every_zero(mnist_split):
    """LeNet-300-100: prune to 80 % over epochs 0-1, QAT from epoch 2 in the
    same fit; the int8 weights have exactly the zeros of the stripped kernels."""
    (x, y), (xt, yt) = mnist_split
    steps = int(np.ceil(len(x) / 64))
    pruned = kc.prune(kc.models.lenet_300_100(),
                      schedule=kc.PolynomialDecay(0.0, 0.8, 0, 2 * steps, frequency=steps // 4))
    qat = compile_classifier(kc.quantize(pruned))
    history = qat.fit(x, y, epochs=4, batch_size=64, verbose=0, callbacks=[
        kc.PruningCallback(), kc.QuantizationCallback(start_epoch=2)])
    assert history.history["qat"] == [0.0, 0.0, 1.0, 1.0]
    report = kc.sparsity(qat)
    assert report.overall == pytest.approx(0.8, abs=1e-3)
    plain = kc.strip(qat)
    dense = [layer for layer in plain.layers if isinstance(layer, L.Dense)]
    masks = {w.layer.name: w._targets[0][2].numpy() for w in kc.pruning.callback
             .find_pruning_wrappers(qat)}
    for layer in dense:  # every pruned weight is still exactly zero
        assert np.all(layer.kernel.numpy()[masks[layer.name] == 0] == 0)
    stripped_zeros = [int(np.count_nonzero(layer.kernel.numpy() == 0)) for layer in dense]
    # int8 rounding may zero a few more tiny weights, never fewer.
    assert all(z >= r.zeros for z, r in zip(stripped_zeros, report))
    tfl = tflite_export.convert(plain, mode="int8", io_dtype="int8")
    assert_int8_graph(tfl)
    assert _fc_weight_zeros(tfl) == stripped_zeros
    keras_acc = qat.evaluate(xt, yt, verbose=0)[1]
    litert_acc = float(np.mean(np.argmax(tflite_export.predict(tfl, xt), 1) == yt))
    print(f"\npruned (0.8) LeNet-300-100 QAT: Keras {keras_acc:.4f}, LiteRT {litert_acc:.4f}")
    assert keras_acc > 0.93 and abs(litert_acc - keras_acc) <= 0.005


def test_int8_weights_are_the_trained_grid(digits_split):
    """The converter stores exactly round(kernel / scale) of the stripped model:
    per-channel scales max|w|/127, zero point 0, for conv and Dense alike."""
    (x, y), _ = digits_split
    model = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(8, 3, activation="relu"),
                              L.Reshape((6 * 6 * 8,)), L.Dense(10)])
    qat = compile_classifier(kc.quantize(model))
    qat.fit(x, y, epochs=2, verbose=0)
    plain = kc.strip(qat)
    tfl = tflite_export.convert(plain, mode="int8")
    conv, dense = (layer for layer in plain.layers if layer.weights)
    by_op = {op: inputs[1] for op, inputs, _ in tfl.operators if len(inputs) > 1}
    for op, layer, axes in (("CONV_2D", conv, (0, 1, 2)), ("FULLY_CONNECTED", dense, (0,))):
        info = by_op[op]
        kernel = layer.kernel.numpy()
        scales = np.max(np.abs(kernel), axis=axes) / 127
        np.testing.assert_allclose(info.scale, scales, rtol=1e-6)
        assert set(info.zero_point) == {0}
        stored = tfl.constant(info).astype(np.float32)
        expected = np.round(kernel / scales)
        # TFLite keeps output channels first.
        expected = np.moveaxis(expected, -1, 0) if op == "CONV_2D" else expected.T
        np.testing.assert_array_equal(stored, expected)


def test_per_tensor_dense_converts_with_one_scale(digits_split, tmp_path):
    """`quantize(per_tensor_dense=True)`: the stripped Dense kernel sits on one
    int8 grid, the converter keeps exactly that grid (one scale, no rounding)
    while the conv stays per channel, LiteRT agrees with Keras, and the
    flatbuffer is smaller than the per-channel model's. The option survives
    save/load."""
    (x, y), (xt, _) = digits_split
    model = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(8, 3, activation="relu"),
                              L.Reshape((6 * 6 * 8,)), L.Dense(32, activation="relu"),
                              L.Dense(10)])
    sizes = {}
    for per_tensor in (False, True):
        keras.utils.set_random_seed(0)
        qat = compile_classifier(kc.quantize(model, per_tensor_dense=per_tensor))
        qat.fit(x, y, epochs=2, verbose=0)
        plain = kc.strip(qat)
        tfl = tflite_export.convert(plain, mode="int8", io_dtype="float32")
        sizes[per_tensor] = tfl.size
        dense = [layer for layer in plain.layers if isinstance(layer, L.Dense)]
        fc = [inputs[1] for op, inputs, _ in tfl.operators if op == "FULLY_CONNECTED"]
        conv = next(inputs[1] for op, inputs, _ in tfl.operators if op == "CONV_2D")
        assert len(conv.scale) == 8
        for info, layer in zip(fc, dense):
            kernel = layer.kernel.numpy()
            assert len(info.scale) == (1 if per_tensor else kernel.shape[1])
            if per_tensor:
                scale = np.max(np.abs(kernel)) / 127
                np.testing.assert_allclose(info.scale, [scale], rtol=1e-6)
                np.testing.assert_array_equal(tfl.constant(info), np.round(kernel / scale).T)
        keras_out = plain.predict(xt[:200], verbose=0)
        lite_out = tflite_export.predict(tfl, xt[:200], runtime="litert-reference")
        assert np.mean(np.argmax(keras_out, 1) == np.argmax(lite_out, 1)) >= 0.98
    assert sizes[True] < sizes[False]
    qat.save(tmp_path / "qat.keras")
    loaded = keras.models.load_model(tmp_path / "qat.keras")
    assert [w.per_tensor for w in loaded.layers if isinstance(w, kc.QuantizeWrapper)] == [
        False, True, True]
    with pytest.raises(ValueError, match="only for Dense"):
        kc.QuantizeWrapper(L.Conv2D(2, 3), per_tensor=True)
    with pytest.raises(ValueError, match="per_tensor_dense"):
        kc.quantize(model, per_tensor_dense="yes")


def test_batchnorm_folding_is_exact_when_quantization_is_off(digits_split):
    """With fake quantization switched off the QAT model computes what the float
    Conv+BN+ReLU model computes, in training (batch statistics) and inference."""
    (x, _), _ = digits_split
    inputs = keras.Input((8, 8, 1))
    h = L.Conv2D(6, 3, name="conv")(inputs)
    h = L.BatchNormalization(name="bn")(h)
    h = L.ReLU(name="relu")(h)
    h = L.Reshape((6 * 6 * 6,))(h)
    model = keras.Model(inputs, L.Dense(4, name="fc")(h))
    bn = model.get_layer("bn")
    bn.set_weights([np.linspace(0.5, 2, 6), np.linspace(-1, 1, 6),
                    np.linspace(-0.2, 0.2, 6), np.linspace(0.5, 3, 6)])
    qat = kc.quantize(model)
    assert not any(isinstance(layer, L.BatchNormalization) for layer in qat.layers)
    _set_qat(qat, False)
    batch = x[:64].astype("float32")
    np.testing.assert_allclose(qat(batch, training=False), model(batch, training=False),
                               atol=1e-5)
    np.testing.assert_allclose(qat(batch, training=True), model(batch, training=True),
                               atol=1e-4)
    wrapper = qat.get_layer("quant_conv")
    np.testing.assert_allclose(wrapper.batchnorm.moving_mean.numpy(),
                               bn.moving_mean.numpy(), atol=1e-6)


@pytest.fixture
def calibration(digits_split):
    (x, _), _ = digits_split
    return x[:64].astype("float32")


def _calibrate(model, x):
    for _ in range(3):
        model(x, training=True)
    return model


STRUCTURES = {
    "sequential_softmax_avgpool": lambda: keras.Sequential([
        keras.Input((8, 8, 1)), L.Conv2D(8, 3, activation="relu"), L.AveragePooling2D(2),
        L.Flatten(), L.Dense(10, activation="softmax")]),
    "concatenate_gap": lambda: _functional(lambda i: L.Dense(10)(L.GlobalAveragePooling2D()(
        L.Concatenate()([L.Conv2D(4, 1, activation="relu")(i),
                         L.Conv2D(6, 3, padding="same")(i)])))),
    "nested_block_sigmoid": lambda: _functional(lambda i: L.Dense(10, activation="sigmoid")(
        L.Flatten()(keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(4, 3),
                                      L.BatchNormalization(), L.ReLU()], name="block")(i)))),
    "separable_bn_relu": lambda: _functional(lambda i: L.Dense(10)(L.Flatten()(L.ReLU()(
        L.BatchNormalization()(L.SeparableConv2D(8, 3, depth_multiplier=2, use_bias=False)(i)))))),
    "conv1d_dense_bn": lambda: keras.Sequential([
        keras.Input((8, 8)), L.Conv1D(8, 3, activation="relu"), L.MaxPooling1D(2),
        L.Flatten(), L.Dense(16), L.BatchNormalization(), L.ReLU(), L.Dense(10)]),
}


def _functional(body):
    inputs = keras.Input((8, 8, 1))
    return keras.Model(inputs, body(inputs))


@pytest.mark.parametrize("name", sorted(STRUCTURES))
def test_structures_convert_fully_int8_and_match(name, calibration):
    model = STRUCTURES[name]()
    x = calibration.reshape((-1, *model.input_shape[1:]))
    qat = _calibrate(kc.quantize(model), x)
    plain = kc.strip(qat)
    np.testing.assert_allclose(plain.predict(x, verbose=0), qat.predict(x, verbose=0), atol=1e-6)
    tfl = tflite_export.convert(plain, mode="int8", io_dtype="int8")
    assert_int8_graph(tfl)
    step = tfl.outputs[0].scale[0]
    litert = tflite_export.predict(tfl, x)
    assert np.max(np.abs(litert - plain.predict(x, verbose=0))) <= 3 * step
    np.testing.assert_array_equal(tflite_export.predict(tfl, x[:8], "micro"),
                                  tflite_export.predict(tfl, x[:8], "litert-reference"))


def test_qat_model_saves_loads_and_resumes(digits_split, tmp_path):
    (x, y), (xt, _) = digits_split
    model = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(8, 3, use_bias=False),
                              L.BatchNormalization(), L.ReLU(), L.Flatten(), L.Dense(10)])
    qat = compile_classifier(kc.quantize(kc.prune(model, skip=["dense"])))
    callbacks = [kc.PruningCallback(), kc.QuantizationCallback(start_epoch=1, freeze_bn_epoch=2)]
    qat.fit(x, y, epochs=2, verbose=0, callbacks=callbacks)
    path = tmp_path / "qat.keras"
    qat.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(xt, verbose=0), qat.predict(xt, verbose=0))
    for a, b in zip(qat.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    # Both continue identically: epoch 2 freezes BN statistics.
    for m in (qat, loaded):
        keras.utils.set_random_seed(3)
        m.fit(x, y, epochs=3, initial_epoch=2, verbose=0, shuffle=False, callbacks=[
            kc.PruningCallback(), kc.QuantizationCallback(start_epoch=1, freeze_bn_epoch=2)])
    np.testing.assert_allclose(loaded.predict(xt, verbose=0), qat.predict(xt, verbose=0),
                               atol=1e-5)
    wrapper = next(layer for layer in loaded.layers if isinstance(layer, kc.QuantizeWrapper))
    assert float(wrapper.bn_frozen.numpy()) == 1.0
    # The stripped model saves and loads too (FakeQuant is registered).
    kc.strip(loaded).save(tmp_path / "plain.keras")
    again = keras.models.load_model(tmp_path / "plain.keras")
    np.testing.assert_allclose(again.predict(xt, verbose=0), loaded.predict(xt, verbose=0),
                               atol=1e-6)


def test_callback_observes_before_start_and_freezes(digits_split):
    (x, y), _ = digits_split
    model = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(4, 3, use_bias=False),
                              L.BatchNormalization(), L.ReLU(), L.Flatten(), L.Dense(10)])
    qat = compile_classifier(kc.quantize(model))
    qat.fit(x, y, epochs=1, verbose=0, callbacks=[kc.QuantizationCallback(start_epoch=1)])
    quantizers = [layer for layer in qat.layers if isinstance(layer, kc.ActivationQuantizer)]
    assert all(float(q.enabled.numpy()) == 0.0 for q in quantizers)
    assert all(q.range[1] > q.range[0] for q in quantizers)  # observed while off
    wrapper = next(layer for layer in qat.layers if isinstance(layer, kc.QuantizeWrapper))
    qat.fit(x, y, epochs=3, initial_epoch=1, verbose=0, callbacks=[
        kc.QuantizationCallback(start_epoch=1, freeze_bn_epoch=2, freeze_ranges_epoch=2)])
    frozen_stats = wrapper.batchnorm.moving_mean.numpy()
    frozen_range = quantizers[0].range
    qat.fit(x, y, epochs=4, initial_epoch=3, verbose=0, callbacks=[
        kc.QuantizationCallback(start_epoch=1, freeze_bn_epoch=2, freeze_ranges_epoch=2)])
    np.testing.assert_array_equal(wrapper.batchnorm.moving_mean.numpy(), frozen_stats)
    assert quantizers[0].range == frozen_range
    assert float(wrapper.enabled.numpy()) == 1.0


def test_strip_before_training_names_the_quantizer():
    qat = kc.quantize(keras.Sequential([keras.Input((4,)), L.Dense(2)]))
    with pytest.raises(ValueError, match="has not seen any training batch"):
        kc.strip(qat)


def test_wrapped_before_training_evaluates_like_the_float_model(digits_split):
    """Until a quantizer has seen a training batch it has no range, and
    inference passes activations through (not all to zero): wrapping a trained
    model and evaluating it first gives the float accuracy, less only the int8
    weight grid. The first training batch switches activation quantization on."""
    (x, y), (xt, yt) = digits_split
    model = compile_classifier(keras.Sequential([
        keras.Input((8, 8, 1)), L.Conv2D(8, 3, use_bias=False), L.BatchNormalization(),
        L.ReLU(), L.Flatten(), L.Dense(10)]))
    model.fit(x, y, epochs=8, verbose=0)
    float_acc = model.evaluate(xt, yt, verbose=0)[1]
    assert float_acc > 0.9
    qat = compile_classifier(kc.quantize(model))
    assert abs(qat.evaluate(xt, yt, verbose=0)[1] - float_acc) <= 0.01
    quantizers = [layer for layer in qat.layers if isinstance(layer, kc.ActivationQuantizer)]
    assert quantizers and all(float(q.observed.numpy()) == 0.0 for q in quantizers)
    # One training call observes the ranges; inference then lands on their grids.
    qat(xt[:64], training=True)
    acts = keras.Model(qat.inputs, quantizers[-1].output)(xt, training=False).numpy()
    lo, hi = quantizers[-1].range
    steps = acts / ((hi - lo) / 255.0)  # the grid holds zero exactly
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)
    assert len(np.unique(acts)) <= 256


def test_unquantizable_layers_are_all_listed_and_skip_keeps_them_float(calibration):
    inputs = keras.Input((8, 8, 1))
    h = L.Reshape((64,))(inputs)
    h = L.GroupNormalization(4, name="norm")(h)
    h = L.Dense(16, name="fc")(h)
    h = L.Add(name="add")([h, h])
    h = L.BatchNormalization(name="lonely_bn")(h)
    model = keras.Model(inputs, L.Dense(10, name="head")(h))
    with pytest.raises(ValueError) as info:
        kc.quantize(model)
    message = str(info.value)
    assert "'norm' (GroupNormalization)" in message
    assert "'lonely_bn' (BatchNormalization) does not directly follow" in message
    assert "skip=" in message
    qat = _calibrate(kc.quantize(model, skip=["norm", "lonely_bn"]), calibration)
    tfl = tflite_export.convert(kc.strip(qat), mode="int8", allow_float_ops=True)
    assert tfl.float_ops and "QUANTIZE" in tfl.ops  # float on purpose, as asked
    with pytest.raises(tflite_export.ConversionError, match="float"):
        tflite_export.convert(kc.strip(qat), mode="int8")


@pytest.mark.parametrize("kwargs, match", [
    (dict(weight_bits=9), "weight_bits"),
    (dict(weight_bits="8"), "weight_bits"),
    (dict(activation_bits=1), "activation_bits"),
    (dict(activation_bits=12), "pass 8 or 16"),
    (dict(activation_bits=16, weight_bits=4), "16x8 models have int8 weights"),
    (dict(momentum=1.0), "momentum"),
    (dict(skip=["no_such_layer"]), "no_such_layer"),
    (dict(fold_batchnorm="yes"), "fold_batchnorm"),
])
def test_bad_arguments_are_named(kwargs, match):
    model = keras.Sequential([keras.Input((4,)), L.Dense(2)])
    with pytest.raises(ValueError, match=match):
        kc.quantize(model, **kwargs)


def test_refusals_name_the_layer():
    seq = keras.Sequential([keras.Input((8, 8, 3)), L.SeparableConv2D(4, 3, name="sep")])
    with pytest.raises(ValueError, match="'cluster_sep' .*SeparableConv inside a ClusterWrapper"):
        kc.quantize(kc.cluster(seq))
    qat = kc.quantize(keras.Sequential([keras.Input((4,)), L.Dense(2)]))
    with pytest.raises(ValueError, match="already quantized"):
        kc.quantize(qat)
    conv_bn = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(4, 3, name="conv"),
                                L.BatchNormalization(name="bn")])
    with pytest.raises(ValueError, match="'bn' .*not folded \\(fold_batchnorm=False\\)"):
        kc.quantize(conv_bn, fold_batchnorm=False)

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.fc = L.Dense(2)

        def call(self, x):
            return self.fc(x)

    with pytest.raises(ValueError, match="subclassed"):
        kc.quantize(Sub())
    with pytest.raises(ValueError, match="channels_last"):
        kc.QuantizeWrapper(L.Conv2D(2, 3, data_format="channels_first"))
    with pytest.raises(ValueError, match="'relu' or 'relu6'"):
        kc.QuantizeWrapper(L.Dense(2), activation="gelu")
    with pytest.raises(ValueError, match="start_epoch"):
        kc.QuantizationCallback(start_epoch=3, freeze_bn_epoch=1)
    with pytest.raises(ValueError, match="no quantized layer"):
        model = compile_classifier(keras.Sequential([keras.Input((4,)), L.Dense(2)]))
        model.fit(np.zeros((4, 4)), np.zeros(4), verbose=0,
                  callbacks=[kc.QuantizationCallback()])


def test_stock_tflite_converter_needs_no_representative_data(digits_split):
    """`strip` output goes through the plain `tf.lite.TFLiteConverter` too."""
    import tensorflow as tf

    (x, y), (xt, yt) = digits_split
    model = keras.Sequential([keras.Input((8, 8, 1), batch_size=1),
                              L.Conv2D(8, 3, use_bias=False), L.BatchNormalization(), L.ReLU(),
                              L.Flatten(), L.Dense(10)])
    qat = compile_classifier(kc.quantize(model))
    qat.fit(x, y, epochs=3, batch_size=1, verbose=0, steps_per_epoch=300)
    converter = tf.lite.TFLiteConverter.from_keras_model(kc.strip(qat))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    tfl = tflite_export.TFLiteModel(converter.convert())
    assert_int8_graph(tfl)
    keras_acc = qat.evaluate(xt, yt, verbose=0)[1]
    litert_acc = float(np.mean(np.argmax(tflite_export.predict(tfl, xt), 1) == yt))
    assert abs(litert_acc - keras_acc) <= 0.01


def test_rescaling_and_upsampling_become_int8_ops_tflite_micro_runs(digits_split):
    """Rescaling -> frozen 1x1 depthwise conv, UpSampling2D -> Resizing(nearest):
    the same function in Keras, fully int8 in TFLite (no float MUL/ADD, no TILE),
    and a constant non-zero bias keeps one value per channel in the int32 tensor."""
    (x, _), (xt, _) = digits_split
    x3 = np.repeat(x[:128], 3, axis=-1).astype("float32")
    xt3 = np.repeat(xt[:64], 3, axis=-1).astype("float32")
    model = keras.Sequential([
        keras.Input((8, 8, 3)), L.Rescaling([2.0, 1.0, 0.5], offset=-1.0, name="scale"),
        L.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="conv"),
        L.UpSampling2D(name="up"), L.Flatten(), L.Dense(10, name="fc")])
    qat = kc.quantize(model)
    names = [type(layer).__name__ for layer in qat.layers]
    assert "Rescaling" not in names and "UpSampling2D" not in names and "Resizing" in names
    assert not qat.get_layer("quant_scale").trainable_weights
    _set_qat(qat, False)  # QAT off: exactly the float model
    np.testing.assert_allclose(qat(xt3), model(xt3), atol=1e-6)
    _set_qat(qat, True)
    plain = kc.strip(_calibrate(qat, x3))
    tfl = tflite_export.convert(plain, mode="int8", io_dtype="int8")
    assert tfl.is_fully_integer and "TILE" not in tfl.ops and "MUL" not in tfl.ops
    assert {"DEPTHWISE_CONV_2D", "RESIZE_NEAREST_NEIGHBOR"} <= set(tfl.ops)
    bias = next(inputs[2] for op, inputs, _ in tfl.operators if op == "DEPTHWISE_CONV_2D")
    values = tfl.constant(bias).astype(float) * np.asarray(bias.scale)
    np.testing.assert_allclose(values, [-1.0, -1.0, -1.0], atol=1e-3)
    step = tfl.outputs[0].scale[0]
    reference = tflite_export.predict(tfl, xt3, "litert-reference")
    assert np.max(np.abs(reference - plain.predict(xt3, verbose=0))) <= 3 * step
    np.testing.assert_array_equal(tflite_export.predict(tfl, xt3, "micro"), reference)


def test_whole_input_average_pooling_becomes_mean_with_its_own_scale(digits_split):
    """An AveragePooling2D whose window is its whole input (ResNet's last
    pooling) becomes GlobalAveragePooling2D(keepdims=True) with a quantizer:
    the same function in float, and in int8 a MEAN whose output scale fits the
    mean, where AVERAGE_POOL_2D must keep its input's coarser scale, which
    fake quantization did not simulate. A smaller window stays a pool."""
    (x, y), (xt, yt) = digits_split
    model = keras.Sequential([
        keras.Input((8, 8, 1)), L.Conv2D(8, 3, padding="same", activation="relu", name="c1"),
        L.AveragePooling2D(2, name="local"), L.Conv2D(16, 3, padding="same", name="c2"),
        L.ReLU(name="relu"), L.AveragePooling2D(4, name="whole"),
        L.Flatten(name="flat"), L.Dense(10, name="fc")])
    qat = kc.quantize(model)
    kinds = {layer.name: type(layer).__name__ for layer in qat.layers}
    assert kinds["whole"] == "GlobalAveragePooling2D"
    assert kinds["whole_quant"] == "ActivationQuantizer"
    assert kinds["local"] == "AveragePooling2D" and "local_quant" not in kinds
    _set_qat(qat, False)  # QAT off: exactly the float model
    np.testing.assert_allclose(qat(xt[:64]), model(xt[:64]), atol=1e-5)
    _set_qat(qat, True)
    qat = compile_classifier(qat)
    qat.fit(x, y, batch_size=32, epochs=3, verbose=0)
    plain = kc.strip(qat)
    tfl = tflite_export.convert(plain, mode="int8", io_dtype="int8")
    assert_int8_graph(tfl)
    assert [op for op, _, _ in tfl.operators if "POOL" in op or op == "MEAN"] == [
        "AVERAGE_POOL_2D", "MEAN"]
    assert "QUANTIZE" not in tfl.ops
    source, mean = next((ins[0], outs[0]) for op, ins, outs in tfl.operators if op == "MEAN")
    assert mean.scale[0] < source.scale[0] / 2        # a finer grid than the pool's input
    keras_out = plain.predict(xt, verbose=0)
    reference = tflite_export.predict(tfl, xt, "litert-reference")
    step = tfl.outputs[0].scale[0]
    assert np.mean(np.abs(reference - keras_out)) <= step
    assert np.mean(np.argmax(reference, 1) != np.argmax(keras_out, 1)) <= 0.01
    # TFLite-Micro's int8 MEAN rounds its own way: a step apart at most.
    micro = tflite_export.predict(tfl, xt, "micro")
    assert np.max(np.abs(micro - reference)) <= step * 1.001


@pytest.mark.parametrize("structure", ["unstructured", "2:4", "channel"])
def test_pruned_separable_conv_splits_with_its_masks_and_keeps_pruning(structure, digits_split):
    """quantize(prune(model)) splits a pruned SeparableConv: the 1x1 convolution
    carries the pointwise masks, schedule and step, pruning goes on during QAT,
    and the int8 model keeps every zero."""
    (x, y), (xt, _) = digits_split
    model = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(8, 1, name="conv"),
                              L.SeparableConv2D(16, 3, activation="relu", name="sep"),
                              L.Flatten(), L.Dense(10, name="fc")])
    schedule = kc.PolynomialDecay(0.0, 0.5, 0, 30, frequency=10)
    pruned = compile_classifier(kc.prune(model, schedule, structure=structure, layers=["sep"]))
    with pytest.warns(UserWarning, match="final sparsity was not reached"):
        pruned.fit(x[:640], y[:640], batch_size=32, epochs=1, verbose=0,
                   callbacks=[kc.PruningCallback()])                # 20 steps: part way
    [old_mask] = [w.numpy() for w in pruned.get_layer("prune_sep").weights
                  if w.name == "pointwise_kernel_mask"]
    qat = compile_classifier(kc.quantize(pruned))
    split = next(layer for layer in qat.layers
                 if isinstance(layer, kc.QuantizeWrapper) and layer.name.endswith("pointwise"))
    inner = split.layer
    assert isinstance(inner, kc.PruningWrapper) and int(inner.pruning_step.numpy()) == 20
    [mask] = [w for w in inner.weights if w.name == "kernel_mask"]
    np.testing.assert_array_equal(mask.numpy(), old_mask)
    qat.fit(x[:640], y[:640], batch_size=32, epochs=1, verbose=0,
            callbacks=[kc.PruningCallback()])                       # 0.5 from step 30
    plain = kc.strip(qat)
    kernel = plain.get_layer("sep_pointwise").kernel.numpy()
    assert np.mean(kernel == 0) >= 0.5 - 1e-6
    assert np.all(kernel.reshape(old_mask.shape)[old_mask == 0] == 0)   # zeros stay zeros
    tfl = tflite_export.convert(plain, mode="int8", io_dtype="int8")
    assert tfl.is_fully_integer
    weights = [tfl.constant(inputs[1]) for op, inputs, _ in tfl.operators
               if op == "CONV_2D" and inputs[1].shape[0] == 16]
    assert len(weights) == 1 and np.mean(weights[0] == 0) >= 0.5 - 1e-6
    agree = np.argmax(tflite_export.predict(tfl, xt[:100]), 1) == np.argmax(
        plain.predict(xt[:100], verbose=0), 1)
    assert np.mean(agree) >= 0.97


def test_weight_quantizer_switches_inside_one_compiled_function(digits_split):
    """`enabled` is read at run time (a cond branch): one traced function
    gives the float kernel while off and the int8-grid kernel once on."""
    import tensorflow as tf

    (x, _), _ = digits_split
    batch = x[:32].reshape(32, -1).astype("float32")
    model = keras.Sequential([keras.Input((64,)), L.Dense(10, name="fc")])
    qat = kc.quantize(model)
    wrapper = next(layer for layer in qat.layers if isinstance(layer, kc.QuantizeWrapper))
    forward = tf.function(lambda v: wrapper(v, training=True))
    kernel, bias = model.get_layer("fc").get_weights()
    wrapper.enabled.assign(0.0)
    np.testing.assert_allclose(forward(batch), batch @ kernel + bias, rtol=1e-5, atol=1e-5)
    wrapper.enabled.assign(1.0)
    scale = np.abs(kernel).max(axis=0) / 127.0
    on_grid = np.round(kernel / scale) * scale
    np.testing.assert_allclose(forward(batch), batch @ on_grid + bias, rtol=1e-5, atol=1e-5)
    assert forward.experimental_get_tracing_count() == 1
