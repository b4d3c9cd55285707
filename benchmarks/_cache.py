"""Where the suite keeps trained work: each case's float baseline and its
trained compressing rows, under keys that follow what the training computes
(`benchmarks._keys`), not the bytes of the source; copied from and to the
committed `benchmarks/baselines/` through `benchmarks._baselines`.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path

from benchmarks import _baselines, _cases, _keys

def float_cache(config: dict, name: str, lengths: tuple, case: dict) -> Path | None:
    """Where this case's trained float weights are kept, or None (no cache).
    The key covers everything the weights depend on: the case's recipe, and
    the version of what the models and the float training compute
    (`_keys.semantics("float")`), so a changed model is retrained and an
    edited comment is not."""
    if not config.get("cache_dir"):
        return None
    key = json.dumps([name, lengths, config["seed"], case["float"], case["batch"],
                      case["dataset"], _keys.semantics("float")])
    return Path(config["cache_dir"]) / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"

# Case entries only our rows read: a change to them does not retrain TFMOT's
# row (77 minutes for ResNet-8).
_OURS_ONLY = ("prune", "quantize", "distill")

def row_prefix(name: str, label: str) -> str:
    """The start of the file names of row `label` of case `name`, before the key."""
    return f"{name}-{re.sub(r'[^a-z0-9]+', '-', label.lower())}-"

def publish_rows(config: dict, name: str, store: Path) -> list[str]:
    """Copy the cached rows of case `name` that are trained under the current
    key into `store`, removing the store's rows of the same kind under other
    keys (stale). Returns what was copied, for the log."""
    copied = []
    for label in ("keras-compress", _cases.DISTILLED, "TFMOT"):
        cached = row_cache(config, name, label)
        if cached is None or not cached.exists():
            continue
        # Exactly this row's files: "resnet8-keras-compress-" also begins
        # the distilled row's names.
        pattern = re.compile(re.escape(row_prefix(name, label)) + r"[0-9a-f]{16}\.npz")
        for stale in store.iterdir():
            if pattern.fullmatch(stale.name) and stale.name != cached.name:
                stale.unlink()
        copied.append(f"{label} row: {_baselines.publish(cached, store)}")
    return copied

def row_cache(config: dict, name: str, label: str) -> Path | None:
    """Where row `label`'s trained artifact of case `name` is kept (the int8
    .tflite and what was measured in training: Keras accuracy, sparsity,
    conversion time; for TFMOT the peer's whole report), or None (no cache).
    The key covers the case's recipe, run lengths and seed, its float
    baseline's key, and the version of what the row's training computes
    (`_keys.semantics`: ours, or TFMOT's peer with its packages)."""
    case = _cases.CASES[name]
    images, _, float_epochs, *_ = lengths = _cases.run_lengths(config, case)
    float_file = float_cache(config, name, (images, float_epochs), case)
    if float_file is None:
        return None
    meaning = _keys.semantics("tfmot" if label == "TFMOT" else "ours")
    # The run lengths of this run are in the key; the other mode's are not.
    case = {k: v for k, v in case.items() if k not in ("quick", "full")}
    if label == "TFMOT":
        case = {k: v for k, v in case.items() if k not in _OURS_ONLY}
    key = json.dumps([label, name, lengths, config["seed"], case, float_file.name, meaning],
                     sort_keys=True)
    return float_file.with_name(
        f"{row_prefix(name, label)}{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz")

def in_cache(cached: Path | None, config: dict) -> bool:
    """Whether the cache holds the entry `cached`, after copying it (or a
    further-along float fit's backup) from the committed baselines folder
    when only that has it, which the log is told."""
    if cached and config.get("baselines_dir"):
        seeded = _baselines.seed(cached, Path(config["baselines_dir"]))
        if seeded:
            print(f"   (copied the committed {seeded})", flush=True)
    return bool(cached and cached.exists())

def cached_row(cached: Path | None, config: dict, compute):
    """Row `compute()` -> (TFLiteModel, JSON-able dict), or its earlier result
    from `cached` (copied from the committed baselines folder first, if only
    there). A case whose fits outlast one session (ResNet-8 on a slow 2-core
    machine) is finished row by row: a stopped run keeps the rows it
    completed, and `--publish_baselines` carries them to the next machine."""
    import numpy as np

    import tflite_export
    from tflite_export.model import write_atomic

    if in_cache(cached, config):
        print(f"   (trained row from {cached})", flush=True)
        with np.load(cached) as saved:
            return (tflite_export.TFLiteModel(saved["tflite"].tobytes()),
                    json.loads(str(saved["meta"])))
    tfl, meta = compute()
    if cached:
        buffer = io.BytesIO()
        np.savez(buffer, tflite=np.frombuffer(tfl.content, np.uint8), meta=np.array(json.dumps(meta)))
        cached.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(cached, buffer.getvalue())
    return tfl, meta


def float_baseline(model, config: dict, name: str, data: dict, steps: int) -> None:
    """Give `model` case `name`'s trained float weights: from the cache (or
    the committed baselines, copied there first), else trained now
    (resuming an interrupted fit's backup) and kept."""
    import numpy as np

    from tflite_export.model import write_atomic

    case = _cases.CASES[name]
    images, _, float_epochs, *_ = _cases.run_lengths(config, case)
    cached = float_cache(config, name, (images, float_epochs), case)
    if in_cache(cached, config):
        print(f"   (trained weights from {cached})", flush=True)
        with np.load(cached) as saved:
            model.set_weights([saved[f"w{i}"] for i in range(len(saved.files))])
        return
    _cases.train_float(model, data, case["float"], float_epochs, steps,
                       backup_dir=_baselines.backup_dir(cached) if cached else None)
    if not cached:
        return
    buffer = io.BytesIO()
    np.savez(buffer, **{f"w{i}": w for i, w in enumerate(model.get_weights())})
    cached.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(cached, buffer.getvalue())
    if config.get("baselines_dir"):
        finished = _baselines.finish(cached, Path(config["baselines_dir"]))
        if finished:
            print(f"   (the committed backup is replaced by the {finished}: commit it)",
                  flush=True)
