"""A KerasHub BERT backbone (a tiny configuration, built offline without a
preset) with its dict inputs goes QAT -> strip -> fully int8 for LiteRT and
TFLite-Micro, on tokens built from real MNIST images."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_compress as kc
import tflite_export
from conftest import compile_classifier

keras_hub = pytest.importorskip("keras_hub")  # the `hub` extra, part of `dev`

LENGTH = 49  # 7x7 patch tokens per image


def _inputs(images: np.ndarray) -> dict:
    tokens = kc.datasets.patch_tokens(images)  # no text corpus is offline here
    return {"token_ids": tokens, "segment_ids": np.zeros_like(tokens),
            "padding_mask": np.ones_like(tokens)}


def _classifier() -> keras.Model:
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=32, num_layers=1, num_heads=2, hidden_dim=32, intermediate_dim=64,
        max_sequence_length=LENGTH, dropout=0.0)
    inputs = {name: keras.Input((LENGTH,), dtype="int32", name=name)
              for name in ("token_ids", "segment_ids", "padding_mask")}
    # The tokens' mean: patch 0 (in [CLS]'s place) says little about a digit.
    pooled = keras.layers.GlobalAveragePooling1D()(backbone(inputs)["sequence_output"])
    return keras.Model(inputs, keras.layers.Dense(10)(pooled))


def test_keras_hub_layers_have_rules():
    from keras_hub.src.layers.modeling.position_embedding import PositionEmbedding
    from keras_hub.src.layers.modeling.transformer_encoder import TransformerEncoder

    assert kc.registry.rule_for(TransformerEncoder).qat == "weights"
    assert len(kc.registry.rule_for(TransformerEncoder).kernels) == 6
    assert kc.registry.rule_for(PositionEmbedding).qat == "output"


@pytest.mark.slow
def test_bert_backbone_qat_to_int8_litert_and_micro(mnist_split):
    (x, y), (xt, yt) = mnist_split
    train, test = _inputs(x), _inputs(xt)
    keras.utils.set_random_seed(3)
    model = compile_classifier(_classifier(), 2e-3)
    model.fit(train, y, batch_size=64, epochs=8, verbose=0)
    float_acc = float(np.mean(model.predict(test, verbose=0).argmax(-1) == yt))
    assert float_acc > 0.85

    qat = compile_classifier(kc.quantize(model), 2e-4)
    qat.fit(train, y, batch_size=64, epochs=1, verbose=0)
    calibration = {k: v[:200] for k, v in train.items()}
    phone = tflite_export.convert(kc.strip(qat), "int8", representative_data=calibration)
    assert phone.is_fully_integer and "GELU" in phone.ops
    assert not {"QUANTIZE", "DEQUANTIZE", "NEG"} & set(phone.ops), phone.op_counts
    litert_acc = float(np.mean(tflite_export.predict(phone, test).argmax(-1) == yt))
    assert litert_acc >= float_acc - 0.01, (litert_acc, float_acc)

    # TFLite-Micro: GELU's sigmoid form, and the embedding's negative-id guard dropped.
    mcu = tflite_export.drop_index_guards(tflite_export.convert(
        kc.strip(qat, target="micro"), "int8", representative_data=calibration))
    assert mcu.is_fully_integer and not {"GELU", "SELECT"} & set(mcu.ops)
    # Against LiteRT's reference kernels (XNNPACK's own int8 kernels round
    # differently): within one output step, the same argmax.
    some = {k: v[:500] for k, v in test.items()}
    litert = tflite_export.predict(mcu, some, runtime="litert-reference")
    micro = tflite_export.predict(mcu, some, runtime="micro")
    assert np.abs(litert - micro).max() <= 1.01 * mcu.outputs[0].scale[0]
    assert np.mean(litert.argmax(-1) == micro.argmax(-1)) >= 0.99
