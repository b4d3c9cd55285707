"""`prune(model, ...)` and `sparsity(model)`.

Example:

```python
import keras
import keras_compress as kc

model = keras.Sequential([keras.Input((784,)),
                          keras.layers.Dense(300, activation="relu"),
                          keras.layers.Dense(10)])
pruned = kc.prune(model, schedule=kc.PolynomialDecay(0.0, 0.9, 0, 1000))
pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
# pruned.fit(x, y, epochs=5, callbacks=[kc.PruningCallback()])
print(kc.sparsity(pruned))
plain = kc.strip(pruned)      # ready for the TFLite converter
```
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import keras
import numpy as np

from keras_compress import graph, model_walk
from keras_compress.model_walk import LayerSelector, selector
from keras_compress._wrapper_base import CompressionWrapper
from keras_compress.pruning import prunable
from keras_compress.pruning.wrapper import (
    PruningWrapper,
    check_schedule,
    default_schedule,
    parse_structure,
    check_ranking,
)
from keras_compress.schedules import PruningSchedule

__all__ = ["prune", "sparsity", "SparsityReport", "LayerSparsity"]

def prune(
    model: keras.layers.Layer,
    schedule: PruningSchedule | None = None,
    structure: str = "unstructured",
    ranking: str = "layer",
    layers: LayerSelector = None,
    skip: LayerSelector = None,
    *,
    pruning_schedule: PruningSchedule | None = None,
) -> keras.layers.Layer:
    """Wrap the prunable layers of `model` (or a single layer) for pruning.

    Works on Sequential and functional models, recursing into nested ones; the
    returned model is a new model (the input is not modified) holding copies of
    the weights. It still needs `compile()` and a `PruningCallback` in `fit`.

    Args:
        model: a `keras.Model` (Sequential or functional), or a single layer,
            which is returned wrapped (for building models by hand).
        schedule: a `PruningSchedule` (`ConstantSparsity`, `PolynomialDecay`);
            default ConstantSparsity(0.5) or, for N:M, ConstantSparsity(1 - N/M).
        structure: "unstructured", "channel" (whole output filters/units) or an
            N:M pattern such as "2:4" (along the kernel's input axis).
        ranking: "layer" (every layer reaches the sparsity) or "global" (one
            magnitude ranking over all pruned layers).
        layers: which layers to prune: names, layer classes, or a callable;
            default every prunable layer.
        skip: layers to leave dense, in the same forms as `layers`.
        pruning_schedule: TFMOT's name for `schedule`.

    Returns:
        The model with `PruningWrapper` layers (or the wrapped layer).

    Raises:
        ValueError: a bad argument (named in the message), a targeted layer that
            cannot be pruned, a layer whose input dimension N:M does not divide,
            or a model with no prunable layer.
    """
    if pruning_schedule is not None:
        if schedule is not None:
            raise ValueError("Pass either `schedule` or `pruning_schedule`, not both.")
        schedule = pruning_schedule
    parsed = parse_structure(structure)
    schedule = check_schedule(
        default_schedule(parsed) if schedule is None else schedule, parsed
    )
    check_ranking(ranking, parsed)
    options = dict(schedule=schedule, structure=str(parsed), ranking=ranking)

    if not isinstance(model, keras.layers.Layer):
        raise ValueError(
            f"`model` must be a keras.Model or keras layer; received {type(model).__name__}."
        )
    model_walk.check_finite(model, "prune")
    if not model_walk.is_model(model):
        if layers is not None or skip is not None:
            raise ValueError("`layers` and `skip` only apply when pruning a model.")
        return PruningWrapper(model, **options)
    if not model_walk.is_graph_model(model):
        raise model_walk.subclassed_error(model)

    leaves = list(model_walk.iter_layers(model))
    names = {layer.name for layer in leaves}
    for layer in leaves:
        if isinstance(layer, PruningWrapper):
            names.add(layer.layer.name)
    target = selector(layers, "layers", names)
    excluded = selector(skip, "skip", names)

    def chosen(layer: keras.layers.Layer) -> bool:
        if excluded is not None and excluded(layer):
            return False
        if target is not None:
            return bool(target(layer))
        return prunable.is_prunable(layer)

    selected = []
    for layer in leaves:
        if isinstance(layer, CompressionWrapper):
            if target is not None and target(layer.layer):
                raise ValueError(
                    f"Layer '{layer.layer.name}' is already wrapped "
                    f"({type(layer).__name__}); prune each layer once."
                )
            continue
        if not chosen(layer):
            if model_walk.is_model(layer) and any(
                prunable.is_prunable(sub) for sub in model_walk.walk_layers(layer)
            ):
                warnings.warn(
                    f"Layers inside subclassed model '{layer.name}' are not pruned: "
                    "its graph cannot be rebuilt. Wrap them with keras_compress.prune "
                    "inside its __init__.",
                    stacklevel=2,
                )
            continue
        if not prunable.is_prunable(layer):
            raise ValueError(
                f"Layer '{layer.name}' ({type(layer).__name__}) was selected for "
                "pruning but has no prunable kernel. Supported layers: "
                f"{', '.join(prunable.supported_layers())}, or any layer defining "
                "get_prunable_weights()."
            )
        selected.append(layer)
    if not selected:
        others = [f"'{layer.name}' ({type(layer).__name__})" for layer in leaves
                  if isinstance(layer, CompressionWrapper)
                  and not isinstance(layer, PruningWrapper)]
        if others and target is None:
            raise ValueError(
                f"Model '{model.name}' has no layer left to prune: its layers are already "
                f"wrapped ({', '.join(others[:4])}{', ...' if len(others) > 4 else ''}). "
                "Prune first, then cluster or quantize the pruned model: the zeros are kept.")
        raise ValueError(
            f"Model '{model.name}' has no layer to prune"
            + (" among those selected by `layers`/`skip`" if layers or skip else "")
            + f". Prunable layer types: {', '.join(prunable.supported_layers())}."
        )
    selected_ids = {id(layer) for layer in selected}

    def replace(layer: keras.layers.Layer) -> keras.layers.Layer | None:
        if id(layer) not in selected_ids:
            return None
        wrapper = PruningWrapper(model_walk.copy_layer(layer), **options)
        if layer.built:
            wrapper.build(layer.get_build_config()["input_shape"])
        return wrapper

    return graph.rebuild(model, replace)


# ----------------------------------------------------------------------- report
@dataclasses.dataclass(frozen=True)
class LayerSparsity:
    """Measured sparsity of one layer's prunable kernels."""

    name: str
    kind: str  # layer class name
    shape: tuple[int, ...]
    params: int
    zeros: int
    zero_channels: int  # output channels whose weights are all zero
    channels: int
    structure: str  # what the wrapper prunes with, or "-" for plain layers

    @property
    def sparsity(self) -> float:
        return self.zeros / self.params if self.params else 0.0

    @property
    def channel_sparsity(self) -> float:
        return self.zero_channels / self.channels if self.channels else 0.0


@dataclasses.dataclass(frozen=True)
class SparsityReport:
    """Per-layer zeros of a model's prunable kernels (`kernel * mask` for
    wrapped layers). Index by layer name: `report["dense"].sparsity`."""

    layers: dict[str, LayerSparsity]

    def __getitem__(self, name: str) -> LayerSparsity:
        return self.layers[name]

    def __iter__(self):
        return iter(self.layers.values())

    @property
    def overall(self) -> float:
        """Fraction of zeros over all listed kernels."""
        total = sum(r.params for r in self)
        return sum(r.zeros for r in self) / total if total else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "overall": self.overall,
            "layers": {
                r.name: {
                    **dataclasses.asdict(r),
                    "sparsity": r.sparsity,
                    "channel_sparsity": r.channel_sparsity,
                }
                for r in self
            },
        }

    def to_markdown(self) -> str:
        lines = [
            "| layer | type | kernel | structure | sparsity | zero channels |",
            "|---|---|---|---|---:|---:|",
        ]
        for r in self:
            lines.append(
                f"| {r.name} | {r.kind} | {'x'.join(map(str, r.shape))} | {r.structure} "
                f"| {r.sparsity:.4f} | {r.zero_channels}/{r.channels} |"
            )
        lines.append(f"| **overall** | | | | {self.overall:.4f} | |")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_markdown()


def sparsity(model: keras.layers.Layer) -> SparsityReport:
    """Measure the zeros in every prunable kernel of `model` (wrapped or not).

    For wrapped layers the kernel is `kernel * mask`, what the layer computes
    with; stripped or never-pruned models report their plain kernels, so the
    same call checks a model before and after `strip`.
    """
    rows: dict[str, LayerSparsity] = {}
    for layer in model_walk.walk_layers(model):
        if isinstance(layer, PruningWrapper):
            weights = layer.effective_weights()
            inner, axes, structure = layer.layer, layer.output_axes, str(layer.structure)
        elif prunable.prunable_weights(layer) and layer.built:
            layouts = prunable.prunable_weights(layer)
            pairs = [(lay, prunable.variable(layer, lay.attr)) for lay in layouts]
            pairs = [(lay, v) for lay, v in pairs if v is not None]
            weights = [v.numpy() for _, v in pairs]
            inner, axes, structure = layer, [lay.output_axes for lay, _ in pairs], "-"
        else:
            continue
        attrs = [lay.attr for lay in prunable.prunable_weights(inner)]
        for i, (w, ax) in enumerate(zip(weights, axes)):
            w = np.asarray(w)
            out = tuple(a % w.ndim for a in ax)
            other = tuple(a for a in range(w.ndim) if a not in out)
            channel_zero = np.all(w == 0, axis=other)
            name = (inner.name if len(weights) == 1
                    else f"{inner.name}/{attrs[i] if len(attrs) == len(weights) else i}")
            rows[name] = LayerSparsity(
                name=name,
                kind=type(inner).__name__,
                shape=tuple(w.shape),
                params=int(w.size),
                zeros=int(np.count_nonzero(w == 0)),
                zero_channels=int(np.count_nonzero(channel_zero)),
                channels=int(channel_zero.size),
                structure=structure,
            )
    return SparsityReport(rows)
