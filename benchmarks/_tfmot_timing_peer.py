"""TFMOT's training-step cost alone, for `benchmarks.run` when TFMOT's trained
row comes from the cache (trained in an earlier run, maybe on another
machine): step ratios are always measured in the run that reports them.

    python -m benchmarks._tfmot_timing_peer CONFIG_JSON

The protocol of `_tfmot_suite_peer`'s timing: plain fit, prune_low_magnitude
with masks updating on the polynomial schedule, and prune-preserving QAT
(PQAT) of a pruned-and-stripped model, fresh copies taking turns. The PQAT
model here starts from the float weights pruned by TFMOT itself (masks at the
case's sparsity computed in one step, then `strip_pruning`): the zeros PQAT
preserves are in place, as after the real fit. Prints one JSON object on
stdout (the `*_step_s` entries of the suite peer's report)."""

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

    from benchmarks._timing import fit_step_times
    from benchmarks._cases import load_case_data
    from keras_compress import models

    tf_keras.utils.set_random_seed(config["seed"])
    (x, y), _ = load_case_data(config)
    batch = config["batch_size"]
    steps = -(-len(x) // batch)
    n = min(len(x), batch * config["timing_steps"])
    x, y = x[:n], y[:n]
    weights = np.load(config["weights"])
    start = [weights[f"w{i}"] for i in range(len(weights.files))]
    sparsity, quant = tfmot.sparsity.keras, tfmot.quantization.keras

    def compiled(model):
        model.compile(tf_keras.optimizers.Adam(config["learning_rate"]),
                      tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        return model

    def from_float():
        model = getattr(models, config["model"])(input_shape=tuple(x.shape[1:]),
                                                  keras_module=tf_keras)
        model.set_weights(start)
        return model

    def pruned(schedule):
        return compiled(sparsity.prune_low_magnitude(from_float(), pruning_schedule=schedule))

    # TFMOT's own masks at the final sparsity (one step), baked in by strip_pruning.
    at_target = pruned(sparsity.ConstantSparsity(config["sparsity"], 0))
    at_target.fit(x[:batch], y[:batch], batch_size=batch, epochs=1, verbose=0,
                  callbacks=[sparsity.UpdatePruningStep()])
    stripped = sparsity.strip_pruning(at_target)
    pqat = compiled(quant.quantize_apply(
        quant.quantize_annotate_model(stripped),
        tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()))

    end_step = (config["timing_rounds"] + 1) * config["timing_steps"]
    times = fit_step_times(tf_keras.callbacks.Callback, {
        "plain": (compiled(from_float()), []),
        "prune": (pruned(sparsity.PolynomialDecay(0.0, config["sparsity"], 0, end_step,
                                                  frequency=max(1, steps // 4))),
                  [sparsity.UpdatePruningStep()]),
        "qat": (pqat, []),
    }, x, y, batch, rounds=config["timing_rounds"])
    json.dump({f"{k}_step_s": v for k, v in times.items()}, sys.stdout)


if __name__ == "__main__":
    main(sys.argv)
