"""What channel pruning buys on the device at each setting, before training.

Flash, RAM and latency of a shrunk model depend only on the channel counts it
keeps, and `prune(structure="channel")` picks those from the trained weights at
its first mask update. So each setting here is the library's own selection on
the trained float baseline (one mask update, no training), shrunk, converted to
int8 and measured against the unpruned int8 model: MACs, parameters, flatbuffer
bytes, the measured TFLite-Micro arena and both runtimes' latency (all models
timed interleaved). Accuracy needs the fine-tune and is not measured here; the
table says which settings can meet a device budget at all, and so which one
is worth the training.
"""

from __future__ import annotations

import warnings

__all__ = ["frontier", "render"]


def _selected(model, x, target: str, sparsity: float, round_to: int, max_sparsity: float):
    """`model` with the channels `prune` removes at `sparsity` (one mask
    update through a fit of one batch at learning rate 0) physically gone."""
    import keras
    import numpy as np

    import keras_compress as kc

    with warnings.catch_warnings():  # the logits, the model's output, keep their channels
        warnings.simplefilter("ignore")
        pruned = kc.prune(model, kc.ConstantSparsity(sparsity, 0), structure="channel",
                          target=target, ranking="global", round_to=round_to,
                          max_sparsity=max_sparsity)
    pruned.compile(keras.optimizers.SGD(0.0), "mse")
    batch = x[:8]
    pruned.fit(batch, np.zeros((len(batch), *model.output_shape[1:]), "float32"),
               batch_size=len(batch), epochs=1, verbose=0, callbacks=[kc.PruningCallback()])
    return kc.shrink(pruned)


def _sized(model) -> list:
    """The Conv2D and Dense layers whose widths pruning picks (not the output)."""
    import keras

    return [layer for layer in model.layers
            if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))][:-1]


def _widths(model) -> list[int]:
    return [getattr(layer, "filters", None) or layer.units for layer in _sized(model)]


def frontier(teacher, unpruned, x, settings, rounds: int = 10) -> dict:
    """Rows of (target, sparsity, round_to[, max_sparsity]) `settings`,
    measured against the int8 TFLiteModel `unpruned` of the float model
    `teacher`; `x` are calibration images."""
    import tflite_export

    import keras_compress as kc

    whole = kc.profile(teacher)
    models = {"unpruned": (unpruned, whole, _widths(teacher))}
    for target, sparsity, round_to, *rest in settings:
        cap = rest[0] if rest else 1.0
        small = _selected(teacher, x, target, sparsity, round_to, cap)
        tfl = tflite_export.convert(small, mode="int8", io_dtype="int8",
                                    representative_data=x[:200])
        label = f"{target} {sparsity:g} /{round_to}" + (f", max {cap:g}" if cap < 1 else "")
        models[label] = (tfl, kc.profile(small), _widths(small))
    tfls = {label: tfl for label, (tfl, _, _) in models.items()}
    litert = tflite_export.compare_latency(tfls, rounds=rounds, runs_per_round=5)
    micro = tflite_export.compare_latency(tfls, rounds=max(2, rounds // 3), runs_per_round=2,
                                          warmup=2, runtime="micro")
    rows = []
    for label, (tfl, prof, widths) in models.items():
        rows.append({"setting": label, "widths": widths, "macs": prof.total_macs,
                     "params": prof.total_params, "bytes": tfl.size,
                     "arena": tflite_export.find_arena_size(tfl),
                     "litert_ms": litert[label].median_ms, "micro_ms": micro[label].median_ms})
    return {"layers": [layer.name for layer in _sized(teacher)], "rows": rows}


def render(result: dict) -> list[str]:
    """Markdown lines: each setting's widths and its gains over the unpruned
    int8 model (unpruned / pruned, so 2.00x is twice as small or fast)."""
    base = result["rows"][0]
    lines = ["What each setting buys on the device before any training (the library's "
             "selection on the trained float weights, shrunk, int8; accuracy not measured; "
             f"widths of {', '.join(result['layers'])}):", "",
             "| setting (target, sparsity, round_to, max_sparsity) | widths | MACs | params | "
             "flatbuffer | arena | LiteRT | TFLite-Micro |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in result["rows"]:
        ratio = {k: base[k] / row[k] if row[k] else float("nan")
                 for k in ("macs", "params", "bytes", "arena", "litert_ms", "micro_ms")}
        lines.append(f"| {row['setting']} | {'/'.join(map(str, row['widths']))} | "
                     f"{row['macs'] / base['macs']:.2f} | {row['params'] / base['params']:.2f} | "
                     + " | ".join(f"{ratio[k]:.2f}x" for k in
                                  ("bytes", "arena", "litert_ms", "micro_ms")) + " |")
    lines += ["", "MACs and params: share of the unpruned model; the other columns: "
              "unpruned / pruned."]
    return lines
