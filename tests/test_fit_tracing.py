"""The suite builds a model's training state before Keras traces its first step
(conftest.build_before_tracing, the way Keras builds under a tf.distribute
strategy): the first fit traces once instead of twice and trains to exactly the
weights Keras' own lazy build gives."""

import keras
import numpy as np
import pytest
from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

import keras_compress as kc

import conftest
from conftest import compile_classifier


def _model() -> keras.Model:
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(0.3, name="dropout")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(x))


def _fit(kind, build, digits_split, monkeypatch):
    """Trains one prune + QAT (or plain) model with `build` as the suite's
    pre-trace build; returns the weights after two epochs and the traces."""
    monkeypatch.setattr(TensorFlowTrainer, "_maybe_symbolic_build", build)
    (x, y), _ = digits_split
    keras.utils.set_random_seed(7)
    model = _model()
    if kind == "prune+qat":
        model = kc.quantize(kc.prune(model, schedule=kc.PolynomialDecay(
            initial_sparsity=0.0, final_sparsity=0.5, begin_step=0, end_step=10, frequency=5)))
    compile_classifier(model)
    traces = []
    step = model.train_step
    model.train_step = lambda data: (traces.append(1), step(data))[1]
    callbacks = [kc.PruningCallback()] if kind == "prune+qat" else []
    model.fit(x[:320], y[:320], batch_size=64, epochs=2, verbose=0, callbacks=callbacks)
    return model.get_weights(), len(traces)


@pytest.mark.parametrize("kind", ["plain", "prune+qat"])
def test_building_first_traces_once_and_trains_the_same_weights(kind, digits_split,
                                                                 monkeypatch):
    lazy, lazy_traces = _fit(kind, conftest._keras_build, digits_split, monkeypatch)
    built, built_traces = _fit(kind, conftest.build_before_tracing, digits_split, monkeypatch)
    assert (lazy_traces, built_traces) == (2, 1)
    assert len(lazy) == len(built)
    for a, b in zip(lazy, built):
        np.testing.assert_array_equal(a, b)
