"""The main demo: teacher -> one-fit recipe -> int8 TFLite and TFLite-Micro, offline.

    python -m keras_compress.demo                       # scikit-learn digits, ships with sklearn
    python -m keras_compress.demo --dataset=mnist --data_dir=../shared/datasets

It trains a teacher CNN, the student alone (for comparison), then the student
in one `fit` that distills from the teacher, prunes it and switches on
quantization-aware training; strips it, checks a `.keras` save/load, converts
it to a fully int8 `.tflite` without representative data, writes TFLite-Micro
(C array, op resolver, arena) and Android artifacts, and benchmarks teacher
and student with LiteRT and TFLite-Micro. `report.md`, `report.json` and
`size_vs_accuracy.png` go to `--out`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS


def _define_flags() -> None:
    """Flags are defined only when run as a program, so importing this module
    (tests, notebooks) never clashes with another program's flags."""
    flags.DEFINE_enum("dataset", "digits", ["digits", "mnist", "cifar10"], "Training data.")
    flags.DEFINE_string("data_dir", None, "Folder with mnist/ or cifar10/ (see keras_compress.datasets).")
    flags.DEFINE_string("out", "keras_compress_demo", "Output folder for the report and models.")
    flags.DEFINE_integer("epochs", 20, "Training epochs of every run (at least 3).")
    flags.DEFINE_float("sparsity", None, "Final sparsity, in [0, 1) (default 0.8; 0.5 of the "
                       "channels with --structure=channel).")
    flags.DEFINE_string("structure", "unstructured", "'unstructured', 'channel' or an N:M pattern.")
    flags.DEFINE_integer("seed", 0, "Random seed.")


def _cnn(input_shape, num_classes, width, name):
    """Conv+BN+ReLU x2, pooling, Dense: BatchNormalization folds away under QAT."""
    import keras

    layers = keras.layers
    inputs = keras.Input(input_shape, name="image")
    x = layers.Conv2D(width, 3, padding="same", use_bias=False, name="conv1")(inputs)
    x = layers.ReLU(name="relu1")(layers.BatchNormalization(name="bn1")(x))
    x = layers.Conv2D(2 * width, 3, padding="same", use_bias=False, name="conv2")(x)
    x = layers.ReLU(name="relu2")(layers.BatchNormalization(name="bn2")(x))
    x = layers.MaxPooling2D(2, name="pool")(x)
    h, w, c = x.shape[1:]
    x = layers.Reshape((h * w * c,), name="flatten")(x)
    x = layers.Dense(4 * width, activation="relu", name="fc1")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def _teacher(input_shape, num_classes):
    return _cnn(input_shape, num_classes, 32, "teacher_cnn")


def _student(input_shape, num_classes):
    """A quarter of the teacher's width (about a tenth of its weights)."""
    return _cnn(input_shape, num_classes, 8, "student_cnn")


def _load(dataset, data_dir):
    from keras_compress import datasets

    split = getattr(datasets, dataset)(**({} if dataset == "digits" else {"data_dir": data_dir}),
                                       normalize=True)
    (x, y), (xt, yt) = split
    if x.ndim == 3:
        x, xt = x[..., None], xt[..., None]
    return (x, y), (xt, yt)


def run(dataset: str = "digits", data_dir: str | None = None, out: str = "keras_compress_demo",
        epochs: int = 20, sparsity: float = 0.8, structure: str = "unstructured",
        seed: int = 0) -> dict:
    """Run the demo and return the numbers it reports."""
    import keras
    import numpy as np

    import keras_compress as kc
    import tflite_export

    if not isinstance(epochs, int) or epochs < 3:
        raise ValueError(f"`epochs` must be at least 3 (prune, then quantize); received {epochs!r}.")
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (x, y), (xt, yt) = _load(dataset, data_dir)
    batch = 64
    num_classes = int(max(y.max(), yt.max())) + 1
    print(f"{dataset}: {len(x)} training and {len(xt)} test images of shape {x.shape[1:]}")

    def compiled(model):
        model.compile(keras.optimizers.Adam(1e-3),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        return model

    def accuracy(model):
        return float(np.mean(np.argmax(model.predict(xt, verbose=0), 1) == yt))

    print("\n[1/5] teacher (float)")
    keras.utils.set_random_seed(seed)
    teacher = compiled(_teacher(x.shape[1:], num_classes))
    teacher.fit(x, y, batch_size=batch, epochs=epochs, verbose=1)

    print("\n[2/5] student alone (float, same seed and epochs)")
    keras.utils.set_random_seed(seed)
    alone = compiled(_student(x.shape[1:], num_classes))
    alone.fit(x, y, batch_size=batch, epochs=epochs, verbose=1)

    # Prune from epoch 1 to half-way, quantize for the last quarter.
    prune_end = max(2, epochs // 2)
    qat_from = max(prune_end, epochs - max(1, epochs // 4))
    print(f"\n[3/5] recipe: distill throughout, prune to {sparsity:g} ({structure}) over epochs "
          f"1-{prune_end}, QAT from epoch {qat_from}")
    keras.utils.set_random_seed(seed)
    # The first conv is kept dense, as is usual: it holds few weights, sees raw
    # pixels, and its 1-3 input channels leave no room for N:M groups.
    student_before = _student(x.shape[1:], num_classes)
    train_model, callbacks = kc.recipe(
        student_before, teacher=teacher, sparsity=sparsity,
        prune_epochs=(1, prune_end), structure=structure,
        skip_pruning=["conv1"], qat_from_epoch=qat_from, temperature=4.0, alpha=0.1)
    callbacks[0].per_layer_logs = False
    train_model.fit(x, y, batch_size=batch, epochs=epochs, verbose=1, callbacks=callbacks)

    print("\n[4/5] strip, save, reload, convert, export")
    # Channel pruning: the pruned channels leave the model for real.
    student = kc.strip(train_model, shrink=structure == "channel")
    path = out_dir / "student.keras"
    student.save(path)
    reloaded = keras.models.load_model(path, compile=False)
    same = all(np.array_equal(a, b) for a, b in zip(student.get_weights(), reloaded.get_weights()))
    report = kc.sparsity(reloaded)
    # What the device stores and computes: unstructured zeros leave these as
    # they were; removed channels shrink them.
    before, after = kc.profile(student_before), kc.profile(reloaded)
    float_tfl = tflite_export.convert(teacher, mode="float32")
    int8_tfl = tflite_export.convert(reloaded, mode="int8", io_dtype="int8")
    float_tfl.save(out_dir / "teacher_float32.tflite")
    int8_tfl.save(out_dir / "student_int8.tflite")
    # The flash image: each weight tensor in its smallest TFLite-Micro encoding
    # (bit-exact with int8_tfl, checked by compress_micro).
    flash = tflite_export.compress_micro(int8_tfl)
    micro = tflite_export.export_micro(flash.model, out_dir / "micro", name="student")
    tflite_export.export_android(int8_tfl, out_dir / "android", name="student",
                                 labels=[str(i) for i in range(num_classes)])

    print("\n[5/5] benchmark with LiteRT and TFLite-Micro")
    bench = tflite_export.Report([
        tflite_export.benchmark(float_tfl, xt, yt, keras_model=teacher, name="teacher float32",
                                micro=False),
        tflite_export.benchmark(int8_tfl, xt, yt, keras_model=reloaded,
                                name=f"student int8, {sparsity:g} sparse, distilled"),
    ])
    bench.save_png(out_dir / "size_vs_accuracy.png")
    int8_result = bench.results[1]

    results = {
        "dataset": dataset, "epochs": epochs, "structure": structure,
        "target_sparsity": sparsity,
        "teacher_accuracy": accuracy(teacher),
        "student_alone_accuracy": accuracy(alone),
        "student_accuracy": accuracy(reloaded),
        "student_int8_litert_accuracy": int8_result.litert_accuracy,
        "student_int8_micro_accuracy": int8_result.micro_accuracy,
        "fully_integer": int8_tfl.is_fully_integer,
        "int8_ops": int8_tfl.ops,
        "sizes": {"teacher_float32": float_tfl.size, "student_int8": int8_tfl.size,
                  "student_int8_gzip": int8_tfl.gzip_size},
        "micro_arena_bytes": micro.arena_bytes,
        "micro_flash_bytes": flash.model.size,
        "micro_decompression_bytes": micro.decompression_bytes,
        "micro_encodings": [dataclasses.asdict(t) for t in flash.tensors],
        "sparsity": report.as_dict(),
        "profile": {"before": before.as_dict(), "after": after.as_dict()},
        "reloaded_weights_identical": same, "model_path": str(path),
        "benchmark": [r.as_dict() for r in bench.results],
    }
    markdown = "\n".join([
        f"# keras-compress demo ({dataset})", "",
        "| model | test accuracy |", "|---|---:|",
        f"| teacher, float | {results['teacher_accuracy']:.4f} |",
        f"| student alone, float | {results['student_alone_accuracy']:.4f} |",
        f"| student, distilled + pruned to {sparsity:g} ({structure}) + QAT, Keras | "
        f"{results['student_accuracy']:.4f} |",
        f"| same student, int8 in LiteRT | {int8_result.litert_accuracy:.4f} |",
        f"| same student, int8 in TFLite-Micro | "
        f"{'-' if int8_result.micro_accuracy is None else format(int8_result.micro_accuracy, '.4f')} |",
        "",
        f"Sizes: teacher float32 {float_tfl.size:,} B; student int8 {int8_tfl.size:,} B "
        f"({int8_tfl.gzip_size:,} B gzip), fully integer: {int8_tfl.is_fully_integer}, "
        f"TFLite-Micro arena {micro.arena_bytes:,} B.",
        "",
        f"TFLite-Micro flash image (`compress_micro`): {flash.model.size:,} B, decoded weights "
        f"need a {micro.decompression_bytes:,} B buffer beside the arena:", "", flash.table(),
        "",
        "## What the student computes, before and after compression", "",
        "| student | parameters | MACs | largest activation (elements) |", "|---|---:|---:|---:|",
        f"| before | {before.total_params:,} | {before.total_macs:,} | "
        f"{before.peak_activations:,} |",
        f"| after ({structure}) | {after.total_params:,} | {after.total_macs:,} | "
        f"{after.peak_activations:,} |", "",
        "## Interpreters", "", bench.to_markdown(), "",
        "## Sparsity of the stripped, saved and reloaded student", "", report.to_markdown(), "",
    ])
    tflite_export.model.write_atomic(out_dir / "report.md", markdown.encode())
    tflite_export.model.write_atomic(out_dir / "report.json",
                                     (json.dumps(results, indent=2) + "\n").encode())
    print("\n" + markdown)
    print(f"Report written to {out_dir / 'report.md'}, report.json and size_vs_accuracy.png; "
          f"artifacts in {out_dir}/micro and {out_dir}/android")
    return results


def main(argv):
    del argv
    sparsity = FLAGS.sparsity
    if sparsity is None:
        sparsity = 0.5 if FLAGS.structure.strip().lower() == "channel" else 0.8
    run(FLAGS.dataset, FLAGS.data_dir, FLAGS.out, FLAGS.epochs, sparsity,
        FLAGS.structure, FLAGS.seed)


def console_main():
    """Entry point of the `keras-compress-demo` console script."""
    _define_flags()
    app.run(main)


if __name__ == "__main__":
    console_main()
