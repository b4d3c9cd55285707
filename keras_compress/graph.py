"""`ModelGraph`: a Sequential or functional model's graph, read once.

Nodes are the model's operations: layers, nested models, and the `keras.ops`
calls a functional graph may hold (`x + 3.0` in hard-swish, `x[..., 0]`),
each with its producers and consumers; on top of that, **channel dependency
groups** (`channel_groups()`, computed by `keras_compress.channel_groups` in the
spirit of Torch-Pruning's `DependencyGraph`): the layers whose output channels
must be removed together, and what else each removal touches. `rebuild` is the
one model rebuild every technique goes through. The graph reads Keras' node
bookkeeping in this one module, where the public API has no equivalent.

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
from collections.abc import Callable

import keras

from keras_compress import channel_groups as channel_groups_lib
from keras_compress import model_walk
from keras_compress.channel_groups import ChannelGroup, Use, groups_by_source  # noqa: F401

__all__ = ["ModelGraph", "Node", "ChannelGroup", "Use", "rebuild"]

L = keras.layers


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
    def outputs_of(self, op) -> list:
        """The output tensors of `op` in this model."""
        return self._outputs.get(id(op), [])

    def input_count(self, op) -> int:
        """How many tensors `op` reads in this model."""
        return self._inputs.get(id(op), 1)

    def channel_groups(self) -> list[ChannelGroup]:
        """One group per set of source layers whose output channels are tied,
        in the order of their first source (`keras_compress.channel_groups`)."""
        return channel_groups_lib.find(self)


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
