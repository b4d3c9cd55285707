"""`drop_index_guards(tfl)`: embedding lookups without the negative-index
guard TFLite-Micro cannot run.

Keras 3 lowers `Embedding` (any `take` on the TensorFlow backend) to
`GATHER(table, SELECT(LESS(ids, 0), ADD(ids, n), ids))`, which wraps
negative ids around as Python does. TFLite-Micro has no SELECT kernel, so the
model refuses to run there. Token ids are never negative: this rewrite feeds
the ids to GATHER directly and removes the guard ops (when nothing else reads
them). The outputs for ids in `[0, n)` are unchanged, which `drop_index_guards`
checks with LiteRT before returning; TFLite-Micro's GATHER rejects ids out of
range.

Example:

```python
import keras
import numpy as np
import tflite_export

ids = keras.Input((8,), dtype="int32")
model = keras.Model(ids, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling1D()(
    keras.layers.Embedding(50, 16)(ids))))
tfl = tflite_export.convert(model, mode="int8",
                            representative_data=np.random.randint(0, 50, (30, 8)))
micro_ready = tflite_export.drop_index_guards(tfl)
"SELECT" in tfl.ops, "SELECT" in micro_ready.ops      # (True, False)
```
"""

from __future__ import annotations

import numpy as np

from tflite_export import _schema
from tflite_export.model import NUMPY_TYPES, TFLiteModel

__all__ = ["drop_index_guards"]

_SELECTS = ("SELECT", "SELECT_V2")


def _constant(model, subgraph, tensor: int):
    buffer = model.buffers[subgraph.tensors[tensor].buffer]
    if buffer.data is None or not len(buffer.data):
        return None
    dtype = NUMPY_TYPES.get(_schema.TYPE_NAMES[subgraph.tensors[tensor].type], np.int32)
    return np.frombuffer(bytes(bytearray(buffer.data)), dtype=dtype)


def _guarded_ids(model, subgraph, producers: dict, tensor: int) -> tuple[int, list[int]] | None:
    """(ids tensor, guard op indices) when `tensor` is SELECT(LESS(ids, 0),
    ADD(ids, n), ids), else None."""
    select = producers.get(tensor)
    if select is None or _schema.op_name(model, subgraph.operators[select].opcodeIndex) \
            not in _SELECTS:
        return None
    cond, wrapped, ids = subgraph.operators[select].inputs
    less, add = producers.get(cond), producers.get(wrapped)
    if less is None or add is None:
        return None
    less_op, add_op = subgraph.operators[less], subgraph.operators[add]
    if (_schema.op_name(model, less_op.opcodeIndex) != "LESS"
            or _schema.op_name(model, add_op.opcodeIndex) != "ADD"):
        return None
    zero = _constant(model, subgraph, less_op.inputs[1])
    if list(less_op.inputs[:1]) != [ids] or zero is None or np.any(zero != 0):
        return None
    if ids not in add_op.inputs or _constant(model, subgraph, add_op.inputs[1 - list(
            add_op.inputs).index(ids)]) is None:
        return None
    return ids, [select, less, add]


def drop_index_guards(tfl: TFLiteModel) -> TFLiteModel:
    """`tfl` with every GATHER's negative-index guard removed (ids must be >= 0).

    Raises:
        RuntimeError: the rewritten model's LiteRT outputs differ from the
            original's on valid ids (it is not returned then).
    """
    model = _schema.parse(tfl.content)
    changed = False
    for subgraph in model.subgraphs:
        producers = {out: i for i, op in enumerate(subgraph.operators) for out in op.outputs}
        drop: set[int] = set()
        for op in subgraph.operators:
            if _schema.op_name(model, op.opcodeIndex) != "GATHER":
                continue
            found = _guarded_ids(model, subgraph, producers, op.inputs[1])
            if found is None:
                continue
            ids, guard = found
            op.inputs = [op.inputs[0], ids, *op.inputs[2:]]
            drop.update(guard)
            changed = True
        # Keep a guard op whose output something else still reads.
        read = {t for i, op in enumerate(subgraph.operators) if i not in drop for t in op.inputs}
        read.update(subgraph.outputs)
        while True:
            still = {i for i in drop if any(t in read for t in subgraph.operators[i].outputs)}
            if not still:
                break
            drop -= still
            read.update(t for i in still for t in subgraph.operators[i].inputs)
        subgraph.operators = [op for i, op in enumerate(subgraph.operators) if i not in drop]
    if not changed:
        return tfl
    result = TFLiteModel(_schema.pack(model, tfl.content), mode=tfl.mode)
    _check_same(tfl, result)
    return result


def _check_same(before: TFLiteModel, after: TFLiteModel) -> None:
    from ai_edge_litert.interpreter import Interpreter

    rng = np.random.default_rng(0)
    runs = []
    for tfl in (before, after):
        interpreter = Interpreter(model_content=tfl.content)
        interpreter.allocate_tensors()
        runs.append(interpreter)
    for _ in range(3):
        feeds = []
        for detail in runs[0].get_input_details():
            dtype = detail["dtype"]
            if np.issubdtype(dtype, np.integer):
                # Valid ids for any table the model has: 0 is always in range.
                feeds.append(rng.integers(0, 2, detail["shape"]).astype(dtype))
            else:
                feeds.append(rng.standard_normal(detail["shape"]).astype(dtype))
        outs = []
        for interpreter in runs:
            for detail, value in zip(interpreter.get_input_details(), feeds):
                interpreter.set_tensor(detail["index"], value)
            interpreter.invoke()
            outs.append([interpreter.get_tensor(d["index"])
                         for d in interpreter.get_output_details()])
        if not all(np.array_equal(a, b) for a, b in zip(*outs)):
            raise RuntimeError("drop_index_guards: the rewritten model's outputs differ from "
                               "the original's on valid ids; the model was left as it was.")
