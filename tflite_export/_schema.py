"""Reading a .tflite flatbuffer with the schema LiteRT ships (no interpreter needed)."""

from __future__ import annotations

from ai_edge_litert import schema_py_generated as _fb

OP_NAMES = {v: k for k, v in vars(_fb.BuiltinOperator).items() if not k.startswith("_")}
TYPE_NAMES = {v: k for k, v in vars(_fb.TensorType).items() if not k.startswith("_")}


def parse(content: bytes) -> "_fb.ModelT":
    """The flatbuffer as LiteRT's object API tree; ValueError when it is not one."""
    if len(content) < 8 or content[4:8] != b"TFL3":
        raise ValueError(
            "Not a TFLite flatbuffer: the file identifier 'TFL3' is missing at bytes 4-8 "
            "(a truncated or corrupted file, or another format)."
        )
    try:
        return _fb.ModelT.InitFromPackedBuf(bytearray(content), 0)
    except Exception as exc:  # noqa: BLE001 - any decoding failure means corruption
        raise ValueError(f"Corrupted TFLite flatbuffer: {exc}") from None


def op_name(model: "_fb.ModelT", opcode_index: int) -> str:
    code = model.operatorCodes[opcode_index]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    if builtin == _fb.BuiltinOperator.CUSTOM:
        return (code.customCode or b"CUSTOM").decode()
    return OP_NAMES.get(builtin, f"BUILTIN_{builtin}")


class AlignedBuffer(_fb.BufferT):
    """A model buffer packed with the 16-byte alignment the TFLite schema asks
    for (`force_align: 16`), which the generated Python packer leaves out."""

    def Pack(self, builder):  # noqa: N802 - flatbuffers' name
        data = None
        if self.data is not None and len(self.data):
            raw = bytes(bytearray(self.data))
            builder.StartVector(1, len(raw), 16)
            builder.head -= len(raw)
            builder.Bytes[builder.head:builder.head + len(raw)] = raw
            data = builder.EndVector()
        _fb.BufferStart(builder)
        if data is not None:
            _fb.BufferAddData(builder, data)
        _fb.BufferAddOffset(builder, self.offset)
        _fb.BufferAddSize(builder, self.size)
        return _fb.BufferEnd(builder)


def external_buffers(model: "_fb.ModelT") -> list[int]:
    """Indices of the buffers whose data sits after the flatbuffer (`offset`
    and `size`, the layout for models over 2 GB that some tools always write)."""
    return [i for i, b in enumerate(model.buffers or []) if b.offset > 1]


def buffer_data(buf: "_fb.BufferT", content: bytes):
    """A buffer's bytes: inside the flatbuffer, or after it (`offset`, `size`)
    in `content`, the file the model was parsed from."""
    return content[buf.offset:buf.offset + buf.size] if buf.offset > 1 else buf.data


def pack(model: "_fb.ModelT", content: bytes) -> bytes:
    """`model` serialized again, every buffer inside the flatbuffer and 16-byte
    aligned; data kept after the flatbuffer (`offset`, `size`) is read from
    `content`, the file it was parsed from."""
    import flatbuffers

    buffers = []
    for buf in model.buffers or []:
        out = AlignedBuffer()
        out.data = buffer_data(buf, content)
        buffers.append(out)
    model.buffers = buffers
    builder = flatbuffers.Builder(len(content) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
