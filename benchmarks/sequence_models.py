"""Transformers and recurrent networks on MNIST: float vs post-training int8 vs
QAT int8, in LiteRT and TFLite-Micro, and what TFMOT says to each.

Models (`keras_compress.sequence_models`): a tiny ViT on 4x4 patches, a token
transformer over patch tokens (`datasets.patch_tokens`: no text corpus is
offline here, so the tokens are built from the real images), and LSTM, GRU
and CRNN classifiers reading the 28 rows as time steps. Per model: float
training; post-training int8 of the deploy form (`kc.deploy`); QAT from the
same float weights, `strip`, int8. The float model fine-tuned for as many
more epochs as QAT ran is the fair accuracy reference. The ViT also gets its
TFLite-Micro form (GELU -> x * sigmoid(1.702 x)), whose cost is measured.

    python -m benchmarks.sequence_models      # writes docs/benchmarks.{md,json}, PNG
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402
from benchmarks import DATA_DIR  # noqa: E402

FLAGS = flags.FLAGS
KEY = "sequence_models"


def _vit(k, position=True):
    from keras_compress import sequence_models

    return sequence_models.vit(position=position, keras_module=k)


def _tokens(k, position=True):
    from keras_compress import sequence_models

    return sequence_models.token_transformer(position=position, keras_module=k)


def _recurrent(kind):
    def build(k):
        from keras_compress import sequence_models

        return sequence_models.recurrent(kind, keras_module=k)
    return build


# name -> builder(keras module); also read by the TFMOT refusal peer, which
# builds the transformers without their position table (TFMOT refuses that
# custom layer first, before reaching attention or LayerNormalization).
BUILDERS = {"vit": _vit, "tokens": _tokens, "lstm": _recurrent("lstm"),
            "gru": _recurrent("gru"), "crnn": _recurrent("crnn")}
EPOCHS = {"vit": 10, "tokens": 10, "lstm": 6, "gru": 6, "crnn": 6}


def _define_flags() -> None:
    flags.DEFINE_string("data_dir", str(DATA_DIR), "Folder holding mnist/.")
    flags.DEFINE_integer("qat_epochs", 2, "QAT (and float fine-tune) epochs.")
    flags.DEFINE_integer("calibration", 500, "Representative samples for int8.")
    flags.DEFINE_integer("large_epochs", 5, "Float epochs of the weight-heavy transformer.")
    flags.DEFINE_list("models", list(BUILDERS), "Models.")
    flags.DEFINE_string("docs", None, "Output folder (default: docs/ of the repository).")


def _compiled(model, lr):
    import keras

    from benchmarks import _cases

    return _cases.compile(model, keras.optimizers.Adam(lr))


def _measure(label, tfl, xt, yt, keras_model=None) -> dict:
    import tflite_export

    import numpy as np

    result = tflite_export.benchmark(tfl, xt, yt, keras_model=keras_model, name=label,
                                     runs=30, progress=False)
    reference_agreement = None
    if result.micro_accuracy is not None:  # TFLite-Micro against LiteRT's reference kernels
        reference = tflite_export.predict(tfl, xt, runtime="litert-reference").argmax(-1)
        micro = tflite_export.predict(tfl, xt, runtime="micro").argmax(-1)
        reference_agreement = float(np.mean(reference == micro))
    return {"label": label, "size": tfl.size, "slim": tflite_export.slim(tfl).size,
            "fully_integer": tfl.is_fully_integer,
            "ops": dict(tfl.op_counts), "keras": result.keras_accuracy,
            "litert": result.litert_accuracy, "micro": result.micro_accuracy,
            "agreement": result.micro_agreement, "reference_agreement": reference_agreement,
            "micro_ms": result.micro.median_ms if result.micro else None,
            "arena": result.arena_bytes}


def run_model(name: str, config: dict) -> dict:
    import keras

    import keras_compress as kc
    import tflite_export

    (x, y), (xt, yt) = kc.datasets.mnist(config["data_dir"], normalize=True)
    if name == "tokens":
        x, xt = kc.datasets.patch_tokens(x), kc.datasets.patch_tokens(xt)
    build = BUILDERS[name]
    calibration = x[:config["calibration"]]
    keras.utils.set_random_seed(0)
    base = _compiled(build(keras), 2e-3)
    print(f"{name}: float training, {EPOCHS[name]} epochs", flush=True)
    base.fit(x, y, batch_size=64, epochs=EPOCHS[name], verbose=0)
    weights = base.get_weights()

    tuned = build(keras)
    tuned.set_weights(weights)
    keras.utils.set_random_seed(1)
    _compiled(tuned, 2e-4).fit(x, y, batch_size=64, epochs=config["qat_epochs"], verbose=0)

    start = build(keras)
    start.set_weights(weights)
    keras.utils.set_random_seed(1)
    qat = _compiled(kc.quantize(start), 2e-4)
    print(f"{name}: QAT, {config['qat_epochs']} epochs", flush=True)
    qat.fit(x, y, batch_size=64, epochs=config["qat_epochs"], verbose=0)

    targets = ("litert", "micro") if name == "vit" else ("litert",)
    models = {"float32": tflite_export.convert(kc.deploy(base), "float32")}
    for target in targets:
        suffix = "" if target == "litert" else ", micro form"
        models[f"PTQ int8{suffix}"] = tflite_export.convert(
            kc.deploy(base, target), "int8", representative_data=calibration)
        # Attention and LayerNormalization carry QAT ranges inside: no calibration.
        models[f"QAT int8{suffix}"] = tflite_export.convert(
            kc.strip(qat, target=target), "int8",
            representative_data=None if name in ("vit", "tokens") else calibration)
    rows = []
    for label, tfl in models.items():
        print(f"{name}: measuring {label}", flush=True)
        rows.append(_measure(label, tfl, xt, yt, keras_model=base if label == "float32"
                             else None))
    latency = tflite_export.compare_latency(models, rounds=20, progress=False)
    for row in rows:
        row["litert_ms"] = latency[row["label"]].median_ms
    return {"model": name, "epochs": EPOCHS[name], "params": base.count_params(),
            "float_tuned": float(tuned.evaluate(xt, yt, verbose=0)[1]), "rows": rows}


def run_large(config: dict) -> dict:
    """A weight-heavy token transformer (4 blocks, width 128) for LiteRT: float
    vs full int8 vs ai-edge-quantizer's weight recipes (`quantize_weights`)."""
    import keras
    import numpy as np

    import keras_compress as kc
    import tflite_export

    (x, y), (xt, yt) = kc.datasets.mnist(config["data_dir"], normalize=True)
    x, xt = kc.datasets.patch_tokens(x), kc.datasets.patch_tokens(xt)
    keras.utils.set_random_seed(0)
    model = _compiled(kc.sequence_models.token_transformer(dim=128, heads=4, blocks=4, mlp=512),
                      1e-3)
    print(f"large: float training, {config['large_epochs']} epochs", flush=True)
    model.fit(x, y, batch_size=64, epochs=config["large_epochs"], verbose=0)
    plain = kc.deploy(model)
    base = tflite_export.convert(plain, "float32")
    models = {"float32": base,
              "int8 (PTQ, calibrated)": tflite_export.convert(
                  plain, "int8", representative_data=x[:config["calibration"]]),
              "dynamic int8 weights, per channel": tflite_export.quantize_weights(
                  base, bits=8, block_size=None),
              "dynamic int4 weights, per channel": tflite_export.quantize_weights(
                  base, bits=4, block_size=None),
              "dynamic int4 weights, blocks of 32": tflite_export.quantize_weights(
                  base, bits=4, block_size=32),
              "weight-only int4, per channel": tflite_export.quantize_weights(
                  base, bits=4, block_size=None, activations="float")}
    latency = tflite_export.compare_latency(models, rounds=20, progress=False)
    rows = []
    for label, tfl in models.items():
        accuracy = float(np.mean(tflite_export.predict(tfl, xt).argmax(-1) == yt))
        rows.append({"label": label, "size": tfl.size, "litert": accuracy,
                     "litert_ms": latency[label].median_ms})
    return {"params": model.count_params(), "epochs": config["large_epochs"], "rows": rows}


def _tfmot(names: list[str]) -> dict:
    from benchmarks._peers import in_subprocess

    return in_subprocess("benchmarks._tfmot_refusal_peer", {"models": names}, [])


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f} %"


def render_large(large: dict) -> list[str]:
    base = large["rows"][0]
    lines = [f"### Weight-heavy transformer on LiteRT ({large['params']:,} parameters, "
             f"{large['epochs']} float epochs)", "",
             "The token transformer at width 128 with 4 blocks: full int8 against "
             "ai-edge-quantizer's weight recipes (`tflite_export.quantize_weights`; "
             "LiteRT only, activations float or quantized on the fly).", "",
             "| model | LiteRT acc. | .tflite bytes | size / float | LiteRT ms | time / float |",
             "|---|---:|---:|---:|---:|---:|"]
    for row in large["rows"]:
        lines.append(f"| {row['label']} | {_pct(row['litert'])} | {row['size']:,} | "
                     f"{row['size'] / base['size']:.2f} | {row['litert_ms']:.3f} | "
                     f"{row['litert_ms'] / base['litert_ms']:.2f} |")
    return lines + [""]


def render(results: list[dict], tfmot: dict, config: dict, large: dict | None = None) -> str:
    lines = [
        "## Transformers and recurrent networks (MNIST)",
        "",
        "`python -m benchmarks.sequence_models`: 8,000 training and 2,000 test images; a tiny "
        "ViT (4x4 patches), a token transformer over patch tokens (ids built from the images: "
        "no text corpus is offline), and LSTM, GRU and CRNN classifiers over the 28 rows. "
        f"Post-training int8 calibrates on {config['calibration']} training images; QAT "
        f"fine-tunes {config['qat_epochs']} epochs from the float weights (the transformers' "
        "QAT models convert without calibration data, the recurrent ones calibrate too); \"float, tuned\" "
        "is the float model fine-tuned as long, the fair reference. LiteRT: 1 thread, "
        "XNNPACK, the rows of one model timed interleaved; TFLite-Micro: the Python "
        "interpreter's median invoke and its measured arena. \"TFLM = LiteRT\" is argmax "
        "agreement with LiteRT's default (XNNPACK) kernels, \"ref.\" with its reference "
        "kernels, which TFLite-Micro's follow (XNNPACK's int8 kernels round differently). "
        "\"slimmed\": `tflite_export.slim` (identical constant tensors merged, inner names "
        "dropped; bit-exact). The LSTM is one fused "
        "UNIDIRECTIONAL_SEQUENCE_LSTM op; the GRU is unrolled (TFLite has no fused GRU). "
        "Accuracy at a glance: `docs/sequence_models.png`.",
        "",
    ]
    for r in results:
        lines += [f"### {r['model']} ({r['params']:,} parameters, {r['epochs']} float epochs; "
                  f"float, tuned: {_pct(r['float_tuned'])}; TFMOT: "
                  f"{tfmot.get(r['model'], '-')})", "",
                  "| model | fully int8 | LiteRT acc. | TFLite-Micro acc. | TFLM = LiteRT | "
                  "TFLM = LiteRT ref. | .tflite bytes | slimmed | LiteRT ms | TFLM ms | "
                  "arena bytes |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for row in r["rows"]:
            lines.append(
                f"| {row['label']} | {'yes' if row['fully_integer'] else 'no'} | "
                f"{_pct(row['litert'])} | {_pct(row['micro'])} | {_pct(row['agreement'])} | "
                f"{_pct(row['reference_agreement'])} | "
                f"{row['size']:,} | {row['slim']:,} | {row['litert_ms']:.3f} | "
                f"{'-' if row['micro_ms'] is None else format(row['micro_ms'], '.2f')} | "
                f"{'-' if row['arena'] is None else format(row['arena'], ',')} |")
        lines.append("")
    if large:
        lines += render_large(large)
    return "\n".join(lines).rstrip()


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmarks import _report

    labels = ["float32", "float, tuned", "PTQ int8", "QAT int8"]
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    width = 0.2

    def accuracy(result, label):
        if label == "float, tuned":  # as many more float epochs as QAT ran: the reference
            return result["float_tuned"]
        return next(row["litert"] for row in result["rows"] if row["label"] == label)

    for i, label in enumerate(labels):
        values = [100 * accuracy(r, label) for r in results]
        ax.bar([j + (i - 1.5) * width for j in range(len(results))], values, width, label=label)
    ax.set_xticks(range(len(results)), [r["model"] for r in results])
    low = min(min(100 * row["litert"] for row in r["rows"]) for r in results)
    ax.set_ylim(max(0, low - 2), 100)
    ax.set_ylabel("LiteRT accuracy (%)")
    ax.legend(loc="lower right", fontsize=7)
    ax.set_title("MNIST sequence models: float vs int8")
    _report.save_png(fig, path)


def main(argv) -> None:
    del argv
    from absl import logging

    from benchmarks import _report

    logging.set_verbosity(logging.WARNING)
    config = {"data_dir": FLAGS.data_dir, "qat_epochs": FLAGS.qat_epochs,
              "calibration": FLAGS.calibration, "large_epochs": FLAGS.large_epochs}
    results = [run_model(name, config) for name in FLAGS.models]
    large = run_large(config) if FLAGS.large_epochs else None
    tfmot = _tfmot(FLAGS.models)
    markdown = render(results, tfmot, config, large)
    print(markdown)
    docs = Path(FLAGS.docs) if FLAGS.docs else _report.DOCS
    data = {"config": config, "results": results, "large": large, "tfmot": tfmot,
            **_report.environment()}
    _report.update(KEY, markdown, data, docs=docs)
    plot(results, docs / "sequence_models.png")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
