"""Small transformers and recurrent networks for sequences, as Keras 3 models:
a ViT on image patches, a token transformer, and LSTM, GRU and CRNN
classifiers over time steps (MNIST rows in the tests and benchmarks).

Every builder takes `keras_module` to build the same model with another Keras
(the benchmarks build TFMOT's tf_keras twin). `PositionEmbedding` is the
learned position table a ViT adds to its tokens; QAT gives its output an int8
scale of its own (registry rule "output").

Example:

```python
from keras_compress import sequence_models

model = sequence_models.vit(input_shape=(28, 28), patch=4)
model.output_shape   # (None, 10)
```
"""

from __future__ import annotations

import functools

import keras

from keras_compress import registry

__all__ = ["PositionEmbedding", "vit", "token_transformer", "recurrent"]


@functools.cache
def _position_class(keras_module):
    class PositionEmbedding(keras_module.layers.Layer):
        """A learned table, one vector per position, added to the tokens."""

        def build(self, input_shape):
            self.position = self.add_weight(
                shape=tuple(input_shape[1:]), name="position",
                initializer=keras_module.initializers.RandomNormal(stddev=0.02))

        def call(self, tokens):
            return tokens + self.position

    return PositionEmbedding


PositionEmbedding = keras.saving.register_keras_serializable(package="keras_compress")(
    _position_class(keras))
registry.add_library_rule(registry.LayerRule(PositionEmbedding, qat="output"))


def _encoder(keras_module, h, blocks: int, heads: int, mlp: int, activation: str):
    """Pre-norm transformer blocks, then the tokens' mean."""
    L = keras_module.layers
    dim = h.shape[-1]
    for _ in range(blocks):
        a = L.LayerNormalization(epsilon=1e-5)(h)
        h = L.Add()([h, L.MultiHeadAttention(heads, dim // heads)(a, a)])
        f = L.LayerNormalization(epsilon=1e-5)(h)
        h = L.Add()([h, L.Dense(dim)(L.Dense(mlp, activation=activation)(f))])
    return L.GlobalAveragePooling1D()(L.LayerNormalization(epsilon=1e-5)(h))


def vit(input_shape: tuple[int, int] = (28, 28), patch: int = 4, dim: int = 32,
        heads: int = 2, blocks: int = 2, mlp: int = 64, num_classes: int = 10,
        activation: str = "gelu", position: bool = True, keras_module=None) -> keras.Model:
    """A tiny Vision Transformer on one-channel images: patch x patch patches
    embedded by a strided convolution, a position table (unless `position` is
    False), `blocks` pre-norm encoder blocks (attention + GELU MLP), mean
    pooling. Outputs logits."""
    k = keras_module or keras
    L = k.layers
    rows, cols = input_shape
    images = k.Input(input_shape)
    h = L.Conv2D(dim, patch, strides=patch)(L.Reshape((rows, cols, 1))(images))
    h = L.Reshape(((rows // patch) * (cols // patch), dim))(h)
    if position:
        h = _position_class(k)()(h)
    return k.Model(images, L.Dense(num_classes)(_encoder(k, h, blocks, heads, mlp, activation)))


def token_transformer(length: int = 49, vocab: int = 32, dim: int = 32, heads: int = 2,
                      blocks: int = 1, mlp: int = 64, num_classes: int = 10,
                      activation: str = "relu", position: bool = True,
                      keras_module=None) -> keras.Model:
    """A token classifier: int32 ids `token_ids` -> Embedding + position table
    (unless `position` is False) -> encoder blocks -> mean -> logits."""
    k = keras_module or keras
    L = k.layers
    ids = k.Input((length,), dtype="int32", name="token_ids")
    h = L.Embedding(vocab, dim)(ids)
    if position:
        h = _position_class(k)()(h)
    return k.Model(ids, L.Dense(num_classes)(_encoder(k, h, blocks, heads, mlp, activation)))


def recurrent(kind: str = "lstm", input_shape: tuple[int, int] = (28, 28), units: int = 32,
              num_classes: int = 10, keras_module=None) -> keras.Model:
    """A sequence classifier over time steps: "lstm", "gru", or "crnn" (a
    strided Conv1D over time, then a GRU). Outputs logits."""
    k = keras_module or keras
    L = k.layers
    if kind not in ("lstm", "gru", "crnn"):
        raise ValueError(f"`kind` must be 'lstm', 'gru' or 'crnn'; received {kind!r}.")
    steps = k.Input(input_shape)
    if kind == "lstm":
        h = L.LSTM(units)(steps)
    elif kind == "gru":
        h = L.GRU(units)(steps)
    else:
        h = L.GRU(units)(L.Conv1D(units, 3, strides=2, activation="relu")(steps))
    return k.Model(steps, L.Dense(num_classes)(h))
