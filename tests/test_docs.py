"""Every `Example:` block in keras_compress docstrings runs as written."""

from __future__ import annotations

import importlib
import re
import textwrap

import pytest

MODULES = [
    "keras_compress.datasets",
    "keras_compress.model_walk",
    "keras_compress.models",
    "keras_compress.pruning.api",
    "keras_compress.pruning.callback",
    "keras_compress.pruning.masks",
    "keras_compress.pruning.wrapper",
    "keras_compress.schedules",
    "keras_compress.strip",
]


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
def test_docstring_example_runs(code):
    exec(compile(code, "<docstring example>", "exec"), {})
