"""TFMOT peer for the pruning-overhead benchmark. Runs in its own process:
importing tensorflow_model_optimization switches TensorFlow to legacy tf_keras
for the whole process. Prints one JSON object on stdout."""

from __future__ import annotations

import json
import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(argv: list[str]) -> None:
    config = json.loads(argv[1])
    import numpy as np
    import tensorflow_model_optimization as tfmot
    import tf_keras

    from benchmarks._timing import interleaved_step_times, step_time_callback
    from keras_compress import datasets, models

    tf_keras.utils.set_random_seed(config["seed"])
    (x, y), _ = datasets.mnist(config["data_dir"], normalize=True)
    StepTimer = step_time_callback(tf_keras.callbacks.Callback)
    sparsity = tfmot.sparsity.keras
    results = {}
    for name in config["models"]:
        build = getattr(models, name)
        xs = x[..., None] if name == "lenet5" else x
        steps = -(-len(xs) // config["batch_size"]) * (config["rounds"] + 1)
        schedule = sparsity.PolynomialDecay(0.0, 0.9, 0, steps - 1, frequency=100)

        def compiled(model):
            model.compile(
                tf_keras.optimizers.Adam(1e-3),
                tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"],
            )
            return model

        plain = compiled(build(keras_module=tf_keras))
        pruned = compiled(sparsity.prune_low_magnitude(build(keras_module=tf_keras),
                                                       pruning_schedule=schedule))

        def epoch(model, extra):
            timer = StepTimer()
            model.fit(xs, y, batch_size=config["batch_size"], epochs=1, verbose=0,
                      callbacks=[timer, *extra])
            return timer.per_step[0]

        step = sparsity.UpdatePruningStep()
        times = interleaved_step_times(
            {"plain": lambda: epoch(plain, []), "pruned": lambda: epoch(pruned, [step])},
            config["rounds"],
        )
        stripped = sparsity.strip_pruning(pruned)
        kernels = [w for w in stripped.get_weights() if w.ndim > 1]
        zeros = sum(int(np.count_nonzero(k == 0)) for k in kernels) / sum(k.size for k in kernels)
        results[name] = {**times, "ratio": times["pruned"] / times["plain"], "sparsity": zeros}
    json.dump({"tfmot": tfmot.__version__, "tf_keras": tf_keras.__version__,
               "results": results}, sys.stdout)


if __name__ == "__main__":
    main(sys.argv)
