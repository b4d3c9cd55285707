"""Cortex-M firmware from a model: build it, run it under QEMU, measure it.

`firmware(tfl, out_dir, target="cortex-m4", tflm=...)` writes a complete
project (startup, linker script with the part's flash and RAM, `main` running
the model on given inputs, the exact op resolver), compiles only the
TFLite-Micro kernels the model uses (CMSIS-NN or reference) with the Arm GNU
toolchain, runs the ELF in `qemu-system-arm`, and returns flash, RAM, the
arena the device used, instructions per inference (a QEMU plugin counts guest
instructions; QEMU models no cycles, so this is a repeatable proxy, not
latency) and whether the outputs equal the `tflite-micro` interpreter's bit
for bit.
"""

from tflite_export.firmware.boards import BOARDS, Board, board
from tflite_export.firmware.project import FitError, Sizes
from tflite_export.firmware.runner import (
    Firmware,
    FirmwareError,
    FirmwareResult,
    build_firmware,
    firmware,
    report,
    run_firmware,
)
from tflite_export.firmware.tflm import ToolMissing, find_toolchain

__all__ = ["BOARDS", "Board", "board", "FitError", "Sizes", "Firmware", "FirmwareError",
           "FirmwareResult", "build_firmware", "firmware", "report", "run_firmware", "ToolMissing",
           "find_toolchain"]
