"""Child process for the tf.distribute tests: a fit of keras-compress on real
digits under a distribution strategy, in a process of its own (logical devices
and TF_CONFIG must be set before TensorFlow starts).

    python tests/distributed_child.py local DEVICES SCENARIO OUT.npz
    python tests/distributed_child.py worker OUT.json     # TF_CONFIG names the cluster

`local`: MirroredStrategy over DEVICES logical CPU devices (1: the default
strategy) runs SCENARIO (prune, qat, distill, recipe) and saves the model's
weights, masks and predictions. `worker`: one worker of a
MultiWorkerMirroredStrategy runs a prune + QAT training (a custom loop: Keras
3's `fit` fails under that strategy, keras-team/keras#20585), strips and
converts the model to int8, and writes its ops, tensor shapes and masks.
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


def custom_loop(model, callbacks, epochs: int, strategy, x, y) -> None:
    """`model.fit` written out with `strategy.run`: Keras 3's `fit` cannot run
    under MultiWorkerMirroredStrategy (keras-team/keras#20585), a loop of
    TensorFlow's own can, and it drives the callbacks as `fit` would."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH).with_options(options)
    batches = strategy.experimental_distribute_dataset(dataset)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")

    @tf.function
    def train_step(xb, yb):
        def replica_step(xb, yb):
            with tf.GradientTape() as tape:
                loss = tf.nn.compute_average_loss(loss_fn(yb, model(xb, training=True)),
                                                  global_batch_size=BATCH)
            grads = tape.gradient(loss, model.trainable_variables)
            model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        return strategy.reduce("SUM", strategy.run(replica_step, (xb, yb)), axis=None)

    steps = -(-len(x) // BATCH)
    hooks = keras.callbacks.CallbackList(callbacks, model=model, epochs=epochs, steps=steps)
    hooks.on_train_begin()
    for epoch in range(epochs):
        hooks.on_epoch_begin(epoch)
        for step, (xb, yb) in enumerate(batches):
            hooks.on_train_batch_begin(step)
            loss = train_step(xb, yb)
            hooks.on_train_batch_end(step, {"loss": loss})
        hooks.on_epoch_end(epoch, {})
    hooks.on_train_end()


def worker(out: str) -> None:
    import tflite_export

    x, y, xt = _data()
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        model, callbacks, epochs = build("qat", x, y)
        custom_loop(model, callbacks, epochs, strategy, x, y)
    stripped = kc.strip(model)
    tfl = tflite_export.convert(stripped, mode="int8", io_dtype="int8")
    masks = [np.asarray(v.numpy()) for v in model.weights if "mask" in v.path]
    Path(out).write_text(json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "ops": tfl.ops, "fully_integer": tfl.is_fully_integer,
        "tensors": sorted([t.dtype, list(t.shape)] for t in tfl.tensors),
        "sparsity": kc.sparsity(model).overall,
        "masks": [m.tolist() for m in masks],
        "weights": [float(np.sum(np.abs(w))) for w in stripped.get_weights()],
        "accuracy_on_train": float(np.mean(np.argmax(stripped.predict(x, verbose=0), 1) == y)),
        "pruning_steps": [int(v.numpy()) for v in model.weights if "pruning_step" in v.path]}))


if __name__ == "__main__":
    if sys.argv[1] == "local":
        local(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    else:
        worker(sys.argv[2])
