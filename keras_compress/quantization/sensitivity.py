"""Per-layer bit widths from measured sensitivity.

`sensitivity(model, x, y)` moves one Dense/Conv kernel at a time to 4 bits
(the grid QAT and the converter use: per output channel for convolutions, per
tensor for Dense), all other kernels at 8 bits, and measures the accuracy lost
on held-out data. `choose_bits` then turns layers to 4 bits, cheapest first
and largest first among equals, while the accuracy of the combination stays
within `max_drop` of the all-8-bit model: the result is a `weight_bits` dict
for `kc.quantize`.

Example:

```python
import keras
import numpy as np
import keras_compress as kc

x, y = np.random.rand(200, 16).astype("float32"), np.arange(200) % 4
model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(64, activation="relu"),
                          keras.layers.Dense(4)])
report = kc.quantization.sensitivity(model, x, y)
print(report.to_markdown())
bits = report.choose_bits(max_drop=0.01)     # e.g. {'dense': 4, 'dense_1': 8}
qat = kc.quantize(model, weight_bits=bits)
```
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import numpy as np

from keras_compress import model_walk
from keras_compress._wrapper_base import CompressionWrapper
from keras_compress.pruning import prunable
from keras_compress.quantization import quantizers
from keras_compress.quantization.kernel import per_tensor_for
from keras_compress.quantization.wrapper import is_quantizable

__all__ = ["LayerSensitivity", "SensitivityReport", "sensitivity"]


@dataclasses.dataclass(frozen=True)
class LayerSensitivity:
    """Accuracy lost when one layer's kernel alone goes to `bits`."""

    name: str
    kind: str
    params: int
    bits: int
    accuracy: float
    drop: float  # baseline accuracy - accuracy


@dataclasses.dataclass
class SensitivityReport:
    """Per-layer sensitivity, plus what is needed to evaluate combinations."""

    baseline: float  # accuracy with every kernel on its 8-bit grid
    layers: list[LayerSensitivity]
    _evaluate: Any = dataclasses.field(repr=False, default=None)
    chosen: dict[str, int] | None = None
    chosen_accuracy: float | None = None

    def choose_bits(self, max_drop: float = 0.01) -> dict[str, int]:
        """4 bits for as many weights as possible, cheapest layers first, while
        the measured accuracy stays >= baseline - `max_drop`."""
        if not isinstance(max_drop, (int, float)) or isinstance(max_drop, bool) or max_drop < 0:
            raise ValueError(f"`max_drop` must be a non-negative number; received {max_drop!r}.")
        low = self.layers[0].bits if self.layers else 4
        chosen = {r.name: 8 for r in self.layers}
        accuracy = self.baseline
        for row in sorted(self.layers, key=lambda r: (round(r.drop, 4), -r.params)):
            trial = {**chosen, row.name: low}
            trial_accuracy = self._evaluate(trial)
            if trial_accuracy >= self.baseline - max_drop:
                chosen, accuracy = trial, trial_accuracy
        self.chosen, self.chosen_accuracy = chosen, accuracy
        return dict(chosen)

    @property
    def low_bit_fraction(self) -> float:
        """Fraction of kernel weights at fewer than 8 bits in `chosen`."""
        if not self.chosen:
            return 0.0
        total = sum(r.params for r in self.layers)
        return sum(r.params for r in self.layers if self.chosen[r.name] < 8) / total

    def to_markdown(self) -> str:
        lines = ["| layer | type | weights | accuracy at 4 bits alone | cost (points) | chosen bits |",
                 "|---|---|---:|---:|---:|---:|"]
        for r in self.layers:
            chosen = "-" if self.chosen is None else str(self.chosen[r.name])
            lines.append(f"| {r.name} | {r.kind} | {r.params:,} | {r.accuracy:.4f} | "
                         f"{100 * r.drop:+.2f} | {chosen} |")
        lines.append(f"| **all 8-bit** | | | {self.baseline:.4f} | | |")
        if self.chosen is not None:
            lines.append(f"| **chosen mix** | | {100 * self.low_bit_fraction:.1f} % of weights "
                         f"at 4 bits | {self.chosen_accuracy:.4f} | "
                         f"{100 * (self.baseline - self.chosen_accuracy):+.2f} | |")
        return "\n".join(lines)


def sensitivity(model: keras.Model, x: Any, y: Any, *, bits: int = 4,
                batch_size: int = 256) -> SensitivityReport:
    """Measure each Dense/Conv layer's accuracy cost at `bits` (see module doc).

    `model` is a trained float model (or a stripped one); it is left unchanged.
    `x`, `y` are held-out samples and integer labels; accuracy is top-1 of the
    model's outputs.
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model; received {type(model).__name__}.")
    quantizers.weight_levels(bits)
    x, y = np.asarray(x), np.asarray(y).reshape(-1)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"`x` and `y` must hold the same, non-zero number of samples; "
                         f"received {len(x)} and {len(y)}.")
    layers = [layer for layer in model_walk.iter_layers(model)
              if is_quantizable(layer) and not isinstance(layer, CompressionWrapper)]
    if not layers:
        raise ValueError(f"Model '{model.name}' has no Dense/Conv layer to quantize.")
    kernels = {layer.name: prunable.variable(layer, "kernel") for layer in layers}
    originals = {name: var.numpy() for name, var in kernels.items()}

    def grid(layer, n_bits):
        axes = () if per_tensor_for(layer, n_bits) else prunable.prunable_weights(layer)[0].output_axes
        return quantizers.quantize_weight_np(originals[layer.name], axes, n_bits)

    def evaluate(assignment: dict[str, int]) -> float:
        try:
            for layer in layers:
                kernels[layer.name].assign(grid(layer, assignment.get(layer.name, 8)))
            pred = model.predict(x, batch_size=batch_size, verbose=0)
        finally:
            for name, var in kernels.items():
                var.assign(originals[name])
        return float(np.mean(np.argmax(pred, axis=-1) == y))

    baseline = evaluate({})
    rows = []
    for layer in layers:
        accuracy = evaluate({layer.name: bits})
        rows.append(LayerSensitivity(layer.name, type(layer).__name__,
                                     int(np.prod(kernels[layer.name].shape)), bits,
                                     accuracy, baseline - accuracy))
    return SensitivityReport(baseline, rows, evaluate)
