"""Every `Example:` block in keras_compress and tflite_export docstrings runs as written."""

from __future__ import annotations

import importlib
import pkgutil
import re
import textwrap

import pytest

# Every module of both packages (entry points excluded: they run programs).
_ENTRY_POINTS = {"keras_compress.demo", "tflite_export.__main__", "tflite_export._micro_probe",
                 "tflite_export._decode_check"}
MODULES = sorted(
    info.name
    for package in ("keras_compress", "tflite_export")
    for info in pkgutil.walk_packages(importlib.import_module(package).__path__, package + ".")
    if info.name not in _ENTRY_POINTS
)


def _examples():
    for name in MODULES:
        module = importlib.import_module(name)
        owners = [module] + [o for o in vars(module).values()
                             if getattr(o, "__module__", None) == name and getattr(o, "__doc__", None)]
        for owner in owners:
            for i, block in enumerate(re.findall(r"```python\n(.*?)```", owner.__doc__ or "", re.S)):
                yield pytest.param(textwrap.dedent(block),
                                   id=f"{name}.{getattr(owner, '__name__', '')}[{i}]")


@pytest.mark.parametrize("code", list(_examples()))
def test_docstring_example_runs(code, tmp_path, monkeypatch):
    from keras_compress import registry

    if "firmware.firmware(" in code:
        # Firmware examples need the Arm toolchain, QEMU and TFLite-Micro's sources.
        from test_firmware import TFLM, _unavailable
        from tflite_export import firmware

        try:
            firmware.find_toolchain()
        except firmware.ToolMissing as exc:
            _unavailable(str(exc))
        if not TFLM.exists():
            _unavailable(f"TensorFlow Lite Micro sources not found at {TFLM}")
        monkeypatch.setenv("TFLM_SOURCE", str(TFLM))
    monkeypatch.chdir(tmp_path)  # examples may write files
    # examples may register layers: the registry is left as it was
    monkeypatch.setattr(registry, "_REGISTERED", list(registry._REGISTERED))
    exec(compile(code, "<docstring example>", "exec"), {})
