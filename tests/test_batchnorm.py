"""recalibrate_batchnorm on real MNIST: statistics re-estimated exactly, accuracy
recovered after one-shot compression, nothing else touched."""

import keras
import numpy as np
import pytest

import keras_compress as kc
from keras_compress.pruning import masks
from keras_compress.quantization.callback import find_quantizers

from conftest import compile_classifier

L = keras.layers


def _cnn() -> keras.Model:
    inputs = keras.Input((28, 28, 1))
    x = L.Conv2D(8, 3, padding="same", use_bias=False, name="conv1")(inputs)
    x = L.ReLU()(L.BatchNormalization(name="bn1")(x))
    x = L.Dropout(0.3, name="drop")(L.MaxPooling2D(name="pool1")(x))
    x = L.Conv2D(16, 3, padding="same", use_bias=False, name="conv2")(x)
    x = L.ReLU()(L.BatchNormalization(name="bn2")(x))
    x = L.Flatten()(L.MaxPooling2D(name="pool2")(x))
    return keras.Model(inputs, L.Dense(10, name="logits")(x), name="bn_cnn")


@pytest.fixture(scope="module")
def trained(mnist_split):
    (x, y), _ = mnist_split
    keras.utils.set_random_seed(0)
    model = compile_classifier(_cnn())
    model.fit(x[..., None], y, epochs=2, batch_size=64, verbose=0)
    return model.get_weights()


def _model(weights) -> keras.Model:
    model = _cnn()
    model.set_weights(weights)
    return model


def _accuracy(model, x, y) -> float:
    return float(np.mean(np.argmax(model.predict(x, verbose=0), axis=1) == y))


def test_statistics_are_the_batch_average_weighted_by_size(trained, mnist_split):
    # Also shows that dropout is off while it runs: the reference runs without it.
    (x, _), _ = mnist_split
    x = x[:1000, ..., None]  # 15 batches of 64 and one of 40
    model = _model(trained)
    before = {bn: model.get_layer(bn).moving_mean.numpy() for bn in ("bn1", "bn2")}
    assert kc.recalibrate_batchnorm(model, x, batch_size=64, verbose=False) == ["bn1", "bn2"]
    # Reference: each BatchNormalization's input in training mode (bn2's input
    # depends on bn1 normalizing by batch statistics) without dropout, batch by batch.
    model.get_layer("drop").rate = 0.0
    taps = keras.Model(model.input, [model.get_layer(n).input for n in ("bn1", "bn2")])
    sums = {n: [0.0, 0.0] for n in ("bn1", "bn2")}
    for start in range(0, len(x), 64):
        batch = x[start: start + 64]
        for name, value in zip(("bn1", "bn2"), taps(batch, training=True)):
            value = keras.ops.convert_to_numpy(value).astype(np.float64)
            sums[name][0] += len(batch) * value.mean(axis=(0, 1, 2))
            sums[name][1] += len(batch) * value.var(axis=(0, 1, 2))
    for name, (mean, var) in sums.items():
        bn = model.get_layer(name)
        np.testing.assert_allclose(bn.moving_mean.numpy(), mean / len(x), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(bn.moving_variance.numpy(), var / len(x), rtol=1e-4, atol=1e-5)
        assert not np.allclose(bn.moving_mean.numpy(), before[name])


def test_recovers_the_accuracy_of_a_one_shot_pruned_cnn(trained, mnist_split):
    (x, _), (xt, yt) = mnist_split
    model = _model(trained)
    for name in ("conv1", "conv2"):
        kernel = model.get_layer(name).kernel
        kernel.assign(kernel.numpy() * masks.magnitude(kernel.numpy(), 0.7))
    pruned = _accuracy(model, xt[..., None], yt)
    kc.recalibrate_batchnorm(model, x[:2048, ..., None], batch_size=64, verbose=False)
    recalibrated = _accuracy(model, xt[..., None], yt)
    # Measured: 0.46 -> 0.89 (stale statistics mis-normalize every channel).
    assert recalibrated > pruned + 0.15, (pruned, recalibrated)


def test_only_the_statistics_change_even_in_a_frozen_qat_model(trained, mnist_split):
    (x, y), _ = mnist_split
    x, y = x[:512, ..., None], y[:512]
    schedule = kc.ConstantSparsity(0.5, begin_step=0, frequency=1)
    model = compile_classifier(kc.quantize(kc.prune(_model(trained), schedule)))
    model.fit(x, y, epochs=2, batch_size=64, verbose=0,
              callbacks=[kc.PruningCallback(), kc.QuantizationCallback(freeze_bn_epoch=1)])
    wrappers = [w for w in find_quantizers(model)[0] if w.batchnorm is not None]
    assert {w.batchnorm.name for w in wrappers} == {"bn1", "bn2"}
    assert all(float(w.bn_frozen.numpy()) == 1.0 for w in wrappers)
    stats = {id(v) for w in wrappers for v in (w.batchnorm.moving_mean, w.batchnorm.moving_variance)}
    others = {v.path: v.numpy() for v in model.variables if id(v) not in stats}
    old = {v.path: v.numpy() for v in model.variables if id(v) in stats}

    names = kc.recalibrate_batchnorm(model, x, batch_size=64, verbose=False)
    assert names == ["bn1", "bn2"]
    for v in model.variables:
        if id(v) in stats:
            assert not np.allclose(v.numpy(), old[v.path]), v.path
        else:  # pruning step, masks, ranges, BN freeze, weights, seeds
            np.testing.assert_array_equal(v.numpy(), others[v.path], err_msg=v.path)
    assert model.get_layer("drop").rate == 0.3  # switched off while it ran, and back


def test_accepts_datasets_of_pairs_and_stops_after_steps(trained, mnist_split):
    import tensorflow as tf

    (x, y), _ = mnist_split
    x = x[:256, ..., None]
    from_array = _model(trained)
    kc.recalibrate_batchnorm(from_array, x[:128], batch_size=32, verbose=False)
    from_dataset = _model(trained)
    data = tf.data.Dataset.from_tensor_slices((x, y[:256])).batch(32)
    kc.recalibrate_batchnorm(from_dataset, data, steps=4, verbose=False)

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return x[32 * i: 32 * (i + 1)], y[32 * i: 32 * (i + 1)]

    from_pydataset = _model(trained)
    kc.recalibrate_batchnorm(from_pydataset, Batches(), verbose=False)
    for name in ("bn1", "bn2"):
        for other in (from_dataset, from_pydataset):
            np.testing.assert_allclose(other.get_layer(name).moving_mean.numpy(),
                                       from_array.get_layer(name).moving_mean.numpy(),
                                       rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("data, kwargs, match", [
    (np.zeros((4, 28, 28, 3), np.float32), {}, r"shape \(4, 28, 28, 3\).*\(None, 28, 28, 1\)"),
    (np.zeros((0, 28, 28, 1), np.float32), {}, "no batch"),
    (np.zeros((4, 28, 28, 1), np.float32), dict(steps=0), "steps"),
    (np.zeros((4, 28, 28, 1), np.float32), dict(batch_size=0), "batch_size"),
    (np.full((4, 28, 28, 1), np.nan, np.float32), {}, "'bn1'.*NaN"),
])
def test_bad_input_is_named_and_leaves_the_statistics(trained, data, kwargs, match):
    model = _model(trained)
    before = [v.numpy() for v in model.non_trainable_variables]
    with pytest.raises(ValueError, match=match):
        kc.recalibrate_batchnorm(model, data, verbose=False, **kwargs)
    for v, value in zip(model.non_trainable_variables, before):
        np.testing.assert_array_equal(v.numpy(), value)


def test_models_without_batchnorm_and_distillers_are_refused():
    plain = keras.Sequential([keras.Input((4,)), L.Dense(2, name="only")], name="no_bn")
    with pytest.raises(ValueError, match="'no_bn' has no BatchNormalization"):
        kc.recalibrate_batchnorm(plain, np.zeros((8, 4), np.float32))
    student = keras.Sequential([keras.Input((4,)), L.Dense(2), L.BatchNormalization()])
    teacher = keras.Sequential([keras.Input((4,)), L.Dense(2)])
    with pytest.raises(ValueError, match="distiller.student"):
        kc.recalibrate_batchnorm(kc.Distiller(teacher, student), np.zeros((8, 4), np.float32))
