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
