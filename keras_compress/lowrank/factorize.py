"""`factorize(model, ...)`: low-rank (SVD) factorization of Dense and Conv layers.

A Dense kernel W (in x out) becomes U_r sqrt(S_r) (in x r) then sqrt(S_r) V_r^T
(r x out): two Dense layers, the first without bias or activation. A Conv1D/2D
kernel (k... x in x out) is factorized as a (k...*in) x out matrix: a conv with
r filters and the original kernel size, stride and padding, then a 1x1 conv
to `out` filters with the original bias and activation. Each factorized layer
becomes a small nested Sequential named `<layer>_lowrank`, so `quantize`,
`prune` and `strip` treat it like any other model. Layers whose factorization
would not save parameters are left as they are. Fine-tune with `fit`.

Example:

```python
import keras
import keras_compress as kc

model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(300, activation="relu"),
                          keras.layers.Dense(10)])
small = kc.factorize(model, rank={"dense": 32})
small.count_params()   # 784*32 + 32*300 + 300 + 300*10 + 10 = 37,998 instead of 238,510
```
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from keras_compress import graph, model_walk, registry
from keras_compress._wrapper_base import CompressionWrapper
from keras_compress.model_walk import selector

__all__ = ["factorize", "rank_for"]

L = keras.layers


def rank_for(singular_values: np.ndarray, energy: float) -> int:
    """Smallest rank keeping `energy` of the sum of squared singular values."""
    power = np.cumsum(np.asarray(singular_values, np.float64) ** 2)
    return int(np.searchsorted(power / power[-1], energy - 1e-12) + 1)


def _matrix(layer) -> np.ndarray:
    kernel = layer.kernel.numpy()
    return kernel.reshape(-1, kernel.shape[-1])


def _choose_rank(layer, s, rank, energy, budget) -> int:
    rows, cols = _matrix(layer).shape
    if rank is not None:
        r = rank
    elif budget is not None:
        r = int(budget * rows * cols // (rows + cols))
    else:
        r = rank_for(s, energy)
    return max(1, min(r, len(s)))


def _split(layer, r: int) -> keras.Model:
    w = _matrix(layer)
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    root = np.sqrt(s[:r])
    first, second = (u[:, :r] * root).astype(np.float32), (root[:, None] * vt[:r]).astype(np.float32)
    config = layer.get_config()
    shape = layer.get_build_config()["input_shape"]
    if isinstance(layer, L.Dense):
        a = L.Dense(r, use_bias=False, name=f"{layer.name}_u")
        b = L.Dense(config["units"], activation=config["activation"], use_bias=config["use_bias"],
                    name=f"{layer.name}_v")
    else:
        conv = type(layer)
        a = conv(r, config["kernel_size"], strides=config["strides"], padding=config["padding"],
                 dilation_rate=config["dilation_rate"], use_bias=False, name=f"{layer.name}_u")
        b = conv(config["filters"], 1, activation=config["activation"],
                 use_bias=config["use_bias"], name=f"{layer.name}_v")
    block = keras.Sequential([keras.Input(batch_shape=shape), a, b], name=f"{layer.name}_lowrank")
    a.kernel.assign(first.reshape(a.kernel.shape))
    b.kernel.assign(second.reshape(b.kernel.shape))
    if config["use_bias"]:
        b.bias.assign(layer.bias.numpy())
    return block


def factorize(
    model: keras.Model,
    rank: int | dict[str, int] | None = None,
    energy: float = 0.9,
    budget: float | None = None,
    layers: Any = None,
    skip: Any = None,
) -> keras.Model:
    """Replace Dense/Conv1D/Conv2D layers by rank-r factor pairs.

    Args:
        model: a Sequential/functional model (not modified).
        rank: a rank for every selected layer, or `{layer name: rank}`.
        energy: without `rank`/`budget`, keep this fraction of the squared
            singular values (0 < energy <= 1).
        budget: parameters of the factor pair as a fraction of the layer's
            kernel (e.g. 0.25), instead of `energy`.
        layers, skip: which layers to factorize / leave alone.

    Raises:
        ValueError: bad arguments (named), wrapped layers, or nothing to factorize.
    """
    if not model_walk.is_graph_model(model):
        raise ValueError(f"`model` must be a Sequential or functional keras.Model; received "
                         f"{type(model).__name__}.")
    if not (isinstance(energy, (int, float)) and 0 < energy <= 1):
        raise ValueError(f"`energy` must be in (0, 1]; received {energy!r}.")
    if budget is not None and not (isinstance(budget, (int, float)) and 0 < budget < 1):
        raise ValueError(f"`budget` must be a fraction in (0, 1); received {budget!r}.")
    model_walk.check_finite(model, "factorize")
    leaves = list(model_walk.iter_layers(model))
    names = {layer.name for layer in leaves}
    if isinstance(rank, dict):
        unknown = set(rank) - names
        if unknown:
            raise ValueError(f"`rank` names layers not in the model: {sorted(unknown)}.")
        layers = layers if layers is not None else list(rank)
    for value in (rank.values() if isinstance(rank, dict) else [rank]):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"`rank` values must be positive integers; received {value!r}.")
    if any(isinstance(layer, CompressionWrapper) for layer in leaves):
        raise ValueError("Factorize a plain model: strip pruning/clustering wrappers first, "
                         "and quantize after factorizing.")
    target, excluded = selector(layers, "layers", names), selector(skip, "skip", names)
    plans = {}
    for layer in leaves:
        rule = registry.rule_for(layer)
        if rule is None or not rule.lowrank:
            if target is not None and target(layer):
                raise ValueError(f"Layer '{layer.name}' ({type(layer).__name__}) cannot be "
                                 "factorized: supported are Dense, Conv1D and Conv2D.")
            continue
        if (target is not None and not target(layer)) or (excluded and excluded(layer)):
            continue
        if getattr(layer, "groups", 1) != 1:
            continue
        w = _matrix(layer)
        s = np.linalg.svd(w, compute_uv=False)
        r = _choose_rank(layer, s, rank.get(layer.name) if isinstance(rank, dict) else rank,
                         energy, budget)
        if r * (w.shape[0] + w.shape[1]) < w.size:
            plans[id(layer)] = r
    if not plans:
        raise ValueError(f"Model '{model.name}': no layer would get fewer parameters from a "
                         "factorization at the requested rank/energy/budget.")
    return graph.rebuild(
        model, lambda layer: _split(layer, plans[id(layer)]) if id(layer) in plans else None)
