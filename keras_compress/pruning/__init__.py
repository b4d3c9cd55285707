"""Pruning: magnitude, N:M and channel masks on a schedule, inside `model.fit`."""

from keras_compress.pruning import masks
from keras_compress.pruning.api import LayerSparsity, SparsityReport, prune, sparsity
from keras_compress.pruning.callback import PruningCallback
from keras_compress.pruning.wrapper import PruningWrapper

__all__ = [
    "LayerSparsity",
    "PruningCallback",
    "PruningWrapper",
    "SparsityReport",
    "masks",
    "prune",
    "sparsity",
]
