"""`ClusterWrapper`: weight sharing with trainable centroids.

The kernel is replaced by `centroids[index]`: every weight points at one of
`n_clusters` shared values (per tensor, or per output channel). Indices are
fixed at wrapping time (nearest centroid); the centroids train, each receiving
the summed gradient of its weights. Weights that are exactly zero (pruned)
stay zero and do not pull on any centroid. `stripped()` bakes the shared
values into a plain layer, which int8 conversion keeps at <= `n_clusters`
distinct values per output channel: the input TFLite-Micro's look-up-table
compression (`tflite_export.compress_lut`) turns into small indices.

Example:

```python
import keras
import keras_compress as kc

layer = kc.ClusterWrapper(keras.layers.Dense(8), n_clusters=4)
y = layer(keras.ops.ones((2, 16)))
plain = layer.stripped()
len(set(plain.kernel.numpy().ravel().tolist())) <= 4 + 1   # 4 shared values (+ 0)
```
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from keras_compress._wrapper_base import CompressionWrapper
from keras_compress.clustering.centroids import INITS, assign, init_centroids
from keras_compress.pruning import prunable

__all__ = ["ClusterWrapper"]


@keras.saving.register_keras_serializable(package="keras_compress")
class ClusterWrapper(CompressionWrapper):
    """Clusters the kernel of a Dense/Conv layer into `n_clusters` shared values.

    Args:
        layer: a Dense/Conv-like layer (any layer `prune` supports).
        n_clusters: shared values per tensor (or per channel), 2-256.
        init: "kmeans++", "linear", "density", or "values" (the kernel's own
            distinct values when it holds at most `n_clusters`, else k-means++).
        per_channel: one set of centroids per output channel.
    """

    def __init__(self, layer: keras.layers.Layer, n_clusters: int = 16, init: str = "kmeans++",
                 per_channel: bool = False, **kwargs: Any):
        if isinstance(layer, CompressionWrapper):
            raise ValueError(
                f"Layer '{layer.name}' is already wrapped ({type(layer).__name__}); cluster "
                "plain layers (strip a pruned model first: its zeros are kept), then quantize.")
        if not prunable.prunable_weights(layer):
            raise ValueError(
                f"Layer '{layer.name}' ({type(layer).__name__}) has no kernel to cluster. "
                f"Supported layers: {', '.join(prunable.supported_layers())}.")
        if isinstance(n_clusters, bool) or not isinstance(n_clusters, int) or not 2 <= n_clusters <= 256:
            raise ValueError(f"`n_clusters` must be an integer in [2, 256]; received {n_clusters!r}.")
        if init not in INITS:
            raise ValueError(f"`init` must be one of {INITS}; received {init!r}.")
        kwargs.setdefault("name", f"cluster_{layer.name}")
        super().__init__(layer, **kwargs)
        self.n_clusters, self.init, self.per_channel = n_clusters, init, bool(per_channel)
        self._layout = prunable.prunable_weights(layer)[0]

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
        self._kernel = prunable.variable(self.layer, self._layout.attr)
        # The centroids replace the kernel in every forward pass: it gets no gradient.
        self._kernel.trainable = False
        shape = tuple(self._kernel.shape)
        groups = self._channels(shape) if self.per_channel else 1
        self.centroids = self.add_weight(name="centroids", shape=(groups * self.n_clusters,),
                                         initializer="zeros", trainable=True)
        self.indices = self.add_weight(name="indices", shape=shape, dtype="int32",
                                       initializer="zeros", trainable=False)
        self.keep = self.add_weight(name="nonzero", shape=shape, initializer="ones",
                                    trainable=False)
        self.built = True
        self.initialize()

    def _channels(self, shape) -> int:
        return int(np.prod([shape[a] for a in self._layout.output_axes]))

    def initialize(self) -> None:
        """Cluster the layer's current kernel: centroids and nearest-centroid indices."""
        w = np.asarray(self._kernel.numpy(), np.float64)
        if not np.all(np.isfinite(w)):
            raise ValueError(f"Layer '{self.layer.name}': its kernel holds NaN or Inf values; "
                             "clustering needs finite weights.")
        keep = (w != 0).astype(np.float32)
        k = self.n_clusters
        if not self.per_channel:
            values = w[w != 0]
            centroids = init_centroids(values, k, self.init)
            idx = assign(w.reshape(-1), centroids).reshape(w.shape)
        else:
            rows, perm = prunable.channel_major(w, self._layout.output_axes)
            cents, idx_rows = [], []
            for c, row in enumerate(rows):
                cent = init_centroids(row[row != 0], k, self.init)
                cents.append(cent)
                idx_rows.append(assign(row, cent) + c * k)
            centroids = np.concatenate(cents)
            shaped = np.stack(idx_rows).reshape([w.shape[a] for a in perm])
            idx = np.transpose(shaped, np.argsort(perm))
        self.centroids.assign(centroids.astype(np.float32))
        self.indices.assign(idx.astype(np.int32))
        self.keep.assign(keep)

    def substitutions(self, training):
        inner = self.inner_substitutions(training)
        clustered = keras.ops.take(self.centroids, self.indices) * self.keep
        done = {id(self._kernel)}
        return [(self._kernel, clustered)] + [(v, x) for v, x in inner if id(v) not in done]

    def clustered_kernel(self) -> np.ndarray:
        return (np.take(self.centroids.numpy(), self.indices.numpy())
                * self.keep.numpy()).astype(np.float32)

    def stripped(self) -> keras.layers.Layer:
        plain = self.inner_stripped()
        prunable.variable(plain, self._layout.attr).assign(self.clustered_kernel())
        return plain

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n_clusters": self.n_clusters, "init": self.init,
                "per_channel": self.per_channel}


