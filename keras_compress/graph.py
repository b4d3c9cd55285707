"""`ModelGraph`: a Sequential or functional model's graph, read once.

Nodes are the model's operations: layers, nested models, and the `keras.ops`
calls a functional graph may hold (`x + 3.0` in hard-swish, `x[..., 0]`),
each with its producers and consumers. On top of that, **channel dependency
groups** (in the spirit of Torch-Pruning's `DependencyGraph`): the layers whose
output channels must be removed together, and what else each removal touches.

- A source layer (Conv, Dense, a depthwise conv with a depth multiplier)
  produces channels along its last axis.
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

A group whose channels reach a model output, or an op with no channel rule,
is blocked, and says why. The graph reads Keras' node bookkeeping in this one
module, where the public API has no equivalent.

Example:

```python
import keras
from keras_compress.graph import ModelGraph

x = keras.Input((8, 8, 3))
a = keras.layers.Conv2D(4, 3, padding="same", name="a")(x)
b = keras.layers.Conv2D(4, 1, name="b")(x)
y = keras.layers.Add(name="add")([a, b])
y = keras.layers.Conv2D(2, 1, name="head")(keras.layers.ReLU()(y))
graph = ModelGraph(keras.Model(x, y))
[g.source_names for g in graph.channel_groups()]   # [['a', 'b'], ['head']]
graph.consumers(graph.op("a"))                     # [<Add name=add ...>]
```
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

import keras
import numpy as np

from keras_compress import model_walk, registry
from keras_compress._wrapper_base import unwrap

__all__ = ["ModelGraph", "Node", "ChannelGroup", "Use", "rebuild"]

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


@dataclasses.dataclass(eq=False)
class Node:
    """One operation of the graph (a layer, a nested model or a keras.ops call)."""

    op: object
    producers: list["Node"] = dataclasses.field(default_factory=list)
    consumers: list["Node"] = dataclasses.field(default_factory=list)
    is_output: bool = False

    @property
    def name(self) -> str:
        return self.op.name

    @property
    def is_layer(self) -> bool:
        return isinstance(self.op, L.Layer)

    def __repr__(self) -> str:
        return f"Node({self.name}, {type(self.op).__name__})"


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
    def sources(self) -> list[Node]:
        return [u.node for u in self.uses if u.role == "source"]

    @property
    def source_names(self) -> list[str]:
        return [n.name for n in self.sources]


def _channels(tensor) -> int | None:
    shape = getattr(tensor, "shape", None)
    return None if not shape or shape[-1] is None else int(shape[-1])


class ModelGraph:
    """The nodes of one Sequential or functional model (nested models are
    nodes too; `subgraph(node)` reads them), in topological order."""

    def __init__(self, model: keras.Model):
        if not model_walk.is_graph_model(model):
            raise model_walk.subclassed_error(model)
        self.model = model
        self.nodes: list[Node] = []
        self._by_op: dict[int, Node] = {}
        self._outputs: dict[int, list] = {}  # id(op) -> its output KerasTensors
        self._inputs: dict[int, int] = {}  # id(op) -> how many tensors it reads
        self._input_shapes: dict[int, tuple] = {}  # id(op) -> its first input's shape
        if isinstance(model, keras.Sequential):
            previous = None
            shape = tuple(model.inputs[0].shape) if model.built and model.inputs else None
            for layer in model.layers:
                self._input_shapes[id(layer)] = shape
                node = self._add(layer)
                if previous is not None:
                    self._link(previous, node)
                previous = node
                self._inputs[id(layer)] = 1
                try:
                    self._outputs[id(layer)] = keras.tree.flatten(layer.output)
                except (AttributeError, ValueError):  # never called, or called twice
                    self._outputs[id(layer)] = []
                outs = self._outputs[id(layer)]
                shape = tuple(outs[0].shape) if outs else None
            if previous is not None:
                previous.is_output = True
            return
        for depth in sorted(model._nodes_by_depth, reverse=True):
            for keras_node in model._nodes_by_depth[depth]:
                op = keras_node.operation
                if isinstance(op, L.InputLayer):
                    continue
                node = self._add(op)
                self._outputs.setdefault(id(op), []).extend(keras_node.outputs)
                self._inputs[id(op)] = len(keras_node.input_tensors)
                if keras_node.input_tensors:
                    self._input_shapes.setdefault(id(op), tuple(keras_node.input_tensors[0].shape))
                for tensor in keras_node.input_tensors:
                    producer = tensor._keras_history.operation
                    if not isinstance(producer, L.InputLayer):
                        self._link(self._add(producer), node)
        for tensor in keras.tree.flatten(model.outputs):
            self._add(tensor._keras_history.operation).is_output = True

    def _add(self, op) -> Node:
        node = self._by_op.get(id(op))
        if node is None:
            node = self._by_op[id(op)] = Node(op)
            self.nodes.append(node)
        return node

    @staticmethod
    def _link(producer: Node, consumer: Node) -> None:
        if consumer not in producer.consumers:
            producer.consumers.append(consumer)
        if producer not in consumer.producers:
            consumer.producers.append(producer)

    # ------------------------------------------------------------- queries
    def node(self, op) -> Node:
        return self._by_op[id(op)]

    def op(self, name: str):
        for node in self.nodes:
            if node.name == name:
                return node.op
        raise KeyError(f"No operation named '{name}' in model '{self.model.name}'.")

    def consumers(self, op) -> list:
        return [n.op for n in self.node(op).consumers]

    def producers(self, op) -> list:
        return [n.op for n in self.node(op).producers]

    def single_consumer(self, op):
        """The one consumer of `op`'s output, or None (several, none, or the
        output is also a model output)."""
        node = self.node(op)
        if len(node.consumers) != 1 or node.is_output:
            return None
        return node.consumers[0].op

    def input_shape(self, op) -> tuple | None:
        """The shape of `op`'s (first) input in this model, if known."""
        return self._input_shapes.get(id(op))

    def output_shape(self, op) -> tuple:
        """The shape of `op`'s (first) output in this model."""
        return tuple(self._outputs[id(op)][0].shape)

    def subgraph(self, node: Node) -> "ModelGraph":
        return ModelGraph(node.op)

    # ---------------------------------------------------- channel groups
    def channel_groups(self) -> list[ChannelGroup]:
        """One group per set of source layers whose output channels are tied,
        in the order of their first source."""
        parent: dict[int, int] = {}

        def find(key: int) -> int:
            while parent.setdefault(key, key) != key:
                key = parent[key]
            return key

        traces: dict[int, ChannelGroup] = {}
        arrivals: dict[int, set[int]] = {}  # id(join) -> ids of the sources reaching it
        for node in self.nodes:
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
        for node in self.nodes:
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
                if len(reached) < self._inputs.get(id(use.node.op), 1):
                    group.blocked = group.blocked or (
                        f"'{use.node.name}' joins these channels with a tensor no prunable "
                        "layer produces (a model input or an op with no channel rule)")
        return list(merged.values())

    def _is_source(self, node: Node) -> bool:
        return _role(node.op) == "source"

    def _trace(self, source: Node) -> ChannelGroup:
        """Follow `source`'s output channels forward to every layer they reach."""
        channels = _channels(self._outputs[id(source.op)][0]) if self._outputs.get(
            id(source.op)) else None
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
        for node in self.nodes:  # topological order
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
                    self._inputs.get(id(node.op), 2) < 2:
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
            if axis not in (-1,) and axis != len(self._outputs[id(op)][0].shape) - 1:
                return f"'{consumer.name}' concatenates along axis {axis}, not channels"
            offset = 0
            for other in consumer.producers:
                if other is producer:
                    break
                offset += _channels(self._outputs[id(other.op)][0]) or 0
            return "concat", tuple(offset + i for i in indices)
        if isinstance(op, (L.Flatten, L.Reshape)):
            return self._flatten(producer, consumer, indices)
        return (f"'{consumer.name}' ({kind}) has no channel rule: the channels of its "
                "input cannot be followed through it")

    def _flatten(self, producer: Node, consumer: Node, indices):
        """A channels-last Flatten (or Reshape to one axis): channel c of an
        (..., C) input becomes units p * C + c for every position p."""
        src = self._outputs[id(producer.op)][0].shape
        out = self._outputs[id(consumer.op)][0].shape
        if len(out) != 2 or None in src[1:]:
            return f"'{consumer.name}' reshapes to {tuple(out)}: only a flatten is followed"
        positions = int(np.prod(src[1:-1])) if len(src) > 2 else 1
        channels = int(src[-1])
        units = tuple(p * channels + c for p in range(positions) for c in indices)
        return "flatten", units


def groups_by_source(groups: Iterable[ChannelGroup]) -> dict[str, ChannelGroup]:
    """`{source layer name: its group}`."""
    return {name: g for g in groups for name in g.source_names}


Replace = Callable[[keras.layers.Layer], "keras.layers.Layer | None"]
Call = Callable[..., object]


def rebuild(graph: "ModelGraph | keras.Model", replace: Replace | None = None, *,
            call: Call | None = None) -> keras.Model:
    """The one model rebuild under every technique: a new model of the same
    kind (Sequential or functional, input names kept), asking `replace(op)`
    for each node.

    `replace` returns the layer to use instead (carrying its own weights, e.g.
    a wrapper around `model_walk.copy_layer(layer)`), or `None` for a
    weight-equal copy. Operation nodes that are not layers (`keras.ops` calls)
    are asked too, and kept as they are on `None`. Without `call`, nested Sequential/functional models are rebuilt
    the same way, recursively. With `call(new_layer, *args, **kwargs)`, the
    caller decides how each new layer is called (and may add layers around
    it, as QAT does with its activation quantizers); nested models are then
    the caller's `replace` to handle. The result never shares layers or
    variables with the input model.

    Raises:
        ValueError: for subclassed models, whose graph cannot be rebuilt; wrap
            their layers inside the model's `__init__` instead.
    """
    model = graph.model if isinstance(graph, ModelGraph) else graph
    if not model_walk.is_model(model):
        raise TypeError(f"Expected a keras.Model; received {type(model).__name__}.")
    if not model_walk.is_graph_model(model):
        raise model_walk.subclassed_error(model)

    def clone(op):
        new = replace(op) if replace is not None else None
        if new is not None:
            return new
        # A keras.ops call holds no state: kept as it is.
        return model_walk.copy_layer(op) if isinstance(op, L.Layer) else op

    def fresh(t):
        return keras.Input(batch_shape=t.shape, dtype=t.dtype, name=t._keras_history[0].name)

    if isinstance(model, keras.Sequential):
        if call is None:
            return keras.models.clone_model(model, clone_function=clone, recursive=True)
        x = first = fresh(model.inputs[0])
        for layer in model.layers:
            x = call(clone(layer), x)
        # Trace the calls, then give the Sequential fresh copies of the layers
        # they used: each then holds one node (a second one would make
        # `layer.output` ambiguous, e.g. for distillation hints).
        traced = [op for op in keras.Model(first, x).operations
                  if not isinstance(op, L.InputLayer)]
        return keras.Sequential([fresh(model.inputs[0]),
                                 *(model_walk.copy_layer(op) for op in traced)], name=model.name)
    # Fresh inputs keep their names: they become the TFLite signature's.
    inputs = keras.tree.map_structure(fresh, model.input) if model.built else None
    return keras.models.clone_model(model, input_tensors=inputs, clone_function=clone,
                                    call_function=call, recursive=call is None)
