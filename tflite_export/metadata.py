"""Standard TFLite model metadata, embedded in the `.tflite` file.

This is the format Android Studio's ML model binding, the TFLite Support
library and MediaPipe's metadata extractor read: a `ModelMetadata` flatbuffer
(file identifier `M001`) in one of the model's buffers, named by a
`TFLITE_METADATA` entry of `Model.metadata`, and the associated files (labels)
appended to the model as an uncompressed zip archive. `tflite-support`, which
used to write it, does not install beside current TensorFlow, so the tables
are built here with the `flatbuffers` package from the published schema
(`tensorflow_lite_support/metadata/metadata_schema.fbs`, fields by slot).

The model itself is unchanged: the same graph, tensors and weights (buffers
keep 16-byte alignment, and weights a tool stored after the flatbuffer move
inside it), so LiteRT and TFLite-Micro run it as before.

Example:

```python
import keras
import numpy as np
import tflite_export

x = np.random.default_rng(0).random((200, 8, 8, 1), dtype="float32")
model = keras.Sequential([keras.Input((8, 8, 1)),
                          keras.layers.Conv2D(4, 3, activation="relu"),
                          keras.layers.Flatten(), keras.layers.Dense(3)])
tfl = tflite_export.convert(model, mode="int8", representative_data=x)
content = tflite_export.embed_metadata(tfl, name="shapes", mean=0.0, std=1.0,
                                       labels=["circle", "square", "star"])
meta = tflite_export.read_metadata(content)
meta["name"], meta["outputs"][0]["labels"]   # ('shapes', ['circle', 'square', 'star'])
```
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence

import flatbuffers
from flatbuffers import number_types as _n
from flatbuffers.table import Table

from ai_edge_litert import schema_py_generated as _fb
from tflite_export import _schema
from tflite_export.model import TensorInfo, TFLiteModel

__all__ = ["embed_metadata", "read_metadata"]

FIELD_NAME = "TFLITE_METADATA"
_IDENTIFIER = b"M001"
_PARSER_VERSION = "1.0.0"  # every field written here exists since schema 1.0.0

# Enum values of metadata_schema.fbs.
_FEATURE, _IMAGE = 1, 2  # ContentProperties union
_NORMALIZATION = 1  # ProcessUnitOptions union
_COLOR_SPACES = {1: "RGB", 2: "GRAYSCALE"}
_AXIS_LABELS = 2  # AssociatedFileType.TENSOR_AXIS_LABELS


# ------------------------------------------------------------------- writing
def _string(b: flatbuffers.Builder, s: str | None):
    return b.CreateString(s) if s else None


def _offsets(b: flatbuffers.Builder, offsets: Sequence[int]):
    b.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def _floats(b: flatbuffers.Builder, values: Sequence[float]):
    b.StartVector(4, len(values), 4)
    for v in reversed(values):
        b.PrependFloat32(float(v))
    return b.EndVector()


def _table(b: flatbuffers.Builder, slots: int, offsets: dict[int, int | None],
           bytes_: dict[int, int] | None = None):
    """A table with offset fields (slot -> offset) and byte fields (slot -> value)."""
    b.StartObject(slots)
    for slot, off in offsets.items():
        if off is not None:
            b.PrependUOffsetTRelativeSlot(slot, off, 0)
    for slot, value in (bytes_ or {}).items():
        b.PrependInt8Slot(slot, value, 0)
    return b.EndObject()


def _associated_file(b, name: str, description: str):
    # AssociatedFile: name, description, type, locale
    return _table(b, 4, {0: _string(b, name), 1: _string(b, description)}, {2: _AXIS_LABELS})


def _input_metadata(b, info: TensorInfo, mean: list[float], std: list[float], label: str):
    shape = info.shape
    image = len(shape) == 4 and shape[-1] in (1, 3)
    if image:  # ImageProperties: color_space, default_size
        props = _table(b, 2, {}, {0: 1 if shape[-1] == 3 else 2})
    else:  # FeatureProperties (no fields)
        props = _table(b, 0, {})
    # Content: content_properties_type, content_properties, range
    content = _table(b, 3, {1: props}, {0: _IMAGE if image else _FEATURE})
    norm = _table(b, 2, {0: _floats(b, mean), 1: _floats(b, std)})  # NormalizationOptions
    unit = _table(b, 2, {1: norm}, {0: _NORMALIZATION})  # ProcessUnit: options_type, options
    # TensorMetadata: name, description, dimension_names, content, process_units, ...
    return _table(b, 7, {0: _string(b, info.name), 1: _string(b, label), 3: content,
                         4: _offsets(b, [unit])})


def _output_metadata(b, info: TensorInfo, labels_file: str | None, label: str):
    content = _table(b, 3, {1: _table(b, 0, {})}, {0: _FEATURE})
    files = None
    if labels_file:
        files = _offsets(b, [_associated_file(b, labels_file, "Labels of the output classes.")])
    return _table(b, 7, {0: _string(b, info.name), 1: _string(b, label), 3: content, 6: files})


def _metadata_flatbuffer(tfl: TFLiteModel, *, name, description, version, author, license,
                         means, stds, labels_file) -> bytes:
    b = flatbuffers.Builder(1024)
    inputs = [_input_metadata(b, t, means, stds, "Input, normalized as (x - mean) / std "
                              "then quantized with the tensor's scale and zero point.")
              for t in tfl.inputs]
    outputs = [_output_metadata(b, t, labels_file if i == 0 else None, "Output scores.")
               for i, t in enumerate(tfl.outputs)]
    # SubGraphMetadata: name, description, input_tensor_metadata, output_tensor_metadata
    subgraph = _table(b, 4, {0: _string(b, name), 2: _offsets(b, inputs),
                             3: _offsets(b, outputs)})
    # ModelMetadata: name, description, version, subgraph_metadata, author, license,
    # associated_files, min_parser_version
    root = _table(b, 8, {0: _string(b, name), 1: _string(b, description),
                         2: _string(b, version), 3: _offsets(b, [subgraph]),
                         4: _string(b, author), 5: _string(b, license),
                         7: _string(b, _PARSER_VERSION)})
    b.Finish(root, file_identifier=_IDENTIFIER)
    return bytes(b.Output())


def per_channel(name: str, value: float | Sequence[float], channels: int) -> list[float]:
    values = [float(value)] if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(values) not in (1, channels):
        raise ValueError(f"`{name}` has {len(values)} values; give one, or one per input "
                         f"channel ({channels}).")
    return values


def embed_metadata(
    tfl: TFLiteModel,
    *,
    name: str = "model",
    description: str = "",
    version: str = "",
    author: str = "",
    license: str = "",  # noqa: A002 - the schema's field name
    mean: float | Sequence[float] = 0.0,
    std: float | Sequence[float] = 1.0,
    labels: Sequence[str] | None = None,
    labels_file: str = "labels.txt",
) -> bytes:
    """`tfl`'s flatbuffer with standard TFLite metadata embedded: name,
    description, version, author, license, each input's normalization
    `(x - mean) / std` (image properties for NHWC inputs with 1 or 3 channels),
    and `labels` as a `TENSOR_AXIS_LABELS` file of the first output, packed in
    the model. Metadata already in the model is replaced.

    Raises:
        ValueError: labels that do not match the output size or hold newlines,
            a zero `std`, or normalization values that do not match the input
            channels.
    """
    if not isinstance(tfl, TFLiteModel):
        raise ValueError(f"`tfl` must be a TFLiteModel; received {type(tfl).__name__}.")
    channels = tfl.inputs[0].shape[-1] if tfl.inputs[0].shape else 1
    means = per_channel("mean", mean, channels)
    stds = per_channel("std", std, channels)
    if any(s == 0 for s in stds):
        raise ValueError("`std` must not be zero.")
    if labels is not None:
        labels = [str(label) for label in labels]
        classes = tfl.outputs[0].shape[-1] if tfl.outputs[0].shape else 1
        if len(labels) != classes:
            raise ValueError(f"`labels` has {len(labels)} entries but the model output "
                             f"'{tfl.outputs[0].name}' has {classes} classes.")
        if any("\n" in label for label in labels):
            raise ValueError("`labels` entries must not contain newlines.")
    model = _schema.parse(tfl.content)
    meta = _metadata_flatbuffer(tfl, name=name, description=description, version=version,
                                author=author, license=license, means=means, stds=stds,
                                labels_file=labels_file if labels is not None else None)
    entries = [m for m in (model.metadata or []) if m.name.decode() != FIELD_NAME]
    old = {m.buffer for m in (model.metadata or []) if m.name.decode() == FIELD_NAME}
    buffers = list(model.buffers or [])
    for i in old:  # empty the replaced metadata's buffer; indices stay valid
        buffers[i] = _fb.BufferT()
    holder = _fb.BufferT()
    holder.data = meta
    buffers.append(holder)
    entry = _fb.MetadataT()
    entry.name, entry.buffer = FIELD_NAME.encode(), len(buffers) - 1
    model.buffers, model.metadata = buffers, entries + [entry]
    out = io.BytesIO(_schema.pack(model, tfl.content))
    if labels is not None:
        out.seek(0, io.SEEK_END)
        with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as archive:
            archive.writestr(labels_file, "\n".join(labels) + "\n")
    return out.getvalue()


# ------------------------------------------------------------------- reading
class _Reader:
    """Field access by slot on one flatbuffer table."""

    def __init__(self, buf: bytes, pos: int):
        self._t = Table(bytearray(buf), pos)

    def _field(self, slot: int) -> int:
        return self._t.Offset(4 + 2 * slot)

    def string(self, slot: int) -> str | None:
        o = self._field(slot)
        return self._t.String(self._t.Pos + o).decode() if o else None

    def byte(self, slot: int) -> int:
        o = self._field(slot)
        return self._t.Get(_n.Int8Flags, self._t.Pos + o) if o else 0

    def table(self, slot: int) -> "_Reader | None":
        o = self._field(slot)
        return _Reader(self._t.Bytes, self._t.Indirect(self._t.Pos + o)) if o else None

    def tables(self, slot: int) -> list["_Reader"]:
        o = self._field(slot)
        if not o:
            return []
        start = self._t.Vector(o)
        return [_Reader(self._t.Bytes, self._t.Indirect(start + 4 * i))
                for i in range(self._t.VectorLen(o))]

    def floats(self, slot: int) -> list[float]:
        o = self._field(slot)
        if not o:
            return []
        start = self._t.Vector(o)
        return [self._t.Get(_n.Float32Flags, start + 4 * i) for i in range(self._t.VectorLen(o))]


def _tensor(t: _Reader, files: dict[str, bytes]) -> dict:
    content = t.table(3)
    kind = content.byte(0) if content else 0
    out = {"name": t.string(0), "description": t.string(1),
           "content": {_FEATURE: "feature", _IMAGE: "image"}.get(kind, "other")}
    if kind == _IMAGE:
        out["color_space"] = _COLOR_SPACES.get(content.table(1).byte(0), "UNKNOWN")
    for unit in t.tables(4):
        if unit.byte(0) == _NORMALIZATION:
            norm = unit.table(1)
            out["mean"], out["std"] = norm.floats(0), norm.floats(1)
    for f in t.tables(6):
        if f.byte(2) == _AXIS_LABELS:
            out["labels_file"] = f.string(0)
            text = files.get(f.string(0))
            out["labels"] = text.decode().splitlines() if text is not None else None
    return out


def read_metadata(content: bytes | TFLiteModel) -> dict | None:
    """The embedded metadata as a dict (None when the model has none): name,
    description, version, author, license, min_parser_version, `inputs` and
    `outputs` (name, content kind, normalization, labels) and `files` (the
    associated files packed in the model, by name)."""
    if isinstance(content, TFLiteModel):
        content = content.content
    model = _schema.parse(content)
    meta = next((bytes(bytearray(model.buffers[m.buffer].data)) for m in model.metadata or []
                 if m.name.decode() == FIELD_NAME and model.buffers[m.buffer].data is not None),
                None)
    if meta is None:
        return None
    if meta[4:8] != _IDENTIFIER:
        raise ValueError(f"The {FIELD_NAME} buffer is not TFLite metadata (file identifier "
                         f"{meta[4:8]!r}, expected {_IDENTIFIER!r}).")
    files: dict[str, bytes] = {}
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            files = {n: archive.read(n) for n in archive.namelist()}
    except zipfile.BadZipFile:
        pass
    root = _Reader(meta, flatbuffers.encode.Get(_n.UOffsetTFlags.packer_type, meta, 0))
    subgraphs = root.tables(3)
    return {
        "name": root.string(0), "description": root.string(1), "version": root.string(2),
        "author": root.string(4), "license": root.string(5),
        "min_parser_version": root.string(7),
        "inputs": [_tensor(t, files) for s in subgraphs[:1] for t in s.tables(2)],
        "outputs": [_tensor(t, files) for s in subgraphs[:1] for t in s.tables(3)],
        "files": files,
    }
