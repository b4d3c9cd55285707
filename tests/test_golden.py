"""Benchmark caches keyed on meaning: golden numbers say when training changed,
and an edited comment leaves every committed key as it is."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import REPO


def _python(args, cwd=REPO, pythonpath=REPO):
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.mark.slow
def test_golden_numbers_match_or_name_the_version_to_bump():
    """A few seeded prune + QAT (+ distill) steps of every suite case, and their
    int8 conversion, compute what benchmarks/golden.json recorded: else the
    benchmark keys would hide changed training. Fix: bump `_keys.SEMANTICS`."""
    from benchmarks import _golden

    done = _python(["-m", "benchmarks._golden"])
    assert done.returncode == 0, done.stderr[-2000:]
    new = json.loads(done.stdout.strip().splitlines()[-1])
    records = json.loads(_golden.GOLDEN.read_text())  # per SIMD level
    problems = _golden.compare_any(new, records)
    assert not problems, (
        f"What the benchmark rows compute changed: {problems}. Bump the kind's number in "
        "benchmarks/_keys.py SEMANTICS (its cached rows then retrain), then run "
        "`python -m benchmarks._golden --update` and commit benchmarks/golden.json.")


def test_golden_comparison_tolerates_round_off_and_catches_changes():
    from benchmarks import _golden

    golden = {"packages": {"float": {"tensorflow": "2.21"}, "ours": {"tensorflow": "2.21"}},
              "semantics": {"float": 1, "ours": 1},
              "float": {"m": {"w": [[[3], 1.0, 3.0, 1, [1.0, 0.0, -1.0, 1.0], "f"]]}},
              "ours": {"m": {"ops": ["CONV_2D"],
                             "int8": [[[3], 10.0, 1200.0, 0, [500.0, 2.0, 698.0], "i"]]}}}
    drift = json.loads(json.dumps(golden))
    drift["float"]["m"]["w"][0][1] += 1e-7
    drift["ours"]["m"]["int8"][0][1] += 1  # one int8 weight rounded the other way
    assert _golden.compare(drift, golden) == {}
    changed = json.loads(json.dumps(golden))
    changed["float"]["m"]["w"][0][3] = 2  # one more pruned weight
    changed["ours"]["m"]["ops"] = ["CONV_2D", "MEAN"]
    problems = _golden.compare(changed, golden)
    assert set(problems) == {"float", "ours"} and "zeros" in problems["float"]
    bumped = json.loads(json.dumps(golden))
    bumped["semantics"]["ours"] = 2
    assert "golden.json was recorded at 1" in _golden.compare(bumped, golden)["ours"]
    other = json.loads(json.dumps(changed))
    other["packages"]["ours"] = {"tensorflow": "2.22"}  # other numerics, other keys
    assert set(_golden.compare(other, golden)) == {"float"}
    # Records per SIMD level: matching one is enough, matching none is not.
    assert _golden.compare_any(drift, {"AVX2": changed, "AVX-512 VNNI": golden}) == {}
    assert set(_golden.compare_any(changed, {"AVX2": golden, "AVX-512": golden})) == {
        "float", "ours"}


_KEYS = """
import json
from benchmarks import _cache, _cases, channel_pruning
config = {"full": True, "seed": 0, "cache_dir": "benchmarks/baselines"}
keys = {}
for name, case in _cases.CASES.items():
    images, _, epochs, *_ = _cases.run_lengths(config, case)
    keys[name] = _cache.float_cache(config, name, (images, epochs), case).name
    for label in ("keras-compress", _cases.DISTILLED, "TFMOT"):
        keys[name + "/" + label] = _cache.row_cache(config, name, label).name
for name in channel_pruning.SETTINGS:  # its --full rows, at each case's setting
    pruned = channel_pruning.case_config(name, {**config, "distill": True})
    keys[name + "/channel"] = channel_pruning.row_path(name, pruned, "channel",
                                                       pruned["sparsity"]).name
print(json.dumps(keys))
"""


def _keys(root):
    done = _python(["-c", _KEYS], cwd=root, pythonpath=root)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_comment_edit_in_the_library_leaves_every_baseline_key(tmp_path):
    copy = tmp_path / "repo"
    for part in ("keras_compress", "tflite_export", "benchmarks"):
        shutil.copytree(REPO / part, copy / part, ignore=shutil.ignore_patterns(
            "baselines", "__pycache__"))
    before = _keys(copy)
    for module in ("keras_compress/pruning/wrapper.py", "keras_compress/models.py",
                   "tflite_export/converter.py", "benchmarks/_cases.py"):
        path = copy / module
        path.write_text(path.read_text() + "\n# an edited comment\n")
    assert _keys(copy) == before


def test_committed_baselines_carry_the_current_keys():
    """Every file in benchmarks/baselines/ is named by the key the suite now
    computes for it, so `--full` loads it instead of training again."""
    keys = set(_keys(REPO).values())
    # An unfinished fit's backup folder is named after the file it will write.
    committed = [re.sub(r"\.backup$", ".npz", p.name)
                 for p in (REPO / "benchmarks" / "baselines").iterdir()
                 if re.fullmatch(r".+-[0-9a-f]{16}\.(npz|backup)", p.name)]
    assert committed and set(committed) <= keys, sorted(set(committed) - keys)


def test_the_other_modes_run_lengths_leave_the_keys(monkeypatch):
    """Retuning --quick does not retrain --full's rows (and the reverse)."""
    from benchmarks import _cache, _cases

    config = {"full": True, "seed": 0, "cache_dir": "cache"}
    before = {label: _cache.row_cache(config, "resnet8", label)
              for label in ("keras-compress", _cases.DISTILLED, "TFMOT")}
    monkeypatch.setitem(_cases.CASES["resnet8"], "quick", (10, 10, 1, 1, 1))
    assert {label: _cache.row_cache(config, "resnet8", label) for label in before} == before
    monkeypatch.setitem(_cases.CASES["resnet8"], "full", (50000, 10000, 300, 8, 5))
    assert _cache.row_cache(config, "resnet8", "keras-compress") != before["keras-compress"]
