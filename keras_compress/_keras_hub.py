"""Rules for KerasHub's layers, loaded by the registry the first time one of
them is looked up (KerasHub stays an optional extra: `pip install
keras-compress[hub]`).

- `TransformerEncoder`: its attention (query, key, value, output) and
  feed-forward kernels are fake-quantized like a `MultiHeadAttention`'s and a
  `Dense`'s; its output gets an int8 range. `keras_compress.deploy` swaps the
  LayerNormalizations inside for their decomposed form (and, for
  TFLite-Micro, a GELU inside for its sigmoid approximation).
- `PositionEmbedding`: its table stays float for the converter; its output
  gets an int8 range.
- `ReversibleEmbedding` is an `Embedding`, covered by Keras' own rule.
"""

from __future__ import annotations

from keras_hub.src.layers.modeling.position_embedding import PositionEmbedding
from keras_hub.src.layers.modeling.transformer_encoder import TransformerEncoder

from keras_compress import registry
from keras_compress.registry import KernelLayout


def _attention(prefix: str) -> list[KernelLayout]:
    return [KernelLayout(f"{prefix}._{part}_dense.kernel", 0 if part != "output" else None,
                         (1, 2) if part != "output" else (-1,),
                         bias=f"{prefix}._{part}_dense.bias")
            for part in ("query", "key", "value", "output")]


def _dense(attr: str) -> KernelLayout:
    return KernelLayout(f"{attr}.kernel", 0, (-1,), bias=f"{attr}.bias")


registry.add_library_rule(registry.LayerRule(
    TransformerEncoder,
    (*_attention("_self_attention_layer"), _dense("_feedforward_intermediate_dense"),
     _dense("_feedforward_output_dense")),
    "weights"))
registry.add_library_rule(registry.LayerRule(PositionEmbedding, qat="output"))
