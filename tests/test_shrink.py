"""Channel pruning by dependency group, and `shrink`: the pruned channels
physically gone, the outputs unchanged, on real data (scikit-learn digits)."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

import keras_compress as kc
import tflite_export
from conftest import compile_classifier

L = keras.layers


def _bn(name):  # momentum 0.9: moving statistics that settle within a short fit
    return L.BatchNormalization(momentum=0.9, name=name)


def _residual():
    x = keras.Input((8, 8, 1))
    a = L.ReLU()(_bn("bn0")(L.Conv2D(16, 3, padding="same",
                                                            use_bias=False, name="stem")(x)))
    b = L.ReLU()(_bn("bn1")(L.Conv2D(16, 3, padding="same",
                                                            use_bias=False, name="b1")(a)))
    b = _bn("bn2")(L.Conv2D(16, 3, padding="same", use_bias=False,
                                                  name="b2")(b))
    y = L.ReLU()(L.Add(name="add")([a, b]))
    y = L.Flatten()(L.MaxPooling2D()(y))
    return keras.Model(x, L.Dense(10, name="logits")(y)), {"stem": 16, "b1": 16}


def _inception():
    x = keras.Input((8, 8, 1))
    s = L.Conv2D(16, 3, padding="same", activation="relu", name="stem")(x)
    p = L.Conv2D(8, 1, activation="relu", name="p1")(s)
    q = L.Conv2D(8, 3, padding="same", activation="relu", name="p3")(s)
    r = L.Conv2D(8, 1, activation="relu", name="pool_proj")(L.MaxPooling2D(3, 1, "same")(s))
    y = L.Concatenate(name="cat")([p, q, r])
    y = _bn("bn")(y)
    y = L.Conv2D(16, 1, activation="relu", name="mix")(y)
    return keras.Model(x, L.Dense(10, name="logits")(L.GlobalAveragePooling2D()(y))), \
        {"stem": 16, "p1": 8, "p3": 8, "mix": 16}


def _separable():
    x = keras.Input((8, 8, 1))
    y = L.Conv2D(16, 3, padding="same", activation="relu", name="stem")(x)
    y = L.DepthwiseConv2D(3, padding="same", name="dw")(y)
    y = L.ReLU()(_bn("dw_bn")(y))
    y = L.Conv2D(24, 1, activation="relu", name="pw")(y)
    y = L.SeparableConv2D(16, 3, padding="same", activation="relu", name="sep")(y)
    return keras.Model(x, L.Dense(10, name="logits")(L.GlobalAveragePooling2D()(y))), \
        {"stem": 16, "pw": 24, "sep": 16}


def _conv1d():
    x = keras.Input((64, 1))
    y = L.Conv1D(16, 5, padding="same", activation="relu", name="c1")(x)
    y = L.MaxPooling1D(2)(y)
    y = L.Conv1D(16, 3, activation="relu", name="c2")(y)
    y = L.Flatten()(y)
    y = L.Dense(32, activation="relu", name="fc")(y)
    return keras.Model(x, L.Dense(10, name="logits")(y)), {"c1": 16, "c2": 16, "fc": 32}


def _flatten_dense():
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        L.Conv2D(12, 3, activation="relu", name="conv"),
        L.Flatten(name="flat"),
        L.Dense(32, activation="relu", name="fc"),
        L.Dense(10, name="logits")]), {"conv": 12, "fc": 32}


def _nested():
    inner = keras.Sequential([keras.Input((8, 8, 1)),
                              L.Conv2D(16, 3, padding="same", activation="relu", name="in1"),
                              L.Conv2D(16, 3, padding="same", activation="relu", name="in2")],
                             name="backbone")
    x = keras.Input((8, 8, 1))
    y = L.Conv2D(16, 1, activation="relu", name="outer")(inner(x))
    return keras.Model(x, L.Dense(10, name="logits")(L.GlobalAveragePooling2D()(y))), \
        {"backbone/in1": 16, "outer": 16}


def _transposed():
    x = keras.Input((8, 8, 1))
    y = L.Conv2D(16, 3, padding="same", activation="relu", name="down")(x)
    y = L.Conv2DTranspose(12, 3, strides=2, padding="same", activation="relu", name="up")(y)
    y = L.Conv2D(8, 3, strides=2, activation="relu", name="mix")(y)
    return keras.Model(x, L.Dense(10, name="logits")(L.Flatten()(y))), \
        {"down": 16, "up": 12, "mix": 8}


ARCHITECTURES = {"transposed": _transposed, "residual": _residual, "inception": _inception, "separable": _separable,
                 "conv1d": _conv1d, "flatten_dense": _flatten_dense, "nested": _nested}


def _data(digits_split, shape):
    (x, y), (xt, _) = digits_split
    if len(shape) == 2:  # Conv1D: the 8x8 image as a 64-step signal
        return x.reshape(-1, 64, 1), y, xt.reshape(-1, 64, 1)
    return x.reshape(-1, 8, 8, 1), y, xt.reshape(-1, 8, 8, 1)


def _width(model, path):
    if "/" in path:
        outer, name = path.split("/")
        return _width(model.get_layer(outer), name)
    layer = model.get_layer(path)
    return getattr(layer, "filters", None) or layer.units


def _pruned_and_trained(build, digits_split, sparsity=0.5, epochs=1, **kwargs):
    keras.utils.set_random_seed(0)
    model, widths = build()
    x, y, xt = _data(digits_split, model.input_shape[1:])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Layer 'logits' keeps all its channels")
        pruned = kc.prune(model, kc.ConstantSparsity(sparsity, 0, frequency=4),
                          structure="channel", **kwargs)
    compile_classifier(pruned).fit(x, y, batch_size=64, epochs=epochs, verbose=0,
                                   callbacks=[kc.PruningCallback()])
    return pruned, widths, (x, y, xt)


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_shrink_removes_the_pruned_channels_and_keeps_the_outputs(name, digits_split):
    pruned, widths, (_, _, xt) = _pruned_and_trained(ARCHITECTURES[name], digits_split)
    masked = pruned.predict(xt, verbose=0)
    small = kc.shrink(pruned)
    # The channels are gone from the layers' configs and weights ...
    for path, width in widths.items():
        assert _width(small, path) == width // 2, path
    before, after = kc.profile(kc.strip(pruned)), kc.profile(small)
    assert after.total_params < 0.6 * before.total_params
    assert after.total_macs < 0.6 * before.total_macs
    assert after.peak_activations <= before.peak_activations
    assert sum(r.activations for r in after.layers) < sum(r.activations for r in before.layers)
    # ... and the model computes what the masked one computed.
    np.testing.assert_allclose(small.predict(xt, verbose=0), masked, rtol=1e-5, atol=1e-5)
    assert not any(isinstance(layer, kc.PruningWrapper) for layer in small.layers)
    # The smaller model converts fully int8, and TFLite-Micro agrees with LiteRT.
    tfl = tflite_export.convert(small, mode="int8", io_dtype="int8", representative_data=xt[:100])
    assert tfl.is_fully_integer, tfl.float_ops
    litert = tflite_export.predict(tfl, xt[:50], "litert-reference")
    micro = tflite_export.predict(tfl, xt[:50], "micro")
    assert np.max(np.abs(litert - micro)) <= tfl.outputs[0].scale[0] * 1.001


def test_group_members_share_one_mask_and_followers_are_masked(digits_split):
    pruned, _, _ = _pruned_and_trained(_residual, digits_split)
    stem, b2 = pruned.get_layer("prune_stem"), pruned.get_layer("prune_b2")
    assert stem.channel_group.key == b2.channel_group.key == "b2+stem"
    np.testing.assert_array_equal(stem.channel_mask.numpy(), b2.channel_mask.numpy())
    removed = stem.channel_mask.numpy() == 0
    assert removed.sum() == 8
    for bn in ("bn0", "bn2"):  # after the sources: masked in training, by the optimizer too
        layer = pruned.get_layer(bn)
        assert np.all(layer.gamma.numpy()[removed] == 0)
        assert np.all(layer.beta.numpy()[removed] == 0)
        assert np.all(layer.gamma.numpy()[~removed] != 0)


def test_channel_groups_resume_after_save_and_load(digits_split, tmp_path):
    pruned, _, (x, y, xt) = _pruned_and_trained(_residual, digits_split)
    pruned.save(tmp_path / "mid.keras")
    loaded = keras.models.load_model(tmp_path / "mid.keras")
    np.testing.assert_array_equal(loaded.predict(xt, verbose=0), pruned.predict(xt, verbose=0))
    assert loaded.get_layer("prune_stem").channel_group == pruned.get_layer(
        "prune_stem").channel_group
    compile_classifier(loaded).fit(x, y, batch_size=64, epochs=1, verbose=0,
                                   callbacks=[kc.PruningCallback()])
    removed = loaded.get_layer("prune_stem").channel_mask.numpy() == 0
    assert np.all(loaded.get_layer("bn0").gamma.numpy()[removed] == 0)  # constraint reinstalled
    np.testing.assert_allclose(kc.shrink(loaded).predict(xt, verbose=0),
                               loaded.predict(xt, verbose=0), rtol=1e-5, atol=1e-5)


def test_shrunk_model_quantizes_to_int8_and_micro_agrees(digits_split):
    """prune (channel) -> shrink -> QAT -> int8 -> TFLite-Micro."""
    pruned, _, (x, y, xt) = _pruned_and_trained(_residual, digits_split, epochs=4)
    small = kc.shrink(pruned)
    qat = compile_classifier(kc.quantize(small))
    qat.fit(x, y, batch_size=64, epochs=2, verbose=0)
    plain = kc.strip(qat)
    tfl = tflite_export.convert(plain, mode="int8", io_dtype="int8")
    assert tfl.is_fully_integer, tfl.float_ops
    litert = tflite_export.predict(tfl, xt[:200], "litert-reference")
    micro = tflite_export.predict(tfl, xt[:200], "micro")
    step = tfl.outputs[0].scale[0]
    assert np.max(np.abs(litert - micro)) <= step * 1.001  # at most one output step apart
    assert np.mean(np.argmax(litert, 1) == np.argmax(micro, 1)) >= 0.99
    accuracy = np.mean(np.argmax(litert, 1) == digits_split[1][1][:200])
    assert accuracy > 0.8


def test_a_macs_target_is_met_over_the_groups(digits_split):
    model, _ = _inception()
    before = kc.profile(model).total_macs
    pruned, _, _ = _pruned_and_trained(_inception, digits_split, sparsity=0.5, target="macs",
                                       round_to=2)
    after = kc.profile(kc.shrink(pruned)).total_macs
    # Costs are counted per channel (linear); removing channels on both sides
    # of a layer removes more, never less.
    assert after <= 0.5 * before
    for layer in kc.shrink(pruned).layers:
        if isinstance(layer, L.Conv2D) and layer.name != "logits":
            assert layer.filters % 2 == 0 and layer.filters >= 1


def test_the_recipe_passes_channel_options_to_prune(digits_split):
    """`recipe(prune_options=...)` reaches `prune`: a MACs-and-parameters
    target in blocks of 4 channels is met after one fit; unknown options are
    refused by name."""
    model = _pyramid()
    x = np.resize(digits_split[0][0][:64], (64, 32, 32, 3)).astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the logits keep their channels
        train, callbacks = kc.recipe(model, sparsity=0.5, structure="channel",
                                     prune_options={"target": "macs+params", "round_to": 4,
                                                    "ranking": "global"})
    train.fit(x, digits_split[0][1][:64], batch_size=32, epochs=2, verbose=0,
              callbacks=callbacks)  # the ramp (epochs 0 to 1) ends as epoch 1 begins
    small = kc.strip(train, shrink=True)
    widths = [small.get_layer(f"c{i}").filters for i in range(4)]
    assert all(w % 4 == 0 for w in widths) and widths != [16, 16, 64, 128], widths
    whole, after = kc.profile(model), kc.profile(small)
    assert (after.total_macs / whole.total_macs
            + after.total_params / whole.total_params) / 2 <= 0.5 + 1e-9
    with pytest.raises(ValueError, match=r"`prune_options` has \['layers'\]"):
        kc.recipe(model, sparsity=0.5, structure="channel", prune_options={"layers": ["c0"]})


def test_blocked_layers_are_named_and_bad_targets_refused():
    x = keras.Input((8, 8, 1))
    a = L.Conv2D(8, 3, padding="same", name="a")(x)
    g = L.Conv2D(8, 3, padding="same", activation="sigmoid", name="gate")(x)
    y = L.Conv2D(4, 1, name="mix")(L.Multiply()([a, g]) + 1.0)
    model = keras.Model(x, L.Dense(10, name="logits")(L.Flatten()(y)))
    with pytest.warns(UserWarning, match=r"Layer 'logits' keeps all its channels: 'logits' is "
                                         r"a model output"):
        kc.prune(model, structure="channel")
    with pytest.warns(UserWarning, match=r"Layer 'a' keeps all its channels: .*nonzero constant"):
        kc.prune(model, structure="channel")
    with pytest.raises(ValueError, match=r"sparsity 0.99 of the model's macs cannot be reached.*"
                                         r"at most 0\.\d+"):
        kc.prune(model, kc.ConstantSparsity(0.99, 0), structure="channel", target="macs")
    with pytest.raises(ValueError, match="`round_to` must be an integer >= 1"):
        kc.prune(model, structure="channel", round_to=0)
    for bad in (0.0, 1.5, "half"):
        with pytest.raises(ValueError, match=r"`max_sparsity` .* must be in \(0, 1\]"):
            kc.prune(model, structure="channel", max_sparsity=bad)
    with pytest.raises(ValueError, match=r"at most 0\.\d+ .*max_sparsity=0.25.*raise max_sparsity"):
        kc.prune(model, kc.ConstantSparsity(0.5, 0), structure="channel", target="macs",
                 max_sparsity=0.25)
    with pytest.raises(ValueError, match="structure='channel' only"):
        kc.prune(model, target="macs")
    dense = keras.Sequential([keras.Input((4,)), L.Dense(3, name="only")])
    with pytest.raises(ValueError, match="no channel group that can be pruned"), \
            pytest.warns(UserWarning, match="'only' is a model output"):
        kc.prune(dense, structure="channel")


def test_profile_counts_what_the_layers_compute():
    model = keras.Sequential([keras.Input((10, 10, 3)),
                              L.Conv2D(8, 3, name="conv"),
                              L.DepthwiseConv2D(3, name="dw"),
                              L.SeparableConv2D(4, 3, depth_multiplier=2, name="sep"),
                              L.Flatten(), L.Dense(5, name="fc")])
    report = kc.profile(model)
    assert report["conv"].macs == 8 * 8 * 8 * 3 * 3 * 3
    assert report["dw"].macs == 6 * 6 * 8 * 3 * 3
    assert report["sep"].macs == 4 * 4 * (8 * 2) * (3 * 3 + 4)
    assert report["fc"].macs == 4 * 4 * 4 * 5
    assert report.total_params == model.count_params()
    assert report.peak_activations == 8 * 8 * 8


def test_one_fit_recipe_with_channel_pruning_strips_to_a_smaller_int8_model(digits_split):
    """distill + prune (channel) + QAT in one fit, then strip(shrink=True):
    BatchNormalization folded into QAT is masked with its group too, so the
    channels come out after QAT, and the result converts fully int8."""
    (x, y), (xt, yt) = digits_split
    x, xt = x.reshape(-1, 8, 8, 1), xt.reshape(-1, 8, 8, 1)
    keras.utils.set_random_seed(0)
    teacher, _ = _residual()
    compile_classifier(teacher).fit(x, y, batch_size=64, epochs=3, verbose=0)
    student, _ = _residual()
    student.set_weights(teacher.get_weights())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Layer 'logits' keeps all its channels")
        model, callbacks = kc.recipe(student, teacher=teacher, sparsity=0.5,
                                     structure="channel", prune_epochs=(0, 2), qat_from_epoch=2)
    model.fit(x, y, batch_size=64, epochs=4, verbose=0, callbacks=callbacks)
    small = kc.strip(model, shrink=True)
    assert small.get_layer("stem").filters == 8 and small.get_layer("b1").filters == 8
    np.testing.assert_allclose(small.predict(xt, verbose=0),
                               kc.strip(model).predict(xt, verbose=0), rtol=1e-5, atol=1e-5)
    tfl = tflite_export.convert(small, mode="int8", io_dtype="int8")
    assert tfl.is_fully_integer, tfl.float_ops
    whole = tflite_export.convert(kc.strip(model), mode="int8", io_dtype="int8")
    assert tfl.size < 0.7 * whole.size
    litert = tflite_export.predict(tfl, xt[:200], "litert-reference")
    micro = tflite_export.predict(tfl, xt[:200], "micro")
    assert np.max(np.abs(litert - micro)) <= tfl.outputs[0].scale[0] * 1.001
    assert np.mean(np.argmax(litert, 1) == yt[:200]) > 0.8


def test_the_pruning_guide_snippet_runs_as_written():
    from conftest import REPO
    import re

    [block] = [b for b in re.findall(r"```python\n(.*?)```",
                                     (REPO / "docs" / "pruning.md").read_text(), re.S)
               if "kc.shrink(" in b]
    namespace: dict = {}
    with pytest.warns(UserWarning, match="'logits' keeps all its channels"):
        exec(compile(block, "docs/pruning.md", "exec"), namespace)
    assert namespace["small"].get_layer("a").filters == 8
    assert kc.profile(namespace["small"]).total_macs < kc.profile(namespace["model"]).total_macs


def _conv_chain():
    x = keras.Input((16, 16, 3))
    h = x
    for i, width in enumerate((16, 16, 32, 32)):
        h = L.Conv2D(width, 3, padding="same", activation="relu", name=f"c{i}")(h)
    out = L.Dense(10, name="logits")(L.GlobalAveragePooling2D()(h))
    return keras.Model(x, out)


def test_a_rounded_macs_target_removes_whole_blocks_and_is_met():
    """round_to=8 on 16- and 32-channel groups: the budget is spent in blocks
    of 8, so the target is met with counts that are multiples of 8 (rounding
    the counts after a channel-by-channel choice gave most channels back)."""
    model = _conv_chain()
    x = np.random.default_rng(0).random((8, 16, 16, 3), dtype="float32")
    for round_to, share in ((8, 0.5), (16, 0.4)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the logits keep their channels
            pruned = kc.prune(model, kc.ConstantSparsity(share, 0), structure="channel",
                              target="macs", round_to=round_to)
        pruned.compile(keras.optimizers.SGD(0.0), "mse")
        pruned.fit(x, np.zeros((8, 10)), batch_size=8, epochs=1, verbose=0,
                   callbacks=[kc.PruningCallback()])
        small = kc.shrink(pruned)
        widths = [small.get_layer(f"c{i}").filters for i in range(4)]
        assert all(w % round_to == 0 for w in widths), (round_to, widths)
        before, after = kc.profile(model).total_macs, kc.profile(small).total_macs
        assert after <= (1 - share) * before, (round_to, widths, after / before)


def test_max_sparsity_caps_every_group_and_the_budget_is_still_met(tmp_path):
    """A MACs target without a cap takes the costliest groups (the
    high-resolution 16-channel ones) below half their width; with
    max_sparsity=0.5 every group keeps at least half its channels and the
    budget moves to the others, still met. The cap survives a save and
    reload of the wrapped model (it is part of each wrapper's channel group)."""
    model = _pyramid()
    x = np.random.default_rng(0).random((8, 32, 32, 3), dtype="float32")
    full = (16, 16, 64, 128)
    widths = {}
    for cap in (1.0, 0.5):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the logits keep their channels
            pruned = kc.prune(model, kc.ConstantSparsity(0.5, 0), structure="channel",
                              target="macs", ranking="global", round_to=4, max_sparsity=cap)
        pruned.compile(keras.optimizers.SGD(0.0), "mse")
        pruned.fit(x, np.zeros((8, 10)), batch_size=8, epochs=1, verbose=0,
                   callbacks=[kc.PruningCallback()])
        small = kc.shrink(pruned)
        widths[cap] = [small.get_layer(f"c{i}").filters for i in range(4)]
        assert kc.profile(small).total_macs <= 0.5 * kc.profile(model).total_macs, widths
    assert min(w / f for w, f in zip(widths[1.0], full)) < 0.5, widths
    assert all(w >= f // 2 for w, f in zip(widths[0.5], full)), widths
    path = str(tmp_path / "capped.keras")
    pruned.save(path)
    reloaded = keras.models.load_model(path)
    assert {w.channel_group.max_sparsity for w in reloaded.layers
            if getattr(w, "channel_group", None) is not None} == {0.5}


def _pyramid():
    """MACs in the high-resolution first layers, parameters in the last ones."""
    x = keras.Input((32, 32, 3))
    h = x
    for i, (width, stride) in enumerate(((16, 1), (16, 1), (64, 2), (128, 2))):
        h = L.Conv2D(width, 3, strides=stride, padding="same", activation="relu",
                     name=f"c{i}")(h)
    return keras.Model(x, L.Dense(10, name="logits")(L.GlobalAveragePooling2D()(h)))


def test_a_macs_and_params_target_spends_its_budget_on_both(digits_split):
    """target="macs+params" removes the mean of the two shares it is given,
    and where MACs and parameters sit in different layers it cuts both: more
    parameters than a MACs target, more MACs than a parameter target."""
    model = _pyramid()
    x = np.resize(digits_split[0][0][:16], (16, 32, 32, 3)).astype("float32")
    whole = kc.profile(model)
    removed = {}
    for target in ("macs", "params", "macs+params"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the logits keep their channels
            pruned = kc.prune(model, kc.ConstantSparsity(0.5, 0), structure="channel",
                              target=target, ranking="global", round_to=4)
        pruned.compile(keras.optimizers.SGD(0.0), "mse")
        pruned.fit(x, np.zeros((16, 10)), batch_size=16, epochs=1, verbose=0,
                   callbacks=[kc.PruningCallback()])
        small = kc.profile(kc.shrink(pruned))
        removed[target] = (1 - small.total_macs / whole.total_macs,
                           1 - small.total_params / whole.total_params)
    macs, params = removed["macs+params"]
    assert (macs + params) / 2 >= 0.5 - 1e-9, removed
    assert params > removed["macs"][1] + 0.05 and macs > removed["params"][0] + 0.05, removed


def test_global_selection_without_rounding_is_the_channel_by_channel_ranking():
    """With round_to=1 the block-wise selection equals the plain greedy: every
    channel of every group ranked by importance over its group's mean and
    relative cost, removed in that order until the MACs budget is spent."""
    from keras_compress.pruning import groups as groups_lib

    specs, _ = groups_lib.plan(_conv_chain(), target="macs")
    unique = list({s.key: s for s in specs.values()}.values())
    rng = np.random.default_rng(1)
    groups = [(s, rng.random(s.channels) + 0.01) for s in unique]
    for sparsity in (0.2, 0.45, 0.7):
        masks = groups_lib.select(groups, sparsity, "global")
        mean_cost = np.mean([s.cost() for s, _ in groups])
        order = sorted((score / scores.mean() / (s.cost() / mean_cost), g, c)
                       for g, (s, scores) in enumerate(groups) for c, score in enumerate(scores))
        budget = groups_lib._Budget([s for s, _ in groups])
        expected = [np.ones(s.channels, np.float32) for s, _ in groups]
        for _, g, c in order:
            if budget.spent + 1e-9 >= sparsity * budget.whole:
                break
            if expected[g].sum() <= 1:
                continue
            expected[g][c] = 0.0
            budget.remove(g)
        for got, want in zip(masks, expected):
            np.testing.assert_array_equal(got, want)
