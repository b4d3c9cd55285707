"""Per-step training time, measured the same way for Keras 3 and tf_keras.

Imports no Keras itself: the TFMOT peer runs it under tf_keras."""

from __future__ import annotations

import statistics
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
