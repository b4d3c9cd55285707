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
from keras_compress.pruning import groups as groups_lib
from keras_compress.pruning import prunable
from keras_compress.pruning.options import (
    check_ranking,
    check_schedule,
    default_schedule,
    parse_structure,
)
from keras_compress.pruning.wrapper import PruningWrapper
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
    target: str = "channels",
    min_channels: int = 1,
    round_to: int = 1,
    max_sparsity: float = 1.0,
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
        structure: "unstructured", "channel" or an N:M pattern such as "2:4"
            (along the kernel's input axis). "channel" prunes whole output
            channels by channel dependency group (`keras_compress.graph`): the
            layers tied by a residual Add share one mask, BatchNormalization
            and depthwise layers after them are masked too, so `shrink` can
            remove the channels for real. A layer whose channels cannot move
            (a model output, an op with no channel rule) is named in a warning
            and left whole.
        ranking: "layer" (every layer reaches the sparsity) or "global" (one
            magnitude ranking over all pruned layers).
        layers: which layers to prune: names, layer classes, or a callable;
            default every prunable layer.
        skip: layers to leave dense, in the same forms as `layers`.
        target: with structure="channel", what the schedule's sparsity counts:
            "channels" (the fraction of each group's channels, or of all with
            ranking="global"), "macs" or "params" (the fraction of the whole
            model's multiply-accumulates or parameters removed, allocated over
            the groups by one global ranking of importance per cost), or
            "macs+params" (the mean of the two fractions: latency and flash
            weigh alike, so the cut falls on neither the high-resolution
            layers nor the wide last layers alone).
        min_channels: with structure="channel", every group keeps at least this
            many channels.
        round_to: with structure="channel", kept channel counts are rounded up
            to a multiple of this (4, 8 or 16 suit SIMD and CMSIS-NN kernels).
        max_sparsity: with structure="channel", no group loses more than this
            fraction of its channels. A MACs or parameter target spends its
            budget where a channel costs most; without a cap it can thin a
            residual stream to `min_channels` (0.5 keeps every group at least
            half as wide).
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
    channel_args = _check_channel_args(parsed, target, min_channels, round_to, max_sparsity)

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
    specs: dict[str, Any] = {}
    if parsed.kind == "channel":
        selected, specs = _channel_groups(model, selected, schedule, ranking, channel_args,
                                          named=target)
    selected_ids = {id(layer) for layer in selected}

    def replace(layer: keras.layers.Layer) -> keras.layers.Layer | None:
        if id(layer) not in selected_ids:
            return None
        wrapper = PruningWrapper(model_walk.copy_layer(layer), **options,
                                 channel_group=specs.get(layer.name))
        if layer.built:
            wrapper.build(model_walk.build_input_shape(layer))
        return wrapper

    return graph.rebuild(model, replace)


def _check_channel_args(parsed, target, min_channels, round_to, max_sparsity) -> dict:
    if parsed.kind != "channel" and (target != "channels" or min_channels != 1
                                     or round_to != 1 or max_sparsity != 1.0):
        raise ValueError("`target`, `min_channels`, `round_to` and `max_sparsity` apply to "
                         "structure='channel' only.")
    if target not in groups_lib.TARGETS:
        raise ValueError(f"`target` must be one of {groups_lib.TARGETS}; received {target!r}.")
    for name, value in (("min_channels", min_channels), ("round_to", round_to)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be an integer >= 1; received {value!r}.")
    if isinstance(max_sparsity, bool) or not isinstance(max_sparsity, (int, float)) \
            or not 0.0 < max_sparsity <= 1.0:
        raise ValueError("`max_sparsity` (the largest fraction of a group's channels removed) "
                         f"must be in (0, 1]; received {max_sparsity!r}.")
    return dict(target=target, min_channels=min_channels, round_to=round_to,
                max_sparsity=float(max_sparsity))


def _channel_groups(model, selected, schedule, ranking, args, named=None):
    """The selected layers that source a removable channel group, with their
    specs; the others are named in a warning, with the reason (a layer that
    only follows its input's channels, a depthwise convolution, is left out
    silently unless `layers=` named it)."""
    specs, refused = groups_lib.plan(model, **args)
    names = {layer.name for layer in selected}
    kept, specs_out = [], {}
    for layer in selected:
        spec = specs.get(layer.name)
        why = refused.get(layer.name)
        if spec is not None:
            missing = [n for n in spec.key.split("+") if n not in names]
            if missing:
                why = (f"it shares its channels with {missing}, which `layers`/`skip` "
                       "leave out")
        elif why is None:
            if named is None or not named(layer):
                continue
            why = (f"{type(layer).__name__} is not a channel source (its channels follow "
                   "its input's)")
        if why:
            warnings.warn(f"Layer '{layer.name}' keeps all its channels: {why}.", stacklevel=3)
            continue
        kept.append(layer)
        specs_out[layer.name] = spec
    if not kept:
        raise ValueError(
            f"Model '{model.name}' has no channel group that can be pruned and removed "
            "(every candidate is named in a warning above, with the reason); prune it "
            "'unstructured' or 'N:M' instead.")
    reach = groups_lib.reachable(list(specs_out.values()))
    shared = args["target"] != "channels" or ranking == "global"
    if shared and schedule.target_sparsity > reach + 1e-9:
        target = args["target"]
        raise ValueError(
            f"The schedule's sparsity {schedule.target_sparsity:g} of the model's {target} "
            f"cannot be reached by channel pruning: at most {reach:.3f} (every prunable group "
            f"down to min_channels={args['min_channels']}"
            + (f" and max_sparsity={args['max_sparsity']:g}" if args["max_sparsity"] < 1 else "")
            + (f", rounded up to a multiple of round_to={args['round_to']}"
               if args["round_to"] > 1 else "")
            + "). Lower the target" + (" or round_to" if args["round_to"] > 1 else "")
            + (", or raise max_sparsity." if args["max_sparsity"] < 1 else "."))
    return kept, specs_out


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
