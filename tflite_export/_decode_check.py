"""Child process for `compress_micro`'s verification:
`python -m tflite_export._decode_check FOLDER`.

Decodes each encoded tensor alone in the TFLite-Micro runtime (a model whose
only op is one DECODE, its output the subgraph output) and compares the bits
with the original values; then runs the uncompressed and the compressed model
on the same inputs and compares their outputs. Prints one JSON line,
{"ok": true} or {"ok": false, "index": tensor or null, "detail": "..."}. It
runs apart from the caller because a decoder reading malformed data can crash
the process."""

import json
import sys
from pathlib import Path

import numpy as np

_ARENA = 64 * 1024 * 1024


def _decode_alone(values: np.ndarray, encoded: bytes, ancillary: bytes, zero_points, axis,
                  scales) -> np.ndarray:
    from tflite_micro.python.tflite_micro import runtime
    from tflite_micro.tensorflow.lite.micro.compression import (compressor, decode_insert,
                                                                model_editor)
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    from tflite_export.micro_compress import editor_type

    quantization = None
    if scales:
        quantization = model_editor.Quantization(scales=list(scales),
                                                 zero_points=[int(z) for z in zero_points],
                                                 axis=int(axis))
    tensor = model_editor.Tensor(shape=values.shape, dtype=editor_type(values.dtype),
                                 data=values, name="decoded", quantization=quantization)
    dummy = model_editor.Tensor(shape=(1,), dtype=schema.TensorType.INT8, name="dummy")
    model = model_editor.Model(subgraphs=[model_editor.Subgraph(
        tensors=[dummy, tensor], inputs=[dummy], outputs=[tensor], operators=[])])
    decode_insert.insert_decode_operators(
        model, {(0, 1): compressor.CompressionResult(encoded, ancillary)})
    interpreter = runtime.Interpreter.from_bytes(bytes(model.build()), arena_size=_ARENA)
    interpreter.set_input(np.zeros((1,), np.int8), 0)
    interpreter.invoke()
    return interpreter.get_output(0)


def _run(path: Path, inputs: list[np.ndarray]) -> list[np.ndarray]:
    from tflite_micro.python.tflite_micro import runtime

    from tflite_export.model import TFLiteModel

    content = path.read_bytes()
    count = len(TFLiteModel(content).outputs)
    interpreter = runtime.Interpreter.from_bytes(content, arena_size=_ARENA)
    outputs = []
    for row in range(len(inputs[0])):
        for i, x in enumerate(inputs):
            interpreter.set_input(x[row:row + 1], i)
        interpreter.invoke()
        outputs.append([np.array(interpreter.get_output(i)) for i in range(count)])
    return outputs


def check(folder: Path) -> dict:
    tensors = np.load(folder / "tensors.npz")
    blobs = np.load(folder / "encodings.npz")
    split = json.loads((folder / "split.json").read_text())
    for key, (cut, zero_points, axis, scales) in split.items():
        blob = blobs[key].tobytes()
        values = tensors[key]
        decoded = _decode_alone(values, blob[:cut], blob[cut:], zero_points, axis, scales)
        if decoded.shape != values.shape or decoded.tobytes() != values.tobytes():
            wrong = int(np.sum(decoded.reshape(-1).view(np.uint8) != values.reshape(-1).view(
                np.uint8))) if decoded.size == values.size else -1
            return {"ok": False, "index": int(key[1:]),
                    "detail": f"decoded values differ from the original ({wrong} bytes)"}
    inputs_file = np.load(folder / "inputs.npz")
    inputs = [inputs_file[f"arr_{i}"] for i in range(len(inputs_file.files))]
    expected = _run(folder / "original.tflite", inputs)
    got = _run(folder / "compressed.tflite", inputs)
    for row, (a, b) in enumerate(zip(expected, got)):
        if any(x.tobytes() != y.tobytes() for x, y in zip(a, b)):
            return {"ok": False, "index": None,
                    "detail": f"TFLite-Micro outputs differ on verification input {row}"}
    return {"ok": True}


if __name__ == "__main__":
    from tflite_export.micro_run import quiet_native_output

    with quiet_native_output() as native:
        try:
            answer = check(Path(sys.argv[1]))
        except RuntimeError as exc:
            answer = {"ok": False, "index": None, "detail": f"{exc}"}
    if not answer["ok"] and native.text.strip():
        answer["detail"] += f" (TFLite-Micro said: {native.text.strip()[-300:]})"
    print(json.dumps(answer))
