"""Flash of the suite's trained CIFAR-10 artifacts with `compress_micro`.

The suite's trained int8 rows for ResNet-8 and DS-CNN (ours, ours distilled,
TFMOT's; committed in benchmarks/baselines/) are stored in their smallest
TFLite-Micro encodings. For each: flatbuffer bytes before and after, the
per-method split, the decompression buffer and the arena (measured with that
buffer), and TFLite-Micro outputs of the encoded model against the original
on CIFAR-10 test images (identical outputs mean the suite's accuracy holds).

    python -m benchmarks.micro_flash            # writes docs/benchmarks.{md,json}
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402

from benchmarks import DATA_DIR  # noqa: E402

FLAGS = flags.FLAGS
KEY = "micro_flash"
CASES = ("resnet8", "ds_cnn")
ROWS = ("keras-compress", "keras-compress-distill", "tfmot")
BASELINES = Path(__file__).resolve().parent / "baselines"


def _define_flags() -> None:
    flags.DEFINE_string("data_dir", str(DATA_DIR), "Folder holding cifar10/.")
    flags.DEFINE_list("cases", list(CASES), "Suite cases.")
    flags.DEFINE_integer("test_images", 1000, "CIFAR-10 test images run in TFLite-Micro.")
    flags.DEFINE_string("docs", None, "Output folder (default: docs/ of the repository).")


def committed_rows(case: str, store: Path = BASELINES) -> dict[str, Path]:
    """The newest committed row file of each of `ROWS` for `case`."""
    found = {}
    for row in ROWS:
        files = [p for p in store.glob(f"{case}-{row}-*.npz")
                 if re.fullmatch(rf"{re.escape(case)}-{re.escape(row)}-[0-9a-f]{{16}}\.npz", p.name)]
        if files:
            found[row] = max(files, key=lambda p: p.stat().st_mtime)
    return found


def measure(tfl, xt, yt) -> dict:
    import numpy as np

    import tflite_export

    started = time.perf_counter()
    result = tflite_export.compress_micro(tfl)
    seconds = time.perf_counter() - started
    encoded = result.model
    before = tflite_export.predict(tfl, xt, "micro")
    after = tflite_export.predict(encoded, xt, "micro")
    methods = {}
    for t in result.encoded:
        methods[t.method] = methods.get(t.method, 0) + 1
    return {
        "bytes_before": tfl.size, "bytes_after": encoded.size,
        "ratio": tfl.size / encoded.size, "compress_s": seconds,
        "methods": methods, "tensors_dense": len(result.tensors) - len(result.encoded),
        "decode_ram": result.decompression_bytes,
        "arena_before": tflite_export.find_arena_size(tfl),
        "arena_after": tflite_export.find_arena_size(
            encoded, decompression=result.decompression_bytes),
        "identical_outputs": bool(np.array_equal(before, after)),
        "micro_accuracy": float(np.mean(np.argmax(after, 1) == yt)),
        "table": result.table(),
    }


def render(results: dict, test_images: int) -> str:
    lines = [
        "## TFLite-Micro flash of the suite's CIFAR-10 artifacts (`compress_micro`)", "",
        "`python -m benchmarks.micro_flash`: the trained int8 rows of the suite's `--full` "
        "run (committed in `benchmarks/baselines/`), each weight tensor stored in its smallest "
        "TFLite-Micro encoding. Flash = the raw flatbuffer. RAM = arena (measured with the "
        "decompression buffer) + decompression buffer. Outputs are compared in TFLite-Micro "
        f"on {test_images:,} CIFAR-10 test images; identical outputs keep the suite's "
        "accuracy (the suite section has it on all 10,000).", "",
        "| case | row | flash before | flash after | saved | encodings | arena before | "
        "arena + decode buffer after | outputs identical | TFLite-Micro accuracy |",
        "|---|---|---:|---:|---:|---|---:|---:|---|---:|",
    ]
    for case, rows in results.items():
        for row, r in rows.items():
            methods = ", ".join(f"{n} {m}" for m, n in sorted(r["methods"].items()))
            lines.append(
                f"| {case} | {row} | {r['bytes_before']:,} | {r['bytes_after']:,} | "
                f"{100 * (1 - r['bytes_after'] / r['bytes_before']):.1f} % | {methods} | "
                f"{r['arena_before']:,} | {r['arena_after']:,} + {r['decode_ram']:,} | "
                f"{'yes' if r['identical_outputs'] else '**no**'} | "
                f"{100 * r['micro_accuracy']:.2f} % |")
    lines += ["", "Savings follow the sparsity each row was trained to (ResNet-8 30 %, DS-CNN "
              "50 %, unstructured): zeros cost about a bit each, the rest keep about their "
              "8 bits. Small tensors (biases, the stem, the logits) stay dense: DECODE's "
              "tables and op cost more than they would save."]
    return "\n".join(lines)


def main(argv) -> None:
    del argv
    import numpy as np

    import tflite_export
    from benchmarks import _cases, _report

    results = {}
    for case in FLAGS.cases:
        config = {"dataset": _cases.CASES[case]["dataset"], "data_dir": FLAGS.data_dir,
                  "model": case, "seed": 0, "train_images": 1,
                  "test_images": FLAGS.test_images}
        _, (xt, yt) = _cases.load_case_data(config)
        results[case] = {}
        for row, path in committed_rows(case).items():
            print(f"{case} / {row}: {path.name}", flush=True)
            with np.load(path, allow_pickle=False) as stored:
                tfl = tflite_export.TFLiteModel(stored["tflite"].tobytes(), mode="int8")
            results[case][row] = measure(tfl, xt, yt)
            r = results[case][row]
            print(f"  {r['bytes_before']:,} -> {r['bytes_after']:,} B, decode buffer "
                  f"{r['decode_ram']:,} B, identical outputs: {r['identical_outputs']}",
                  flush=True)
    markdown = render(results, FLAGS.test_images)
    print(markdown)
    docs = Path(FLAGS.docs) if FLAGS.docs else _report.DOCS
    _report.update(KEY, markdown, {"test_images": FLAGS.test_images, "results": results,
                                   **_report.environment()}, docs=docs)


if __name__ == "__main__":
    _define_flags()
    app.run(main)
