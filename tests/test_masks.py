"""Mask functions: exact counts, structure, monotonicity (property-based)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from keras_compress.pruning import masks

finite = st.floats(-10, 10, allow_nan=False, width=32)


def arrays(min_dims=1, max_dims=4, min_side=1, max_side=8):
    return hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side),
        elements=finite,
    )


@given(w=arrays(), sparsity=st.floats(0.0, 0.99))
def test_magnitude_keeps_exact_count_of_largest(w, sparsity):
    mask = masks.magnitude(w, sparsity)
    assert mask.shape == w.shape and set(np.unique(mask)) <= {0.0, 1.0}
    kept = int(mask.sum())
    assert kept == max(1, min(w.size, round(w.size * (1 - sparsity))))
    if 0 < kept < w.size:  # every kept |w| >= every dropped |w|
        assert np.abs(w)[mask == 1].min() >= np.abs(w)[mask == 0].max()


@settings(max_examples=50)
@given(w=hnp.arrays(np.float32, st.integers(1, 300), elements=st.sampled_from([0.0, -0.5, 0.25, 1.0, -2.0]) | finite),
       sparsity=st.floats(0.0, 0.99))
def test_magnitude_matches_a_stable_sort_on_ties_and_zeros(w, sparsity):
    # Gradual pruning leaves many exact zeros and equal magnitudes: the mask is
    # still the n largest |w|, earlier positions first among equals.
    n_keep = max(1, min(w.size, round(w.size * (1 - sparsity))))
    order = np.lexsort((np.arange(w.size), -np.abs(w)))
    expected = np.zeros(w.size, np.float32)
    expected[order[:n_keep]] = 1.0
    np.testing.assert_array_equal(masks.magnitude(w, sparsity), expected)


@given(w=arrays(), s1=st.floats(0.0, 0.95), s2=st.floats(0.0, 0.95))
def test_magnitude_is_monotone_on_masked_weights(w, s1, s2):
    lo, hi = sorted((s1, s2))
    first = masks.magnitude(w, lo)
    second = masks.magnitude(w * first, hi)
    assert np.all(second <= first)  # nothing pruned comes back


@settings(deadline=None)
@given(
    groups=st.integers(1, 6),
    n_m=st.sampled_from([(1, 2), (2, 4), (1, 4), (3, 4), (4, 8), (2, 8)]),
    cols=st.integers(1, 5),
    data=st.data(),
)
def test_n_of_m_holds_in_every_group(groups, n_m, cols, data):
    n, m = n_m
    w = data.draw(hnp.arrays(np.float32, (3, groups * m, cols), elements=finite))
    mask = masks.n_of_m(w, n, m, axis=1)
    runs = np.moveaxis(mask, 1, -1).reshape(-1, m)
    assert np.all(runs.sum(axis=1) == n)
    # the kept ones are the largest of their group
    wr = np.moveaxis(np.abs(w), 1, -1).reshape(-1, m)
    for row, keep in zip(wr, runs):
        if n < m:
            assert row[keep == 1].min() >= row[keep == 0].max()


def test_n_of_m_ramps_with_schedule_sparsity():
    w = np.arange(1, 17, dtype=np.float32).reshape(16, 1)
    assert masks.n_of_m(w, 2, 4, 0, sparsity=0.0).sum() == 16
    assert masks.n_of_m(w, 2, 4, 0, sparsity=0.3).sum() == 12  # one of 4 dropped
    assert masks.n_of_m(w, 2, 4, 0, sparsity=0.5).sum() == 8
    assert masks.n_of_m(w, 2, 4, 0, sparsity=0.9).sum() == 8  # capped at N:M


def test_n_of_m_rejects_indivisible_axis():
    with pytest.raises(ValueError, match="multiple of M=4"):
        masks.n_of_m(np.ones((6, 3)), 2, 4, axis=0)


@given(
    w=hnp.arrays(np.float32, st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 4), st.integers(1, 12)), elements=finite),
    sparsity=st.floats(0.0, 0.95),
)
def test_channel_mask_zeros_whole_lowest_filters(w, sparsity):
    mask = masks.channel(w, sparsity, out_axes=(-1,))
    per_channel = mask.reshape(-1, w.shape[-1])
    assert np.all((per_channel == 0).all(axis=0) | (per_channel == 1).all(axis=0))
    kept = int(per_channel[0].sum())
    channels = w.shape[-1]
    assert kept == max(1, min(channels, round(channels * (1 - sparsity))))


@given(ws=st.lists(arrays(max_dims=2), min_size=1, max_size=4), sparsity=st.floats(0.0, 0.95))
def test_global_magnitude_reaches_overall_sparsity(ws, sparsity):
    result = masks.global_magnitude(ws, sparsity)
    total = sum(w.size for w in ws)
    kept = sum(int(m.sum()) for m in result)
    target = max(1, min(total, round(total * (1 - sparsity))))
    # at most one extra weight per tensor, kept so that no layer dies
    assert target <= kept <= target + len(ws)
    assert all(m.sum() >= 1 for m in result)


def test_global_channel_ranks_by_rms_across_layers():
    big = np.ones((4, 4), np.float32) * np.array([5, 5, 5, 5], np.float32)
    small = np.ones((16, 4), np.float32) * np.array([0.1, 0.2, 9, 9], np.float32)
    m1, m2 = masks.global_channel([big, small], 0.25, [(-1,), (-1,)])
    assert m1.all() and (m2[:, :2] == 0).all() and (m2[:, 2:] == 1).all()


@settings(max_examples=200)
@given(w=hnp.arrays(np.float32, st.integers(64, 400), elements=st.sampled_from([0.0, 0.25, 0.5, 1.0]) | finite),
       where=st.floats(0.0, 1.0), sample=st.sampled_from([2, 4, 8]))
def test_value_at_rank_is_exact_whatever_the_sample(w, where, sample):
    # Large kernels are ranked through a sampled bracket (here forced onto small
    # arrays with a tiny sample, so brackets often miss): the answer is still
    # exactly the sorted entry, including on runs of ties and zeros.
    rank = min(w.size - 1, int(where * w.size))
    assert masks._value_at_rank(w, rank, sample=sample) == np.sort(w)[rank]


@pytest.mark.parametrize("zeros", [0.0, 0.5, 0.9])
@pytest.mark.parametrize("levels", [None, 20])
def test_magnitude_matches_a_stable_sort_on_kernel_sized_weights(zeros, levels):
    # The sampled path (784x300, the LeNet-300-100 fc1 kernel), with the zeros
    # gradual pruning leaves and, for `levels`, the ties of quantized weights.
    rng = np.random.default_rng(int(10 * zeros) + (levels or 0))
    w = rng.normal(size=(784, 300)).astype(np.float32)
    if levels:
        w = np.round(w * levels) / levels
    w[rng.random(w.shape) < zeros] = 0.0
    order = np.lexsort((np.arange(w.size), -np.abs(w).reshape(-1)))
    for sparsity in (zeros / 2, zeros, (1 + zeros) / 2, 0.99):
        n_keep = max(1, round(w.size * (1 - sparsity)))
        expected = np.zeros(w.size, np.float32)
        expected[order[:n_keep]] = 1.0
        np.testing.assert_array_equal(masks.magnitude(w, sparsity).reshape(-1), expected)
