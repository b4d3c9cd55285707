"""Pruning masks: pure NumPy functions from weights to 0/1 masks.

Every function takes the *effective* weights (already multiplied by the current
mask), returns a float mask of the same shape, and is deterministic: ties are
broken by position, so the same weights always give the same mask. Weights that
are already zero rank lowest, which makes gradual pruning monotone: a weight
once pruned stays pruned.

Counting follows TFMOT: a layer of `n` weights at sparsity `s` keeps
`round(n * (1 - s))` of them, and never fewer than one.

Example:

```python
import numpy as np
from keras_compress.pruning import masks

w = np.array([[0.1, -2.0], [0.5, 0.05]])
masks.magnitude(w, 0.5)          # [[0., 1.], [1., 0.]]
```
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "magnitude",
    "n_of_m",
    "channel",
    "global_magnitude",
    "global_channel",
    "n_of_m_drop_count",
]


def _n_keep(n: int, sparsity: float) -> int:
    return max(1, min(n, int(round(n * (1.0 - sparsity)))))


# Entries sampled to bracket a threshold (inputs of 8x as many entries or more).
_SAMPLE = 4096


def _value_at_rank(flat: np.ndarray, rank: int, sample: int = _SAMPLE) -> np.ndarray:
    """The entry of `flat` that an ascending sort puts at `rank`, exactly.

    Large inputs are bracketed first: the rank's quantile in a fixed random
    sample, widened by four standard errors, gives bounds [lo, hi]; two counts
    check that the rank falls inside, and only the entries within are
    partitioned (faster than one partition of the whole input on a
    LeNet-sized kernel; docs/status.md has the measurement). When the check
    fails the whole input is used, so the result never depends on the sample.
    """
    n = flat.size
    if n >= 8 * sample:
        picked = np.sort(flat[np.random.default_rng(n).integers(0, n, sample)])
        q = rank / n
        margin = 4.0 * np.sqrt(q * (1.0 - q) / sample) + 2.0 / sample
        lo = picked[max(0, int((q - margin) * sample))]
        hi = picked[min(sample - 1, int(np.ceil((q + margin) * sample)))]
        if np.count_nonzero(flat < lo) <= rank < n - np.count_nonzero(flat > hi):
            # Entries equal to lo (often the zeros of pruned weights) are left
            # out of the partition, which duplicates slow down.
            upto = int(np.count_nonzero(flat <= lo))
            if rank < upto:
                return lo
            inside = flat[(flat > lo) & (flat <= hi)]
            return np.partition(inside, rank - upto)[rank - upto]
    # Gradual pruning leaves most scores at exactly the minimum (pruned weights
    # score 0), and np.partition slows down about tenfold on such duplicates
    # (docs/status.md): select among the scores
    # above the minimum, which hold the rank unless it falls on the minimum.
    floor = flat.min()
    above = flat[flat > floor]
    k = rank - (n - above.size)
    return floor if k < 0 else np.partition(above, k)[k]


def _keep_largest(scores: np.ndarray, n_keep: int) -> np.ndarray:
    """Boolean vector marking the `n_keep` largest scores; among equal scores
    the earlier positions win. O(n): a selection, not a sort."""
    flat = scores.reshape(-1)
    if n_keep >= flat.size:
        return np.ones(flat.shape, dtype=bool)
    if n_keep <= 0:
        return np.zeros(flat.shape, dtype=bool)
    threshold = _value_at_rank(flat, flat.size - n_keep)
    keep = flat > threshold
    ties = np.flatnonzero(flat == threshold)[: n_keep - int(np.count_nonzero(keep))]
    keep[ties] = True
    return keep


def magnitude(weights: np.ndarray, sparsity: float) -> np.ndarray:
    """Unstructured magnitude mask: zero the `sparsity` fraction of smallest |w|."""
    w = np.asarray(weights)
    keep = _keep_largest(np.abs(w), _n_keep(w.size, sparsity))
    return keep.reshape(w.shape).astype(w.dtype if w.dtype.kind == "f" else np.float32)


def n_of_m_drop_count(n: int, m: int, sparsity: float) -> int:
    """How many weights of each group of `m` are dropped at schedule `sparsity`.

    The schedule's sparsity is followed in whole weights per group (rounded down)
    and capped at `m - n`, so the mask reaches exactly N:M at the schedule's end.
    """
    return min(m - n, int(np.floor(sparsity * m + 1e-6)))


def n_of_m(
    weights: np.ndarray, n: int, m: int, axis: int, sparsity: float | None = None
) -> np.ndarray:
    """N:M mask: in every run of `m` consecutive weights along `axis`, keep the `n`
    largest |w| (or, while a schedule ramps up, the `m - drop` largest).

    `weights.shape[axis]` must be a multiple of `m`.
    """
    w = np.asarray(weights)
    axis = axis % w.ndim
    if w.shape[axis] % m:
        raise ValueError(
            f"N:M pruning needs the input dimension ({w.shape[axis]}) to be a multiple "
            f"of M={m}."
        )
    drop = m - n if sparsity is None else n_of_m_drop_count(n, m, sparsity)
    moved = np.moveaxis(np.abs(w), axis, -1)
    groups = moved.reshape(-1, m)
    # Rank inside each group: argsort of -|w| (stable) gives the largest first.
    order = np.argsort(-groups, axis=1, kind="stable")
    keep = np.zeros_like(groups, dtype=bool)
    rows = np.arange(groups.shape[0])[:, None]
    keep[rows, order[:, : m - drop]] = True
    mask = np.moveaxis(keep.reshape(moved.shape), -1, axis)
    return mask.astype(w.dtype if w.dtype.kind == "f" else np.float32)


def _channel_scores(w: np.ndarray, out_axes: Sequence[int]) -> np.ndarray:
    """RMS of each output channel (shape: the `out_axes` dims of `w`)."""
    out_axes = tuple(a % w.ndim for a in out_axes)
    other = tuple(a for a in range(w.ndim) if a not in out_axes)
    return np.sqrt(np.mean(np.square(w, dtype=np.float64), axis=other))


def _broadcast_channel_keep(
    keep: np.ndarray, shape: tuple[int, ...], out_axes: Sequence[int], dtype
) -> np.ndarray:
    out_axes = tuple(a % len(shape) for a in out_axes)
    expanded_shape = [shape[a] if a in out_axes else 1 for a in range(len(shape))]
    mask = np.broadcast_to(keep.reshape(expanded_shape), shape)
    return mask.astype(dtype if np.dtype(dtype).kind == "f" else np.float32)


def channel(weights: np.ndarray, sparsity: float, out_axes: Sequence[int]) -> np.ndarray:
    """Structured mask removing whole output channels (filters / units).

    Channels are ranked by the RMS of their weights; the `sparsity` fraction with
    the lowest RMS is zeroed (at least one channel is always kept).
    """
    w = np.asarray(weights)
    scores = _channel_scores(w, out_axes)
    keep = _keep_largest(scores, _n_keep(scores.size, sparsity)).reshape(scores.shape)
    return _broadcast_channel_keep(keep, w.shape, out_axes, w.dtype)


def _split(flat_keep: np.ndarray, sizes: Sequence[int]) -> list[np.ndarray]:
    return np.split(flat_keep, np.cumsum(sizes)[:-1])


def global_magnitude(weights: Sequence[np.ndarray], sparsity: float) -> list[np.ndarray]:
    """One magnitude ranking across several tensors (Han et al.'s global pruning).

    The overall fraction of zeros reaches `sparsity`; each tensor gets whatever
    share its magnitudes earn (every tensor keeps at least one weight).
    """
    arrays = [np.asarray(w) for w in weights]
    scores = np.concatenate([np.abs(a).reshape(-1) for a in arrays])
    keep = _keep_largest(scores, _n_keep(scores.size, sparsity))
    masks = []
    for a, k in zip(arrays, _split(keep, [a.size for a in arrays])):
        if not k.any():  # never remove a whole layer: keep its largest weight
            k = k.copy()
            k[np.argmax(np.abs(a).reshape(-1))] = True
        masks.append(k.reshape(a.shape).astype(a.dtype))
    return masks


def global_channel(
    weights: Sequence[np.ndarray], sparsity: float, out_axes: Sequence[Sequence[int]]
) -> list[np.ndarray]:
    """One channel ranking across several tensors, by per-channel RMS (which is
    comparable between layers of different fan-in)."""
    arrays = [np.asarray(w) for w in weights]
    per_layer = [_channel_scores(a, ax) for a, ax in zip(arrays, out_axes)]
    scores = np.concatenate([s.reshape(-1) for s in per_layer])
    keep = _keep_largest(scores, _n_keep(scores.size, sparsity))
    masks = []
    for a, ax, s, k in zip(
        arrays, out_axes, per_layer, _split(keep, [s.size for s in per_layer])
    ):
        if not k.any():
            k = k.copy()
            k[np.argmax(s.reshape(-1))] = True
        masks.append(_broadcast_channel_keep(k.reshape(s.shape), a.shape, ax, a.dtype))
    return masks
