"""Child process of tests/test_crash_safety.py: one-fit recipe (distillation
with a temperature schedule, pruning ramp, QAT from epoch 2) on digits, with
Keras' BackupAndRestore checkpointing every epoch.

    python tests/crash_child.py WORKDIR

Writes WORKDIR/epoch_<n> when epoch n ends (the parent kills the process
after one of them) and, when training completes, WORKDIR/result.npz with the
stripped student's weights. Run again in the same WORKDIR, it resumes from
the last completed epoch. The data are shuffled once with a fixed seed and
not reshuffled per epoch (a shuffle seeded by the process would differ after a
restart), so a resumed run sees exactly the batches an uninterrupted one does.
Data order is the user's to make reproducible; the library's part is the
state: weights, optimizer, masks, steps, ranges and schedules."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

EPOCHS = 6
BATCH = 64


def main(workdir: Path) -> None:
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_compress as kc

    keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()
    (x, y), _ = kc.datasets.digits(normalize=True)
    x = x[..., None].astype("float32")

    order = np.random.default_rng(0).permutation(len(x))   # shuffled once, fixed
    x, y = x[order], y[order]
    steps = int(np.ceil(len(x) / BATCH))

    class Progress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            (workdir / f"epoch_{epoch}").write_text("done")

    def cnn(width):
        return keras.Sequential([
            keras.Input((8, 8, 1)), keras.layers.Conv2D(width, 3, use_bias=False),
            keras.layers.BatchNormalization(), keras.layers.ReLU(), keras.layers.Flatten(),
            keras.layers.Dense(10)])

    teacher = cnn(16)
    teacher.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0)

    train, callbacks = kc.recipe(
        cnn(8), teacher=teacher, sparsity=0.75, prune_epochs=(0, 3), steps_per_epoch=steps,
        qat_from_epoch=2, freeze_bn_epoch=4,
        temperature=kc.schedules.Linear(6.0, 2.0, begin_step=0, end_step=EPOCHS * steps))
    backup = keras.callbacks.BackupAndRestore(str(workdir / "backup"), double_checkpoint=True)
    train.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
              callbacks=[*callbacks, backup, Progress()])  # marker: epoch saved
    student = kc.strip(train)
    arrays = {f"w{i}": w for i, w in enumerate(student.get_weights())}
    arrays["temperature"] = np.asarray(train.temperature.numpy())
    arrays["sparsity"] = np.asarray(kc.sparsity(student).overall)
    np.savez(workdir / "result.npz", **arrays)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
