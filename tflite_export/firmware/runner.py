"""Build a model into Cortex-M firmware, run it under QEMU, and report.

`build_firmware` writes the project (`export_micro`'s files + main, startup,
linker script, inputs), compiles what it needs of TFLite-Micro and links;
`run_firmware` runs the ELF in `qemu-system-arm` with semihosting and an
instruction-counting plugin, and checks the outputs against the `tflite-micro`
Python interpreter bit for bit. `firmware` does all of it.

Example:

```python
import os
import keras
import numpy as np
import tflite_export
from tflite_export import firmware

x = np.random.default_rng(0).random((64, 8, 8, 1), dtype="float32")
model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                          keras.layers.Flatten(), keras.layers.Dense(10)])
tfl = tflite_export.convert(model, mode="int8", representative_data=x)
tflm = os.environ.get("TFLM_SOURCE", "tflite-micro/")   # TFLite-Micro sources
result = firmware.firmware(tfl, "fw/", target="cortex-m4", tflm=tflm, inputs=x[:4])
result.bit_exact, result.flash_bytes, result.instructions_per_inference   # True, ...
```
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from tflite_export.firmware import project as project_lib
from tflite_export.firmware import tflm as tflm_lib
from tflite_export.firmware.boards import Board, board as board_of
from tflite_export.micro import MicroArtifacts, export_micro, resolver_method
from tflite_export.micro_run import aligned, run_micro
from tflite_export.model import NUMPY_TYPES, TFLiteModel

__all__ = ["Firmware", "FirmwareResult", "FirmwareError", "build_firmware", "run_firmware",
           "firmware", "report"]

_PLUGIN_SOURCE = Path(__file__).with_name("insn_count.c")


class FirmwareError(RuntimeError):
    """The firmware built but did not run as the interpreter does."""


@dataclasses.dataclass(frozen=True)
class Firmware:
    """A linked firmware and what went into it."""

    elf: Path
    board: Board
    kernels: str
    model: TFLiteModel = dataclasses.field(repr=False)
    micro: MicroArtifacts
    sizes: project_lib.Sizes
    samples: tuple[tuple[np.ndarray, ...], ...]
    library_objects_compiled: int
    toolchain: str


@dataclasses.dataclass(frozen=True)
class FirmwareResult:
    """One firmware run: what it printed, measured, and how it compares."""

    target: str
    description: str
    kernels: str
    fits: bool
    flash_bytes: int            # text + rodata + data
    ram_bytes: int              # data + bss + heap + stack + the arena the device used
    model_bytes: int
    arena_used_bytes: int       # the tensor arena the interpreter on the device used
    instructions_per_inference: int | None   # median over the inputs (QEMU guest instructions)
    instructions: tuple[int, ...]
    bit_exact: bool             # outputs equal to the tflite-micro Python interpreter's
    samples: int
    outputs: tuple[tuple[np.ndarray, ...], ...] = dataclasses.field(repr=False, default=())
    elf: Path | None = None

    def row(self) -> dict:
        """The report row: fits, flash, RAM, instructions."""
        return {"target": self.target, "kernels": self.kernels, "fits": self.fits,
                "flash_bytes": self.flash_bytes, "ram_bytes": self.ram_bytes,
                "model_bytes": self.model_bytes, "arena_used_bytes": self.arena_used_bytes,
                "instructions_per_inference": self.instructions_per_inference,
                "bit_exact": self.bit_exact}


def _load(tfl) -> TFLiteModel:
    if isinstance(tfl, TFLiteModel):
        return tfl
    if isinstance(tfl, (bytes, bytearray)):
        return TFLiteModel(bytes(tfl))
    return TFLiteModel.load(tfl)


def _samples(tfl: TFLiteModel, inputs) -> list[list[np.ndarray]]:
    """Inputs as the model takes them: one list per sample, one array per
    model input, in the input's own type (float data is quantized with the
    input's scale and zero point)."""
    if inputs is None:
        rng = np.random.default_rng(0)
        return [[_random(t, rng) for t in tfl.inputs] for _ in range(2)]
    arrays = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if len(arrays) != len(tfl.inputs):
        raise ValueError(f"`inputs`: the model has {len(tfl.inputs)} input(s); received "
                         f"{len(arrays)} array(s).")
    count = None
    converted = []
    for index, (info, x) in enumerate(zip(tfl.inputs, arrays)):
        x = np.asarray(x)
        want = NUMPY_TYPES.get(info.dtype, np.int8)
        if tuple(x.shape[1:]) != tuple(info.shape[1:]):
            raise ValueError(f"`inputs` {index}: samples of shape {x.shape[1:]}, but input "
                             f"'{info.name}' takes {tuple(info.shape[1:])} (samples on axis 0).")
        if np.issubdtype(x.dtype, np.floating) and not np.issubdtype(want, np.floating):
            x = tfl.quantize_input(x, index)
        converted.append(x.astype(want))
        count = len(x) if count is None else min(count, len(x))
    if not count:
        raise ValueError("`inputs` holds no sample (samples on axis 0); give at least one, or "
                         "None for two random ones.")
    return [[a[i:i + 1] for a in converted] for i in range(count)]


def _random(info, rng) -> np.ndarray:
    dtype = NUMPY_TYPES.get(info.dtype, np.int8)
    if np.issubdtype(dtype, np.integer):
        limits = np.iinfo(dtype)
        return rng.integers(limits.min, limits.max, size=info.shape, endpoint=True).astype(dtype)
    return rng.standard_normal(info.shape).astype(dtype)


def build_firmware(tfl, out_dir, target: str | Board = "cortex-m4", tflm=None,
                   inputs=None, kernels: str = "cmsis_nn", name: str = "model",
                   toolchain=None, progress: bool = True) -> Firmware:
    """Write and build a firmware project for `target` in `out_dir`.

    Args:
        tfl: a `TFLiteModel`, `.tflite` bytes or path (int8, as `export_micro` takes).
        out_dir: the project folder (created).
        target: a preset name (`tflite_export.firmware.BOARDS`) or a `Board`.
        tflm: TensorFlow Lite Micro sources: a folder or an archive of one, with
            its third-party downloads (`$TFLM_SOURCE` when None).
        inputs: samples to run (arrays with samples on axis 0, one per model
            input; float data is quantized); None: two random samples.
        kernels: "cmsis_nn" (Arm's optimised kernels) or "reference".
        name: C identifier prefix of the model's files.
        toolchain: bin/ folder of the Arm GNU toolchain (else PATH).

    Raises:
        ToolMissing: a program is missing (the message names its package).
        FitError: the firmware exceeds the board's flash or RAM (by how much).
        ValueError: an op has no TFLite-Micro kernel for the target.
    """
    if kernels not in ("cmsis_nn", "reference"):
        raise ValueError(f"`kernels` must be 'cmsis_nn' or 'reference'; received {kernels!r}.")
    tfl = _load(tfl)
    board = board_of(target)
    tools = tflm_lib.find_toolchain(toolchain, need_qemu=False)
    source = tflm or os.environ.get("TFLM_SOURCE")
    if not source:
        raise ValueError("`tflm`: give the TensorFlow Lite Micro source tree (a folder or an "
                         "archive of one, with its third-party downloads), or set $TFLM_SOURCE.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    samples = _samples(tfl, inputs)
    micro = export_micro(tfl, out, name=name)
    root = tflm_lib.tflm_root(source)
    registered = tflm_lib.registrations(root, [resolver_method(op) for op in micro.ops])
    library = tflm_lib.build_library(root, board.cpu, registered, kernels=kernels,
                                     tools=tools, progress=progress)
    project_lib.write_project(out, micro.name, micro.decompression_bytes, samples, board)
    try:
        elf = project_lib.link(out, library, tools, board)
    except project_lib.LinkError:
        # The kernel selection missed a helper (a file it could not tell the
        # kernels need): the whole library, then.
        library = tflm_lib.build_library(root, board.cpu, registered, kernels=kernels,
                                         tools=tools, progress=progress, all_kernels=True)
        elf = project_lib.link(out, library, tools, board)
    return Firmware(elf=elf, board=board, kernels=kernels, model=tfl, micro=micro,
                    sizes=project_lib.sizes(elf, tools, micro.name),
                    samples=tuple(tuple(s) for s in samples),
                    library_objects_compiled=library.compiled, toolchain=tools.version())


def _plugin(tools: tflm_lib.Toolchain) -> Path:
    """The instruction-counting QEMU plugin, built once per source version."""
    source = _PLUGIN_SOURCE.read_bytes()
    target = tflm_lib.cache_dir() / f"insn_count-{hashlib.sha256(source).hexdigest()[:12]}.so"
    if not target.exists():
        tmp = target.with_suffix(f".tmp{os.getpid()}.so")
        proc = subprocess.run([tools.host_cc, "-shared", "-fPIC", "-O2", "-o", str(tmp),
                               str(_PLUGIN_SOURCE)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"building the QEMU plugin failed: {proc.stderr.strip()}")
        os.replace(tmp, target)
    return target


def run_firmware(fw: Firmware, timeout: float = 600.0, toolchain=None,
                 count_instructions: bool = True) -> FirmwareResult:
    """Run `fw` under qemu-system-arm and compare with the tflite-micro interpreter."""
    tools = tflm_lib.find_toolchain(toolchain, need_qemu=True)
    elf = fw.elf
    with tempfile.TemporaryDirectory() as tmp:
        counts_file = Path(tmp) / "counts.txt"
        command = [tools.qemu, "-M", fw.board.machine, "-nographic", "-monitor", "none",
                   "-serial", "none", "-semihosting-config", "enable=on,target=native",
                   "-kernel", str(elf)]
        if count_instructions:
            begin = project_lib.symbol_address(elf, tools, "kc_invoke_begin")
            end = project_lib.symbol_address(elf, tools, "kc_invoke_end")
            command += ["-plugin", f"{_plugin(tools)},begin={begin:#x},end={end:#x},"
                        f"out={counts_file}"]
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise FirmwareError(f"the firmware ran for more than {timeout:.0f} s under "
                                f"{fw.board.machine} without finishing.") from None
        counts = []
        if count_instructions and counts_file.exists():
            counts = [int(line) for line in counts_file.read_text().splitlines()
                      if line.strip().isdigit()]
    text = proc.stdout
    missing = re.search(r"Failed to resize buffer\. Requested: (\d+), available (\d+), "
                        r"missing: (\d+)", text)
    if missing and "KC_ERROR allocate" in text:
        over = int(missing.group(3))
        raise project_lib.FitError(
            f"the model does not fit {fw.board.name} ({fw.board.description}): section .arena "
            f"does not fit: RAM overflows by {over:,} bytes (the tensor arena needs "
            f"{over:,} bytes more than the {fw.board.ram_bytes:,} bytes of RAM leave after "
            f".data, .bss, heap and stack).", "RAM", over, ".arena")
    error = [line for line in text.splitlines() if line.startswith("KC_ERROR")]
    if error or "KC_DONE" not in text:
        tail = "\n".join(text.splitlines()[-15:] + proc.stderr.splitlines()[-5:])
        raise FirmwareError(f"the firmware on {fw.board.name} stopped "
                            f"({error[0] if error else 'without finishing'}); its output:\n{tail}")
    arena_used = int(next(line.split()[1] for line in text.splitlines()
                          if line.startswith("KC_ARENA")))
    outputs = _parse_outputs(text, fw)
    reference = _reference(fw)
    exact = all(np.array_equal(a, b) for got, want in zip(outputs, reference)
                for a, b in zip(got, want)) and len(outputs) == len(reference)
    median = int(np.median(counts)) if counts else None
    return FirmwareResult(
        target=fw.board.name, description=fw.board.description, kernels=fw.kernels, fits=True,
        flash_bytes=fw.sizes.flash, ram_bytes=fw.sizes.static_ram + aligned(arena_used),
        model_bytes=fw.sizes.model, arena_used_bytes=arena_used,
        instructions_per_inference=median, instructions=tuple(counts), bit_exact=exact,
        samples=len(outputs), outputs=tuple(tuple(o) for o in outputs), elf=elf)


def _parse_outputs(text: str, fw: Firmware) -> list[list[np.ndarray]]:
    tfl = fw.model
    rows: dict[int, dict[int, np.ndarray]] = {}
    for line in text.splitlines():
        if line.startswith("KC_OUT"):
            _, sample, index, data = line.split()
            info = tfl.outputs[int(index)]
            dtype = NUMPY_TYPES.get(info.dtype, np.int8)
            rows.setdefault(int(sample), {})[int(index)] = np.frombuffer(
                bytes.fromhex(data), dtype=dtype).reshape(info.shape)
    return [[rows[s][o] for o in sorted(rows[s])] for s in sorted(rows)]


def _reference(fw: Firmware) -> list[list[np.ndarray]]:
    tfl = fw.model
    return [run_micro(tfl, list(sample), fw.micro.arena_bytes, fw.micro.decompression_bytes)
            for sample in fw.samples]



def firmware(tfl, out_dir, target: str | Board = "cortex-m4", tflm=None, inputs=None,
             kernels: str = "cmsis_nn", name: str = "model", toolchain=None,
             timeout: float = 600.0, progress: bool = True) -> FirmwareResult:
    """Build (`build_firmware`) and run (`run_firmware`) in one call; the
    errors are theirs (`FitError` when the board is too small)."""
    fw = build_firmware(tfl, out_dir, target=target, tflm=tflm, inputs=inputs, kernels=kernels,
                        name=name, toolchain=toolchain, progress=progress)
    return run_firmware(fw, timeout=timeout, toolchain=toolchain)


def report(results: list[FirmwareResult]) -> str:
    """A Markdown table, one row per result: fits, flash, RAM, instructions."""
    lines = ["| target | kernels | fits | flash (B) | RAM (B) | model (B) | arena used (B) "
             "| instructions / inference | bit-exact |", "|" + "---|" * 9]
    for r in results:
        count = "n/a" if r.instructions_per_inference is None else \
            f"{r.instructions_per_inference:,}"
        lines.append(f"| {r.target} | {r.kernels} | {'yes' if r.fits else 'no'} | "
                     f"{r.flash_bytes:,} | {r.ram_bytes:,} | {r.model_bytes:,} | "
                     f"{r.arena_used_bytes:,} | {count} | {'yes' if r.bit_exact else 'NO'} |")
    lines.append("")
    lines.append("Instructions are QEMU guest instructions per `Invoke()` (QEMU models no "
                 "cycles): a repeatable proxy for latency, not milliseconds.")
    return "\n".join(lines) + "\n"
