"""Properties of the weight and activation fake quantizers (hypothesis)."""

from __future__ import annotations

import keras
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from keras_compress.quantization import quantizers

finite = st.floats(-100, 100, allow_nan=False, width=32)
kernels = arrays(np.float32, st.tuples(st.integers(1, 5), st.integers(1, 4), st.integers(1, 6)),
                 elements=finite)


@settings(max_examples=200, deadline=None)
@given(kernels, st.sampled_from([4, 8]), st.sampled_from([(), (-1,), (-2, -1)]))
def test_weight_grid_properties(w, bits, axes):
    q = quantizers.quantize_weight_np(w, axes, bits)
    scales = quantizers.weight_scales_np(w, axes, bits)
    levels = quantizers.weight_levels(bits)
    ints = q / scales
    np.testing.assert_allclose(ints, np.round(ints), atol=1e-3)   # on the grid
    assert np.all(np.abs(np.round(ints)) <= levels)
    assert np.all(q[w == 0] == 0)                                  # zeros stay zero
    np.testing.assert_allclose(quantizers.quantize_weight_np(q, axes, bits), q,
                               rtol=1e-6, atol=1e-30)              # idempotent
    assert np.all(np.abs(q - w) <= scales / 2 * (1 + 1e-5) + 1e-30)  # nearest level
    # The graph version (one fused op) computes the same values, except that a
    # weight halfway between two levels may round to either.
    graph = keras.ops.convert_to_numpy(quantizers.fake_quant_weight(w, axes, bits))
    halfway = np.abs(np.abs(w / scales - np.round(w / scales)) - 0.5) < 1e-4
    close = np.isclose(graph, q, rtol=1e-5, atol=1e-6)
    assert np.all(close | halfway), (w[~close], graph[~close], q[~close])
    np.testing.assert_allclose(graph[halfway], q[halfway], atol=np.max(scales) * 1.001)


def test_weight_fake_quant_is_straight_through_and_keeps_zero_channels():
    import tensorflow as tf

    # A depthwise-like kernel: channels over the last two axes, one all zero
    # (a pruned filter), the gradient passed through unchanged.
    w = np.random.default_rng(0).normal(size=(3, 3, 4, 2)).astype("float32")
    w[:, :, 1, 0] = 0.0
    var = tf.Variable(w)
    upstream = np.random.default_rng(1).normal(size=w.shape).astype("float32")
    with tf.GradientTape() as tape:
        q = quantizers.fake_quant_weight(var, (-2, -1))
        loss = tf.reduce_sum(q * upstream)
    np.testing.assert_array_equal(tape.gradient(loss, var).numpy(), upstream)
    q = q.numpy()
    np.testing.assert_array_equal(q[:, :, 1, 0], 0.0)
    np.testing.assert_allclose(q, quantizers.quantize_weight_np(w, (-2, -1)), rtol=1e-6)
    # Not a channel layout that is last: a transposed convolution's (-2,).
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(quantizers.fake_quant_weight(w, (-2,))),
        quantizers.quantize_weight_np(w, (-2,)), rtol=1e-6)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float32, st.integers(1, 64), elements=finite),
       st.floats(-10, 0, width=32), st.floats(0.0625, 10, width=32))
def test_activation_fake_quant_stays_in_range_and_keeps_zero(x, lo, hi):
    y = keras.ops.convert_to_numpy(quantizers.fake_quant_activation(x, lo, hi, 8))
    step = (hi - lo) / 255
    assert np.all(y >= lo - step) and np.all(y <= hi + step)
    zero = keras.ops.convert_to_numpy(quantizers.fake_quant_activation(np.zeros(3, "float32"),
                                                                        lo, hi, 8))
    np.testing.assert_array_equal(zero, 0.0)   # 0 is always exactly representable


def test_activation_range_is_first_batch_then_moving_average_then_frozen(digits_split):
    """The tracked range, inside a compiled training step, against a NumPy
    reference: the first batch's (min, max) widened to contain 0, then the
    moving average with `momentum`, and no change once frozen."""
    import tensorflow as tf

    import keras_compress as kc

    (x, _), _ = digits_split
    acts = (x.reshape(len(x), -1) - 0.3) * 4.0   # real images, both signs
    q = kc.ActivationQuantizer(bits=8, momentum=0.9)
    step = tf.function(lambda b: q(b, training=True))
    ref = None
    for i in range(5):
        batch = acts[i * 64:(i + 1) * 64]
        lo, hi = min(batch.min(), 0.0), max(batch.max(), 0.0)
        ref = (lo, hi) if ref is None else tuple(0.9 * r + 0.1 * b for r, b in zip(ref, (lo, hi)))
        step(batch)
        np.testing.assert_allclose(q.range, ref, rtol=1e-5)
    q.frozen.assign(1.0)
    step(acts[-64:] * 10.0)
    np.testing.assert_allclose(q.range, ref, rtol=1e-5)
    assert float(q.observed.numpy()) == 1.0
