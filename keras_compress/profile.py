"""`profile(model)`: parameters, multiply-accumulates and activation sizes,
per layer and in total, from the model graph (no data needed).

MACs count the multiply-accumulates of one inference on one example:
Dense and (transposed, depthwise, separable) convolutions, which dominate
every model this library targets; other layers count 0. Activations are the
elements of each layer's output (one example), what a runtime's arena holds
while the tensor is alive. Wrapped layers count as their base layer, so a
pruned model profiles like the model it wraps: `shrink` is what makes the
numbers fall.

Example:

```python
import keras
import keras_compress as kc

model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(8, 3, name="conv"),
                          keras.layers.Flatten(), keras.layers.Dense(10, name="fc")])
report = kc.profile(model)
report["conv"].macs        # 26 * 26 * 8 * 3 * 3 * 1 = 48672
report.total_macs          # 48672 + 5408 * 10
```
"""

from __future__ import annotations

import dataclasses
import math

import keras

from keras_compress import model_walk
from keras_compress._wrapper_base import unwrap

__all__ = ["profile", "Profile", "LayerProfile", "layer_macs"]

L = keras.layers


@dataclasses.dataclass(frozen=True)
class LayerProfile:
    name: str
    kind: str
    params: int
    macs: int
    activations: int  # output elements, one example
    output_shape: tuple


@dataclasses.dataclass
class Profile:
    """Per-layer rows (in graph order) and totals."""

    layers: list[LayerProfile]

    def __getitem__(self, name: str) -> LayerProfile:
        for row in self.layers:
            if row.name == name:
                return row
        raise KeyError(f"No layer named '{name}' in this profile.")

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self.layers)

    @property
    def total_macs(self) -> int:
        return sum(r.macs for r in self.layers)

    @property
    def peak_activations(self) -> int:
        """The largest single layer output (elements): a lower bound of the
        arena a runtime needs for activations."""
        return max((r.activations for r in self.layers), default=0)

    def as_dict(self) -> dict:
        return {"params": self.total_params, "macs": self.total_macs,
                "peak_activations": self.peak_activations,
                "layers": [dataclasses.asdict(r) for r in self.layers]}

    def to_markdown(self) -> str:
        lines = ["| layer | type | params | MACs | output elements |", "|---|---|---:|---:|---:|"]
        lines += [f"| {r.name} | {r.kind} | {r.params:,} | {r.macs:,} | {r.activations:,} |"
                  for r in self.layers]
        lines.append(f"| **total** | | {self.total_params:,} | {self.total_macs:,} | "
                     f"peak {self.peak_activations:,} |")
        return "\n".join(lines)


def _size(shape) -> int:
    return int(math.prod(int(d) for d in shape[1:] if d is not None))


def layer_macs(layer, input_shape, output_shape) -> int:
    """Multiply-accumulates of `layer` for one example, given its input and
    output shapes (batch axis first)."""
    layer = unwrap(layer)
    if isinstance(layer, L.Dense):
        return _size(output_shape) * int(input_shape[-1])
    if isinstance(layer, (L.DepthwiseConv1D, L.DepthwiseConv2D)):
        return _size(output_shape) * math.prod(layer.kernel_size)
    if isinstance(layer, (L.SeparableConv1D, L.SeparableConv2D)):
        spatial = _size(output_shape) // int(output_shape[-1])
        inner = int(input_shape[-1]) * layer.depth_multiplier
        return spatial * inner * (math.prod(layer.kernel_size) + int(output_shape[-1]))
    if isinstance(layer, (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)):
        return _size(input_shape) * math.prod(layer.kernel_size) * int(output_shape[-1])
    if isinstance(layer, (L.Conv1D, L.Conv2D, L.Conv3D)):
        groups = getattr(layer, "groups", 1) or 1
        return _size(output_shape) * math.prod(layer.kernel_size) * int(input_shape[-1]) // groups
    return 0


def profile(model: keras.Model) -> Profile:
    """Parameters, MACs and output elements of every layer of `model` (a
    built Sequential or functional model; nested models are listed layer by
    layer, their names prefixed by the nested model's)."""
    from keras_compress.graph import ModelGraph

    if not model_walk.is_graph_model(model):
        raise model_walk.subclassed_error(model)
    rows: list[LayerProfile] = []
    graph = ModelGraph(model)
    for node in graph.nodes:
        op = node.op
        if node.is_layer and model_walk.is_graph_model(op):
            rows += [dataclasses.replace(r, name=f"{op.name}/{r.name}")
                     for r in profile(op).layers]
            continue
        if not node.is_layer:
            continue
        out_shape = graph.output_shape(op)
        in_shape = graph.input_shape(op)
        base = unwrap(op)
        params = sum(int(math.prod(w.shape)) for w in base.weights)
        rows.append(LayerProfile(op.name, type(base).__name__, params,
                                 layer_macs(op, in_shape, out_shape) if in_shape else 0,
                                 _size(out_shape), out_shape))
    return Profile(rows)
