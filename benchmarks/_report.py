"""Writing benchmark results: one Markdown section and one JSON key per benchmark.

Each benchmark owns a section of `docs/benchmarks.md` (between HTML comment
markers) and a key of `docs/benchmarks.json`, so benchmarks can be rerun one at
a time without clobbering each other. Both files are replaced atomically.
"""

from __future__ import annotations

import io
import json
import os
import platform
import time
from pathlib import Path

from tflite_export.model import write_atomic

DOCS = Path(__file__).resolve().parents[1] / "docs"
_TITLE = "# Benchmarks\n\nEvery table here is written by a script in `benchmarks/`; rerun it to refresh.\n"


def update(key: str, markdown: str, data: dict, docs: Path = DOCS) -> None:
    """Replace benchmark `key`'s Markdown section and JSON entry."""
    md_path, json_path = docs / "benchmarks.md", docs / "benchmarks.json"
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    block = f"{start}\n{markdown.strip()}\n{end}"
    text = md_path.read_text() if md_path.exists() else _TITLE
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    docs.mkdir(parents=True, exist_ok=True)
    write_atomic(md_path, text.encode())
    results = json.loads(json_path.read_text()) if json_path.exists() else {}
    results[key] = data
    write_atomic(json_path, (json.dumps(results, indent=2, sort_keys=True) + "\n").encode())


def load(key: str, docs: Path = DOCS) -> dict:
    """Benchmark `key`'s JSON entry as last written ({} if none)."""
    json_path = docs / "benchmarks.json"
    return json.loads(json_path.read_text()).get(key, {}) if json_path.exists() else {}


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:  # the first processor's block is enough
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
                if "model name" in fields and "flags" in fields:
                    break
    except OSError:
        pass
    return fields


def simd(fields: dict[str, str] | None = None) -> str | None:
    """The CPU's widest x86 SIMD level ("AVX-512 VNNI", ..., "AVX2"), or None;
    from `fields` (`_cpuinfo()`'s) when given."""
    flags = set((_cpuinfo() if fields is None else fields).get("flags", "").split())
    return next((name for flag, name in (("avx512_vnni", "AVX-512 VNNI"), ("avx512f", "AVX-512"),
                                         ("avx_vnni", "AVX-VNNI"), ("avx2", "AVX2"))
                 if flag in flags), None)


def _cpu() -> str:
    """The CPU model and its widest SIMD level: LiteRT latencies depend on it
    (the int8 ResNet-8 of the suite took 0.08 ms on the machine of its earlier
    runs and 0.45 ms, slower than its float model, on an AVX2-only AMD EPYC)."""
    fields = _cpuinfo()
    model = fields.get("model name") or platform.processor() or platform.machine()
    level = simd(fields)
    return model + (f" ({level})" if level else "")


def environment() -> dict:
    """Keras version and machine, recorded with every benchmark's JSON."""
    import keras

    return {"keras": keras.__version__,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores", "cpu": _cpu()}


def stamped(result: dict) -> dict:
    """A case's `result` with today's date and the machine it was measured on:
    a run of some cases keeps the others' results, so each case carries its
    own (latency ratios depend on the CPU's SIMD)."""
    return {**result, "date": time.strftime("%Y-%m-%d"), **environment()}


def measured_on(result: dict) -> str:
    """'; run <date> on <cpu>, <n> cores' for a case heading ('' if unknown)."""
    return ((f"; run {result['date']}" if result.get("date") else "")
            + (f" on {result['cpu']}, {result['machine'].split(', ')[-1]}"
               if result.get("cpu") else ""))


def save_png(fig, path: Path) -> None:
    """Write a matplotlib figure as PNG atomically, and close it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    write_atomic(path, buffer.getvalue())
