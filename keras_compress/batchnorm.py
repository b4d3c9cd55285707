"""`recalibrate_batchnorm`: re-estimate BatchNormalization statistics on data.

A BatchNormalization layer's moving mean and variance describe the weights it
was trained with. Anything that changes those weights after the statistics
settled leaves them stale: a pruning schedule whose last mask update falls on
the last training step, `factorize` applied to a trained model, one-shot
pruning or clustering without fine-tuning. Recalibration runs the model on
some data and replaces each layer's moving statistics by the average of its
per-batch statistics (weighted by batch size), as training computes them.
Weights do not change, and neither does any other state: pruning steps,
quantization ranges and schedules are restored. Dropout and noise layers are
switched off while it runs.

BatchNormalization layers folded into a `QuantizeWrapper` are recalibrated
too, also after their statistics were frozen (they stay frozen).

Example:

```python
import keras
import numpy as np
import keras_compress as kc

model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4),
                          keras.layers.BatchNormalization()])
x = np.random.rand(256, 8).astype("float32")
kc.recalibrate_batchnorm(model, x, batch_size=64)   # ['batch_normalization']
```
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import keras
import numpy as np

from keras_compress import model_walk
from keras_compress.quantization.wrapper import QuantizeWrapper
from keras_compress.schedules import check_int

__all__ = ["recalibrate_batchnorm"]

# Layers whose training-mode noise is switched off, and the attribute to zero.
_NOISE = ((keras.layers.Dropout, "rate"), (keras.layers.GaussianDropout, "rate"),
          (keras.layers.AlphaDropout, "rate"), (keras.layers.GaussianNoise, "stddev"))


def recalibrate_batchnorm(
    model: keras.Model,
    data: Any,
    steps: int | None = None,
    batch_size: int = 32,
    verbose: bool = True,
) -> list[str]:
    """Recompute the moving statistics of every BatchNormalization in `model`.

    Args:
        model: a built Keras model (plain, or wrapped by `prune`, `quantize`,
            `cluster`, or after `factorize`). For a `Distiller`, pass its
            `student`.
        data: the inputs: an array (or tensor), split into `batch_size`
            batches, or a `tf.data.Dataset`, `keras.utils.PyDataset` or other
            iterable of batches, each either the inputs or an
            `(inputs, targets[, weights])` tuple. Use training data as
            training saw it: the same preprocessing and augmentation, and
            shuffled: statistics of unaugmented images mislead a model
            trained with augmentation (docs/status.md has the measurement).
        steps: use at most this many batches (default: all of `data`).
        batch_size: batch size for array `data`; statistics are per batch, so
            keep it close to the training batch size.
        verbose: show a progress bar.

    Returns:
        The names of the recalibrated layers, in model order.

    Raises:
        ValueError: `model` has no BatchNormalization, a layer uses renorm,
            `data` is empty or does not match the model's input shape, or the
            statistics come out NaN/Inf.
    """
    import tensorflow as tf

    from keras_compress.distillation import Distiller

    if isinstance(model, Distiller):
        raise ValueError(
            "recalibrate_batchnorm: received a Distiller, which also holds the teacher; "
            "pass the model you deploy, `distiller.student`.")
    if steps is not None:
        check_int("steps", steps, 1)
    check_int("batch_size", batch_size, 1)
    if not model.built:
        raise ValueError(f"recalibrate_batchnorm: model '{model.name}' is not built; call it "
                         "on a batch or build it first.")
    layers = _batchnorms(model)
    if not layers:
        raise ValueError(f"recalibrate_batchnorm: model '{model.name}' has no "
                         "BatchNormalization layer; there is nothing to recalibrate.")
    for bn, _ in layers:
        if bn.renorm:
            raise ValueError(
                f"recalibrate_batchnorm: BatchNormalization '{bn.name}' uses renorm, whose "
                "moving statistics follow their own update rule; recalibrate a model "
                "without renorm.")

    stats = [v for bn, _ in layers for v in (bn.moving_mean, bn.moving_variance)]
    stat_ids = {id(v) for v in stats}
    kept = [(v, v.numpy()) for v in model.non_trainable_variables if id(v) not in stat_ids]
    old_stats = [v.numpy() for v in stats]
    switches = [(bn, "momentum", 0.0) for bn, _ in layers]
    switches += [(bn, "trainable", True) for bn, _ in layers]
    switches += [(layer, attr, 0.0) for layer in model_walk.walk_layers(model)
                 for kind, attr in _NOISE if isinstance(layer, kind)]
    restore = [(obj, attr, getattr(obj, attr)) for obj, attr, _ in switches]
    totals = [np.zeros(v.shape, np.float64) for v in stats]
    seen = 0
    try:
        for obj, attr, value in switches:
            setattr(obj, attr, value)
        for _, wrapper in layers:
            if wrapper is not None:
                wrapper.bn_frozen.assign(0.0)
        # With momentum 0 each call leaves the batch's statistics in the moving
        # variables; they are summed here, weighted by the batch's size.
        forward = tf.function(lambda x: model(x, training=True), reduce_retracing=True)
        batches = _count(data, batch_size)
        if steps is not None:
            batches = steps if batches is None else min(steps, batches)
        bar = keras.utils.Progbar(batches, unit_name="batch") if verbose else None
        for step, x in enumerate(_batches(data, batch_size)):
            if steps is not None and step >= steps:
                break
            _check_shape(model, x)
            forward(x)
            size = _batch_size(x)
            for total, v in zip(totals, stats):
                total += size * v.numpy()
            seen += size
            if bar is not None:
                bar.update(step + 1)
        if not seen:
            raise ValueError("recalibrate_batchnorm: `data` yielded no batch.")
        new = [total / seen for total in totals]
        for (bn, _), mean, var in zip(layers, new[0::2], new[1::2]):
            if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(var))):
                raise ValueError(
                    f"recalibrate_batchnorm: BatchNormalization '{bn.name}' received NaN/Inf "
                    "inputs; check the data (and the weights before it).")
    except BaseException:
        for v, value in zip(stats, old_stats):
            v.assign(value)
        raise
    else:
        for v, value in zip(stats, new):
            v.assign(value.astype(v.dtype))
    finally:
        for obj, attr, value in restore:
            setattr(obj, attr, value)
        for v, value in kept:
            v.assign(value)
    return [bn.name for bn, _ in layers]


def _batchnorms(model) -> list[tuple[keras.layers.BatchNormalization, QuantizeWrapper | None]]:
    """Every BatchNormalization of `model` once, with the QuantizeWrapper it is
    folded into (or None)."""
    found, seen = [], set()
    for layer in model_walk.walk_layers(model):
        if isinstance(layer, QuantizeWrapper) and layer.batchnorm is not None:
            pair = (layer.batchnorm, layer)
        elif isinstance(layer, keras.layers.BatchNormalization):
            pair = (layer, None)
        else:
            continue
        if id(pair[0]) not in seen:
            seen.add(id(pair[0]))
            found.append(pair)
    return found


def _is_array(data) -> bool:
    return isinstance(data, np.ndarray) or hasattr(data, "shape") and hasattr(data, "dtype")


def _count(data, batch_size: int) -> int | None:
    """How many batches `data` holds, when that is known in advance."""
    if _is_array(data):
        return -(-len(data) // batch_size)
    try:
        return len(data)
    except TypeError:  # generators; tf.data with an unknown cardinality
        return None


def _batches(data, batch_size: int) -> Iterable:
    """The model inputs of each batch of `data`."""
    if _is_array(data):
        array = np.asarray(data)
        for start in range(0, len(array), batch_size):
            yield array[start: start + batch_size]
        return
    for batch in data:
        yield batch[0] if isinstance(batch, tuple) else batch


def _batch_size(x) -> int:
    first = x
    while isinstance(first, (list, tuple)):
        first = first[0]
    if isinstance(first, dict):
        first = next(iter(first.values()))
    return int(first.shape[0])


def _check_shape(model, x) -> None:
    """Single-input models: the batch must match the declared input shape."""
    if len(model.inputs or []) != 1 or isinstance(x, (list, tuple, dict)):
        return
    expected = tuple(model.inputs[0].shape)[1:]
    got = tuple(x.shape)[1:]
    if len(got) != len(expected) or any(e is not None and e != g for e, g in zip(expected, got)):
        raise ValueError(
            f"recalibrate_batchnorm: data batches have shape {tuple(x.shape)}, but model "
            f"'{model.name}' takes inputs of shape {(None, *expected)}.")
