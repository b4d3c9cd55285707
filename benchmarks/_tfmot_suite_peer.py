"""TFMOT peer of `benchmarks.run`, in its own process (importing
tensorflow_model_optimization switches TensorFlow to legacy tf_keras for the
whole process).

    python -m benchmarks._tfmot_suite_peer CONFIG_JSON

Starts from the float weights the Keras 3 baseline reached (an .npz), on the
same training images, and runs TFMOT's documented pipeline: prune_low_magnitude
with a polynomial schedule, then prune-preserving QAT (PQAT), both at the
learning rate of benchmarks.run's own fit, epoch by epoch; then times plain,
pruning and PQAT steps on fresh copies taking turns. Converts the result with `tflite_export.convert`,
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
    from benchmarks._timing import fit_step_times
    from benchmarks._cases import load_case_data, training_data, tune_rate
    from keras_compress import models

    tf_keras.utils.set_random_seed(config["seed"])
    (x, y), (xt, yt) = load_case_data(config)
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

    def compiled(model):
        model.compile(tf_keras.optimizers.Adam(config["learning_rate"]), loss,
                      metrics=["accuracy"])
        return model

    sparsity = tfmot.sparsity.keras
    quant = tfmot.quantization.keras

    def pruned_model(end_step):
        return sparsity.prune_low_magnitude(
            model_from_float(), pruning_schedule=sparsity.PolynomialDecay(
                0.0, config["sparsity"], 0, end_step, frequency=max(1, steps // 4)))

    def pqat_model(stripped):
        return quant.quantize_apply(
            quant.quantize_annotate_model(stripped),
            tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme())

    # The learning rate of benchmarks.run's fits, epoch by epoch across both fits.
    def rate():
        return tf_keras.callbacks.LearningRateScheduler(lambda epoch: tune_rate(config, epoch))

    epochs = config["prune_epochs"]
    pruned = compiled(pruned_model(epochs * steps - 1))
    pruned.fit(**data, epochs=epochs, verbose=0,
               callbacks=[sparsity.UpdatePruningStep(), rate()])
    stripped = sparsity.strip_pruning(pruned)
    pqat = compiled(pqat_model(stripped))
    pqat.fit(**data, initial_epoch=epochs, epochs=epochs + config["qat_epochs"], verbose=0,
             callbacks=[rate()])

    # Step cost, the protocol of benchmarks.run: fresh copies taking turns.
    # (No rounds: --quick skips the step timing.)
    n = min(len(x), batch * config["timing_steps"])
    times = fit_step_times(tf_keras.callbacks.Callback, {
        "plain": (compiled(model_from_float()), []),
        "prune": (compiled(pruned_model((config["timing_rounds"] + 1) * config["timing_steps"])),
                  [sparsity.UpdatePruningStep()]),
        "qat": (compiled(pqat_model(stripped)), []),
    }, x[:n], y[:n], batch, rounds=config["timing_rounds"]) if config["timing_rounds"] else {}
    keras_accuracy = float(pqat.evaluate(xt, yt, verbose=0)[1])
    began = time.perf_counter()
    tfl = tflite_export.convert(pqat, mode="int8", io_dtype="int8")
    conversion = time.perf_counter() - began
    tfl.save(config["output"])
    kernels = [w for w in stripped.get_weights() if w.ndim > 1]
    json.dump({
        "tfmot": tfmot.__version__, "tf_keras": tf_keras.__version__,
        **{f"{k}_step_s": v for k, v in times.items()},
        "keras_accuracy": keras_accuracy, "conversion_s": conversion,
        "sparsity": sum(int(np.count_nonzero(k == 0)) for k in kernels) / sum(k.size for k in kernels),
    }, sys.stdout)


if __name__ == "__main__":
    main(sys.argv)
