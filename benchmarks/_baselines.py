"""Trained float baselines kept in the repository, next to the suite's cache.

The suite caches each case's trained float weights (`<case>-<key>.npz`) and,
while a fit runs, its per-epoch backup (`<case>-<key>.backup/`, written by
`keras.callbacks.BackupAndRestore`) in a cache folder. The ResNet-8 baseline
takes about four hours on 2 cores, longer than a working session whose
machine, cache included, does not outlive it. A store folder under version
control (`benchmarks/baselines/`) carries the finished weights, or an
unfinished fit's backup, from one machine to the next:

- `publish(cached, store)` copies the cache's entry for `cached` into the store
  (the weights when the fit has finished, else its backup);
- `seed(cached, store)` copies the store's entry into the cache when the cache
  has nothing as far along, so the suite loads the weights or resumes the fit;
- `finish(cached, store)`, once that fit completes, replaces the store's
  backup with the weights, so the store never offers a stale backup.

The key in each name covers the model source, the recipe, the run lengths and
the seed, so an entry is never used for a model or recipe it was not trained
with.

`publish` and `seed` carry any finished single-file entry the same way: the
suite's trained compressing rows (`<case>-<row>-<key>.npz`) use them too.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

_METADATA = "training_metadata.json"
_WEIGHTS = "latest.weights.h5"


def backup_dir(cached: Path) -> Path:
    """Where the float fit whose weights go to `cached` keeps its backup."""
    return cached.with_suffix(".backup")


def backup_epoch(backup: Path) -> int:
    """Epochs completed by the fit whose backup is `backup` (-1 when there is
    no complete backup there)."""
    try:
        return int(json.loads((backup / _METADATA).read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return -1


def _replace_dir(source: Path, target: Path) -> None:
    """Make `target` a copy of the folder `source`, all at once: the copy is
    made beside `target` and renamed into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # a plain folder's permissions, not mkdtemp's 0o700
    try:
        for name in (_WEIGHTS, _METADATA):  # weights first: Keras writes them first
            shutil.copy2(source / name, staging / name)
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
        staging.rename(target)
        if old is not None:
            shutil.rmtree(old)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _copy_file(source: Path, target: Path) -> None:
    """Copy `source` to `target` through a temporary file and a rename."""
    from tflite_export.model import write_atomic

    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, source.read_bytes())


def _stamp(backup: Path) -> tuple:
    """What changes when a fit rewrites `backup`: its files' modification times."""
    return tuple((backup / name).stat().st_mtime_ns for name in (_WEIGHTS, _METADATA))


def _stable_backup(backup: Path, tries: int = 30, wait: float = 2.0) -> Path:
    """`backup` once it is between two epochs' writes: the metadata, which
    Keras writes after the weights, is not older than the weights. A running
    fit rewrites both at the end of every epoch."""
    for _ in range(tries):
        try:
            weights, metadata = (backup / _WEIGHTS).stat(), (backup / _METADATA).stat()
        except FileNotFoundError:
            weights = metadata = None
        if metadata is not None and metadata.st_mtime_ns >= weights.st_mtime_ns and (
                time.time() - metadata.st_mtime > 1.0):
            return backup
        time.sleep(wait)
    raise RuntimeError(f"The backup in {backup} did not settle (is a fit writing it?): "
                       "no complete epoch to copy.")


def publish(cached: Path, store: Path) -> str:
    """Copy the cache's entry for the float weights file `cached` into the
    folder `store`: the weights if the fit has finished (the store's backup,
    now stale, is removed), else the fit's latest complete backup. Returns
    what was copied, for the log. Raises `FileNotFoundError` when the cache
    has neither."""
    stored = store / cached.name
    if cached.exists():
        _copy_file(cached, stored)
        shutil.rmtree(backup_dir(stored), ignore_errors=True)
        return f"trained weights -> {stored}"
    backup = backup_dir(cached)
    if not backup.is_dir():
        raise FileNotFoundError(f"Nothing to publish: neither {cached} nor {backup} exists; "
                                "run the suite for this case first.")
    for _ in range(3):
        before = _stamp(_stable_backup(backup))
        _replace_dir(backup, backup_dir(stored))
        if _stamp(backup) == before:
            return f"backup after epoch {backup_epoch(backup)} -> {backup_dir(stored)}"
    raise RuntimeError(f"The backup in {backup} kept changing while it was copied; try again.")


def seed(cached: Path, store: Path) -> str | None:
    """Copy the store's entry for `cached` into the cache when the cache has
    nothing as far along: the trained weights, or an unfinished fit's backup
    that has completed more epochs than the cache's own. Returns what was
    copied, for the log, or None."""
    if cached.exists():
        return None
    stored = store / cached.name
    if stored.exists():
        _copy_file(stored, cached)
        return f"trained weights from {stored}"
    stored_backup, backup = backup_dir(stored), backup_dir(cached)
    if backup_epoch(stored_backup) > backup_epoch(backup):
        _replace_dir(stored_backup, backup)
        return f"backup after epoch {backup_epoch(backup)} from {stored_backup}"
    return None


def finish(cached: Path, store: Path) -> str | None:
    """After the fit that writes `cached` has completed: if the store holds a
    backup of that fit, publish the weights in its place (the working tree
    then holds the change to commit). Returns what was copied, or None."""
    if not backup_dir(store / cached.name).is_dir():
        return None
    return publish(cached, store)
