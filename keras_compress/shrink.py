"""`shrink(model)`: remove pruned channels for real.

Channel pruning during `fit` (`kc.prune(model, structure="channel")`) masks
whole channel dependency groups (`keras_compress.graph`), so the masked
channels carry exact zeros from their sources to every layer reading them.
`shrink` finds those channels and returns a smaller plain Keras model without
them: fewer filters or units in each source, the same indices gone from
BatchNormalization parameters and statistics, depthwise kernels, PReLU
slopes, and the next layers' input channels (Dense units after a Flatten
included). The result computes what the masked model computed, with fewer
weights, MACs and activation bytes, on every runtime.

A channel is removed only when removing it is exact: every source of its
group outputs zero there (kernel slice and bias zero, an activation that
keeps zero) and each layer it passes through keeps it zero. Groups the graph
blocks (a model output, an op with no channel rule) stay whole. Nested
Sequential/functional models are shrunk inside; their outputs keep their
channels.

Example:

```python
import keras
import numpy as np
import keras_compress as kc

model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(6, name="hidden"),
                          keras.layers.ReLU(), keras.layers.Dense(2, name="head")])
kernel, bias = model.get_layer("hidden").get_weights()
kernel[:, :4] = 0.0      # four pruned channels: zero kernel columns and bias
model.get_layer("hidden").set_weights([kernel, np.zeros(6, "float32")])
small = kc.shrink(model)
small.get_layer("hidden").units   # 2
```
"""

from __future__ import annotations

import keras
import numpy as np

from keras_compress import graph as graph_lib
from keras_compress import model_walk, registry
from keras_compress._wrapper_base import CompressionWrapper
from keras_compress.graph import ChannelGroup, ModelGraph

__all__ = ["shrink"]

L = keras.layers
_SEPARABLE = (L.SeparableConv1D, L.SeparableConv2D)
# Per-channel vectors that lose the removed channels (last axis).
_PER_CHANNEL = ("bias", "gamma", "beta", "moving_mean", "moving_variance", "alpha")


def shrink(model: keras.Model, *, min_channels: int = 1, check: bool = True) -> keras.Model:
    """A smaller plain copy of `model` without the channels pruning zeroed.

    Args:
        model: a Sequential or functional model, channel-pruned (wrapped by
            `prune(..., structure="channel")`, or already stripped). Pruning
            wrappers are stripped first; QAT wrappers are refused (shrink
            before `quantize`).
        min_channels: each group keeps at least this many channels.
        check: run both models on random inputs and raise if their outputs
            differ by more than 1e-5 (relative to the output's scale).

    Raises:
        ValueError: a subclassed model, a QAT-wrapped model, or (with `check`)
            a shrunk model whose outputs differ, naming the group.
    """
    from keras_compress.quantization.wrapper import QuantizeWrapper
    from keras_compress.strip import strip

    if not model_walk.is_model(model):
        raise TypeError(f"shrink expects a keras.Model; received {type(model).__name__}.")
    if not model_walk.is_graph_model(model):
        raise model_walk.subclassed_error(model)
    quantized = [l.name for l in model_walk.walk_layers(model) if isinstance(l, QuantizeWrapper)]
    if quantized:
        raise ValueError(f"Model '{model.name}' is QAT-wrapped ({quantized[0]}); shrink the "
                         "pruned model before quantize(): prune -> shrink -> quantize.")
    if any(isinstance(l, CompressionWrapper) for l in model_walk.walk_layers(model)):
        model = strip(model)
    small = _shrink_level(model, int(min_channels))
    if check:
        _check_same(model, small)
    return small


def removable(graph: ModelGraph, group: ChannelGroup) -> list[int]:
    """The group's channels every source outputs as exact zeros, which stay
    zero through the group's layers (sorted)."""
    dead = np.ones(group.channels, bool)
    for use in group.uses:
        layer = use.node.op
        if use.role == "source":
            dead &= _zero_outputs(layer, group.channels)
        elif use.role == "through":
            per = len(use.indices) // group.channels
            if per == 1:
                dead &= _keeps_zero(layer, use.indices)
    return [int(c) for c in np.flatnonzero(dead)]


def _zero_outputs(layer, channels: int) -> np.ndarray:
    rule = registry.rule_for(layer)
    if rule is None or rule.width is None or not rule.kernels:
        return np.zeros(channels, bool)  # a custom source: its config cannot shrink
    layout = rule.kernels[0]
    kernel = np.asarray(getattr(layer, layout.attr).numpy())
    axis = layout.output_axes[0] % kernel.ndim
    zero = np.all(np.moveaxis(kernel, axis, -1).reshape(-1, kernel.shape[axis]) == 0, axis=0)
    if getattr(layer, "use_bias", False) and getattr(layer, "bias", None) is not None:
        zero &= np.asarray(layer.bias.numpy()) == 0
    return zero


def _keeps_zero(layer, indices) -> np.ndarray:
    """Per channel of `indices` in `layer`'s channel axis: whether an input of
    zeros there gives an output of exact zeros."""
    idx = list(indices)
    if isinstance(layer, L.BatchNormalization):
        gamma = layer.gamma.numpy()[idx] if layer.scale else 1.0
        beta = layer.beta.numpy()[idx] if layer.center else 0.0
        out = beta - gamma * layer.moving_mean.numpy()[idx] / np.sqrt(
            layer.moving_variance.numpy()[idx] + layer.epsilon)
        return np.broadcast_to(out == 0, (len(idx),))
    if isinstance(layer, (L.DepthwiseConv1D, L.DepthwiseConv2D)) and layer.use_bias:
        return layer.bias.numpy()[idx] == 0
    return np.ones(len(idx), bool)


def _shrink_level(model: keras.Model, min_channels: int) -> keras.Model:
    out_keep: dict[str, np.ndarray] = {}   # layer -> kept indices of its channel axis
    in_drop: dict[str, set[int]] = {}      # layer -> removed input positions
    flattened: set[str] = set()            # Reshapes whose input loses channels
    _plan(ModelGraph(model), min_channels, out_keep, in_drop, flattened)

    def replace(layer):
        if layer.name in out_keep or layer.name in in_drop:
            return _narrower(layer, len(out_keep.get(layer.name, ())))
        if isinstance(layer, L.Reshape) and layer.name in flattened:
            # A Reshape to one fixed size, which the graph follows as a flatten.
            return L.Reshape((-1,), name=layer.name)
        return None

    small = graph_lib.rebuild(model, replace)  # recursive: nested layers are asked too
    new = {layer.name: layer for layer in model_walk.iter_layers(small)}
    for layer in model_walk.iter_layers(model):
        if layer.name in out_keep or layer.name in in_drop:
            new[layer.name].set_weights(_sliced(layer, out_keep.get(layer.name),
                                                sorted(in_drop.get(layer.name, ()))))
    return small


def _plan(graph: ModelGraph, min_channels: int, out_keep: dict, in_drop: dict,
          flattened: set) -> None:
    """Which channels go, per layer, in `graph` and the models nested in it
    (each nested model's outputs keep their channels)."""
    for node in graph.nodes:
        if node.is_layer and model_walk.is_graph_model(node.op):
            _plan(ModelGraph(node.op), min_channels, out_keep, in_drop, flattened)
    for group in graph.channel_groups():
        if group.blocked or not group.channels:
            continue
        dead = removable(graph, group)
        dead = dead[:max(group.channels - max(min_channels, 1), 0)]
        if not dead:
            continue
        for use in group.uses:
            name = use.node.name
            gone = _positions(use, dead, group.channels)
            if use.role in ("source", "through"):
                keep = out_keep.get(name, np.arange(graph.output_shape(use.node.op)[-1]))
                out_keep[name] = np.array([i for i in keep if i not in gone])
            elif use.role == "input":
                in_drop.setdefault(name, set()).update(gone)
            elif use.role == "flatten":
                flattened.add(name)


def _positions(use, dead: list[int], channels: int) -> set[int]:
    """Where the group's removed channels sit in `use`'s layer: its indices
    follow the group's channel order, repeated per position after a Flatten
    (position-major: unit p * channels + c)."""
    per = len(use.indices) // channels
    return {use.indices[p * channels + c] for p in range(per) for c in dead}


def _narrower(layer, out_width: int):
    """A copy of `layer`'s config with its width (units/filters) set to
    `out_width` when its output channels shrink; built by the rebuild."""
    config = layer.get_config()
    rule = registry.rule_for(layer)
    if out_width and rule is not None and rule.width:
        config[rule.width] = out_width
    return layer.__class__.from_config(config)


def _sliced(layer, keep_out, drop_in: list[int]) -> list[np.ndarray]:
    """`layer`'s weights without the removed output channels (`keep_out`: the
    kept indices) and input positions (`drop_in`)."""
    return [_slice_one(layer, w.path.split("/")[-1], np.asarray(w.numpy()), keep_out, drop_in)
            for w in layer.weights]


def _keep(n: int, drop: list[int]) -> np.ndarray:
    gone = set(drop)
    return np.array([i for i in range(n) if i not in gone], int)


def _slice_one(layer, name, value, keep_out, drop_in):
    """One weight without the removed channels, its axes from the layer's
    registry rule (`KernelLayout`: input axis, output axis)."""
    rule = registry.rule_for(layer)
    layout = next((k for k in (rule.kernels if rule else ()) if k.attr == name), None)
    if isinstance(layer, _SEPARABLE) and name == "depthwise_kernel":
        return np.take(value, _keep(value.shape[-2], drop_in), axis=-2) if drop_in else value
    if layout is not None and layout.input_axis is None:
        # A depthwise kernel: its channels pass through (axis -2).
        return np.take(value, keep_out, axis=-2) if keep_out is not None else value
    if layout is not None:
        if drop_in:
            # A separable conv's pointwise kernel reads depth_multiplier rows per channel.
            mult = layer.depth_multiplier if isinstance(layer, _SEPARABLE) else 1
            rows = _keep(value.shape[layout.input_axis] // mult, drop_in)
            rows = np.array([r * mult + j for r in rows for j in range(mult)], int)
            value = np.take(value, rows, axis=layout.input_axis)
        if keep_out is not None:
            value = np.take(value, keep_out, axis=layout.output_axes[0])
        return value
    if keep_out is not None and name in _PER_CHANNEL and value.ndim >= 1:
        return np.take(value, keep_out, axis=-1)
    return value


def _check_same(before: keras.Model, after: keras.Model) -> None:
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((2, *t.shape[1:])).astype(str(t.dtype))
              if "float" in str(t.dtype) else np.zeros((2, *t.shape[1:]), str(t.dtype))
              for t in keras.tree.flatten(before.inputs)]
    feed = inputs[0] if len(inputs) == 1 else inputs
    want = keras.tree.flatten(before(feed, training=False))
    got = keras.tree.flatten(after(feed, training=False))
    for a, b in zip(want, got):
        a, b = keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
        scale = max(1.0, float(np.max(np.abs(a))))
        if a.shape != b.shape or float(np.max(np.abs(a - b))) > 1e-5 * scale:
            raise ValueError(
                f"shrink changed the outputs of model '{before.name}' (max difference "
                f"{float(np.max(np.abs(a - b))) if a.shape == b.shape else 'shape'}): a "
                "removed channel was not exactly zero everywhere it goes. Please report it, "
                "with the model; shrink(model, check=False) skips this check.")
