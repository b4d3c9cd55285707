"""`convert(model, mode=...)`: Keras 3 / SavedModel / tf_keras model -> `TFLiteModel`.

Keras 3 models are traced once under a static batch size (TFLite-Micro needs
static shapes), their variables frozen, and converted by the MLIR converter;
the result gets the SignatureDef a SavedModel export would give it. Models
converted in a child process (`isolate`) or with recurrent layers (the
converter fuses an LSTM only from a SavedModel), and any the traced route
fails on, go through `keras.export.ExportArchive` and a SavedModel instead.

Modes:

| mode | weights | activations | needs representative data |
|---|---|---|---|
| `float32` | float32 | float32 | no |
| `float16` | float16 | float32 | no |
| `dynamic` | int8 | float32 (hybrid kernels) | no |
| `int8` | int8 | int8 (full integer; int8 or uint8 I/O) | yes, unless the model holds fake-quant (QAT) ranges |
| `int16x8` | int8 | int16 | yes (the converter cannot convert 16-bit fake-quant ranges) |

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
assert tfl.is_fully_integer
tfl.save("model.tflite")
```
"""

from __future__ import annotations

import os
import re
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from tflite_export import _isolated_convert, _keras_routes, representative
from tflite_export.model import TFLiteModel
from tflite_export.representative import InputSpec

__all__ = ["convert", "ConversionError", "MODES"]

MODES = ("float32", "float16", "dynamic", "int8", "int16x8")
_IO_DTYPES = {"int8": ("int8", "uint8", "float32"), "int16x8": ("int16", "float32")}


class ConversionError(ValueError):
    """The converter could not produce the requested kind of model; the message
    names the op and the Keras layer responsible, and what to do."""


def _layer_of(tensor_name: str, layer_names: Iterable[str]) -> str | None:
    """The Keras layer a TFLite tensor name comes from ('fc1_1/MatMul' -> 'fc1')."""
    names = set(layer_names)
    for part in re.split(r"[;/]", tensor_name):
        if part in names:
            return part
        stripped = re.sub(r"_\d+$", "", part)
        if stripped in names:
            return stripped
    return None


def _is_keras3(model: Any) -> bool:
    try:
        import keras
    except ImportError:  # pragma: no cover
        return False
    return isinstance(model, keras.Model) and keras.__version__.startswith("3.")


_RECURRENT = ("LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional", "ConvLSTM1D", "ConvLSTM2D",
              "ConvLSTM3D")


def _recurrent(model: Any) -> bool:
    """Whether the model has a recurrent layer, subclasses included."""
    return any(cls.__name__ in _RECURRENT
               for layer in _all_layers(model) for cls in type(layer).__mro__)


def _crash_suspects(model: Any) -> list[str]:
    """The layers whose full-integer calibration can crash the converter."""
    return [f"'{layer.name}' ({type(layer).__name__})" for layer in _all_layers(model)
            if type(layer).__name__ in _RECURRENT]


def configure(converter, mode: str, io_dtype: str, dense_per_tensor: bool,
              samples: list[list[np.ndarray]] | None, allow_float_ops: bool,
              names: list[str] | None = None) -> None:
    """Set a `TFLiteConverter` up for `mode` (also used by the isolated child).
    `names`: the signature's input names, in `samples` order (SavedModel
    conversions), so that several inputs are fed by name."""
    import tensorflow as tf

    if mode == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode in ("int8", "int16x8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        # Dense kernels trained on a per-tensor grid (quantize(...,
        # per_tensor_dense=True)) stay per tensor: exact, and smaller.
        converter._experimental_disable_per_channel_quantization_for_dense_layers = (
            dense_per_tensor)
        if samples is not None:
            feed = samples
            if names is not None and len(names) > 1:
                # By signature input name: the converter's own input order is
                # not the model's (it sorts them).
                feed = [dict(zip(names, row)) for row in samples]
            converter.representative_dataset = lambda: iter(feed)
        ops = (tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if mode == "int8" else
               tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8)
        if samples is not None or mode == "int16x8":
            converter.target_spec.supported_ops = (
                [ops, tf.lite.OpsSet.TFLITE_BUILTINS] if allow_float_ops else [ops])
        # else: a QAT model carries its ranges; asking for INT8 builtins would
        # make the converter demand calibration data. The float-op check
        # in `convert` still guarantees an integer-only result.
        if io_dtype != "float32":
            converter.inference_input_type = tf.as_dtype(io_dtype)
            converter.inference_output_type = tf.as_dtype(io_dtype)


def convert(
    model: Any,
    mode: str = "int8",
    representative_data: Any = None,
    *,
    io_dtype: str | None = None,
    batch_size: int = 1,
    max_samples: int = 200,
    allow_float_ops: bool = False,
    signature_name: str = "serving_default",
    isolate: bool | None = None,
) -> TFLiteModel:
    """Convert `model` to TFLite.

    Args:
        model: a Keras 3 model, a path to a `.keras` file or a SavedModel folder,
            or a tf_keras model (e.g. from TFMOT, converted in its own process).
        mode: one of `MODES`.
        representative_data: calibration inputs for `int8`/`int16x8`: an array
            (samples on axis 0), a list of arrays (one per input), a dict of
            arrays by input name, an iterable of samples, or a callable
            returning one of those; each input keeps its dtype (token ids
            stay integers).
        io_dtype: input/output type; `int8` mode: "int8" (default), "uint8" or
            "float32"; `int16x8`: "int16" (default) or "float32"; others float32.
        batch_size: the static batch size of the exported signature.
        max_samples: at most this many calibration samples are used.
        allow_float_ops: in integer modes, keep ops the converter cannot
            quantize in float instead of raising `ConversionError`.
        signature_name: the name of the model's signature (Keras 3 models),
            what Android's `Interpreter.runSignature` selects.
        isolate: convert in a child process, so that a converter crash cannot
            end this one (None: for integer modes of models with recurrent
            layers, whose calibration is known to crash it).

    Raises:
        ValueError: a bad argument or representative data (named in the message).
        ConversionError: float ops left in an integer model, or a converter
            failure, naming the op and the Keras layer.
    """
    import tensorflow as tf

    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}; received {mode!r}.")
    allowed_io = _IO_DTYPES.get(mode, ("float32",))
    io_dtype = io_dtype or allowed_io[0]
    if io_dtype not in allowed_io:
        raise ValueError(f"`io_dtype` for mode '{mode}' must be one of {allowed_io}; "
                         f"received {io_dtype!r}.")
    if not isinstance(signature_name, str) or not re.fullmatch(r"[A-Za-z_][\w]*", signature_name):
        raise ValueError(f"`signature_name` must be an identifier; received {signature_name!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer; received {batch_size!r}.")
    if mode == "int16x8" and representative_data is None:
        raise ValueError(
            "mode='int16x8' needs `representative_data` (a few hundred typical inputs) to "
            "calibrate the int16 activation ranges; fake-quant (QAT) ranges cannot stand "
            "in for it, because the converter's 16-bit fake-quant path yields a model "
            "LiteRT rejects.")

    layer_names: list[str] = []
    dense_per_tensor = False
    suspects: list[str] = []
    saved_model = None
    signature = None
    with tempfile.TemporaryDirectory() as tmp:
        if isinstance(model, (str, os.PathLike)):
            path = Path(model)
            if path.suffix == ".keras":
                import keras

                if not path.is_file():
                    raise FileNotFoundError(f"No .keras file at {path}.")
                if not zipfile.is_zipfile(path):
                    raise ValueError(f"{path} is not a valid .keras file (not a zip archive): "
                                     "it is damaged or truncated; save the model again.")
                try:
                    model = keras.models.load_model(path, compile=False)
                except Exception as exc:  # noqa: BLE001 - re-raised naming the file
                    raise ValueError(_load_failure(path, exc)) from None
            elif path.is_dir() and (path / "saved_model.pb").is_file():
                saved_model = str(path)
                loaded = tf.saved_model.load(saved_model)
                signature_name = list(loaded.signatures)[0]
                fn = loaded.signatures[signature_name]
                inputs = [InputSpec(k, tuple(v.shape), v.dtype.as_numpy_dtype.__name__)
                          for k, v in fn.structured_input_signature[1].items()]
                converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
            elif path.suffix == ".tflite":
                raise ValueError(f"{path} is already a TFLite model; load it with "
                                 "TFLiteModel.load(path).")
            else:
                raise FileNotFoundError(
                    f"{path} is neither a .keras file nor a SavedModel folder "
                    "(one holding saved_model.pb).")
        if not isinstance(model, (str, os.PathLike)):
            _check_finite_weights(model)
            if _is_keras3(model):
                layer_names = [layer.name for layer in _all_layers(model)]
                suspects = _crash_suspects(model)
                dense_per_tensor = _dense_kernels_per_tensor(model)
                if isolate is None:
                    isolate = bool(suspects) and mode in ("int8", "int16x8")
                structure, specs, inputs = _keras_routes.input_specs(model, batch_size)
                if isolate or _recurrent(model):
                    # The child converts a SavedModel. Recurrent layers too: the
                    # converter fuses an LSTM into one op, and keeps a stateful
                    # RNN's state in variables, only from a SavedModel.
                    saved_model = os.path.join(tmp, "saved_model")
                    converter = _keras_routes.saved_model_converter(
                        model, structure, specs, saved_model, signature_name)
                else:
                    converter, signature = _keras_routes.traced_converter(
                        model, structure, specs, signature_name)
            elif type(model).__module__.startswith("tf_keras"):
                layer_names = [layer.name for layer in model.submodules if hasattr(layer, "name")]
                inputs = [InputSpec(t.name, (batch_size, *tuple(t.shape)[1:]),
                                    tf.as_dtype(t.dtype).as_numpy_dtype.__name__)
                          for t in model.inputs]
                converter = tf.lite.TFLiteConverter.from_keras_model(model)
            else:
                raise ValueError(
                    "`model` must be a Keras model, a .keras file or a SavedModel folder; "
                    f"received {type(model).__name__}.")

        samples = None
        if mode in ("int8", "int16x8") and representative_data is not None:
            samples = representative.samples(representative_data, inputs, max_samples)
        names = [spec.name for spec in inputs] if saved_model is not None else None
        configure(converter, mode, io_dtype, dense_per_tensor, samples, allow_float_ops, names)
        try:
            if isolate and saved_model is not None:
                content = _isolated_convert.convert_in_child(
                    saved_model, signature_name,
                    {"mode": mode, "io_dtype": io_dtype, "dense_per_tensor": dense_per_tensor,
                     "allow_float_ops": allow_float_ops, "names": names}, samples, suspects,
                    tmp)
            elif signature is None:
                content = converter.convert()
            else:
                try:
                    content = _keras_routes.with_signature(converter.convert(), signature)
                except Exception:  # noqa: BLE001 - the SavedModel route decides
                    # What the traced route fails on, the SavedModel route may
                    # convert, or name the op it cannot: it runs once more.
                    saved_model = os.path.join(tmp, "saved_model")
                    converter = _keras_routes.saved_model_converter(
                        model, structure, specs, saved_model, signature_name)
                    configure(converter, mode, io_dtype, dense_per_tensor, samples,
                              allow_float_ops, [spec.name for spec in inputs])
                    content = converter.convert()
        except ConversionError:
            raise
        except Exception as exc:  # noqa: BLE001 - re-raised with guidance
            raise _explain(exc, mode, representative_data, layer_names) from exc

    result = TFLiteModel(content, mode=mode)
    if mode in ("int8", "int16x8") and not allow_float_ops:
        floats = [(op, names) for op, names in result.float_ops
                  if not (io_dtype == "float32" and op in ("QUANTIZE", "DEQUANTIZE"))]
        has_ranges = any(t.dtype in ("INT8", "INT16") and not t.is_constant
                         for t in result.tensors)
        if floats and representative_data is None and not has_ranges:
            raise ValueError(
                f"mode='{mode}' needs `representative_data` (a few hundred typical inputs) "
                f"to calibrate activation ranges: op {floats[0][0]} was left in float "
                "because the model has no fake-quant (QAT) ranges.")
        if floats:
            op, names = floats[0]
            layer = next((found for found in (_layer_of(n, layer_names) for n in names)
                          if found), None)
            raise ConversionError(
                f"The '{mode}' model still computes in float: op {op} (tensor '{names[0]}'"
                + (f", Keras layer '{layer}'" if layer else "")
                + f"), {len(floats)} float op(s) in all. "
                + ("If it has an int8 form but no fake-quant (QAT) range (the inside of "
                   "LayerNormalization, attention or an LSTM), pass `representative_data` "
                   "to calibrate it. Otherwise " if representative_data is None else "")
                + f"TFLite has no {mode} kernel for it: replace that layer (e.g. ELU -> "
                "ReLU), or pass allow_float_ops=True to keep it in float.")
    return result


def _load_failure(path: Path, exc: Exception) -> str:
    text = " ".join(str(exc).split())[:300]
    unknown = re.search(r"Could not (?:locate class|deserialize) '(?:[\w.]*\.)?(\w+)'", text)
    if unknown:
        return (f"{path} uses layer class '{unknown.group(1)}', which is not registered in "
                "this process: import the package that defines it (keras-compress layers are "
                "registered once the keras_compress package is imported) or pass the "
                "loaded model itself.")
    return (f"{path} is not a valid .keras file ({type(exc).__name__}: {text}); it is "
            "damaged or incomplete: save the model again.")


def _check_finite_weights(model: Any) -> None:
    """A model with NaN/Inf weights converts, but to garbage or to float ops
    that hide the cause: name the weight instead."""
    for weight in getattr(model, "weights", []):
        values = np.asarray(weight.numpy() if hasattr(weight, "numpy") else weight)
        if np.issubdtype(values.dtype, np.floating) and not np.all(np.isfinite(values)):
            bad = int(values.size - np.count_nonzero(np.isfinite(values)))
            name = getattr(weight, "path", None) or getattr(weight, "name", "?")
            raise ValueError(
                f"Weight '{name}' holds {bad} NaN/Inf value(s) of {values.size}: the model "
                "diverged or was loaded badly, and cannot be converted. Retrain it (a lower "
                "learning rate) or reload it.")


def _dense_kernels_per_tensor(model) -> bool:
    """True when the model has Dense layers and every Dense kernel sits on one
    symmetric int8 grid (scale max|w| / 127, every value within 1/1000 of a
    step of it): a QAT model trained per tensor. A per-channel grid or float
    kernel misses it by far (other channels' steps are not multiples)."""
    import keras

    kernels = [np.asarray(layer.kernel.numpy(), np.float64) for layer in _all_layers(model)
               if isinstance(layer, keras.layers.Dense) and layer.built]
    if not kernels:
        return False
    for w in kernels:
        step = np.max(np.abs(w)) / 127.0
        if step == 0.0:
            continue
        if np.max(np.abs(w / step - np.round(w / step))) > 1e-3:
            return False
    return True


def _all_layers(model):
    import keras

    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        elif hasattr(layer, "layer"):
            yield layer.layer


def _explain(exc: Exception, mode: str, representative_data: Any, layer_names) -> Exception:
    text = str(exc)
    needs_data = ("representative_dataset" in text or "representative dataset" in text.lower()
                  or (representative_data is None and "inference_input_type" in text))
    if needs_data:
        return ValueError(
            f"mode='{mode}' needs `representative_data` (a few hundred typical inputs) to "
            "calibrate activation ranges, unless the model was trained with fake-quant "
            "(QAT) ranges on every tensor.")
    if mode == "int16x8" and "kTfLiteInt64" in text:
        return ConversionError(
            "TFLite conversion to 'int16x8' failed: the model holds 16-bit fake-quant ops, "
            "which the TFLite converter turns into int16 tensors with int32 biases that its "
            "kernels reject. Remove the fake-quant ops (keras_compress.strip does this for "
            "16-bit QAT models) and pass `representative_data` to calibrate the int16 ranges. "
            f"Converter message: {text.strip().splitlines()[0][:300]}")
    op = re.search(r"'(tfl\.[\w.]+|tf\.[\w.]+)' op", text)
    loc = re.search(r'loc\(\w*\(?"([^"]+)"', text)
    layer = _layer_of(loc.group(1), layer_names) if loc else None
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return ConversionError(
        f"TFLite conversion to '{mode}' failed"
        + (f" at op {op.group(1)}" if op else "")
        + (f" (Keras layer '{layer}')" if layer else "")
        + f": {first[:500]}")
