"""Quantization-aware training that converts to fully int8 TFLite models."""

from keras_compress.quantization import quantizers
from keras_compress.quantization.activations import ActivationQuantizer, FakeQuant
from keras_compress.quantization.api import quantize
from keras_compress.quantization.callback import QuantizationCallback
from keras_compress.quantization.kernel import QuantizedKernel
from keras_compress.quantization.sensitivity import (
    LayerSensitivity,
    SensitivityReport,
    sensitivity,
)
from keras_compress.quantization.wrapper import QuantizeWrapper

__all__ = [
    "ActivationQuantizer",
    "FakeQuant",
    "LayerSensitivity",
    "QuantizationCallback",
    "QuantizedKernel",
    "QuantizeWrapper",
    "SensitivityReport",
    "quantize",
    "quantizers",
    "sensitivity",
]
