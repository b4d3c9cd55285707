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

    from benchmarks._timing import measure_pruning_overhead
    from keras_compress import datasets

    tf_keras.utils.set_random_seed(config["seed"])
    (x, y), _ = datasets.mnist(config["data_dir"], normalize=True)
    sparsity = tfmot.sparsity.keras

    def final_sparsity(model):
        kernels = [w for w in sparsity.strip_pruning(model).get_weights() if w.ndim > 1]
        return sum(int(np.count_nonzero(k == 0)) for k in kernels) / sum(k.size for k in kernels)

    results = measure_pruning_overhead(
        tf_keras, config, x, y,
        prune=lambda model, end: sparsity.prune_low_magnitude(
            model, pruning_schedule=sparsity.PolynomialDecay(0.0, 0.9, 0, end, frequency=100)),
        make_callbacks=lambda: [sparsity.UpdatePruningStep()],
        final_sparsity=final_sparsity,
    )
    json.dump({"tfmot": tfmot.__version__, "tf_keras": tf_keras.__version__,
               "results": results}, sys.stdout)


if __name__ == "__main__":
    main(sys.argv)
