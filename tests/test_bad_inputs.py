"""The catalogue of bad inputs: each one raises a specific exception whose
message names the culprit (the argument, layer, op, file or shape) and, where
there is one, the fix. No training here: every case runs in well under a
second. The table in docs/reliability.md lists the same cases."""

from __future__ import annotations

import os
import zipfile

import keras
import numpy as np
import pytest

import keras_compress as kc
import tflite_export

L = keras.layers


def _dense(name: str = "fc") -> keras.Model:
    return keras.Sequential([keras.Input((4,)), L.Dense(3, name=name)], name="tiny")


def _nan_model() -> keras.Model:
    model = _dense()
    weights = model.get_weights()
    weights[0][1, 2] = np.nan
    model.set_weights(weights)
    return model


def _float_tfl() -> tflite_export.TFLiteModel:
    return tflite_export.convert(_dense(), mode="float32")


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__(name="my_subclassed")
        self.fc = L.Dense(3)

    def call(self, x):
        return self.fc(x)


def _subclassed() -> keras.Model:
    model = _Subclassed()
    model(np.zeros((1, 4), "float32"))
    return model


def _gelu_tfl() -> tflite_export.TFLiteModel:
    inputs = keras.Input((4,))
    model = keras.Model(inputs, L.Activation("gelu")(L.Dense(3)(inputs)))
    return tflite_export.convert(model, mode="float32")


def _corrupt_keras(tmp_path) -> str:
    path = tmp_path / "broken.keras"
    _dense().save(path)
    path.write_bytes(path.read_bytes()[:200])
    return str(path)


def _edited_keras(path, edit) -> str:
    """Save a tiny model to `path`, then rewrite its archive: `edit` maps
    {member name: bytes} to the members to keep."""
    _dense().save(path)
    with zipfile.ZipFile(path) as source:
        files = edit({n: source.read(n) for n in source.namelist()})
    with zipfile.ZipFile(path, "w") as target:
        for name, data in files.items():
            target.writestr(name, data)
    return str(path)


def _keras_without_weights(tmp_path) -> str:
    return _edited_keras(tmp_path / "hollow.keras",
                         lambda files: {n: d for n, d in files.items() if not n.endswith(".h5")})


def _keras_with_unknown_layer(tmp_path) -> str:
    return _edited_keras(tmp_path / "custom.keras", lambda files: {
        **files, "config.json": files["config.json"].replace(b'"Dense"', b'"NoSuchLayer"')})


def _truncated_tflite(tmp_path) -> str:
    path = tmp_path / "cut.tflite"
    path.write_bytes(_float_tfl().content[:64])
    return str(path)


# (case id, callable taking tmp_path, exception type, regex the message must match)
CASES = [
    # --- arguments: types and ranges
    ("sparsity 1.0", lambda p: kc.ConstantSparsity(1.0), ValueError, r"sparsity.*\[0, 1\)"),
    ("sparsity negative", lambda p: kc.PolynomialDecay(-0.1, 0.5, 0, 10), ValueError,
     r"initial_sparsity"),
    ("schedule end before begin", lambda p: kc.PolynomialDecay(0.0, 0.5, 10, 5), ValueError,
     r"end_step"),
    ("N:M pattern N > M", lambda p: kc.prune(_dense(), structure="5:4"), ValueError,
     r"structure"),
    ("unknown layer name to prune", lambda p: kc.prune(_dense(), layers=["no_such"]),
     ValueError, r"no_such"),
    ("prune a string", lambda p: kc.prune("model.keras"), ValueError, r"`model`.*str"),
    ("weight bits 3", lambda p: kc.quantize(_dense(), weight_bits=3), ValueError,
     r"weight_bits.*8 \(int8\) or 4"),
    ("activation bits 12", lambda p: kc.quantize(_dense(), activation_bits=12), ValueError,
     r"activation_bits.*8 or 16"),
    ("n_clusters 1", lambda p: kc.cluster(_dense(), n_clusters=1), ValueError, r"n_clusters"),
    ("unknown cluster init", lambda p: kc.cluster(_dense(), init="random"), ValueError,
     r"init.*random"),
    ("rank 0", lambda p: kc.factorize(_dense(), rank=0), ValueError, r"rank"),
    ("distillation temperature 0", lambda p: kc.Distiller(_dense(), _dense(), temperature=0),
     ValueError, r"temperature"),
    ("distillation alpha 2", lambda p: kc.Distiller(_dense(), _dense(), alpha=2.0), ValueError,
     r"alpha"),
    ("conversion mode", lambda p: tflite_export.convert(_dense(), mode="int7"), ValueError,
     r"mode.*int7"),
    ("LUT index bits 8", lambda p: tflite_export.compress_lut(_float_tfl(), max_index_bits=8),
     ValueError, r"max_index_bits"),
    # --- weights
    ("NaN weights, prune", lambda p: kc.prune(_nan_model()), ValueError,
     r"'fc'.*kernel.*1 NaN/Inf"),
    ("NaN weights, quantize", lambda p: kc.quantize(_nan_model()), ValueError,
     r"'fc'.*NaN/Inf.*quantize"),
    ("NaN weights, convert", lambda p: tflite_export.convert(_nan_model(), mode="float32"),
     ValueError, r"fc/kernel.*NaN/Inf"),
    # --- unsupported models and layers
    ("subclassed model", lambda p: kc.quantize(_subclassed()), ValueError, r"my_subclassed"),
    ("layer with no int8 path", lambda p: kc.quantize(keras.Sequential(
        [keras.Input((4,)), L.GroupNormalization(2, name="norm"), L.Dense(2)])), ValueError,
     r"'norm'.*GroupNormalization"),
    ("prune a clustered model", lambda p: kc.prune(kc.cluster(_dense())), ValueError,
     r"already wrapped.*'cluster_fc'"),
    # --- representative data
    ("representative data, wrong shape", lambda p: tflite_export.convert(
        _dense(), mode="int8", representative_data=np.zeros((8, 5), "float32")), ValueError,
     r"representative_data.*\(5,\).*\(4,\)"),
    ("representative data, empty", lambda p: tflite_export.convert(
        _dense(), mode="int8", representative_data=np.zeros((0, 4), "float32")), ValueError,
     r"representative_data.*empty|no sample"),
    ("representative data, NaN", lambda p: tflite_export.convert(
        _dense(), mode="int8", representative_data=np.full((8, 4), np.nan, "float32")),
     ValueError, r"representative_data.*NaN"),
    ("int16x8 without representative data", lambda p: tflite_export.convert(
        _dense(), mode="int16x8"), ValueError, r"int16x8.*representative_data"),
    ("predict with the wrong input shape", lambda p: tflite_export.predict(
        _float_tfl(), np.zeros((2, 5), "float32")), ValueError, r"\(4,\).*\(2, 5\)"),
    # --- files and paths
    ("corrupted .keras", lambda p: tflite_export.convert(_corrupt_keras(p), mode="float32"),
     ValueError, r"broken.keras.*not a valid .keras"),
    (".keras without its weights", lambda p: tflite_export.convert(
        _keras_without_weights(p), mode="float32"), ValueError, r"hollow.keras.*not a valid"),
    ("unknown layer type in .keras", lambda p: tflite_export.convert(
        _keras_with_unknown_layer(p), mode="float32"), ValueError,
     r"custom.keras.*'NoSuchLayer'.*not registered"),
    ("truncated .tflite", lambda p: tflite_export.TFLiteModel.load(_truncated_tflite(p)),
     ValueError, r"cut.tflite"),
    ("output path is a folder", lambda p: _float_tfl().save(p), IsADirectoryError,
     r"is a directory"),
    ("output folder is a file", lambda p: _float_tfl().save(
        (p / "file.txt").write_text("x") and p / "file.txt" / "m.tflite"), NotADirectoryError,
     r"file.txt is a file"),
    ("output folder not writable", lambda p: _float_tfl().save("/proc/m.tflite"), OSError,
     r"Cannot write /proc/m.tflite: cannot create files in /proc"),
    ("output folder missing", lambda p: _float_tfl().save(p / "nope" / "m.tflite"),
     FileNotFoundError, r"nope does not exist"),
    # --- TFLite-Micro
    ("op TFLite-Micro lacks", lambda p: tflite_export.export_micro(_gelu_tfl(), p), ValueError,
     r"no kernel for op.*GELU"),
    ("hybrid model on TFLite-Micro", lambda p: tflite_export.export_micro(
        tflite_export.convert(keras.Sequential([keras.Input((64,)), L.Dense(64)]),
                              mode="dynamic"), p), ValueError, r"hybrid"),
]


@pytest.mark.parametrize("make, error, match", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_is_named(make, error, match, tmp_path):
    with pytest.raises(error, match=match):
        make(tmp_path)
    # Nothing half-written: no temporary files left behind.
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_catalogue_is_big_enough():
    assert len(CASES) >= 20 and len({c[0] for c in CASES}) == len(CASES)


def test_docs_list_every_case():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "reliability.md").read_text()
    missing = [c[0] for c in CASES if f"| {c[0]} |" not in text]
    assert not missing, f"docs/reliability.md lacks {missing}"


_DOC = """# Reliability

## Bad inputs

Every row is a case of `tests/test_bad_inputs.py` (regenerate this file with
`python tests/test_bad_inputs.py`): the exception raised and its message, as this version
produces it (`<dir>` is the test's temporary folder). The test asserts the exception type,
that the message names the culprit, and that nothing half-written is left behind.

| bad input | exception | message |
|---|---|---|
{rows}

## Loading is safe

- `.keras` files load with Keras' safe mode on (the default; nothing in the package turns
  it off), so a model file cannot run code. keras-compress layers are registered
  serializables; `tflite_export.convert("x.keras")` names an unregistered class instead of
  loading it.
- No pickle: NumPy files load with `allow_pickle=False`; CIFAR-10's python batches are read
  by an unpickler that accepts NumPy arrays and plain containers only.
  `tests/test_repo.py::test_no_unsafe_loading_anywhere` guards both.
- Every file the package writes (`.tflite`, C arrays, reports, benchmark docs) goes through
  a temporary file and an atomic rename: an interrupted write leaves the old file or none.
"""


def _write_doc() -> None:
    import pathlib
    import tempfile

    rows = []
    for case, make, error, _ in CASES:
        with tempfile.TemporaryDirectory() as folder:
            try:
                make(pathlib.Path(folder))
                message = "(no error)"
            except Exception as exc:  # noqa: BLE001 - recorded as documentation
                message = " ".join(str(exc).replace(folder, "<dir>").split())
        rows.append(f"| {case} | `{error.__name__}` | {message.replace('|', '/')} |")
    path = pathlib.Path(__file__).resolve().parents[1] / "docs" / "reliability.md"
    old = path.read_text() if path.exists() else ""
    zoo = old[old.index("## Architecture zoo"):] if "## Architecture zoo" in old else ""
    path.write_text(_DOC.format(rows="\n".join(rows)) + ("\n" + zoo if zoo else ""))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    _write_doc()
