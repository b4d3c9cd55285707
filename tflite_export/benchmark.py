"""`benchmark(...)`: size, latency and accuracy measured with the real interpreters.

LiteRT (`ai_edge_litert`) latency follows LiteRT's `benchmark_model`: warm-up
runs, then timed runs, reported as median, p90, p5/p95 and mean ± std, one
thread by default. TFLite-Micro latency comes from its Python interpreter (a
host-side proxy: relative numbers, not microcontroller cycles). Accuracy of
Keras, LiteRT and TFLite-Micro is measured on the same data.

Example:

```python
import keras
import numpy as np
import tflite_export

x = np.random.default_rng(0).random((200, 8, 8, 1), dtype="float32")
y = np.arange(200) % 10
model = keras.Sequential([keras.Input((8, 8, 1)),
                          keras.layers.Conv2D(4, 3, activation="relu"),
                          keras.layers.Flatten(), keras.layers.Dense(10)])
tfl = tflite_export.convert(model, mode="int8", representative_data=x)
result = tflite_export.benchmark(tfl, x[:20], y[:20], keras_model=model, name="int8",
                                 runs=10, micro=False)
report = tflite_export.Report([result])
print(report.to_markdown())
report.save("out/")          # report.md, report.json, size_vs_accuracy.png
```
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from tflite_export import micro_run as micro_lib
from tflite_export.model import TFLiteModel, write_atomic

__all__ = ["benchmark", "compare_latency", "BenchmarkResult", "Latency", "Report"]


@dataclasses.dataclass(frozen=True)
class Latency:
    """Latency statistics in milliseconds."""

    median_ms: float
    p90_ms: float
    p5_ms: float
    p95_ms: float
    mean_ms: float
    std_ms: float
    runs: int

    @classmethod
    def from_seconds(cls, samples: list[float]) -> "Latency":
        ms = np.asarray(samples) * 1e3
        return cls(float(np.median(ms)), float(np.percentile(ms, 90)),
                   float(np.percentile(ms, 5)), float(np.percentile(ms, 95)),
                   float(ms.mean()), float(ms.std()), len(samples))


@dataclasses.dataclass(frozen=True)
class BenchmarkResult:
    """Everything measured for one TFLite model."""

    name: str
    mode: str | None
    size_bytes: int
    gzip_bytes: int
    fully_integer: bool
    ops: tuple[str, ...]
    litert: Latency
    num_threads: int
    xnnpack: bool
    micro: Latency | None = None
    arena_bytes: int | None = None
    keras_accuracy: float | None = None
    litert_accuracy: float | None = None
    micro_accuracy: float | None = None
    micro_agreement: float | None = None  # argmax agreement TFLite-Micro vs LiteRT
    eval_samples: int = 0
    versions: dict[str, str] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _Progress:
    def __init__(self, total: int, label: str, enabled: bool):
        self.enabled = enabled and total > 0
        self.total, self.label, self.done, self._last = total, label, 0, 0.0

    def step(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self._last > 0.5 or self.done >= self.total):
            self._last = now
            width = 30
            filled = int(width * self.done / self.total)
            sys.stderr.write(f"\r{self.label} [{'=' * filled}{'.' * (width - filled)}] "
                             f"{self.done}/{self.total}")
            if self.done >= self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


def _litert_interpreter(content: bytes, num_threads: int, xnnpack: bool):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = (OpResolverType.AUTO if xnnpack
                else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter = Interpreter(model_content=content, num_threads=num_threads,
                              experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    return interpreter


def _timed_invokes(interpreter, runs: int) -> list[float]:
    """Seconds of each of `runs` invocations (a `_MicroRuns` prepares each
    run outside the timed call)."""
    micro = isinstance(interpreter, _MicroRuns)
    prepare = interpreter.prepare if micro else None
    run = interpreter.interpreter.invoke if micro else interpreter.invoke
    samples = []
    for _ in range(runs):
        if prepare is not None:
            prepare()
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return samples


class _MicroRuns:
    """A TFLite-Micro interpreter of `tfl` in an `arena` of that many bytes
    whose runs set the input first (TFLite-Micro's arena planner may reuse
    the input's bytes once the first op has read them) and reset any state;
    `_timed_invokes` times only the invoke."""

    def __init__(self, tfl: TFLiteModel, quantized_input: np.ndarray, arena: int):
        self.interpreter = micro_lib.micro_interpreter(tfl.content, arena)
        self.input, self.stateful = quantized_input, tfl.has_state

    def prepare(self) -> None:
        self.interpreter.set_input(self.input, 0)
        if self.stateful:
            self.interpreter.reset()

    def invoke(self) -> None:
        self.prepare()
        self.interpreter.invoke()


def _check_data(tfl: TFLiteModel, x: np.ndarray, y: np.ndarray | None) -> None:
    want = tuple(tfl.inputs[0].shape[1:])
    if tuple(x.shape[1:]) != want:
        raise ValueError(f"`x` samples have shape {tuple(x.shape[1:])}, but the model input "
                         f"'{tfl.inputs[0].name}' expects {want}.")
    if y is not None and len(y) != len(x):
        raise ValueError(f"`x` has {len(x)} samples but `y` has {len(y)} labels.")


def benchmark(
    tfl: TFLiteModel,
    x: np.ndarray | None = None,
    y: np.ndarray | None = None,
    *,
    keras_model: Any = None,
    name: str | None = None,
    num_threads: int = 1,
    xnnpack: bool = True,
    warmup: int = 10,
    runs: int = 50,
    micro: bool = True,
    max_eval: int | None = None,
    progress: bool = True,
) -> BenchmarkResult:
    """Measure `tfl`: sizes, LiteRT and TFLite-Micro latency, and, given float
    inputs `x` (samples on axis 0) and labels `y`, top-1 accuracy of LiteRT,
    TFLite-Micro and `keras_model` on the same samples.

    `micro=False` skips TFLite-Micro (it is skipped anyway for models it cannot
    run, e.g. hybrid ones). `max_eval` caps the accuracy samples.
    """
    import ai_edge_litert

    if not isinstance(tfl, TFLiteModel):
        raise ValueError(f"`tfl` must be a TFLiteModel (from tflite_export.convert or "
                         f"TFLiteModel.load); received {type(tfl).__name__}.")
    for arg, value in (("num_threads", num_threads), ("runs", runs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{arg}` must be a positive integer; received {value!r}.")
    if x is not None:
        x = np.asarray(x)
        _check_data(tfl, x, y)
        if max_eval is not None:
            x = x[:max_eval]
            y = None if y is None else np.asarray(y)[:max_eval]
    label = name or tfl.mode or "model"

    interpreter = _litert_interpreter(tfl.content, num_threads, xnnpack)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    probe = x[:1] if x is not None else np.zeros(tfl.inputs[0].shape, np.float32)
    interpreter.set_tensor(inp["index"], tfl.quantize_input(probe))
    bar = _Progress(warmup + runs, f"{label}: LiteRT latency", progress)
    for _ in range(warmup):
        interpreter.invoke()
        bar.step()
    samples = []
    for _ in range(runs):
        samples += _timed_invokes(interpreter, 1)
        bar.step()
    litert_latency = Latency.from_seconds(samples)

    micro_latency = arena = None
    micro_interp = None
    if micro and tfl.mode != "dynamic":
        try:
            arena = micro_lib.find_arena_size(tfl)
            micro_run = _MicroRuns(tfl, tfl.quantize_input(probe), arena)
        except (ValueError, RuntimeError):
            micro_run = None
        if micro_run is not None:
            micro_interp = micro_run.interpreter
            micro_runs = max(5, runs // 5)
            bar = _Progress(micro_runs + 2, f"{label}: TFLite-Micro latency", progress)
            times = []
            for i in range(micro_runs + 2):
                sample = _timed_invokes(micro_run, 1)
                if i >= 2:  # two warm-up runs
                    times += sample
                bar.step()
            micro_latency = Latency.from_seconds(times)

    keras_acc = litert_acc = micro_acc = agreement = None
    n_eval = 0
    if x is not None and y is not None:
        n_eval = len(x)
        bar = _Progress(n_eval, f"{label}: accuracy", progress)
        litert_pred, micro_pred = [], []
        for i, sample in enumerate(x):
            if tfl.has_state and i:  # each sample is a sequence of its own
                interpreter.reset_all_variables()
                if micro_interp is not None:
                    micro_interp.reset()
            q = tfl.quantize_input(sample[None])
            interpreter.set_tensor(inp["index"], q)
            interpreter.invoke()
            litert_pred.append(int(np.argmax(interpreter.get_tensor(out["index"])[0])))
            if micro_interp is not None:
                micro_interp.set_input(q, 0)
                micro_interp.invoke()
                micro_pred.append(int(np.argmax(micro_interp.get_output(0)[0])))
            bar.step()
        y = np.asarray(y).reshape(-1)
        litert_acc = float(np.mean(np.array(litert_pred) == y))
        if micro_pred:
            micro_acc = float(np.mean(np.array(micro_pred) == y))
            agreement = float(np.mean(np.array(micro_pred) == np.array(litert_pred)))
        if keras_model is not None:
            keras_acc = float(np.mean(
                np.argmax(np.asarray(keras_model.predict(x, verbose=0)), axis=-1) == y))

    versions = {"ai_edge_litert": getattr(ai_edge_litert, "__version__", "unknown")}
    try:
        from importlib.metadata import version

        versions["tflite_micro"] = version("tflite-micro")
        versions["ai_edge_litert"] = version("ai-edge-litert")
    except Exception:  # noqa: BLE001 - versions are informative only
        pass
    return BenchmarkResult(
        name=label, mode=tfl.mode, size_bytes=tfl.size, gzip_bytes=tfl.gzip_size,
        fully_integer=tfl.is_fully_integer, ops=tuple(tfl.ops), litert=litert_latency,
        num_threads=num_threads, xnnpack=xnnpack, micro=micro_latency, arena_bytes=arena,
        keras_accuracy=keras_acc, litert_accuracy=litert_acc, micro_accuracy=micro_acc,
        micro_agreement=agreement, eval_samples=n_eval, versions=versions,
    )


def compare_latency(
    models: dict[str, TFLiteModel],
    *,
    rounds: int = 20,
    runs_per_round: int = 5,
    warmup: int = 10,
    num_threads: int = 1,
    xnnpack: bool = True,
    progress: bool = True,
    runtime: str = "litert",
) -> dict[str, Latency]:
    """Latency of several models measured interleaved: each round times
    `runs_per_round` invocations of every model in turn, so a noisy machine
    slows all of them alike and their ratios hold even when absolute times
    drift. Returns each model's `Latency` over its `rounds * runs_per_round`
    invocations. `runtime`: "litert" (`num_threads`, `xnnpack`) or "micro"
    (the TFLite-Micro interpreter in its measured arena, the input set again
    before every run, as its planner may reuse the input's bytes).

    Example:

    ```python
    import keras
    import numpy as np
    import tflite_export

    x = np.random.default_rng(0).random((50, 8, 8, 1), dtype="float32")
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3),
                              keras.layers.Flatten(), keras.layers.Dense(10)])
    tfls = {"float32": tflite_export.convert(model, mode="float32"),
            "int8": tflite_export.convert(model, mode="int8", representative_data=x)}
    latency = tflite_export.compare_latency(tfls, rounds=3, progress=False)
    latency["int8"].median_ms / latency["float32"].median_ms
    ```
    """
    if not isinstance(models, dict) or not models or not all(
            isinstance(m, TFLiteModel) for m in models.values()):
        raise ValueError("`models` must be a non-empty dict of name -> TFLiteModel.")
    for arg, value in (("rounds", rounds), ("runs_per_round", runs_per_round),
                       ("num_threads", num_threads)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{arg}` must be a positive integer; received {value!r}.")
    if runtime not in ("litert", "micro"):
        raise ValueError(f"`runtime` must be 'litert' or 'micro'; received {runtime!r}.")
    interpreters = {}
    for name, tfl in models.items():
        zeros = tfl.quantize_input(np.zeros(tfl.inputs[0].shape, np.float32))
        if runtime == "micro":
            interpreters[name] = _MicroRuns(tfl, zeros, micro_lib.find_arena_size(tfl))
        else:
            interpreter = _litert_interpreter(tfl.content, num_threads, xnnpack)
            interpreter.set_tensor(interpreter.get_input_details()[0]["index"], zeros)
            interpreters[name] = interpreter
        for _ in range(warmup):
            interpreters[name].invoke()
    samples: dict[str, list[float]] = {name: [] for name in models}
    title = "LiteRT" if runtime == "litert" else "TFLite-Micro"
    bar = _Progress(rounds, f"{title} latency, {len(models)} models interleaved", progress)
    for _ in range(rounds):
        for name, interpreter in interpreters.items():
            samples[name] += _timed_invokes(interpreter, runs_per_round)
        bar.step()
    return {name: Latency.from_seconds(values) for name, values in samples.items()}


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


@dataclasses.dataclass
class Report:
    """Several `BenchmarkResult`s side by side: Markdown, JSON and a PNG."""

    results: list[BenchmarkResult]

    def to_markdown(self) -> str:
        lines = [
            "| model | mode | size (bytes) | gzip (bytes) | fully int | LiteRT median ms "
            "| LiteRT p90 ms | TFLM median ms | arena (bytes) | Keras acc | LiteRT acc "
            "| TFLM acc | TFLM = LiteRT |",
            "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in self.results:
            lines.append(
                f"| {r.name} | {r.mode} | {r.size_bytes:,} | {r.gzip_bytes:,} | "
                f"{'yes' if r.fully_integer else 'no'} | {r.litert.median_ms:.3f} | "
                f"{r.litert.p90_ms:.3f} | {_fmt(r.micro and r.micro.median_ms, '.3f')} | "
                f"{_fmt(r.arena_bytes, ',')} | {_fmt(r.keras_accuracy, '.4f')} | "
                f"{_fmt(r.litert_accuracy, '.4f')} | {_fmt(r.micro_accuracy, '.4f')} | "
                f"{_fmt(r.micro_agreement, '.4f')} |")
        if self.results:
            r = self.results[0]
            lines += ["", f"LiteRT: {r.num_threads} thread(s), XNNPACK "
                      f"{'on' if r.xnnpack else 'off'}, {r.litert.runs} timed runs after "
                      f"warm-up; versions: " + ", ".join(f"{k} {v}" for k, v in r.versions.items())]
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps([r.as_dict() for r in self.results], indent=2)

    def save_png(self, path: str | os.PathLike) -> Path:
        """Size (gzip KB, log scale) against accuracy, one point per model."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for r in self.results:
            acc = r.litert_accuracy if r.litert_accuracy is not None else float("nan")
            ax.scatter(r.gzip_bytes / 1024, acc, s=40)
            ax.annotate(r.name, (r.gzip_bytes / 1024, acc), textcoords="offset points",
                        xytext=(5, 5), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("gzip'd .tflite size (KB)")
        ax.set_ylabel("LiteRT top-1 accuracy")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp.png")
        fig.savefig(tmp, dpi=120)
        plt.close(fig)
        os.replace(tmp, path)
        return path

    def save(self, out_dir: str | os.PathLike) -> list[Path]:
        """Write report.md, report.json and size_vs_accuracy.png to `out_dir`."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        md = write_atomic(out / "report.md", (self.to_markdown() + "\n").encode())
        js = write_atomic(out / "report.json", (self.to_json() + "\n").encode())
        return [md, js, self.save_png(out / "size_vs_accuracy.png")]
