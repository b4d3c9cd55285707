"""Per-step training time, measured the same way for Keras 3 and tf_keras.

Imports no Keras itself: the TFMOT peer runs it under tf_keras."""

from __future__ import annotations

import statistics
import sys
import time


def step_time_callback(callback_base):
    """A callback class (built on the given Keras' Callback) recording the
    wall time of each epoch's training steps, divided by the step count."""

    class StepTimer(callback_base):
        def __init__(self):
            super().__init__()
            self.per_step: list[float] = []

        # No batch hooks: overriding on_train_batch_end would switch off
        # Keras 3's asynchronous dispatch and distort what is measured.
        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            steps = self.params.get("steps") or 1
            self.per_step.append((time.perf_counter() - self._t0) / steps)

    return StepTimer


def interleaved_step_times(runs: dict, rounds: int) -> dict[str, float]:
    """Median per-step seconds for each of `runs` ({name: fit_one_epoch}),
    after one warm-up epoch each, alternating the runs round by round so
    machine noise hits all of them alike. Each fit function returns the
    per-step seconds of the epoch it ran."""
    for fit in runs.values():
        fit()  # warm-up: tracing/compilation
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, fit in runs.items():
            samples[name].append(fit())
    return {name: statistics.median(values) for name, values in samples.items()}


def fit_step_times(callback_base, models: dict, x, y, batch_size: int,
                   rounds: int = 3) -> dict[str, float]:
    """Median per-step seconds of each of `models` ({name: (compiled model,
    callbacks)}), from one-epoch fits on the same arrays, the models taking
    turns (`interleaved_step_times`), so a noisy machine slows all alike. Works
    for Keras 3 and tf_keras (`callback_base` is that Keras' Callback)."""
    import warnings

    StepTimer = step_time_callback(callback_base)

    def epoch(model, callbacks):
        timer = StepTimer()
        with warnings.catch_warnings():
            # A pruning schedule may outlast these short fits.
            warnings.filterwarnings("ignore", message="PruningCallback: training stopped")
            model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0,
                      callbacks=[timer, *callbacks])
        return timer.per_step[0]

    return interleaved_step_times(
        {name: (lambda m=model, c=callbacks: epoch(m, list(c)))
         for name, (model, callbacks) in models.items()}, rounds)


def measure_pruning_overhead(keras_module, config, x, y, prune, make_callbacks, final_sparsity):
    """Plain vs pruning fit per-step time for each model in `config["models"]`,
    with the same protocol for any Keras: `prune(model, end_step)` wraps a model,
    `make_callbacks()` gives the pruning callbacks, `final_sparsity(model)` reads
    the zeros reached."""
    import warnings

    from keras_compress import models

    StepTimer = step_time_callback(keras_module.callbacks.Callback)
    results = {}
    for name in config["models"]:
        build = getattr(models, name)
        xs = x[..., None] if name == "lenet5" else x
        steps = -(-len(xs) // config["batch_size"]) * (config["rounds"] + 1)

        def compiled(model):
            model.compile(
                keras_module.optimizers.Adam(1e-3),
                keras_module.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"],
            )
            return model

        plain = compiled(build(keras_module=keras_module))
        pruned = compiled(prune(build(keras_module=keras_module), steps - 1))
        callbacks = make_callbacks()

        def epoch(model, extra, xs=xs):
            timer = StepTimer()
            with warnings.catch_warnings():
                # One schedule spans all the one-epoch fits: each stops before its end.
                warnings.filterwarnings("ignore", message="PruningCallback: training stopped")
                model.fit(xs, y, batch_size=config["batch_size"], epochs=1, verbose=0,
                          callbacks=[timer, *extra])
            return timer.per_step[0]

        times = interleaved_step_times(
            {"plain": lambda: epoch(plain, []), "pruned": lambda: epoch(pruned, callbacks)},
            config["rounds"],
        )
        results[name] = {**times, "ratio": times["pruned"] / times["plain"],
                         "sparsity": final_sparsity(pruned)}
        print(f"{name}: plain {times['plain'] * 1e3:.2f} ms/step, pruned "
              f"{times['pruned'] * 1e3:.2f} ms/step, ratio {results[name]['ratio']:.2f}",
              file=sys.stderr, flush=True)
    return results
