"""`DistillationCallback`: schedules a `Distiller`'s alpha and temperature.

The schedules are the same objects pruning uses (`kc.schedules.Linear`,
`Cosine`, `Constant`, ...), evaluated per optimizer step (`unit="step"`) or
per epoch (`unit="epoch"`). Steps are the model's training steps
(`keras_compress.steps`, the counter pruning reads too), so a resumed `fit`
picks the schedule up where it stopped. The values
are written to the distiller's saved variables before each batch and logged
at each epoch end (`alpha`, `temperature`).

Example:

```python
import keras
import numpy as np
import keras_compress as kc

x, y = np.random.rand(64, 8).astype("float32"), np.arange(64) % 3
teacher = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
student = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
distiller = kc.Distiller(teacher, student)
distiller.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
schedule = kc.DistillationCallback(
    temperature=kc.schedules.Linear(8.0, 2.0, begin_step=0, end_step=2), unit="epoch")
history = distiller.fit(x, y, epochs=3, verbose=0, callbacks=[schedule])
history.history["temperature"]   # [8.0, 5.0, 2.0]
```
"""

from __future__ import annotations

from typing import Any

import keras

from keras_compress import model_walk, steps
from keras_compress.distillation.distiller import Distiller
from keras_compress.schedules import Schedule

__all__ = ["DistillationCallback"]


@keras.saving.register_keras_serializable(package="keras_compress")
class DistillationCallback(keras.callbacks.Callback):
    """Sets `alpha` (hard-label weight) and `temperature` from schedules.

    Args:
        alpha: a `Schedule` for the hard-label weight (values in [0, 1]), or None.
        temperature: a `Schedule` for the temperature (values > 0), or None.
        unit: "step" (optimizer steps) or "epoch".
    """

    def __init__(self, alpha: Schedule | None = None, temperature: Schedule | None = None,
                 unit: str = "step"):
        super().__init__()
        for name, value in (("alpha", alpha), ("temperature", temperature)):
            if value is not None and not isinstance(value, Schedule):
                raise ValueError(
                    f"`{name}` must be a keras_compress schedule (e.g. "
                    f"kc.schedules.Linear) or None; received {value!r}.")
        if unit not in ("step", "epoch"):
            raise ValueError(f"`unit` must be 'step' or 'epoch'; received {unit!r}.")
        self.alpha, self.temperature, self.unit = alpha, temperature, unit
        self._clock: steps.StepClock | None = None
        self._distiller: Distiller | None = None

    def on_train_begin(self, logs=None):
        found = [layer for layer in [self.model, *model_walk.walk_layers(self.model)]
                 if isinstance(layer, Distiller)]
        if not found:
            raise ValueError(
                f"DistillationCallback: model '{self.model.name}' is not a "
                "keras_compress.Distiller; build one with kc.Distiller(teacher, student) "
                "or kc.recipe(student, teacher=...).")
        self._distiller = found[0]
        self._clock = steps.StepClock(self.model)
        self._clock.sync()

    def _set(self, position: int) -> None:
        d = self._distiller
        if self.alpha is not None:
            value = float(self.alpha(position))
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"The alpha schedule gave {value} at {self.unit} {position}; "
                                 "alpha must stay in [0, 1].")
            d.alpha.assign(value)
        if self.temperature is not None:
            value = float(self.temperature(position))
            if not value > 0:
                raise ValueError(f"The temperature schedule gave {value} at {self.unit} "
                                 f"{position}; the temperature must stay positive.")
            d.temperature.assign(value)

    def on_epoch_begin(self, epoch, logs=None):
        self._clock.sync()
        if self.unit == "epoch":
            self._set(epoch)

    def on_train_batch_begin(self, batch, logs=None):
        step = self._clock.tick()
        if self.unit == "step":
            self._set(step)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self._distiller is not None:
            logs["alpha"] = float(keras.ops.convert_to_numpy(self._distiller.alpha))
            logs["temperature"] = float(keras.ops.convert_to_numpy(self._distiller.temperature))

    def get_config(self) -> dict[str, Any]:
        return {
            "alpha": None if self.alpha is None else keras.saving.serialize_keras_object(self.alpha),
            "temperature": None if self.temperature is None
            else keras.saving.serialize_keras_object(self.temperature),
            "unit": self.unit,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("alpha", "temperature"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
