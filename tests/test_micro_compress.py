"""Flash encodings for TFLite-Micro: the Prune and Huffman encoders decoded by
the real TFLite-Micro runtime, and `compress_micro` choosing per tensor."""

from __future__ import annotations

import re
import shutil
import subprocess

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import keras_compress as kc
import tflite_export
from conftest import compile_classifier
from tflite_export import encodings, micro, micro_run
from tflite_export._decode_check import _decode_alone

L = keras.layers


def _decoded(values, encoded, zero_points=(), axis=0):
    scales = [0.5] * len(zero_points)
    return _decode_alone(values, encoded.encoded, encoded.ancillary, zero_points, axis, scales)


def _same_bits(a, b):
    return a.shape == b.shape and a.tobytes() == b.tobytes()


_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.float32, np.bool_]


@st.composite
def _sparse_tensor(draw, dtypes):
    dtype = draw(st.sampled_from(dtypes))
    shape = tuple(draw(st.lists(st.integers(1, 9), min_size=1, max_size=3)))
    density = draw(st.sampled_from([0.0, 0.02, 0.3, 0.7, 1.0]))
    levels = draw(st.sampled_from([1, 2, 5, 40, 256]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if dtype is np.bool_:
        values = rng.random(shape) < density
    elif dtype is np.float32:
        values = (rng.integers(-levels, levels + 1, shape) * 0.37).astype(np.float32)
    else:
        info = np.iinfo(dtype)
        values = np.clip(rng.integers(-levels, levels + 1, shape) * (7 if levels > 40 else 1),
                         info.min, info.max).astype(dtype)
    if dtype is not np.bool_:
        values = np.where(rng.random(shape) < density, values, 0).astype(dtype)
    return values


@settings(max_examples=40, deadline=None)
@given(_sparse_tensor(_DTYPES))
def test_prune_encoding_decodes_bit_exactly_in_tflite_micro(values):
    encoded = encodings.encode_prune(values)
    assert _same_bits(_decoded(values, encoded), values)
    kept = np.count_nonzero(values.view(np.int32) if values.dtype == np.float32 else values)
    assert len(encoded.encoded) == -(-values.size // 8)
    assert len(encoded.ancillary) == 16 + kept * values.dtype.itemsize


@settings(max_examples=40, deadline=None)
@given(_sparse_tensor([np.int8, np.int16]))
def test_huffman_encoding_decodes_bit_exactly_in_tflite_micro(values):
    encoded = encodings.encode_huffman(values)
    assert _same_bits(_decoded(values, encoded), values)
    # At least one bit per element (plus the stream's padding word); a lone
    # symbol costs exactly one.
    assert len(encoded.encoded) >= values.size / 8 + 4
    if len(np.unique(values)) == 1:
        assert len(encoded.encoded) == (values.size + 31) // 32 * 4 + 4


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**16), st.sampled_from([0, -1]), st.sampled_from([0.0, 0.5, 1.0]))
def test_prune_writes_per_channel_zero_points_on_either_axis(seed, axis, density):
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(1, 6, 3))
    channels = shape[axis]
    zero_points = rng.integers(-128, 128, channels)
    zp = np.expand_dims(zero_points, [a for a in range(3) if a != axis % 3])
    values = np.where(rng.random(shape) < density, rng.integers(-128, 128, shape),
                      zp).astype(np.int8)
    encoded = encodings.encode_prune(values, zero_points, axis % 3)
    # The decoder reads a single channel's zero point on axis 0 only.
    quantized_axis = axis % 3 if channels > 1 else 0
    assert _same_bits(_decoded(values, encoded, zero_points, quantized_axis), values)
    # Positions equal to their channel's zero point cost no value bytes.
    assert len(encoded.ancillary) == 16 + int(np.sum(values != zp))


def test_huffman_codes_skewed_values_in_about_their_entropy():
    rng = np.random.default_rng(0)
    values = rng.choice(np.arange(-4, 5, dtype=np.int8), size=(256, 128),
                        p=[.01, .02, .05, .12, .6, .12, .05, .02, .01])
    encoded = encodings.encode_huffman(values)
    probabilities = np.unique(values, return_counts=True)[1] / values.size
    entropy_bytes = -np.sum(probabilities * np.log2(probabilities)) * values.size / 8
    assert entropy_bytes <= len(encoded.encoded) <= entropy_bytes * 1.1 + 8
    assert _same_bits(_decoded(values, encoded), values)


@pytest.mark.parametrize("values, kwargs, match", [
    (np.zeros(4, np.uint8), {}, "Prune encodes"),
    (np.zeros(4, np.int16), dict(zero_points=3), "zero points of 0"),
    (np.zeros((2, 3, 4), np.int8), dict(zero_points=[1, 2, 3], axis=1), "axis 0 or the last"),
    (np.zeros((2, 3), np.int8), dict(zero_points=[1, 2, 3], axis=0), "3 zero points for 2"),
])
def test_prune_refuses_what_the_decoder_cannot_write(values, kwargs, match):
    with pytest.raises(ValueError, match=match):
        encodings.encode_prune(values, **kwargs)


def test_huffman_refuses_other_types_and_empty_tensors():
    with pytest.raises(ValueError, match="int8, int16 tensors; received int32"):
        encodings.encode_huffman(np.zeros(4, np.int32))
    with pytest.raises(ValueError, match="empty"):
        encodings.encode_huffman(np.zeros(0, np.int8))


# --------------------------------------------------------------- compress_micro
def _zoo_model() -> keras.Model:
    """Conv, depthwise, residual Add, Concatenate and Dense in one graph."""
    inputs = keras.Input((8, 8, 1))
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="conv")(inputs)
    y = L.DepthwiseConv2D(3, padding="same", activation="relu", name="dw")(x)
    x = L.Add(name="add")([x, L.Conv2D(16, 1, name="pw")(y)])
    x = L.Concatenate(name="cat")([x, L.Conv2D(8, 3, padding="same", name="side")(x)])
    x = L.MaxPooling2D(2)(x)
    x = L.Reshape((-1,))(x)
    x = L.Dense(64, activation="relu", name="fc1")(x)
    return keras.Model(inputs, L.Dense(10, name="logits")(x))


@pytest.fixture(scope="module")
def sparse_int8(digits_split):
    """The zoo model trained on digits with 85 % of its weights pruned, int8."""
    (x, y), _ = digits_split
    keras.utils.set_random_seed(7)
    model = compile_classifier(kc.prune(_zoo_model(), schedule=kc.ConstantSparsity(0.85, 0)))
    model.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[kc.PruningCallback()])
    return tflite_export.convert(kc.strip(model), mode="int8", representative_data=x[:200],
                                 io_dtype="int8")


@pytest.mark.parametrize("methods", [("prune",), ("huffman",), ("lut",),
                                     ("lut", "prune", "huffman")])
def test_compress_micro_is_bit_exact_on_real_data_for_every_encoding(
        sparse_int8, digits_split, methods):
    _, (xt, _) = digits_split
    result = tflite_export.compress_micro(sparse_int8, methods=methods)
    encoded = result.encoded
    assert encoded and {t.method for t in encoded} <= set(methods)
    assert result.model.size < sparse_int8.size
    assert "TFLM_DECODE" in result.model.ops
    # Every kernel of the model: the 85 %-sparse ones shrink with every method.
    kernels = {inputs[1].index for op, inputs, _ in sparse_int8.operators
               if op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")}
    assert kernels <= {t.index for t in result.tensors}
    if methods != ("lut",):  # 85 % zeros with up to 255 values: LUT helps only the big ones
        assert {t.index for t in encoded} >= {
            t.index for t in result.tensors if t.index in kernels and t.bytes_before > 1000}
    for t in encoded:
        assert t.bytes_after < t.bytes_before and t.decode_ram >= t.bytes_before
    # The encoded bytes keep no duplicate quantization (the wheel's inserter would).
    for t in result.model.tensors:
        if t.dtype == "UINT8" and t.is_constant:
            assert t.scale == () and t.zero_point == ()
    np.testing.assert_array_equal(tflite_export.predict(result.model, xt[:60], "micro"),
                                  tflite_export.predict(sparse_int8, xt[:60], "micro"))


def test_compress_micro_keeps_decode_ram_within_the_budget(sparse_int8):
    free = tflite_export.compress_micro(sparse_int8)
    biggest = max(t.decode_ram for t in free.encoded)
    assert free.decompression_bytes >= biggest
    budget = biggest - 16
    bounded = tflite_export.compress_micro(sparse_int8, ram_budget=budget)
    assert bounded.decompression_bytes <= budget
    assert len(bounded.encoded) < len(free.encoded)
    dropped = [t for t in bounded.tensors if t.method == "dense" and "budget" in t.note]
    assert dropped and all(f"{budget:,} B" in t.note for t in dropped)
    # A budget no tensor fits: every tensor left dense, each saying why.
    none = tflite_export.compress_micro(sparse_int8, ram_budget=0)
    assert none.encoded == [] and none.model is sparse_int8 and none.decompression_bytes == 0
    assert all(t.method == "dense" for t in none.tensors)
    table = none.table()
    assert "over the budget of 0 B" in table and "| model |" in table


def test_compress_micro_unpacks_4_bit_weights_and_codes_them_smaller(digits_split):
    (x, y), (xt, _) = digits_split
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((8, 8, 1)), L.Reshape((-1,)),
                              L.Dense(128, activation="relu", name="fc1"), L.Dense(10)])
    # Pruned and 4-bit: few values, mostly zero, which packed INT4 cannot exploit.
    qat = compile_classifier(kc.quantize(kc.prune(model, schedule=kc.ConstantSparsity(0.7, 0)),
                                         weight_bits=4))
    qat.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[kc.PruningCallback()])
    tfl = tflite_export.convert(kc.strip(qat), mode="int8", io_dtype="int8")
    packed = [t for t in tfl.tensors if t.dtype == "INT4"]
    assert packed
    result = tflite_export.compress_micro(tfl)
    coded = {t.index: t for t in result.encoded}
    assert {p.index for p in packed} <= set(coded)
    for p in packed:  # fewer than 4 bits a weight, decoded to int8 values
        assert coded[p.index].bytes_after < coded[p.index].bytes_before
        assert coded[p.index].decode_ram >= 2 * coded[p.index].bytes_before
    assert result.model.size < tfl.size
    np.testing.assert_array_equal(tflite_export.predict(result.model, xt[:60], "micro"),
                                  tflite_export.predict(tfl, xt[:60], "micro"))


def test_compress_micro_16x8_model(digits_split, sparse_int8):
    (x, y), (xt, _) = digits_split
    keras.utils.set_random_seed(5)
    model = compile_classifier(kc.prune(keras.Sequential([
        keras.Input((8, 8, 1)), L.Reshape((-1,)), L.Dense(96, activation="relu"), L.Dense(10)]),
        schedule=kc.ConstantSparsity(0.9, 0)))
    model.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[kc.PruningCallback()])
    tfl = tflite_export.convert(kc.strip(model), mode="int16x8", representative_data=x[:100])
    result = tflite_export.compress_micro(tfl)
    assert result.encoded and result.model.size < tfl.size
    np.testing.assert_array_equal(tflite_export.predict(result.model, xt[:30], "micro"),
                                  tflite_export.predict(tfl, xt[:30], "micro"))


def test_compress_micro_refuses_bad_input(sparse_int8, digits_split):
    (x, _), _ = digits_split
    floats = tflite_export.convert(keras.Sequential([keras.Input((8, 8, 1)), L.Reshape((-1,)),
                                                     L.Dense(10)]), mode="float32")
    with pytest.raises(ValueError, match="integer model .* Convert with mode='int8'"):
        tflite_export.compress_micro(floats)
    compressed = tflite_export.compress_micro(sparse_int8).model
    with pytest.raises(ValueError, match="already compressed"):
        tflite_export.compress_micro(compressed)
    for bad in (dict(methods=("zip",)), dict(methods="lut"), dict(methods=()),
                dict(ram_budget=-1), dict(ram_budget=1.5)):
        with pytest.raises(ValueError, match="methods|ram_budget"):
            tflite_export.compress_micro(sparse_int8, **bad)
    with pytest.raises(ValueError, match="TFLiteModel"):
        tflite_export.compress_micro(sparse_int8.content)


def test_arena_from_the_recording_allocator_is_the_one_the_search_finds(
        sparse_int8, digits_split):
    """find_arena_size starts from TFLite-Micro's recorded arena total and
    confirms it with two probes; the answer is the plain doubling-and-bisecting
    search's: int8, compressed (decoding into the arena or into its own
    buffer), 16x8, and 4-bit Dense weights (whose arena is larger than the
    recorded total: the search above it)."""
    (x, y), _ = digits_split

    def mlp():
        return keras.Sequential([keras.Input((8, 8, 1)), L.Reshape((-1,)),
                                 L.Dense(48, "relu"), L.Dense(10)])

    compressed = tflite_export.compress_micro(sparse_int8)
    sixteen = tflite_export.convert(mlp(), mode="int16x8", representative_data=x[:50])
    qat = compile_classifier(kc.quantize(mlp(), weight_bits={L.Dense: 4}))
    qat.fit(x, y, epochs=1, batch_size=64, verbose=0)
    four = tflite_export.convert(kc.strip(qat), mode="int8", io_dtype="int8")
    for tfl, decompression in [(sparse_int8, 0), (compressed.model, 0),
                               (compressed.model, compressed.decompression_bytes),
                               (sixteen, 0), (four, 0)]:
        with micro_run._Prober(tfl, decompression) as prober:
            searched = micro_run._search_arena(prober, 64 * 1024 * 1024)
        assert micro.find_arena_size(tfl, decompression=decompression) == searched


def test_export_micro_sizes_the_decompression_buffer_and_compiles(sparse_int8, tmp_path):
    result = tflite_export.compress_micro(sparse_int8)
    art = tflite_export.export_micro(result.model, tmp_path / "out", name="sparse")
    header = art.model_h.read_text()
    assert art.decompression_bytes == result.decompression_bytes > 0
    assert f"g_sparse_decompression_buffer_size = {art.decompression_bytes};" in header
    assert "SetDecompressionMemory(&region, 1)" in header
    # DECODE needs no build flag (the firmware tests run such models on Cortex-M,
    # where TFLite-Micro's Makefile ignores USE_TFLM_COMPRESSION).
    assert "USE_TFLM_COMPRESSION" not in header
    assert "resolver.AddDecode()" in art.resolver_h.read_text()
    # The buffer takes the decoded weights out of the arena; without it they need arena.
    assert micro.arena_works(result.model, art.arena_bytes) is False
    assert micro.find_arena_size(result.model) > art.arena_bytes
    assert art.ram_bytes == art.arena_bytes + art.decompression_bytes
    cc = art.model_cc.read_text()
    assert bytes(int(b, 16) for b in re.findall(r"0x([0-9a-f]{2})", cc)) == result.model.content
    if shutil.which("g++"):
        subprocess.run(["g++", "-std=c++17", "-c", str(art.model_cc), "-o",
                        str(tmp_path / "model.o")], check=True, cwd=tmp_path / "out")


def test_cli_micro_compress_writes_the_compressed_model(sparse_int8, tmp_path):
    import sys

    from conftest import REPO

    sparse_int8.save(tmp_path / "m.tflite")
    done = subprocess.run([sys.executable, "-m", "tflite_export", "micro", "--tflite=m.tflite",
                           "--out_dir=micro", "--name=sparse", "--compress"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert "| model |" in done.stdout and "decompression buffer" in done.stdout
    header = (tmp_path / "micro" / "sparse_model_data.h").read_text()
    size = int(re.search(r"g_sparse_model_data_size = (\d+);", header).group(1))
    assert size < sparse_int8.size and "g_sparse_decompression_buffer_size" in header
