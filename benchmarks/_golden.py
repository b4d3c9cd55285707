"""Golden numbers for the benchmark keys: `python -m benchmarks._golden [--update]`.

A few seeded steps of what each versioned kind in `benchmarks._keys` computes,
on fixed random data, for every suite case: the float fit ("float"), and the
prune + QAT fit (distilled where the case distills) with its int8 conversion
("ours"). Each weight array is summarised by its shape, sum, sum of absolute
values, zero count and a few values, and compared with `benchmarks/golden.json`
within a tolerance that absorbs float round-off (a few steps drift by about
1e-6) but not a change of what is computed. Its records are kept per SIMD
level ("AVX-512 VNNI", "AVX2", ...): between those the one-thread float fit
rounds differently enough to move a pruning tie or an int32 bias by a few
steps, so the summaries must match one recorded CPU's; `--update` records
this CPU's.

Prints one JSON line: the summaries (without --update) or where they were
written. Runs op-deterministic on one TensorFlow thread, so it is a program of
its own (the test runs it in a subprocess).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

GOLDEN = Path(__file__).resolve().parent / "golden.json"
_STEPS = 2
_BATCH = 8
_RTOL = 2e-3


def _summary(arrays) -> list:
    import numpy as np

    out = []
    for a in arrays:
        a = np.asarray(a)
        flat = a.reshape(-1).astype(np.float64)
        picks = [float(flat[i]) for i in np.linspace(0, flat.size - 1, 4).astype(int)] \
            if flat.size else []
        out.append([list(a.shape), float(flat.sum()), float(np.abs(flat).sum()),
                    int(np.sum(flat == 0)), picks, a.dtype.kind])
    return out


def _input_shape(name: str, dataset: str) -> tuple:
    if dataset == "cifar10":
        return (32, 32, 3)
    return (28, 28, 1) if name == "lenet5" else (28, 28)


def compute() -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    import tflite_export
    from benchmarks import _cases, _keys

    tf.config.experimental.enable_op_determinism()
    result = {"semantics": dict(_keys.SEMANTICS),
              "packages": {k: _keys.package_versions(k) for k in ("float", "ours")},
              "float": {}, "ours": {}}
    for name, case in _cases.CASES.items():
        shape = _input_shape(name, case["dataset"])
        rng = np.random.default_rng(0)
        x = rng.random((_STEPS * _BATCH, *shape), dtype=np.float32)
        y = rng.integers(0, 10, _STEPS * _BATCH)
        keras.utils.set_random_seed(0)
        data = _cases.training_data(x, y, _BATCH, case["dataset"] == "cifar10", 0)
        import keras_compress as kc

        base = getattr(kc.models, name)(input_shape=shape)
        initial = base.get_weights()
        _cases.train_float(base, data, case["float"], 1, _STEPS)
        result["float"][name] = {"initial": _summary(initial),
                                 "trained": _summary(base.get_weights())}
        setup = {"prune_epochs": 1, "qat_epochs": 1, "learning_rate": case["tune_lr"],
                 "lr_decay": case.get("tune_decay", "constant")}
        rows = {"keras-compress": None}
        if case.get("distill"):
            rows[_cases.DISTILLED] = base
        for label, teacher in rows.items():
            keras.utils.set_random_seed(1)
            stripped = _cases.fit_compressed(name, case, setup, data, _STEPS, base.get_weights(),
                                           shape, teacher)
            tfl = tflite_export.convert(stripped, mode="int8", io_dtype="int8")
            constants = [tfl.constant(t) for t in tfl.tensors if t.is_constant]
            result["ours"][f"{name}/{label}"] = {
                "stripped": _summary(stripped.get_weights()), "ops": tfl.ops,
                "int8": _summary(constants)}
    return result


def _close(a, b, path: str) -> str | None:
    """Where summaries `a` (new) and `b` (golden) differ beyond round-off."""
    if isinstance(b, dict):
        if set(a) != set(b):
            return f"{path}: entries {sorted(set(a) ^ set(b))}"
        return next((d for k in b if (d := _close(a[k], b[k], f"{path}/{k}"))), None)
    if isinstance(b, list) and b and isinstance(b[0], list) and len(b[0]) == 6:
        if len(a) != len(b):
            return f"{path}: {len(a)} arrays, golden {len(b)}"
        for i, ((shape, total, size, zeros, picks, kind), (gs, gt, gsize, gz, gp, gk)) in (
                enumerate(zip(a, b))):
            # Integers (int8 weights) may round one step apart; floats drift.
            slack = 2 if gk in "iu" else 1e-6
            if shape != gs or kind != gk:
                return f"{path}[{i}]: {kind}{shape}, golden {gk}{gs}"
            if (abs(total - gt) > _RTOL * gsize + slack
                    or abs(size - gsize) > _RTOL * gsize + slack):
                return (f"{path}[{i}]: sum {total:.6g}, |sum| {size:.6g}; golden "
                        f"{gt:.6g}, {gsize:.6g}")
            if abs(zeros - gz) > 0.002 * gz + (1 if gk in "iu" else 0):
                return f"{path}[{i}]: {zeros} zeros, golden {gz}"
            if any(abs(p - q) > _RTOL * max(1.0, abs(q)) + slack for p, q in zip(picks, gp)):
                return f"{path}[{i}]: values {picks}, golden {gp}"
        return None
    return None if a == b else f"{path}: {a!r}, golden {b!r}"


def compare(new: dict, golden: dict) -> dict[str, str]:
    """Per kind, why `new` does not match `golden` (kinds whose packages
    differ from the golden run's are not compared: their keys differ anyway)."""
    problems = {}
    for kind in ("float", "ours"):
        if new["packages"][kind] != golden["packages"][kind]:
            continue
        if new["semantics"][kind] != golden["semantics"][kind]:
            problems[kind] = (f"SEMANTICS[{kind!r}] is {new['semantics'][kind]} but golden.json "
                              f"was recorded at {golden['semantics'][kind]}")
            continue
        where = _close(new[kind], golden[kind], kind)
        if where:
            problems[kind] = where
    return problems


def compare_any(new: dict, records: dict) -> dict[str, str]:
    """{} if `new` matches one of `records` (per SIMD level), else why it
    does not match the record of this CPU's level (or of the first one)."""
    problems = {level: compare(new, record) for level, record in records.items()}
    if all(problems.values()):  # also when there is no record
        from benchmarks import _report

        return problems.get(_report.simd()) or next(iter(problems.values()), {
            "all": "benchmarks/golden.json holds no record"})
    return {}


def main(argv: list[str]) -> None:
    from benchmarks import _report
    from tflite_export.model import write_atomic

    new = compute()
    if "--update" in argv:
        records = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
        # Other CPUs' records of other versions or packages are stale: dropped.
        records = {level: r for level, r in records.items()
                   if (r["semantics"], r["packages"]) == (new["semantics"], new["packages"])}
        records[_report.simd() or "other"] = new
        write_atomic(GOLDEN, (json.dumps(records, indent=1, sort_keys=True) + "\n").encode())
        print(json.dumps({"written": str(GOLDEN)}))
    else:
        print(json.dumps(new))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # One TensorFlow thread: the number of threads sharing a reduction changes
    # its round-off (two threads round a DS-CNN int8 weight otherwise than one),
    # so a laptop with more cores computes what CI's two cores do.
    os.environ["TF_NUM_INTRAOP_THREADS"] = os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    main(sys.argv[1:])
