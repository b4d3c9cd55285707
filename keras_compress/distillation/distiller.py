"""`Distiller`: Keras 3's `keras.distillation.Distiller`, with schedulable
weights, learned hint projections, and room for compressed students.

What it adds to Keras' own class (which it subclasses, so `fit`, `evaluate`,
`.student` and `.teacher` behave the same):

- `alpha` (the hard-label weight, Keras' `student_loss_weight`) and the
  softmax `temperature` are saved variables, so `DistillationCallback` can
  schedule them during `fit` without retracing, and a reloaded model resumes
  with the values it had.
- The soft loss is Hinton et al.'s: KL(teacher_T || student_T) * T^2, so its
  gradients keep their size as T changes.
- Feature hints (`hints=[(teacher_layer, student_layer)]`, FitNets) with a
  learned linear projection when the widths differ, computed from the same
  student forward pass as the logits: the student runs once per step, so its
  pruning step counters and QAT range statistics advance once.
- The student's own losses (kernel regularizers) are kept in the total.
- The student may carry `prune`/`quantize` wrappers; `kc.strip(distiller)`
  returns the stripped student alone, ready for export.

Example:

```python
import keras
import numpy as np
import keras_compress as kc

x, y = np.random.rand(64, 8).astype("float32"), np.arange(64) % 3
teacher = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, activation="relu"),
                            keras.layers.Dense(3)])
student = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
distiller = kc.Distiller(teacher, student, temperature=4.0, alpha=0.1)
distiller.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
distiller.fit(x, y, epochs=2, verbose=0)
plain_student = kc.strip(distiller)
```
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from keras_compress._wrapper_base import CompressionWrapper

__all__ = ["Distiller"]


def _unreduced(fn, target, pred):
    """Per-sample values of loss `fn` (a `keras.losses.Loss` reduces them, and
    under tf.distribute also divides by the replicas; the total loss is
    divided once, by `_per_replica`)."""
    return fn.call(target, pred) if isinstance(fn, keras.losses.Loss) else fn(target, pred)


def _per_replica(loss):
    """`loss` as Keras' own losses return it under tf.distribute: divided by
    the number of replicas, whose gradients are then summed (so a fit on N
    devices takes the steps one device would)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            loss = loss / replicas
    return loss


def _check_alpha(alpha: Any) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"`alpha` (hard-label weight) must be in [0, 1]; received {alpha!r}.")
    return float(alpha)


def _check_temperature(temperature: Any) -> float:
    if (isinstance(temperature, bool) or not isinstance(temperature, (int, float))
            or not temperature > 0):
        raise ValueError(f"`temperature` must be a positive number; received {temperature!r}.")
    return float(temperature)


def _names(layer: keras.layers.Layer) -> set[str]:
    """A layer's name and the names of the layers wrapped inside it (after
    `prune`/`quantize`, 'conv' lives in 'quant_conv'; with QAT the tapped output
    includes the folded BN and fused activation)."""
    names = {layer.name}
    while isinstance(layer, CompressionWrapper):
        layer = layer.layer
        names.add(layer.name)
    return names


def _tap(model: keras.Model, wanted: list[str], role: str) -> keras.Model:
    """A model returning `model`'s output and the outputs of the `wanted`
    layers, each layer running once per call."""
    if isinstance(model, keras.Sequential):
        # A deserialized Sequential's layers hold one node per rebuild, so
        # `layer.output` may belong to a stale graph: chain the layers afresh.
        first = model.inputs[0]
        inputs = keras.Input(batch_shape=first.shape, dtype=first.dtype)
        x, outputs = inputs, {}
        for layer in model.layers:
            x = layer(x)
            for name in _names(layer):
                outputs[name] = x
        final = x
    else:
        inputs, final = model.inputs, model.outputs[0]
        outputs = {name: layer.output for layer in model.layers for name in _names(layer)}
    missing = [name for name in wanted if name not in outputs]
    if missing:
        raise ValueError(
            f"Hint layer '{missing[0]}' is not a layer of the {role} '{model.name}'. "
            f"Its layers: {[layer.name for layer in model.layers]}."
        )
    return keras.Model(inputs, [final, *(outputs[name] for name in wanted)],
                       name=f"{model.name}_hints")


@keras.saving.register_keras_serializable(package="keras_compress")
class Distiller(keras.distillation.Distiller):
    """Teacher-student training in one `fit`.

    Args:
        teacher: trained `keras.Model` producing logits (frozen here).
        student: `keras.Model` producing logits of the same shape; it may be
            wrapped by `kc.prune` / `kc.quantize`.
        temperature: softmax temperature of the soft loss (T).
        alpha: weight of the hard-label loss; the soft loss gets `1 - alpha`.
        hints: (teacher layer name, student layer name) pairs whose outputs are
            matched with a mean squared error (through a learned Dense
            projection on the last axis when the widths differ).
        hint_weight: weight of the summed hint losses.
    """

    def __init__(
        self,
        teacher: keras.Model,
        student: keras.Model,
        temperature: float = 4.0,
        alpha: float = 0.1,
        hints: Sequence[Sequence[str]] | None = None,
        hint_weight: float = 1.0,
        name: str = "distiller",
        **kwargs: Any,
    ):
        temperature = _check_temperature(temperature)
        alpha = _check_alpha(alpha)
        super().__init__(
            teacher=teacher,
            student=student,
            distillation_losses=keras.distillation.LogitsDistillation(temperature=temperature),
            student_loss_weight=alpha,
            name=name,
            **kwargs,
        )
        self.hints = [tuple(pair) for pair in (hints or [])]
        for pair in self.hints:
            if len(pair) != 2 or not all(isinstance(n, str) for n in pair):
                raise ValueError(
                    "`hints` must be (teacher layer name, student layer name) pairs; "
                    f"received {pair!r}."
                )
        self.hint_weight = float(hint_weight)
        self.initial_temperature, self.initial_alpha = temperature, alpha
        self.temperature = self.add_weight(
            name="temperature", shape=(), trainable=False,
            initializer=keras.initializers.Constant(temperature))
        self.alpha = self.add_weight(
            name="alpha", shape=(), trainable=False,
            initializer=keras.initializers.Constant(alpha))
        self._hint_projections = []
        self._student_with_hints = None
        self._teacher_with_hints = None
        if self.hints:
            self._build_hints()
        self._stash = None
        # Teacher, student and the projections hold all the weights, built: so
        # is the Distiller (BackupAndRestore and load_weights require it).
        if student.built and teacher.built:
            self.built = True

    def _build_hints(self) -> None:
        self._teacher_with_hints = _tap(self.teacher, [t for t, _ in self.hints], "teacher")
        self._student_with_hints = _tap(self.student, [s for _, s in self.hints], "student")
        t_feats = self._teacher_with_hints.outputs[1:]
        s_feats = self._student_with_hints.outputs[1:]
        for (t_name, s_name), t, s in zip(self.hints, t_feats, s_feats):
            if tuple(t.shape[1:-1]) != tuple(s.shape[1:-1]):
                raise ValueError(
                    f"Hint ('{t_name}', '{s_name}'): teacher output {tuple(t.shape)} and "
                    f"student output {tuple(s.shape)} differ in more than the last (channel) "
                    "axis; pick layers with the same spatial size."
                )
            if t.shape[-1] == s.shape[-1]:
                self._hint_projections.append(None)
            else:
                projection = keras.layers.Dense(
                    t.shape[-1], use_bias=False, name=f"hint_projection_{s_name}")
                projection.build(tuple(s.shape))
                self._hint_projections.append(projection)

    # --------------------------------------------------------------- forward
    def call(self, inputs, training=None, **kwargs):
        if self._student_with_hints is None:
            return self.student(inputs, training=training, **kwargs)
        outputs = self._student_with_hints(inputs, training=training, **kwargs)
        # Kept for compute_loss in the same traced step: the student runs once.
        self._stash = outputs[1:]
        return outputs[0]

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y_pred is None:
            y_pred = self(x, training=training)
        hard = 0.0
        if y is not None:
            values = keras.tree.flatten(keras.tree.map_structure(
                lambda fn, target, pred: keras.ops.mean(_unreduced(fn, target, pred)),
                self._student_loss, y, y_pred))
            hard = values[0] if len(values) == 1 else keras.ops.sum(keras.ops.stack(values))
        if self._teacher_with_hints is not None:
            teacher_out, *teacher_feats = self._teacher_with_hints(x, training=False)
        else:
            teacher_out, teacher_feats = self.teacher(x, training=False), []
        t = self.temperature
        soft = keras.ops.mean(keras.losses.kl_divergence(
            keras.ops.softmax(keras.ops.stop_gradient(teacher_out) / t, axis=-1),
            keras.ops.softmax(y_pred / t, axis=-1))) * t * t
        hint = 0.0
        student_feats = self._stash or []
        for projection, s_feat, t_feat in zip(
                self._hint_projections, student_feats, teacher_feats):
            if projection is not None:
                s_feat = projection(s_feat)
            hint = hint + keras.ops.mean(
                keras.ops.square(s_feat - keras.ops.stop_gradient(t_feat)))
        total = self.alpha * hard + (1.0 - self.alpha) * soft + self.hint_weight * hint
        regularization = [keras.ops.sum(loss) for loss in self.student.losses]
        if regularization:
            total = total + keras.ops.sum(keras.ops.stack(regularization))
        self.student_loss_tracker.update_state(hard)
        self.distillation_loss_tracker.update_state(soft)
        self.total_loss_tracker.update_state(total)
        return _per_replica(total)

    # ----------------------------------------------------------------- config
    def get_compile_config(self) -> dict[str, Any] | None:
        """Keras' Distiller compiles its parent with `loss=None`; put the
        student loss back so a loaded model is compiled (and its optimizer
        state restored) like the saved one."""
        config = super().get_compile_config()
        if config is not None and getattr(self, "_student_loss_for_serialization", None):
            config = dict(config)
            config["loss"] = keras.saving.serialize_keras_object(
                self._student_loss_for_serialization)
        return config

    def compile_from_config(self, config: dict[str, Any]) -> None:
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        # Teacher and student are built models, so the variables exist already;
        # building the optimizer now lets its saved state load.
        self.optimizer.build(self.trainable_variables)

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "teacher": keras.saving.serialize_keras_object(self.teacher),
            "student": keras.saving.serialize_keras_object(self.student),
            "temperature": self.initial_temperature,
            "alpha": self.initial_alpha,
            "hints": [list(pair) for pair in self.hints],
            "hint_weight": self.hint_weight,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Distiller":
        config = dict(config)
        config["teacher"] = keras.saving.deserialize_keras_object(config["teacher"])
        config["student"] = keras.saving.deserialize_keras_object(config["student"])
        return cls(**config)
