"""The suite's Markdown section (one table per case, the published
reference rows) and its plot."""

from __future__ import annotations

from pathlib import Path

from benchmarks import _cases, other_tools

def other_tools_notes(result: dict) -> list[str]:
    """What the table cannot say about the other tools' rows: those that have
    no artifact, where TFLite-Micro refused an artifact, the 16x8 input."""
    notes = [f"{label}: no artifact ({why})"
             for label, why in result.get("other_tools_failed", {}).items()]
    for label, row in ordered_rows(result):
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
    from benchmarks import _report

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
             f"case says so, also `{_cases.DISTILLED}`: the same fit distilled from the float baseline "
             "(`kc.Distiller`, its teacher's forward pass counted in the step ratio). Every "
             "artifact is measured here with LiteRT (1 thread, XNNPACK; the artifacts of a case "
             "timed interleaved, in rounds) and the TFLite-Micro interpreter. Step ratio: "
             "per-step time of the compressing fit / plain fit of the same framework, measured "
             f"on {_cases.timing(config)[1]} batches with fresh "
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
                  + _report.measured_on(r) + ")", "",
                  "| artifact | Keras | LiteRT | TFLite-Micro | .tflite bytes | gzip | "
                  "ratio raw / gzip | LiteRT ms | vs float32 | step ratio | conversion s | "
                  "arena bytes |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for label, row in ordered_rows(r):
            lines.append(
                f"| {label} | {pct(row['keras'])} | {pct(row['litert'])} | {pct(row['micro'])} | "
                f"{row['raw']:,} | {row['gzip']:,} | {row['raw_ratio']:.1f}x / "
                f"{row['gzip_ratio']:.1f}x | {row['latency_ms']:.3f} | "
                f"{num(row.get('latency_vs_float'), '.2f')} | {num(row.get('step_ratio'), '.2f')} | "
                f"{row['conversion_s']:.1f} | {num(row['arena'], ',')} |")
        lines += other_tools_notes(r)
        ours = r["rows"]["keras-compress"]
        if "latency_vs_tfmot" in ours and "prune_step_ratio" in ours:
            tfmot = r["rows"]["TFMOT"]
            lines += ["", f"keras-compress int8 latency / TFMOT int8 latency: "
                      f"{ours['latency_vs_tfmot']:.2f}. Step ratios by phase (median of "
                      f"{s.get('timing_rounds', _cases.LEGACY_TIMING_ROUNDS)} interleaved rounds"
                      + ("" if s.get("qat_timing") == _cases.QAT_TIMING else
                         "; our QAT phase timed with the masks still updating, which the "
                         "real fit's QAT phase no longer does")
                      + "): "
                      "keras-compress "
                      f"prune {ours['prune_step_ratio']:.2f}, QAT {ours['qat_step_ratio']:.2f}; "
                      f"TFMOT prune {tfmot['prune_step_ratio']:.2f}, PQAT "
                      f"{tfmot['qat_step_ratio']:.2f}"
                      + (f"; {_cases.DISTILLED} prune {r['rows'][_cases.DISTILLED]['prune_step_ratio']:.2f}, "
                         f"QAT {r['rows'][_cases.DISTILLED]['qat_step_ratio']:.2f}"
                         if "prune_step_ratio" in r["rows"].get(_cases.DISTILLED, {}) else "") + "."]
        if r["case"] == "resnet8":
            int8 = int8_accuracies(r)
            reached = [label for label, acc in int8.items() if acc >= _cases.MLPERF_TINY_TARGET]
            verdict = (f"reached by {', '.join(reached)}" if reached else "not reached")
            verdict += (f" (int8: {', '.join(f'{k} {100 * v:.2f} %' for k, v in int8.items())}; "
                        f"float {100 * r['rows']['float32']['keras']:.2f} % after "
                        f"{s.get('float_epochs', '?')} float epochs)")
            lines += ["", f"MLPerf Tiny quality target for this model: "
                      f"{100 * _cases.MLPERF_TINY_TARGET:.0f} % top-1 (int8), {verdict}."]
        lines.append("")
    lines += references(results, docs=config.get("docs_dir"))
    return "\n".join(lines)

# Published numbers the suite's results sit next to (sources in the rows).
_TFMOT_QAT = "MobileNetV1 71.03 -> 71.06 %, ResNet50 v1 76.3 -> 76.1 %, MobileNetV2 70.77 -> 70.01 %"

_TFMOT_PRUNING = ("InceptionV3 78.1 -> 78.0 % (50 %), 76.1 % (75 %), 74.6 % (87.5 %); "
                  "MobileNetV1 71.04 -> 70.84 % (50 %)")

def references(results: list[dict], docs: Path | None = None) -> list[str]:
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
    gains = [f"{r['case']} {100 * (r['rows'][_cases.DISTILLED]['litert'] - r['rows']['keras-compress']['litert']):+.2f}"
             for r in results if _cases.DISTILLED in r["rows"]]
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
                  f"{label} {100 * acc:.2f} %" for label, acc in int8_accuracies(resnet).items())
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

def ordered_rows(result: dict) -> list[tuple[str, dict]]:
    """A case's (label, row) pairs in `_cases.ORDER`, for tables and plot alike."""
    return sorted(result["rows"].items(), key=lambda item: _cases.ORDER.index(item[0]))

def int8_accuracies(result: dict) -> dict[str, float]:
    """LiteRT accuracy of each int8 artifact of a case (the other tools' 4-bit,
    hybrid and 16x8 rows are not int8), in `_cases.ORDER`."""
    return {label: row["litert"] for label, row in ordered_rows(result)
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
        for label, row in ordered_rows(r):
            acc = row["micro"] if row["micro"] is not None else row["litert"]
            # One colour per artifact kind in every panel, whichever rows a case has.
            ax.scatter(row["gzip"] / 1024, 100 * acc, label=label, s=40,
                       color=f"C{_cases.ORDER.index(label)}")
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
