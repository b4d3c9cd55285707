"""How `convert` hands a Keras 3 model to the TFLite converter.

Two routes, which give the same ops and outputs: `traced_converter` traces
the model's inference call once and freezes its variables (the default), and
`saved_model_converter` exports it with `keras.export.ExportArchive` (for
the child process, for recurrent layers, which the converter fuses only from
a SavedModel, and for what the traced route fails to convert). The traced
result has no SignatureDef: `with_signature` writes the one the SavedModel
route gives.
"""

from __future__ import annotations

from typing import Any

from tflite_export.representative import InputSpec


def input_specs(model: Any, batch_size: int) -> tuple[Any, list, list[InputSpec]]:
    """(the model's input structure: one tensor, a list, or a dict as KerasHub
    models take; a `tf.TensorSpec` per input with the static batch size; the
    `InputSpec`s), inputs in the order the structure flattens to."""
    import keras
    import tensorflow as tf

    try:
        structure = model.input
    except (AttributeError, ValueError):
        structure = model.inputs
    if isinstance(structure, (list, tuple)) and len(structure) == 1:
        structure = structure[0]
    specs, inputs = [], []
    for i, (path, t) in enumerate(keras.tree.flatten_with_path(structure)):
        shape = (batch_size, *t.shape[1:])
        if any(d is None for d in shape[1:]):
            raise ValueError(
                f"Input {i} ('{t.name}') has dynamic dimensions {tuple(t.shape)}; TFLite int8 "
                "and TFLite-Micro need static shapes. Rebuild the model with a fixed "
                "keras.Input(shape=...).")
        if path and isinstance(path[-1], str):   # a dict input: its key
            name = path[-1]
        else:
            name = t._keras_history[0].name if hasattr(t, "_keras_history") else f"input_{i}"
        specs.append(tf.TensorSpec(shape, tf.as_dtype(t.dtype), name=name))
        inputs.append(InputSpec(name, shape, tf.as_dtype(t.dtype).as_numpy_dtype.__name__))
    return structure, specs, inputs


def _inference(model: Any, structure: Any):
    """`model`'s inference call on its inputs given flat, in `structure`'s order."""
    import keras

    def call(*args):
        return model(keras.tree.pack_sequence_as(structure, list(args)), training=False)

    return call


def saved_model_converter(model: Any, structure: Any, specs: list, folder: str,
                          signature_name: str):
    """A converter on `model` exported to `folder` as a SavedModel with one
    endpoint, `signature_name`, taking its inputs in their own structure."""
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(signature_name, _inference(model, structure), input_signature=specs)
    archive.write_out(folder, verbose=False)
    # Only our endpoint: Keras also writes a serving_default alias, which would
    # become a second, duplicate subgraph.
    return tf.lite.TFLiteConverter.from_saved_model(folder, signature_keys=[signature_name])


def traced_converter(model: Any, structure: Any, specs: list, signature_name: str):
    """(a converter on `model`'s inference call traced once, its variables
    frozen, and the signature to write into its result).

    This skips what the SavedModel route spends most of its time on: Keras'
    export traces the model three times and the converter loads the
    SavedModel twice. The signature is the one the SavedModel route gives:
    inputs by name, in the model's order; outputs `output_<i>` (or the
    model's dict keys)."""
    import tensorflow as tf

    traced = tf.function(_inference(model, structure), input_signature=[
        tf.TensorSpec(spec.shape, spec.dtype, name=f"{signature_name}_{spec.name}")
        for spec in specs])
    concrete = traced.get_concrete_function()
    outputs = concrete.structured_outputs
    if isinstance(outputs, dict):
        out_names = sorted(outputs)
    else:
        out_names = [f"output_{i}" for i in range(len(tf.nest.flatten(outputs)))]
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], None)
    return converter, (signature_name, [spec.name for spec in specs], out_names)


def with_signature(content: bytes, signature: tuple) -> bytes:
    """`content` (one subgraph, no SignatureDef) with the SignatureDef
    `signature` = (key, input names, output names), in the subgraph's order."""
    from ai_edge_litert import schema_py_generated as fb

    from tflite_export import _schema

    model = _schema.parse(content)
    key, in_names, out_names = signature
    graph = model.subgraphs[0]
    if len(graph.inputs) != len(in_names) or len(graph.outputs) != len(out_names):
        raise ValueError(
            f"The converter returned {len(graph.inputs)} input(s) and {len(graph.outputs)} "
            f"output(s) for a model with {len(in_names)} and {len(out_names)}.")

    def tensor_maps(names, indices):
        maps = []
        for name, index in zip(names, indices):
            item = fb.TensorMapT()
            item.name, item.tensorIndex = name, int(index)
            maps.append(item)
        return maps

    signature_def = fb.SignatureDefT()
    signature_def.signatureKey, signature_def.subgraphIndex = key, 0
    signature_def.inputs = tensor_maps(in_names, graph.inputs)
    signature_def.outputs = tensor_maps(out_names, graph.outputs)
    model.signatureDefs = [signature_def]
    return _schema.pack(model, content)
