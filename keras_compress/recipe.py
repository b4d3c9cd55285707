"""`recipe(student, teacher=..., sparsity=..., qat_from_epoch=...)`: one call
that composes distillation, pruning and QAT for a single `model.fit`.

Example (random data, to show the calls):

```python
import keras
import numpy as np
import keras_compress as kc

x, y = np.random.rand(256, 16).astype("float32"), np.arange(256) % 4
teacher = keras.Sequential([keras.Input((16,)), keras.layers.Dense(64, activation="relu"),
                            keras.layers.Dense(4)])
student = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, activation="relu"),
                            keras.layers.Dense(4)])
train_model, callbacks = kc.recipe(student, teacher=teacher, sparsity=0.8,
                                   prune_epochs=(0, 2), qat_from_epoch=3)
train_model.fit(x, y, batch_size=32, epochs=4, callbacks=callbacks, verbose=0)
deployable = kc.strip(train_model)   # the student alone: zeros baked, BN folded, int8 ranges
```
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras

from keras_compress.distillation import DistillationCallback, Distiller
from keras_compress.pruning import PruningCallback, prune
from keras_compress.quantization import QuantizationCallback, quantize
from keras_compress.schedules import PolynomialDecay, Schedule, check_int

__all__ = ["recipe"]

_PRUNE_OPTIONS = ("ranking", "target", "min_channels", "round_to", "max_sparsity")


def recipe(
    student: keras.Model,
    teacher: keras.Model | None = None,
    *,
    sparsity: float | None = None,
    prune_epochs: tuple[int, int] = (0, 1),
    steps_per_epoch: int | None = None,
    structure: str = "unstructured",
    skip_pruning: Any = None,
    prune_options: Mapping[str, Any] | None = None,
    qat_from_epoch: int | None = None,
    freeze_bn_epoch: int | None = None,
    skip_quantization: Any = None,
    weight_bits: int | dict = 8,
    preserve: str = "auto",
    temperature: float | Schedule = 4.0,
    alpha: float | Schedule = 0.1,
    hints: Sequence[Sequence[str]] | None = None,
    optimizer: str | keras.optimizers.Optimizer = "adam",
    learning_rate: float | None = 1e-3,
    loss: Any = None,
    metrics: Sequence[Any] = ("accuracy",),
) -> tuple[keras.Model, list[keras.callbacks.Callback]]:
    """Build the training model and callbacks for one `fit` that distills,
    prunes and quantizes.

    Args:
        student: the model to compress (Sequential or functional, logits out).
        teacher: a trained model with the same input and output shapes; None
            trains the student on labels alone.
        sparsity: final sparsity in [0, 1), reached with Zhu & Gupta's cubic
            schedule over `prune_epochs`; None: no pruning.
        prune_epochs: (first, last) epoch of the sparsity ramp, inclusive of the
            start, exclusive of the end: masks are final when epoch `last` begins.
        steps_per_epoch: optimizer steps per epoch; optional: by default the
            pruning schedule is placed when `fit` starts, from the steps per
            epoch `fit` knows (a dataset of unknown length needs
            `fit(..., steps_per_epoch=...)`).
        structure: "unstructured", "channel" or N:M such as "2:4".
        skip_pruning: layers to keep dense (names, classes or a callable).
        prune_options: further `prune` arguments for `structure="channel"`:
            `ranking`, `target`, `min_channels`, `round_to`, `max_sparsity`; e.g.
            `{"target": "macs+params", "round_to": 16}`.
        qat_from_epoch: first epoch with fake quantization (the masks are kept);
            None: no QAT. Ranges are observed from the start.
        freeze_bn_epoch: first epoch using moving BatchNormalization statistics.
        skip_quantization: layers to keep float on purpose.
        weight_bits: QAT kernel bits, 8 or 4, for every layer or per layer
            (`{name or class: bits}`), as in `quantize`.
        preserve: what QAT keeps of a stripped pruned or clustered student
            (its zeros and shared values), as in `quantize`.
        temperature, alpha: distillation temperature and hard-label weight,
            numbers or schedules (per step, see `DistillationCallback`).
        hints: (teacher layer, student layer) pairs for feature distillation.
        optimizer, learning_rate: a Keras optimizer (name or instance); a
            learning rate given with a name builds the optimizer with it.
        loss: the hard-label loss; default sparse categorical cross-entropy on
            logits.
        metrics: compile metrics.

    Returns:
        `(train_model, callbacks)`: `train_model` is compiled; run
        `train_model.fit(x, y, epochs=..., callbacks=callbacks)`, then
        `kc.strip(train_model)` for the deployable student.
    """
    if not isinstance(student, keras.Model):
        raise ValueError(f"`student` must be a keras.Model; received {type(student).__name__}.")
    if teacher is not None and not isinstance(teacher, keras.Model):
        raise ValueError(f"`teacher` must be a keras.Model or None; received {teacher!r}.")
    callbacks: list[keras.callbacks.Callback] = []
    model = student
    if sparsity is not None:
        if not isinstance(prune_epochs, (tuple, list)) or len(prune_epochs) != 2:
            raise ValueError(f"`prune_epochs` must be (first, last); received {prune_epochs!r}.")
        first, last = (check_int("prune_epochs", e, 0) for e in prune_epochs)
        if last <= first:
            raise ValueError(f"`prune_epochs`={tuple(prune_epochs)}: last must come after first.")
        # In epochs, resolved to steps by PruningCallback when fit starts (16
        # mask updates over the ramp), unless the steps per epoch are given.
        schedule = PolynomialDecay(0.0, sparsity, begin_epoch=first, end_epoch=last)
        if steps_per_epoch is not None:
            schedule = schedule.resolve(check_int("steps_per_epoch", steps_per_epoch, 1))
        options = dict(prune_options or {})
        unknown = sorted(set(options) - set(_PRUNE_OPTIONS))
        if unknown:
            raise ValueError(f"`prune_options` has {unknown}; it takes {list(_PRUNE_OPTIONS)} "
                             "(the other `prune` arguments are the recipe's own).")
        model = prune(model, schedule=schedule, structure=structure, skip=skip_pruning,
                      **options)
        callbacks.append(PruningCallback())
    if qat_from_epoch is not None:
        start = check_int("qat_from_epoch", qat_from_epoch, 0)
        model = quantize(model, weight_bits=weight_bits, skip=skip_quantization,
                         preserve=preserve)
        callbacks.append(QuantizationCallback(start_epoch=start, freeze_bn_epoch=freeze_bn_epoch))
    elif freeze_bn_epoch is not None or weight_bits != 8:
        raise ValueError("`freeze_bn_epoch` and `weight_bits` apply to QAT; set "
                         "`qat_from_epoch` too.")
    if teacher is not None:
        t0 = temperature(0) if isinstance(temperature, Schedule) else temperature
        a0 = alpha(0) if isinstance(alpha, Schedule) else alpha
        model = Distiller(teacher, model, temperature=t0, alpha=a0, hints=hints)
        scheduled = {k: v for k, v in (("temperature", temperature), ("alpha", alpha))
                     if isinstance(v, Schedule)}
        if scheduled:
            callbacks.append(DistillationCallback(**scheduled))
    elif hints:
        raise ValueError("`hints` need a `teacher`.")
    if isinstance(optimizer, str) and learning_rate is not None:
        optimizer = keras.optimizers.get({"class_name": optimizer,
                                          "config": {"learning_rate": learning_rate}})
    model.compile(
        optimizer=optimizer,
        loss=loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=list(metrics),
    )
    return model, callbacks
