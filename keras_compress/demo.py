"""The main demo: prune a small CNN during one `model.fit`, offline, in under a minute.

    python -m keras_compress.demo                       # scikit-learn digits, ships with sklearn
    python -m keras_compress.demo --dataset=mnist --data_dir=../shared/datasets

It trains the same model dense and with gradual magnitude pruning (same seed,
same epochs), strips the wrappers, checks the pruned zeros survived a
`.keras` save/load, and writes `report.md` and `report.json` to `--out`.
Later stages (QAT, distillation, TFLite / TFLite-Micro export) will join this
demo as they land.
"""

from __future__ import annotations

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
    flags.DEFINE_integer("epochs", 20, "Training epochs (dense and pruned runs alike).")
    flags.DEFINE_float("sparsity", 0.8, "Final sparsity, in [0, 1).")
    flags.DEFINE_string("structure", "unstructured", "'unstructured', 'channel' or an N:M pattern.")
    flags.DEFINE_integer("seed", 0, "Random seed.")


def _model(input_shape, num_classes):
    import keras

    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    h, w, c = x.shape[1:]
    x = keras.layers.Reshape((h * w * c,), name="flatten")(x)
    x = keras.layers.Dense(64, activation="relu", name="fc1")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="demo_cnn")


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

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (x, y), (xt, yt) = _load(dataset, data_dir)
    batch = 64
    steps_per_epoch = -(-len(x) // batch)
    print(f"{dataset}: {len(x)} training and {len(xt)} test images of shape {x.shape[1:]}")

    def compiled(model):
        model.compile(keras.optimizers.Adam(1e-3),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        return model

    print("\n[1/3] dense baseline")
    keras.utils.set_random_seed(seed)
    dense = compiled(_model(x.shape[1:], 10))
    dense.fit(x, y, batch_size=batch, epochs=epochs, verbose=2)
    dense_acc = float(dense.evaluate(xt, yt, verbose=0)[1])

    print(f"\n[2/3] pruning to {sparsity:g} ({structure}) during fit")
    keras.utils.set_random_seed(seed)
    # Prune from epoch 1 to half-way, then let the remaining weights recover.
    schedule = kc.PolynomialDecay(0.0, sparsity, begin_step=steps_per_epoch,
                                  end_step=max(steps_per_epoch + 1, steps_per_epoch * epochs // 2),
                                  frequency=10)
    # The first conv is kept dense, as is usual: it holds 0.4 % of the weights,
    # sees raw pixels, and its 1-3 input channels leave no room for N:M groups.
    skip = ["conv1"]
    pruned = compiled(kc.prune(_model(x.shape[1:], 10), schedule=schedule, structure=structure,
                               skip=skip))
    pruned.fit(x, y, batch_size=batch, epochs=epochs, verbose=2,
               callbacks=[kc.PruningCallback(per_layer_logs=False)])

    print("\n[3/3] strip, save, reload")
    plain = kc.strip(pruned)
    path = out_dir / "pruned.keras"
    plain.save(path)
    reloaded = compiled(keras.models.load_model(path, compile=False))
    pruned_acc = float(reloaded.evaluate(xt, yt, verbose=0)[1])
    report = kc.sparsity(reloaded)
    same = all(np.array_equal(a, b) for a, b in zip(plain.get_weights(), reloaded.get_weights()))

    results = {
        "dataset": dataset, "epochs": epochs, "structure": structure,
        "target_sparsity": sparsity, "dense_accuracy": dense_acc,
        "pruned_accuracy": pruned_acc, "sparsity": report.as_dict(),
        "reloaded_weights_identical": same, "model_path": str(path),
    }
    markdown = "\n".join([
        f"# keras-compress demo ({dataset})", "",
        "| model | test accuracy |", "|---|---:|",
        f"| dense, {epochs} epochs | {dense_acc:.4f} |",
        f"| pruned to {sparsity:g} ({structure}), {epochs} epochs | {pruned_acc:.4f} |", "",
        "## Sparsity of the stripped, saved and reloaded model", "", report.to_markdown(), "",
    ])
    (out_dir / "report.md").write_text(markdown)
    (out_dir / "report.json").write_text(json.dumps(results, indent=2) + "\n")
    print("\n" + markdown)
    print(f"Report written to {out_dir / 'report.md'} and {out_dir / 'report.json'}")
    return results


def main(argv):
    del argv
    run(FLAGS.dataset, FLAGS.data_dir, FLAGS.out, FLAGS.epochs, FLAGS.sparsity,
        FLAGS.structure, FLAGS.seed)


def console_main():
    """Entry point of the `keras-compress-demo` console script."""
    _define_flags()
    app.run(main)


if __name__ == "__main__":
    console_main()
