"""`cluster(model, n_clusters=..., init=..., per_channel=...)`.

Example:

```python
import keras
import keras_compress as kc

model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, activation="relu"),
                          keras.layers.Dense(4)])
clustered = kc.cluster(model, n_clusters=8)
# clustered.compile(...); clustered.fit(...)   # the centroids train
plain = kc.strip(clustered)                    # <= 8 distinct values per kernel (+ 0)
```
"""

from __future__ import annotations

import keras

from keras_compress import graph, model_walk
from keras_compress._wrapper_base import CompressionWrapper
from keras_compress.clustering.wrapper import ClusterWrapper
from keras_compress.pruning import prunable
from keras_compress.model_walk import LayerSelector, selector

__all__ = ["cluster"]


def cluster(model: keras.layers.Layer, n_clusters: int = 16, init: str = "kmeans++",
            per_channel: bool = False, layers: LayerSelector = None,
            skip: LayerSelector = None) -> keras.layers.Layer:
    """Wrap the Dense/Conv layers of `model` (or one layer) for weight sharing.

    Cluster a trained model: centroids start from its kernels. Weights that are
    exactly zero (a stripped pruned model) stay zero. Follow with `fit` to train
    the centroids, `kc.quantize` for cluster-preserving QAT, and `kc.strip`.

    Args:
        model: a Sequential/functional model or a single layer.
        n_clusters: shared values per kernel (or per output channel), 2-256.
        init: "kmeans++", "linear" or "density".
        per_channel: one set of centroids per output channel.
        layers, skip: which layers to cluster / leave alone (names, classes or
            a callable), as in `prune`.

    Raises:
        ValueError: bad arguments (named), wrapped layers, or nothing to cluster.
    """
    options = dict(n_clusters=n_clusters, init=init, per_channel=per_channel)
    if not isinstance(model, keras.layers.Layer):
        raise ValueError(f"`model` must be a keras.Model or layer; received {type(model).__name__}.")
    model_walk.check_finite(model, "cluster")
    if not model_walk.is_model(model):
        if layers is not None or skip is not None:
            raise ValueError("`layers` and `skip` only apply when clustering a model.")
        return ClusterWrapper(model, **options)
    if not model_walk.is_graph_model(model):
        raise model_walk.subclassed_error(model)
    leaves = list(model_walk.iter_layers(model))
    names = {layer.name for layer in leaves}
    target, excluded = selector(layers, "layers", names), selector(skip, "skip", names)
    wrapped = [layer.name for layer in leaves if isinstance(layer, CompressionWrapper)]
    if wrapped:
        raise ValueError(
            f"Model '{model.name}' has wrapped layers {wrapped}: cluster a plain model "
            "(kc.strip a pruned one first; its zeros are kept), then quantize.")
    selected = {
        id(layer) for layer in leaves
        if prunable.prunable_weights(layer)
        and (target is None or target(layer)) and not (excluded and excluded(layer))
    }
    if not selected:
        raise ValueError(f"Model '{model.name}' has no Dense/Conv layer to cluster.")

    def replace(layer):
        if id(layer) not in selected:
            return None
        wrapper = ClusterWrapper(model_walk.copy_layer(layer), **options)
        wrapper.build(model_walk.build_input_shape(layer))
        return wrapper

    return graph.rebuild(model, replace)
