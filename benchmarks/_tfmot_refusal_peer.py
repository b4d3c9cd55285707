"""What TFMOT's `quantize_model` says to each transformer and recurrent model
of `benchmarks.sequence_models`, built with the same builders in tf_keras
(the transformers without their position table, a custom layer TFMOT would
name first).

    python -m benchmarks._tfmot_refusal_peer CONFIG_JSON

CONFIG_JSON: {"models": [names]}. Prints one JSON object on stdout: per model,
"quantized" or the exception TFMOT raised (type, first line of its message, and the error nested in it)."""

from __future__ import annotations

import json
import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(argv: list[str]) -> None:
    config = json.loads(argv[1])
    import tensorflow_model_optimization as tfmot
    import tf_keras

    from benchmarks.sequence_models import BUILDERS

    answer = {}
    for name in config["models"]:
        # Without the position table, a custom layer TFMOT would refuse first.
        model = BUILDERS[name](tf_keras, position=False) if name in ("vit", "tokens") \
            else BUILDERS[name](tf_keras)
        try:
            tfmot.quantization.keras.quantize_model(model)
            answer[name] = "quantized"
        except Exception as exc:  # noqa: BLE001 - the refusal is the result
            lines = [" ".join(line.split()) for line in str(exc).splitlines() if line.strip()]
            # A Keras call error nests the cause ("TypeError: ...") inside.
            cause = [line for line in lines[1:] if line.split(":")[0].endswith("Error")]
            text = f"{lines[0]} ... {cause[-1]}" if cause else lines[0]
            answer[name] = f"{type(exc).__name__}: {text[:400]}"
    print(json.dumps(answer))


if __name__ == "__main__":
    main(sys.argv)
