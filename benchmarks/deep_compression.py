"""Deep Compression on MNIST, stage by stage, and a flash-size pipeline for
TFLite-Micro.

Han et al. (ICLR 2016) shrank LeNet-300-100 40x and LeNet-5 39x by pruning,
weight sharing and Huffman coding. This script rebuilds that pipeline with
keras-compress on the MNIST split of the datasets README (8,000 training
images, 2,000 evaluation images), and records what each stage contributes:

- A, Deep Compression (the Android download): float baseline -> magnitude
  pruning with per-layer sparsity -> int8 QAT -> weight sharing (k shared
  values per kernel, trained centroids, zeros kept) with cluster-preserving
  QAT -> gzip (the entropy-coding stage) and TFLite-Micro look-up-table
  compression. Pruning shrinks the gzip'd file, not the flash image: the
  flatbuffer and TFLite-Micro store dense tensors.
- B, flash (the TFLite-Micro image): low-rank factorization of the large
  Dense layers, fine-tuned with distillation from the float baseline, then
  4-bit QAT (packed INT4 weights), still distilled; then the same with the
  factors pruned during the 4-bit fit. `tflite_export.compress_micro` stores
  each weight tensor in its smallest TFLite-Micro encoding (look-up table,
  pruned bitmask or Huffman), decoded on the device into a decompression
  buffer whose size is reported next to the arena.

The ratio is the float model's weight bytes (float32 kernels and biases)
divided by the artifact's bytes; an artifact counts when its int8 TFLite
accuracy is within `max_drop` of the float baseline's Keras accuracy.

    python -m benchmarks.deep_compression       # writes docs/benchmarks.{md,json}
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402
from benchmarks import DATA_DIR  # noqa: E402

FLAGS = flags.FLAGS
KEY = "deep_compression"

# Per-layer sparsity after Han et al.'s Table 1 (LeNet-300-100 keeps 8 %, 9 %,
# 26 %; LeNet-5 66 %, 12 %, 8 %, 19 %), pushed further on the large layers.
CASES = {
    "lenet_300_100": dict(sparsity={"fc1": 0.97, "fc2": 0.92, "logits": 0.7}, clusters=8,
                          rank={"fc1": 32, "fc2": 32}, flash_sparsity=0.6),
    "lenet5": dict(sparsity={"conv1": 0.5, "conv2": 0.9, "fc1": 0.98, "logits": 0.8},
                   clusters=8, rank={"fc1": 32}, flash_sparsity=0.6),
}
# Han et al., Table 1 and 2: float weight KB -> compressed KB, top-1 error.
PUBLISHED = {
    "lenet_300_100": dict(ratio=40, before_kb=1070, after_kb=27, error=(1.64, 1.58)),
    "lenet5": dict(ratio=39, before_kb=1720, after_kb=44, error=(0.80, 0.74)),
}


def _define_flags() -> None:
    flags.DEFINE_string("data_dir", str(DATA_DIR),
                        "Folder holding mnist/.")
    flags.DEFINE_list("models", list(CASES), "Models.")
    flags.DEFINE_integer("float_epochs", 20, "Float baseline epochs.")
    flags.DEFINE_integer("prune_epochs", 8, "Epochs of the sparsity ramp.")
    flags.DEFINE_integer("hold_epochs", 6, "Epochs at final sparsity.")
    flags.DEFINE_integer("cluster_epochs", 2, "Centroid fine-tuning epochs.")
    flags.DEFINE_integer("qat_epochs", 2, "QAT epochs (pipeline A).")
    flags.DEFINE_integer("flash_epochs", 8, "Distilled fine-tuning epochs of the factorized model.")
    flags.DEFINE_integer("flash_qat_epochs", 4, "Distilled 4-bit QAT epochs (pipeline B).")
    flags.DEFINE_integer("flash_prune_epochs", 4,
                         "Epochs of the sparsity ramp before 4-bit QAT (pipeline B, pruned).")
    flags.DEFINE_float("max_drop", 0.005, "Accuracy bound (fraction) against the float baseline.")
    flags.DEFINE_string("docs", None, "Output folder (default: docs/ of the repository).")


def _compiled(model, lr):
    import keras

    from benchmarks import _cases

    return _cases.compile(model, keras.optimizers.Adam(lr))


def _measure(stage, tfl, xt, yt, float_bytes, keras_acc=None, micro=False,
             litert=True) -> dict:
    """Sizes and accuracy of one artifact (LiteRT cannot load TFLite-Micro's
    DECODE op: `litert=False` measures TFLite-Micro only). Artifacts run in
    TFLite-Micro also get their arena and decompression buffer measured."""
    import numpy as np

    import tflite_export

    row = {"stage": stage, "mode": tfl.mode, "raw": tfl.size, "gzip": tfl.gzip_size,
           "raw_ratio": float_bytes / tfl.size, "gzip_ratio": float_bytes / tfl.gzip_size,
           "keras": keras_acc,
           "litert": None, "micro": None, "weight_types": sorted({
               inputs[1].dtype for op, inputs, _ in tfl.operators
               if op in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D") and len(inputs) > 1})}
    for runtime, wanted in (("litert", litert), ("micro", micro)):
        if wanted:
            row[runtime] = float(np.mean(
                np.argmax(tflite_export.predict(tfl, xt, runtime), 1) == yt))
    # The stricter runtime counts: TFLite-Micro's accuracy where it was measured.
    row["accuracy"] = row["litert"] if row["micro"] is None else row["micro"]
    row["decode_ram"] = tflite_export.decompression_bytes(tfl)
    row["arena"] = (tflite_export.find_arena_size(tfl, decompression=row["decode_ram"])
                    if micro else None)
    print(f"  {stage}: {100 * row['accuracy']:.2f} %, {tfl.size:,} B "
          f"({tfl.gzip_size:,} B gzip)", flush=True)
    return row


def run_model(name: str, config: dict) -> dict:
    import keras
    import numpy as np

    import keras_compress as kc
    import tflite_export

    case = {**CASES[name], **config.get("case", {})}
    (x, y), (xt, yt) = kc.datasets.mnist(config["data_dir"], normalize=True)
    if name == "lenet5":
        x, xt = x[..., None], xt[..., None]
    batch = 64
    steps = int(np.ceil(len(x) / batch))
    started = time.perf_counter()

    def evaluate(model):
        return float(_compiled(model, 1e-3).evaluate(xt, yt, verbose=0)[1])

    def int8(model):
        return tflite_export.convert(kc.strip(model), mode="int8", io_dtype="int8")

    keras.utils.set_random_seed(0)
    base = _compiled(getattr(kc.models, name)(), 1e-3)
    print(f"{name}: float baseline, {config['float_epochs']} epochs", flush=True)
    base.fit(x, y, batch_size=batch, epochs=config["float_epochs"], verbose=0)
    float_acc = evaluate(base)
    float_bytes = 4 * sum(int(np.prod(w.shape)) for w in base.weights)
    rows = {"A": [], "B": []}
    rows["A"].append(_measure("float32 baseline", tflite_export.convert(base, mode="float32"),
                              xt, yt, float_bytes, float_acc))

    # A: prune -> int8 QAT -> weight sharing -> gzip / LUT.
    print(f"{name}: pruning {case['sparsity']}", flush=True)
    pruned = keras.models.clone_model(base)
    pruned.set_weights(base.get_weights())
    ramp = config["prune_epochs"] * steps
    for layer, sparsity in case["sparsity"].items():
        pruned = kc.prune(pruned, kc.PolynomialDecay(0.0, sparsity, 0, ramp), layers=[layer])
    _compiled(pruned, 5e-4).fit(x, y, batch_size=batch,
                                epochs=config["prune_epochs"] + config["hold_epochs"],
                                verbose=0, callbacks=[kc.PruningCallback()])
    pruned = kc.strip(pruned)
    report = kc.sparsity(pruned)
    rows["A"].append(_measure(f"pruned to {100 * report.overall:.1f} % zeros (float32)",
                              tflite_export.convert(pruned, mode="float32"),
                              xt, yt, float_bytes, evaluate(pruned)))
    keras.utils.set_random_seed(1)
    qat = _compiled(kc.quantize(pruned), 1e-4)
    qat.fit(x, y, batch_size=batch, epochs=config["qat_epochs"], verbose=0)
    rows["A"].append(_measure("+ int8 QAT", int8(qat), xt, yt, float_bytes, evaluate(qat)))
    keras.utils.set_random_seed(1)
    shared = _compiled(kc.cluster(pruned, n_clusters=case["clusters"]), 1e-4)
    shared.fit(x, y, batch_size=batch, epochs=config["cluster_epochs"], verbose=0)
    qat = _compiled(kc.quantize(shared), 1e-4)
    qat.fit(x, y, batch_size=batch, epochs=config["qat_epochs"], verbose=0)
    android = int8(qat)
    rows["A"].append(_measure(f"+ {case['clusters']} shared values per kernel", android,
                              xt, yt, float_bytes, evaluate(qat), micro=True))
    lut = tflite_export.compress_lut(android)
    rows["A"].append(_measure("+ TFLite-Micro look-up tables", lut.model, xt, yt, float_bytes,
                              micro=True, litert=False))
    encoded = {"A": tflite_export.compress_micro(android)}
    rows["A"].append(_measure("+ compress_micro (per tensor: LUT, Prune or Huffman)",
                              encoded["A"].model, xt, yt, float_bytes, micro=True,
                              litert=False))

    # B: factorize -> distill -> 4-bit QAT (packed INT4).
    print(f"{name}: factorizing {case['rank']}", flush=True)
    keras.utils.set_random_seed(2)
    factorized = kc.factorize(base, rank=case["rank"])
    train, callbacks = kc.recipe(factorized, teacher=base, learning_rate=5e-4)
    train.fit(x, y, batch_size=batch, epochs=config["flash_epochs"], verbose=0,
              callbacks=callbacks)
    rows["B"].append(_measure(
        "factorized " + ", ".join(f"{k} rank {r}" for k, r in case["rank"].items())
        + f" ({factorized.count_params():,} params), distilled (float32)",
        tflite_export.convert(factorized, mode="float32"), xt, yt, float_bytes,
        evaluate(factorized)))
    train, callbacks = kc.recipe(factorized, teacher=base, qat_from_epoch=0, weight_bits=4,
                                 learning_rate=1e-4)
    train.fit(x, y, batch_size=batch, epochs=config["flash_qat_epochs"], verbose=0,
              callbacks=callbacks)
    student = kc.strip(train)
    flash = tflite_export.convert(student, mode="int8", io_dtype="int8")
    rows["B"].append(_measure("+ 4-bit QAT, distilled (packed INT4)", flash, xt, yt,
                              float_bytes, evaluate(student), micro=True))
    encoded["B"] = tflite_export.compress_micro(flash)
    rows["B"].append(_measure("+ compress_micro", encoded["B"].model, xt, yt, float_bytes,
                              micro=True, litert=False))

    # B, pruned: the distilled factors pruned, then 4-bit QAT, in one fit.
    keras.utils.set_random_seed(3)
    ramp = config["flash_prune_epochs"]
    train, callbacks = kc.recipe(factorized, teacher=base, sparsity=case["flash_sparsity"],
                                 prune_epochs=(0, ramp), steps_per_epoch=steps,
                                 qat_from_epoch=ramp, weight_bits=4, learning_rate=1e-4)
    train.fit(x, y, batch_size=batch, epochs=ramp + config["flash_qat_epochs"], verbose=0,
              callbacks=callbacks)
    student = kc.strip(train)
    pruned_flash = tflite_export.convert(student, mode="int8", io_dtype="int8")
    sparse = f"factors pruned to {100 * case['flash_sparsity']:.0f} % + 4-bit QAT, distilled"
    rows["B"].append(_measure(sparse, pruned_flash, xt, yt, float_bytes, evaluate(student),
                              micro=True))
    encoded["B pruned"] = tflite_export.compress_micro(pruned_flash)
    rows["B"].append(_measure(f"{sparse} + compress_micro", encoded["B pruned"].model, xt, yt,
                              float_bytes, micro=True, litert=False))

    bound = float_acc - config["max_drop"]
    for row in rows["A"] + rows["B"]:
        row["within_bound"] = row["accuracy"] >= bound - 1e-9
    return {"model": name, "float_accuracy": float_acc, "float_bytes": float_bytes,
            "case": case, "layer_sparsity": {r.name: r.sparsity for r in report},
            "encodings": {k: [dataclasses.asdict(t) for t in v.tensors]
                          for k, v in encoded.items()},
            "encoding_tables": {k: v.table() for k, v in encoded.items()},
            "rows": rows, "seconds": time.perf_counter() - started}


def _ram(row) -> str:
    if not row.get("arena"):
        return ""
    return f"{row['arena']:,} + {row['decode_ram']:,} B"


def _best(rows, key):
    good = [r for r in rows if r["within_bound"] and r["mode"] != "float32"]
    return max(good, key=lambda r: r[key], default=None)


def render(results: list[dict], config: dict) -> str:
    bound = 100 * config["max_drop"]
    lines = [
        "## Deep Compression on MNIST: stage by stage, and the flash image",
        "",
        "`python -m benchmarks.deep_compression`: MNIST split of the datasets README (8,000 "
        "training, 2,000 evaluation images); float baseline trained "
        f"{config['float_epochs']} epochs on the same 8,000 images. Ratio = float32 weight "
        "bytes / artifact bytes. Accuracy is LiteRT's on the 2,000 evaluation images "
        "(TFLite-Micro's where it was measured); an artifact counts when it is within "
        f"{bound:g} points of the float baseline.",
        "",
        "- **A, Deep Compression** (Han et al.): per-layer magnitude pruning, int8 QAT, "
        "weight sharing with cluster-preserving QAT; gzip is the entropy-coding stage "
        "(the Android download). Pruned zeros shrink the flash image only once encoded: "
        "TFLite stores dense tensors; `compress_micro` writes the bitmask and Huffman "
        "formats TFLite-Micro's DECODE op reads (the `tflite-micro` wheel's own compressor "
        "writes look-up tables only).",
        "- **B, flash**: low-rank factorization of the large Dense layers, fine-tuned with "
        "distillation from the float baseline (`kc.recipe`), then distilled 4-bit QAT; the "
        "weights are stored as packed INT4, which TFLite-Micro runs. Then the factors pruned "
        "during the distilled 4-bit fit.",
        "- `compress_micro` rows: each weight tensor stored in its smallest TFLite-Micro "
        "encoding (look-up table, pruned bitmask or Huffman; packed INT4 is unpacked first), "
        "verified bit-exact in TFLite-Micro. Decoded weights live in RAM: the decompression "
        "buffer is stated next to the arena (measured with that buffer).",
        "",
        "![accuracy against size](deep_compression.png)",
        "",
        "| model | artifact | accuracy (float baseline) | bytes | float32 weight bytes | "
        "ratio | target |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in results:
        published = PUBLISHED[r["model"]]
        every = r["rows"]["A"] + r["rows"]["B"]
        for key, size, label, target in (
                ("gzip_ratio", "gzip", "gzip'd .tflite (Android download)", ">= 40x, goal 50x"),
                ("raw_ratio", "raw", "raw TFLite-Micro flatbuffer (flash)",
                 ">= 40x, goal 50x")):
            best = _best(every, key)
            if best is None:
                lines.append(f"| {r['model']} | {label} | none within {bound:g} points | | | | "
                             f"{target} |")
                continue
            acc = best["accuracy"]
            ram = (f"; arena {best['arena']:,} B + decode {best['decode_ram']:,} B"
                   if size == "raw" and best.get("arena") else "")
            lines.append(
                f"| {r['model']} | {label}: {best['stage']}{ram} | {100 * acc:.2f} % "
                f"({100 * r['float_accuracy']:.2f} %) | {best[size]:,} | {r['float_bytes']:,} | "
                f"**{best[key]:.1f}x** | {target} |")
        lines.append(
            f"| {r['model']} | Han et al. 2016 (full MNIST, Caffe; weights + indices, Huffman) | "
            f"{100 - published['error'][1]:.2f} % ({100 - published['error'][0]:.2f} %) | "
            f"{published['after_kb']} KB | {published['before_kb']} KB | "
            f"{published['ratio']}x | published |")
    for r in results:
        lines += ["", f"### {r['model']}: per stage", "",
                  "Per-layer sparsity: " + ", ".join(
                      f"{k} {100 * v:.1f} %" for k, v in r["layer_sparsity"].items()) + ".", "",
                  "| pipeline | stage | weights | Keras | LiteRT | TFLite-Micro | .tflite bytes | "
                  "gzip bytes | ratio raw | ratio gzip | arena + decode RAM | within bound |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for pipeline in ("A", "B"):
            for row in r["rows"][pipeline]:
                pct = (lambda v: "" if v is None else f"{100 * v:.2f} %")
                lines.append(
                    f"| {pipeline} | {row['stage']} | {'/'.join(row['weight_types']) or 'FLOAT32'} | "
                    f"{pct(row['keras'])} | {pct(row['litert'])} | {pct(row['micro'])} | "
                    f"{row['raw']:,} | {row['gzip']:,} | {row['raw_ratio']:.1f}x | "
                    f"{row['gzip_ratio']:.1f}x | {_ram(row)} | "
                    f"{'yes' if row['within_bound'] else 'no'} |")
        best = _best(r["rows"]["A"] + r["rows"]["B"], "raw_ratio")
        key = next((k for k, v in (("A", "compress_micro"), ("B", "+ compress_micro"))
                    if best and best["stage"].endswith(v) and best in r["rows"][k]), None)
        key = "B pruned" if best and best["stage"].startswith("factors pruned") else key
        if key:
            lines += ["", f"Per-tensor encodings of the smallest flash image ({best['stage']}):",
                      "", r["encoding_tables"][key]]
    lines += ["", "Han et al. trained on the full 60,000-image MNIST training set; these models "
              "see 8,000 images, so their float baselines are lower. The published ratio counts "
              "weights, sparse indices and codebooks after Huffman coding; ours counts the whole "
              "deployable file (graph, biases, quantization parameters) under gzip or raw."]
    return "\n".join(lines)


def plot(results: list[dict], path: Path, max_drop: float = 0.005) -> None:
    """Accuracy against gzip'd and raw size, every stage of both pipelines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmarks import _report

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.5), squeeze=False)
    for ax, r in zip(axes[0], results):
        for pipeline, marker in (("A", "o"), ("B", "s")):
            for size, colour in (("gzip", "tab:blue"), ("raw", "tab:orange")):
                rows = r["rows"][pipeline]
                ax.plot([row[size] / 1024 for row in rows],
                        [100 * row["accuracy"] for row in rows], marker=marker, color=colour,
                        alpha=0.8, label=f"{pipeline}: {size}")
        ax.axhline(100 * r["float_accuracy"], color="grey", lw=0.8, ls="--",
                   label="float baseline")
        ax.axhline(100 * (r["float_accuracy"] - max_drop), color="red", lw=0.8, ls="--",
                   label=f"{100 * max_drop:g}-point bound")
        ax.axvline(r["float_bytes"] / 40 / 1024, color="tab:blue", lw=0.8, ls=":",
                   label="40x gzip target")
        ax.axvline(r["float_bytes"] / 20 / 1024, color="tab:orange", lw=0.8, ls=":",
                   label="20x raw target")
        ax.set_xscale("log")
        ax.set_xlabel("artifact KiB (log)")
        ax.set_ylabel("accuracy, % (2,000 MNIST images)")
        ax.set_title(r["model"])
        ax.legend(fontsize=7)
    fig.tight_layout()
    _report.save_png(fig, path)


def main(argv) -> None:
    del argv
    from absl import logging

    from benchmarks import _report

    logging.set_verbosity(logging.WARNING)
    config = {key: getattr(FLAGS, key) for key in (
        "data_dir", "float_epochs", "prune_epochs", "hold_epochs", "cluster_epochs",
        "qat_epochs", "flash_epochs", "flash_qat_epochs", "flash_prune_epochs", "max_drop")}
    results = [run_model(name, config) for name in FLAGS.models]
    markdown = render(results, config)
    print(markdown)
    data = {"config": {k: v for k, v in config.items() if k != "data_dir"},
            "results": results, **_report.environment()}
    docs = Path(FLAGS.docs) if FLAGS.docs else _report.DOCS
    _report.update(KEY, markdown, data, docs=docs)
    plot(results, docs / "deep_compression.png", config["max_drop"])


if __name__ == "__main__":
    _define_flags()
    app.run(main)
