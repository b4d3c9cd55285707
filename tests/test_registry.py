"""One layer registry: a custom layer registered once is pruned (every
structure), QAT-trained, stripped, converted fully int8 and run by
TFLite-Micro; the built-in tables all come from the registry."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_compress as kc
import tflite_export
from keras_compress import registry


@keras.saving.register_keras_serializable(package="test_registry")
class Scaled(keras.layers.Layer):
    """x @ kernel, times a learned per-unit scale: one kernel."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")
        self.scale = self.add_weight(shape=(self.units,), initializer="ones", name="scale")

    def call(self, x):
        return keras.ops.matmul(x, self.kernel) * self.scale

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="test_registry")
class TwoPaths(keras.layers.Layer):
    """x @ left + x @ right + bias: two kernels."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        shape = (input_shape[-1], self.units)
        self.left = self.add_weight(shape=shape, name="left")
        self.right = self.add_weight(shape=shape, name="right")
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")

    def call(self, x):
        return keras.ops.matmul(x, self.left) + keras.ops.matmul(x, self.right) + self.bias

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@pytest.fixture(scope="module", autouse=True)
def registered():
    kc.register_layer(Scaled, kernels=[kc.KernelLayout("kernel", 0, (-1,), bias=None)],
                      qat="kernel", channels="source")
    kc.register_layer(TwoPaths, kernels=[kc.KernelLayout("left", 0, (-1,)),
                                         kc.KernelLayout("right", 0, (-1,), bias=None)],
                      qat="kernel", channels="source")
    yield
    registry._REGISTERED.clear()


def _model(head: bool = False):
    """Channel pruning leaves a model's output whole: with `head`, TwoPaths
    feeds a Dense head instead of being the output."""
    layers = [keras.Input((64,)), Scaled(32, name="scaled"), keras.layers.ReLU(name="relu"),
              TwoPaths(10, name="two")]
    return keras.Sequential(layers + ([keras.layers.Dense(10, name="head")] if head else []))


def _fit(model, x, y, epochs, callbacks=()):
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model.fit(x, y, batch_size=64, epochs=epochs, verbose=0, callbacks=list(callbacks))


@pytest.mark.parametrize("structure", ["unstructured", "2:4", "channel"])
def test_custom_layers_prune_qat_strip_int8_micro(structure, tmp_path):
    (x, y), (xt, yt) = kc.datasets.digits(normalize=True)
    x, xt = x.reshape(len(x), -1), xt.reshape(len(xt), -1)
    keras.utils.set_random_seed(0)
    head = structure == "channel"
    pruned = kc.prune(_model(head), schedule=kc.ConstantSparsity(0.5, begin_step=0, frequency=1),
                      structure=structure, skip=["head"] if head else None)
    assert {type(layer.layer).__name__ for layer in pruned.layers
            if isinstance(layer, kc.PruningWrapper)} == {"Scaled", "TwoPaths"}
    _fit(pruned, x, y, 3, [kc.PruningCallback()])
    report = kc.sparsity(pruned)
    assert report["scaled"].sparsity == pytest.approx(0.5, abs=0.02)
    for kernel in ("two/left", "two/right"):  # both kernels
        assert report[kernel].sparsity == pytest.approx(0.5, abs=0.02)
    plain = kc.strip(pruned)
    left = plain.get_layer("two").left.numpy()
    if structure == "channel":
        assert np.sum(np.all(left == 0, axis=0)) == 5  # whole output units
    qat = kc.quantize(plain)  # the zeros are kept (preserve="auto")
    assert [type(layer).__name__ for layer in qat.layers].count("QuantizeWrapper") == 2 + head
    qat.save(tmp_path / "qat.keras")  # saves and reloads mid-training
    qat = keras.models.load_model(tmp_path / "qat.keras")
    _fit(qat, x, y, 3)
    stripped = kc.strip(qat)
    keras_acc = float(np.mean(np.argmax(stripped.predict(xt, verbose=0), 1) == yt))
    assert keras_acc > 0.8
    # The layers' own intermediate tensors (each matmul before the scale or the
    # sum) hold no fake-quant op, so the converter calibrates them.
    tfl = tflite_export.convert(stripped, mode="int8", io_dtype="int8",
                                representative_data=x[:200])
    assert tfl.is_fully_integer, tfl.float_ops
    weights = [tfl.constant(t) for t in tfl.tensors
               if t.is_constant and t.dtype == "INT8" and len(t.shape) == 2]
    assert len(weights) == 3 + head  # kernel, left, right (and the head's), each int8
    # the pruned zeros survive
    assert sorted(np.mean(w == 0) >= 0.45 for w in weights).count(True) == 3
    litert = tflite_export.predict(tfl, xt, "litert-reference")
    micro = tflite_export.predict(tfl, xt, "micro")
    # TFLite-Micro's int8 MUL and ADD round a few values a step apart from
    # LiteRT's reference kernels (three requantizing ops in a row here): a
    # few output steps at most, and the predictions agree.
    assert np.max(np.abs(litert - micro)) <= 4.01 * tfl.outputs[0].scale[0]
    assert np.mean(np.argmax(litert, 1) == np.argmax(micro, 1)) >= 0.99
    int8_acc = float(np.mean(np.argmax(litert, 1) == yt))
    assert abs(int8_acc - keras_acc) <= 0.02


def test_the_built_in_tables_come_from_the_registry():
    from keras_compress.lowrank import factorize as lowrank
    from keras_compress.pruning import prunable
    from keras_compress.quantization import wrapper

    assert prunable.prunable_weights(keras.layers.Dense(2)) == registry.kernels(
        keras.layers.Dense(2))
    names = wrapper.quantizable_layers()
    assert names[:2] == ["TwoPaths", "Scaled"]  # registered first
    assert [n for n in names if n in ("Dense", "Conv1D", "Conv2D")] == ["Dense", "Conv1D",
                                                                        "Conv2D"]
    assert not wrapper.is_quantizable(keras.layers.Conv3D(2, 3))
    assert registry.rule_for(keras.layers.MaxPooling2D()).qat == "same_scale"
    assert registry.rule_for(keras.layers.Add()).channels == "join"
    for name in ("_SUPPORTED", "_EXCLUDED"):
        assert not hasattr(lowrank, name)
    assert not hasattr(prunable, "_LAYOUTS") and not hasattr(wrapper, "QUANTIZABLE_LAYERS")


def test_register_layer_rejects_bad_arguments():
    with pytest.raises(ValueError, match="`cls` must be a keras layer class"):
        kc.register_layer(int)
    with pytest.raises(ValueError, match="`qat` must be"):
        kc.register_layer(Scaled, qat="int8")
    with pytest.raises(ValueError, match="needs its `kernels`"):
        kc.register_layer(Scaled, qat="kernel")
    with pytest.raises(ValueError, match="KernelLayout"):
        kc.register_layer(Scaled, kernels=["kernel"])
