"""Walking a model's layers, and copying one layer with its weights.

The graph itself (nodes, consumers, channel groups) and the one rebuild every
technique goes through are `keras_compress.graph`; this module holds the
layer-level helpers they and the techniques share.

Example:

```python
import keras
from keras_compress import model_walk

model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="d")])
[layer.name for layer in model_walk.iter_layers(model)]   # ['d']
copy = model_walk.copy_layer(model.layers[0])             # same config, same weights
```
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Union

import keras
from keras.src.models.functional import Functional as _Functional

from keras_compress._wrapper_base import CompressionWrapper

__all__ = ["copy_layer", "iter_layers", "walk_layers", "is_model", "is_graph_model",
           "check_finite", "subclassed_error", "selector", "LayerSelector"]

def is_model(obj: object) -> bool:
    return isinstance(obj, keras.Model)


def is_graph_model(model: keras.layers.Layer) -> bool:
    """Sequential and functional models: the ones whose graph can be rebuilt."""
    return isinstance(model, (keras.Sequential, _Functional))


def iter_layers(model: keras.layers.Layer) -> Iterator[keras.layers.Layer]:
    """All leaf layers of `model`, depth first, descending into nested
    Sequential/functional models (a subclassed model counts as one leaf)."""
    if is_graph_model(model):
        for layer in model.layers:
            yield from iter_layers(layer)
    else:
        yield model


def build_input_shape(layer: keras.layers.Layer) -> tuple | None:
    """The input shape `layer` was built for, or None (unbuilt, or a layer
    whose build config names its inputs otherwise: attention's query_shape)."""
    config = layer.get_build_config() if layer.built else None
    shape = (config or {}).get("input_shape")
    return tuple(shape) if shape is not None else None


def normalizes_last_axis(layer: keras.layers.Layer) -> bool:
    """Whether a built normalization layer (`axis`) works over its input's
    last axis only; False when its input shape is unknown."""
    shape = build_input_shape(layer)
    if not shape:
        return False
    axes = layer.axis if isinstance(layer.axis, (tuple, list)) else (layer.axis,)
    return tuple(a % len(shape) for a in axes) == (len(shape) - 1,)


def activation_name(layer: keras.layers.Layer) -> str:
    """'linear', 'relu', 'relu6' or another Keras activation name."""
    fn = getattr(layer, "activation", None)
    if fn is None:
        return "linear"
    name = keras.activations.serialize(fn)
    return name if isinstance(name, str) else getattr(fn, "__name__", str(name))


def walk_layers(layer: keras.layers.Layer) -> Iterator[keras.layers.Layer]:
    """Every layer reachable from `layer`: the leaves of Sequential/functional
    models, plus subclassed models/layers and the sub-layers they track as
    attributes. A `CompressionWrapper` is yielded, and so are the wrappers
    nested inside it, but not its plain base layer."""
    if is_graph_model(layer):
        for child in layer.layers:
            yield from walk_layers(child)
        return
    yield layer
    if isinstance(layer, CompressionWrapper):
        if isinstance(layer.layer, CompressionWrapper):
            yield from walk_layers(layer.layer)
        return
    for child in getattr(layer, "_layers", []):
        yield from walk_layers(child)


def check_finite(model: keras.layers.Layer, action: str) -> None:
    """Raise ValueError naming the first layer and weight holding NaN or Inf
    (a diverged or badly loaded model), before `action` works on it."""
    import numpy as np

    for layer in walk_layers(model):
        for weight in layer.weights:
            values = keras.ops.convert_to_numpy(weight)
            if np.issubdtype(values.dtype, np.floating) and not np.all(np.isfinite(values)):
                bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
                raise ValueError(
                    f"Layer '{layer.name}': weight '{weight.path}' holds {bad} NaN/Inf "
                    f"value(s) of {values.size}; cannot {action} it. The model diverged "
                    "or was loaded badly: retrain (a lower learning rate) or reload it.")


def copy_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
    """A fresh instance of `layer` from its config, built and holding its weights."""
    try:
        new = layer.__class__.from_config(layer.get_config())
    except Exception as exc:  # noqa: BLE001 - re-raised with the layer's name
        raise ValueError(
            f"Cannot copy layer '{layer.name}' ({type(layer).__name__}): its "
            f"get_config()/from_config() round trip failed ({exc}). Custom layers "
            "need a get_config() returning every constructor argument."
        ) from exc
    if layer.built:
        build_config = layer.get_build_config()
        if build_config is not None:
            new.build_from_config(build_config)
        if new.built and layer.weights:
            new.set_weights(layer.get_weights())
    return new


def subclassed_error(model: keras.Model) -> ValueError:
    return ValueError(
        f"Model '{model.name}' is a subclassed keras.Model "
        f"({type(model).__name__}); its graph cannot be rebuilt. Apply the "
        "technique to its layers inside the model's __init__ instead, e.g. "
        "`self.dense = keras_compress.prune(keras.layers.Dense(10), ...)`."
    )


LayerSelector = Union[
    None,
    str,
    type,
    Callable[[keras.layers.Layer], bool],
    Iterable[Union[str, type]],
]


def selector(spec: LayerSelector, argument: str, names: set[str]):
    """Turn a `layers=`/`skip=` spec into a predicate; unknown names raise."""
    if spec is None:
        return None
    if callable(spec) and not isinstance(spec, type):
        return spec
    items = [spec] if isinstance(spec, (str, type)) else list(spec)
    wanted_names, wanted_types = set(), []
    for item in items:
        if isinstance(item, str):
            wanted_names.add(item)
        elif isinstance(item, type) and issubclass(item, keras.layers.Layer):
            wanted_types.append(item)
        else:
            raise ValueError(
                f"`{argument}` takes layer names, keras layer classes or a "
                f"callable(layer) -> bool; received {item!r}."
            )
    unknown = wanted_names - names
    if unknown:
        raise ValueError(
            f"`{argument}` names layers that are not in the model: {sorted(unknown)}. "
            f"Layers: {sorted(names)}."
        )
    types = tuple(wanted_types)
    return lambda layer: layer.name in wanted_names or (bool(types) and isinstance(layer, types))
