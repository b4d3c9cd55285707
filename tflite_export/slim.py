"""`slim(tfl)`: the same model in fewer flatbuffer bytes, for flash.

The converter writes one weight tensor per use: an unrolled GRU's 28 steps
each get their own copy of the same kernel's tensor, with its per-channel
scales and zero points, and every tensor keeps a name the device never reads.
`slim` merges constant tensors that are identical (same bytes, type, shape
and quantization) into one, and empties the names of all tensors but the
model's inputs and outputs (signatures and `predict` use those). The result
is checked bit for bit against the original on LiteRT's reference kernels.

Example:

```python
import keras
import numpy as np
import tflite_export

# (Nonzero biases, as after training: an all-zero first step has no int8 range.)
model = keras.Sequential([keras.Input((6, 4)),
                          keras.layers.GRU(8, unroll=True, bias_initializer="ones"),
                          keras.layers.Dense(3)])
x = np.random.default_rng(0).normal(size=(20, 6, 4)).astype("float32")
tfl = tflite_export.convert(model, "int8", representative_data=x)
small = tflite_export.slim(tfl)
small.size < tfl.size          # True
```
"""

from __future__ import annotations

import numpy as np

from tflite_export import _schema
from tflite_export.model import TFLiteModel

__all__ = ["slim"]


def _quantization_key(q) -> tuple:
    if q is None:
        return ()
    return tuple(tuple(np.asarray(v).ravel().tolist()) if v is not None else None
                 for v in (q.scale, q.zeroPoint, q.min, q.max)) + (q.quantizedDimension,)


def _merge_constants(fb, sg) -> dict[int, int]:
    """old tensor index -> the index of its first identical constant."""
    canonical: dict[tuple, int] = {}
    mapping = {}
    for i, t in enumerate(sg.tensors or []):
        buf = fb.buffers[t.buffer] if t.buffer < len(fb.buffers or []) else None
        if buf is None or buf.data is None or not len(buf.data) or t.isVariable \
                or t.sparsity is not None:
            continue
        key = (bytes(bytearray(buf.data)), t.type,
               tuple(np.asarray(t.shape).ravel().tolist()) if t.shape is not None else None,
               _quantization_key(t.quantization))
        mapping[i] = canonical.setdefault(key, i)
    return {old: new for old, new in mapping.items() if old != new}


def _remap(values, index):
    if values is None:
        return None
    return [index[v] if v >= 0 else v for v in np.asarray(values).tolist()]


def slim(tfl: TFLiteModel, *, names: bool = True) -> TFLiteModel:
    """Merge identical constant tensors and (with `names`) empty the names of
    every tensor but the inputs and outputs; returns a new TFLiteModel.

    Raises:
        ValueError: not a TFLiteModel; or the slimmed model computed anything
            other than the original (a bug: please report it).
    """
    if not isinstance(tfl, TFLiteModel):
        raise ValueError(f"`tfl` must be a TFLiteModel; received {type(tfl).__name__}.")
    fb = _schema.parse(tfl.content)
    for s, sg in enumerate(fb.subgraphs or []):
        merged = _merge_constants(fb, sg)
        ops = sg.operators or []
        for op in ops:
            if op.inputs is not None:
                op.inputs = [merged.get(v, v) for v in np.asarray(op.inputs).tolist()]
        used = set(np.asarray(sg.inputs).tolist()) | set(np.asarray(sg.outputs).tolist())
        for op in ops:
            for field in (op.inputs, op.outputs, op.intermediates):
                if field is not None:
                    used.update(v for v in np.asarray(field).tolist() if v >= 0)
        keep = [i for i in range(len(sg.tensors or [])) if i in used]
        index = {old: new for new, old in enumerate(keep)}
        sg.tensors = [sg.tensors[i] for i in keep]
        for op in ops:
            op.inputs, op.outputs = _remap(op.inputs, index), _remap(op.outputs, index)
            op.intermediates = _remap(op.intermediates, index)
        sg.inputs, sg.outputs = _remap(sg.inputs, index), _remap(sg.outputs, index)
        for signature in fb.signatureDefs or []:
            if signature.subgraphIndex == s:
                for entry in (signature.inputs or []) + (signature.outputs or []):
                    entry.tensorIndex = index[entry.tensorIndex]
        if names:
            io = set(sg.inputs) | set(sg.outputs)
            for i, t in enumerate(sg.tensors):
                if i not in io:
                    t.name = b""
    used_buffers = {t.buffer for sg in fb.subgraphs or [] for t in sg.tensors or []}
    for b, buf in enumerate(fb.buffers or []):
        if b not in used_buffers and buf.data is not None and b:
            buf.data = None  # a merged tensor's own copy
    result = TFLiteModel(_schema.pack(fb, tfl.content), mode=tfl.mode)
    _check_same(tfl, result)
    return result


def _check_same(before: TFLiteModel, after: TFLiteModel) -> None:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    rng = np.random.default_rng(0)
    inputs, outputs = None, []
    for model in (before, after):
        interpreter = Interpreter(model_content=model.content,
                                  experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
        interpreter.allocate_tensors()
        details = interpreter.get_input_details()
        if inputs is None:
            inputs = [_random_input(rng, d) for d in details]
        for detail, value in zip(details, inputs):
            interpreter.set_tensor(detail["index"], value)
        interpreter.invoke()
        outputs.append([interpreter.get_tensor(d["index"])
                        for d in interpreter.get_output_details()])
    for a, b in zip(*outputs):
        if not np.array_equal(a, b):
            raise ValueError("slim: the slimmed model computes something else than the "
                             "original; keep the original (and please report this).")


def _random_input(rng, detail) -> np.ndarray:
    dtype, shape = detail["dtype"], detail["shape"]
    if not np.issubdtype(dtype, np.integer):
        return rng.normal(size=shape).astype(dtype)
    if detail["quantization"][0]:  # quantized data: the whole range
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    return rng.integers(0, 2, size=shape, dtype=dtype)  # ids: ones any table holds
