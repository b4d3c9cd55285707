"""Board presets: a Cortex-M part's flash and RAM, and the QEMU board that runs it.

A preset states what it is: the CPU, the flash and RAM the linker script
gives the firmware, and the Arm board `qemu-system-arm` emulates it on (whose
memories are at least that large). `Board.with_memory` makes a part with
other sizes on the same emulated board.

Example:

```python
from tflite_export.firmware import BOARDS

m4 = BOARDS["cortex-m4"]
m4.flash_bytes, m4.ram_bytes            # (1048576, 262144)
small = m4.with_memory(flash_kb=128, ram_kb=32)
```
"""

from __future__ import annotations

import dataclasses

__all__ = ["Board", "BOARDS", "board"]


@dataclasses.dataclass(frozen=True)
class Board:
    """A Cortex-M target.

    Args:
        name: the preset's name (`--target=` on the command line).
        description: the part it stands for, in words.
        cpu: TFLite-Micro's `TARGET_ARCH` for `cortex_m_generic` (also gcc's
            `-mcpu`, e.g. "cortex-m4", "cortex-m55").
        machine: the `qemu-system-arm -M` board that runs the firmware.
        flash_origin, flash_bytes: where code and constants go, and how much.
        ram_origin, ram_bytes: where data, the tensor arena and the stack go.
        vectors_origin: address of the vector table the CPU reads at reset
            (inside flash unless the board boots from elsewhere).
        spare_origin, spare_bytes: emulated memory outside the part's flash
            and RAM, where the run's test inputs are kept, so that they count
            in neither.
        stack_bytes: stack reserved by the linker script.
    """

    name: str
    description: str
    cpu: str
    machine: str
    flash_origin: int
    flash_bytes: int
    ram_origin: int
    ram_bytes: int
    vectors_origin: int = 0
    spare_origin: int = 0
    spare_bytes: int = 0
    stack_bytes: int = 16 * 1024

    def with_memory(self, flash_kb: int | None = None, ram_kb: int | None = None) -> "Board":
        """The same CPU and emulated board with other flash/RAM sizes (KiB)."""
        changes = {}
        if flash_kb is not None:
            changes["flash_bytes"] = int(flash_kb) * 1024
        if ram_kb is not None:
            changes["ram_bytes"] = int(ram_kb) * 1024
        custom = dataclasses.replace(self, name=f"{self.name}-custom", **changes)
        for region, origin, size in (("flash", custom.flash_origin, custom.flash_bytes),
                                     ("RAM", custom.ram_origin, custom.ram_bytes)):
            if origin < custom.spare_origin + custom.spare_bytes and \
                    custom.spare_origin < origin + size:
                raise ValueError(f"{self.name}: {size // 1024} KB of {region} reach past what "
                                 f"the emulated {self.machine} board holds there.")
        return custom

    @property
    def separate_vectors(self) -> bool:
        """True when the reset vector table lies outside the flash region."""
        return not self.flash_origin <= self.vectors_origin < self.flash_origin + self.flash_bytes


_KB, _MB = 1024, 1024 * 1024

BOARDS: dict[str, Board] = {
    b.name: b for b in (
        Board("cortex-m4", "Cortex-M4, 1 MB flash / 256 KB RAM (an STM32F4-class part), "
              "run on Arm's MPS2 AN386 board", cpu="cortex-m4", machine="mps2-an386",
              flash_origin=0x00000000, flash_bytes=1 * _MB,
              ram_origin=0x20000000, ram_bytes=256 * _KB,
              spare_origin=0x21000000, spare_bytes=16 * _MB),
        Board("cortex-m7", "Cortex-M7, 2 MB flash / 1 MB RAM (an STM32H7-class part), "
              "run on Arm's MPS2 AN500 board", cpu="cortex-m7", machine="mps2-an500",
              flash_origin=0x00000000, flash_bytes=2 * _MB,
              ram_origin=0x20000000, ram_bytes=1 * _MB,
              spare_origin=0x60000000, spare_bytes=16 * _MB),
        Board("cortex-m55", "Cortex-M55 with Helium (MVE) and FPU, 2 MB flash / 1 MB RAM, "
              "run on Arm's MPS3 AN547 (Corstone-300) board", cpu="cortex-m55",
              machine="mps3-an547", flash_origin=0x01000000, flash_bytes=2 * _MB,
              ram_origin=0x21000000, ram_bytes=1 * _MB, vectors_origin=0x00000000,
              spare_origin=0x21200000, spare_bytes=2 * _MB),
    )
}

# Cortex-M parts QEMU has no board for (Debian 12's QEMU 7.2): named in the error.
_NO_QEMU_BOARD = {"cortex-m0", "cortex-m0plus", "cortex-m0+", "cortex-m33", "cortex-m85"}


def board(target: str | Board) -> Board:
    """The preset named `target` (or `target` itself when it is a Board)."""
    if isinstance(target, Board):
        return target
    key = str(target).lower().replace("_", "-")
    if key in BOARDS:
        return BOARDS[key]
    if key in _NO_QEMU_BOARD:
        raise ValueError(
            f"target {target!r}: this project runs firmware under qemu-system-arm, whose Arm "
            f"boards here emulate {', '.join(BOARDS)} only; choose one of those "
            "(the model's int8 kernels are the same CMSIS-NN code).")
    raise ValueError(f"unknown target {target!r}; presets: {', '.join(BOARDS)}.")
