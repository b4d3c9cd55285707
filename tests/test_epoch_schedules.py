"""Pruning schedules in epochs: placed when `fit` starts, from the steps per
epoch `fit` knows, so `kc.recipe` needs no step arithmetic."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_compress as kc
from keras_compress.pruning.callback import find_pruning_wrappers
from conftest import compile_classifier, small_cnn


def test_epoch_windows_resolve_to_the_step_windows_they_stand_for():
    ramp = kc.PolynomialDecay(0.0, 0.8, begin_epoch=1, end_epoch=5)
    assert ramp.in_epochs and ramp.target_sparsity == 0.8
    assert ramp.resolve(125) == kc.PolynomialDecay(0.0, 0.8, 125, 625, frequency=31)
    assert ramp.resolve(3) == kc.PolynomialDecay(0.0, 0.8, 3, 15, frequency=1)
    assert kc.PolynomialDecay(0.0, 0.8, begin_epoch=0, end_epoch=2, frequency=7).resolve(
        10).frequency == 7
    hold = kc.ConstantSparsity(0.5, begin_epoch=2)
    assert hold.resolve(7) == kc.ConstantSparsity(0.5, begin_step=14, end_step=-1, frequency=7)
    steps = kc.PolynomialDecay(0.0, 0.8, 0, 100)
    assert steps.resolve(10) is steps and not steps.in_epochs
    # Saved and loaded like any schedule.
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(ramp))
    assert restored == ramp and restored.in_epochs


def test_epoch_schedules_refuse_to_be_read_before_fit_places_them():
    ramp = kc.PolynomialDecay(0.0, 0.8, begin_epoch=0, end_epoch=2)
    for read in (lambda: ramp(3), lambda: ramp.should_update(0), lambda: ramp.is_finished(9)):
        with pytest.raises(ValueError, match="in epochs: `PruningCallback` resolves it"):
            read()
    with pytest.raises(ValueError, match="not both"):
        kc.PolynomialDecay(0.0, 0.8, 10, 20, begin_epoch=0, end_epoch=2)
    with pytest.raises(ValueError, match="end_epoch` > `begin_epoch"):
        kc.PolynomialDecay(0.0, 0.8, begin_epoch=3, end_epoch=3)
    with pytest.raises(ValueError, match="needs its window"):
        kc.PolynomialDecay(0.0, 0.8)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        ramp.resolve(0)


def _masks(model):
    return {w.name: w.numpy() for w in model.weights if "mask" in w.name}


def test_recipe_without_a_step_count_equals_the_one_with_it(digits_split):
    """The issue's call, `kc.recipe(student, teacher=t, sparsity=0.8,
    qat_from_epoch=5)`, on real digits: the schedule is placed from `fit`'s
    steps per epoch and trains exactly what the explicit step count trains."""
    (x, y), _ = digits_split
    keras.utils.set_random_seed(0)
    teacher = compile_classifier(small_cnn())
    teacher.fit(x, y, epochs=1, batch_size=64, verbose=0)
    steps = -(-len(x) // 64)
    results = []
    for given in (None, steps):
        keras.utils.set_random_seed(1)
        train, callbacks = kc.recipe(small_cnn(), teacher=teacher, sparsity=0.8,
                                     qat_from_epoch=2, steps_per_epoch=given)
        train.fit(x, y, batch_size=64, epochs=3, verbose=0, callbacks=callbacks)
        wrappers = find_pruning_wrappers(train)
        assert all(not w.schedule.in_epochs for w in wrappers)
        assert wrappers[0].schedule == kc.PolynomialDecay(0.0, 0.8, 0, steps,
                                                          frequency=max(1, steps // 16))
        results.append((_masks(train), kc.strip(train)))
    (masks, student), (masks_given, student_given) = results
    assert masks.keys() == masks_given.keys() and masks
    for name in masks:
        np.testing.assert_array_equal(masks[name], masks_given[name])
    for a, b in zip(student.get_weights(), student_given.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert kc.sparsity(student).overall == pytest.approx(0.8, abs=0.02)


def _fc1_sparsity(model):
    return {r.name: r.sparsity for r in kc.sparsity(model)}["fc1"]


def test_datasets_with_and_without_a_known_length(digits_split, tmp_path):
    (x, y), _ = digits_split
    batched = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)
    model = compile_classifier(kc.prune(small_cnn(), kc.PolynomialDecay(
        0.0, 0.6, begin_epoch=0, end_epoch=1), layers=["fc1"]))
    # Masks are final when epoch `end_epoch` begins, as in `kc.recipe`.
    model.fit(batched, epochs=2, verbose=0, callbacks=[kc.PruningCallback()])
    assert _fc1_sparsity(model) == pytest.approx(0.6, abs=0.01)
    # Saved after fit, the schedule is in steps: a resumed fit carries on from it.
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    [wrapper] = find_pruning_wrappers(loaded)
    assert wrapper.schedule == kc.PolynomialDecay(0.0, 0.6, 0, len(batched),
                                                  frequency=max(1, len(batched) // 16))

    unknown = batched.repeat()  # infinite: fit cannot know an epoch's length
    assert unknown.cardinality() == tf.data.INFINITE_CARDINALITY
    fresh = compile_classifier(kc.prune(small_cnn(), kc.PolynomialDecay(
        0.0, 0.6, begin_epoch=0, end_epoch=1), layers=["fc1"]))
    with pytest.raises(ValueError, match="layer 'fc1' prunes on a schedule in epochs.*"
                                         "pass `steps_per_epoch` to `fit`"):
        fresh.fit(unknown, epochs=1, verbose=0, callbacks=[kc.PruningCallback()])
    fresh.fit(unknown, epochs=2, steps_per_epoch=10, verbose=0,
              callbacks=[kc.PruningCallback()])
    assert _fc1_sparsity(fresh) == pytest.approx(0.6, abs=0.01)


def test_every_callback_on_datasets_of_unknown_length(digits_split):
    """The recipe's callbacks (pruning, QAT switch, distillation schedules) on a
    batched tf.data.Dataset whose length fit cannot know (filtered): with the
    pruning window in steps all run; in epochs, the error names the layer."""
    (x, y), _ = digits_split
    filtered = tf.data.Dataset.from_tensor_slices((x, y)).batch(64).filter(lambda a, b: True)
    assert filtered.cardinality() == tf.data.UNKNOWN_CARDINALITY
    keras.utils.set_random_seed(2)
    teacher = compile_classifier(small_cnn())
    teacher.fit(filtered, epochs=1, verbose=0)
    steps = -(-len(x) // 64)
    train, callbacks = kc.recipe(small_cnn(), teacher=teacher, sparsity=0.5,
                                 steps_per_epoch=steps, qat_from_epoch=1,
                                 temperature=kc.schedules.Linear(4.0, 2.0, 0, 2 * steps))
    assert {type(c).__name__ for c in callbacks} == {
        "PruningCallback", "QuantizationCallback", "DistillationCallback"}
    train.fit(filtered, epochs=2, verbose=0, callbacks=callbacks)
    assert kc.sparsity(kc.strip(train)).overall == pytest.approx(0.5, abs=0.02)
    assert float(train.temperature.numpy()) < 4.0
    in_epochs, callbacks = kc.recipe(small_cnn(), teacher=teacher, sparsity=0.5,
                                     qat_from_epoch=1)
    with pytest.raises(ValueError, match="prunes on a schedule in epochs"):
        in_epochs.fit(filtered, epochs=2, verbose=0, callbacks=callbacks)
