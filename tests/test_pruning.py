"""Pruning during `model.fit` on real data: sparsity reached, structure held,
zeros kept, save/resume exact, bad input named."""

from __future__ import annotations

import sys
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

import keras_compress as kc
from conftest import compile_classifier, kernels, small_cnn

BATCH = 64


def _fit(model, data, epochs, callbacks=(), **kwargs):
    (x, y), _ = data
    return model.fit(
        x, y, batch_size=BATCH, epochs=epochs, verbose=0, callbacks=list(callbacks), **kwargs
    )


def _steps(data, epochs):
    (x, _), _ = data
    return -(-len(x) // BATCH) * epochs


# ------------------------------------------------------------------ acceptance
@pytest.mark.slow
def test_lenet_300_100_reaches_90_percent_within_one_point_of_dense(mnist_split):
    """One fit with PolynomialDecay: >= 0.90 in every layer, accuracy within 1 point."""
    (x, y), (xt, yt) = mnist_split
    epochs, batch = 12, 128
    steps_per_epoch = -(-len(x) // batch)

    keras.utils.set_random_seed(7)
    dense = compile_classifier(kc.models.lenet_300_100())
    dense.fit(x, y, batch_size=batch, epochs=epochs, verbose=0)
    dense_acc = dense.evaluate(xt, yt, verbose=0)[1]

    keras.utils.set_random_seed(7)
    schedule = kc.PolynomialDecay(
        0.0, 0.9, begin_step=steps_per_epoch, end_step=6 * steps_per_epoch, frequency=10
    )
    pruned = compile_classifier(kc.prune(kc.models.lenet_300_100(), schedule=schedule))
    history = pruned.fit(
        x, y, batch_size=batch, epochs=epochs, verbose=0, callbacks=[kc.PruningCallback()]
    )
    plain = compile_classifier(kc.strip(pruned))
    pruned_acc = plain.evaluate(xt, yt, verbose=0)[1]

    report = kc.sparsity(plain)
    assert set(r.name for r in report) == {"fc1", "fc2", "logits"}
    for row in report:
        assert row.sparsity >= 0.90, row
    assert pruned_acc >= dense_acc - 0.01, (dense_acc, pruned_acc)
    assert history.history["sparsity"][-1] == pytest.approx(0.9, abs=1e-3)
    print(f"\nLeNet-300-100 MNIST: dense {dense_acc:.4f}, 90% pruned {pruned_acc:.4f}")


def test_two_of_four_holds_after_strip_on_real_data(digits_split):
    model = kc.prune(small_cnn(), structure="2:4", skip=["conv1"])  # conv1 has 1 input channel
    compile_classifier(model)
    _fit(model, digits_split, 2, [kc.PruningCallback()])
    plain = kc.strip(model)
    checked = 0
    for layer in plain.layers:
        if layer.name in ("conv2", "fc1", "logits"):
            k = layer.kernel.numpy()
            axis = 0 if k.ndim == 2 else -2
            groups = np.moveaxis(k, axis, -1).reshape(-1, 4)
            assert np.count_nonzero(groups, axis=1).max() <= 2, layer.name
            assert kc.sparsity(plain)[layer.name].sparsity == pytest.approx(0.5, abs=0.01)
            checked += 1
    assert checked == 3
    assert kc.sparsity(plain)["conv1"].sparsity == 0.0


def test_gradual_two_of_four_ramps_then_holds(digits_split):
    steps = _steps(digits_split, 3)
    schedule = kc.PolynomialDecay(0.0, 0.5, 0, steps // 2, frequency=5)
    model = compile_classifier(kc.prune(small_cnn(), schedule=schedule, structure="2:4",
                                        layers=["fc1"]))
    _fit(model, digits_split, 3, [kc.PruningCallback()])
    fc1 = kc.strip(model).get_layer("fc1").kernel.numpy()
    assert np.count_nonzero(fc1.reshape(-1, 4, fc1.shape[-1]), axis=1).max() <= 2


def test_channel_pruning_reports_the_zeroed_fraction(digits_split):
    # The model's output keeps its channels (they are the model's), named in a warning.
    with pytest.warns(UserWarning, match="'logits' keeps all its channels: 'logits' is a "
                                         "model output"):
        pruned = kc.prune(small_cnn(), schedule=kc.ConstantSparsity(0.5, 0), structure="channel")
    model = compile_classifier(pruned)
    _fit(model, digits_split, 2, [kc.PruningCallback()])
    plain = kc.strip(model)
    report = kc.sparsity(plain)
    assert report["logits"].zero_channels == 0
    for name, channels in [("conv1", 8), ("conv2", 16), ("fc1", 32)]:
        layer = plain.get_layer(name)
        k = layer.kernel.numpy()
        dead = np.all(k.reshape(-1, k.shape[-1]) == 0, axis=0)
        bias = layer.bias.numpy()
        assert report[name].channels == channels
        assert report[name].zero_channels == int(dead.sum()) == channels // 2
        assert report[name].channel_sparsity == pytest.approx(0.5)
        assert np.all(bias[dead] == 0)  # whole channels, bias included


def test_pruned_weights_stay_exactly_zero_through_more_training(digits_split):
    model = compile_classifier(kc.prune(small_cnn(), schedule=kc.ConstantSparsity(0.8, 0, 0)))
    _fit(model, digits_split, 1, [kc.PruningCallback()])
    before = kernels(model)
    # Train on with the callback (the schedule ended at step 0: masks are final).
    _fit(model, digits_split, 2, [kc.PruningCallback()])
    after = kernels(model)
    plain = kernels(kc.strip(model))
    for name, k in before.items():
        zeros = k == 0
        assert zeros.mean() >= 0.8 - 1e-3
        assert np.all(after[name][zeros] == 0), name
        assert np.all(plain[name][zeros] == 0), name
        assert not np.array_equal(after[name], k), "the kept weights did train"


def test_save_mid_fit_load_continue_equals_uninterrupted(digits_split, tmp_path):
    tf.config.experimental.enable_op_determinism()
    steps = _steps(digits_split, 4)
    schedule = kc.PolynomialDecay(0.0, 0.75, 0, steps - 3, frequency=7)

    def fresh():
        keras.utils.set_random_seed(3)
        return compile_classifier(kc.prune(small_cnn(), schedule=schedule))

    straight = fresh()
    _fit(straight, digits_split, 4, [kc.PruningCallback()], shuffle=False)

    first = fresh()
    with pytest.warns(UserWarning, match="before the pruning schedule ended"):
        _fit(first, digits_split, 2, [kc.PruningCallback()], shuffle=False)
    path = tmp_path / "mid_fit.keras"
    first.save(path)
    del first
    resumed = keras.models.load_model(path)
    assert isinstance(resumed.get_layer("prune_fc1"), kc.PruningWrapper)
    assert resumed.get_layer("prune_fc1").schedule == schedule
    _fit(resumed, digits_split, 4, [kc.PruningCallback()], shuffle=False, initial_epoch=2)

    for a, b in zip(kc.pruning.callback.find_pruning_wrappers(straight),
                    kc.pruning.callback.find_pruning_wrappers(resumed)):
        assert int(a.pruning_step.numpy()) == int(b.pruning_step.numpy()) == steps
        for (_, _, ma), (_, _, mb) in zip(a._targets, b._targets):
            np.testing.assert_array_equal(ma.numpy(), mb.numpy())
        for wa, wb in zip(a.effective_weights(), b.effective_weights()):
            np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-6)


def test_checkpoint_callback_mid_epoch_holds_the_optimizer_step(digits_split, tmp_path):
    """A ModelCheckpoint placed *before* PruningCallback still saves a step that
    matches the optimizer: the step is counted inside the training step."""
    path = tmp_path / "ckpt.keras"
    model = compile_classifier(kc.prune(small_cnn(), schedule=kc.ConstantSparsity(0.5, 0)))
    ckpt = keras.callbacks.ModelCheckpoint(path, save_freq=5)
    _fit(model, digits_split, 1, [ckpt, kc.PruningCallback()])
    loaded = keras.models.load_model(path)
    steps = {int(w.pruning_step.numpy()) for w in kc.pruning.callback.find_pruning_wrappers(loaded)}
    assert steps == {int(loaded.optimizer.iterations.numpy())}
    assert steps.pop() % 5 == 0


def _dense_classifier(**dense_kwargs) -> keras.Model:
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(32, activation="relu", name="fc", **dense_kwargs)(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(x))


def test_kernel_constraint_of_the_layer_composes_with_the_mask(digits_split, tmp_path):
    """The mask is applied as the kernel's constraint after each update, on
    top of the layer's own `kernel_constraint`, which stays the one saved."""
    model = compile_classifier(kc.prune(
        _dense_classifier(kernel_constraint=keras.constraints.NonNeg()),
        schedule=kc.ConstantSparsity(0.6, 0)))
    _fit(model, digits_split, 2, [kc.PruningCallback()])
    wrapper = model.get_layer("prune_fc")
    kernel, mask = wrapper.layer.kernel.numpy(), wrapper._targets[0][2].numpy()
    assert np.all(kernel[mask == 0] == 0), "pruned entries are zero in the variable"
    assert np.all(kernel >= 0), "the layer's NonNeg constraint still holds"
    assert np.mean(kernel[mask == 1] > 0) > 0.5, "kept weights trained, and NonNeg kept them"

    path = tmp_path / "constrained.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    config = loaded.get_layer("prune_fc").layer.get_config()
    assert config["kernel_constraint"]["class_name"] == "NonNeg"
    _fit(loaded, digits_split, 1, [kc.PruningCallback()])
    kernel = loaded.get_layer("prune_fc").layer.kernel.numpy()
    assert np.all(kernel[mask == 0] == 0) and np.all(kernel >= 0)
    stripped = kc.strip(loaded).get_layer("fc")
    assert stripped.kernel.constraint.__class__ is keras.constraints.NonNeg


def test_weights_assigned_from_outside_are_masked(digits_split):
    """Dense values written over a pruned kernel (set_weights) never reach an
    inference pass unmasked, and the next fit zeroes them before training."""
    (x, y), _ = digits_split
    model = compile_classifier(kc.prune(_dense_classifier(), schedule=kc.ConstantSparsity(0.7, 0)))
    _fit(model, digits_split, 1, [kc.PruningCallback()])
    wrapper = model.get_layer("prune_fc")
    mask = wrapper._targets[0][2].numpy()
    dense = np.random.default_rng(0).normal(size=mask.shape).astype("float32")
    wrapper.layer.kernel.assign(dense)
    masked = kc.strip(model)
    np.testing.assert_allclose(masked.get_layer("fc").kernel.numpy(), dense * mask)
    np.testing.assert_allclose(model.predict(x[:64], verbose=0),
                               masked.predict(x[:64], verbose=0), rtol=1e-5, atol=1e-5)

    # Training begins by zeroing them: its first forward pass uses the kernel as is.
    callback = kc.PruningCallback()
    callback.set_model(model)
    callback.on_train_begin()
    np.testing.assert_array_equal(wrapper.layer.kernel.numpy(), dense * mask)

    _fit(model, digits_split, 1, [kc.PruningCallback()])
    kernel = wrapper.layer.kernel.numpy()
    assert np.all(kernel[mask == 0] == 0)
    # Trained on: the training forward pass (kernel as is) and inference
    # (kernel * mask) compute the same thing.
    np.testing.assert_allclose(model(x[:64], training=True).numpy(),
                               model(x[:64], training=False).numpy(), rtol=1e-5, atol=1e-5)


def test_channel_pruned_bias_stays_zero_in_the_variable(digits_split):
    model = compile_classifier(kc.prune(_dense_classifier(), structure="channel",
                                        schedule=kc.ConstantSparsity(0.5, 0)))
    _fit(model, digits_split, 2, [kc.PruningCallback()])
    wrapper = model.get_layer("prune_fc")
    bias, bias_mask = wrapper._bias_targets[0]
    assert bias_mask.numpy().mean() == pytest.approx(0.5)
    assert np.all(bias.numpy()[bias_mask.numpy() == 0] == 0)
    assert np.any(bias.numpy()[bias_mask.numpy() == 1] != 0)


# --------------------------------------------------------------- model shapes
def test_functional_nested_and_sequential_models(digits_split):
    inner = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, name="inner_conv"),
         keras.layers.Reshape((-1,))], name="backbone")
    inputs = keras.Input((8, 8, 1))
    x = inner(inputs)
    left = keras.layers.Dense(16, activation="relu", name="left")(x)
    right = keras.layers.Dense(16, activation="relu", name="right")(x)
    outputs = keras.layers.Dense(10, name="head")(keras.layers.Add()([left, right]))
    model = keras.Model(inputs, outputs)
    (x_train, _), _ = digits_split
    before = model.predict(x_train[:16], verbose=0)

    pruned = kc.prune(model, schedule=kc.ConstantSparsity(0.6, 0))
    # An untouched copy: same outputs while masks are still all ones.
    np.testing.assert_allclose(pruned.predict(x_train[:16], verbose=0), before, atol=1e-5)
    assert not any(w is v for w in model.weights for v in pruned.weights)
    compile_classifier(pruned)
    _fit(pruned, digits_split, 1, [kc.PruningCallback()])
    report = kc.sparsity(pruned)
    assert set(r.name for r in report) == {"inner_conv", "left", "right", "head"}
    for r in report:  # TFMOT's counting: keep round(n * (1 - s)) weights
        assert r.zeros == r.params - round(r.params * 0.4), r
    # The original model was not touched.
    np.testing.assert_allclose(model.predict(x_train[:16], verbose=0), before)

    plain = kc.strip(pruned)
    assert not any(isinstance(l, kc.PruningWrapper) for l in kc.model_walk.walk_layers(plain))
    np.testing.assert_allclose(
        plain.predict(x_train[:16], verbose=0), pruned.predict(x_train[:16], verbose=0),
        atol=1e-5)
    assert [l.name for l in plain.layers] == [l.name for l in model.layers]


def test_global_ranking_reaches_overall_not_per_layer_sparsity(digits_split):
    model = compile_classifier(
        kc.prune(small_cnn(), schedule=kc.ConstantSparsity(0.7, 0), ranking="global"))
    _fit(model, digits_split, 1, [kc.PruningCallback()])
    report = kc.sparsity(model)
    assert report.overall == pytest.approx(0.7, abs=0.002)
    per_layer = [r.sparsity for r in report]
    assert max(per_layer) - min(per_layer) > 0.05  # layers earned different shares


def test_layers_and_skip_select_by_name_type_and_callable():
    model = small_cnn()
    by_type = kc.prune(model, layers=[keras.layers.Conv2D])
    assert {l.layer.name for l in by_type.layers if isinstance(l, kc.PruningWrapper)} == {
        "conv1", "conv2"}
    by_callable = kc.prune(model, layers=lambda l: l.name.startswith("fc"))
    assert {l.layer.name for l in by_callable.layers if isinstance(l, kc.PruningWrapper)} == {
        "fc1"}
    skipped = kc.prune(model, skip="logits")
    assert {l.layer.name for l in skipped.layers if isinstance(l, kc.PruningWrapper)} == {
        "conv1", "conv2", "fc1"}
    # A second call prunes the remaining layer with its own schedule.
    both = kc.prune(skipped, schedule=kc.ConstantSparsity(0.2, 0), layers=["logits"])
    wrappers = {l.layer.name: l for l in both.layers if isinstance(l, kc.PruningWrapper)}
    assert set(wrappers) == {"conv1", "conv2", "fc1", "logits"}
    assert wrappers["logits"].schedule.target_sparsity == 0.2
    assert wrappers["fc1"].schedule.target_sparsity == 0.5


def test_single_layer_and_subclassed_model(digits_split):
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.flat = keras.layers.Reshape((-1,))
            self.fc = kc.prune(keras.layers.Dense(10), schedule=kc.ConstantSparsity(0.5, 0))

        def call(self, x):
            return self.fc(self.flat(x))

    net = compile_classifier(Net())
    _fit(net, digits_split, 1, [kc.PruningCallback()])
    assert kc.sparsity(net).overall == pytest.approx(0.5, abs=0.01)
    with pytest.raises(ValueError, match="subclassed"):
        kc.prune(Net())
    plain_fc = kc.strip(net.fc)
    assert type(plain_fc) is keras.layers.Dense
    assert np.mean(plain_fc.kernel.numpy() == 0) == pytest.approx(0.5, abs=0.01)


def test_strip_is_idempotent_and_saves_as_plain_keras(tmp_path, digits_split):
    model = compile_classifier(kc.prune(small_cnn(), schedule=kc.ConstantSparsity(0.5, 0)))
    _fit(model, digits_split, 1, [kc.PruningCallback()])
    once = kc.strip(model)
    twice = kc.strip(once)
    for a, b in zip(once.get_weights(), twice.get_weights()):
        np.testing.assert_array_equal(a, b)
    once.save(tmp_path / "plain.keras")
    reloaded = keras.models.load_model(tmp_path / "plain.keras", compile=False)
    for a, b in zip(once.get_weights(), reloaded.get_weights()):
        np.testing.assert_array_equal(a, b)


@settings(max_examples=12, deadline=None)
@given(structure=st.sampled_from(["unstructured", "channel", "2:4", "1:4"]),
       sparsity=st.floats(0.0, 0.95), seed=st.integers(0, 2**16))
def test_strip_bakes_the_masks_and_is_idempotent(structure, sparsity, seed):
    """Property: after masks at any sparsity and structure, strip() equals
    kernel * mask, reaches the sparsity the masks hold, and strip(strip(m))
    equals strip(m)."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8, name="a"),
                              keras.layers.Dense(4, name="b")])
    if structure in ("2:4", "1:4"):
        sparsity = 1 - int(structure[0]) / 4
    with warnings.catch_warnings():  # channel: 'b', the model output, stays whole
        warnings.filterwarnings("ignore", "Layer 'b' keeps all its channels")
        pruned = kc.prune(model, schedule=kc.ConstantSparsity(sparsity, 0), structure=structure)
    wrapped = [layer for layer in pruned.layers if isinstance(layer, kc.PruningWrapper)]
    for wrapper in wrapped:
        wrapper.update_masks(sparsity)
    once = kc.strip(pruned)
    for wrapper in wrapped:
        plain = once.get_layer(wrapper.layer.name)
        [effective] = wrapper.effective_weights()
        np.testing.assert_array_equal(plain.kernel.numpy(), effective)
    zeros = sum(int(np.sum(layer.kernel.numpy() == 0)) for layer in once.layers)

    def pruned(count):  # the documented count: round(count * (1 - s)) kept, at least one
        return count - max(1, min(count, int(round(count * (1 - sparsity)))))

    if structure == "channel":  # whole units: 8 of fan-in 16 ('b' is the model's output)
        expected = pruned(8) * 16
    else:
        expected = pruned(16 * 8) + pruned(8 * 4)
    assert zeros >= expected
    twice = kc.strip(once)
    for a, b in zip(once.get_weights(), twice.get_weights()):
        np.testing.assert_array_equal(a, b)


# -------------------------------------------------------------------- logging
def test_callback_logs_sparsity_and_writes_tensorboard(digits_split, tmp_path):
    model = compile_classifier(kc.prune(small_cnn(), schedule=kc.ConstantSparsity(0.5, 0)))
    history = _fit(model, digits_split, 2, [kc.PruningCallback(log_dir=str(tmp_path))])
    assert history.history["sparsity"][-1] == pytest.approx(0.5, abs=0.01)
    assert history.history["sparsity/conv2"][-1] == pytest.approx(0.5, abs=0.01)
    events = list(tmp_path.glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_warns_when_training_stops_before_schedule_end(digits_split):
    model = compile_classifier(kc.prune(small_cnn(), schedule=kc.PolynomialDecay(0, 0.8, 0, 10**6)))
    with pytest.warns(UserWarning, match="final sparsity was not reached"):
        _fit(model, digits_split, 1, [kc.PruningCallback()])


def test_tfmot_aliases_and_no_tfmot_import():
    assert kc.prune_low_magnitude is kc.prune
    assert kc.UpdatePruningStep is kc.PruningCallback
    assert kc.strip_pruning is kc.strip
    model = kc.prune_low_magnitude(
        small_cnn(), pruning_schedule=kc.PolynomialDecay(
            initial_sparsity=0.0, final_sparsity=0.5, begin_step=0, end_step=10,
            power=3, frequency=2))
    assert any(isinstance(l, kc.PruningWrapper) for l in model.layers)
    assert "tensorflow_model_optimization" not in sys.modules
    assert keras.__version__.startswith("3.")


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(schedule=kc.ConstantSparsity(0.5), structure="3:2"), "structure"),
        (dict(structure="blocks"), "structure"),
        (dict(structure="2:4", schedule=kc.ConstantSparsity(0.9)), "fixes the sparsity at 0.5"),
        (dict(ranking="everywhere"), "ranking"),
        (dict(structure="2:4", ranking="global"), "ranking='global'"),
        (dict(schedule=0.5), "schedule"),
        (dict(layers=["no_such_layer"]), "no_such_layer"),
        (dict(skip=[42]), "skip"),
        (dict(layers=["pool"]), "'pool'"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kc.prune(small_cnn(), **kwargs)


def test_sparsity_outside_unit_interval_is_refused():
    for bad in (1.0, 1.5, -0.2):
        with pytest.raises(ValueError, match=r"target_sparsity.*\[0, 1\)"):
            kc.prune(small_cnn(), schedule=kc.ConstantSparsity(bad))


def test_n_of_m_that_does_not_divide_input_names_the_layer():
    with pytest.raises(ValueError, match=r"'conv1'.*input dimension.*is 1.*multiple of 4"):
        kc.prune(small_cnn(), structure="2:4")
    dense = keras.Sequential([keras.Input((10,)), keras.layers.Dense(3, name="odd")])
    with pytest.raises(ValueError, match=r"'odd'.*is 10"):
        kc.prune(dense, structure="2:4")


def test_n_of_m_on_depthwise_names_the_layer():
    model = keras.Sequential([keras.Input((8, 8, 4)), keras.layers.DepthwiseConv2D(3, name="dw")])
    with pytest.raises(ValueError, match="'dw'.*N:M"):
        kc.prune(model, structure="2:4")
    # unstructured pruning is fine there; its channels follow the input's (no
    # channel group to remove)
    kc.prune(model, structure="unstructured")
    with pytest.raises(ValueError, match="no channel group that can be pruned"):
        kc.prune(model, structure="channel")


def test_model_without_prunable_layer():
    model = keras.Sequential([keras.Input((8,)), keras.layers.ReLU(), keras.layers.Dropout(0.1)])
    with pytest.raises(ValueError, match="no layer to prune"):
        kc.prune(model)
    with pytest.raises(ValueError, match="no pruned layer"):
        compile_classifier(model).fit(
            np.zeros((4, 8)), np.zeros(4), verbose=0, callbacks=[kc.PruningCallback()])


def test_non_layer_and_double_wrapping_are_refused():
    with pytest.raises(ValueError, match="model"):
        kc.prune("not a model")
    pruned = kc.prune(small_cnn())
    with pytest.raises(ValueError, match="already wrapped"):
        kc.prune(pruned, layers=["fc1"])
    with pytest.raises(ValueError, match="already wrapped"):
        kc.PruningWrapper(pruned.get_layer("prune_fc1"))


def test_nan_weights_name_the_layer(digits_split):
    model = compile_classifier(kc.prune(small_cnn(), schedule=kc.ConstantSparsity(0.5, 0)))
    fc1 = model.get_layer("prune_fc1").layer
    k = fc1.kernel.numpy()
    k[0, 0] = np.nan
    fc1.kernel.assign(k)
    with pytest.raises(ValueError, match="'fc1'.*NaN"):
        _fit(model, digits_split, 1, [kc.PruningCallback()])


def test_no_warning_noise_on_a_normal_run(digits_split):
    model = compile_classifier(kc.prune(small_cnn(), schedule=kc.ConstantSparsity(0.5, 0)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        _fit(model, digits_split, 1, [kc.PruningCallback()])


# ------------------------------------------------------------ converter ready
def test_stripped_model_converts_and_keeps_its_zeros_in_litert(mnist_split, tmp_path):
    """`strip` leaves a plain model the stock TFLite converter takes; the
    flatbuffer holds the same zeros and LiteRT computes the same outputs."""
    from ai_edge_litert.interpreter import Interpreter

    (x, y), (xt, _) = mnist_split
    model = compile_classifier(
        kc.prune(kc.models.lenet_300_100(), schedule=kc.ConstantSparsity(0.8, 0)))
    model.fit(x[:2048], y[:2048], batch_size=128, epochs=1, verbose=0,
              callbacks=[kc.PruningCallback()])
    plain = kc.strip(model)
    plain.export(str(tmp_path / "saved"), format="tf_saved_model", verbose=False)
    flatbuffer = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "saved")).convert()

    interpreter = Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    zero_counts = sorted(
        int(np.count_nonzero(interpreter.get_tensor(d["index"]) == 0))
        for d in interpreter.get_tensor_details()
        if len(d["shape"]) == 2 and d["shape"][0] in (300, 100, 10) and d["shape"][1] in (784, 300, 100)
    )
    expected = sorted(r.zeros for r in kc.sparsity(plain))
    assert zero_counts == expected

    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    for image in xt[:20]:
        interpreter.resize_tensor_input(inp["index"], (1, 28, 28))
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], image[None])
        interpreter.invoke()
        np.testing.assert_allclose(
            interpreter.get_tensor(out["index"])[0], plain(image[None]).numpy()[0],
            rtol=1e-4, atol=1e-4)
