"""`QuantizationCallback`: when QAT starts, and when BN statistics and
activation ranges freeze, inside one `model.fit`.

Before `start_epoch` the quantizers only observe (activation ranges are
tracked, tensors pass through unchanged), so one run can prune first and
quantize after. Freezing BatchNormalization statistics for the last epochs
makes training use the moving statistics the deployed, folded model uses.

The switches are saved variables, and the callback sets them from the epoch
number at the start of every epoch, so a resumed `fit(initial_epoch=...)`
lands in the same state.

Example:

```python
import keras
import numpy as np
import keras_compress as kc

model = kc.quantize(keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)]))
model.compile("adam", "mse")
x, y = np.random.rand(64, 8), np.random.rand(64, 4)
cb = kc.QuantizationCallback(start_epoch=1, freeze_bn_epoch=2)
model.fit(x, y, epochs=3, verbose=0, callbacks=[cb])
```
"""

from __future__ import annotations

from typing import Any

import keras

from keras_compress import model_walk
from keras_compress.quantization.activations import ActivationQuantizer
from keras_compress.quantization.wrapper import QuantizeWrapper
from keras_compress.schedules import check_int

__all__ = ["QuantizationCallback", "find_quantizers"]


def find_quantizers(model) -> tuple[list[QuantizeWrapper], list[ActivationQuantizer]]:
    """The QAT wrappers and activation quantizers anywhere in `model`."""
    wrappers, activations, seen = [], [], set()
    for layer in model_walk.walk_layers(model):
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        if isinstance(layer, QuantizeWrapper):
            wrappers.append(layer)
        elif isinstance(layer, ActivationQuantizer):
            activations.append(layer)
    return wrappers, activations


def _epoch_arg(value: Any, name: str) -> int | None:
    return None if value is None else check_int(name, value, 0)


@keras.saving.register_keras_serializable(package="keras_compress")
class QuantizationCallback(keras.callbacks.Callback):
    """Switches QAT on at `start_epoch`; freezes BN statistics at
    `freeze_bn_epoch` and activation ranges at `freeze_ranges_epoch`.

    Args:
        start_epoch: first epoch (0-based) trained with fake quantization.
        freeze_bn_epoch: first epoch using moving BN statistics (None: never).
        freeze_ranges_epoch: first epoch with fixed activation ranges (None: never).
    """

    def __init__(
        self,
        start_epoch: int = 0,
        freeze_bn_epoch: int | None = None,
        freeze_ranges_epoch: int | None = None,
    ):
        super().__init__()
        self.start_epoch = _epoch_arg(start_epoch, "start_epoch")
        self.freeze_bn_epoch = _epoch_arg(freeze_bn_epoch, "freeze_bn_epoch")
        self.freeze_ranges_epoch = _epoch_arg(freeze_ranges_epoch, "freeze_ranges_epoch")
        for name in ("freeze_bn_epoch", "freeze_ranges_epoch"):
            value = getattr(self, name)
            if value is not None and value < self.start_epoch:
                raise ValueError(
                    f"`{name}`={value} comes before `start_epoch`={self.start_epoch}; "
                    "freeze after quantization has started."
                )

    def on_train_begin(self, logs=None):
        self._wrappers, self._activations = find_quantizers(self.model)
        if not self._wrappers and not self._activations:
            raise ValueError(
                f"QuantizationCallback: model '{self.model.name}' has no quantized "
                "layer. Wrap it first with `keras_compress.quantize(model)`."
            )

    def on_epoch_begin(self, epoch, logs=None):
        enabled = float(epoch >= self.start_epoch)
        bn = float(self.freeze_bn_epoch is not None and epoch >= self.freeze_bn_epoch)
        ranges = float(self.freeze_ranges_epoch is not None and epoch >= self.freeze_ranges_epoch)
        for w in self._wrappers:
            if w.built:
                w.enabled.assign(enabled)
                w.bn_frozen.assign(bn)
        for q in self._activations:
            if q.built:
                q.enabled.assign(enabled)
                q.frozen.assign(ranges)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["qat"] = float(epoch >= self.start_epoch)

    def get_config(self) -> dict[str, Any]:
        return {
            "start_epoch": self.start_epoch,
            "freeze_bn_epoch": self.freeze_bn_epoch,
            "freeze_ranges_epoch": self.freeze_ranges_epoch,
        }
