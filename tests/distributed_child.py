"""Child process for the tf.distribute tests: a fit of keras-compress on real
digits under a distribution strategy, in a process of its own (logical devices
and TF_CONFIG must be set before TensorFlow starts).

    python tests/distributed_child.py local DEVICES SCENARIO OUT.npz
    python tests/distributed_child.py worker OUT.json     # TF_CONFIG names the cluster

`local`: MirroredStrategy over DEVICES logical CPU devices (1: the default
strategy) runs SCENARIO (prune, qat, distill, recipe) and saves the model's
weights, masks and predictions. `worker`: one worker of a
MultiWorkerMirroredStrategy runs a prune + QAT fit, strips and converts the
model to int8, and writes its ops and tensor shapes.
"""

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tensorflow as tf  # noqa: E402

if sys.argv[1] == "local" and int(sys.argv[2]) > 1:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * int(sys.argv[2]))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_compress as kc  # noqa: E402

BATCH = 64  # global batch: each of N replicas computes BATCH / N


def _data():
    (x, y), (xt, _) = kc.datasets.digits(normalize=True)
    return x.reshape(len(x), -1), y, xt.reshape(len(xt), -1)


def _mlp(name="student", width=64):
    return keras.Sequential([keras.Input((64,)), keras.layers.Dense(width, activation="relu"),
                             keras.layers.Dense(10)], name=name)


def _compile(model):
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def build(scenario: str, x, y):
    """(model, callbacks, epochs) for `scenario`, built in the current scope."""
    keras.utils.set_random_seed(0)
    schedule = kc.PolynomialDecay(0.0, 0.8, begin_epoch=0, end_epoch=1)
    if scenario == "prune":
        return _compile(kc.prune(_mlp(), schedule)), [kc.PruningCallback()], 2
    if scenario == "qat":
        return (_compile(kc.quantize(kc.prune(_mlp(), schedule))), [kc.PruningCallback()], 2)
    teacher = _compile(_mlp("teacher", 128))
    teacher.fit(x, y, batch_size=BATCH, epochs=2, verbose=0, shuffle=False)
    if scenario == "distill":
        distiller = kc.Distiller(teacher, kc.prune(_mlp(), schedule), temperature=4.0,
                                 alpha=0.1)
        distiller.compile(keras.optimizers.Adam(1e-3),
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return distiller, [kc.PruningCallback()], 2
    model, callbacks = kc.recipe(_mlp(), teacher=teacher, sparsity=0.8, prune_epochs=(0, 1),
                                 qat_from_epoch=1)
    return model, callbacks, 2


def local(devices: int, scenario: str, out: str) -> None:
    x, y, xt = _data()
    strategy = (tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(devices)])
                if devices > 1 else tf.distribute.get_strategy())
    with strategy.scope():
        model, callbacks, epochs = build(scenario, x, y)
    model.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0, shuffle=False,
              callbacks=callbacks)
    stripped = kc.strip(model)
    arrays = {f"w{i}": w for i, w in enumerate(stripped.get_weights())}
    arrays.update({f"state_{v.path}": np.asarray(v.numpy()) for v in model.weights
                   if any(k in v.path for k in ("mask", "pruning_step", "min_value",
                                                "max_value"))})
    arrays["predictions"] = stripped.predict(xt, verbose=0)
    arrays["replicas"] = np.array(strategy.num_replicas_in_sync)
    np.savez(out, **arrays)


def worker(out: str) -> None:
    import tflite_export

    x, y, _ = _data()
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        model, callbacks, epochs = build("qat", x, y)
    model.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0, shuffle=False,
              callbacks=callbacks)
    tfl = tflite_export.convert(kc.strip(model), mode="int8", io_dtype="int8")
    Path(out).write_text(json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "ops": tfl.ops, "fully_integer": tfl.is_fully_integer,
        "tensors": sorted([t.dtype, list(t.shape)] for t in tfl.tensors),
        "sparsity": kc.sparsity(model).overall}))


if __name__ == "__main__":
    if sys.argv[1] == "local":
        local(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    else:
        worker(sys.argv[2])
