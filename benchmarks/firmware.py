"""Firmware truth: the suite's int8 models built as Cortex-M firmware and run
under QEMU.

Per case (LeNet-5 on MNIST, ResNet-8 and DS-CNN on CIFAR-10): the
post-training int8 model of the suite's float baseline (500 calibration
images), keras-compress' prune + QAT row (and its distilled row), and TFMOT's
prune + PQAT row, each the artifact `benchmarks.run --full` trained and cached;
the channel-pruned row of `benchmarks.channel_pruning --full` (the row its
section reports, at the case's `SETTINGS`: shrunk, QAT); and keras-compress'
row with its weights stored encoded (`compress_micro` with a 32 KB decompression budget,
decoded on the device). This
benchmark trains nothing: a row missing from the cache is reported missing. Each is built with `tflite_export.firmware` for a Cortex-M4
(CMSIS-NN, and the reference kernels for the ratio) and a Cortex-M55 with
Helium (CMSIS-NN), run on `--samples` real test images, and measured: flash
(text + rodata + data), RAM (data + bss + heap + stack + the arena the device
used), instructions per `Invoke()` (QEMU guest instructions: a repeatable
proxy, not cycles), and whether the outputs equal the tflite-micro Python
interpreter's bit for bit.

    python -m benchmarks.firmware                       # the three cases
    python -m benchmarks.firmware --cases=lenet5 --samples=2

Needs the Arm GNU toolchain and qemu-system-arm (Debian: gcc-arm-none-eabi,
libnewlib-arm-none-eabi, libstdc++-arm-none-eabi-newlib, qemu-system-arm) and
TFLite-Micro's sources (--tflm, default ../shared/tflm).
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402
from benchmarks import DATA_DIR, _cache, _cases, channel_pruning  # noqa: E402

FLAGS = flags.FLAGS
KEY = "firmware"
REPO = Path(__file__).resolve().parents[1]
CASES = ("lenet5", "resnet8", "ds_cnn")
ROWS = ("PTQ int8", "keras-compress", _cases.DISTILLED, "TFMOT")
CHANNELS = "channel-pruned"
COMPRESSED = "keras-compress, compress_micro"
RAM_BUDGET = 32 * 1024   # decoded weights of one op: fits the M4 preset's 256 KB
# (target, kernels) runs per artifact; the reference run is for the ratio.
RUNS = (("cortex-m4", "cmsis_nn"), ("cortex-m55", "cmsis_nn"), ("cortex-m4", "reference"))
# MLPerf Tiny v1.0 reference submissions' latencies for the same reference
# models (milliseconds on real parts; ours are instruction counts).
MLPERF_TINY_MS = {"resnet8": {"Cortex-M4 @ 120 MHz": 167.8, "Cortex-M7 @ 280 MHz": 50.9}}


def _define_flags() -> None:
    flags.DEFINE_list("cases", list(CASES), "Cases to run.")
    flags.DEFINE_integer("samples", 4, "Test images run on each firmware.")
    flags.DEFINE_string("tflm", str(REPO.parent / "shared" / "tflm" / "tflite-micro-src.tar.xz"),
                        "TensorFlow Lite Micro sources (folder or archive).")
    flags.DEFINE_string("data_dir", str(DATA_DIR), "Folder holding mnist/ and cifar10/.")
    flags.DEFINE_string("cache_dir", str(Path.home() / ".cache" / "keras-compress" / "benchmarks"),
                        "The suite's cache of trained baselines and rows.")
    flags.DEFINE_string("docs", None, "Output folder (default: docs/ of the repository).")


def artifacts(name: str, config: dict) -> tuple[dict, object, list[str]]:
    """({label: TFLiteModel}, test images, notes) of case `name`: PTQ from the
    float baseline, and the suite's cached rows."""
    import keras

    import keras_compress as kc
    import tflite_export

    case = _cases.CASES[name]
    images, tests, *_ = _cases.run_lengths(config, case)
    setup = {"model": name, "dataset": case["dataset"], "data_dir": config["data_dir"],
             "seed": config["seed"], "train_images": images, "test_images": tests}
    (x, y), (xt, _) = _cases.load_case_data(setup)
    keras.utils.set_random_seed(config["seed"])
    steps = -(-len(x) // case["batch"])
    data = _cases.training_data(x, y, case["batch"], case["dataset"] == "cifar10", config["seed"])
    base = getattr(kc.models, name)(input_shape=tuple(x.shape[1:]))
    _cache.float_baseline(base, config, name, data, steps)
    found = {"PTQ int8": tflite_export.convert(base, mode="int8", io_dtype="int8",
                                               representative_data=x[:500])}
    notes = []
    for label in ROWS[1:]:
        if label == _cases.DISTILLED and not case.get("distill"):
            continue
        cached = _cache.row_cache(config, name, label)
        if not _cache.in_cache(cached, config):
            notes.append(f"{name}: no cached {label} row (run `python -m benchmarks.run --full "
                         f"--cases={name}` first).")
            continue
        found[label] = _cache.cached_row(cached, config, lambda: None)[0]
    if "keras-compress" in found:
        found[COMPRESSED] = tflite_export.compress_micro(found["keras-compress"],
                                                         ram_budget=RAM_BUDGET).model
    # The channel-pruning section's own row (committed in the baselines folder).
    setting = channel_pruning.case_config(name, {**config, "distill": True})
    channel = channel_pruning.row_path(name, setting, "channel", setting["sparsity"])
    if _cache.in_cache(channel, config):
        found[CHANNELS] = _cache.cached_row(channel, config, lambda: None)[0]
    else:
        notes.append(f"{name}: no cached channel-pruned row (run `python -m "
                     f"benchmarks.channel_pruning --full --cases={name}` first).")
    return found, xt, notes


def run_case(name: str, config: dict) -> dict:
    from tflite_export import firmware

    found, xt, notes = artifacts(name, config)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, tfl in found.items():
            for target, kernels in RUNS:
                print(f"== {name} / {label}: {target} ({kernels})", flush=True)
                began = time.time()
                try:
                    folder = re.sub(r"\W+", "_", f"{label}-{target}-{kernels}")
                    result = firmware.firmware(tfl, Path(tmp) / folder,
                                               target=target, tflm=config["tflm"], kernels=kernels,
                                               inputs=xt[:config["samples"]], progress=True)
                except firmware.FitError as exc:
                    rows.append({"artifact": label, "target": target, "kernels": kernels,
                                 "fits": False, "note": str(exc)})
                    continue
                rows.append({"artifact": label, **result.row(),
                             "seconds": round(time.time() - began, 1)})
    return {"case": name, "samples": config["samples"], "rows": rows, "notes": notes}


def _ratio(rows: list[dict], artifact: str) -> float | None:
    by = {(r["target"], r["kernels"]): r for r in rows if r["artifact"] == artifact and
          r.get("instructions_per_inference")}
    if ("cortex-m4", "cmsis_nn") in by and ("cortex-m4", "reference") in by:
        return (by[("cortex-m4", "reference")]["instructions_per_inference"]
                / by[("cortex-m4", "cmsis_nn")]["instructions_per_inference"])
    return None


def render(results: list[dict], config: dict, environment: dict) -> str:
    lines = [
        "Each int8 model built as Cortex-M firmware (`tflite_export.firmware`: startup, linker "
        "script with the part's flash and RAM, only the kernels the model uses) and run in "
        "`qemu-system-arm` on real test images: M4 = Arm MPS2 AN386 (preset: 1 MB flash / "
        "256 KB RAM), M55 = MPS3 AN547 with Helium (2 MB / 1 MB). Flash = text + rodata + "
        "data; RAM = data + bss + heap + stack + the arena the device used. Instructions are "
        "QEMU guest instructions per `Invoke()`, counted by the project's plugin (QEMU models "
        "no cycles): a repeatable proxy for latency, **not milliseconds**. Bit-exact: every "
        "output equal to the tflite-micro Python interpreter's.",
        "",
        f"Toolchain: {environment.get('toolchain', '?')}; `python -m benchmarks.firmware`, "
        f"{config['samples']} test images per run.",
        "",
        "| model | artifact | target (kernels) | flash (B) | RAM (B) | model (B) | arena used (B) "
        "| instructions / inference | bit-exact |",
        "|" + "---|" * 9,
    ]
    for result in results:
        for r in result["rows"]:
            where = f"{r['target'].replace('cortex-', '').upper()} ({r['kernels']})"
            if not r.get("fits", True):
                lines.append(f"| {result['case']} | {r['artifact']} | {where} | does not fit: "
                             f"{r['note']} | | | | | |")
                continue
            lines.append(
                f"| {result['case']} | {r['artifact']} | {where} | {r['flash_bytes']:,} | "
                f"{r['ram_bytes']:,} | {r['model_bytes']:,} | {r['arena_used_bytes']:,} | "
                f"{r['instructions_per_inference']:,} | {'yes' if r['bit_exact'] else 'NO'} |")
    lines += ["", "CMSIS-NN against the reference kernels on the M4 (instructions, reference "
              "÷ CMSIS-NN), and the M55's Helium against the M4:", "",
              "| model | artifact | reference ÷ CMSIS-NN (M4) | M4 ÷ M55 (CMSIS-NN) |",
              "|---|---|---|---|"]
    for result in results:
        for artifact in dict.fromkeys(r["artifact"] for r in result["rows"]):
            ref = _ratio(result["rows"], artifact)
            by = {(r["target"], r["kernels"]): r for r in result["rows"]
                  if r["artifact"] == artifact and r.get("instructions_per_inference")}
            m4, m55 = by.get(("cortex-m4", "cmsis_nn")), by.get(("cortex-m55", "cmsis_nn"))
            helium = (m4["instructions_per_inference"] / m55["instructions_per_inference"]
                      if m4 and m55 else None)
            lines.append(f"| {result['case']} | {artifact} | "
                         f"{'n/a' if ref is None else f'{ref:.2f}x'} | "
                         f"{'n/a' if helium is None else f'{helium:.2f}x'} |")
    lines += ["", "MLPerf Tiny's reference latencies for the same reference model, in "
              "**milliseconds on real parts** (not comparable to instruction counts without a "
              "cycles-per-instruction figure for the part):", ""]
    for case, refs in MLPERF_TINY_MS.items():
        lines.append(f"- {case}: " + "; ".join(f"{part}: {ms} ms" for part, ms in refs.items()))
    notes = [n for r in results for n in r.get("notes", [])]
    if notes:
        lines += ["", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmarks import _report

    fig, axes = plt.subplots(1, len(results), figsize=(4.5 * len(results), 3.6), squeeze=False)
    for ax, result in zip(axes[0], results):
        artifacts = list(dict.fromkeys(r["artifact"] for r in result["rows"]))
        for offset, (target, kernels) in enumerate(RUNS):
            values = []
            for artifact in artifacts:
                row = next((r for r in result["rows"] if r["artifact"] == artifact
                            and r["target"] == target and r["kernels"] == kernels), None)
                values.append((row or {}).get("instructions_per_inference") or 0)
            ax.bar([i + 0.27 * (offset - 1) for i in range(len(artifacts))],
                   [v / 1e6 for v in values], width=0.27,
                   label=f"{target.replace('cortex-', '').upper()} {kernels}")
        ax.set_xticks(range(len(artifacts)), artifacts, rotation=30, ha="right", fontsize=7)
        ax.set_yscale("log")
        ax.set_title(result["case"])
        ax.set_ylabel("million instructions / inference")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    _report.save_png(fig, path)


def main(argv) -> None:
    del argv
    from benchmarks import _report
    from tflite_export import firmware

    unknown = set(FLAGS.cases) - set(CASES)
    if unknown:
        raise app.UsageError(f"Unknown cases {sorted(unknown)}; known: {list(CASES)}.")
    config = {"full": True, "seed": 0, "data_dir": FLAGS.data_dir, "cache_dir": FLAGS.cache_dir,
              "baselines_dir": str(REPO / "benchmarks" / "baselines"), "tflm": FLAGS.tflm,
              "samples": FLAGS.samples}
    began = time.time()
    fresh = {name: run_case(name, config) for name in FLAGS.cases}
    docs = Path(FLAGS.docs) if FLAGS.docs else _report.DOCS
    earlier = {r["case"]: r for r in _report.load(KEY, docs).get("results", [])}
    merged = {**earlier, **fresh}
    results = [merged[name] for name in CASES if name in merged]
    environment = {**_report.environment(), "toolchain": firmware.find_toolchain().version()}
    markdown = render(results, config, environment)
    print(markdown)
    plot(results, docs / f"{KEY}.png")
    _report.update(KEY, markdown, {"config": {k: v for k, v in config.items()
                                              if k not in ("data_dir", "cache_dir",
                                                           "baselines_dir", "tflm")},
                                   "results": results, "seconds": time.time() - began,
                                   **environment}, docs=docs)


if __name__ == "__main__":
    _define_flags()
    app.run(main)
