"""The op graph of a `.tflite` file, every subgraph included.

The interpreter's `_get_ops_details()` lists only the first subgraph; a file
with several signatures (an encoder and a decoder step) or WHILE loops keeps
the rest of its ops in other subgraphs. This reads the flatbuffer itself with
the schema TensorFlow ships.
"""

import numpy as np
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.python import schema_util

_OP_NAMES = {value: name for name, value in vars(schema.BuiltinOperator).items()
             if not name.startswith("_")}
_TYPE_NAMES = {value: name.lower() for name, value in vars(schema.TensorType).items()
               if not name.startswith("_")}


def _dtype(tensor_type):
    name = _TYPE_NAMES.get(tensor_type, "float32")
    try:
        return np.dtype(name)
    except TypeError:  # string, resource, variant: no numpy twin
        return np.dtype(object)


def subgraphs(path):
    """[{"name", "tensors": {index: {"name", "dtype", "shape"}}, "ops": [{"op_name",
    "index", "inputs", "outputs"}]}] for every subgraph of the file at `path`."""
    with open(path, "rb") as handle:
        model = schema.ModelT.InitFromPackedBuf(handle.read(), 0)
    op_names = []
    for code in model.operatorCodes:
        builtin = schema_util.get_builtin_code_from_operator_code(code)
        op_names.append(_OP_NAMES.get(builtin, "CUSTOM") if builtin != schema.BuiltinOperator.CUSTOM
                        else (code.customCode or b"CUSTOM").decode())
    graphs = []
    for number, graph in enumerate(model.subgraphs or []):
        tensors = {}
        for index, tensor in enumerate(graph.tensors or []):
            shape = tensor.shape  # resolved dims (1 where the signature says -1)
            tensors[index] = {
                "name": (tensor.name or b"").decode(errors="replace"),
                "dtype": _dtype(tensor.type),
                "shape": tuple(int(d) for d in (shape if shape is not None else ())),
            }
        ops = [{"op_name": op_names[op.opcodeIndex], "index": index,
                "inputs": [int(i) for i in (op.inputs if op.inputs is not None else [])],
                "outputs": [int(i) for i in (op.outputs if op.outputs is not None else [])]}
               for index, op in enumerate(graph.operators or [])]
        name = (graph.name or b"").decode(errors="replace") or f"subgraph{number}"
        graphs.append({"name": name, "number": number, "tensors": tensors, "ops": ops})
    return graphs


def op_label(graph, op):
    """`NAME#index` in the first subgraph, `NAME#s<k>.index` in the others."""
    prefix = "" if graph["number"] == 0 else f"s{graph['number']}."
    return f"{op['op_name']}#{prefix}{op['index']}"
