"""Shared fixtures: real data from ../shared/datasets, seeds, small models."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    # pytest-xdist workers share the cores: each TensorFlow (and each child
    # process it starts) gets its share of threads, not all of them.
    _share = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", _share)
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", _share)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from keras.src.backend.tensorflow.trainer import TensorFlowTrainer  # noqa: E402

import keras_compress as kc  # noqa: E402
from keras_compress import model_walk  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# Without a tf.distribute strategy, Keras creates the optimizer's and the
# metrics' variables inside the first traced train (or test) step, and a
# tf.function that creates variables is traced a second time: every first fit
# traces its step twice. Under a strategy Keras builds them symbolically first.
# The suite's in-process fits build first too, from the dataset's element
# spec (no batch is consumed), and trace once (the time saved: docs/status.md).
# tests/test_fit_tracing.py pins that both ways train to the same weights;
# notebooks, the CLI and the benchmark subprocesses keep Keras' default.
# KERAS_COMPRESS_TEST_KERAS_BUILD=1 runs the suite Keras' way.
_keras_build = TensorFlowTrainer._maybe_symbolic_build


def build_before_tracing(self, iterator=None, data_batch=None):
    if self._distribute_strategy is not None:
        return _keras_build(self, iterator=iterator, data_batch=data_batch)
    try:
        spec = iterator._distributed_dataset.element_spec if iterator is not None else data_batch
        self._symbolic_build(data_batch=spec)
    except Exception:  # noqa: BLE001 - left to the first trace, as Keras does
        pass


if not os.environ.get("KERAS_COMPRESS_TEST_KERAS_BUILD"):
    TensorFlowTrainer._maybe_symbolic_build = build_before_tracing


def shared_datasets_dir() -> Path:
    """`../shared/datasets` beside the checkout, or $KERAS_COMPRESS_TEST_DATA."""
    return Path(os.environ.get("KERAS_COMPRESS_TEST_DATA", REPO.parent / "shared" / "datasets"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = shared_datasets_dir()
    if not (path / "mnist").is_dir():
        pytest.skip(
            f"real datasets not found at {path} (CI always has ../shared/datasets; "
            "set KERAS_COMPRESS_TEST_DATA to point elsewhere)"
        )
    return path


@pytest.fixture(scope="session")
def mnist_split(data_dir):
    """MNIST per the datasets README: first 8,000 test images train, last 2,000 evaluate."""
    return kc.datasets.mnist(data_dir, normalize=True)


@pytest.fixture(scope="session")
def digits_split():
    (x, y), (xt, yt) = kc.datasets.digits(normalize=True)
    return (x[..., None], y), (xt[..., None], yt)


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    yield
    keras.backend.clear_session()


def compile_classifier(model: keras.Model, learning_rate: float = 1e-3) -> keras.Model:
    model.compile(
        keras.optimizers.Adam(learning_rate),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def small_cnn(input_shape=(8, 8, 1), num_classes=10) -> keras.Model:
    """Conv + depthwise + Dense, every prunable type that N:M and channel support."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Reshape((-1,), name="flatten")(x)
    x = keras.layers.Dense(32, activation="relu", name="fc1")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="small_cnn")


def kernels(model: keras.Model) -> dict[str, np.ndarray]:
    """Effective prunable kernels by layer name (wrapped or plain)."""
    out = {}
    for layer in model_walk.walk_layers(model):
        if isinstance(layer, kc.PruningWrapper):
            out[layer.layer.name] = layer.effective_weights()[0]
        elif isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D)):
            out[layer.name] = layer.kernel.numpy()
    return out
