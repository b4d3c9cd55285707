"""The contract every keras-compress training wrapper follows.

A wrapper holds the original layer plus technique state (masks, ranges,
centroids). `strip` turns it back into a plain layer of the wrapped type by
calling `stripped()`; nothing else needs to know which technique it is.
"""

from __future__ import annotations

import keras


class CompressionWrapper(keras.layers.Wrapper):
    """Base class of keras-compress layer wrappers."""

    def stripped(self) -> keras.layers.Layer:
        """A new plain layer, built, with this wrapper's effect baked into its
        weights (the wrapped layer's own config and name)."""
        raise NotImplementedError
