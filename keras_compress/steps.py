"""The training step: the one counter every keras_compress callback reads.

A compressed model counts its own training steps, in saved variables that the
training step itself increments (`add_counter` / `count`): a checkpoint taken
at any point therefore holds the step that matches its weights and optimizer
state, and the count survives a new `compile` (a new optimizer starts its
`iterations` at zero, a pruning schedule must not). `read(model)` is the
model's step: the largest of its counters, or the optimizer's `iterations`
when the model holds none (a plain student inside a `Distiller`).

Callbacks do not read the variable before every batch (that read would wait
for the previous step to finish); a `StepClock` reads it at the start of
training and of each epoch and advances by `steps_per_execution` per batch.

Example:

```python
import keras
import numpy as np
import keras_compress as kc
from keras_compress import steps

model = kc.prune(keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)]))
model.compile("adam", "mse")
model.fit(np.random.rand(32, 8), np.random.rand(32, 4), batch_size=8, epochs=2,
          verbose=0, callbacks=[kc.PruningCallback()])
steps.read(model)   # 8
```
"""

from __future__ import annotations

import keras

from keras_compress import model_walk

__all__ = ["add_counter", "count", "counters", "read", "StepClock"]

_COUNTER = "_keras_compress_step_counter"


def add_counter(layer: keras.layers.Layer, name: str = "step") -> keras.Variable:
    """A saved int64 step counter owned by `layer` (call from its `build`).

    Under `tf.distribute` every replica adds 1 and the first replica's update
    is the one kept, so the count is in global steps.
    """
    var = layer.add_weight(name=name, shape=(), dtype="int64", initializer="zeros",
                           trainable=False, aggregation="only_first_replica")
    setattr(layer, _COUNTER, var)
    return var


def count(var: keras.Variable) -> None:
    """One training step, counted inside the traced step."""
    var.assign_add(1)


def counters(model: keras.layers.Layer) -> list[keras.Variable]:
    """The step counters of the built layers anywhere in `model`."""
    found: dict[int, keras.Variable] = {}
    for layer in model_walk.walk_layers(model):
        var = getattr(layer, _COUNTER, None)
        if var is not None and layer.built:
            found.setdefault(id(var), var)
    return list(found.values())


def read(model: keras.layers.Layer) -> int:
    """The training steps `model` has taken (see the module docstring)."""
    values = [int(keras.ops.convert_to_numpy(v)) for v in counters(model)]
    if values:
        return max(values)
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return 0
    return int(keras.ops.convert_to_numpy(optimizer.iterations))


class StepClock:
    """A callback's view of `read(model)`: synced at train and epoch begin,
    advanced per batch, so reading it never waits for the device.

    `tick()` at each `on_train_batch_begin` returns the step the coming batch
    trains at.
    """

    def __init__(self, model: keras.layers.Layer):
        self._model = model
        self._step = 0
        self._advance = 0

    @property
    def step(self) -> int:
        return self._step

    def sync(self) -> int:
        """Re-read the model's counter (at train begin, and at every epoch
        begin: a BackupAndRestore listed later restores the step after the
        callbacks' on_train_begin ran)."""
        self._step = read(self._model)
        self._advance = 0
        return self._step

    def tick(self) -> int:
        self._step += self._advance
        self._advance = int(getattr(self._model, "steps_per_execution", 1) or 1)
        return self._step
