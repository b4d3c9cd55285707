"""TFMOT peer of `benchmarks.run`, in its own process (importing
tensorflow_model_optimization switches TensorFlow to legacy tf_keras for the
whole process).

    python -m benchmarks._tfmot_suite_peer CONFIG_JSON

Starts from the float weights the Keras 3 baseline reached (an .npz), on the
same training images, and runs TFMOT's documented pipeline: plain fit (for the
step-time reference), prune_low_magnitude with a polynomial schedule, then
prune-preserving QAT (PQAT). Converts the result with `tflite_export.convert`,
writes the .tflite, and prints one JSON object on stdout."""

from __future__ import annotations

import json
import os
import sys
import time

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(argv: list[str]) -> None:
    config = json.loads(argv[1])
    import numpy as np
    import tensorflow_model_optimization as tfmot
    import tf_keras

    import tflite_export
    from benchmarks._timing import step_time_callback
    from benchmarks.run import load_case_data, training_data
    from keras_compress import models

    tf_keras.utils.set_random_seed(config["seed"])
    (x, y), (xt, yt) = load_case_data(config)
    StepTimer = step_time_callback(tf_keras.callbacks.Callback)
    batch = config["batch_size"]
    steps = -(-len(x) // batch)
    data = training_data(x, y, batch, config["dataset"] == "cifar10", config["seed"])
    weights = np.load(config["weights"])
    start = [weights[f"w{i}"] for i in range(len(weights.files))]
    loss = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def model_from_float():
        model = getattr(models, config["model"])(input_shape=tuple(x.shape[1:]),
                                                  keras_module=tf_keras)
        model.set_weights(start)
        return model

    def fit(model, epochs, callbacks=()):
        model.compile(tf_keras.optimizers.Adam(config["learning_rate"]), loss,
                      metrics=["accuracy"])
        timer = StepTimer()
        model.fit(**data, epochs=epochs, verbose=0, callbacks=[timer, *callbacks])
        return float(np.median(timer.per_step[1:] or timer.per_step))

    plain_step = fit(model_from_float(), 2)   # first epoch traces: the median skips it
    sparsity = tfmot.sparsity.keras
    pruned = sparsity.prune_low_magnitude(
        model_from_float(), pruning_schedule=sparsity.PolynomialDecay(
            0.0, config["sparsity"], 0, config["prune_epochs"] * steps - 1,
            frequency=max(1, steps // 4)))
    prune_step = fit(pruned, config["prune_epochs"], [sparsity.UpdatePruningStep()])
    stripped = sparsity.strip_pruning(pruned)
    quant = tfmot.quantization.keras
    pqat = quant.quantize_apply(
        quant.quantize_annotate_model(stripped),
        tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme())
    qat_step = fit(pqat, config["qat_epochs"])
    keras_accuracy = float(pqat.evaluate(xt, yt, verbose=0)[1])
    began = time.perf_counter()
    tfl = tflite_export.convert(pqat, mode="int8", io_dtype="int8")
    conversion = time.perf_counter() - began
    tfl.save(config["output"])
    kernels = [w for w in stripped.get_weights() if w.ndim > 1]
    json.dump({
        "tfmot": tfmot.__version__, "tf_keras": tf_keras.__version__,
        "plain_step_s": plain_step, "prune_step_s": prune_step, "qat_step_s": qat_step,
        "keras_accuracy": keras_accuracy, "conversion_s": conversion,
        "sparsity": sum(int(np.count_nonzero(k == 0)) for k in kernels) / sum(k.size for k in kernels),
    }, sys.stdout)


if __name__ == "__main__":
    main(sys.argv)
