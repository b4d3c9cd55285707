"""TFLite-Micro artifacts: the model as an aligned C array, an op resolver that
registers exactly the model's ops, and the smallest tensor arena that works.

The arena is measured with the `tflite-micro` Python interpreter: its recording
allocator's total in a large arena is the candidate, confirmed by allocating
*and invoking* the model at that size and failing 16 bytes below it (a binary
search when the two disagree), so the reported size is one the real
TFLite-Micro runtime accepts.

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
micro = tflite_export.export_micro(tfl, "out/", name="digits")
micro.arena_bytes, micro.files   # e.g. 2176, [out/digits_model_data.cc, ...]
```
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from tflite_export.model import NUMPY_TYPES, TFLiteModel, write_atomic

__all__ = [
    "MicroArtifacts",
    "arena_works",
    "decompression_bytes",
    "export_micro",
    "find_arena_size",
    "resolver_method",
    "run_micro",
]

# Op names whose MicroMutableOpResolver method does not follow the CamelCase rule.
_METHOD_EXCEPTIONS = {
    "PADV2": "AddPadV2",
    "SPLIT_V": "AddSplitV",
    "RELU_N1_TO_1": "AddReluN1To1",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
    "BATCH_MATMUL": "AddBatchMatMul",
    "TFLM_DECODE": "AddDecode",
}
_ARENA_ALIGNMENT = 16


def resolver_method(op: str) -> str:
    """`MicroMutableOpResolver` method registering TFLite op `op`
    (CONV_2D -> AddConv2D, BATCH_TO_SPACE_ND -> AddBatchToSpaceNd)."""
    if op in _METHOD_EXCEPTIONS:
        return _METHOD_EXCEPTIONS[op]
    parts = []
    for part in op.split("_"):
        parts.append(part if re.fullmatch(r"\d+D", part) else part.capitalize())
    return "Add" + "".join(parts)


class _Captured:
    text = ""


@contextlib.contextmanager
def quiet_native_output():
    """TFLite-Micro prints errors from C++ to stdout/stderr: keep them out of
    the user's console, and hand them back (`.text`) to build error messages."""
    captured = _Captured()
    saved = []
    with tempfile.TemporaryFile(mode="w+b") as sink:
        try:
            for fd in (1, 2):
                saved.append((fd, os.dup(fd)))
                os.dup2(sink.fileno(), fd)
            yield captured
        finally:
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            captured.text = sink.read().decode(errors="replace")


def micro_interpreter(content: bytes, arena_size: int, decompression: int = 0):
    from tflite_micro.python.tflite_micro import runtime

    return runtime.Interpreter.from_bytes(content, arena_size=arena_size,
                                          alt_decompression_memory_size=decompression)


def aligned(size: int) -> int:
    """`size` bytes rounded up to TFLite-Micro's 16-byte buffer alignment."""
    return -(-size // _ARENA_ALIGNMENT) * _ARENA_ALIGNMENT


def decompression_bytes(tfl: TFLiteModel) -> int:
    """Bytes of the alternate decompression buffer a compressed model needs:
    the largest set of tensors one TFLM_DECODE op writes, each aligned to 16
    bytes (the DECODE ops take turns in one buffer). 0 without DECODE ops."""
    needed = 0
    for op, _, outputs in tfl.operators:
        if op == "TFLM_DECODE":
            needed = max(needed, sum(aligned(
                int(np.prod(t.shape)) * np.dtype(NUMPY_TYPES.get(t.dtype, np.int8)).itemsize)
                for t in outputs))
    return needed


def run_micro(tfl: TFLiteModel, inputs: list[np.ndarray], arena_size: int,
              decompression: int = 0) -> list[np.ndarray]:
    """Invoke the TFLite-Micro interpreter on already-quantized inputs
    (`decompression`: bytes of alternate decompression memory, for models
    holding TFLM_DECODE ops; 0 decodes into the arena)."""
    interpreter = _invoked(tfl, inputs, arena_size, decompression)
    return [interpreter.get_output(i) for i in range(len(tfl.outputs))]


def _invoked(tfl: TFLiteModel, inputs: list[np.ndarray], arena_size: int,
             decompression: int):
    interpreter = micro_interpreter(tfl.content, arena_size, decompression)
    for i, value in enumerate(inputs):
        interpreter.set_input(value, i)
    interpreter.invoke()
    return interpreter


def probe_inputs(tfl: TFLiteModel) -> list[np.ndarray]:
    return [np.zeros(t.shape, dtype=NUMPY_TYPES.get(t.dtype, np.int8)) for t in tfl.inputs]


class _Prober:
    """Runs candidate arena sizes in a child process (`_micro_probe`), restarted
    after every failed allocation: the TFLite-Micro Python interpreter can crash
    its process when created again after one, so the user's process never
    tries a size that may fail."""

    def __init__(self, tfl: TFLiteModel, decompression: int = 0):
        self._decompression = decompression
        self._dir = tempfile.TemporaryDirectory()
        self._path = Path(self._dir.name) / "model.tflite"
        self._path.write_bytes(tfl.content)
        self._proc = None

    def _start(self):
        root = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tflite_export._micro_probe", str(self._path),
             str(self._decompression)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, env=env)

    def _stop(self):
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def works(self, size: int) -> bool:
        if self._proc is None:
            self._start()
        try:
            self._proc.stdin.write(f"{size}\n")
            self._proc.stdin.flush()
            answer = self._proc.stdout.readline().strip()
        except (BrokenPipeError, OSError):
            answer = ""
        if answer != "ok":  # "fail", or the child crashed: start afresh next time
            self._stop()
        return answer == "ok"

    def close(self):
        self._stop()
        self._dir.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def arena_works(tfl: TFLiteModel, size: int) -> bool:
    """Whether TFLite-Micro allocates and invokes the model in `size` bytes
    (probed in a child process, safe for sizes that fail)."""
    with _Prober(tfl) as prober:
        return prober.works(size)


def find_arena_size(tfl: TFLiteModel, upper: int = 64 * 1024 * 1024,
                    decompression: int = 0) -> int:
    """The smallest arena (bytes, a multiple of 16) in which TFLite-Micro both
    allocates and invokes the model; with `decompression` bytes of alternate
    decompression memory, decoded weights live there instead of the arena."""
    recorded = _recorded_arena(tfl, decompression)
    with _Prober(tfl, decompression) as prober:
        # The recording allocator's total is the answer when the model runs in
        # it and not 16 bytes below: two probes, where a search takes about 20
        # (each failed allocation restarts the probing process).
        if recorded and prober.works(aligned(recorded)):
            if not prober.works(aligned(recorded) - _ARENA_ALIGNMENT):
                return aligned(recorded)
            return _search_arena(prober, upper)
        # Too small (an op allocating after the recording; seen with 4-bit
        # FULLY_CONNECTED weights): the answer lies above it.
        return _search_arena(prober, upper, low=aligned(recorded or 0))


def _search_arena(prober: _Prober, upper: int, low: int = 0) -> int:
    """The smallest working arena above `low` (a size that does not work, or
    0): the distance from `low` doubles from 1 KiB until one works, then the
    gap is bisected."""
    step = 1024
    high = low + step
    while not prober.works(high):
        if high >= upper:
            raise ValueError(
                f"TFLite-Micro could not run the model with an arena of {upper:,} "
                "bytes; it is too large for a microcontroller, or an op failed to "
                "prepare.")
        step *= 2
        high = min(upper, low + step)
    while high - low > _ARENA_ALIGNMENT:
        mid = (low + high) // 2 // _ARENA_ALIGNMENT * _ARENA_ALIGNMENT
        if mid <= low:
            break
        if prober.works(mid):
            high = mid
        else:
            low = mid
    return high


def check_micro_compatible(tfl: TFLiteModel) -> None:
    """Raise ValueError naming what TFLite-Micro cannot run: dynamic shapes,
    hybrid (float activations with int8 weights) graphs, ops it lacks, and ops
    whose kernel rejects the model's tensor types (e.g. the ops without a
    16-bit kernel in a 16x8 model), found by loading and invoking it once."""
    _recorded_arena(tfl, 0)


def _recorded_arena(tfl: TFLiteModel, decompression: int) -> int | None:
    """`check_micro_compatible`'s checks, then the arena bytes TFLite-Micro's
    recording allocator reports after allocating and invoking the model in a
    64 MiB arena (None if it prints no total)."""
    dynamic = [t.name for t in tfl.inputs if any(d < 0 for d in t.shape)]
    if dynamic:
        raise ValueError(f"TFLite-Micro needs static shapes; inputs {dynamic} are dynamic. "
                         "Convert with a fixed batch_size.")
    if tfl.mode == "dynamic":
        raise ValueError("TFLite-Micro does not run hybrid ('dynamic' mode) models: convert "
                         "with mode='int8' (or 'float32').")
    if tfl.has_external_buffers:
        raise ValueError("The model stores weights after the flatbuffer (buffer offsets, as "
                         "ai-edge-quantizer writes them), which TFLite-Micro does not read: it "
                         "would run on garbage. Use `tfl.with_inline_buffers()`.")
    try:
        with quiet_native_output() as native:
            _invoked(tfl, probe_inputs(tfl), 64 * 1024 * 1024, decompression).print_allocations()
    except RuntimeError as exc:
        raise ValueError(_micro_failure(tfl, native.text, exc)) from None
    total = re.search(r"Arena allocation total (\d+) bytes", native.text)
    return int(total.group(1)) if total else None


def _micro_failure(tfl: TFLiteModel, text: str, exc: Exception) -> str:
    missing = sorted(set(re.findall(r"Didn't find op for builtin opcode '(\w+)'", text)))
    if missing:
        where = [f"{op} at tensor '{outs[0].name.split(';')[0]}'" for op in missing
                 for name, _, outs in [next(o for o in tfl.operators if o[0] == op)] if outs]
        guard = ("SELECT" in missing or "SELECT_V2" in missing) and "GATHER" in tfl.ops
        hint = (" The SELECT guards an embedding lookup against negative ids: "
                "tflite_export.drop_index_guards(tfl) removes it (token ids are >= 0)."
                if guard else "")
        return (f"TFLite-Micro has no kernel for op(s) {', '.join(missing)} used by this "
                f"model ({'; '.join(where)}); replace the layer that produces them (e.g. "
                f"GELU -> ReLU) or keep this model for LiteRT only.{hint}")
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    node = next((i for i, line in enumerate(lines)
                 if re.match(r"Node \w+ \(number \d+\) failed", line)), None)
    if node is None:
        detail = lines[-1] if lines else str(exc)
        return f"TFLite-Micro cannot load this model (ops: {', '.join(tfl.ops)}): {detail}."
    found = re.match(r"Node (\w+) \(number (\d+)\) failed to (\w+)", lines[node])
    op, number, stage = found.group(1), int(found.group(2)), found.group(3)
    reason = (" ".join(lines[max(0, node - 2):node]) or lines[node]).rstrip(".")
    outputs = tfl.operators[number][2] if number < len(tfl.operators) else []
    where = f" (operator {number}, output tensor '{outputs[0].name}')" if outputs else ""
    sixteen = any(t.dtype == "INT16" for t in tfl.tensors if not t.is_constant)
    advice = (f"TFLite-Micro has no 16-bit (16x8) {op} kernel: convert with mode='int8', "
              "or replace the layer that produces it." if sixteen else
              f"replace the layer that produces {op}, or keep this model for LiteRT only.")
    return (f"TFLite-Micro's {op} kernel failed to {stage}{where}: {reason}. {advice}")


@dataclasses.dataclass(frozen=True)
class MicroArtifacts:
    """What `export_micro` wrote, and the arena it measured."""

    name: str
    arena_bytes: int
    ops: tuple[str, ...]
    model_cc: Path
    model_h: Path
    resolver_h: Path
    model_bytes: int
    # Alternate decompression buffer for TFLM_DECODE'd weights (0: none needed);
    # `arena_bytes` is measured with a buffer of this size.
    decompression_bytes: int = 0

    @property
    def ram_bytes(self) -> int:
        """Arena plus decompression buffer: the RAM the model needs."""
        return self.arena_bytes + self.decompression_bytes

    @property
    def files(self) -> list[Path]:
        return [self.model_cc, self.model_h, self.resolver_h]


def _c_identifier(name: str) -> str:
    ident = re.sub(r"\W", "_", name)
    if not ident or ident[0].isdigit():
        ident = "m_" + ident
    return ident


def _model_cc(ident: str, content: bytes) -> str:
    rows = []
    for i in range(0, len(content), 12):
        rows.append("    " + ", ".join(f"0x{b:02x}" for b in content[i:i + 12]) + ",")
    return (
        f'#include "{ident}_model_data.h"\n\n'
        f"// Generated by tflite_export.export_micro; {len(content)} bytes.\n"
        f"alignas(16) const unsigned char g_{ident}_model_data[] = {{\n"
        + "\n".join(rows)
        + "\n};\n"
    )


def _model_h(ident: str, content: bytes, arena: int, decompression: int) -> str:
    guard = f"{ident.upper()}_MODEL_DATA_H_"
    buffer = "" if not decompression else (
        f"// Compressed weights (TFLM_DECODE) are decoded into this buffer; build\n"
        f"// TFLite-Micro with USE_TFLM_COMPRESSION=1 and, before AllocateTensors():\n"
        f"//   alignas(16) static uint8_t decompression_buffer[g_{ident}_decompression_buffer_size];\n"
        f"//   static const tflite::MicroContext::AlternateMemoryRegion region = {{\n"
        f"//       decompression_buffer, sizeof(decompression_buffer)}};\n"
        f"//   interpreter.SetDecompressionMemory(&region, 1);\n"
        f"// Without it the decoded weights take arena space instead.\n"
        f"constexpr unsigned int g_{ident}_decompression_buffer_size = {decompression};\n")
    with_buffer = " with that buffer" if decompression else ""
    return (
        f"#ifndef {guard}\n#define {guard}\n\n"
        f"// Generated by tflite_export.export_micro.\n"
        f"extern const unsigned char g_{ident}_model_data[];\n"
        f"constexpr unsigned int g_{ident}_model_data_size = {len(content)};\n"
        f"{buffer}"
        f"// Smallest tensor arena measured with the TFLite-Micro interpreter{with_buffer}.\n"
        f"constexpr unsigned int g_{ident}_tensor_arena_size = {arena};\n\n"
        f"#endif  // {guard}\n"
    )


def camel_case(ident: str) -> str:
    """The op resolver's name prefix: "lenet_v2" -> "LenetV2" (`LenetV2OpResolver`,
    `RegisterLenetV2Ops`)."""
    return "".join(part.capitalize() for part in ident.split("_"))


def _resolver_h(ident: str, ops: list[str]) -> str:
    guard = f"{ident.upper()}_OP_RESOLVER_H_"
    camel = camel_case(ident)
    adds = "\n".join(f"  if (resolver.{resolver_method(op)}() != kTfLiteOk) return kTfLiteError;"
                     for op in ops)
    return (
        f"#ifndef {guard}\n#define {guard}\n\n"
        "// Generated by tflite_export.export_micro: registers exactly the ops the\n"
        "// model uses.\n"
        '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"\n\n'
        f"constexpr int k{camel}OpCount = {len(ops)};\n"
        f"using {camel}OpResolver = tflite::MicroMutableOpResolver<{len(ops)}>;\n\n"
        f"inline TfLiteStatus Register{camel}Ops({camel}OpResolver& resolver) {{\n"
        f"{adds}\n  return kTfLiteOk;\n}}\n\n#endif  // {guard}\n"
    )


def export_micro(
    tfl: TFLiteModel | bytes | str | os.PathLike,
    out_dir: str | os.PathLike,
    name: str = "model",
) -> MicroArtifacts:
    """Write `<name>_model_data.cc/.h` and `<name>_op_resolver.h` to `out_dir`.

    The header declares the 16-byte-aligned array, its length and the measured
    arena size (`g_<name>_tensor_arena_size`); the resolver header defines
    `<Name>OpResolver` (`MicroMutableOpResolver<N>`) and `Register<Name>Ops()`
    adding exactly the model's N ops. A model compressed by `compress_micro`
    also gets `g_<name>_decompression_buffer_size` and, in a comment, the lines
    that hand the interpreter that buffer; its arena is measured with it.
    Files are written atomically.

    Raises:
        ValueError: the model cannot run on TFLite-Micro (the message says why).
    """
    if isinstance(tfl, (bytes, bytearray)):
        tfl = TFLiteModel(tfl)
    elif isinstance(tfl, (str, os.PathLike)):
        tfl = TFLiteModel.load(tfl)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"`out_dir` {out} exists and is not a directory.")
    ident = _c_identifier(name)
    decompression = decompression_bytes(tfl)
    arena = find_arena_size(tfl, decompression=decompression)
    out.mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK):
        raise PermissionError(f"`out_dir` {out} is not writable.")
    ops = tfl.ops
    texts = {
        out / f"{ident}_model_data.cc": _model_cc(ident, tfl.content),
        out / f"{ident}_model_data.h": _model_h(ident, tfl.content, arena, decompression),
        out / f"{ident}_op_resolver.h": _resolver_h(ident, ops),
    }
    # Render everything first, then write: a failure leaves no partial set.
    with tempfile.TemporaryDirectory(dir=out) as staging:
        for path, text in texts.items():
            write_atomic(Path(staging) / path.name, text.encode())
        for path in texts:
            os.replace(Path(staging) / path.name, path)
    paths = list(texts)
    return MicroArtifacts(name=ident, arena_bytes=arena, ops=tuple(ops), model_cc=paths[0],
                          model_h=paths[1], resolver_h=paths[2], model_bytes=tfl.size,
                          decompression_bytes=decompression)
