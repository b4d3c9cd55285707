"""Channel pruning by dependency group: which layers prune their output
channels together, what else each removed channel touches, what it costs,
and which channels go at a given sparsity.

`plan(model)` reads the model graph's channel groups (`keras_compress.graph`)
and gives each source layer of a removable group a `ChannelSpec`: the group's
key (its sources' names), the layers after it whose per-channel parameters
are masked with it (BatchNormalization, a depthwise convolution's bias), and
the MACs and parameters one channel of the group costs. Sources of blocked
groups are returned with the reason, to be named in a warning and left whole.

`select` picks the channels to keep. Importance of a channel is the sum over
the group's sources of its squared kernel weights (the L2 criterion of
Li et al. 2017, summed over the group as Torch-Pruning's DepGraph does).
With `ranking="layer"` and `target="channels"` every group keeps the same
fraction; otherwise one global ranking of all groups' channels, each score
divided by its group's mean (so layers of different scales compare) and by
the group's cost per channel relative to the mean cost (so a MACs or
parameter budget is met by the cheapest importance), removes channels until
the budget is spent. "macs+params" counts a part's share of the model's MACs
plus its share of the parameters: compute (latency) and flash weigh alike,
so neither the high-resolution layers (most MACs) nor the wide last ones
(most parameters) alone carry the cut. `min_channels` bounds every group;
with `round_to` a group loses a block at a time (its least important
channels down to the next multiple), so the budget counts exactly what the
rounded counts remove.
"""

from __future__ import annotations

import dataclasses
import heapq
import math

import keras
import numpy as np

from keras_compress import model_walk
from keras_compress._wrapper_base import unwrap
from keras_compress.graph import ModelGraph
from keras_compress.profile import layer_macs

__all__ = ["ChannelSpec", "plan", "select", "TARGETS"]

L = keras.layers
TARGETS = ("channels", "macs", "params", "macs+params")


@dataclasses.dataclass(frozen=True)
class ChannelSpec:
    """A source layer's place in its channel group (serialized in the
    wrapper's config, so a saved model resumes with its groups)."""

    key: str
    channels: int
    followers: tuple = ()  # ((layer name, first channel index), ...)
    macs: float = 0.0  # per channel of the group, counted linearly (for the ranking)
    params: float = 0.0
    # ((layer, side, share, MACs, params), ...): each layer the group's channels
    # touch, on which side ("out": a source, "in": a consumer, "both": a
    # depthwise or BatchNormalization), the fraction of it one channel is.
    touches: tuple = ()
    total_macs: float = 0.0  # of the whole model, for a MACs target
    total_params: float = 0.0
    target: str = "channels"
    min_channels: int = 1
    round_to: int = 1
    max_sparsity: float = 1.0  # the largest fraction of the group's channels removed

    def measure(self, macs: float, params: float) -> float:
        """What `target` counts of a part with these MACs and parameters:
        the one it names, or for "macs+params" the part's share of the
        model's MACs plus its share of the parameters (the model counts 2)."""
        if self.target == "macs+params":
            return ((macs / self.total_macs if self.total_macs else 0.0)
                    + (params / self.total_params if self.total_params else 0.0))
        return {"macs": macs, "params": params}.get(self.target, 0.0)

    def cost(self) -> float:
        return 1.0 if self.target == "channels" else self.measure(self.macs, self.params)

    def total(self) -> float:
        return self.measure(self.total_macs, self.total_params)

    def get_config(self) -> dict:
        config = dataclasses.asdict(self)
        config["followers"] = [list(f) for f in self.followers]
        config["touches"] = [list(t) for t in self.touches]
        return config

    @classmethod
    def from_config(cls, config: dict) -> "ChannelSpec":
        config = dict(config)
        config["followers"] = tuple(tuple(f) for f in config.get("followers", ()))
        config["touches"] = tuple(tuple(t) for t in config.get("touches", ()))
        return cls(**config)


def _params(layer) -> int:
    return sum(int(math.prod(w.shape)) for w in unwrap(layer).weights)


def plan(model: keras.Model, *, target: str = "channels", min_channels: int = 1,
         round_to: int = 1, max_sparsity: float = 1.0
         ) -> tuple[dict[str, ChannelSpec], dict[str, str]]:
    """({source layer name: its spec}, {source layer name: why it stays
    whole}) over `model` and the Sequential/functional models nested in it."""
    specs: dict[str, ChannelSpec] = {}
    refused: dict[str, str] = {}
    from keras_compress.profile import profile

    totals = profile(model)
    _plan_level(ModelGraph(model), specs, refused,
                dict(target=target, min_channels=min_channels, round_to=round_to,
                     max_sparsity=float(max_sparsity), total_macs=float(totals.total_macs),
                     total_params=float(totals.total_params)))
    return specs, refused


def _plan_level(graph: ModelGraph, specs, refused, common: dict) -> None:
    for node in graph.nodes:
        if node.is_layer and model_walk.is_graph_model(node.op):
            _plan_level(ModelGraph(node.op), specs, refused, common)
    for group in graph.channel_groups():
        names = [unwrap(n.op).name for n in group.sources]
        # A registered custom source is masked by group like the others;
        # `shrink` leaves its channels (it cannot rewrite an unknown config).
        why = group.blocked
        followers, touches, macs, params = [], [], 0.0, 0.0
        for use in group.uses if not why else ():
            op = use.node.op
            weights = unwrap(op).weights if use.node.is_layer else []
            if use.role == "through" and weights:
                first = use.indices[0]
                if tuple(use.indices) != tuple(range(first, first + group.channels)):
                    why = (f"'{use.node.name}' holds per-channel parameters after a "
                           "reshape of these channels")
                    break
                followers.append((unwrap(op).name, int(first)))
            if use.role in ("source", "through", "input") and use.node.is_layer:
                share = _share(graph, use, group.channels)
                in_shape, out_shape = graph.input_shape(op), graph.output_shape(op)
                layer_cost = float(layer_macs(op, in_shape, out_shape) if in_shape else 0)
                macs += share * layer_cost
                params += share * _params(op)
                side = {"source": "out", "input": "in"}.get(use.role, "both")
                touches.append((unwrap(op).name, side, share, layer_cost, float(_params(op))))
        if why:
            for name in names:
                refused[name] = why
            continue
        spec = ChannelSpec("+".join(sorted(names)), group.channels, tuple(followers),
                           macs, params, tuple(touches), **common)
        for name in names:
            specs[name] = spec


def _share(graph: ModelGraph, use, channels: int) -> float:
    """The fraction of `use`'s layer one channel of the group accounts for:
    one output channel of a source or depthwise layer, the units one channel
    feeds in a consumer (all of them after a Flatten)."""
    op = use.node.op
    if use.role == "input":
        width = graph.input_shape(op)[-1] if graph.input_shape(op) else None
        return (len(use.indices) / channels) / width if width else 0.0
    width = graph.output_shape(op)[-1]
    return 1.0 / width if width else 0.0


def importance(wrappers) -> np.ndarray:
    """Per channel of a group: the sum over its sources of the squared
    (masked) kernel weights feeding that channel."""
    total = None
    for wrapper in wrappers:
        for weight, axes in zip(wrapper.effective_weights(), wrapper.output_axes):
            axis = axes[0] % weight.ndim
            per = np.sum(np.square(np.moveaxis(weight, axis, -1).reshape(
                -1, weight.shape[axis])), axis=0, dtype=np.float64)
            total = per if total is None else total + per
    return total


def _kept(spec: ChannelSpec, keep: int) -> int:
    """`keep` channels of the group, raised to what `min_channels` and
    `max_sparsity` allow and rounded up to a multiple of `round_to`."""
    least = math.ceil(round(spec.channels * (1.0 - spec.max_sparsity), 6))
    keep = max(keep, least, spec.min_channels, 1)
    if spec.round_to > 1:
        keep = math.ceil(keep / spec.round_to) * spec.round_to
    return min(keep, spec.channels)


def select(groups: list[tuple[ChannelSpec, np.ndarray]], sparsity: float,
           ranking: str) -> list[np.ndarray]:
    """The kept-channel masks (1 kept, 0 removed) of `groups` ((spec,
    importance) pairs) at `sparsity`: the fraction of channels (`target`
    "channels"), or of the whole model's MACs or parameters, to remove."""
    spec0 = groups[0][0]
    if ranking == "layer" and spec0.target == "channels":
        masks = []
        for spec, scores in groups:
            keep = _kept(spec, spec.channels - int(round(sparsity * spec.channels)))
            mask = np.zeros(spec.channels, np.float32)
            mask[np.argsort(-scores, kind="stable")[:keep]] = 1.0
            masks.append(mask)
        return masks
    costs = [spec.cost() for spec, _ in groups]
    mean_cost = float(np.mean(costs)) or 1.0
    # Per group, its channels from least to most important (score over the
    # group's mean score and relative cost); removed a block at a time, the
    # block taking the group to its next allowed count (a multiple of
    # `round_to`), so the budget counts what rounding will really remove.
    values, orders = [], []
    for spec, scores in groups:
        scale = float(np.mean(scores)) or 1.0
        value = np.asarray(scores, np.float64) / scale / (spec.cost() / mean_cost or 1.0)
        values.append(value)
        orders.append(np.argsort(value, kind="stable"))
    removed = [0] * len(groups)
    floor = [_kept(spec, 1) for spec, _ in groups]

    def next_block(g):
        """(value, group, first channel, channels) of group g's next removal."""
        spec = groups[g][0]
        keep = spec.channels - removed[g]
        lower = max((keep - 1) // spec.round_to * spec.round_to, floor[g])
        if lower >= keep:
            return None
        block = orders[g][removed[g]: removed[g] + keep - lower]
        return float(np.mean(values[g][block])), g, int(block[0]), block

    heap = [b for b in map(next_block, range(len(groups))) if b is not None]
    heapq.heapify(heap)
    budget = _Budget([spec for spec, _ in groups])
    goal = sparsity * budget.whole
    alive = [np.ones(spec.channels, np.float32) for spec, _ in groups]
    while heap and budget.spent + 1e-9 < goal:
        _, g, _, block = heapq.heappop(heap)
        for c in block:
            alive[g][c] = 0.0
            removed[g] += 1
            budget.remove(g)
        following = next_block(g)
        if following is not None:
            heapq.heappush(heap, following)
    return alive


class _Budget:
    """What removing channels saves, exactly: a layer's MACs (or parameters)
    scale with the kept fraction of its input and of its output channels, so
    a channel removed on both sides of a layer saves less there than alone."""

    def __init__(self, specs: list[ChannelSpec]):
        self.specs = specs
        self.target = specs[0].target
        self.fraction: dict[str, list[float]] = {}  # layer -> [kept in, kept out]
        self.spent = 0.0
        if self.target == "channels":
            self.whole = float(sum(s.channels for s in specs))
        else:
            self.whole = specs[0].total()

    def remove(self, g: int) -> None:
        if self.target == "channels":
            self.spent += 1.0
            return
        spec = self.specs[g]
        for name, side, share, macs, params in spec.touches:
            amount = spec.measure(macs, params)
            kept = self.fraction.setdefault(name, [1.0, 1.0])
            if side == "out":
                self.spent += amount * share * kept[0]
                kept[1] -= share
            elif side == "in":
                self.spent += amount * share * kept[1]
                kept[0] -= share
            else:
                self.spent += amount * share
                kept[1] -= share


def reachable(specs: list[ChannelSpec]) -> float:
    """The largest removable fraction of the target quantity: every group
    down to what `min_channels` and `max_sparsity` allow."""
    groups = list({s.key: s for s in specs}.values())
    if not groups:
        return 0.0
    budget = _Budget(groups)
    for g, spec in enumerate(groups):
        for _ in range(spec.channels - _kept(spec, 1)):
            budget.remove(g)
    return budget.spent / budget.whole if budget.whole else 0.0


class _ChannelKeep:
    """A variable constraint: the layer's own constraint (if any), then zero
    the channels the groups' masks remove. `parts` are (channel mask
    variable, first channel) pairs; not serialized: the `PruningCallback`
    installs it when training begins."""

    def __init__(self, parts, width: int, inner=None):
        self.parts, self.width, self.inner = list(parts), int(width), inner

    def keep(self):
        removed = 0.0
        for mask, first in self.parts:
            count = int(mask.shape[0])
            removed = removed + keras.ops.pad(1.0 - keras.ops.convert_to_tensor(mask),
                                              [[first, self.width - first - count]])
        return 1.0 - removed

    def __call__(self, value):
        if self.inner is not None:
            value = self.inner(value)
        return value * keras.ops.cast(self.keep(), value.dtype)


def _per_channel_variables(layer) -> list:
    """The variables of a follower that must hold zeros in removed channels
    for them to stay zero: BatchNormalization's scale and offset, a depthwise
    convolution's bias."""
    if isinstance(layer, L.BatchNormalization):
        return [v for v in (layer.gamma if layer.scale else None,
                            layer.beta if layer.center else None) if v is not None]
    if isinstance(layer, (L.DepthwiseConv1D, L.DepthwiseConv2D)) and layer.use_bias:
        return [layer.bias]
    return []


def mask_followers(model, wrappers) -> None:
    """Mask the followers of the channel-group `wrappers` in `model` (pass
    them all: a follower after a Concatenate takes several groups' masks) with
    their groups' channel masks: install the constraint (so every optimizer
    step keeps the removed channels at zero) and zero them now."""
    ids = {id(w) for w in wrappers}
    for container in _outermost_graphs(model):
        inside = [w for w in model_walk.walk_layers(container) if id(w) in ids]
        if inside:
            _mask_in(container, inside)


def _outermost_graphs(layer):
    """The outermost Sequential/functional models in `layer` (a Distiller's
    student and teacher, whose layer names may repeat)."""
    if model_walk.is_graph_model(layer):
        yield layer
        return
    for child in getattr(layer, "_layers", []):
        yield from _outermost_graphs(child)


def _mask_in(container, wrappers) -> None:
    from keras_compress.quantization.wrapper import QuantizeWrapper

    by_name = {}
    for layer in model_walk.walk_layers(container):
        by_name.setdefault(unwrap(layer).name, unwrap(layer))
        if isinstance(layer, QuantizeWrapper) and layer.batchnorm is not None:
            by_name.setdefault(layer.batchnorm.name, layer.batchnorm)  # folded into QAT
    parts: dict[str, list] = {}
    done = set()
    for wrapper in wrappers:
        spec = wrapper.channel_group
        if spec is None or not wrapper.built or spec.key in done:
            continue
        done.add(spec.key)
        for name, first in spec.followers:
            parts.setdefault(name, []).append((wrapper.channel_mask, int(first)))
    for name, pieces in parts.items():
        layer = by_name.get(name)
        if layer is None or not layer.built:
            continue
        for var in _per_channel_variables(layer):
            inner = var.constraint.inner if isinstance(var.constraint, _ChannelKeep) \
                else var.constraint
            var.constraint = _ChannelKeep(pieces, var.shape[-1], inner)
            var.assign(var.constraint(var))
