"""The benchmark suite: Keras 3 float, post-training int8, TFMOT (tf_keras,
prune + PQAT, in a subprocess) and keras-compress, side by side on the same
data, model and epochs, in one invocation.

    python -m benchmarks.run --quick                    # a few minutes on 2 cores
    python -m benchmarks.run --full                     # the real run
    python -m benchmarks.run --quick --cases=lenet_300_100

Per case: accuracy (Keras, LiteRT int8, TFLite-Micro), raw and gzip sizes and
their ratio to the float32 weights, LiteRT median latency (and the int8 /
float32 and ours / TFMOT ratios), training step time with compression / plain
fit (ours and TFMOT's), conversion time and TFLite-Micro arena bytes. Every
artifact is measured in this process with the same interpreters. Results go
to docs/benchmarks.md (section `suite`, or `suite_full` for --full),
docs/benchmarks.json and docs/suite.png (suite_full.png). A case run alone
replaces only its own results there. Trained float baselines are cached
(--cache_dir), so a rerun after a failure in a later stage skips them, and
an interrupted float fit resumes from its per-epoch backup; so are the
compressing rows' trained int8 artifacts (ours, distilled, TFMOT's), so a
stopped run keeps the rows it finished. Work too long for one machine's
lifetime (the ResNet-8 float baseline: about four hours; its three 12-epoch
compressing fits on a slow machine) travels in the repository:
`--publish_baselines` copies the cached weights or backup, and the finished
rows, into benchmarks/baselines/, and a run on a new machine starts from
there. Latency, step ratios and LiteRT / TFLite-Micro accuracy are always
measured in the run that writes the results.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402
from benchmarks import DATA_DIR, _baselines, _keys, other_tools  # noqa: E402

FLAGS = flags.FLAGS
KEY = "suite"
REPO = Path(__file__).resolve().parents[1]

# model, dataset, and the run lengths: (train images, test images, float
# epochs, prune epochs, QAT epochs) for --quick and --full. `float` is the
# baseline's optimizer (a cosine-decayed learning rate, with `warmup` epochs
# for SGD); `tune_lr` is the constant Adam learning rate of the compressing
# fits, ours and TFMOT's alike. `quantize` are the case's `kc.quantize`
# arguments: the Dense-heavy LeNets (microcontroller models) keep Dense kernels
# per tensor, as TFMOT does, which shrinks the flatbuffer and arena. A case
# with `distill` also runs keras-compress' prune + QAT fit distilled from the
# float baseline (`kc.Distiller` arguments), which TFMOT cannot do: a row of
# its own, next to the like-for-like one. ResNet-8 (78k weights) fine-tunes
# 8 + 4 epochs from its 300-epoch float baseline (85.51 %, PTQ int8 85.06 %).
# Half pruned, every pruned model missed MLPerf Tiny's 85 % int8 (ours 83.84 %,
# distilled 84.69 %, TFMOT 84.17 %), so it prunes 30 %, which brings 85 % within
# reach (ours 84.40 %, distilled 84.75 %, TFMOT 85.06 %; runs of 2026-11-25, at
# a constant Adam 2e-4). That rate cost the baseline, annealed to zero, a point
# in the first epoch (85.51 -> 84.51 % with no wrapper at all), so ResNet-8's
# fits run at 5e-5, cosine-decayed per epoch (`tune_decay`; both sides): Keras /
# int8 LiteRT ours 85.01 / 84.96 %, TFMOT 84.94 / 84.78 % (2026-12-01), distilled
# 85.19 / 84.96 % (2026-12-02): 85 % int8 not yet reached by a pruned model.
# Longer (12 + 4 epochs at 5e-5: 84.95 / 84.87 %) or gentler (8 + 4 at 2e-5:
# 84.78 / 84.47 %) fits did no better (our row, 2026-12-02): the fine-tune's own
# drift and epoch-to-epoch spread (about 0.3 points) cover the 0.5 points this
# baseline has above 85 %. Two changes of our own then took our row over 85 %
# (2026-12-02, that row alone): the global magnitude ranking (`prune`, read by
# our rows only; TFMOT ranks per layer), alone 85.17 / 84.96 %; and QAT
# computing the last 8x8 AveragePooling as a MEAN with its own output scale,
# since AVERAGE_POOL_2D keeps the mean on its input's grid (about 20 steps)
# and fake quantization did not simulate that (Keras and int8 disagreed on
# 2.5 % of the test images, 0.7 % after): Keras / LiteRT / TFLite-Micro
# 84.98 / 85.13 / 85.06 %. Retrained with the mask as a kernel constraint
# (same fit up to float nondeterminism; 2026-12-02): 85.00 / 84.93 / 85.07 %,
# distilled 85.18 / 85.09 / 85.18 %: the target sits inside that spread.
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
# Row order of every case table (JSON keeps the rows sorted by name).
DISTILLED = "keras-compress + distill"
_ORDER = ["float32", "PTQ int8", "keras-compress", DISTILLED, "TFMOT", *other_tools.LABELS]


def _define_flags() -> None:
    flags.DEFINE_bool("quick", False, "Short run (reduced epochs and images).")
    flags.DEFINE_bool("full", False, "The real run.")
    flags.DEFINE_list("cases", list(CASES), "Cases to run; empty (--cases=) only rewrites "
                      "the section from the results kept in docs/benchmarks.json.")
    flags.DEFINE_string("data_dir", str(DATA_DIR),
                        "Folder holding mnist/ and cifar10/.")
    flags.DEFINE_bool("tfmot", True, "Run the TFMOT peer.")
    flags.DEFINE_bool("other_tools", None, "Add the rows of Keras' own quantize + LiteRT "
                      "export and of ai-edge-quantizer's recipes, on the float weights "
                      "(default: with --full, not with --quick).")
    flags.DEFINE_bool("distill", None, "Also run the distilled row of the cases that have one "
                      "(default: with --full, not with --quick).")
    flags.DEFINE_integer("latency_runs", 100,
                         "LiteRT timed runs per artifact (interleaved, in rounds of 5; "
                         "--quick takes at most 10).")
    flags.DEFINE_integer("seed", 0, "Random seed.")
    flags.DEFINE_string("docs", None, "Output folder (default: docs/ of the repository).")
    flags.DEFINE_string("cache_dir", str(Path.home() / ".cache" / "keras-compress" / "benchmarks"),
                        "Where trained float baselines are kept, keyed by case, run lengths, "
                        "seed, recipe and model source; '' to always retrain.")
    flags.DEFINE_string("baselines_dir", str(REPO / "benchmarks" / "baselines"),
                        "Trained float baselines (or unfinished fits' backups) kept under "
                        "version control: copied into --cache_dir when it has nothing as far "
                        "along; '' to ignore them.")
    flags.DEFINE_bool("publish_baselines", False,
                      "Copy the cached float baselines of --cases (their backups, for fits "
                      "still running) and their trained compressing rows into "
                      "--baselines_dir, then exit without running.")


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


def _float_schedule(keras, recipe: dict, total_steps: int, steps_per_epoch: int):
    """The float baseline's learning rate: a linear warm-up over
    `recipe["warmup"]` epochs (none by default), then a cosine decay to zero."""
    # A run shorter than its warm-up (tiny test runs) still ends decayed.
    warmup = min(recipe.get("warmup", 0) * steps_per_epoch, total_steps - 1)
    if warmup <= 0:
        return keras.optimizers.schedules.CosineDecay(recipe["lr"], total_steps)
    return keras.optimizers.schedules.CosineDecay(
        0.0, total_steps - warmup, warmup_target=recipe["lr"], warmup_steps=warmup)


def _float_optimizer(keras, recipe: dict, total_steps: int, steps_per_epoch: int):
    """The float baseline's optimizer: Adam, or Nesterov SGD, on `_float_schedule`."""
    schedule = _float_schedule(keras, recipe, total_steps, steps_per_epoch)
    if recipe["optimizer"] == "adam":
        return keras.optimizers.Adam(schedule)
    return keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True)


def _run_lengths(config: dict, case: dict) -> tuple:
    """(train images, test images, float, prune and QAT epochs) of this run of
    `case`: the config's explicit `sizes` (tests), else --full's or --quick's."""
    return config.get("sizes") or case["full" if config["full"] else "quick"]


def _float_cache(config: dict, name: str, lengths: tuple, case: dict) -> Path | None:
    """Where this case's trained float weights are kept, or None (no cache).
    The key covers everything the weights depend on: the case's recipe, and
    the version of what the models and the float training compute
    (`_keys.semantics("float")`), so a changed model is retrained and an
    edited comment is not."""
    if not config.get("cache_dir"):
        return None
    key = json.dumps([name, lengths, config["seed"], case["float"], case["batch"],
                      case["dataset"], _keys.semantics("float")])
    return Path(config["cache_dir"]) / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def _compile(model, optimizer):
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

    _compile(model, _float_optimizer(keras, recipe, epochs * steps_per_epoch, steps_per_epoch))
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
_LEGACY_TIMING_ROUNDS = 3
# How our QAT phase is timed: after the pruning schedule's last update, as in
# the real fit (and as TFMOT's PQAT, which has no schedule). Results without
# this entry timed it with the masks still updating.
QAT_TIMING = "final masks"


def _compressing_model(name: str, case: dict, float_weights, input_shape, schedule,
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


def _fit_compressed(name: str, case: dict, setup: dict, data: dict, steps: int,
                    float_weights, input_shape, teacher=None):
    """keras-compress' prune + QAT fit of a case from its float weights
    (distilled from `teacher` if given), on `tune_rate`'s learning rate;
    returns the stripped model."""
    import keras

    import keras_compress as kc

    prune_epochs, qat_epochs = setup["prune_epochs"], setup["qat_epochs"]
    schedule = kc.PolynomialDecay(0.0, case["sparsity"], 0, prune_epochs * steps - 1,
                                  frequency=max(1, steps // 4))
    model = _compressing_model(name, case, float_weights, input_shape, schedule, teacher)
    _compile(model, keras.optimizers.Adam(setup["learning_rate"]))
    model.fit(**data, epochs=prune_epochs + qat_epochs, verbose=2,
              callbacks=[kc.PruningCallback(), kc.QuantizationCallback(start_epoch=prune_epochs),
                         keras.callbacks.LearningRateScheduler(
                             lambda epoch: tune_rate(setup, epoch))])
    return kc.strip(model)


def _peer(module: str, setup: dict, float_weights, **extra) -> dict:
    """Run TFMOT peer `module` (in a tf_keras subprocess) on the float weights;
    returns the JSON it printed last. `extra` goes into its config, whose
    temporary folder is `extra`'s `{tmp}` placeholder."""
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "float.npz", **{f"w{i}": w for i, w in enumerate(float_weights)})
        peer_config = {**setup, "weights": str(Path(tmp) / "float.npz"),
                       **{k: v.format(tmp=tmp) for k, v in extra.items()}}
        env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep
               + os.environ.get("PYTHONPATH", "")}
        done = subprocess.run([sys.executable, "-m", module, json.dumps(peer_config)],
                              capture_output=True, text=True, env=env, cwd=REPO)
        if done.returncode != 0:
            raise RuntimeError(f"{module} failed: {done.stderr[-2000:]}")
        answer = json.loads(done.stdout.strip().splitlines()[-1])
        if "output" in extra:  # read the artifact before the folder goes
            answer["tflite_bytes"] = Path(peer_config["output"]).read_bytes()
        return answer


def _run_peer(setup: dict, float_weights):
    """TFMOT's row from the peer subprocess: (its int8 TFLiteModel, the JSON
    it printed)."""
    import tflite_export

    peer = _peer("benchmarks._tfmot_suite_peer", setup, float_weights,
                 output="{tmp}/tfmot.tflite")
    return tflite_export.TFLiteModel(peer.pop("tflite_bytes")), peer


def _peer_step_times(setup: dict, float_weights) -> dict[str, float]:
    """TFMOT's step times measured now, in the timing peer subprocess: for a
    TFMOT row whose training (and the timing done with it) came from the
    cache."""
    return _peer("benchmarks._tfmot_timing_peer", setup, float_weights)


# Case entries only our rows read: a change to them does not retrain TFMOT's
# row (77 minutes for ResNet-8).
_OURS_ONLY = ("prune", "quantize", "distill")


def _row_prefix(name: str, label: str) -> str:
    """The start of the file names of row `label` of case `name`, before the key."""
    return f"{name}-{re.sub(r'[^a-z0-9]+', '-', label.lower())}-"


def _publish_rows(config: dict, name: str, store: Path) -> list[str]:
    """Copy the cached rows of case `name` that are trained under the current
    key into `store`, removing the store's rows of the same kind under other
    keys (stale). Returns what was copied, for the log."""
    copied = []
    for label in ("keras-compress", DISTILLED, "TFMOT"):
        cached = _row_cache(config, name, label)
        if cached is None or not cached.exists():
            continue
        # Exactly this row's files: "resnet8-keras-compress-" also begins
        # the distilled row's names.
        pattern = re.compile(re.escape(_row_prefix(name, label)) + r"[0-9a-f]{16}\.npz")
        for stale in store.iterdir():
            if pattern.fullmatch(stale.name) and stale.name != cached.name:
                stale.unlink()
        copied.append(f"{label} row: {_baselines.publish(cached, store)}")
    return copied


def _row_cache(config: dict, name: str, label: str) -> Path | None:
    """Where row `label`'s trained artifact of case `name` is kept (the int8
    .tflite and what was measured in training: Keras accuracy, sparsity,
    conversion time; for TFMOT the peer's whole report), or None (no cache).
    The key covers the case's recipe, run lengths and seed, its float
    baseline's key, and the version of what the row's training computes
    (`_keys.semantics`: ours, or TFMOT's peer with its packages)."""
    case = CASES[name]
    images, _, float_epochs, *_ = lengths = _run_lengths(config, case)
    float_file = _float_cache(config, name, (images, float_epochs), case)
    if float_file is None:
        return None
    meaning = _keys.semantics("tfmot" if label == "TFMOT" else "ours")
    # The run lengths of this run are in the key; the other mode's are not.
    case = {k: v for k, v in case.items() if k not in ("quick", "full")}
    if label == "TFMOT":
        case = {k: v for k, v in case.items() if k not in _OURS_ONLY}
    key = json.dumps([label, name, lengths, config["seed"], case, float_file.name, meaning],
                     sort_keys=True)
    return float_file.with_name(
        f"{_row_prefix(name, label)}{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz")


def _in_cache(cached: Path | None, config: dict) -> bool:
    """Whether the cache holds the entry `cached`, after copying it (or a
    further-along float fit's backup) from the committed baselines folder
    when only that has it, which the log is told."""
    if cached and config.get("baselines_dir"):
        seeded = _baselines.seed(cached, Path(config["baselines_dir"]))
        if seeded:
            print(f"   (copied the committed {seeded})", flush=True)
    return bool(cached and cached.exists())


def _cached_row(cached: Path | None, config: dict, compute):
    """Row `compute()` -> (TFLiteModel, JSON-able dict), or its earlier result
    from `cached` (copied from the committed baselines folder first, if only
    there). A case whose fits outlast one session (ResNet-8 on a slow 2-core
    machine) is finished row by row: a stopped run keeps the rows it
    completed, and `--publish_baselines` carries them to the next machine."""
    import numpy as np

    import tflite_export
    from tflite_export.model import write_atomic

    if _in_cache(cached, config):
        print(f"   (trained row from {cached})", flush=True)
        with np.load(cached) as saved:
            return (tflite_export.TFLiteModel(saved["tflite"].tobytes()),
                    json.loads(str(saved["meta"])))
    tfl, meta = compute()
    if cached:
        buffer = io.BytesIO()
        np.savez(buffer, tflite=np.frombuffer(tfl.content, np.uint8), meta=np.array(json.dumps(meta)))
        cached.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(cached, buffer.getvalue())
    return tfl, meta


def _ours_step_times(name, case, setup, float_weights, x, y, steps) -> dict[str, float]:
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
            model = _compressing_model(name, case, float_weights, tuple(x.shape[1:]), schedule,
                                       teacher=float_model() if distill else None)
        else:
            model = float_model()
        return _compile(model, keras.optimizers.Adam(case["tune_lr"]))

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


def _timing(config: dict) -> tuple[int, int]:
    """(rounds, steps) of the step timing: the config's explicit `timing`
    (tests), else --full's or --quick's (no rounds: no timing)."""
    return config.get("timing") or ((TIMING_ROUNDS, TIMING_STEPS) if config["full"]
                                    else QUICK_TIMING)


def _step_ratios(times: dict, prune_epochs: int, qat_epochs: int) -> dict[str, float]:
    """Per-phase step ratios to plain fit, and the whole compressing fit's
    (phases weighted by their epochs)."""
    prune = times["prune_step_s"] / times["plain_step_s"]
    qat = times["qat_step_s"] / times["plain_step_s"]
    return {"prune_step_ratio": prune, "qat_step_ratio": qat,
            "step_ratio": (prune * prune_epochs + qat * qat_epochs) / (prune_epochs + qat_epochs)}


def run_case(name: str, config: dict) -> dict:
    import keras
    import numpy as np

    import keras_compress as kc
    import tflite_export
    from tflite_export.model import write_atomic

    case = CASES[name]
    images, tests, float_epochs, prune_epochs, qat_epochs = _run_lengths(config, case)
    setup = {"model": name, "dataset": case["dataset"], "data_dir": config["data_dir"],
             "seed": config["seed"], "train_images": images, "test_images": tests,
             "batch_size": case["batch"], "learning_rate": case["tune_lr"],
             "lr_decay": case.get("tune_decay", "constant"),
             "sparsity": case["sparsity"], "float_epochs": float_epochs,
             "prune_epochs": prune_epochs,
             "qat_epochs": qat_epochs,
             "timing_rounds": _timing(config)[0], "timing_steps": _timing(config)[1],
             "distill": config.get("distill", True),
             "qat_timing": QAT_TIMING}
    (x, y), (xt, yt) = load_case_data(setup)
    keras.utils.set_random_seed(config["seed"])
    batch = case["batch"]
    steps = -(-len(x) // batch)
    data = training_data(x, y, batch, case["dataset"] == "cifar10", config["seed"])

    def accuracy(model):
        return float(np.mean(np.argmax(model.predict(xt, verbose=0), 1) == yt))

    print(f"\n== {name}: float baseline, {float_epochs} epochs on {len(x):,} images", flush=True)
    base = getattr(kc.models, name)(input_shape=tuple(x.shape[1:]))
    cached = _float_cache(config, name, (images, float_epochs), case)
    if _in_cache(cached, config):
        print(f"   (trained weights from {cached})", flush=True)
        with np.load(cached) as saved:
            base.set_weights([saved[f"w{i}"] for i in range(len(saved.files))])
    else:
        train_float(base, data, case["float"], float_epochs, steps,
                    backup_dir=_baselines.backup_dir(cached) if cached else None)
        if cached:
            buffer = io.BytesIO()
            np.savez(buffer, **{f"w{i}": w for i, w in enumerate(base.get_weights())})
            cached.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(cached, buffer.getvalue())
            if config.get("baselines_dir"):
                finished = _baselines.finish(cached, Path(config["baselines_dir"]))
                if finished:
                    print(f"   (the committed backup is replaced by the {finished}: "
                          "commit it)", flush=True)
    float_weights = base.get_weights()
    float_bytes = 4 * sum(int(np.prod(w.shape)) for w in float_weights)

    def convert(model, **kwargs):
        began = time.perf_counter()
        tfl = tflite_export.convert(model, **kwargs)
        return tfl, time.perf_counter() - began

    artifacts = {}
    artifacts["float32"] = (*convert(base, mode="float32"), accuracy(base), None)
    artifacts["PTQ int8"] = (*convert(base, mode="int8", io_dtype="int8",
                                      representative_data=x[:500]), accuracy(base), None)
    other_failed, moved_inside = {}, set()
    if config.get("other_tools", False):
        print(f"== {name}: other tools on the same float weights", flush=True)
        found, other_failed = other_tools.artifacts(
            lambda: getattr(kc.models, name)(input_shape=tuple(x.shape[1:])), float_weights,
            artifacts["float32"][0], x[:200], xt, yt,
            progress=lambda line: print(line, flush=True))
        for label, (tfl, seconds, keras_acc) in found.items():
            if tfl.has_external_buffers:
                # ai-edge-quantizer keeps the weights after the flatbuffer,
                # which TFLite-Micro does not read: measured with them inside.
                moved_inside.add(label)
                tfl = tfl.with_inline_buffers()
            artifacts[label] = (tfl, seconds, keras_acc, None)

    def compress(label: str, teacher=None):
        """keras-compress' prune + QAT row `label` (distilled from `teacher`
        if given): trained, stripped and converted, or loaded from the cache."""
        def train():
            stripped = _fit_compressed(name, case, setup, data, steps, float_weights,
                                       tuple(x.shape[1:]), teacher)
            tfl, seconds = convert(stripped, mode="int8", io_dtype="int8")
            return tfl, {"keras_accuracy": accuracy(stripped), "conversion_s": seconds,
                         "sparsity": kc.sparsity(stripped).overall}

        tfl, meta = _cached_row(_row_cache(config, name, label), config, train)
        print(f"   ({label}: Keras accuracy {100 * meta['keras_accuracy']:.2f} %, "
              f"sparsity {meta['sparsity']:.3f})", flush=True)
        return tfl, meta["conversion_s"], meta["keras_accuracy"], meta["sparsity"]

    print(f"== {name}: keras-compress prune {case['sparsity']} + QAT", flush=True)
    artifacts["keras-compress"] = compress("keras-compress")
    if case.get("distill") and config.get("distill", True):
        print(f"== {name}: keras-compress prune {case['sparsity']} + QAT, distilled from the "
              f"float baseline ({case['distill']})", flush=True)
        artifacts[DISTILLED] = compress(DISTILLED, teacher=base)

    if setup["timing_rounds"]:
        print(f"== {name}: training-step cost, plain vs prune / QAT phase, interleaved",
              flush=True)
    ours_times = _ours_step_times(name, case, setup, float_weights, x, y, steps)

    peer = None
    if config["tfmot"]:
        print(f"== {name}: TFMOT prune {case['sparsity']} + PQAT (tf_keras subprocess)",
              flush=True)
        trained = []
        tfl, peer = _cached_row(_row_cache(config, name, "TFMOT"), config,
                                lambda: trained.append(True) or _run_peer(setup, float_weights))
        if not trained:
            # The cached row's step times are another run's (maybe another
            # machine's): TFMOT's steps are timed again, next to ours (or
            # dropped, when this run times no steps).
            peer = {k: v for k, v in peer.items() if not k.endswith("_step_s")}
            if setup["timing_rounds"]:
                print(f"== {name}: TFMOT step cost, plain vs prune / PQAT (tf_keras "
                      "subprocess)", flush=True)
                peer = {**peer, **_peer_step_times(setup, float_weights)}
        artifacts["TFMOT"] = (tfl, peer["conversion_s"], peer["keras_accuracy"], peer["sparsity"])

    # Latency of all artifacts interleaved, so their ratios share the machine's noise.
    latency = tflite_export.compare_latency(
        {label: tfl for label, (tfl, *_) in artifacts.items()},
        rounds=max(2, config["latency_runs"] // 5), runs_per_round=5)
    rows = {}
    for label, (tfl, seconds, keras_acc, sparsity) in artifacts.items():
        result = tflite_export.benchmark(tfl, xt, yt, name=label, runs=5,
                                         micro=tfl.is_fully_integer, progress=True)
        rows[label] = {
            "keras": keras_acc, "litert": result.litert_accuracy, "micro": result.micro_accuracy,
            "raw": tfl.size, "gzip": tfl.gzip_size, "raw_ratio": float_bytes / tfl.size,
            "gzip_ratio": float_bytes / tfl.gzip_size, "latency_ms": latency[label].median_ms,
            "conversion_s": seconds, "arena": result.arena_bytes, "sparsity": sparsity,
            "fully_integer": tfl.is_fully_integer}
        if label in other_tools.LABELS and result.micro_accuracy is None:
            rows[label]["micro_note"] = _micro_refusal(tfl)
        if label in moved_inside:
            rows[label]["weights_moved_inside"] = True
    if "AEQ static_wi8_ai16" in rows:
        rows["AEQ static_wi8_ai16"]["litert_unquantized_input"] = other_tools.raw_int16_accuracy(
            artifacts["AEQ static_wi8_ai16"][0], xt, yt)
    distilled_times = {k[len("distill_"):]: v for k, v in ours_times.items()
                       if k.startswith("distill_")}
    if distilled_times:
        distilled_times["plain_step_s"] = ours_times["plain_step_s"]
    for label, times in (("keras-compress", ours_times), ("TFMOT", peer),
                         (DISTILLED, distilled_times)):
        if times and "prune_step_s" in times and label in rows:
            rows[label].update(_step_ratios(times, prune_epochs, qat_epochs))
    for label in ("PTQ int8", "keras-compress", DISTILLED, "TFMOT", *other_tools.LABELS):
        if label in rows:
            rows[label]["latency_vs_float"] = rows[label]["latency_ms"] / rows["float32"]["latency_ms"]
    if peer:
        rows["keras-compress"]["latency_vs_tfmot"] = (rows["keras-compress"]["latency_ms"]
                                                      / rows["TFMOT"]["latency_ms"])
    return {"case": name, "setup": {k: v for k, v in setup.items() if k != "data_dir"},
            "float_bytes": float_bytes, "rows": rows, "peer": peer,
            "other_tools_failed": other_failed,
            "plain_step_ms": 1e3 * ours_times["plain_step_s"] if ours_times else None}


def _micro_refusal(tfl) -> str:
    """Why TFLite-Micro does not run `tfl`, in one line."""
    from tflite_export import micro

    try:
        micro.check_micro_compatible(tfl)
    except (ValueError, RuntimeError) as exc:
        return str(exc).splitlines()[0]
    floats = sorted({op for op, _ in tfl.float_ops})
    return "allocation or invocation failed" + (
        f"; it computes in float ({', '.join(floats)})" if floats else "")


def _other_tools_notes(result: dict) -> list[str]:
    """What the table cannot say about the other tools' rows: those that have
    no artifact, where TFLite-Micro refused an artifact, the 16x8 input."""
    notes = [f"{label}: no artifact ({why})"
             for label, why in result.get("other_tools_failed", {}).items()]
    for label, row in _ordered_rows(result):
        if label in other_tools.LABELS and row.get("micro_note"):
            notes.append(f"{label}: TFLite-Micro does not run it ({row['micro_note']})")
        if row.get("weights_moved_inside"):
            notes.append(f"{label}: stores its weights after the flatbuffer (buffer offsets), "
                         "which TFLite-Micro does not read (it runs on garbage); measured "
                         "with them moved inside (`with_inline_buffers()`)")
    row = result["rows"].get("AEQ static_wi8_ai16")
    if row and row.get("litert_unquantized_input") is not None:
        notes.append(
            f"AEQ static_wi8_ai16 takes int16 input: {100 * row['litert']:.2f} % with the "
            "input quantized by its scale and zero point, "
            f"{100 * row['litert_unquantized_input']:.2f} % when the float pixels are cast to "
            "int16 instead (all become 0 or 1): a misuse, not a defect of the recipe")
    return ["", *[f"- {n}." for n in notes]] if notes else []


def render(results: list[dict], config: dict) -> str:
    def pct(v):
        return "" if v is None else f"{100 * v:.2f} %"

    def num(v, fmt):
        return "" if v is None else format(v, fmt)

    run = "full" if config["full"] else "quick"
    lines = [f"## Benchmark suite ({run} run): float, PTQ, TFMOT and keras-compress", "",
             f"`python -m benchmarks.run --{run}`: for each case the Keras 3 float baseline, its "
             "post-training int8 conversion, TFMOT (tf_keras: prune_low_magnitude, then "
             "prune-preserving QAT, in a subprocess) and keras-compress (prune + QAT in one fit), "
             "both starting from the baseline's weights, with the same data, epochs and learning "
             "rate (Adam; the heading of each case gives it) and the same layers pruned "
             "(depthwise kernels stay dense: TFMOT's prune registry lists no prunable weight "
             "for DepthwiseConv2D); where a "
             f"case says so, also `{DISTILLED}`: the same fit distilled from the float baseline "
             "(`kc.Distiller`, its teacher's forward pass counted in the step ratio). Every "
             "artifact is measured here with LiteRT (1 thread, XNNPACK; the artifacts of a case "
             "timed interleaved, in rounds) and the TFLite-Micro interpreter. Step ratio: "
             "per-step time of the compressing fit / plain fit of the same framework, measured "
             f"on {_timing(config)[1]} batches with fresh "
             "copies taking turns (the median of the "
             "rounds each case states, after a warm-up), phases weighted by their epochs; each "
             "phase timed as the fit runs it (the prune phase with masks updating on the "
             "schedule's frequency, the QAT phase after its last update). The "
             "LeNets (Dense-heavy microcontroller models) are quantized with "
             "`per_tensor_dense=True`, TFMOT's choice for Dense; the CNNs per channel. "
             "The tools users would pick instead, post-training on the same float weights: "
             "`Keras int8` / `Keras int4` (Keras 3's `model.quantize(mode)` then "
             "`model.export(format=\"litert\")`; its Keras column is the quantized Keras "
             "model) and `AEQ <recipe>` (ai-edge-quantizer on the float `.tflite`, calibrated "
             "on 200 training images where the recipe needs it).", ""]
    if not config["full"]:
        lines += ["The quick run only shows that every stage runs, in a few minutes: its "
                  "float baselines train a few epochs on a subset (the CIFAR-10 models stay far "
                  "below their full-run accuracy, so a teacher distils little), accuracy is "
                  "measured on a few hundred test images and LiteRT latency on fewer runs; it "
                  "skips the training-step timing (no step ratios), the distilled rows "
                  "(`--distill` adds them) and the other tools' rows (`--other_tools`). The "
                  "numbers that count are in the full run.", ""]
    for r in results:
        s = r["setup"]
        lines += [f"### {r['case']} ({s['dataset']}: {s['train_images']:,} training, "
                  f"{s['test_images']:,} test images; sparsity {s['sparsity']:g}, "
                  + (f"{s['float_epochs']} float, " if "float_epochs" in s else "")
                  + f"{s['prune_epochs']} prune + {s['qat_epochs']} QAT epochs at Adam "
                  + f"{s['learning_rate']:g}"
                  + (", cosine-decayed per epoch" if s.get("lr_decay") == "cosine" else "")
                  + (f"; run {r['date']}" if r.get("date") else "")
                  + (f" on {r['cpu']}, {r['machine'].split(', ')[-1]}" if r.get("cpu") else "")
                  + ")", "",
                  "| artifact | Keras | LiteRT | TFLite-Micro | .tflite bytes | gzip | "
                  "ratio raw / gzip | LiteRT ms | vs float32 | step ratio | conversion s | "
                  "arena bytes |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for label, row in _ordered_rows(r):
            lines.append(
                f"| {label} | {pct(row['keras'])} | {pct(row['litert'])} | {pct(row['micro'])} | "
                f"{row['raw']:,} | {row['gzip']:,} | {row['raw_ratio']:.1f}x / "
                f"{row['gzip_ratio']:.1f}x | {row['latency_ms']:.3f} | "
                f"{num(row.get('latency_vs_float'), '.2f')} | {num(row.get('step_ratio'), '.2f')} | "
                f"{row['conversion_s']:.1f} | {num(row['arena'], ',')} |")
        lines += _other_tools_notes(r)
        ours = r["rows"]["keras-compress"]
        if "latency_vs_tfmot" in ours and "prune_step_ratio" in ours:
            tfmot = r["rows"]["TFMOT"]
            lines += ["", f"keras-compress int8 latency / TFMOT int8 latency: "
                      f"{ours['latency_vs_tfmot']:.2f}. Step ratios by phase (median of "
                      f"{s.get('timing_rounds', _LEGACY_TIMING_ROUNDS)} interleaved rounds"
                      + ("" if s.get("qat_timing") == QAT_TIMING else
                         "; our QAT phase timed with the masks still updating, which the "
                         "real fit's QAT phase no longer does")
                      + "): "
                      "keras-compress "
                      f"prune {ours['prune_step_ratio']:.2f}, QAT {ours['qat_step_ratio']:.2f}; "
                      f"TFMOT prune {tfmot['prune_step_ratio']:.2f}, PQAT "
                      f"{tfmot['qat_step_ratio']:.2f}"
                      + (f"; {DISTILLED} prune {r['rows'][DISTILLED]['prune_step_ratio']:.2f}, "
                         f"QAT {r['rows'][DISTILLED]['qat_step_ratio']:.2f}"
                         if "prune_step_ratio" in r["rows"].get(DISTILLED, {}) else "") + "."]
        if r["case"] == "resnet8":
            int8 = _int8_accuracies(r)
            reached = [label for label, acc in int8.items() if acc >= MLPERF_TINY_TARGET]
            verdict = (f"reached by {', '.join(reached)}" if reached else "not reached")
            verdict += (f" (int8: {', '.join(f'{k} {100 * v:.2f} %' for k, v in int8.items())}; "
                        f"float {100 * r['rows']['float32']['keras']:.2f} % after "
                        f"{s.get('float_epochs', '?')} float epochs)")
            lines += ["", f"MLPerf Tiny quality target for this model: "
                      f"{100 * MLPERF_TINY_TARGET:.0f} % top-1 (int8), {verdict}."]
        lines.append("")
    lines += _references(results, docs=config.get("docs_dir"))
    return "\n".join(lines)


# Published numbers the suite's results sit next to (sources in the rows).
_TFMOT_QAT = "MobileNetV1 71.03 -> 71.06 %, ResNet50 v1 76.3 -> 76.1 %, MobileNetV2 70.77 -> 70.01 %"
_TFMOT_PRUNING = ("InceptionV3 78.1 -> 78.0 % (50 %), 76.1 % (75 %), 74.6 % (87.5 %); "
                  "MobileNetV1 71.04 -> 70.84 % (50 %)")


def _references(results: list[dict], docs: Path | None = None) -> list[str]:
    """The published reference rows, with what keras-compress measured next to
    them: this run's cases, and the Deep Compression and distillation
    benchmarks' last results (docs/benchmarks.json)."""
    from benchmarks import _report

    docs = docs or _report.DOCS

    def deep_compression(model):
        try:
            rows = [row for r in _report.load("deep_compression", docs)["results"]
                    if r["model"] == model for rows in r["rows"].values() for row in rows
                    if row.get("within_bound")]
            gzip, flash = (max(row[key] for row in rows) for key in ("gzip_ratio", "raw_ratio"))
            return (f"{gzip:.1f}x gzip'd, {flash:.1f}x raw TFLite-Micro flash, int8 within 0.5 "
                    "points of float (Deep Compression section)")
        except (KeyError, ValueError):
            return "run `python -m benchmarks.deep_compression`"

    try:
        rows = _report.load("distillation", docs)["rows"]
        distilled = (f"{sum(r['alone'] for r in rows) / len(rows):.1f} -> "
                     f"{sum(r['distilled'] for r in rows) / len(rows):.1f} errors of 2,000, "
                     f"mean of {len(rows)} seeds (distillation section)")
    except KeyError:
        distilled = "run `python -m benchmarks.distillation`"
    gains = [f"{r['case']} {100 * (r['rows'][DISTILLED]['litert'] - r['rows']['keras-compress']['litert']):+.2f}"
             for r in results if DISTILLED in r["rows"]]
    if gains:
        distilled += (f"; in this run, prune + QAT distilled vs not: {', '.join(gains)} points "
                      "(int8 LiteRT)")

    def change(label):
        parts = []
        for r in results:
            row = r["rows"].get(label)
            if row and row["litert"] is not None:
                parts.append(f"{r['case']} {100 * (row['litert'] - r['rows']['float32']['keras']):+.2f}")
        return ", ".join(parts) + " points (int8 LiteRT vs float Keras, this run)"

    resnet = next((r for r in results if r["case"] == "resnet8"), None)
    mlperf = ("not run" if resnet is None else
              "int8 in LiteRT: " + ", ".join(
                  f"{label} {100 * acc:.2f} %" for label, acc in _int8_accuracies(resnet).items())
              + f" ({resnet['setup']['train_images']:,} training images, this run)")
    return [
        "### Published reference rows", "",
        "| reference | published | keras-compress, measured here |", "|---|---|---|",
        f"| Deep Compression, LeNet-300-100 (Han et al., ICLR 2016) | 40x | "
        f"{deep_compression('lenet_300_100')} |",
        f"| Deep Compression, LeNet-5 | 39x | {deep_compression('lenet5')} |",
        "| Distillation on MNIST (Hinton et al., 2015): 800-800 student alone -> distilled | "
        f"146 -> 74 test errors of 10,000 | {distilled} |",
        f"| TFMOT QAT, ImageNet top-1 float -> int8 (TFMOT guide) | {_TFMOT_QAT} | "
        f"{change('keras-compress')} |",
        f"| TFMOT pruning, ImageNet top-1 dense -> sparse (TFMOT guide) | {_TFMOT_PRUNING} | "
        f"TFMOT itself on these cases: {change('TFMOT')} |",
        f"| MLPerf Tiny image classification, ResNet-8 on CIFAR-10 | 85 % top-1 quality target | "
        f"{mlperf} |", ""]


def _ordered_rows(result: dict) -> list[tuple[str, dict]]:
    """A case's (label, row) pairs in `_ORDER`, for tables and plot alike."""
    return sorted(result["rows"].items(), key=lambda item: _ORDER.index(item[0]))


def _int8_accuracies(result: dict) -> dict[str, float]:
    """LiteRT accuracy of each int8 artifact of a case (the other tools' 4-bit,
    hybrid and 16x8 rows are not int8), in `_ORDER`."""
    return {label: row["litert"] for label, row in _ordered_rows(result)
            if label != "float32" and row["litert"] is not None
            and (label not in other_tools.LABELS or label == "AEQ static_wi8_ai8")}


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    from benchmarks import _report

    plain = ticker.FuncFormatter(lambda value, _: f"{value:g}")
    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4), squeeze=False)
    for ax, r in zip(axes[0], results):
        for label, row in _ordered_rows(r):
            acc = row["micro"] if row["micro"] is not None else row["litert"]
            # One colour per artifact kind in every panel, whichever rows a case has.
            ax.scatter(row["gzip"] / 1024, 100 * acc, label=label, s=40,
                       color=f"C{_ORDER.index(label)}")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_locator(ticker.LogLocator(subs=(2.0, 5.0)))
        ax.xaxis.set_minor_formatter(plain)
        ax.set_xlabel("gzip'd .tflite, KiB (log)")
        ax.set_ylabel("top-1 %, int8 where int8")
        ax.set_title(r["case"])
        ax.legend(fontsize=7)
    fig.tight_layout()
    _report.save_png(fig, path)


def main(argv) -> None:
    del argv
    from absl import logging

    from benchmarks import _report

    logging.set_verbosity(logging.WARNING)
    if FLAGS.quick == FLAGS.full:
        raise app.UsageError("Pass exactly one of --quick and --full.")
    unknown = set(FLAGS.cases) - set(CASES)
    if unknown:
        raise app.UsageError(f"Unknown cases {sorted(unknown)}; known: {list(CASES)}.")
    config = {"full": FLAGS.full, "data_dir": FLAGS.data_dir, "tfmot": FLAGS.tfmot,
              "other_tools": FLAGS.full if FLAGS.other_tools is None else FLAGS.other_tools,
              "latency_runs": FLAGS.latency_runs if FLAGS.full else min(FLAGS.latency_runs, 10),
              "seed": FLAGS.seed, "distill": FLAGS.full if FLAGS.distill is None else FLAGS.distill,
              "cache_dir": FLAGS.cache_dir, "baselines_dir": FLAGS.baselines_dir}
    if FLAGS.publish_baselines:
        if not (FLAGS.cache_dir and FLAGS.baselines_dir):
            raise app.UsageError("--publish_baselines needs --cache_dir and --baselines_dir.")
        for name in FLAGS.cases:
            case = CASES[name]
            images, _, epochs, *_ = _run_lengths(config, case)
            cached = _float_cache(config, name, (images, epochs), case)
            print(f"{name}: {_baselines.publish(cached, Path(FLAGS.baselines_dir))}")
            for line in _publish_rows(config, name, Path(FLAGS.baselines_dir)):
                print(f"{name}: {line}")
        return
    docs = Path(FLAGS.docs) if FLAGS.docs else _report.DOCS
    config["docs_dir"] = docs
    key = f"{KEY}_full" if FLAGS.full else KEY
    fresh = {name: {**run_case(name, config), "date": time.strftime("%Y-%m-%d"),
                    **_report.environment()} for name in FLAGS.cases}
    results = _accumulate(fresh, key, docs)
    markdown = render(results, config)
    print(markdown)
    data = {"config": {k: v for k, v in config.items()
                       if k not in ("data_dir", "cache_dir", "baselines_dir", "docs_dir")},
            "results": results, **_report.environment()}
    _report.update(key, markdown, data, docs=docs)
    plot(results, docs / f"{key}.png")


def _accumulate(fresh: dict[str, dict], key: str, docs: Path) -> list[dict]:
    """The section's results: this run's `fresh` ones, by case, and the
    earlier results of the cases it did not run (e.g. `--full --cases=resnet8`
    keeps the other cases' tables). The section is read when this is called,
    at the end of the run, so a run of other cases that finished meanwhile
    is kept too."""
    from benchmarks import _report

    earlier = _report.load(key, docs).get("results", [])
    results = {**{r["case"]: r for r in earlier if r["case"] in CASES}, **fresh}
    return [results[name] for name in CASES if name in results]


if __name__ == "__main__":
    _define_flags()
    app.run(main)
