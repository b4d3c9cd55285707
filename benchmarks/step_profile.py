"""Where the training-step overhead goes: a per-op profile, plain fit vs compressing fit.

The suite's step ratio (`benchmarks.run`) says how much slower a compressing
fit is; this says where the difference is spent. For one case of the suite it
profiles `--steps` training steps of the plain model and of keras-compress'
prune + QAT model in one phase (`--phase=prune`: quantizers observing, masks
as the schedule left them; `--phase=qat`: fake quantization on, final masks)
with TensorFlow's profiler, and prints host self time per step by op type
(plain, compressed, difference) and the costliest single ops of the
compressed step. Self times of ops that run concurrently overlap, so the sums
are an attribution, not wall time; the suite's interleaved timing stays the
measure of the ratio.

    python -m benchmarks.step_profile                      # LeNet-300-100, QAT phase
    python -m benchmarks.step_profile --case=lenet5 --phase=prune --top=20
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402
from benchmarks import DATA_DIR  # noqa: E402

FLAGS = flags.FLAGS
PHASES = ("prune", "qat")


@dataclasses.dataclass(frozen=True)
class OpStat:
    """One op of a profiled fit: its type, full name, how often it ran and
    its host self time in microseconds over all runs."""

    type: str
    name: str
    occurrences: int
    self_us: float


def _define_flags() -> None:
    flags.DEFINE_string("data_dir", str(DATA_DIR),
                        "Folder holding mnist/ and cifar10/ (see keras_compress.datasets).")
    flags.DEFINE_string("case", "lenet_300_100", "A case of benchmarks._cases.CASES.")
    flags.DEFINE_enum("phase", "qat", PHASES, "The compressing fit's phase to profile.")
    flags.DEFINE_integer("steps", 100, "Training steps profiled per model (after a warm-up).")
    flags.DEFINE_integer("top", 15, "Rows of each table.")
    flags.DEFINE_integer("seed", 0, "Random seed.")


def profile_fit(model, x, y, batch_size: int, callbacks=()) -> list[OpStat]:
    """Host ops of one epoch of `model.fit(x, y)` under TensorFlow's profiler
    (the model compiled and warmed up by the caller)."""
    import tensorflow as tf
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin

    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        try:
            model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, callbacks=list(callbacks))
        finally:
            tf.profiler.experimental.stop()
        planes = [str(p) for p in Path(logdir).rglob("*.xplane.pb")]
        data, ok = plugin.xspace_to_tools_data(planes, "framework_op_stats", {})
    if not ok:
        raise RuntimeError("TensorFlow's profiler produced no framework_op_stats "
                           f"({data[:200]!r}); this TensorFlow may have renamed the tool.")
    table = json.loads(data)[0]
    columns = [c["id"] for c in table["cols"]]
    stats = []
    for row in table["rows"]:
        r = dict(zip(columns, (c["v"] for c in row["c"])))
        if r["host_or_device"] == "Host" and r["type"] != "IDLE":
            stats.append(OpStat(r["type"], r["operation"], int(r["occurrences"]),
                                float(r["total_self_time"])))
    return stats


def by_type(stats: list[OpStat]) -> dict[str, float]:
    """Host self time in microseconds per op type."""
    totals: dict[str, float] = collections.defaultdict(float)
    for s in stats:
        totals[s.type] += s.self_us
    return dict(totals)


def compare(plain: list[OpStat], compressed: list[OpStat], steps: int, top: int) -> str:
    """Markdown: per-step self time by op type (largest difference first) and
    the `top` costliest ops of the compressed step."""
    a, b = by_type(plain), by_type(compressed)
    total_a, total_b = sum(a.values()) / steps, sum(b.values()) / steps
    lines = [f"Host self time per step: plain {total_a / 1e3:.2f} ms, compressed "
             f"{total_b / 1e3:.2f} ms ({total_b / total_a:.2f}x).", "",
             "| op type | plain ms/step | compressed ms/step | difference |", "|---|---|---|---|"]
    for kind in sorted(set(a) | set(b), key=lambda k: a.get(k, 0.0) - b.get(k, 0.0))[:top]:
        pa, pb = a.get(kind, 0.0) / steps / 1e3, b.get(kind, 0.0) / steps / 1e3
        lines.append(f"| {kind} | {pa:.3f} | {pb:.3f} | {pb - pa:+.3f} |")
    lines += ["", "| compressed step's costliest ops | type | ms/step |", "|---|---|---|"]
    for s in sorted(compressed, key=lambda s: -s.self_us)[:top]:
        lines.append(f"| `{s.name}` | {s.type} | {s.self_us / steps / 1e3:.3f} |")
    return "\n".join(lines)


def profile_case(name: str, phase: str, steps: int, data_dir: str,
                 seed: int = 0) -> tuple[list[OpStat], list[OpStat]]:
    """(plain, compressed) op stats of `steps` steps of case `name` of the
    suite (untrained weights: the cost of a step does not depend on them)."""
    import keras

    import keras_compress as kc
    from benchmarks import _cases

    if phase not in PHASES:
        raise ValueError(f"`phase` must be one of {PHASES}; received {phase!r}.")
    case = _cases.CASES[name]
    batch = case["batch"]
    setup = {"model": name, "dataset": case["dataset"], "data_dir": data_dir, "seed": seed,
             "train_images": batch * steps, "test_images": 1}
    (x, y), _ = _cases.load_case_data(setup)
    keras.utils.set_random_seed(seed)
    shape = tuple(x.shape[1:])
    plain = _cases.compile(getattr(kc.models, name)(input_shape=shape),
                         keras.optimizers.Adam(case["tune_lr"]))
    # The prune phase at its final sparsity with no further update; the QAT
    # phase with fake quantization switched on by the callback's warm-up.
    schedule = kc.ConstantSparsity(case["sparsity"], 0, end_step=0)
    compressed = _cases.compile(
        _cases.compressing_model(name, case, plain.get_weights(), shape, schedule),
        keras.optimizers.Adam(case["tune_lr"]))
    warm = min(len(x), 2 * batch)
    plain.fit(x[:warm], y[:warm], batch_size=batch, verbose=0)
    compressed.fit(x[:warm], y[:warm], batch_size=batch, verbose=0,
                   callbacks=[kc.PruningCallback(),
                              kc.QuantizationCallback(start_epoch=0 if phase == "qat" else 1)])
    return (profile_fit(plain, x, y, batch),
            profile_fit(compressed, x, y, batch, [kc.PruningCallback()]))


def main(argv):
    del argv
    plain, compressed = profile_case(FLAGS.case, FLAGS.phase, FLAGS.steps, FLAGS.data_dir,
                                     FLAGS.seed)
    print(f"## {FLAGS.case}, {FLAGS.phase} phase, {FLAGS.steps} steps\n")
    print(compare(plain, compressed, FLAGS.steps, FLAGS.top))


if __name__ == "__main__":
    _define_flags()
    app.run(main)
