"""`PruningCallback`: advances pruning schedules inside `model.fit`.

When training begins it zeroes the pruned entries again: weights assigned
since the last step (`set_weights`, an EMA swap) may hold values there, and
the training forward pass uses the kernel as it is. Before each training step
it reads the model's training step (`keras_compress.steps`: each
`PruningWrapper` counts it in its saved `pruning_step`), asks the schedule
whether masks are due, and recomputes them. Because the step lives in the
model, a checkpoint taken at any point (ModelCheckpoint, BackupAndRestore,
`model.save`) resumes at the same place, and so does a second `fit` call,
even after a new `compile`. At each epoch end it adds
`sparsity` (over all pruned kernels) and `sparsity/<layer>` to the Keras logs,
and to TensorBoard when `log_dir` is given.

Example:

```python
import keras
import numpy as np
import keras_compress as kc

model = kc.prune(
    keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)]),
    schedule=kc.PolynomialDecay(0.0, 0.75, begin_step=0, end_step=20, frequency=5))
model.compile("adam", "mse")
x, y = np.random.rand(64, 8), np.random.rand(64, 4)
model.fit(x, y, batch_size=8, epochs=3, callbacks=[kc.PruningCallback()])
kc.sparsity(model).overall   # 0.75
```
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from typing import Any

import keras
import numpy as np

from keras_compress import model_walk, steps
from keras_compress.pruning import groups as groups_lib
from keras_compress.pruning import masks as masks_lib
from keras_compress.pruning.wrapper import PruningWrapper

__all__ = ["PruningCallback", "find_pruning_wrappers"]


def find_pruning_wrappers(model: keras.layers.Layer) -> list[PruningWrapper]:
    """Every `PruningWrapper` in `model`, including nested models and the
    layers of subclassed models (found through Keras' layer tracking)."""
    found: dict[int, PruningWrapper] = {}
    for layer in model_walk.walk_layers(model):
        if isinstance(layer, PruningWrapper):
            found.setdefault(id(layer), layer)
    return list(found.values())


@keras.saving.register_keras_serializable(package="keras_compress")
class PruningCallback(keras.callbacks.Callback):
    """Runs the pruning schedules of every `PruningWrapper` during `fit`.

    Steps are the model's training steps (`keras_compress.steps`), saved in
    the model, so `fit` can be called again (or after loading a checkpoint, or
    a new `compile`) and the schedule carries on where it stopped.

    Args:
        log_dir: optional TensorBoard directory for per-layer sparsity scalars.
        per_layer_logs: add `sparsity/<layer>` entries to the Keras logs (and
            progress bar) at epoch end; the overall `sparsity` is always added.
    """

    def __init__(self, log_dir: str | None = None, per_layer_logs: bool = True):
        super().__init__()
        if log_dir is not None:
            try:
                import tensorboard  # noqa: F401
            except ImportError:
                raise ImportError(
                    "PruningCallback(log_dir=...) writes TensorBoard summaries, which "
                    "needs the `tensorboard` package: pip install tensorboard "
                    "(or keras-compress[tensorboard])."
                ) from None
        self.log_dir = log_dir
        self.per_layer_logs = per_layer_logs
        self._wrappers: list[PruningWrapper] = []
        self._writer = None
        self._groups: list[list[PruningWrapper]] = []
        self._clock: steps.StepClock | None = None
        self._warned = False
        self._last_checked: dict[int, int] = {}

    # -------------------------------------------------------------- lifecycle
    def on_train_begin(self, logs=None):
        self._wrappers = find_pruning_wrappers(self.model)
        if not self._wrappers:
            raise ValueError(
                f"PruningCallback: model '{self.model.name}' has no pruned layer. "
                "Wrap it first with `keras_compress.prune(model, ...)`."
            )
        epochs = [w for w in self._wrappers if w.schedule.in_epochs]
        if epochs:
            per_epoch = (self.params or {}).get("steps")
            if not per_epoch:
                raise ValueError(
                    f"PruningCallback: layer '{epochs[0].layer.name}' prunes on a schedule in "
                    f"epochs ({epochs[0].schedule!r}), but this fit does not know its steps "
                    "per epoch (a dataset of unknown or infinite length): pass "
                    "`steps_per_epoch` to `fit`, or give the schedule in steps.")
            for wrapper in epochs:
                # In steps from here on: a model saved mid-fit resumes on them.
                wrapper.schedule = wrapper.schedule.resolve(per_epoch)
        for wrapper in self._wrappers:
            if wrapper.built:
                # Weights set since the last step (set_weights, a restored
                # backup, an EMA swap) may hold values where masks are zero.
                wrapper.apply_masks()
        self._groups = self._global_groups()
        groups_lib.mask_followers(self.model, self._wrappers)
        self._clock = steps.StepClock(self.model)
        start = self._clock.sync()
        self._last_checked = {id(g[0]): start - 1 for g in self._groups}
        if self.log_dir and self._writer is None:
            import tensorflow as tf

            self._writer = tf.summary.create_file_writer(self.log_dir)

    def on_epoch_begin(self, epoch, logs=None):
        self._clock.sync()

    def on_train_batch_begin(self, batch, logs=None):
        # No on_train_batch_end hook, which keeps Keras' asynchronous
        # batch-end dispatch on; the clock needs no read of the device either.
        step = self._clock.tick()
        for group in self._groups:
            head = group[0]
            if not all(w.built for w in group):
                # Subclassed models build on the first traced step: their masks
                # start one step late, at the first batch after building.
                continue
            last = self._last_checked[id(head)]
            # With steps_per_execution > 1 the callback only sees every k-th
            # step: update if the schedule wanted an update at any step since.
            if any(head.schedule.should_update(s) for s in range(last + 1, step + 1)):
                self._update(group, step)
            self._last_checked[id(head)] = step

    def on_epoch_end(self, epoch, logs=None):
        counts = {w.layer.name: _mask_zeros(w) for w in self._wrappers}
        report = {name: zeros / total if total else 0.0 for name, (zeros, total) in counts.items()}
        zeros, total = (sum(c[i] for c in counts.values()) for i in (0, 1))
        overall = zeros / total if total else 0.0
        if logs is not None:
            logs["sparsity"] = overall
            if self.per_layer_logs:
                for name, value in report.items():
                    logs[f"sparsity/{name}"] = value
        if self._writer is not None:
            import tensorflow as tf

            step = steps.read(self.model)
            with self._writer.as_default(step=step):
                tf.summary.scalar("sparsity/overall", overall)
                for name, value in report.items():
                    tf.summary.scalar(f"sparsity/{name}", value)
                for wrapper in self._wrappers:
                    tf.summary.scalar(
                        f"schedule/{wrapper.layer.name}", wrapper.schedule(step)
                    )
            self._writer.flush()

    def on_train_end(self, logs=None):
        step = steps.read(self.model)
        unfinished = [
            w.layer.name
            for w in self._wrappers
            if w.schedule.end_step != -1 and not w.schedule.is_finished(step)
        ]
        if unfinished and not self._warned:
            self._warned = True
            warnings.warn(
                f"PruningCallback: training stopped at step {step}, before the "
                f"pruning schedule ended for {unfinished} (end_step="
                f"{self._wrappers[0].schedule.end_step}); their final sparsity was "
                "not reached. Train longer or lower end_step.",
                stacklevel=2,
            )

    # -------------------------------------------------------------- internals
    def _global_groups(self) -> list[list[PruningWrapper]]:
        """Layer-ranked wrappers alone; global-ranked ones grouped by schedule
        and structure (they share one ranking)."""
        groups: list[list[PruningWrapper]] = []
        shared: dict[Any, list[PruningWrapper]] = defaultdict(list)
        for wrapper in self._wrappers:
            spec = wrapper.channel_group
            if spec is not None:
                # A channel group's sources share one mask; with a global
                # ranking or a MACs/parameter target, all groups share one choice.
                alone = wrapper.ranking == "layer" and spec.target == "channels"
                shared[("channels", wrapper.schedule, spec.target,
                        spec.key if alone else None)].append(wrapper)
            elif wrapper.ranking == "global":
                shared[(wrapper.schedule, str(wrapper.structure))].append(wrapper)
            else:
                groups.append([wrapper])
        return groups + list(shared.values())

    def _update(self, group: list[PruningWrapper], step: int) -> None:
        sparsity = group[0].schedule(step)
        if group[0].channel_group is not None:
            self._update_channels(group, sparsity)
            return
        if len(group) == 1 and group[0].ranking == "layer":
            group[0].update_masks(sparsity)
            return
        weights = [w for wrapper in group for w in wrapper.effective_weights()]
        if group[0].structure.kind == "channel":
            axes = [a for wrapper in group for a in wrapper.output_axes]
            new = masks_lib.global_channel(weights, sparsity, axes)
        else:
            new = masks_lib.global_magnitude(weights, sparsity)
        offset = 0
        for wrapper in group:
            count = len(wrapper.target_names)
            wrapper.assign_masks(new[offset: offset + count])
            offset += count

    def _update_channels(self, wrappers: list[PruningWrapper], sparsity: float) -> None:
        by_key: dict[str, list[PruningWrapper]] = defaultdict(list)
        for wrapper in wrappers:
            by_key[wrapper.channel_group.key].append(wrapper)
        keys = list(by_key)
        masks = groups_lib.select(
            [(by_key[k][0].channel_group, groups_lib.importance(by_key[k])) for k in keys],
            sparsity, wrappers[0].ranking)
        for key, mask in zip(keys, masks):
            for wrapper in by_key[key]:
                wrapper.assign_channel_mask(mask)
        # Every group's mask: a layer after a Concatenate follows several.
        groups_lib.mask_followers(self.model, self._wrappers)

    def get_config(self) -> dict[str, Any]:
        return {"log_dir": self.log_dir, "per_layer_logs": self.per_layer_logs}


def _mask_zeros(wrapper: PruningWrapper) -> tuple[int, int]:
    """(pruned entries, all entries) over the wrapper's kernel masks."""
    zeros = total = 0
    for _, _, mask in wrapper.targets:
        m = mask.numpy()
        zeros += int(np.count_nonzero(m == 0))
        total += m.size
    return zeros, total
