"""Mixed precision on MNIST: the sensitivity policy's bit widths vs all-int8 QAT
(and 16x8 QAT: int16 activations, int8 weights).

For LeNet-300-100 and LeNet-5: train in float on the first 6,000 images of the
8,000-image training split; measure each layer's 4-bit cost on the other 2,000
(held out from training, never the test images); let `choose_bits` pick 4 bits
while the combination stays within 0.5 points of all-8-bit; then QAT-fine-tune
from the same float weights twice (all 8-bit, and the chosen mix), convert both
and measure LiteRT and TFLite-Micro on the 2,000 evaluation images. A third
run trains with 16-bit activations and converts to a 16x8 model.

    python -m benchmarks.mixed_precision        # writes docs/benchmarks.{md,json}
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402
from benchmarks import DATA_DIR  # noqa: E402

FLAGS = flags.FLAGS
KEY = "mixed_precision"


def _define_flags() -> None:
    flags.DEFINE_string("data_dir", str(DATA_DIR),
                        "Folder holding mnist/.")
    flags.DEFINE_integer("epochs", 10, "Float training epochs.")
    flags.DEFINE_integer("qat_epochs", 3, "QAT fine-tuning epochs.")
    flags.DEFINE_float("max_drop", 0.005, "Accuracy budget of the policy (fraction).")
    flags.DEFINE_list("models", ["lenet_300_100", "lenet5"], "Models.")
    flags.DEFINE_string("docs", None, "Output folder (default: docs/ of the repository).")


def _weight_bytes(tfl) -> dict[str, tuple[str, int]]:
    """Stored kernel bytes per weight tensor name: INT4 packs two values a byte."""
    import numpy as np

    out = {}
    for op, inputs, _ in tfl.operators:
        if op in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D") and len(inputs) > 1:
            w = inputs[1]
            n = int(np.prod(w.shape))
            out[w.name] = (w.dtype, (n + 1) // 2 if w.dtype == "INT4" else n)
    return out


def run_model(name: str, config: dict) -> dict:
    import keras
    import numpy as np

    import keras_compress as kc
    import tflite_export

    (x, y), (xt, yt) = kc.datasets.mnist(config["data_dir"], normalize=True)
    if name == "lenet5":
        x, xt = x[..., None], xt[..., None]
    build = getattr(kc.models, name)
    xf, yf, xv, yv = x[:6000], y[:6000], x[6000:], y[6000:]

    def compiled(model, lr):
        model.compile(keras.optimizers.Adam(lr),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        return model

    keras.utils.set_random_seed(0)
    base = compiled(build(), 1e-3)
    print(f"{name}: float training, {config['epochs']} epochs", flush=True)
    base.fit(xf, yf, batch_size=64, epochs=config["epochs"], verbose=0)
    report = kc.quantization.sensitivity(base, xv, yv)
    chosen = report.choose_bits(max_drop=config["max_drop"])
    runs = {}
    for label, bits, activation_bits in (("int8", 8, 8), ("mixed", chosen, 8), ("16x8", 8, 16)):
        start = build()
        start.set_weights(base.get_weights())
        keras.utils.set_random_seed(1)
        qat = compiled(kc.quantize(start, weight_bits=bits, activation_bits=activation_bits),
                       1e-4)
        print(f"{name}: QAT {label}", flush=True)
        qat.fit(xf, yf, batch_size=64, epochs=config["qat_epochs"], verbose=0)
        if activation_bits == 16:  # int16 ranges come from calibration (see kc.quantize)
            tfl = tflite_export.convert(kc.strip(qat), mode="int16x8",
                                        representative_data=xf[:500])
        else:
            tfl = tflite_export.convert(kc.strip(qat), mode="int8", io_dtype="int8")
        litert = np.argmax(tflite_export.predict(tfl, xt), 1)
        micro = np.argmax(tflite_export.predict(tfl, xt, "micro"), 1)
        runs[label] = {
            "keras": float(qat.evaluate(xt, yt, verbose=0)[1]),
            "litert": float(np.mean(litert == yt)), "micro": float(np.mean(micro == yt)),
            "agreement": float(np.mean(litert == micro)), "size": tfl.size,
            "gzip": tfl.gzip_size, "weights": _weight_bytes(tfl),
        }
    layers = [dict(name=r.name, kind=r.kind, params=r.params, drop=r.drop,
                   bits=chosen[r.name],
                   bytes=(r.params + 1) // 2 if chosen[r.name] == 4 else r.params)
              for r in report.layers]
    return {"model": name, "baseline_validation": report.baseline,
            "chosen_validation": report.chosen_accuracy,
            "low_bit_fraction": report.low_bit_fraction, "layers": layers, "runs": runs}


def render(results: list[dict], config: dict) -> str:
    lines = [
        "## Mixed precision: 4-bit weights where they are cheap (MNIST)",
        "",
        "`python -m benchmarks.mixed_precision`: float training on 6,000 images, per-layer "
        "4-bit cost measured on the 2,000 held-out training images, 4 bits chosen while the "
        f"mix stays within {100 * config['max_drop']:g} points of all-8-bit weights, then "
        f"{config['qat_epochs']} QAT epochs from the same float weights. Accuracy on the "
        "2,000 evaluation images; 4-bit kernels are stored as packed INT4. The 16x8 row "
        "trains with 16-bit activation fake-quant and converts with `mode=\"int16x8\"`, "
        "calibrated on 500 training images.",
        "",
    ]
    for r in results:
        lines += [f"### {r['model']}", "",
                  "| layer | type | weights | 4-bit cost (points, held-out) | bits | stored bytes |",
                  "|---|---|---:|---:|---:|---:|"]
        for layer in r["layers"]:
            lines.append(f"| {layer['name']} | {layer['kind']} | {layer['params']:,} | "
                         f"{100 * layer['drop']:+.2f} | {layer['bits']} | {layer['bytes']:,} |")
        lines += ["", "| QAT model | Keras | LiteRT | TFLite-Micro | TFLM = LiteRT | .tflite bytes | gzip |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        names = {"int8": "all 8-bit", "mixed": "chosen mix",
                 "16x8": "16x8: int16 activations, int8 weights"}
        for label in names:
            run = r["runs"].get(label)
            if run is None:
                continue
            lines.append(f"| {names[label]} | "
                         f"{100 * run['keras']:.2f} % | {100 * run['litert']:.2f} % | "
                         f"{100 * run['micro']:.2f} % | {100 * run['agreement']:.2f} % | "
                         f"{run['size']:,} | {run['gzip']:,} |")
        mix, eight = r["runs"]["mixed"], r["runs"]["int8"]
        lines += ["", f"4 bits for {100 * r['low_bit_fraction']:.1f} % of the weights; "
                  f"LiteRT accuracy {100 * (mix['litert'] - eight['litert']):+.2f} points "
                  f"against all-8-bit; flatbuffer {mix['size'] / eight['size']:.2f}x the "
                  "all-8-bit size.", ""]
    return "\n".join(lines).rstrip()


def main(argv) -> None:
    del argv
    from absl import logging

    from benchmarks import _report

    logging.set_verbosity(logging.WARNING)
    config = {"data_dir": FLAGS.data_dir, "epochs": FLAGS.epochs,
              "qat_epochs": FLAGS.qat_epochs, "max_drop": FLAGS.max_drop}
    results = [run_model(name, config) for name in FLAGS.models]
    markdown = render(results, config)
    print(markdown)
    data = {"config": config, "results": results, **_report.environment()}
    _report.update(KEY, markdown, data, docs=Path(FLAGS.docs) if FLAGS.docs else _report.DOCS)


if __name__ == "__main__":
    _define_flags()
    app.run(main)
