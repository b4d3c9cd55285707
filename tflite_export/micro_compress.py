"""Smallest flash for TFLite-Micro: each weight tensor stored in the encoding
that makes it smallest (look-up table, pruned bitmask, Huffman) or left dense.

`compress_micro(tfl)` tries every allowed encoding on every constant tensor the
model's ops read, keeps the smallest (counting what the DECODE op and its
ancillary tensor cost), and rewrites the model with `TFLM_DECODE` ops. Decoded
tensors take RAM while the op that reads them runs: in the tensor arena, or in
an alternate decompression buffer the interpreter is given
(`decompression_bytes`). `ram_budget` bounds that buffer; a tensor that would
push one op's decoded inputs over it stays dense, and says so.

Packed INT4 weights are unpacked to int8 values before encoding (TFLite-Micro
unpacks them to int8 itself before computing), so low-entropy 4-bit weights
are stored in fewer than 4 bits each when an encoding allows it.

The result is verified before it is returned, in a child process so that a
decoder fault can never take the caller down: every encoded tensor decodes
bit-exactly to the original values in the TFLite-Micro runtime, and the
compressed model's outputs equal the uncompressed model's on random inputs.

Example:

```python
import keras
import numpy as np
import tflite_export

x = np.random.default_rng(0).random((100, 64), dtype="float32")
model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(128)])
kernel = model.layers[0].kernel
kernel.assign(kernel.numpy() * (np.abs(kernel.numpy()) > 0.15))   # mostly zeros
tfl = tflite_export.convert(model, mode="int8", representative_data=x)
result = tflite_export.compress_micro(tfl)
result.model.size < tfl.size, result.decompression_bytes
print(result.table())          # per tensor: method, bytes before and after, RAM
```
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from tflite_export import _child, encodings
from tflite_export.compression import index_bits
from tflite_export.micro_run import aligned, decompression_bytes
from tflite_export.model import NUMPY_TYPES, TFLiteModel

__all__ = ["METHODS", "MicroCompression", "TensorEncoding", "compress_micro"]

METHODS = ("lut", "prune", "huffman")
# Bytes a DECODE'd tensor costs beyond its encoded data and ancillary data:
# the ancillary and decoded tensor tables, the DECODE op's share. Measured on
# converter output (about 250-350 B); used only to skip tensors that would not shrink.
_OVERHEAD = 256
_MIN_BYTES = 64


@dataclasses.dataclass(frozen=True)
class TensorEncoding:
    """What `compress_micro` did with one constant tensor."""

    name: str
    index: int
    dtype: str
    method: str  # "lut", "prune", "huffman", or "dense"
    bytes_before: int  # stored bytes in the uncompressed model
    bytes_after: int  # encoded + ancillary bytes (bytes_before when dense)
    decode_ram: int  # bytes of RAM the decoded tensor takes (0 when dense)
    note: str = ""  # why it stays dense, or what else was measured


@dataclasses.dataclass(frozen=True)
class MicroCompression:
    """The compressed model, one entry per candidate tensor, and the RAM the
    decoded tensors need (`decompression_bytes`: the largest set one op reads,
    each aligned to 16 bytes; pass it to the interpreter as its alternate
    decompression memory, or the arena grows by about as much)."""

    model: TFLiteModel
    tensors: list[TensorEncoding]
    original_size: int
    decompression_bytes: int

    @property
    def saved_bytes(self) -> int:
        return self.original_size - self.model.size

    @property
    def encoded(self) -> list[TensorEncoding]:
        return [t for t in self.tensors if t.method != "dense"]

    def table(self) -> str:
        """The per-tensor table as Markdown."""
        lines = ["| tensor | type | method | bytes before | bytes after | decode RAM | note |",
                 "|---|---|---|---:|---:|---:|---|"]
        for t in self.tensors:
            lines.append(f"| {t.name} | {t.dtype} | {t.method} | {t.bytes_before:,} | "
                         f"{t.bytes_after:,} | {t.decode_ram:,} | {t.note} |")
        lines.append(f"| model | | | {self.original_size:,} | {self.model.size:,} | "
                     f"{self.decompression_bytes:,} | flatbuffer; RAM = decompression buffer |")
        return "\n".join(lines)


def _micro_modules():
    try:
        from tflite_micro.tensorflow.lite.micro.compression import (compressor, constant_inputs,
                                                                    decode_insert, lut,
                                                                    model_editor, spec)
        from tflite_micro.tensorflow.lite.micro.tools import tflite_flatbuffer_align_wrapper
    except ImportError as exc:  # pragma: no cover - tflite-micro is a dependency
        raise ImportError("compress_micro needs the `tflite-micro` package: "
                          "pip install tflite-micro") from exc
    return dict(compressor=compressor, constant_inputs=constant_inputs,
                decode_insert=decode_insert, lut=lut, editor=model_editor, spec=spec,
                align=tflite_flatbuffer_align_wrapper)


def _lut(mods, tensor, values: np.ndarray, info) -> encodings.Encoded | None:
    """The wheel's LUT compressor, one table per channel where the tensor is
    quantized per channel (its per-tensor mode decodes those wrongly)."""
    per_channel = len(info.scale) > 1
    axis = info.quantized_dimension if per_channel else None
    slices = np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1) if per_channel else [
        values.reshape(-1)]
    distinct = max(len(np.unique(s)) for s in slices)
    bits = index_bits(distinct)
    if bits > 7:
        return None
    scratch = tensor.copy()
    scratch.buffer = mods["editor"].Buffer(data=values.tobytes())
    scratch.dtype = editor_type(values.dtype)
    mode = mods["spec"].PerChannel(axis=axis) if per_channel else mods["spec"].PerTensor()
    method = mods["spec"].LookUpTableCompression(index_bitwidth=bits, mode=mode)
    try:
        result = mods["lut"].LutCompressor().compress(scratch, method)
    except mods["compressor"].CompressionError:
        return None
    return encodings.Encoded("lut", bytes(result.encoded_data), bytes(result.ancillary_data))


def editor_type(dtype: np.dtype) -> int:
    """The TFLite schema's TensorType for a numpy dtype (as the `tflite-micro`
    model editor takes it)."""
    names = {np.int8: "INT8", np.int16: "INT16", np.int32: "INT32", np.int64: "INT64",
             np.float32: "FLOAT32", np.uint8: "UINT8", np.bool_: "BOOL"}
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema
    return getattr(schema.TensorType, names[dtype.type])


def _candidates(info, values: np.ndarray, methods, mods, tensor) -> list[encodings.Encoded]:
    found = []
    if "lut" in methods and values.dtype in (np.int8, np.int16):
        found.append(_lut(mods, tensor, values, info))
    # The Prune decoder refuses one channel quantized on an axis other than 0.
    one_channel_off_axis = len(info.scale) == 1 and info.quantized_dimension != 0
    if ("prune" in methods and values.dtype.type in encodings.prune_dtypes()
            and not one_channel_off_axis):
        zeros = info.zero_point or (0,)
        try:
            found.append(encodings.encode_prune(values, zeros, info.quantized_dimension))
        except ValueError:
            pass  # zero points the decoder cannot write (the entry says "dense")
    if "huffman" in methods and values.dtype.type in encodings.huffman_dtypes():
        found.append(encodings.encode_huffman(values))
    return [f for f in found if f is not None]


def compress_micro(tfl: TFLiteModel, ram_budget: int | None = None,
                   methods: tuple[str, ...] = METHODS, verify_inputs: int = 4,
                   seed: int = 0) -> MicroCompression:
    """Store each constant tensor of `tfl` in its smallest TFLite-Micro encoding.

    Args:
        tfl: an integer model (int8 or 16x8) that TFLite-Micro runs.
        ram_budget: most bytes the decoded tensors of any one op may take
            (the decompression buffer); None for no bound.
        methods: encodings to consider, from `METHODS`.
        verify_inputs: random inputs on which the compressed model's TFLite-Micro
            outputs must equal the uncompressed model's.
        seed: seed of those inputs.

    Returns:
        a `MicroCompression`: the model, a `TensorEncoding` per tensor considered
        (including those left dense, with the reason), and the decompression RAM.

    Raises:
        ValueError: a model that is not integer, already compressed, or bad arguments.
        RuntimeError: the verification failed (a decoder disagreed), naming the tensor.
    """
    if not isinstance(tfl, TFLiteModel):
        raise ValueError(f"`tfl` must be a TFLiteModel; received {type(tfl).__name__}.")
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods or isinstance(methods, str):
        raise ValueError(f"`methods` must be a non-empty tuple from {METHODS}; received "
                         f"{methods!r}.")
    if ram_budget is not None and (isinstance(ram_budget, bool) or not isinstance(
            ram_budget, int) or ram_budget < 0):
        raise ValueError(f"`ram_budget` must be None or bytes >= 0; received {ram_budget!r}.")
    if "TFLM_DECODE" in tfl.ops:
        raise ValueError("This model is already compressed (it holds TFLM_DECODE ops): "
                         "pass the uncompressed model.")
    floats = [t.name for t in tfl.tensors if t.is_float]
    if floats:
        raise ValueError(f"compress_micro needs an integer model (int8 or 16x8); tensors "
                         f"{floats[:3]} are float. Convert with mode='int8'.")
    mods = _micro_modules()
    model = mods["editor"].read(tfl.content)
    subgraph = model.subgraphs[0]
    consumers = {}  # tensor index -> operator indices reading it
    for position, (_, inputs, _) in enumerate(tfl.operators):
        for t in inputs:
            consumers.setdefault(t.index, set()).add(position)
    entries, chosen = [], {}
    for index in sorted(consumers):
        info = tfl.tensors[index]
        if not info.is_constant:
            continue
        tensor = subgraph.tensors[index]
        stored = len(tensor.buffer.data) if tensor.buffer is not None else 0
        if stored < _MIN_BYTES:
            continue
        uses = mods["constant_inputs"].find_uses(subgraph, tensor)
        if uses:
            entries.append(_dense(info, stored, "read in Prepare: must stay constant"))
            continue
        values = tfl.constant(info)
        found = _candidates(info, values, methods, mods, tensor)
        if not found:
            entries.append(_dense(info, stored, f"no allowed encoding takes {info.dtype}"))
            continue
        best = min(found, key=lambda e: e.size)
        others = ", ".join(f"{e.method} {e.size:,}" for e in found if e is not best)
        if best.size + _OVERHEAD >= stored:
            entries.append(_dense(info, stored, f"no encoding shrinks it (best {best.method} "
                                                f"{best.size:,} B + DECODE)"))
            continue
        chosen[index] = _Choice(best, values, stored, others)
    _fit_budget(tfl, chosen, consumers, ram_budget, entries)
    for index, choice in chosen.items():
        info = tfl.tensors[index]
        entries.append(TensorEncoding(
            info.name, index, info.dtype, choice.best.method, choice.stored, choice.best.size,
            choice.decode_ram, f"also measured: {choice.others}" if choice.others else ""))
    entries.sort(key=lambda e: e.index)
    if not chosen:
        return MicroCompression(tfl, entries, tfl.size, 0)
    content = _rewrite(mods, model, chosen)
    result = TFLiteModel(content, mode=tfl.mode)
    _verify(tfl, result, chosen, verify_inputs, seed)
    return MicroCompression(result, entries, tfl.size, decompression_bytes(result))


@dataclasses.dataclass(frozen=True)
class _Choice:
    """The encoding kept for one tensor, with what it replaces."""

    best: encodings.Encoded
    values: np.ndarray  # the decoded values (int8 for packed INT4)
    stored: int  # bytes in the uncompressed model
    others: str  # the other encodings' sizes, for the table

    @property
    def decode_ram(self) -> int:
        return aligned(int(self.values.nbytes))


def _dense(info, stored: int, why: str) -> TensorEncoding:
    return TensorEncoding(info.name, info.index, info.dtype, "dense", stored, stored, 0, why)


def _fit_budget(tfl, chosen: dict, consumers: dict, budget, entries: list) -> None:
    """Leave tensors dense, least saving per byte of RAM first, until the decoded
    inputs of every op fit `budget` bytes (one DECODE op's outputs at a time)."""
    if budget is None:
        return
    for i in sorted(chosen, key=lambda i: (chosen[i].stored - chosen[i].best.size)
                    / chosen[i].decode_ram):
        totals = {}
        for j in chosen:
            for op in consumers[j]:
                totals[op] = totals.get(op, 0) + chosen[j].decode_ram
        if all(totals[op] <= budget for op in consumers[i]):
            continue
        choice = chosen.pop(i)
        entries.append(_dense(tfl.tensors[i], choice.stored, (
            f"{choice.best.method} would save {choice.stored - choice.best.size:,} B but "
            f"decoding needs {choice.decode_ram:,} B of RAM, over the budget of {budget:,} B")))


def _rewrite(mods, model, chosen: dict) -> bytes:
    editor, subgraph = mods["editor"], model.subgraphs[0]
    results = {}
    for index, choice in chosen.items():
        tensor, values = subgraph.tensors[index], choice.values
        if tensor.dtype != editor_type(values.dtype):  # packed INT4 -> int8 values
            tensor.buffer = editor.Buffer(data=values.tobytes())
            tensor.dtype = editor_type(values.dtype)
        results[(0, index)] = mods["compressor"].CompressionResult(choice.best.encoded,
                                                                   choice.best.ancillary)
    mods["decode_insert"].insert_decode_operators(model, results)
    # Work around the wheel's inserter: it clears the encoded tensor's
    # quantization wrapper, but build() keeps the copy read from the file, so
    # the parameters would be stored twice (on the UINT8 bytes and the decoded
    # tensor). The TensorT is the editor's documented backing object.
    for index in chosen:
        subgraph.tensors[index]._fb.quantization = None
    with tempfile.TemporaryDirectory() as tmp:
        raw, aligned = Path(tmp) / "in.tflite", Path(tmp) / "out.tflite"
        raw.write_bytes(bytes(model.build()))
        mods["align"].align_tflite_model(str(raw), str(aligned))
        return aligned.read_bytes()


def _verify(original: TFLiteModel, compressed: TFLiteModel, chosen: dict, count: int,
            seed: int) -> None:
    """Bit-exact check in a child process (`_decode_check`): each encoded
    tensor decoded alone, then the whole model on `count` random inputs."""
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        original.save(folder / "original.tflite")
        compressed.save(folder / "compressed.tflite")
        np.savez(folder / "tensors.npz", **{
            f"t{index}": choice.values for index, choice in chosen.items()})
        np.savez(folder / "encodings.npz", **{
            f"t{index}": np.frombuffer(choice.best.encoded + choice.best.ancillary, np.uint8)
            for index, choice in chosen.items()})
        (folder / "split.json").write_text(json.dumps({
            f"t{index}": [len(choice.best.encoded), list(original.tensors[index].zero_point),
                          original.tensors[index].quantized_dimension,
                          list(original.tensors[index].scale)]
            for index, choice in chosen.items()}))
        inputs = []
        for info in original.inputs:
            dtype = np.dtype(NUMPY_TYPES[info.dtype])
            limits = np.iinfo(dtype) if dtype.kind in "iu" else None
            inputs.append(rng.integers(limits.min, limits.max, (count, *info.shape[1:]),
                                       endpoint=True).astype(dtype) if limits is not None
                          else rng.random((count, *info.shape[1:]), dtype=np.float32))
        np.savez(folder / "inputs.npz", *inputs)
        done = subprocess.run([sys.executable, "-m", "tflite_export._decode_check", tmp],
                              capture_output=True, text=True, env=_child.env(), timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"compress_micro's verification crashed (exit {done.returncode}): "
                           f"{(done.stderr or done.stdout).strip()[-500:]}")
    answer = json.loads(lines[-1])
    if not answer["ok"]:
        name = original.tensors[answer["index"]].name if answer.get("index") is not None else ""
        raise RuntimeError(f"compress_micro's verification failed{' on ' + name if name else ''}"
                           f": {answer['detail']}. Please report this model.")
