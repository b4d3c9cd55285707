"""Weight clustering (weight sharing) with trainable centroids."""

from keras_compress.clustering import centroids
from keras_compress.clustering.api import cluster
from keras_compress.clustering.wrapper import ClusterWrapper

__all__ = ["ClusterWrapper", "centroids", "cluster"]
