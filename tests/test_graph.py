"""`ModelGraph`: producers and consumers of layers and keras.ops nodes, and the
channel dependency groups channel removal will act on."""

from __future__ import annotations

import keras
import pytest

from keras_compress.graph import ModelGraph, groups_by_source

L = keras.layers


def _residual():
    x = keras.Input((8, 8, 3))
    stem = L.Conv2D(4, 3, padding="same", name="stem")(x)
    a = L.Conv2D(4, 3, padding="same", name="a")(stem)
    a = L.BatchNormalization(name="bn")(a)
    y = L.Add(name="add")([stem, a])
    y = L.ReLU(name="relu")(y)
    y = L.GlobalAveragePooling2D(name="gap")(y)
    return keras.Model(x, L.Dense(3, name="head")(y))


def test_residual_add_ties_its_sources_and_outputs_are_blocked():
    graph = ModelGraph(_residual())
    groups = groups_by_source(graph.channel_groups())
    tied = groups["stem"]
    assert sorted(tied.source_names) == ["a", "stem"] and tied.blocked is None
    roles = {(u.node.name, u.role) for u in tied.uses}
    assert {("bn", "through"), ("add", "join"), ("relu", "through"), ("gap", "through"),
            ("head", "input")} <= roles
    assert groups["head"].blocked == "'head' is a model output: its channels are the model's"
    assert graph.consumers(graph.op("stem")) == [graph.op("a"), graph.op("add")]
    assert graph.single_consumer(graph.op("a")) is graph.op("bn")
    assert graph.single_consumer(graph.op("stem")) is None
    assert graph.single_consumer(graph.op("head")) is None  # a model output


def test_concatenate_maps_index_ranges_and_flatten_maps_units():
    x = keras.Input((2, 2, 3))
    a = L.Conv2D(2, 1, name="a")(x)
    b = L.Conv2D(3, 1, name="b")(x)
    c = L.BatchNormalization(name="bn")(L.Concatenate(name="cat")([a, b]))
    out = L.Dense(4, name="fc")(L.Flatten(name="flat")(c))
    groups = groups_by_source(ModelGraph(keras.Model(x, out)).channel_groups())
    uses = {u.node.name: u.indices for u in groups["b"].uses}
    assert uses["cat"] == uses["bn"] == (2, 3, 4)
    # 4 positions x 5 channels, channel c of position p at unit 5 p + c
    assert uses["fc"] == tuple(5 * p + c for p in range(4) for c in (2, 3, 4))
    assert {u.node.name: u.indices for u in groups["a"].uses}["fc"] == (0, 1, 5, 6, 10, 11, 15, 16)


def test_a_join_with_a_model_input_blocks_the_group():
    x = keras.Input((4, 4, 3))
    y = L.Add(name="res")([x, L.Conv2D(3, 1, name="a")(x)])
    groups = groups_by_source(ModelGraph(keras.Model(x, L.Conv2D(5, 1)(y))).channel_groups())
    assert "'res' joins these channels with a tensor no prunable layer produces" in (
        groups["a"].blocked)


def test_keras_ops_nodes_are_nodes():
    """A functional graph calling keras.ops (hard-swish's `x + 3.0`, indexing)
    holds operation nodes that are not layers: they are first-class here."""
    x = keras.Input((4, 4, 3))
    a = L.Conv2D(4, 1, name="a")(x)
    hard_swish = a * L.ReLU(6.0, name="relu6")(a + 3.0) * (1.0 / 6.0)
    b = L.Conv2D(4, 1, name="b")(hard_swish)
    sliced = b[..., :2]
    graph = ModelGraph(keras.Model(x, L.Conv2D(2, 1, name="c")(sliced)))
    kinds = {type(n.op).__name__ for n in graph.nodes if not n.is_layer}
    assert {"Add", "Multiply", "GetItem"} <= kinds
    groups = groups_by_source(graph.channel_groups())
    # `a * relu6(a + 3) / 6` ties a's channels with themselves, then b reads them
    assert groups["a"].blocked is None and groups["a"].source_names == ["a"]
    assert ("b", "input") in {(u.node.name, u.role) for u in groups["a"].uses}
    assert "(GetItem) has no channel rule" in groups["b"].blocked


def test_sequential_and_nested_models():
    inner = keras.Sequential([keras.Input((6,)), L.Dense(5, name="d1"), L.Dense(4, name="d2")],
                             name="inner")
    outer = keras.Sequential([keras.Input((6,)), inner, L.Dense(2, name="d3")])
    graph = ModelGraph(outer)
    assert [n.name for n in graph.nodes] == ["inner", "d3"]
    assert graph.single_consumer(inner) is graph.op("d3")
    sub = graph.subgraph(graph.node(inner))
    assert groups_by_source(sub.channel_groups())["d1"].blocked is None
    assert groups_by_source(sub.channel_groups())["d2"].blocked is not None  # inner output


def test_subclassed_model_is_refused_by_name():
    class Net(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="subclassed keras.Model"):
        ModelGraph(Net())
