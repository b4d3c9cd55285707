"""Calibration inputs for integer conversion, in each model input's own type
and structure.

A model input is an `InputSpec` (name, shape with the batch, dtype). The data
may be one array (one input), a list of arrays (one per input), a dict of
arrays keyed by input name (KerasHub-style `{"token_ids", "padding_mask"}`),
an iterable of samples (each an array, a list or a dict), or a callable
returning one of those. Token ids stay integers: each sample is cast to its
input's dtype, never to float32.

Example:

```python
import numpy as np
from tflite_export.representative import InputSpec, samples

specs = [InputSpec("token_ids", (1, 8), "int32"), InputSpec("padding_mask", (1, 8), "bool")]
data = {"token_ids": np.arange(16).reshape(2, 8), "padding_mask": np.ones((2, 8), bool)}
rows = samples(data, specs, max_samples=10)
rows[0][0].dtype, rows[0][0].shape        # (dtype('int32'), (1, 8))
```
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

__all__ = ["InputSpec", "samples"]


@dataclasses.dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple            # with the batch dimension
    dtype: str              # numpy name: "float32", "int32", "bool", ...


def _by_name(item: dict, specs: list[InputSpec], where: str) -> list:
    names = [s.name for s in specs]
    missing = [n for n in names if n not in item]
    extra = [k for k in item if k not in names]
    if missing or extra:
        raise ValueError(f"`representative_data` {where} has keys {sorted(item)}, but the "
                         f"model's inputs are {names}"
                         + (f" (missing {missing})" if missing else "")
                         + (f" (unknown {extra})" if extra else "") + ".")
    return [item[n] for n in names]


def samples(representative_data: Any, specs: list[InputSpec], max_samples: int
            ) -> list[list[np.ndarray]]:
    """Normalize `representative_data` to per-sample lists of arrays (batch of
    1), one per input in `specs` order, each of its input's dtype."""
    data = representative_data() if callable(representative_data) else representative_data
    if isinstance(data, dict):
        data = _by_name(data, specs, "dict")
    if hasattr(data, "shape"):  # one array, samples on axis 0
        data = [data]
    if (isinstance(data, (list, tuple)) and len(data) == len(specs)
            and all(hasattr(a, "shape") for a in data)):
        arrays = [np.asarray(a) for a in data]
        counts = {len(a) if a.ndim else -1 for a in arrays}
        if -1 in counts or len(counts) != 1:
            raise ValueError(
                "`representative_data` arrays need one leading sample axis of the same "
                f"length for every input; received shapes {[a.shape for a in arrays]}.")
        rows = [[a[i] for a in arrays] for i in range(min(counts.pop(), max_samples))]
    else:  # an iterable of samples, each an array, a list or a dict of arrays
        rows = []
        for k, item in enumerate(data):
            if isinstance(item, dict):
                item = _by_name(item, specs, f"sample {k}")
            parts = list(item) if isinstance(item, (list, tuple)) else [item]
            rows.append([np.asarray(p) for p in parts])
            if len(rows) >= max_samples:
                break
    if not rows:
        raise ValueError("`representative_data` is empty: give at least one sample.")
    return [_check(k, row, specs) for k, row in enumerate(rows)]


def _check(k: int, row: list[np.ndarray], specs: list[InputSpec]) -> list[np.ndarray]:
    if len(row) != len(specs):
        raise ValueError(f"`representative_data` sample {k} has {len(row)} arrays, but the "
                         f"model has {len(specs)} inputs.")
    checked = []
    for j, (value, spec) in enumerate(zip(row, specs)):
        where = f"`representative_data` sample {k}, input {j} ('{spec.name}')"
        if not (np.issubdtype(value.dtype, np.number) or value.dtype == np.bool_):
            raise ValueError(f"{where}: dtype {value.dtype} is not numeric.")
        want = tuple(spec.shape[1:])
        if value.ndim == len(spec.shape) - 1:  # an unbatched sample
            value = value[None]
        got = value.shape[1:] if value.ndim == len(spec.shape) else value.shape
        if value.ndim != len(spec.shape) or any(
                w is not None and w != g for w, g in zip(want, got)):
            raise ValueError(f"{where}: a sample of shape {tuple(got)} does not match the "
                             f"model input shape {want}.")
        target = np.dtype(spec.dtype)
        if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
            raise ValueError(f"{where} holds NaN or Inf values.")
        if (np.issubdtype(target, np.integer) and np.issubdtype(value.dtype, np.floating)
                and not np.array_equal(value, np.round(value))):
            raise ValueError(f"{where}: input '{spec.name}' takes {target.name} values (e.g. "
                             "token ids), but the sample holds fractions.")
        checked.append(value[:1].astype(target))
    return checked
