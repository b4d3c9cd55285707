"""Channel dependency groups of a `ModelGraph`: which layers' output channels
must be removed together, and what each removal touches.

- A source layer (Conv, Dense) produces channels along its last axis.
- BatchNormalization, depthwise convs (multiplier 1), pooling, activations,
  padding, cropping, dropout, upsampling and identity layers pass a channel
  through to their output.
- Elementwise joins (Add, Subtract, Multiply, Average, Maximum, Minimum, and
  their `keras.ops` twins) tie their inputs' channels: the sources feeding
  them form one group.
- Concatenate on the channel axis maps each input's channels to an index
  range of its output.
- Flatten (and a Reshape to one axis) maps a channel to the units it spreads
  over in channels-last order.
- A consumer with weights (Conv, Dense) loses those input channels.

A group whose channels reach a model output, an op with no channel rule, or
a layer that would read them as a nonzero constant (after a sigmoid, or
`x + 3.0`) is blocked, and says why.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING

import keras
import numpy as np

from keras_compress import registry
from keras_compress._wrapper_base import unwrap

if TYPE_CHECKING:
    from keras_compress.graph import Node

__all__ = ["ChannelGroup", "Use", "find", "groups_by_source", "keeps_zero", "layer_keeps_zero"]

L = keras.layers


def _role(op) -> str | None:
    rule = registry.rule_for(unwrap(op)) if isinstance(op, L.Layer) else None
    return rule.channels if rule else None


_PROBES = np.array([[0.0, 1.0, -2.0], [0.0, 5.0, 3.0]], "float32")


def keeps_zero(fn) -> bool:
    """Whether an elementwise activation maps 0 to exactly 0 on its own (a
    softmax, which mixes channels, or a sigmoid, 0.5 at 0, does not)."""
    if fn is None:
        return True
    try:
        out = keras.ops.convert_to_numpy(fn(keras.ops.convert_to_tensor(_PROBES)))
    except Exception:  # noqa: BLE001 - an activation that cannot run on a probe
        return False
    return bool(np.all(out[:, 0] == 0.0))


def layer_keeps_zero(layer) -> bool:
    """Whether `layer` outputs exactly 0 in a channel whose input is all
    zeros (its weights for that channel masked, as channel pruning does)."""
    base = unwrap(layer)
    if isinstance(base, L.Softmax):
        return False
    if isinstance(base, L.ReLU):
        return float(base.threshold) == 0.0 or float(base.negative_slope) == 0.0
    return keeps_zero(getattr(base, "activation", None))


@dataclasses.dataclass(frozen=True)
class Use:
    """How a channel group touches one layer: `role` is "source" (its output
    channels are removed), "through" (its per-channel state shrinks with them,
    e.g. BatchNormalization), "input" (a consumer loses those input channels)
    or "join" (an elementwise op tying its inputs). `indices` are the
    positions, in that layer's channel axis (or units, after a Flatten), where
    the group's channels sit, in the source's channel order."""

    node: Node
    role: str
    indices: tuple[int, ...]


@dataclasses.dataclass
class ChannelGroup:
    """Layers whose output channels must be removed together, the same
    indices in each, and every layer the removal touches."""

    channels: int
    uses: list[Use] = dataclasses.field(default_factory=list)
    blocked: str | None = None  # why these channels cannot be removed

    @property
    def sources(self) -> list:
        return [u.node for u in self.uses if u.role == "source"]

    @property
    def source_names(self) -> list[str]:
        return [n.name for n in self.sources]


def _channels(tensor) -> int | None:
    shape = getattr(tensor, "shape", None)
    return None if not shape or shape[-1] is None else int(shape[-1])


def find(graph) -> list[ChannelGroup]:
    """The channel groups of `graph` (a `keras_compress.graph.ModelGraph`)."""
    return _Tracer(graph).groups()


class _Tracer:
    def __init__(self, graph):
        self.graph = graph

    def groups(self) -> list[ChannelGroup]:
        parent: dict[int, int] = {}

        def find(key: int) -> int:
            while parent.setdefault(key, key) != key:
                key = parent[key]
            return key

        traces: dict[int, ChannelGroup] = {}
        arrivals: dict[int, set[int]] = {}  # id(join) -> ids of the sources reaching it
        for node in self.graph.nodes:
            if self._is_source(node):
                traces[id(node)] = self._trace(node)
        # Sources meeting at a join are one group.
        for key, group in traces.items():
            for use in group.uses:
                if use.role == "join":
                    arrivals.setdefault(id(use.node), set()).add(key)
        for keys in arrivals.values():
            first, *rest = sorted(keys)
            for other in rest:
                parent[find(other)] = find(first)
        merged: dict[int, ChannelGroup] = {}
        for node in self.graph.nodes:
            if id(node) not in traces:
                continue
            group = traces[id(node)]
            root = find(id(node))
            if root not in merged:
                merged[root] = ChannelGroup(group.channels)
            target = merged[root]
            if group.channels != target.channels:
                target.blocked = target.blocked or (
                    f"sources {target.source_names + [node.name]} meet at an elementwise op "
                    "with different channel counts")
            seen = {(id(u.node), u.role) for u in target.uses}
            target.uses += [u for u in group.uses if (id(u.node), u.role) not in seen]
            target.blocked = target.blocked or group.blocked
        for group in merged.values():
            for use in group.uses:
                if use.role != "join":
                    continue
                reached = {id(p) for p in use.node.producers if any(
                    u.node is p for u in group.uses)}
                if len(reached) < self.graph.input_count(use.node.op):
                    group.blocked = group.blocked or (
                        f"'{use.node.name}' joins these channels with a tensor no prunable "
                        "layer produces (a model input or an op with no channel rule)")
        return list(merged.values())

    def _is_source(self, node: Node) -> bool:
        return _role(node.op) == "source"

    def _trace(self, source: Node) -> ChannelGroup:
        """Follow `source`'s output channels forward to every layer they reach."""
        outputs = self.graph.outputs_of(source.op)
        channels = _channels(outputs[0]) if outputs else None
        group = ChannelGroup(channels or 0)
        group.uses.append(Use(source, "source", tuple(range(group.channels))))
        if not channels:
            group.blocked = f"'{source.name}' has no known output channel count"
            return group
        frontier = [(source, tuple(range(channels)))]
        visited: set[tuple[int, tuple[int, ...]]] = set()
        while frontier:
            node, indices = frontier.pop()
            if (id(node), indices) in visited:  # reached again by another path
                continue
            visited.add((id(node), indices))
            if node.is_output:
                group.blocked = group.blocked or (
                    f"'{node.name}' is a model output: its channels are the model's")
            for consumer in node.consumers:
                step = self._step(node, consumer, indices)
                if isinstance(step, str):
                    group.blocked = group.blocked or step
                    continue
                role, out = step
                group.uses.append(Use(consumer, role, out))
                if role != "input":
                    frontier.append((consumer, out))
        group.blocked = group.blocked or self._nonzero_reader(group)
        return group

    @staticmethod
    def _mixes(fn) -> bool:
        """Whether an activation's output at one channel depends on others (softmax)."""
        try:
            a = keras.ops.convert_to_numpy(fn(keras.ops.convert_to_tensor(_PROBES)))
        except Exception:  # noqa: BLE001
            return True
        return bool(a[0, 0] != a[1, 0])

    def _nonzero_reader(self, group: "ChannelGroup") -> str | None:
        """Why removing the group would change the model: a layer that reads
        the group's channels while they hold a nonzero constant (a sigmoid
        maps the pruned zeros to 0.5; `x + 3.0` adds 3), or None. Zeros
        survive BatchNormalization and depthwise convolutions (their
        parameters for the channel are masked too), pooling, zero-keeping
        activations, and a product with a zero factor."""
        inside = {id(u.node) for u in group.uses if u.role != "input"}
        zero: dict[int, bool] = {}
        why: dict[int, str] = {}
        for node in self.graph.nodes:  # topological order
            if id(node) not in inside:
                continue
            reached = [p for p in node.producers if id(p) in zero]
            kind = type(node.op).__name__
            if not reached:  # a source
                zero[id(node)] = layer_keeps_zero(node.op)
                why[id(node)] = "its activation maps 0 to a nonzero value"
                continue
            arriving = [zero[id(p)] for p in reached]
            if kind in ("Multiply", "Divide", "TrueDivide"):
                zero[id(node)] = any(arriving)
            elif not node.is_layer and kind in registry.ELEMENTWISE_OPS and \
                    self.graph.input_count(node.op) < 2:
                zero[id(node)] = False  # `x + 3.0`: a constant operand
                why[id(node)] = "it adds a constant"
            else:
                zero[id(node)] = all(arriving) and (not node.is_layer or layer_keeps_zero(node.op))
                why[id(node)] = why.get(id(reached[0]), "") if not all(arriving) else (
                    "its activation maps 0 to a nonzero value")
        for use in group.uses:
            if use.role != "input":
                continue
            for producer in use.node.producers:
                if id(producer) in zero and not zero[id(producer)]:
                    return (f"'{producer.name}' hands '{use.node.name}' a nonzero constant in "
                            f"the removed channels ({why.get(id(producer)) or 'not zero'})")
        return None

    def _step(self, producer: Node, consumer: Node, indices: tuple[int, ...]):
        """(role, indices in the consumer's output) of `consumer` reading
        `producer`'s channels at `indices`, or why the channels stop there."""
        op = consumer.op
        kind = type(op).__name__
        role = _role(op)
        if role == "depthwise":
            if int(getattr(unwrap(op), "depth_multiplier", 1)) == 1:
                return "through", indices
            return (f"'{consumer.name}' multiplies each channel ({kind} with a depth "
                    "multiplier): its outputs cannot follow a removed input channel")
        if role == "source":
            return "input", indices
        if role == "through":
            base = unwrap(op)
            if isinstance(base, L.Softmax) or (
                    isinstance(base, L.Activation) and self._mixes(base.activation)):
                return f"'{consumer.name}' ({kind}) mixes the channels of its input"
            return "through", indices
        if role == "join" or (not consumer.is_layer and kind in registry.ELEMENTWISE_OPS):
            return "join", indices
        if isinstance(op, L.Concatenate):
            axis = op.axis
            if axis not in (-1,) and axis != len(self.graph.outputs_of(op)[0].shape) - 1:
                return f"'{consumer.name}' concatenates along axis {axis}, not channels"
            offset = 0
            for other in consumer.producers:
                if other is producer:
                    break
                offset += _channels(self.graph.outputs_of(other.op)[0]) or 0
            return "concat", tuple(offset + i for i in indices)
        if isinstance(op, (L.Flatten, L.Reshape)):
            return self._flatten(producer, consumer, indices)
        return (f"'{consumer.name}' ({kind}) has no channel rule: the channels of its "
                "input cannot be followed through it")

    def _flatten(self, producer: Node, consumer: Node, indices):
        """A channels-last Flatten (or Reshape to one axis): channel c of an
        (..., C) input becomes units p * C + c for every position p."""
        src = self.graph.outputs_of(producer.op)[0].shape
        out = self.graph.outputs_of(consumer.op)[0].shape
        if len(out) != 2 or None in src[1:]:
            return f"'{consumer.name}' reshapes to {tuple(out)}: only a flatten is followed"
        positions = int(np.prod(src[1:-1])) if len(src) > 2 else 1
        channels = int(src[-1])
        units = tuple(p * channels + c for p in range(positions) for c in indices)
        return "flatten", units


def groups_by_source(groups: Iterable[ChannelGroup]) -> dict[str, ChannelGroup]:
    """`{source layer name: its group}`."""
    return {name: g for g in groups for name in g.source_names}
