"""The contract every keras-compress training wrapper follows.

A wrapper holds the original layer plus technique state (masks, ranges,
centroids). Wrappers nest: `QuantizeWrapper(PruningWrapper(Conv2D))` quantizes
the pruned kernel. Each wrapper presents the *base layer* (the innermost plain
layer) with substituted variable values; the outer wrapper starts from what
the inner one substitutes, so effects compose without re-implementing any
layer's `call`: the forward pass is written once, here (`call`).

`strip` turns a wrapper back into a plain layer of the base type by calling
`stripped()`; nothing else needs to know which technique it is.
"""

from __future__ import annotations

from typing import Any

import keras

Substitutions = list[tuple[keras.Variable, Any]]


class CompressionWrapper(keras.layers.Wrapper):
    """Base class of keras-compress layer wrappers."""

    @property
    def base_layer(self) -> keras.layers.Layer:
        """The innermost plain layer (below every nested wrapper)."""
        layer = self.layer
        while isinstance(layer, CompressionWrapper):
            layer = layer.layer
        return layer

    def substitutions(self, training: bool | None) -> Substitutions:
        """(variable of the base layer, value to compute with) pairs: this
        wrapper's effect composed on top of the wrappers inside it. Called
        once per forward pass (training counters advance here)."""
        raise NotImplementedError

    def inner_substitutions(self, training: bool | None) -> Substitutions:
        """What the wrapped wrapper substitutes (empty for a plain layer)."""
        if isinstance(self.layer, CompressionWrapper):
            return self.layer.substitutions(training)
        return []

    def call(self, inputs, *more, training=None, **kwargs):
        """The base layer's own `call` (attention takes several inputs),
        computing with the substituted values (its losses kept), then
        `finish`: every wrapper's forward pass."""
        mapping = self.substitutions(training)
        with keras.StatelessScope(state_mapping=mapping, collect_losses=True) as scope:
            outputs = self.base_layer(inputs, *more, training=training, **kwargs)
        for loss in scope.losses:
            self.add_loss(loss)
        # State the base layer updated (the range of an activation quantizer
        # inside attention) lands in its variables; substituted ones stay.
        substituted = {id(var) for var, _ in mapping}
        for var in self.base_layer.non_trainable_variables:
            value = scope.get_current_value(var)
            if value is not None and id(var) not in substituted:
                var.assign(value)
        return self.finish(outputs, training)

    def finish(self, outputs, training: bool | None):
        """What a wrapper applies after the base layer (QAT's folded
        BatchNormalization and fused activation); nothing by default."""
        return outputs

    def compute_output_spec(self, inputs, *more, training=None, **kwargs):
        if more:  # attention: the base layer knows its several inputs
            return self.base_layer.compute_output_spec(inputs, *more, **kwargs)
        return super().compute_output_spec(inputs, training=training, **kwargs)

    def compute_output_shape(self, input_shape):
        try:
            return self.base_layer.compute_output_shape(input_shape)
        except NotImplementedError:  # a custom layer: trace its call
            return self.base_layer.compute_output_spec(keras.KerasTensor(input_shape)).shape

    def stripped(self) -> keras.layers.Layer:
        """A new plain layer, built, with this wrapper's effect baked into its
        weights (the wrapped layer's own config and name)."""
        raise NotImplementedError

    def inner_stripped(self) -> keras.layers.Layer:
        """The wrapped layer with every inner wrapper baked in."""
        from keras_compress import model_walk

        if isinstance(self.layer, CompressionWrapper):
            return self.layer.stripped()
        return model_walk.copy_layer(self.layer)


def unwrap(layer: keras.layers.Layer) -> keras.layers.Layer:
    """The plain layer under any stack of keras-compress wrappers (`layer`
    itself when it is not wrapped)."""
    return layer.base_layer if isinstance(layer, CompressionWrapper) else layer


def lookup(substitutions: Substitutions, variable: keras.Variable) -> Any:
    """The substituted value of `variable`, or the variable itself."""
    for var, value in substitutions:
        if var is variable:
            return value
    return variable
