"""What `quantize` keeps of a stripped model: its exact zeros and its shared values.

A model that was pruned or clustered and then stripped (to save it, inspect it
or hand it on) holds plain layers whose kernels are mostly zero, or share a few
values. Plain QAT would let both drift. `find` reads each kernel once:

- shared values: at most 256 distinct non-zero values per kernel (or per
  output channel), used 1.5 times each or more on average: the layer is wrapped
  in a `ClusterWrapper` whose centroids are exactly those values (its zeros are
  kept too), so QAT trains the shared values and never adds one;
- zeros: at least 5 % exact zeros (float training leaves none): the layer is
  wrapped in a `PruningWrapper` whose mask is exactly the zeros.

`quantize(model, preserve="auto")` does this (and says what it kept);
`preserve="zeros"` keeps only zeros, `preserve="none"` neither.

Example:

```python
import keras
import numpy as np
import keras_compress as kc

model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, name="fc")])
kernel = model.get_layer("fc").kernel
kernel.assign(np.where(np.abs(kernel.numpy()) > 0.2, np.sign(kernel.numpy()) * 0.3, 0.0))
[(f.layer, f.kind) for f in kc.quantization.preserve.find(model)]   # [('fc', 'clusters')]
```
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from keras_compress import graph, model_walk
from keras_compress.clustering.wrapper import ClusterWrapper
from keras_compress.pruning import prunable
from keras_compress.pruning.wrapper import PruningWrapper
from keras_compress.schedules import ConstantSparsity

__all__ = ["MODES", "Preserved", "find", "shared_dense", "wrap"]

MODES = ("auto", "zeros", "none")
_MAX_SHARED = 256
# Float training leaves every value distinct (1 use each); clustering shares them.
_MIN_USES = 1.5
_MIN_ZEROS = 0.05


@dataclasses.dataclass(frozen=True)
class Preserved:
    """One kernel `quantize` keeps: its zeros, or its shared values (and zeros)."""

    layer: str
    kind: str  # "clusters" or "zeros"
    sparsity: float
    values: int = 0  # shared values per kernel (or per channel), for "clusters"
    per_channel: bool = False

    def describe(self) -> str:
        if self.kind == "zeros":
            return f"{self.layer}: its {100 * self.sparsity:.1f} % zeros"
        where = "per output channel" if self.per_channel else "per kernel"
        zeros = f" and {100 * self.sparsity:.1f} % zeros" if self.sparsity else ""
        return f"{self.layer}: {self.values} shared values {where}{zeros}"


def _inspect(layer: keras.layers.Layer, mode: str) -> Preserved | None:
    layouts = prunable.prunable_weights(layer)
    if not layouts or not layer.built:
        return None
    kernel = np.asarray(prunable.variable(layer, layouts[0].attr).numpy())
    sparsity = float(np.mean(kernel == 0))
    if mode == "auto":
        nonzero = kernel[kernel != 0]
        distinct = len(np.unique(nonzero))
        if 0 < distinct <= _MAX_SHARED and distinct * _MIN_USES <= nonzero.size:
            return Preserved(layer.name, "clusters", sparsity, max(2, distinct))
        rows = (prunable.channel_major(kernel, layouts[0].output_axes)[0]
                if layouts[0].output_axes else None)
        if rows is not None and len(rows) > 1:
            per_row = [(len(np.unique(r[r != 0])), int(np.sum(r != 0))) for r in rows]
            most = max(d for d, _ in per_row)
            if 0 < most <= _MAX_SHARED and sum(d for d, _ in per_row) * _MIN_USES <= sum(
                    n for _, n in per_row):
                return Preserved(layer.name, "clusters", sparsity, max(2, most), True)
    if sparsity >= _MIN_ZEROS:
        return Preserved(layer.name, "zeros", sparsity)
    return None


def find(model: keras.layers.Layer, mode: str = "auto") -> list[Preserved]:
    """The plain (unwrapped) layers of `model` whose zeros or shared values
    `quantize` keeps under `mode` ("auto", "zeros" or "none")."""
    if mode not in MODES:
        raise ValueError(f"`preserve` must be one of {MODES}; received {mode!r}.")
    if mode == "none":
        return []
    leaves = model_walk.iter_layers(model) if model_walk.is_model(model) else [model]
    found = [_inspect(layer, mode) for layer in leaves if not isinstance(
        layer, (PruningWrapper, ClusterWrapper))]
    return [f for f in found if f is not None]


def _wrapper(layer: keras.layers.Layer, kept: Preserved) -> keras.layers.Layer:
    plain = model_walk.copy_layer(layer)
    if kept.kind == "clusters":
        wrapper = ClusterWrapper(plain, n_clusters=kept.values, init="values",
                                 per_channel=kept.per_channel)
        wrapper.build(model_walk.build_input_shape(layer))
        return wrapper
    kernels = [prunable.variable(plain, w.attr).numpy() for w in prunable.prunable_weights(plain)]
    # The mask is the zeros themselves; a PruningCallback at this sparsity
    # would rank the same entries (the zeros are the smallest magnitudes).
    wrapper = PruningWrapper(plain, schedule=ConstantSparsity(
        min(kept.sparsity, 0.99), begin_step=0, end_step=0, frequency=1))
    wrapper.build(model_walk.build_input_shape(layer))
    wrapper.assign_masks([(k != 0).astype("float32") for k in kernels])
    return wrapper


def wrap(model: keras.layers.Layer, kept: list[Preserved]) -> keras.layers.Layer:
    """`model` with each layer in `kept` wrapped to keep its zeros or values."""
    if not kept:
        return model
    by_name = {k.layer: k for k in kept}
    if not model_walk.is_model(model):
        return _wrapper(model, by_name[model.name])

    def replace(layer):
        return _wrapper(layer, by_name[layer.name]) if layer.name in by_name else None

    return graph.rebuild(model, replace)


def shared_dense(model: keras.layers.Layer) -> list[str]:
    """Dense layers of `model` whose kernel shares values per kernel (a
    per-tensor `ClusterWrapper`): one int8 scale keeps them that few."""
    leaves = model_walk.iter_layers(model) if model_walk.is_model(model) else [model]
    return [layer.layer.name for layer in leaves if isinstance(layer, ClusterWrapper)
            and not layer.per_channel and isinstance(layer.layer, keras.layers.Dense)]
