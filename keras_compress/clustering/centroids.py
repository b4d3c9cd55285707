"""Initial centroids for weight clustering (numpy, deterministic).

- "kmeans++": k-means++ seeding (Arthur & Vassilvitskii) then Lloyd iterations;
- "linear": evenly spaced between the smallest and largest weight (Han et
  al. found this keeps the rare large weights that matter);
- "density": quantiles of the weights (more centroids where weights are dense);
- "values": the weights' own distinct values when there are at most `k` (a
  stripped clustered model: nothing moves), else as "kmeans++".

Example:

```python
import numpy as np
from keras_compress.clustering.centroids import init_centroids

w = np.random.default_rng(0).normal(size=1000)
init_centroids(w, 4, "linear").round(2)   # evenly spaced from min to max
```
"""

from __future__ import annotations

import numpy as np

__all__ = ["INITS", "assign", "init_centroids"]

INITS = ("kmeans++", "linear", "density", "values")


def assign(values: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid for every value."""
    order = np.argsort(centroids)
    sorted_c = centroids[order]
    mids = (sorted_c[1:] + sorted_c[:-1]) / 2
    return order[np.searchsorted(mids, values)]


def init_centroids(values: np.ndarray, k: int, method: str = "kmeans++", seed: int = 0,
                   iterations: int = 20) -> np.ndarray:
    """`k` centroids for the 1-D `values` (fewer distinct values: padded copies)."""
    values = np.asarray(values, np.float64).reshape(-1)
    if method not in INITS:
        raise ValueError(f"`init` must be one of {INITS}; received {method!r}.")
    if values.size == 0:
        return np.zeros(k, np.float32)
    distinct = np.unique(values) if method == "values" else None
    if distinct is not None and distinct.size <= k:
        return np.concatenate([distinct, np.repeat(distinct[-1:], k - distinct.size)]).astype(
            np.float32)
    lo, hi = float(values.min()), float(values.max())
    if method == "linear" or lo == hi:
        return np.linspace(lo, hi, k).astype(np.float32)
    if method == "density":
        return np.quantile(values, np.linspace(0, 1, k)).astype(np.float32)
    rng = np.random.default_rng(seed)
    sample = values if values.size <= 20000 else rng.choice(values, 20000, replace=False)
    centroids = [sample[rng.integers(len(sample))]]
    for _ in range(1, k):
        d2 = np.min((sample[:, None] - np.asarray(centroids)[None]) ** 2, axis=1)
        total = d2.sum()
        pick = rng.integers(len(sample)) if total == 0 else rng.choice(len(sample), p=d2 / total)
        centroids.append(sample[pick])
    centroids = np.asarray(centroids, np.float64)
    for _ in range(iterations):
        idx = assign(sample, centroids)
        for j in range(k):
            members = sample[idx == j]
            if members.size:
                centroids[j] = members.mean()
    return centroids.astype(np.float32)
