"""Command line: convert, TFLite-Micro artifacts and benchmarks from files.

    python -m tflite_export convert --model=m.keras --mode=int8 --representative=x.npy --output=m.tflite
    python -m tflite_export micro --tflite=m.tflite --out_dir=micro/ --name=digits
    python -m tflite_export micro --tflite=m.tflite --out_dir=micro/ --compress
    python -m tflite_export bench --tflite=m.tflite --x=x_test.npy --y=y_test.npy --out_dir=report/
    python -m tflite_export firmware --tflite=m.tflite --target=cortex-m4 --tflm=tflite-micro/ --out_dir=fw/

`.npy` files are read with `allow_pickle=False`. Errors print one line naming
the problem and exit with status 1; a wrong command exits with status 2.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
COMMANDS = ("convert", "micro", "bench", "firmware")


def _define_flags() -> None:
    flags.DEFINE_string("model", None, "convert/bench: .keras file or SavedModel folder.")
    flags.DEFINE_enum("mode", "int8", ["float32", "float16", "dynamic", "int8", "int16x8"],
                      "convert: conversion mode.")
    flags.DEFINE_string("representative", None, "convert: .npy of calibration inputs.")
    flags.DEFINE_string("io_dtype", None, "convert: input/output type (int8, uint8, ...).")
    flags.DEFINE_integer("batch_size", 1, "convert: static batch size.")
    flags.DEFINE_string("output", None, "convert: output .tflite path.")
    flags.DEFINE_string("tflite", None, "micro/bench: input .tflite file.")
    flags.DEFINE_string("out_dir", None, "micro/bench: output folder.")
    flags.DEFINE_string("name", "model", "micro: C identifier prefix.")
    flags.DEFINE_bool("compress", False, "micro: store each weight tensor in its smallest "
                      "TFLite-Micro encoding first (compress_micro).")
    flags.DEFINE_integer("ram_budget", None, "micro --compress: most bytes of decoded weights "
                         "one op may need (the decompression buffer).")
    flags.DEFINE_string("x", None, "bench: .npy of float inputs (samples on axis 0).")
    flags.DEFINE_string("y", None, "bench: .npy of integer labels.")
    flags.DEFINE_integer("runs", 50, "bench: timed LiteRT runs.")
    flags.DEFINE_integer("threads", 1, "bench: LiteRT threads.")
    flags.DEFINE_string("target", "cortex-m4", "firmware: board preset (cortex-m4, cortex-m7, "
                        "cortex-m55).")
    flags.DEFINE_string("tflm", None, "firmware: TensorFlow Lite Micro sources (folder or "
                        "archive, with its third-party downloads); default $TFLM_SOURCE.")
    flags.DEFINE_enum("kernels", "cmsis_nn", ["cmsis_nn", "reference"], "firmware: kernels.")
    flags.DEFINE_string("inputs", None, "firmware: .npy of inputs to run (samples on axis 0; "
                        "float data is quantized); default two random samples.")
    flags.DEFINE_string("toolchain", None, "firmware: bin/ folder of the Arm GNU toolchain "
                        "(default: PATH).")


def _npy(path: str):
    import numpy as np

    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path} as a .npy array: {exc}") from None


def _require(**values) -> None:
    missing = [f"--{k}" for k, v in values.items() if v is None]
    if missing:
        raise app.UsageError(f"missing {', '.join(missing)}")


def run(command: str) -> str:
    """Run one command with the parsed flags; returns what it reports."""
    import tflite_export

    if command == "convert":
        _require(model=FLAGS.model, output=FLAGS.output)
        data = _npy(FLAGS.representative) if FLAGS.representative else None
        tfl = tflite_export.convert(FLAGS.model, mode=FLAGS.mode, representative_data=data,
                                    io_dtype=FLAGS.io_dtype, batch_size=FLAGS.batch_size)
        path = tfl.save(FLAGS.output)
        return (f"wrote {path}: {tfl.size:,} bytes, ops {', '.join(tfl.ops)}, "
                f"fully integer: {tfl.is_fully_integer}")
    if command == "micro":
        _require(tflite=FLAGS.tflite, out_dir=FLAGS.out_dir)
        tfl, table = tflite_export.TFLiteModel.load(FLAGS.tflite), ""
        if FLAGS.compress:
            compressed = tflite_export.compress_micro(tfl, ram_budget=FLAGS.ram_budget)
            tfl, table = compressed.model, compressed.table() + "\n\n"
        art = tflite_export.export_micro(tfl, FLAGS.out_dir, name=FLAGS.name)
        buffer = (f"; decompression buffer {art.decompression_bytes:,} bytes"
                  if art.decompression_bytes else "")
        return (f"{table}wrote {', '.join(str(p) for p in art.files)}; model "
                f"{art.model_bytes:,} bytes; arena {art.arena_bytes:,} bytes{buffer}; "
                f"ops {', '.join(art.ops)}")
    if command == "firmware":
        return _firmware()
    _require(tflite=FLAGS.tflite, out_dir=FLAGS.out_dir)
    tfl = tflite_export.TFLiteModel.load(FLAGS.tflite)
    keras_model = None
    if FLAGS.model:
        import keras

        keras_model = keras.models.load_model(FLAGS.model, compile=False)
    result = tflite_export.benchmark(
        tfl, _npy(FLAGS.x) if FLAGS.x else None, _npy(FLAGS.y) if FLAGS.y else None,
        keras_model=keras_model, runs=FLAGS.runs, num_threads=FLAGS.threads,
        name=os.path.basename(FLAGS.tflite))
    report = tflite_export.Report([result])
    files = report.save(FLAGS.out_dir)
    return report.to_markdown() + "\n\nwrote " + ", ".join(str(f) for f in files)


def _firmware() -> str:
    import json

    from tflite_export import firmware
    from tflite_export.model import write_atomic

    _require(tflite=FLAGS.tflite, out_dir=FLAGS.out_dir)
    result = firmware.firmware(FLAGS.tflite, FLAGS.out_dir, target=FLAGS.target, tflm=FLAGS.tflm,
                               inputs=_npy(FLAGS.inputs) if FLAGS.inputs else None,
                               kernels=FLAGS.kernels, toolchain=FLAGS.toolchain)
    report = firmware.report([result])
    write_atomic(os.path.join(FLAGS.out_dir, "firmware.md"), report.encode())
    write_atomic(os.path.join(FLAGS.out_dir, "firmware.json"),
                 json.dumps([result.row()], indent=2).encode())
    return f"{report}\nwrote {result.elf}, firmware.md and firmware.json in {FLAGS.out_dir}"


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[1] not in COMMANDS:
        raise app.UsageError(f"give one command: {' | '.join(COMMANDS)}")
    try:
        print(run(argv[1]))
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    _define_flags()
    app.run(main)
