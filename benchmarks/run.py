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

import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402
from benchmarks import (DATA_DIR, _baselines, _cache, _cases, _peers, _render,  # noqa: E402
                        other_tools)

FLAGS = flags.FLAGS
KEY = "suite"
REPO = Path(__file__).resolve().parents[1]


def _define_flags() -> None:
    flags.DEFINE_bool("quick", False, "Short run (reduced epochs and images).")
    flags.DEFINE_bool("full", False, "The real run.")
    flags.DEFINE_list("cases", list(_cases.CASES), "Cases to run; empty (--cases=) only rewrites "
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


def run_case(name: str, config: dict) -> dict:
    import keras
    import numpy as np

    import keras_compress as kc
    import tflite_export

    case = _cases.CASES[name]
    images, tests, float_epochs, prune_epochs, qat_epochs = _cases.run_lengths(config, case)
    setup = {"model": name, "dataset": case["dataset"], "data_dir": config["data_dir"],
             "seed": config["seed"], "train_images": images, "test_images": tests,
             "batch_size": case["batch"], "learning_rate": case["tune_lr"],
             "lr_decay": case.get("tune_decay", "constant"),
             "sparsity": case["sparsity"], "float_epochs": float_epochs,
             "prune_epochs": prune_epochs,
             "qat_epochs": qat_epochs,
             "timing_rounds": _cases.timing(config)[0], "timing_steps": _cases.timing(config)[1],
             "distill": config.get("distill", True),
             "qat_timing": _cases.QAT_TIMING}
    (x, y), (xt, yt) = _cases.load_case_data(setup)
    keras.utils.set_random_seed(config["seed"])
    batch = case["batch"]
    steps = -(-len(x) // batch)
    data = _cases.training_data(x, y, batch, case["dataset"] == "cifar10", config["seed"])

    def accuracy(model):
        return float(np.mean(np.argmax(model.predict(xt, verbose=0), 1) == yt))

    print(f"\n== {name}: float baseline, {float_epochs} epochs on {len(x):,} images", flush=True)
    base = getattr(kc.models, name)(input_shape=tuple(x.shape[1:]))
    _cache.float_baseline(base, config, name, data, steps)
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
            stripped = _cases.fit_compressed(name, case, setup, data, steps, float_weights,
                                       tuple(x.shape[1:]), teacher)
            tfl, seconds = convert(stripped, mode="int8", io_dtype="int8")
            return tfl, {"keras_accuracy": accuracy(stripped), "conversion_s": seconds,
                         "sparsity": kc.sparsity(stripped).overall}

        tfl, meta = _cache.cached_row(_cache.row_cache(config, name, label), config, train)
        print(f"   ({label}: Keras accuracy {100 * meta['keras_accuracy']:.2f} %, "
              f"sparsity {meta['sparsity']:.3f})", flush=True)
        return tfl, meta["conversion_s"], meta["keras_accuracy"], meta["sparsity"]

    print(f"== {name}: keras-compress prune {case['sparsity']} + QAT", flush=True)
    artifacts["keras-compress"] = compress("keras-compress")
    if case.get("distill") and config.get("distill", True):
        print(f"== {name}: keras-compress prune {case['sparsity']} + QAT, distilled from the "
              f"float baseline ({case['distill']})", flush=True)
        artifacts[_cases.DISTILLED] = compress(_cases.DISTILLED, teacher=base)

    if setup["timing_rounds"]:
        print(f"== {name}: training-step cost, plain vs prune / QAT phase, interleaved",
              flush=True)
    ours_times = _cases.ours_step_times(name, case, setup, float_weights, x, y, steps)

    peer = None
    if config["tfmot"]:
        print(f"== {name}: TFMOT prune {case['sparsity']} + PQAT (tf_keras subprocess)",
              flush=True)
        trained = []
        tfl, peer = _cache.cached_row(_cache.row_cache(config, name, "TFMOT"), config,
                                lambda: trained.append(True) or _peers.run_peer(setup, float_weights))
        if not trained:
            # The cached row's step times are another run's (maybe another
            # machine's): TFMOT's steps are timed again, next to ours (or
            # dropped, when this run times no steps).
            peer = {k: v for k, v in peer.items() if not k.endswith("_step_s")}
            if setup["timing_rounds"]:
                print(f"== {name}: TFMOT step cost, plain vs prune / PQAT (tf_keras "
                      "subprocess)", flush=True)
                peer = {**peer, **_peers.peer_step_times(setup, float_weights)}
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
            rows[label]["micro_note"] = _peers.micro_refusal(tfl)
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
                         (_cases.DISTILLED, distilled_times)):
        if times and "prune_step_s" in times and label in rows:
            rows[label].update(_cases.step_ratios(times, prune_epochs, qat_epochs))
    for label in ("PTQ int8", "keras-compress", _cases.DISTILLED, "TFMOT", *other_tools.LABELS):
        if label in rows:
            rows[label]["latency_vs_float"] = rows[label]["latency_ms"] / rows["float32"]["latency_ms"]
    if peer:
        rows["keras-compress"]["latency_vs_tfmot"] = (rows["keras-compress"]["latency_ms"]
                                                      / rows["TFMOT"]["latency_ms"])
    return {"case": name, "setup": {k: v for k, v in setup.items() if k != "data_dir"},
            "float_bytes": float_bytes, "rows": rows, "peer": peer,
            "other_tools_failed": other_failed,
            "plain_step_ms": 1e3 * ours_times["plain_step_s"] if ours_times else None}


def main(argv) -> None:
    del argv
    from absl import logging

    from benchmarks import _report

    logging.set_verbosity(logging.WARNING)
    if FLAGS.quick == FLAGS.full:
        raise app.UsageError("Pass exactly one of --quick and --full.")
    unknown = set(FLAGS.cases) - set(_cases.CASES)
    if unknown:
        raise app.UsageError(f"Unknown cases {sorted(unknown)}; known: {list(_cases.CASES)}.")
    config = {"full": FLAGS.full, "data_dir": FLAGS.data_dir, "tfmot": FLAGS.tfmot,
              "other_tools": FLAGS.full if FLAGS.other_tools is None else FLAGS.other_tools,
              "latency_runs": FLAGS.latency_runs if FLAGS.full else min(FLAGS.latency_runs, 10),
              "seed": FLAGS.seed, "distill": FLAGS.full if FLAGS.distill is None else FLAGS.distill,
              "cache_dir": FLAGS.cache_dir, "baselines_dir": FLAGS.baselines_dir}
    if FLAGS.publish_baselines:
        if not (FLAGS.cache_dir and FLAGS.baselines_dir):
            raise app.UsageError("--publish_baselines needs --cache_dir and --baselines_dir.")
        for name in FLAGS.cases:
            case = _cases.CASES[name]
            images, _, epochs, *_ = _cases.run_lengths(config, case)
            cached = _cache.float_cache(config, name, (images, epochs), case)
            print(f"{name}: {_baselines.publish(cached, Path(FLAGS.baselines_dir))}")
            for line in _cache.publish_rows(config, name, Path(FLAGS.baselines_dir)):
                print(f"{name}: {line}")
        return
    docs = Path(FLAGS.docs) if FLAGS.docs else _report.DOCS
    config["docs_dir"] = docs
    key = f"{KEY}_full" if FLAGS.full else KEY
    fresh = {name: _report.stamped(run_case(name, config)) for name in FLAGS.cases}
    results = _accumulate(fresh, key, docs)
    markdown = _render.render(results, config)
    print(markdown)
    data = {"config": {k: v for k, v in config.items()
                       if k not in ("data_dir", "cache_dir", "baselines_dir", "docs_dir")},
            "results": results, **_report.environment()}
    _report.update(key, markdown, data, docs=docs)
    _render.plot(results, docs / f"{key}.png")


def _accumulate(fresh: dict[str, dict], key: str, docs: Path) -> list[dict]:
    """The section's results: this run's `fresh` ones, by case, and the
    earlier results of the cases it did not run (e.g. `--full --cases=resnet8`
    keeps the other cases' tables). The section is read when this is called,
    at the end of the run, so a run of other cases that finished meanwhile
    is kept too."""
    from benchmarks import _report

    earlier = _report.load(key, docs).get("results", [])
    results = {**{r["case"]: r for r in earlier if r["case"] in _cases.CASES}, **fresh}
    return [results[name] for name in _cases.CASES if name in results]


if __name__ == "__main__":
    _define_flags()
    app.run(main)
