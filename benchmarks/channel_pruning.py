"""Channel pruning that removes channels: the same model before and after, on
the device measures (flash, RAM, latency) as well as accuracy.

Per case, from the suite's trained float baseline (`benchmarks._cases`; the
committed `benchmarks/baselines/` for the CIFAR-10 models): the unpruned int8
model (post-training, 500 calibration images), and keras-compress'
`prune(structure="channel")` removing the case's share (`SETTINGS`: of every
group's channels, or of the model's MACs and parameters; `--target`,
`--sparsity` and `--round_to` override it), distilled from the float
baseline, then `strip(shrink=True)`, QAT (distilled again) and int8. Both
int8 models are measured here, in one run: flatbuffer bytes, LiteRT latency
(1 thread, XNNPACK) and TFLite-Micro latency (each timed with the models
interleaved), the measured arena, accuracy in LiteRT and TFLite-Micro, and
`kc.profile`'s parameters and MACs. For the `--frontier` cases also what
each of several settings buys on the device before training
(`benchmarks._frontier`).

    python -m benchmarks.channel_pruning --quick        # a few minutes
    python -m benchmarks.channel_pruning --full         # LeNet-5, ResNet-8, DS-CNN

Trained pruned int8 rows are cached (--cache_dir; for --full each case's own
row also in `benchmarks/baselines/`, which carries it to the next machine) under a key
of what their training computes, so a rerun measures without retraining. A
--full fit that outlasts a session keeps a per-epoch backup beside its row and
resumes from it; `--publish_baselines` copies that backup (or the finished
row) into `benchmarks/baselines/`, to commit, and the next machine resumes it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402
from benchmarks import DATA_DIR, _baselines, _cache, _cases, _frontier, _keys  # noqa: E402

FLAGS = flags.FLAGS
KEY = "channel_pruning"
REPO = Path(__file__).resolve().parents[1]
# (prune epochs, fine-tune epochs, QAT epochs, peak learning rate of the
# case's SETTINGS optimizer) per mode.
RECIPES = {"lenet5": {"quick": (1, 0, 1, 5e-4), "full": (4, 2, 2, 5e-4)},
           "resnet8": {"quick": (1, 0, 1, 1e-2), "full": (10, 80, 4, 1e-2)},
           "ds_cnn": {"quick": (1, 0, 1, 2e-4), "full": (6, 44, 3, 5e-4)}}
# What each case removes by default (flags override). The CIFAR-10 models: 0.6
# of the mean of their MACs' and parameters' shares, in blocks of XNNPACK's
# channel tile (16; 8 for ResNet-8, whose 16-channel first stage would stay
# whole): a MACs target alone thins the high-resolution layers (arena,
# latency) and leaves the flatbuffer, whose bytes sit in the last layers; the
# --frontier table measures the alternatives. ResNet-8 caps every group at half
# its channels: uncapped, the budget took its second residual stream from 32
# channels to 8. LeNet-5: a share of every group's channels (its MACs are in
# conv2, its bytes in fc1). The fine-tune's optimizer: Adam, or Nesterov SGD
# (momentum 0.9, as ResNet-8's float baseline) where a short proxy fit showed
# it ahead: ResNet-8, not DS-CNN (docs/status.md has the numbers).
SETTINGS = {"lenet5": dict(target="channels", sparsity=0.4, round_to=4, max_sparsity=1.0,
                           optimizer="adam"),
            "resnet8": dict(target="macs+params", sparsity=0.6, round_to=8, max_sparsity=0.5,
                            optimizer="sgd"),
            "ds_cnn": dict(target="macs+params", sparsity=0.6, round_to=16, max_sparsity=1.0,
                           optimizer="adam")}
# Settings (target, sparsity, round_to[, max_sparsity]) whose device gains the
# --frontier table measures before training: MACs alone against MACs and
# parameters, with and without a cap per group.
FRONTIER = {"lenet5": [("channels", 0.4, 4), ("macs", 0.5, 4), ("macs+params", 0.5, 4)],
            "resnet8": [("macs", 0.5, 8), ("macs", 0.67, 8), ("macs+params", 0.5, 8),
                        ("macs+params", 0.6, 8), ("macs+params", 0.6, 8, 0.5),
                        ("macs+params", 0.65, 8)],
            "ds_cnn": [("macs", 0.5, 16), ("macs", 0.6, 16), ("macs+params", 0.5, 16),
                       ("macs+params", 0.6, 16), ("macs+params", 0.7, 16)]}
# Version of what the pruned rows' training computes: bump it when that changes.
SEMANTICS = 1


def _semantics(config: dict) -> int:
    """SEMANTICS, or 2 for rows a change of the selection altered: a MACs or
    parameter target with round_to > 1 now removes whole blocks of channels
    (rows pruned by each group's channels are computed as before)."""
    return 2 if config["target"] != "channels" and config["round_to"] > 1 else SEMANTICS


def _define_flags() -> None:
    flags.DEFINE_bool("quick", False, "Short run (the suite's --quick sizes).")
    flags.DEFINE_bool("full", False, "The real run.")
    flags.DEFINE_list("cases", list(RECIPES), "Cases to run; empty (--cases=) only rewrites "
                      "the section from the results kept in docs/benchmarks.json.")
    flags.DEFINE_enum("target", None, ["channels", "macs", "params", "macs+params"],
                      "What --sparsity counts: each group's channels (uniform, which "
                      "removes about as many parameters as MACs), or the model's MACs, "
                      "parameters or the mean of both shares (one global ranking). "
                      "Default: the case's SETTINGS.")
    flags.DEFINE_float("sparsity", None, "Fraction of --target removed; 0.35 of every "
                       "group's channels leaves about 0.42 of the MACs of a layer between two. "
                       "Default: the case's SETTINGS.")
    flags.DEFINE_integer("round_to", None, "Kept channel counts are multiples of this. "
                         "Default: the case's SETTINGS.")
    flags.DEFINE_float("max_sparsity", None, "No group loses more than this fraction of its "
                       "channels. Default: the case's SETTINGS.")
    flags.DEFINE_bool("distill", True, "Distil the pruned model from the float baseline.")
    flags.DEFINE_string("data_dir", str(DATA_DIR), "Folder holding mnist/ and cifar10/.")
    flags.DEFINE_string("cache_dir", str(Path.home() / ".cache" / "keras-compress" / "benchmarks"),
                        "Where trained float baselines and pruned rows are kept.")
    flags.DEFINE_string("baselines_dir", str(REPO / "benchmarks" / "baselines"),
                        "Where each --full case's trained row (or its unfinished fit's "
                        "backup) is kept under version control; '' to ignore it.")
    flags.DEFINE_integer("latency_rounds", 20, "Interleaved rounds: LiteRT 5 runs of each "
                         "model per round, TFLite-Micro 2.")
    flags.DEFINE_list("contrast", ["lenet5"], "Cases that also get unstructured pruning over the "
                      "same share of the MACs, for contrast.")
    flags.DEFINE_list("curve", ["0.15", "0.25", "0.35", "0.45", "0.55"], "Further channel sparsities "
                      "for the accuracy-against-MACs curve of --curve_case.")
    flags.DEFINE_string("curve_case", "lenet5", "The case the curve is drawn for ('' for none).")
    flags.DEFINE_list("frontier", ["resnet8", "ds_cnn"], "Cases that also get the table of "
                      "what each FRONTIER setting buys on the device before training.")
    flags.DEFINE_string("docs", None, "Output folder (default: docs/).")
    flags.DEFINE_bool("publish_baselines", False, "Copy each case's trained row, or its "
                      "unfinished fit's latest backup, from --cache_dir to "
                      "benchmarks/baselines/ (to commit), and stop.")


def _prune_shrink_qat(name, teacher, data, steps, recipe, config, x_shape,
                      structure="channel", sparsity=None, backup=None):
    """The pruned int8-ready model: channel pruning (distilled), shrink, QAT;
    or, for contrast, unstructured pruning (its zeros kept through QAT).
    With `backup` (a folder) the prune + fine-tune fit keeps a per-epoch
    backup there (weights, masks, optimizer, epoch) and resumes from it; it is
    kept after the fit, so a run stopped in QAT resumes after that fit."""
    import keras

    import keras_compress as kc

    prune_epochs, fine_epochs, qat_epochs, lr = recipe
    target, distill = config["target"], config["distill"]
    sparsity = config["sparsity"] if sparsity is None else sparsity
    student = getattr(kc.models, name)(input_shape=x_shape)
    student.set_weights(teacher.get_weights())
    schedule = kc.PolynomialDecay(0.0, sparsity, 0, max(1, prune_epochs * steps - 1),
                                  frequency=max(1, steps // 4))
    with warnings.catch_warnings():  # the logits, the model's output, keep their channels
        warnings.filterwarnings("ignore", "Layer 'logits' keeps all its channels")
        if structure == "channel":
            pruned = kc.prune(student, schedule, structure="channel", target=target,
                              ranking="layer" if target == "channels" else "global",
                              round_to=config["round_to"],
                              max_sparsity=config["max_sparsity"])
        else:
            pruned = kc.prune(student, schedule, ranking="global")

    def fit(model, epochs, callbacks, backup=None):
        trained = kc.Distiller(teacher, model, temperature=4.0, alpha=0.1) if distill else model
        _cases.compile(trained, keras.optimizers.Adam(lr) if config["optimizer"] == "adam"
                       else keras.optimizers.SGD(lr, momentum=0.9, nesterov=True))
        if backup is not None:
            callbacks = [keras.callbacks.BackupAndRestore(str(backup), delete_checkpoint=False),
                         *callbacks]
        trained.fit(**data, epochs=epochs, verbose=2, callbacks=callbacks + [
            keras.callbacks.LearningRateScheduler(  # cosine, per epoch
                lambda e: lr * 0.5 * (1 + math.cos(math.pi * e / max(1, epochs))))])

    fit(pruned, prune_epochs + fine_epochs, [kc.PruningCallback()], backup)
    small = kc.strip(pruned, shrink=structure == "channel")
    qat = kc.quantize(small)
    fit(qat, qat_epochs, [])
    return kc.strip(qat), kc.profile(small)


def case_config(name: str, config: dict) -> dict:
    """`config` with case `name`'s SETTINGS where it leaves them unset (None)."""
    return {**config, **{k: v for k, v in SETTINGS[name].items() if config.get(k) is None}}


def row_path(name: str, config: dict, structure: str, sparsity: float) -> Path:
    """Where the pruned int8 row of case `name` is cached: keyed on what its
    training computes (recipe, target, sparsity, rounding, distillation, the
    float baseline), with the structure in the file name."""
    case = _cases.CASES[name]
    images, _, float_epochs, *_ = _cases.run_lengths(config, case)
    recipe = RECIPES[name]["full" if config["full"] else "quick"]
    float_name = _cache.float_cache(config, name, (images, float_epochs), case).name
    # A cap, and an optimizer other than Adam, join the key only where they are
    # set: the uncapped Adam rows keep theirs.
    cap = [config["max_sparsity"]] if config["max_sparsity"] < 1.0 else []
    optimizer = [config["optimizer"]] if config["optimizer"] != "adam" else []
    key = json.dumps([name, images, recipe, config["target"], sparsity, config["round_to"],
                      config["distill"], _semantics(config), _keys.semantics("ours"), float_name,
                      *cap, *optimizer])
    return Path(config["cache_dir"]) / (
        f"{name}-{structure}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz")


def run_case(name: str, config: dict) -> dict:
    import keras

    import keras_compress as kc
    import tflite_export

    config = case_config(name, config)
    case = _cases.CASES[name]
    images, tests, *_ = _cases.run_lengths(config, case)
    setup = {"model": name, "dataset": case["dataset"], "data_dir": config["data_dir"],
             "seed": 0, "train_images": images, "test_images": tests}
    (x, y), (xt, yt) = _cases.load_case_data(setup)
    keras.utils.set_random_seed(0)
    steps = -(-len(x) // case["batch"])
    data = _cases.training_data(x, y, case["batch"], case["dataset"] == "cifar10", 0)
    x_shape = tuple(x.shape[1:])
    print(f"== {name}: float baseline", flush=True)
    teacher = getattr(kc.models, name)(input_shape=x_shape)
    _cache.float_baseline(teacher, config, name, data, steps)
    unpruned = tflite_export.convert(teacher, mode="int8", io_dtype="int8",
                                     representative_data=x[:500])
    recipe = RECIPES[name]["full" if config["full"] else "quick"]

    def trained(structure: str, sparsity: float):
        """(int8 TFLiteModel, {params, macs}) of one pruned row, from the cache
        (keyed on what its training computes) or trained now."""
        cached = row_path(name, config, structure, sparsity)
        # The case's own row travels in benchmarks/baselines/ (finished, or its
        # fit's backup while unfinished); the curve's and the contrast's
        # (LeNet-5, minutes) stay in the cache.
        store = (Path(config["baselines_dir"])
                 if config["full"] and config.get("baselines_dir") and structure == "channel"
                 and sparsity == config["sparsity"] else None)
        backup = _baselines.backup_dir(cached)

        def compute():
            print(f"== {name}: {structure} pruning ({sparsity:g}), "
                  f"{'shrink, ' if structure == 'channel' else ''}QAT ({recipe})", flush=True)
            stripped, profile = _prune_shrink_qat(name, teacher, data, steps, recipe, config,
                                                  x_shape, structure, sparsity,
                                                  backup if store is not None else None)
            return (tflite_export.convert(stripped, mode="int8", io_dtype="int8"),
                    {"params": profile.total_params, "macs": profile.total_macs})

        row = _cache.cached_row(cached, {"baselines_dir": store or ""}, compute)
        if store is not None and backup.is_dir():  # trained now: the row replaces the backup
            print(f"   (the {_baselines.publish(cached, store)}: commit it)", flush=True)
            shutil.rmtree(backup, ignore_errors=True)
        return row

    before = kc.profile(teacher)
    artifacts = {"unpruned int8": (unpruned, {"params": before.total_params,
                                              "macs": before.total_macs}),
                 "channel-pruned int8": trained("channel", config["sparsity"])}
    if name in config.get("contrast", ()):
        # Unstructured zeros over the same share of the MACs: the runtime still
        # computes (and stores) every one of them.
        share = 1.0 - artifacts["channel-pruned int8"][1]["macs"] / before.total_macs
        artifacts["unstructured-pruned int8"] = trained("unstructured", round(share, 2))
    tfls = {label: tfl for label, (tfl, _) in artifacts.items()}
    latency = tflite_export.compare_latency(tfls, rounds=config["latency_rounds"],
                                            runs_per_round=5)
    micro_latency = tflite_export.compare_latency(tfls, rounds=config["latency_rounds"],
                                                  runs_per_round=2, warmup=2, runtime="micro")
    rows = {}
    for label, (tfl, prof) in artifacts.items():
        result = tflite_export.benchmark(tfl, xt, yt, name=label, runs=20, micro=True,
                                         progress=True)
        rows[label] = {"params": prof["params"], "macs": prof["macs"], "bytes": tfl.size,
                       "litert_ms": latency[label].median_ms,
                       "micro_ms": micro_latency[label].median_ms,
                       "arena": result.arena_bytes, "litert": result.litert_accuracy,
                       "micro": result.micro_accuracy, "fully_integer": tfl.is_fully_integer}
    curve = []
    points = config.get("curve", {}).get(name)
    for sparsity in sorted({config["sparsity"], *points}) if points else ():
        tfl, prof = artifacts["channel-pruned int8"] if sparsity == config["sparsity"] else \
            trained("channel", sparsity)
        accuracy = tflite_export.benchmark(tfl, xt, yt, name=f"channels {sparsity:g}", runs=2,
                                           micro=False, progress=False).litert_accuracy
        curve.append({"sparsity": sparsity, "macs": prof["macs"], "params": prof["params"],
                      "bytes": tfl.size, "litert": accuracy})
    device = (_frontier.frontier(teacher, unpruned, x, FRONTIER[name],
                                 rounds=config["latency_rounds"])
              if name in config.get("frontier", ()) else None)
    a, b = rows["unpruned int8"], rows["channel-pruned int8"]
    ratios = {"macs": a["macs"] / b["macs"], "bytes": a["bytes"] / b["bytes"],
              "litert": a["litert_ms"] / b["litert_ms"],
              "micro": a["micro_ms"] / b["micro_ms"] if b["micro_ms"] else None,
              "arena": a["arena"] / b["arena"] if b["arena"] else None,
              "accuracy_points": 100 * (b["litert"] - a["litert"])}
    if "unstructured-pruned int8" in rows:
        u = rows["unstructured-pruned int8"]
        ratios["unstructured_litert"] = a["litert_ms"] / u["litert_ms"]
        ratios["unstructured_bytes"] = a["bytes"] / u["bytes"]
    return {"case": name, "recipe": recipe, "train_images": images, "test_images": len(xt),
            "setting": {k: config[k] for k in ("target", "sparsity", "round_to", "max_sparsity",
                                                "distill", "optimizer")},
            "unpruned_macs": before.total_macs, "rows": rows, "ratios": ratios, "curve": curve,
            "frontier": device}


_OPTIMIZERS = {"adam": "Adam", "sgd": "Nesterov SGD"}
_NAMES = {"channels": "channels", "macs": "MACs", "params": "parameters",
          "macs+params": "MACs and parameters (mean of the two shares)"}


def render(results: list[dict], config: dict) -> str:
    from benchmarks import _report

    run = "full" if config["full"] else "quick"
    lines = [f"## Channel pruning that removes channels ({run} run)", "",
             f"`python -m benchmarks.channel_pruning --{run}`: per case the unpruned int8 model "
             "(post-training, from the suite's float baseline) and the same model channel-pruned "
             "(`prune(structure=\"channel\", target=..., round_to=..., max_sparsity=...)`, "
             "distilled from the "
             "float baseline unless said), `strip(shrink=True)`, QAT, int8. LiteRT: 1 thread, "
             "XNNPACK; TFLite-Micro: the Python interpreter's median invoke and measured "
             "arena; on each runtime the models timed interleaved. Each heading gives what was "
             "removed, the rounding, the epochs (prune, fine-tune, QAT) and the peak learning "
             "rate of the optimizer (cosine per epoch; Nesterov SGD has momentum 0.9).", ""]
    for r in results:
        ratio = r["ratios"]
        setting = r["setting"]
        lines += [f"### {r['case']} ({r['train_images']:,} training, {r['test_images']:,} test "
                  f"images; {setting['sparsity']:g} of the {_NAMES[setting['target']]} removed, "
                  f"round_to={setting['round_to']}"
                  + (f", max_sparsity={setting['max_sparsity']:g}"
                     if setting.get("max_sparsity", 1.0) < 1.0 else "")
                  + ("" if setting["distill"] else ", not distilled")
                  + f"; epochs and rate {tuple(r['recipe'])}, "
                  + _OPTIMIZERS[setting.get("optimizer", "adam")]
                  + _report.measured_on(r) + ")", "",
                  "| model | params | MACs | .tflite bytes | LiteRT ms | TFLite-Micro ms | "
                  "arena bytes | LiteRT acc | TFLite-Micro acc |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        order = ["unpruned int8", "channel-pruned int8", "unstructured-pruned int8"]
        for label, row in sorted(r["rows"].items(), key=lambda item: order.index(item[0])):
            micro_ms = "" if row["micro_ms"] is None else f"{row['micro_ms']:.3f}"
            micro_acc = "" if row["micro"] is None else f"{100 * row['micro']:.2f} %"
            lines.append(f"| {label} | {row['params']:,} | {row['macs']:,} | {row['bytes']:,} | "
                         f"{row['litert_ms']:.3f} | {micro_ms} | {row['arena'] or 0:,} | "
                         f"{100 * row['litert']:.2f} % | {micro_acc} |")
        fmt = (lambda v: "n/a" if v is None else f"{v:.2f}x")
        lines += ["", f"Unpruned / pruned: MACs {fmt(ratio['macs'])}, flatbuffer "
                  f"{fmt(ratio['bytes'])}, LiteRT latency {fmt(ratio['litert'])}, TFLite-Micro "
                  f"latency {fmt(ratio['micro'])}, arena {fmt(ratio['arena'])}; int8 accuracy "
                  f"{ratio['accuracy_points']:+.2f} points."]
        if "unstructured_litert" in ratio:
            lines += ["", "Unstructured zeros over the same share of the MACs (the contrast "
                      "row) leave every weight and multiply in place: unpruned / unstructured "
                      f"LiteRT latency {fmt(ratio['unstructured_litert'])}, flatbuffer "
                      f"{fmt(ratio['unstructured_bytes'])}."]
        if r.get("curve"):
            lines += ["", "Accuracy against MACs (channel pruning at several sparsities, same "
                      "recipe; the plot is "
                      f"`docs/{'channel_pruning_full' if config['full'] else 'channel_pruning'}"
                      ".png`):", "",
                      "| channels removed | MACs (share of unpruned) | params | .tflite bytes | "
                      "LiteRT acc |", "|---:|---:|---:|---:|---:|"]
            lines += [f"| {p['sparsity']:g} | {p['macs']:,} ({p['macs'] / r['unpruned_macs']:.2f})"
                      f" | {p['params']:,} | {p['bytes']:,} | {100 * p['litert']:.2f} % |"
                      for p in r["curve"]]
        if r.get("frontier"):
            lines += ["", *_frontier.render(r["frontier"])]
        lines.append("")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    """int8 accuracy against MACs (share of the unpruned model) per curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmarks import _report

    curves = [r for r in results if r.get("curve")]
    if not curves:
        return
    fig, ax = plt.subplots(figsize=(5, 4))
    for r in curves:
        share = [1.0] + [p["macs"] / r["unpruned_macs"] for p in r["curve"]]
        acc = [100 * r["rows"]["unpruned int8"]["litert"]] + [100 * p["litert"] for p in r["curve"]]
        ax.plot(share, acc, "o-", label=f"{r['case']}, channel-pruned int8")
    ax.set_xlabel("MACs, share of the unpruned model")
    ax.set_ylabel("int8 top-1 % (LiteRT)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _report.save_png(fig, path)


def main(argv) -> None:
    del argv
    from benchmarks import _report

    if FLAGS.quick == FLAGS.full:
        raise app.UsageError("Pass exactly one of --quick and --full.")
    config = {"full": FLAGS.full, "seed": 0, "data_dir": FLAGS.data_dir,
              "cache_dir": FLAGS.cache_dir, "baselines_dir": FLAGS.baselines_dir,
              "target": FLAGS.target, "sparsity": FLAGS.sparsity, "round_to": FLAGS.round_to,
              "max_sparsity": FLAGS.max_sparsity,
              "distill": FLAGS.distill, "contrast": list(FLAGS.contrast),
              "frontier": list(FLAGS.frontier),
              "curve": ({FLAGS.curve_case: sorted(map(float, FLAGS.curve))}
                        if FLAGS.curve_case else {}),
              "latency_rounds": FLAGS.latency_rounds if FLAGS.full else 4}
    if FLAGS.publish_baselines:
        if not (FLAGS.cache_dir and FLAGS.baselines_dir):
            raise app.UsageError("--publish_baselines needs --cache_dir and --baselines_dir.")
        for name in FLAGS.cases:
            case = case_config(name, config)
            cached = row_path(name, case, "channel", case["sparsity"])
            print(f"{name}: {_baselines.publish(cached, Path(FLAGS.baselines_dir))}")
        return
    began = time.time()
    fresh = {name: _report.stamped(run_case(name, config)) for name in FLAGS.cases}
    docs = Path(FLAGS.docs) if FLAGS.docs else _report.DOCS
    key = f"{KEY}_full" if FLAGS.full else KEY
    # A run of some cases keeps the section's results of the others.
    section = _report.load(key, docs)
    earlier = {r["case"]: r for r in section.get("results", [])}
    merged = {**earlier, **fresh}
    results = [merged[name] for name in RECIPES if name in merged]
    markdown = render(results, config)
    print(markdown)
    plot(results, docs / f"{key}.png")
    _report.update(key, markdown, {"config": {k: v for k, v in config.items()
                                              if k not in ("data_dir", "cache_dir",
                                                           "baselines_dir")},
                                   "results": results,
                                   # a rewrite (no case run) keeps the last run's time
                                   "seconds": (time.time() - began if fresh
                                               else section.get("seconds")),
                                   **_report.environment()}, docs=docs)


if __name__ == "__main__":
    _define_flags()
    app.run(main)
