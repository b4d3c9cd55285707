"""tflite_export: the deploy-time stage. Model in; `.tflite` and numbers out.

It never imports `keras_compress`: it works on any Keras 3 model, a `.keras`
file, a SavedModel, or a TFMOT-made tf_keras model.

```python
import tflite_export

tfl = tflite_export.convert(model, mode="int8", representative_data=x_train[:200])
tfl.is_fully_integer, tfl.ops, tfl.inputs[0].scale
tfl.save("model.tflite")
```

Available now: `convert` (float32, float16, dynamic, int8 with int8/uint8 I/O,
int16x8), `TFLiteModel` (op list, tensors, I/O quantization, sizes, atomic
save), `export_micro` (aligned C array, op resolver, measured arena) and
`benchmark`/`Report` and `compare_latency` (LiteRT and TFLite-Micro latency and accuracy, sizes;
Markdown, JSON, PNG), and `export_android` (model with embedded TFLite metadata:
labels, normalization; `embed_metadata`/`read_metadata`), `predict` (run LiteRT or TFLite-Micro on a batch), and
`compress_micro` (per-tensor look-up-table, pruned or Huffman-coded weights
that TFLite-Micro decodes; `encodings` holds the encoders).
"""

from tflite_export.android import AndroidArtifacts, export_android
from tflite_export.benchmark import (BenchmarkResult, Latency, Report, benchmark,
                                     compare_latency)
from tflite_export.compression import CompressedTensor, LutCompression, compress_lut
from tflite_export.converter import MODES, ConversionError, convert
from tflite_export.index_guards import drop_index_guards
from tflite_export.metadata import embed_metadata, read_metadata
from tflite_export.micro import MicroArtifacts, export_micro
from tflite_export.micro_run import decompression_bytes, find_arena_size
from tflite_export.micro_compress import MicroCompression, TensorEncoding, compress_micro
from tflite_export.model import TensorInfo, TFLiteModel
from tflite_export.runtime import RUNTIMES, predict
from tflite_export.slim import slim
from tflite_export.weights import quantize_weights

__all__ = [
    "AndroidArtifacts",
    "BenchmarkResult",
    "Latency",
    "MODES",
    "RUNTIMES",
    "Report",
    "benchmark",
    "compare_latency",
    "CompressedTensor",
    "ConversionError",
    "LutCompression",
    "MicroArtifacts",
    "MicroCompression",
    "TFLiteModel",
    "TensorEncoding",
    "TensorInfo",
    "compress_lut",
    "compress_micro",
    "convert",
    "decompression_bytes",
    "drop_index_guards",
    "embed_metadata",
    "export_android",
    "export_micro",
    "find_arena_size",
    "predict",
    "quantize_weights",
    "read_metadata",
    "slim",
]
