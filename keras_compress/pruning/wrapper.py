"""`PruningWrapper`: a layer whose kernels are multiplied by 0/1 masks.

The wrapper keeps the wrapped layer's `call` and hands it substituted
kernels (through `keras.StatelessScope`), so it works for any layer type
without re-implementing its `call`. The pruned kernel entries are kept at
zero in the variables themselves: installing a mask zeroes them, and the mask
is the kernel's variable constraint, which the optimizer applies after every
update (after the layer's own `kernel_constraint`, if any). A training step
therefore computes with the kernel as it is, and pays for the mask once per
step, in the update, not in the forward pass and again in the gradient.
Outside training `call` hands the layer `kernel * mask`, so inference stays
exact even after weights were assigned from outside (`set_weights`, an EMA
swap); `PruningCallback` re-applies the masks when training begins.
Pruned entries are exactly zero in every forward pass; `stripped()` bakes the
masks into a plain copy of the layer.

State (all saved with `model.save("x.keras")`): one non-trainable mask per
pruned kernel, a bias mask when whole channels are pruned, and `pruning_step`,
the model's training step counter (`keras_compress.steps`).

Example:

```python
import keras
import keras_compress as kc

layer = kc.PruningWrapper(keras.layers.Dense(8),
                          schedule=kc.ConstantSparsity(0.5, 0), structure="2:4")
y = layer(keras.ops.ones((1, 16)))
layer.update_masks(0.5)
kc.sparsity(layer)["dense"].sparsity   # 0.5
```
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from keras_compress import model_walk, registry, steps
from keras_compress._wrapper_base import CompressionWrapper, lookup
from keras_compress.pruning import groups as groups_lib
from keras_compress.pruning import masks as masks_lib
from keras_compress.pruning import prunable
from keras_compress.pruning.options import (  # noqa: F401 - part of this module's API
    Structure,
    check_ranking,
    check_schedule,
    default_schedule,
    parse_structure,
)
from keras_compress.schedules import PruningSchedule

__all__ = ["PruningWrapper", "Structure", "parse_structure"]

class _KeepPruned:
    """A variable constraint: `inner` (the layer's own constraint, if any),
    then zero the entries `mask` prunes. Not serialized: the wrapper installs
    it when it builds, and the layer's config keeps only its own constraint."""

    def __init__(self, mask: keras.Variable, inner: Any = None):
        self.mask = mask
        self.inner = inner

    def __call__(self, value):
        if self.inner is not None:
            value = self.inner(value)
        return keras.ops.multiply(value, keras.ops.cast(self.mask, value.dtype))


def _keep_pruned(var: keras.Variable, mask: keras.Variable) -> None:
    """Make `mask` part of `var`'s constraint (once, on top of its own)."""
    inner = var.constraint
    if isinstance(inner, _KeepPruned):
        inner = inner.inner
    var.constraint = _KeepPruned(mask, inner)


@keras.saving.register_keras_serializable(package="keras_compress")
class PruningWrapper(CompressionWrapper):
    """Wraps a Dense/Conv-like layer and prunes its kernel with a schedule.

    Use `keras_compress.prune` to wrap every layer of a model; use this class
    directly to build models with pruned layers (e.g. inside a subclassed model).

    Args:
        layer: the layer to prune (Dense, ConvND, ConvNDTranspose,
            DepthwiseConvND, SeparableConvND, or a layer defining
            `get_prunable_weights()`).
        schedule: a `PruningSchedule`; default `ConstantSparsity` at 0.5 (or at
            1 - N/M for an N:M structure).
        structure: "unstructured" (magnitude), "channel" (whole output
            filters/units, bias included) or "N:M" such as "2:4" (along the input
            axis).
        ranking: "layer" (each layer reaches the schedule's sparsity) or "global"
            (one magnitude ranking over all global-ranked layers; the
            `PruningCallback` coordinates them).
        channel_group: set by `prune(model, structure="channel")`: the layer's
            channel dependency group (`keras_compress.pruning.groups.ChannelSpec`
            or its config), whose sources share one channel mask chosen by the
            `PruningCallback`, so the pruned channels can be removed (`shrink`).
    """

    def __init__(
        self,
        layer: keras.layers.Layer,
        schedule: PruningSchedule | dict | None = None,
        structure: str = "unstructured",
        ranking: str = "layer",
        channel_group: Any = None,
        **kwargs: Any,
    ):
        if not isinstance(layer, keras.layers.Layer):
            raise ValueError(
                f"PruningWrapper wraps a keras.layers.Layer; received {layer!r}."
            )
        if isinstance(layer, CompressionWrapper):
            raise ValueError(
                f"Layer '{layer.name}' is already wrapped ({type(layer).__name__}); "
                "apply keras_compress.prune to the plain layer."
            )
        if not prunable.is_prunable(layer):
            raise ValueError(
                f"Layer '{layer.name}' ({type(layer).__name__}) has no prunable "
                f"kernel. Supported layers: {', '.join(prunable.supported_layers())}, "
                "or any layer defining get_prunable_weights()."
            )
        kwargs.setdefault("name", f"prune_{layer.name}")
        super().__init__(layer, **kwargs)
        self.structure = parse_structure(structure)
        if isinstance(schedule, dict):
            schedule = keras.saving.deserialize_keras_object(schedule)
        if schedule is None:
            schedule = default_schedule(self.structure)
        self.schedule = check_schedule(schedule, self.structure)
        self.ranking = check_ranking(ranking, self.structure)
        self._check_structure_fits_layer()
        if isinstance(channel_group, dict):
            channel_group = groups_lib.ChannelSpec.from_config(channel_group)
        if channel_group is not None and self.structure.kind != "channel":
            raise ValueError(f"Layer '{layer.name}': `channel_group` needs structure='channel'.")
        self.channel_group: groups_lib.ChannelSpec | None = channel_group
        self._targets: list[tuple[str, keras.Variable, keras.Variable]] = []
        self._bias_targets: list[tuple[keras.Variable, keras.Variable]] = []
        self._layouts: list[prunable.PrunableWeight | None] = []

    # ------------------------------------------------------------------ build
    def _check_structure_fits_layer(self) -> None:
        layouts = prunable.prunable_weights(self.layer)
        kind = self.structure.kind
        if kind == "unstructured":
            return
        if not layouts:
            raise ValueError(
                f"Layer '{self.layer.name}' ({type(self.layer).__name__}) only "
                f"supports structure='unstructured'; received '{self.structure}'."
            )
        for layout in layouts:
            if kind == "n:m" and layout.input_axis is None:
                raise ValueError(
                    f"Layer '{self.layer.name}' ({type(self.layer).__name__}) has no "
                    f"input axis to group for N:M pruning (structure="
                    f"'{self.structure}'). Skip it (prune(..., skip=['"
                    f"{self.layer.name}'])) or prune it 'unstructured'."
                )
            if kind == "channel" and layout.output_axes is None:
                raise ValueError(
                    f"Layer '{self.layer.name}' cannot be channel-pruned."
                )  # pragma: no cover - every built-in layout has output axes

    def build(self, input_shape=None):
        super().build(input_shape)
        layer = self.layer
        self._targets, self._bias_targets, self._layouts = [], [], []
        if hasattr(layer, "get_prunable_weights") and not registry.is_registered(layer):
            pairs = [(None, v) for v in layer.get_prunable_weights()]
        else:
            pairs = [
                (layout, prunable.variable(layer, layout.attr))
                for layout in prunable.prunable_weights(layer)
            ]
        for layout, var in pairs:
            if var is None:
                continue
            name = layout.attr if layout else var.name
            if self.structure.kind == "n:m":
                dim = var.shape[layout.input_axis]
                if dim % self.structure.m:
                    raise ValueError(
                        f"Layer '{layer.name}': N:M pruning '{self.structure}' groups "
                        f"{self.structure.m} consecutive input weights, but the input "
                        f"dimension of its {name} {tuple(var.shape)} is {dim}, not a "
                        f"multiple of {self.structure.m}. Skip this layer "
                        f"(prune(..., skip=['{layer.name}'])) or choose another M."
                    )
            mask = self.add_weight(
                name=f"{name}_mask",
                shape=tuple(var.shape),
                dtype=var.dtype,
                initializer="ones",
                trainable=False,
            )
            _keep_pruned(var, mask)
            self._targets.append((name, var, mask))
            self._layouts.append(layout)
            if self.structure.kind == "channel" and layout.bias_attr:
                bias = prunable.variable(layer, layout.bias_attr)
                if bias is not None:
                    bias_mask = self.add_weight(
                        name=f"{layout.bias_attr}_mask",
                        shape=tuple(bias.shape),
                        dtype=bias.dtype,
                        initializer="ones",
                        trainable=False,
                    )
                    _keep_pruned(bias, bias_mask)
                    self._bias_targets.append((bias, bias_mask))
        if not self._targets:
            raise ValueError(
                f"Layer '{layer.name}' ({type(layer).__name__}) has no kernel to prune."
            )
        if self.channel_group is not None:
            # The group's kept channels (1) and removed ones (0), which the
            # layers after the sources (BatchNormalization) are masked with.
            self.channel_mask = self.add_weight(
                name="channel_mask", shape=(self.channel_group.channels,), dtype="float32",
                initializer="ones", trainable=False)
        self.pruning_step = steps.add_counter(self, "pruning_step")

    # ------------------------------------------------------------------- call
    def substitutions(self, training):
        if training:
            steps.count(self.pruning_step)
        inner = self.inner_substitutions(training)
        mapping = []
        for var, mask in [(v, m) for _, v, m in self._targets] + self._bias_targets:
            value = lookup(inner, var)
            if training and value is var:
                continue  # the variable holds its zeros (see the module docstring)
            mapping.append((var, keras.ops.multiply(value, mask)))
        done = {id(var) for var, _ in mapping}
        return mapping + [(var, value) for var, value in inner if id(var) not in done]

    # ------------------------------------------------------------------ masks
    @property
    def targets(self) -> list[tuple[str, keras.Variable, keras.Variable]]:
        """(attribute name, kernel variable, its mask variable) per pruned kernel."""
        return list(self._targets)

    @property
    def bias_targets(self) -> list[tuple[keras.Variable, keras.Variable]]:
        """(bias variable, its mask variable) of the kernels pruned by whole channels."""
        return list(self._bias_targets)

    @property
    def target_names(self) -> list[str]:
        """Names of the pruned kernels, e.g. ['kernel']."""
        return [name for name, _, _ in self._targets]

    @property
    def output_axes(self) -> list[tuple[int, ...]]:
        return [layout.output_axes if layout else (-1,) for layout in self._layouts]

    def effective_weights(self) -> list[np.ndarray]:
        """The kernels as the layer sees them (`kernel * mask`), checked finite."""
        result = []
        for name, var, mask in self._targets:
            value = np.asarray(var.numpy()) * np.asarray(
                mask.numpy()
            )
            if not np.all(np.isfinite(value)):
                raise ValueError(
                    f"Layer '{self.layer.name}': its {name} holds NaN or Inf values, "
                    "so no magnitude ranking is possible. Training has diverged: "
                    "lower the learning rate or check the inputs."
                )
            result.append(value)
        return result

    def compute_masks(self, sparsity: float) -> list[np.ndarray]:
        """Masks at `sparsity` by this layer's own ranking."""
        weights = self.effective_weights()
        kind = self.structure.kind
        if kind == "n:m":
            return [
                masks_lib.n_of_m(w, self.structure.n, self.structure.m,
                                 layout.input_axis, sparsity)
                for w, layout in zip(weights, self._layouts)
            ]
        if kind == "channel":
            return [
                masks_lib.channel(w, sparsity, axes)
                for w, axes in zip(weights, self.output_axes)
            ]
        return [masks_lib.magnitude(w, sparsity) for w in weights]

    def assign_masks(self, new_masks: list[np.ndarray]) -> None:
        """Install `new_masks` and zero the pruned latent weights too, so that a
        saved checkpoint and the optimizer both see them as pruned."""
        if len(new_masks) != len(self._targets):
            raise ValueError(
                f"Layer '{self.layer.name}' prunes {len(self._targets)} kernels; "
                f"received {len(new_masks)} masks."
            )
        new_masks = [np.asarray(new, dtype=mask.dtype)
                     for (_, _, mask), new in zip(self._targets, new_masks)]
        for (name, _, mask), new in zip(self._targets, new_masks):
            if new.shape != tuple(mask.shape):
                raise ValueError(
                    f"Layer '{self.layer.name}': mask for {name} has shape "
                    f"{new.shape}, expected {tuple(mask.shape)}."
                )
        for (_, _, mask), new in zip(self._targets, new_masks):
            mask.assign(new)
        for (_, bias_mask), new, axes in zip(self._bias_targets, new_masks, self.output_axes):
            other = tuple(a for a in range(new.ndim) if a not in {x % new.ndim for x in axes})
            bias_mask.assign(np.max(new, axis=other).reshape(-1).astype(bias_mask.dtype))
        self.apply_masks()

    def apply_masks(self) -> None:
        """Zero the pruned entries of the kernels (and biases) again: after
        their values were assigned from outside the optimizer."""
        for _, var, mask in self._targets:
            var.assign(var.numpy() * mask.numpy())
        for bias, bias_mask in self._bias_targets:
            bias.assign(bias.numpy() * bias_mask.numpy())

    def assign_channel_mask(self, keep: np.ndarray) -> None:
        """Keep exactly the output channels where `keep` is 1 (the group's
        shared mask), in every kernel and bias this layer prunes."""
        keep = np.asarray(keep, np.float32).reshape(-1)
        masks = []
        for (_, var, _), axes in zip(self._targets, self.output_axes):
            axis = axes[0] % len(var.shape)
            shape = [1] * len(var.shape)
            shape[axis] = keep.size
            masks.append(np.broadcast_to(keep.reshape(shape), tuple(var.shape)))
        self.assign_masks(masks)
        if self.channel_group is not None:
            self.channel_mask.assign(keep)

    def update_masks(self, sparsity: float) -> None:
        """Recompute and install the masks at `sparsity` (per-layer ranking)."""
        self.assign_masks(self.compute_masks(sparsity))

    # ------------------------------------------------------------------ strip
    def stripped(self) -> keras.layers.Layer:
        plain = model_walk.copy_layer(self.layer)
        for (name, var, mask), layout in zip(self._targets, self._layouts):
            attr = layout.attr if layout else name
            target = prunable.variable(plain, attr) if layout else _same_path(plain, var)
            target.assign(var.numpy() * mask.numpy())
        for (bias, bias_mask), layout in zip(self._bias_targets, self._layouts):
            target = prunable.variable(plain, layout.bias_attr)
            target.assign(
                bias.numpy() * bias_mask.numpy()
            )
        return plain

    # ----------------------------------------------------------------- config
    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            schedule=keras.saving.serialize_keras_object(self.schedule),
            structure=str(self.structure),
            ranking=self.ranking,
        )
        if self.channel_group is not None:
            config["channel_group"] = self.channel_group.get_config()
        return config


def _same_path(layer: keras.layers.Layer, var: keras.Variable) -> keras.Variable:
    """The variable of `layer` in the position `var` holds in the original."""
    suffix = var.path.split("/")[-1]
    for candidate in layer.weights:
        if candidate.path.split("/")[-1] == suffix:
            return candidate
    raise ValueError(f"Layer '{layer.name}' has no weight named {suffix!r}.")
