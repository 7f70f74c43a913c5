"""How much of a model INT8 really covers, measured, never assumed.

- `fake_quant_coverage(float_model, qat_model)`: the share of
  multiply-accumulates (MACs) that run under fake-quant during QAT, and the
  compute layers QAT could not reach.
- `tflite_int8_summary(path)`: the share of MACs in a `.tflite` that run on
  int8 (int16 activations counted apart), and the number of requantize ops
  (int8 -> int8 QUANTIZE, a rescale the converter had to insert).
- `worst_layers(...)`: the layers whose INT8 output strays furthest from
  float (LiteRT's QuantizationDebugger).
- `describe_int8(...)`: all of it for the run report, plus readable notes.

MACs are estimated from kernel shapes and the shapes each layer was built
with: output positions x kernel size for convolutions and dense layers, the
dot products of attention, timesteps x kernels for recurrent layers.
"""

import csv
import math
import os
import tempfile

import keras
import numpy as np

# Layers with 2-D weights that do no matmul (lookups, position tables).
NON_COMPUTE_CLASS_NAMES = ("Embedding", "ReversibleEmbedding", "PositionEmbedding",
                           "TokenAndPositionEmbedding", "LayerNormalization",
                           "RMSNormalization", "BatchNormalization", "ActivationFakeQuant",
                           "SharedActivationFakeQuant")
# LiteRT ops that do multiply-accumulate work; the index of their data input.
TFLITE_COMPUTE_OPS = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 0, "FULLY_CONNECTED": 0,
                      "BATCH_MATMUL": 0, "TRANSPOSE_CONV": 2, "CONV_3D": 0,
                      "CONV_3D_TRANSPOSE": 2}


def _product(values):
    return int(math.prod(int(v) for v in values if v is not None))


def _first_shape(layer, context_positions=1):
    """The first shape `layer` was built with; unknown positions (sublayers
    are often built with `None` sequence lengths) take `context_positions`,
    the positions of the nearest enclosing layer that knew them."""
    shapes = getattr(layer, "_build_shapes_dict", None) or {}
    for shape in shapes.values():
        if isinstance(shape, (tuple, list)) and all(
                isinstance(d, (int, type(None))) for d in shape):
            return _fill_positions(tuple(shape), context_positions)
    return None


def _fill_positions(shape, context_positions):
    if shape is None or len(shape) < 3:
        return shape
    unknown = [i for i in range(1, len(shape) - 1) if shape[i] is None]
    filled = list(shape)
    for number, index in enumerate(unknown):
        filled[index] = context_positions if number == 0 else 1
    return tuple(filled)


def _positions(shape):
    """Output positions of a channels-last shape (batch and channels dropped)."""
    return _product(shape[1:-1]) if shape else 1


def _einsum_macs(layer, input_shape, context_positions):
    """Product of the output sizes and the contracted kernel sizes."""
    inputs_spec, rest = layer.equation.split(",")
    kernel_spec, output_spec = rest.split("->")
    kernel_shape = tuple(layer._kernel.shape)
    contracted = _product(
        size for letter, size in zip(kernel_spec, kernel_shape)
        if letter in inputs_spec and letter not in output_spec)
    # The output keeps the input's positions (EinsumDense often leaves the
    # sequence length None in its output shape).
    output_shape = _fill_positions(tuple(layer.compute_output_shape(input_shape)),
                                   context_positions)
    return _product(output_shape[1:]) * contracted


def _layer_macs(layer, timesteps=1, context_positions=1):
    """[(part, MACs)] for one layer; [] for layers with no matmul."""
    from common import qat

    input_shape = _first_shape(layer, context_positions)
    if isinstance(layer, keras.layers.MultiHeadAttention):
        shapes = layer._build_shapes_dict or {}
        query = _fill_positions(shapes.get("query_shape"), context_positions)
        value = _fill_positions(shapes.get("value_shape"), context_positions) or query
        if query is None:
            return [("attention", 0)]
        targets, sources = _positions(query), _positions(value)
        return [("attention", targets * sources * layer.num_heads
                 * (layer.key_dim + (layer.value_dim or layer.key_dim)))]
    attributes = qat.kernel_attributes(type(layer))
    if attributes is None:
        return []
    if isinstance(layer, keras.layers.EinsumDense):
        return [("kernel", _einsum_macs(layer, input_shape, context_positions))] \
            if input_shape else []
    if isinstance(layer, (keras.layers.LSTMCell, keras.layers.GRUCell,
                          keras.layers.SimpleRNNCell)):
        per_step = sum(_product(layer.__dict__[name].shape) for name in attributes)
        return [("kernel", timesteps * per_step)]
    if isinstance(layer, keras.layers.Dense):
        return [("kernel", _positions(input_shape) * _product(layer._kernel.shape))]
    if isinstance(layer, (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose,
                          keras.layers.Conv3DTranspose)):
        return [("kernel", _positions(input_shape) * _product(layer.kernel.shape))]
    output_positions = _positions(layer.compute_output_shape(input_shape)) \
        if input_shape else 1
    if isinstance(layer, (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)):
        depthwise = _product(layer.__dict__["depthwise_kernel"].shape)
        pointwise = _product(layer.__dict__["pointwise_kernel"].shape)
        return [("kernel", output_positions * (depthwise + pointwise))]
    kernel = layer.__dict__.get("kernel")
    kernel = kernel if kernel is not None else layer._kernel
    return [("kernel", output_positions * _product(kernel.shape))]


def _children(layer):
    from keras.src.models.functional import Functional

    if isinstance(layer, Functional):
        return list(layer.layers)
    return layer._flatten_layers(include_self=False, recursive=False)


def _compute_inventory(model):
    """{path: (layer, part, MACs)} for every matmul-doing layer of `model`.

    Paths are layer names from the top, with a wrapper and the layer it
    wraps (same name) counted once, so a float model and its QAT clone give
    the same paths. Layers of unknown type that own >= 2-D weights are
    listed with part "unknown".
    """
    inventory = {}
    visited = set()

    def visit(layer, path, timesteps, context_positions):
        if id(layer) in visited:
            return
        visited.add(id(layer))
        shape = _first_shape(layer, context_positions)
        known = _first_shape(layer, None)
        if isinstance(layer, keras.layers.RNN):
            timesteps = shape[1] if shape and shape[1] else timesteps
        elif known is not None and len(known) >= 3 and None not in known[1:]:
            context_positions = _positions(known)
        parts = _layer_macs(layer, timesteps, context_positions)
        for part, macs in parts:
            inventory[f"{path}:{part}"] = (layer, part, macs)
        # A layer may declare itself a lookup (`quantization_lookup = True`).
        if (not parts and type(layer).__name__ not in NON_COMPUTE_CLASS_NAMES
                and not isinstance(layer, keras.layers.Embedding)
                and not getattr(layer, "quantization_lookup", False)):
            own = [v for v in layer._trainable_variables + layer._non_trainable_variables
                   if len(v.shape) >= 2]
            if own:
                positions = _positions(shape)
                inventory[f"{path}:unknown"] = (
                    layer, "unknown", positions * sum(_product(v.shape) for v in own))
        for child in _children(layer):
            name = child.name
            child_path = path if path.rsplit("/", 1)[-1] == name else f"{path}/{name}"
            visit(child, child_path.lstrip("/"), timesteps, context_positions)

    for layer in _children(model):
        visit(layer, layer.name, 1, 1)
    return inventory


def _runs_fake_quant(layer, part):
    from common import qat

    if part == "attention":
        return isinstance(layer, qat._QuantizedAttention)
    if part == "kernel":
        return qat.is_fake_quantized(layer)
    return False


def fake_quant_coverage(float_model, qat_model):
    """The share of `float_model`'s MACs that `qat_model` fake-quantizes.

    Returns {"mac_share": 0..1, "total_macs": int, "covered_macs": int,
    "layers": {path: {"macs", "fake_quant"}}, "uncovered_layers": [path...]}.
    """
    reference = _compute_inventory(float_model)
    quantized = _compute_inventory(qat_model)
    layers, uncovered = {}, []
    total = covered = 0
    for path, (_, part, macs) in reference.items():
        match = quantized.get(path)
        is_covered = match is not None and _runs_fake_quant(match[0], part)
        layers[path] = {"macs": macs, "fake_quant": is_covered}
        total += macs
        if is_covered:
            covered += macs
        else:
            uncovered.append(path)
    return {
        "mac_share": covered / total if total else 1.0,
        "total_macs": total,
        "covered_macs": covered,
        "layers": layers,
        "uncovered_layers": uncovered,
    }


# --- the .tflite file ---------------------------------------------------------

def _tflite_op_macs(name, inputs, outputs, tensors):
    """MACs of one LiteRT compute op from its tensor shapes (None if unknown)."""
    def shape(index):
        return tuple(int(d) for d in tensors[index]["shape"]) if index in tensors else None

    output = shape(outputs[0]) if outputs else None
    if not output or any(d <= 0 for d in output):
        return None
    if name in ("CONV_2D", "CONV_3D"):
        weights = shape(inputs[1])
        # CONV_2D filters are [out, kh, kw, in], CONV_3D [kd, kh, kw, in, out].
        per_output = _product(weights[1:]) if name == "CONV_2D" else _product(weights[:-1])
        return _product(output) * per_output
    if name == "DEPTHWISE_CONV_2D":
        weights = shape(inputs[1])
        return _product(output) * weights[1] * weights[2]
    if name == "FULLY_CONNECTED":
        weights = shape(inputs[1])
        return _product(output) * weights[-1]
    if name == "BATCH_MATMUL":
        left = shape(inputs[0])
        # [.., M, K] x [.., K, N] -> [.., M, N] (or the left one transposed).
        depth = left[-1] if left[-2] == output[-2] else left[-2]
        return _product(output) * depth
    if name in ("TRANSPOSE_CONV", "CONV_3D_TRANSPOSE"):
        weights, data = shape(inputs[1]), shape(inputs[2])
        return _product(data[:-1]) * _product(weights)
    return None


def tflite_int8_summary(path):
    """Which share of a `.tflite`'s compute runs on int8.

    Returns {"mac_share_int8", "mac_share_int16", "mac_share_float",
    "total_macs", "compute_ops": {"int8": n, "int16": n, "float": n},
    "float_compute_ops": [...], "requantize_ops": n, "quantize_ops": n,
    "dequantize_ops": n, "shares_are_op_counts": bool}. When some compute op
    has an unknown shape the shares are op counts, not MACs.
    """
    from common import tflite_graph

    macs = {"int8": 0, "int16": 0, "float": 0}
    counts = {"int8": 0, "int16": 0, "float": 0}
    float_ops, unknown_shape = [], False
    requantize = quantize = dequantize = 0
    for graph in tflite_graph.subgraphs(path):
        tensors = graph["tensors"]
        for op in graph["ops"]:
            name = op["op_name"]
            inputs = [i for i in op["inputs"] if i >= 0]
            outputs = [i for i in op["outputs"] if i >= 0]
            if name == "QUANTIZE":
                quantize += 1
                if inputs and np.dtype(tensors[inputs[0]]["dtype"]).kind in "iu":
                    requantize += 1
            elif name == "DEQUANTIZE":
                dequantize += 1
            if name not in TFLITE_COMPUTE_OPS:
                continue
            position = TFLITE_COMPUTE_OPS[name]
            data = inputs[position] if len(inputs) > position else inputs[0]
            dtype = np.dtype(tensors[data]["dtype"]).name
            kind = "int8" if dtype in ("int8", "uint8") else "int16" if dtype == "int16" \
                else "float"
            counts[kind] += 1
            if kind == "float":
                float_ops.append(tflite_graph.op_label(graph, op))
            op_macs = _tflite_op_macs(name, inputs, outputs, tensors)
            if op_macs is None:
                unknown_shape = True
            else:
                macs[kind] += op_macs
    weights = counts if unknown_shape else macs
    total = sum(weights.values())
    return {
        "mac_share_int8": weights["int8"] / total if total else 1.0,
        "mac_share_int16": weights["int16"] / total if total else 0.0,
        "mac_share_float": weights["float"] / total if total else 0.0,
        "total_macs": sum(macs.values()),
        "shares_are_op_counts": unknown_shape,
        "compute_ops": counts,
        "float_compute_ops": float_ops,
        "requantize_ops": requantize,
        "quantize_ops": quantize,
        "dequantize_ops": dequantize,
    }


# --- per-layer error ------------------------------------------------------------

def worst_layers(float_model, representative, count=5, int8_io=True):
    """The `count` tensors whose INT8 values stray furthest from float.

    Runs LiteRT's `QuantizationDebugger` (it converts `float_model` with
    post-training INT8 from `representative`, then compares each quantized
    tensor with its float value). Returns [{"tensor", "op", "rmse_over_scale"}],
    worst first: the root-mean-square error in units of the tensor's int8
    step (about 0.29 is ideal rounding noise).
    """
    import tensorflow as tf

    from common import export

    model = export.as_float32(float_model)
    with tempfile.TemporaryDirectory(prefix="debug-") as folder:
        # The SavedModel the post-training INT8 export just converted.
        saved_model_dir = export.conversion_saved_model({"serve": model}, batch_size=1)
        converter = tf.lite.TFLiteConverter.from_saved_model(
            saved_model_dir, signature_keys=["serve"])
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                               tf.lite.OpsSet.TFLITE_BUILTINS]
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=representative)
        debugger.run()
        path = os.path.join(folder, "stats.csv")
        with open(path, "w") as handle:
            debugger.layer_statistics_dump(handle)
        with open(path) as handle:
            rows = list(csv.DictReader(handle))
    results = []
    for row in rows:
        try:
            rmse, scale = float(row["mean_squared_error"]) ** 0.5, float(row["scale"])
        except (KeyError, ValueError):
            continue
        if scale > 0:
            results.append({"tensor": row.get("tensor_name", ""),
                            "op": row.get("op_name", ""),
                            "rmse_over_scale": rmse / scale})
    results.sort(key=lambda item: -item["rmse_over_scale"])
    return results[:count]


# --- one call for the pipeline ---------------------------------------------------

def describe_int8(tflite_path, float_model, qat_model=None, representative=None,
                  debug_layers=False, conversion=None):
    """Everything the run report says about one INT8 file.

    `qat_model` (the fake-quant model the file came from) adds the QAT
    coverage; `representative` with `debug_layers=True` adds the five layers
    with the largest INT8 error (slow: it converts the model again);
    `conversion` (the op report `export.convert_to_tflite` returned) adds the
    layers kept float and whether activations are 16-bit.
    Returns (summary dict for report.json, list of note strings).
    """
    summary = {"tflite": tflite_int8_summary(tflite_path)}
    notes = []
    name = os.path.basename(tflite_path)
    tflite = summary["tflite"]
    unit = "compute ops" if tflite["shares_are_op_counts"] else "multiply-accumulates"
    conversion = conversion or {}
    if conversion.get("float_layers") or conversion.get("int16_activations") \
            or conversion.get("weight_only"):
        summary["mixed_precision"] = {
            "float_layers": conversion.get("float_layers", {}),
            "int16_activations": bool(conversion.get("int16_activations")),
        }
    if conversion.get("weight_only"):
        summary["mixed_precision"]["weight_only"] = True
        notes.append(f"{name}: int8 weights, float activations (export.weight_only, "
                     "dynamic-range quantization): the compute stays float.")
    if conversion.get("float_layers"):
        layers = conversion["float_layers"]
        notes.append(
            f"{name}: {len(layers)} layer(s) kept float by export.float_layers "
            f"({', '.join(layers)}; {sum(len(nodes) for nodes in layers.values())} ops).")
    if conversion.get("int16_activations"):
        notes.append(
            f"{name}: 16-bit activations, 8-bit weights (export.int16_activations): "
            f"{100 * tflite['mac_share_int16']:.1f}% of {unit} run int16 x int8.")
    if tflite["float_compute_ops"] and not conversion.get("weight_only"):
        notes.append(
            f"{name}: {100 * tflite['mac_share_float']:.1f}% of {unit} stay float "
            f"({', '.join(tflite['float_compute_ops'][:8])}"
            f"{', ...' if len(tflite['float_compute_ops']) > 8 else ''}).")
    if tflite["requantize_ops"]:
        notes.append(f"{name}: {tflite['requantize_ops']} requantize op(s) "
                     "(int8 -> int8 rescales between differing ranges).")
    if qat_model is not None:
        coverage = fake_quant_coverage(float_model, qat_model)
        summary["qat_coverage"] = {
            "mac_share": coverage["mac_share"],
            "total_macs": coverage["total_macs"],
            "uncovered_layers": coverage["uncovered_layers"],
        }
        if coverage["uncovered_layers"]:
            notes.append(
                f"QAT did not reach {len(coverage['uncovered_layers'])} compute layer(s) "
                f"({100 * (1 - coverage['mac_share']):.1f}% of multiply-accumulates; "
                f"post-training ranges there): {', '.join(coverage['uncovered_layers'][:8])}.")
    if debug_layers and representative is not None:
        try:
            summary["worst_layers"] = worst_layers(float_model, representative)
        except Exception as error:  # the debugger is experimental: never fail a run
            notes.append(f"per-layer INT8 error not measured: {type(error).__name__}: {error}")
    return summary, notes
