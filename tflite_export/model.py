"""`TFLiteModel`: a converted flatbuffer plus what deployment needs to know about it."""

from __future__ import annotations

import dataclasses
import gzip
import os
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from tflite_export import _schema

__all__ = ["NUMPY_TYPES", "TFLiteModel", "TensorInfo", "write_atomic"]

NUMPY_TYPES = {
    "FLOAT32": np.float32, "FLOAT16": np.float16, "INT8": np.int8, "UINT8": np.uint8,
    "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
}
_INTEGER_TYPES = {"INT4", "INT8", "UINT8", "INT16", "INT32", "INT64", "UINT16", "UINT32", "BOOL"}


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One tensor of the graph: name, element type, shape and quantization."""

    index: int
    name: str
    dtype: str  # TFLite type name: "INT8", "FLOAT32", ...
    shape: tuple[int, ...]
    scale: tuple[float, ...]  # empty when not quantized
    zero_point: tuple[int, ...]
    quantized_dimension: int
    is_constant: bool  # holds weights/biases (a non-empty buffer)
    is_variable: bool = False  # state kept between invokes (a fused LSTM's h and c)

    @property
    def is_float(self) -> bool:
        return self.dtype in ("FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16")


def write_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` through a temporary file in the same folder and a
    rename, so `path` either keeps its old content or holds all of `data`. The
    file gets the permissions a plain `open(path, "wb")` would give it (an
    existing file keeps its own)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"Cannot write {path}: it is a directory.")
    if path.parent.exists() and not path.parent.is_dir():
        raise NotADirectoryError(f"Cannot write {path}: {path.parent} is a file, not a folder.")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"Cannot write {path}: folder {path.parent} does not exist.")
    if path.exists():
        mode = path.stat().st_mode & 0o7777
    else:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        kind = PermissionError if isinstance(exc, PermissionError) else OSError
        raise kind(f"Cannot write {path}: cannot create files in {path.parent} "
                   f"({exc.strerror or exc}).") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


class TFLiteModel:
    """A TFLite flatbuffer with its op list, tensors and I/O quantization.

    Example:

    ```python
    import keras
    import numpy as np
    import tflite_export

    x = np.random.default_rng(0).random((200, 8, 8, 1), dtype="float32")
    y = np.arange(200) % 10
    model = keras.Sequential([keras.Input((8, 8, 1)),
                              keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(10)])
    tfl = tflite_export.convert(model, mode="int8", representative_data=x)
    tfl.ops                 # ['CONV_2D', 'RESHAPE', 'FULLY_CONNECTED']
    tfl.is_fully_integer    # True
    tfl.inputs[0].scale     # (0.0039...,)
    tfl.save("model.tflite")
    ```
    """

    def __init__(self, content: bytes, mode: str | None = None):
        self.content = bytes(content)
        self.mode = mode
        self._fb = _schema.parse(self.content)
        if not self._fb.subgraphs or self._fb.subgraphs[0].tensors is None:
            raise ValueError("Corrupted TFLite flatbuffer: it holds no graph.")
        subgraph = self._fb.subgraphs[0]
        buffers = self._fb.buffers or []
        self.tensors: list[TensorInfo] = []
        for i, t in enumerate(subgraph.tensors or []):
            q = t.quantization
            scale = tuple(float(s) for s in (q.scale if q is not None and q.scale is not None else ()))
            zero = tuple(int(z) for z in (q.zeroPoint if q is not None and q.zeroPoint is not None else ()))
            buf = buffers[t.buffer] if t.buffer < len(buffers) else None
            constant = bool(buf is not None and ((buf.data is not None and len(buf.data)) or buf.size))
            self.tensors.append(TensorInfo(
                index=i,
                name=(t.name or b"").decode(errors="replace"),
                dtype=_schema.TYPE_NAMES.get(t.type, str(t.type)),
                shape=tuple(int(d) for d in (t.shape if t.shape is not None else ())),
                scale=scale,
                zero_point=zero,
                quantized_dimension=int(q.quantizedDimension) if q is not None else 0,
                is_constant=constant,
                is_variable=bool(t.isVariable),
            ))
        self._operators = [
            (_schema.op_name(self._fb, op.opcodeIndex),
             [int(i) for i in (op.inputs if op.inputs is not None else ()) if i >= 0],
             [int(i) for i in (op.outputs if op.outputs is not None else ()) if i >= 0])
            for op in (subgraph.operators or [])
        ]
        self.inputs = [self.tensors[i] for i in subgraph.inputs]
        self.outputs = [self.tensors[i] for i in subgraph.outputs]

    # ------------------------------------------------------------------ graph
    @property
    def has_state(self) -> bool:
        """Whether the model keeps state between invokes in variable tensors
        (a fused LSTM's h and c): runtimes must reset it between sequences."""
        return any(t.is_variable for t in self.tensors)

    @property
    def ops(self) -> list[str]:
        """Distinct op names, in order of first use."""
        return list(dict.fromkeys(name for name, _, _ in self._operators))

    @property
    def op_counts(self) -> dict[str, int]:
        return dict(Counter(name for name, _, _ in self._operators))

    @property
    def operators(self) -> list[tuple[str, list[TensorInfo], list[TensorInfo]]]:
        """Every operator with its input and output tensors, in execution order."""
        return [
            (name, [self.tensors[i] for i in ins], [self.tensors[i] for i in outs])
            for name, ins, outs in self._operators
        ]

    @property
    def signatures(self) -> list[str]:
        return list(self.signature_io)

    @property
    def signature_io(self) -> dict[str, dict[str, list[str]]]:
        """Signature key -> its input and output names (what
        `Interpreter.runSignature` / `get_signature_runner` take)."""
        return {
            (sig.signatureKey or b"").decode(): {
                "inputs": [(t.name or b"").decode() for t in (sig.inputs or [])],
                "outputs": [(t.name or b"").decode() for t in (sig.outputs or [])],
            }
            for sig in (self._fb.signatureDefs or [])
        }

    @property
    def float_ops(self) -> list[tuple[str, list[str]]]:
        """(op, names of its tensors) for every operator touching a float tensor,
        computing ops first, then the QUANTIZE/DEQUANTIZE ops around them."""
        found = [
            (name, [t.name for t in outs + ins])
            for name, ins, outs in self.operators
            if any(t.is_float for t in ins + outs)
        ]
        return sorted(found, key=lambda item: item[0] in ("QUANTIZE", "DEQUANTIZE"))

    @property
    def is_fully_integer(self) -> bool:
        """No float tensor anywhere: inputs, outputs, weights and activations are
        integers (int8/int16 data, int32 biases and shapes). Empty tensors
        hold no data (a fused LSTM's unused `*_intermediate` placeholders)."""
        return all(t.dtype in _INTEGER_TYPES for t in self.tensors if 0 not in t.shape)

    def constant(self, tensor: TensorInfo | int) -> np.ndarray:
        """The stored values of a constant tensor (weights, biases), as stored:
        int8 weights stay int8, float32 stay float32, and packed INT4 weights
        (two per byte, low nibble first) come back as int8 values in [-8, 7]."""
        info = self.tensors[tensor] if isinstance(tensor, int) else tensor
        buffer = self._fb.buffers[self._fb.subgraphs[0].tensors[info.index].buffer]
        raw = _schema.buffer_data(buffer, self.content)
        if raw is None or not info.is_constant:
            raise ValueError(f"Tensor '{info.name}' is not a constant with stored data.")
        data = (np.frombuffer(raw, np.uint8) if isinstance(raw, bytes)
                else np.asarray(raw, np.uint8))
        if info.dtype == "INT4":
            nibbles = np.stack([data & 0x0F, data >> 4], axis=-1).reshape(-1).astype(np.int8)
            count = int(np.prod(info.shape))
            return np.where(nibbles > 7, nibbles - 16, nibbles)[:count].astype(np.int8).reshape(
                info.shape)
        dtype = NUMPY_TYPES.get(info.dtype)
        if dtype is None:
            raise ValueError(f"Tensor '{info.name}' has type {info.dtype}, which is packed; "
                             "read it with the LiteRT interpreter instead.")
        return np.frombuffer(bytes(data), dtype=dtype).reshape(info.shape)

    @property
    def has_external_buffers(self) -> bool:
        """Whether some weights sit after the flatbuffer (buffer `offset` and
        `size`, as ai-edge-quantizer writes them), which TFLite-Micro does
        not read."""
        return bool(_schema.external_buffers(self._fb))

    def with_inline_buffers(self) -> "TFLiteModel":
        """The same model with every weight inside the flatbuffer, 16-byte
        aligned: what TFLite-Micro (and an `alignas(16)` C array) needs."""
        if not self.has_external_buffers:
            return self
        return TFLiteModel(_schema.pack(_schema.parse(self.content), self.content), self.mode)

    # ------------------------------------------------------------------ sizes
    @property
    def size(self) -> int:
        return len(self.content)

    @property
    def gzip_size(self) -> int:
        return len(gzip.compress(self.content, compresslevel=9, mtime=0))

    # -------------------------------------------------------------------- I/O
    def save(self, path: str | os.PathLike) -> Path:
        """Write the flatbuffer atomically; returns the path."""
        return write_atomic(path, self.content)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TFLiteModel":
        data = Path(path).read_bytes()
        try:
            return cls(data)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    def quantize_input(self, x: np.ndarray, index: int = 0) -> np.ndarray:
        """Float data -> the input's integer type with its scale/zero point; an
        input without quantization (float, or integer ids) gets its own type."""
        info = self.inputs[index]
        if not info.scale:
            return np.asarray(x, dtype=NUMPY_TYPES.get(info.dtype, np.float32))
        dtype = NUMPY_TYPES[info.dtype]
        q = np.round(np.asarray(x, np.float32) / info.scale[0] + info.zero_point[0])
        return np.clip(q, np.iinfo(dtype).min, np.iinfo(dtype).max).astype(dtype)

    def dequantize_output(self, y: np.ndarray, index: int = 0) -> np.ndarray:
        info = self.outputs[index]
        if not info.scale:
            return np.asarray(y, dtype=np.float32)
        return (np.asarray(y, np.float32) - info.zero_point[0]) * info.scale[0]

    def __repr__(self) -> str:
        return (f"TFLiteModel(mode={self.mode!r}, {self.size:,} bytes, ops={self.ops}, "
                f"fully_integer={self.is_fully_integer})")
