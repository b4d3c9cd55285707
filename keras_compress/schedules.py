"""Step -> value schedules shared by every compression technique.

A schedule is a small, pure, serializable object: calling it with a training step
(an `int`, counted in optimizer steps) returns a Python `float`. Schedules hold no
Keras state, so the same object can drive pruning sparsity today and distillation
temperature tomorrow.

Pruning schedules additionally say *when* masks are recomputed
(`should_update(step)`), using TFMOT's argument names (`begin_step`, `end_step`,
`frequency`, `initial_sparsity`, `final_sparsity`, `power`) so a TFMOT user migrates
by changing imports.

Example:

```python
import keras_compress as kc

schedule = kc.PolynomialDecay(
    initial_sparsity=0.0, final_sparsity=0.9, begin_step=0, end_step=1000,
    frequency=100)
schedule(0), schedule(500), schedule(1000)   # (0.0, 0.7875, 0.9)
schedule.should_update(100)                  # True
```
"""

from __future__ import annotations

import math
from typing import Any

import keras

__all__ = ["Schedule", "PruningSchedule", "ConstantSparsity", "PolynomialDecay", "Constant",
           "Linear", "Cosine"]

_PACKAGE = "keras_compress"


class Schedule:
    """Base class: a pure mapping from a training step to a float.

    Subclasses implement `__call__(step)` and `get_config()`; `from_config` is
    inherited. Every schedule is registered with Keras serialization so models
    holding one save and load with `model.save("x.keras")`.
    """

    def __call__(self, step: int) -> float:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Schedule":
        return cls(**config)

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.get_config().items()))))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _check_sparsity(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"`{name}` must be a number in [0, 1); received {value!r}.")
    value = float(value)
    if not (0.0 <= value < 1.0) or math.isnan(value):
        raise ValueError(
            f"`{name}` must be in [0, 1) (a sparsity of 1 would remove every weight); "
            f"received {value}."
        )
    return value


def check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"`{name}` must be an integer >= {minimum}; received {value!r}.")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}; received {value}.")
    return value


class PruningSchedule(Schedule):
    """A sparsity schedule with an update window and an update frequency.

    Masks are recomputed at `begin_step`, then every `frequency` steps, and always
    at `end_step` (so the final sparsity is reached even when
    `end_step - begin_step` is not a multiple of `frequency`; TFMOT can stop short
    of it). `end_step=-1` means "never stop updating".

    The window can be given in epochs instead (`begin_epoch`, `end_epoch`):
    `PruningCallback` turns it into steps when `fit` starts, from the steps per
    epoch `fit` knows (`resolve(steps_per_epoch)`); `frequency=None` then means
    16 mask updates over the window.
    """

    def __init__(self, begin_step: int | None, end_step: int | None, frequency: int | None,
                 begin_epoch: int | None = None, end_epoch: int | None = None):
        if begin_epoch is not None or end_epoch is not None:
            if begin_step not in (None, 0) or end_step not in (None, -1):
                raise ValueError("Give the pruning window in steps (`begin_step`, `end_step`) "
                                 "or in epochs (`begin_epoch`, `end_epoch`), not both.")
            self.begin_epoch = check_int("begin_epoch", 0 if begin_epoch is None
                                          else begin_epoch, 0)
            self.end_epoch = check_int("end_epoch", -1 if end_epoch is None else end_epoch, -1)
            if self.end_epoch != -1 and self.end_epoch < self.begin_epoch:
                raise ValueError(f"`end_epoch` ({end_epoch}) must be >= `begin_epoch` "
                                 f"({begin_epoch}), or -1 to keep updating until training "
                                 "stops.")
            self.frequency = None if frequency is None else check_int("frequency", frequency, 1)
            self.begin_step = self.end_step = None
            return
        self.begin_epoch = self.end_epoch = None
        self.begin_step = check_int("begin_step", begin_step, 0)
        self.end_step = check_int("end_step", end_step, -1)
        self.frequency = check_int("frequency", 100 if frequency is None else frequency, 1)
        if self.end_step != -1 and self.end_step < self.begin_step:
            raise ValueError(
                f"`end_step` ({end_step}) must be >= `begin_step` ({begin_step}), "
                "or -1 to keep updating until training stops."
            )

    @property
    def in_epochs(self) -> bool:
        """Whether the window is in epochs, still to be resolved to steps."""
        return self.begin_epoch is not None

    def resolve(self, steps_per_epoch: int) -> "PruningSchedule":
        """This schedule in optimizer steps (itself when already in steps)."""
        if not self.in_epochs:
            return self
        spe = check_int("steps_per_epoch", steps_per_epoch, 1)
        begin = self.begin_epoch * spe
        end = -1 if self.end_epoch == -1 else self.end_epoch * spe
        frequency = self.frequency or (max(1, (end - begin) // 16) if end != -1 else spe)
        config = {k: v for k, v in self.get_config().items()
                  if k not in ("begin_epoch", "end_epoch")}
        return type(self)(**{**config, "begin_step": begin, "end_step": end,
                             "frequency": frequency})

    def _window_config(self) -> dict[str, Any]:
        if self.in_epochs:
            return {"begin_epoch": self.begin_epoch, "end_epoch": self.end_epoch,
                    "frequency": self.frequency}
        return {"begin_step": self.begin_step, "end_step": self.end_step,
                "frequency": self.frequency}

    def _require_steps(self) -> None:
        if self.in_epochs:
            raise ValueError(
                f"{self!r} is in epochs: `PruningCallback` resolves it to steps when `fit` "
                "starts (or call `.resolve(steps_per_epoch)`).")

    @property
    def target_sparsity(self) -> float:
        """The sparsity this schedule ends at."""
        raise NotImplementedError

    def should_update(self, step: int) -> bool:
        """Whether masks are recomputed before training step `step`."""
        self._require_steps()
        if step < self.begin_step:
            return False
        if self.end_step != -1 and step > self.end_step:
            return False
        return (step - self.begin_step) % self.frequency == 0 or step == self.end_step

    def is_finished(self, step: int) -> bool:
        """Whether the schedule has made its last update before step `step`."""
        self._require_steps()
        return self.end_step != -1 and step > self.end_step


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ConstantSparsity(PruningSchedule):
    """Prune to `target_sparsity` at `begin_step` and keep that sparsity.

    Args:
        target_sparsity: fraction of weights set to zero, in [0, 1).
        begin_step: first step at which masks are computed.
        end_step: last step at which masks are recomputed (-1: until the end).
        frequency: masks are recomputed every `frequency` steps in between.
        begin_epoch, end_epoch: the window in epochs instead of steps, resolved
            when `fit` starts (`frequency` None: once an epoch).

    Example:

    ```python
    from keras_compress import ConstantSparsity

    schedule = ConstantSparsity(0.5, begin_step=0, frequency=100)
    schedule(123)   # 0.5
    ```
    """

    def __init__(
        self,
        target_sparsity: float,
        begin_step: int | None = 0,
        end_step: int | None = -1,
        frequency: int | None = 100,
        *,
        begin_epoch: int | None = None,
        end_epoch: int | None = None,
    ):
        if (begin_epoch is not None or end_epoch is not None) and frequency == 100:
            frequency = None  # the default in steps; in epochs: once an epoch
        super().__init__(begin_step, end_step, frequency, begin_epoch, end_epoch)
        self._target = _check_sparsity("target_sparsity", target_sparsity)

    @property
    def target_sparsity(self) -> float:
        return self._target

    def __call__(self, step: int) -> float:
        self._require_steps()
        return self._target

    def get_config(self) -> dict[str, Any]:
        return {"target_sparsity": self._target, **self._window_config()}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PolynomialDecay(PruningSchedule):
    """Gradual pruning of Zhu & Gupta (2017): sparsity rises polynomially.

    `s(t) = s_f + (s_i - s_f) * (1 - (t - t0) / (t1 - t0)) ** power`, clipped to
    the window `[begin_step, end_step]`. With the default `power=3` most weights
    are removed early, while the network can still recover, and the last ones
    slowly.

    Args:
        initial_sparsity: sparsity at `begin_step`, in [0, 1).
        final_sparsity: sparsity reached at `end_step`, in [0, 1).
        begin_step: first step at which masks are computed.
        end_step: step at which `final_sparsity` is reached (> `begin_step`).
        power: exponent of the decay (3 is the paper's cubic schedule).
        frequency: masks are recomputed every `frequency` steps.
        begin_epoch, end_epoch: the window in epochs instead of steps, resolved
            when `fit` starts (`frequency` None: 16 updates over the window).

    Example:

    ```python
    from keras_compress import PolynomialDecay

    schedule = PolynomialDecay(0.0, 0.9, begin_step=0, end_step=1000)
    round(schedule(500), 4)   # 0.7875
    by_epoch = PolynomialDecay(0.0, 0.9, begin_epoch=1, end_epoch=5)
    by_epoch.resolve(steps_per_epoch=250).end_step     # 1250, as PruningCallback does
    ```
    """

    def __init__(
        self,
        initial_sparsity: float,
        final_sparsity: float,
        begin_step: int | None = None,
        end_step: int | None = None,
        power: float = 3.0,
        frequency: int | None = 100,
        *,
        begin_epoch: int | None = None,
        end_epoch: int | None = None,
    ):
        epochs = begin_epoch is not None or end_epoch is not None
        if not epochs and (begin_step is None or end_step is None):
            raise ValueError("PolynomialDecay needs its window: `begin_step` and `end_step`, "
                             "or `begin_epoch` and `end_epoch`.")
        if epochs and frequency == 100:
            frequency = None  # the default in steps; in epochs: 16 updates
        super().__init__(begin_step, end_step, frequency, begin_epoch, end_epoch)
        self.initial_sparsity = _check_sparsity("initial_sparsity", initial_sparsity)
        self.final_sparsity = _check_sparsity("final_sparsity", final_sparsity)
        first, last, unit = ((self.begin_epoch, self.end_epoch, "epoch") if epochs
                             else (self.begin_step, self.end_step, "step"))
        if last == -1 or last <= first:
            raise ValueError(
                f"PolynomialDecay needs `end_{unit}` > `begin_{unit}`; received "
                f"begin_{unit}={first}, end_{unit}={last}."
            )
        if isinstance(power, bool) or not isinstance(power, (int, float)) or power <= 0:
            raise ValueError(f"`power` must be a positive number; received {power!r}.")
        self.power = float(power)

    @property
    def target_sparsity(self) -> float:
        return self.final_sparsity

    def __call__(self, step: int) -> float:
        self._require_steps()
        progress = (step - self.begin_step) / (self.end_step - self.begin_step)
        progress = min(1.0, max(0.0, progress))
        return self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * (
            1.0 - progress
        ) ** self.power

    def get_config(self) -> dict[str, Any]:
        return {
            "initial_sparsity": self.initial_sparsity,
            "final_sparsity": self.final_sparsity,
            "power": self.power,
            **self._window_config(),
        }


# ------------------------------------------------------------- value schedules
def _check_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"`{name}` must be a finite number; received {value!r}.")
    return float(value)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Constant(Schedule):
    """The same `value` at every step (e.g. a fixed distillation temperature).

    Example:

    ```python
    from keras_compress.schedules import Constant

    Constant(4.0)(1000)   # 4.0
    ```
    """

    def __init__(self, value: float):
        self.value = _check_number("value", value)

    def __call__(self, step: int) -> float:
        return self.value

    def get_config(self) -> dict[str, Any]:
        return {"value": self.value}


class _Ramp(Schedule):
    def __init__(self, start: float, end: float, begin_step: int, end_step: int):
        self.start = _check_number("start", start)
        self.end = _check_number("end", end)
        self.begin_step = check_int("begin_step", begin_step, 0)
        self.end_step = check_int("end_step", end_step, 0)
        if self.end_step < self.begin_step:
            raise ValueError(
                f"`end_step` ({end_step}) must be >= `begin_step` ({begin_step})."
            )

    def _progress(self, step: int) -> float:
        if step <= self.begin_step:
            return 0.0
        if step >= self.end_step:
            return 1.0
        return (step - self.begin_step) / (self.end_step - self.begin_step)

    def get_config(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "begin_step": self.begin_step,
                "end_step": self.end_step}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Linear(_Ramp):
    """`start` until `begin_step`, then a straight line to `end` at `end_step`.

    Example:

    ```python
    from keras_compress.schedules import Linear

    alpha = Linear(start=0.1, end=0.5, begin_step=0, end_step=100)
    alpha(0), alpha(50), alpha(200)   # (0.1, 0.3, 0.5)
    ```
    """

    def __call__(self, step: int) -> float:
        return self.start + (self.end - self.start) * self._progress(step)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Cosine(_Ramp):
    """Half a cosine from `start` (at `begin_step`) to `end` (at `end_step`).

    Example:

    ```python
    from keras_compress.schedules import Cosine

    temperature = Cosine(start=8.0, end=2.0, begin_step=0, end_step=100)
    temperature(0), temperature(50), temperature(100)   # (8.0, 5.0, 2.0)
    ```
    """

    def __call__(self, step: int) -> float:
        weight = 0.5 * (1.0 - math.cos(math.pi * self._progress(step)))
        return self.start + (self.end - self.start) * weight
