"""What a cached benchmark result was computed with: versions of meaning, not
bytes of source.

The suite keys each trained float baseline and each trained row by its case,
recipe, run lengths and seed, plus one of the versions below and the
installed versions of the packages that compute it. Editing a comment, or
refactoring code without changing its numbers, leaves every key, and so every
file in `benchmarks/baselines/`, as it is.

When a change does alter what training or conversion computes, the golden
test (`tests/test_golden.py`, which runs `python -m benchmarks._golden`: a few
seeded steps of each kind on fixed data) fails and names the kind: bump its
number here (the rows of that kind are then trained again) and record the new
numbers with `python -m benchmarks._golden --update` (it keeps one record per
SIMD level; records of the old versions are dropped, so a CPU of another level
then asks for its own `--update`).
"""

from __future__ import annotations

from importlib import metadata

# "float": the suite's models (keras_compress/models.py) and the float
#   training recipe (`train_float`, `training_data`, `load_case_data`).
# "ours": keras-compress pruning, QAT and distillation as the suite's rows run
#   them (`_fit_compressed`), and the int8 conversion (tflite_export.convert).
# "tfmot": the TFMOT peer (benchmarks/_tfmot_suite_peer.py, `_run_peer`); it
#   has no golden test (it runs in a tf_keras subprocess): bump it by hand
#   when the peer's training changes.
SEMANTICS = {"float": 1, "ours": 1, "tfmot": 1}

# Packages whose numerics each kind depends on (major.minor: patch releases
# do not retrain).
PACKAGES = {
    "float": ("tensorflow", "keras"),
    "ours": ("tensorflow", "keras"),
    "tfmot": ("tensorflow", "tf-keras", "tensorflow-model-optimization"),
}


def package_versions(kind: str) -> dict[str, str | None]:
    """major.minor of each package `kind` depends on (None: not installed)."""
    versions = {}
    for package in PACKAGES[kind]:
        try:
            versions[package] = ".".join(metadata.version(package).split(".")[:2])
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def semantics(kind: str) -> list:
    """The part of a key that stands for what `kind` computes."""
    return [kind, SEMANTICS[kind], sorted(package_versions(kind).items())]
