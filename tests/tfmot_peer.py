"""Run in a subprocess by test_tfmot.py: TFMOT (tf_keras) prune + PQAT on real
digits, then tflite_export.convert and export_micro on the TFMOT model.
Importing tensorflow_model_optimization switches the process to tf_keras, so
this never runs inside the pytest process. Prints one JSON line."""

import json
import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(out_dir: str) -> None:
    import tensorflow_model_optimization as tfmot
    import tf_keras

    import tflite_export
    from keras_compress import datasets

    tf_keras.utils.set_random_seed(0)
    (x, y), (xt, yt) = datasets.digits(normalize=True)
    x, xt = x[..., None], xt[..., None]
    model = tf_keras.Sequential([
        tf_keras.Input((8, 8, 1)),
        tf_keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        tf_keras.layers.MaxPooling2D(2),
        tf_keras.layers.Reshape((4 * 4 * 16,)),
        tf_keras.layers.Dense(10),
    ])
    sparsity = tfmot.sparsity.keras
    pruned = sparsity.prune_low_magnitude(
        model, pruning_schedule=sparsity.ConstantSparsity(0.5, 0, frequency=10))
    loss = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    pruned.compile("adam", loss, metrics=["accuracy"])
    pruned.fit(x, y, epochs=4, verbose=0, callbacks=[sparsity.UpdatePruningStep()])
    stripped = sparsity.strip_pruning(pruned)
    quant = tfmot.quantization.keras
    pqat = quant.quantize_apply(
        quant.quantize_annotate_model(stripped),
        tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme())
    pqat.compile("adam", loss, metrics=["accuracy"])
    pqat.fit(x, y, epochs=2, verbose=0)
    keras_acc = float(pqat.evaluate(xt, yt, verbose=0)[1])

    tfl = tflite_export.convert(pqat, mode="int8")  # QAT: no representative data
    art = tflite_export.export_micro(tfl, out_dir, name="tfmot")
    result = tflite_export.benchmark(tfl, xt, yt, runs=5, progress=False)
    print(json.dumps({
        "fully_integer": tfl.is_fully_integer, "ops": tfl.ops,
        "arena": art.arena_bytes, "keras_accuracy": keras_acc,
        "litert_accuracy": result.litert_accuracy, "micro_agreement": result.micro_agreement,
    }))


if __name__ == "__main__":
    main(sys.argv[1])
