"""Running a model in TFLite-Micro's Python interpreter: its outputs, whether
TFLite-Micro can run it at all (errors that name the op), and the smallest
arena it runs in.

The arena is measured with the `tflite-micro` Python interpreter: its recording
allocator's total in a large arena is the candidate, confirmed by allocating
*and invoking* the model at that size and failing 16 bytes below it (a binary
search when the two disagree), so the reported size is one the real
TFLite-Micro runtime accepts. Sizes that may fail are tried in a child process
(`tflite_export._micro_probe`).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from tflite_export import _child
from tflite_export.model import NUMPY_TYPES, TFLiteModel

__all__ = [
    "aligned",
    "arena_works",
    "check_micro_compatible",
    "decompression_bytes",
    "find_arena_size",
    "micro_interpreter",
    "probe_inputs",
    "quiet_native_output",
    "run_micro",
]

_ARENA_ALIGNMENT = 16


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
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tflite_export._micro_probe", str(self._path),
             str(self._decompression)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, env=_child.env())

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
