"""The suite's cases and the training every row of a case shares.

`CASES` holds each case's model, dataset, run lengths and recipes; the rest
trains them the way ours and TFMOT's rows both do (data pipeline, float
baseline, the compressing prune + QAT fit, the learning rate per epoch) and
times training steps. How the recipes were chosen, with the runs behind each
choice, is in docs/benchmarks-history.md.
"""

from __future__ import annotations

import math
from pathlib import Path

from benchmarks import other_tools

# model, dataset, and the run lengths: (train images, test images, float
# epochs, prune epochs, QAT epochs) for --quick and --full. `float` is the
# baseline's optimizer (a cosine-decayed learning rate, with `warmup` epochs
# for SGD); `tune_lr` is the Adam learning rate of the compressing fits, ours
# and TFMOT's alike (`tune_decay`: cosine-decayed per epoch). `quantize` are the
# case's `kc.quantize` arguments: the Dense-heavy LeNets (microcontroller
# models) keep Dense kernels per tensor, as TFMOT does, which shrinks the
# flatbuffer and arena. `prune` are our rows' extra `kc.prune` arguments. A
# case with `distill` also runs keras-compress' prune + QAT fit distilled from
# the float baseline (`kc.Distiller` arguments), which TFMOT cannot do: a row
# of its own, next to the like-for-like one.
CASES = {
    "lenet_300_100": dict(dataset="mnist", quick=(4000, 300, 3, 1, 1),
                          full=(8000, 2000, 20, 4, 2), sparsity=0.8, batch=64,
                          float=dict(optimizer="adam", lr=1e-3), tune_lr=5e-4,
                          quantize=dict(per_tensor_dense=True)),
    "lenet5": dict(dataset="mnist", quick=(4000, 300, 2, 1, 1),
                   full=(8000, 2000, 20, 4, 2), sparsity=0.8, batch=64,
                   float=dict(optimizer="adam", lr=1e-3), tune_lr=5e-4,
                   quantize=dict(per_tensor_dense=True)),
    "resnet8": dict(dataset="cifar10", quick=(2000, 100, 1, 1, 1),
                    full=(50000, 10000, 300, 8, 4), sparsity=0.3, batch=128,
                    float=dict(optimizer="sgd", lr=0.1, warmup=2), tune_lr=5e-5,
                    tune_decay="cosine", prune=dict(ranking="global"),
                    distill=dict(temperature=4.0, alpha=0.1)),
    "ds_cnn": dict(dataset="cifar10", quick=(2000, 100, 1, 1, 1),
                   full=(50000, 10000, 30, 4, 2), sparsity=0.5, batch=128,
                   float=dict(optimizer="sgd", lr=0.1, warmup=2), tune_lr=2e-4,
                   distill=dict(temperature=4.0, alpha=0.1)),
}

# MLPerf Tiny v1.x image classification (ResNet-8, CIFAR-10) quality target.
MLPERF_TINY_TARGET = 0.85

DISTILLED = "keras-compress + distill"
# Row order of every case table (JSON keeps the rows sorted by name).
ORDER = ["float32", "PTQ int8", "keras-compress", DISTILLED, "TFMOT", *other_tools.LABELS]

def load_case_data(config: dict):
    """The case's training and test images (random subsets: the CIFAR-10 JPEG
    archive is ordered by class), normalized to [0, 1]; shared with the peer."""
    import numpy as np

    from keras_compress import datasets

    (x, y), (xt, yt) = getattr(datasets, config["dataset"])(config["data_dir"], normalize=True)
    if config["model"] == "lenet5":
        x, xt = x[..., None], xt[..., None]
    rng = np.random.default_rng(config["seed"])
    keep = rng.permutation(len(x))[: config["train_images"]]
    test = rng.permutation(len(xt))[: config["test_images"]]
    return (x[keep], y[keep]), (xt[test], yt[test])

def training_data(x, y, batch: int, augment: bool, seed: int):
    """What every fit of a case trains on, ours and TFMOT's alike: the arrays,
    or for CIFAR-10 a tf.data pipeline with the standard augmentation (4-pixel
    padded random crop, horizontal flip), reshuffled each epoch."""
    import tensorflow as tf

    if not augment:
        return {"x": x, "y": y, "batch_size": batch}
    height, width = x.shape[1:3]

    def jitter(image, label):
        image = tf.image.resize_with_crop_or_pad(image, height + 8, width + 8)
        image = tf.image.random_crop(image, tf.shape(image[4:-4, 4:-4]), seed=seed)
        return tf.image.random_flip_left_right(image, seed=seed), label

    data = (tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed)
            .map(jitter, num_parallel_calls=tf.data.AUTOTUNE).batch(batch)
            .prefetch(tf.data.AUTOTUNE))
    return {"x": data, "shuffle": False}  # the pipeline reshuffles itself

def float_schedule(keras, recipe: dict, total_steps: int, steps_per_epoch: int):
    """The float baseline's learning rate: a linear warm-up over
    `recipe["warmup"]` epochs (none by default), then a cosine decay to zero."""
    # A run shorter than its warm-up (tiny test runs) still ends decayed.
    warmup = min(recipe.get("warmup", 0) * steps_per_epoch, total_steps - 1)
    if warmup <= 0:
        return keras.optimizers.schedules.CosineDecay(recipe["lr"], total_steps)
    return keras.optimizers.schedules.CosineDecay(
        0.0, total_steps - warmup, warmup_target=recipe["lr"], warmup_steps=warmup)

def float_optimizer(keras, recipe: dict, total_steps: int, steps_per_epoch: int):
    """The float baseline's optimizer: Adam, or Nesterov SGD, on `float_schedule`."""
    schedule = float_schedule(keras, recipe, total_steps, steps_per_epoch)
    if recipe["optimizer"] == "adam":
        return keras.optimizers.Adam(schedule)
    return keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True)

def run_lengths(config: dict, case: dict) -> tuple:
    """(train images, test images, float, prune and QAT epochs) of this run of
    `case`: the config's explicit `sizes` (tests), else --full's or --quick's."""
    return config.get("sizes") or case["full" if config["full"] else "quick"]

def compile(model, optimizer):
    """Compile `model` with the suite's loss (integer labels, logits) and metric."""
    import keras

    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model

def train_float(model, data: dict, recipe: dict, epochs: int, steps_per_epoch: int,
                backup_dir: Path | None = None, callbacks=()):
    """Fit a case's float baseline: `data` from `training_data`, `recipe` its
    `float` entry. With `backup_dir` the fit keeps a per-epoch backup there
    (weights, optimizer state with the schedule's step, epoch), and a call
    after an interruption resumes from it: a long baseline (ResNet-8 takes
    hours on 2 cores) survives a stopped session. The backup is removed when
    the fit completes. Returns the `History` of the epochs run by this call."""
    import keras

    compile(model, float_optimizer(keras, recipe, epochs * steps_per_epoch, steps_per_epoch))
    callbacks = list(callbacks)
    if backup_dir is not None:
        if Path(backup_dir).exists():
            print(f"   (resuming from the backup in {backup_dir})", flush=True)
        callbacks.insert(0, keras.callbacks.BackupAndRestore(str(backup_dir)))
    return model.fit(**data, epochs=epochs, verbose=2, callbacks=callbacks)

# Training-step cost is measured apart from the real fits: one-epoch fits of
# fresh copies on the first TIMING_STEPS batches (no augmentation), plain and
# compressing models taking turns for TIMING_ROUNDS rounds after a warm-up
# epoch, the same protocol in the TFMOT peer. Sequential fits are hostage to
# whatever else the machine does meanwhile. The median of 3 rounds moved a
# LeNet-300-100 ratio by 0.2 between runs on a shared 2-core VM, whose epochs
# now and then take twice as long; 7 rounds outvote those.
TIMING_STEPS = 50

TIMING_ROUNDS = 7

# --quick (a smoke run of a few minutes) skips the step timing (0 rounds):
# one round of a few steps would only be noise, at a minute per CIFAR case.
QUICK_TIMING = (0, 10)

# What results written before the round count was recorded used.
LEGACY_TIMING_ROUNDS = 3

# How our QAT phase is timed: after the pruning schedule's last update, as in
# the real fit (and as TFMOT's PQAT, which has no schedule). Results without
# this entry timed it with the masks still updating.
QAT_TIMING = "final masks"

def compressing_model(name: str, case: dict, float_weights, input_shape, schedule,
                       teacher=None):
    """The case's model from the float weights, pruned on `schedule` and
    QAT-wrapped, distilled from `teacher` if given: what the real fit and the
    step timing both train."""
    import keras

    import keras_compress as kc

    model = getattr(kc.models, name)(input_shape=input_shape)
    model.set_weights(float_weights)
    # Depthwise kernels stay dense, as in TFMOT, whose prune registry lists no
    # prunable weight for DepthwiseConv2D: the same layers pruned on both sides.
    pruned = kc.prune(model, schedule, skip=keras.layers.DepthwiseConv2D, **case.get("prune", {}))
    model = kc.quantize(pruned, **case.get("quantize", {}))
    return model if teacher is None else kc.Distiller(teacher, model, **case["distill"])

def tune_rate(setup: dict, epoch: int) -> float:
    """The learning rate of the compressing fits (ours, distilled and TFMOT's)
    in `epoch`, counted from 0 over the prune + QAT epochs: `learning_rate`
    throughout, or with `lr_decay="cosine"` a half cosine from it, set per
    epoch (the last epoch keeps a small nonzero rate). Per epoch, so that
    TFMOT's two fits (prune, then PQAT from `initial_epoch`) follow the same
    curve as our one."""
    decay = setup.get("lr_decay", "constant")
    if decay == "constant":
        return setup["learning_rate"]
    if decay != "cosine":
        raise ValueError(f"`lr_decay` must be 'constant' or 'cosine'; received {decay!r}.")
    total = setup["prune_epochs"] + setup["qat_epochs"]
    return setup["learning_rate"] * 0.5 * (1.0 + math.cos(math.pi * epoch / total))

def fit_compressed(name: str, case: dict, setup: dict, data: dict, steps: int,
                    float_weights, input_shape, teacher=None):
    """keras-compress' prune + QAT fit of a case from its float weights
    (distilled from `teacher` if given), on `tune_rate`'s learning rate;
    returns the stripped model."""
    import keras

    import keras_compress as kc

    prune_epochs, qat_epochs = setup["prune_epochs"], setup["qat_epochs"]
    schedule = kc.PolynomialDecay(0.0, case["sparsity"], 0, prune_epochs * steps - 1,
                                  frequency=max(1, steps // 4))
    model = compressing_model(name, case, float_weights, input_shape, schedule, teacher)
    compile(model, keras.optimizers.Adam(setup["learning_rate"]))
    model.fit(**data, epochs=prune_epochs + qat_epochs, verbose=2,
              callbacks=[kc.PruningCallback(), kc.QuantizationCallback(start_epoch=prune_epochs),
                         keras.callbacks.LearningRateScheduler(
                             lambda epoch: tune_rate(setup, epoch))])
    return kc.strip(model)

def ours_step_times(name, case, setup, float_weights, x, y, steps) -> dict[str, float]:
    """Seconds per step of plain fit and of keras-compress' prune phase
    (quantizers observing, masks updating on the schedule) and QAT phase (fake
    quantization on, the schedule finished: final masks), and for a case
    with `distill` of the same two phases distilled (`distill_prune_step_s`,
    `distill_qat_step_s`: the teacher's forward pass included)."""
    import keras

    import keras_compress as kc
    from benchmarks._timing import fit_step_times

    rounds, timing_steps = setup["timing_rounds"], setup["timing_steps"]
    if not rounds:
        return {}
    n = min(len(x), case["batch"] * timing_steps)

    def float_model():
        model = getattr(kc.models, name)(input_shape=tuple(x.shape[1:]))
        model.set_weights(float_weights)
        return model

    def compiled(compress, distill=False, schedule_done=False):
        if compress:
            if schedule_done:
                # The QAT phase of the real fit follows a finished schedule: final
                # masks, no more updates (the callback stays attached, as there).
                schedule = kc.ConstantSparsity(case["sparsity"], 0, end_step=0)
            else:
                schedule = kc.PolynomialDecay(0.0, case["sparsity"], 0,
                                              (rounds + 1) * timing_steps,
                                              frequency=max(1, steps // 4))
            model = compressing_model(name, case, float_weights, tuple(x.shape[1:]), schedule,
                                       teacher=float_model() if distill else None)
        else:
            model = float_model()
        return compile(model, keras.optimizers.Adam(case["tune_lr"]))

    # One-epoch fits all start at epoch 0: start_epoch=1 keeps QAT off.
    runs = {"plain": (compiled(False), []),
            "prune": (compiled(True), [kc.PruningCallback(), kc.QuantizationCallback(start_epoch=1)]),
            "qat": (compiled(True, schedule_done=True), [kc.PruningCallback()])}
    if case.get("distill") and setup.get("distill", True):
        runs["distill_prune"] = (compiled(True, True), [kc.PruningCallback(),
                                                        kc.QuantizationCallback(start_epoch=1)])
        runs["distill_qat"] = (compiled(True, True, schedule_done=True), [kc.PruningCallback()])
    times = fit_step_times(keras.callbacks.Callback, runs, x[:n], y[:n], case["batch"],
                           rounds=rounds)
    return {f"{k}_step_s": v for k, v in times.items()}

def timing(config: dict) -> tuple[int, int]:
    """(rounds, steps) of the step timing: the config's explicit `timing`
    (tests), else --full's or --quick's (no rounds: no timing)."""
    return config.get("timing") or ((TIMING_ROUNDS, TIMING_STEPS) if config["full"]
                                    else QUICK_TIMING)

def step_ratios(times: dict, prune_epochs: int, qat_epochs: int) -> dict[str, float]:
    """Per-phase step ratios to plain fit, and the whole compressing fit's
    (phases weighted by their epochs)."""
    prune = times["prune_step_s"] / times["plain_step_s"]
    qat = times["qat_step_s"] / times["plain_step_s"]
    return {"prune_step_ratio": prune, "qat_step_ratio": qat,
            "step_ratio": (prune * prune_epochs + qat * qat_epochs) / (prune_epochs + qat_epochs)}
