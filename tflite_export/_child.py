"""The environment of the child processes tflite_export starts (`python -m
tflite_export._isolated_convert`, `._micro_probe`, `._decode_check`).

A child must import the tflite_export its parent imported, whether that one
is installed, installed from another checkout, or only on the parent's
`sys.path`: the folder holding this package goes first on the child's
PYTHONPATH.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["env"]


def env(**extra: str) -> dict[str, str]:
    """A copy of `os.environ` whose PYTHONPATH starts with the folder holding
    this tflite_export, updated with `extra`."""
    root = str(Path(__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root + os.pathsep + path if path else root, **extra}
