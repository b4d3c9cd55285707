"""Repository invariants: CI runs the README's test command; BUILD names every file."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _readme_test_command() -> str:
    """The test command of the README's "Get started" block (install, demo, tests)."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Get started"):]
    block = re.search(r"```bash\n(.+?)\n```", section, re.S)
    assert block, "README.md has no ```bash block under 'Get started'"
    lines = [l.split("#")[0].strip() for l in block.group(1).splitlines()]
    tests = [l for l in lines if "pytest" in l]
    assert len(tests) == 1 and len([l for l in lines if l]) == 3, lines
    return tests[0]


def test_ci_runs_exactly_the_readme_test_command():
    command = _readme_test_command()
    assert "pytest" in command
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    commands = [l.strip() for l in ci if l.strip() and not l.strip().startswith("#")]
    assert commands[-1] == command, (commands[-1], command)
    assert any("pip install" in l and ".[dev]" in l for l in commands)


def test_build_names_every_module_and_test():
    build = (REPO / "BUILD").read_text()
    files = sorted(
        str(p.relative_to(REPO))
        for folder in ("keras_compress", "tflite_export", "benchmarks", "tests")
        for p in (REPO / folder).rglob("*.py")
    )
    missing = [f for f in files if f'"{f}"' not in build]
    assert not missing, f"BUILD does not name: {missing}"
    named = re.findall(r'"((?:keras_compress|tflite_export|benchmarks|tests)/[^"]+\.py)"', build)
    stale = [f for f in named if not (REPO / f).is_file()]
    assert not stale, f"BUILD names files that do not exist: {stale}"


def test_tflite_export_never_imports_keras_compress():
    for path in (REPO / "tflite_export").rglob("*.py"):
        assert "import keras_compress" not in path.read_text(), path
        assert "from keras_compress" not in path.read_text(), path


def test_no_unsafe_loading_anywhere():
    """`.keras` files load in Keras safe mode and nothing unpickles arbitrary
    objects: the one pickle reader (CIFAR-10's python batches) accepts arrays,
    dicts, lists and strings only."""
    unsafe = re.compile(r"safe_mode\s*=\s*False|allow_pickle\s*=\s*True|pickle\.loads?\(|"
                        r"enable_unsafe_deserialization|marshal\.loads|\beval\(|\bexec\(")
    found = []
    for folder in ("keras_compress", "tflite_export", "benchmarks"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if unsafe.search(line):
                    found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not found, found
    datasets = (REPO / "keras_compress" / "datasets.py").read_text()
    assert "class _ArrayOnlyUnpickler(pickle.Unpickler)" in datasets
