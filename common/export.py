"""Export: LiteRT float / INT8 `.tflite`, and SavedModel for TF Serving.

Conversion goes Keras -> `ExportArchive` SavedModel -> `TFLiteConverter`,
builtin ops only: `model.export(format="litert")` silently enables Flex ops
that the pip LiteRT runtime cannot run, and converting from concrete
functions leaves variables unfrozen.

Every file is written under a temporary name and renamed, so a kill never
leaves a broken artifact; SavedModel exports take the next free integer
version and never overwrite.
"""

import atexit
import collections
import contextlib
import hashlib
import io
import os
import re
import shutil
import tempfile
import weakref

import keras
import numpy as np
import tensorflow as tf

from common import files
from common.errors import UserError

# Ops whose arithmetic should run on int8 in an INT8 model.
COMPUTE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL",
               "TRANSPOSE_CONV", "CONV_3D")


def as_float32(model):
    """`model` with every layer computing in float32 (a copy when it was
    trained with mixed precision): LiteRT has no bfloat16 kernels and most
    serving CPUs no fast float16."""
    mixed = [layer for layer in model.layers
             if getattr(layer, "compute_dtype", "float32") not in ("float32", None)]
    if not mixed:
        return model

    def clone_function(layer):
        config = layer.get_config()
        if "dtype" in config:
            config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone_function)
    copy.set_weights(model.get_weights())
    return copy


def input_signature(model, batch_size=None):
    """TensorSpecs matching `model`'s inputs (a dict for dict-input models)."""
    def spec(tensor):
        shape = [batch_size] + list(tensor.shape[1:])
        name = tensor.name.split(":")[0]
        return tf.TensorSpec(shape, tensor.dtype, name=name)

    structure = model._inputs_struct
    if isinstance(structure, dict):
        return {key: spec(value) for key, value in structure.items()}
    if isinstance(structure, (list, tuple)) and len(structure) > 1:
        return [spec(t) for t in structure]
    tensor = structure[0] if isinstance(structure, (list, tuple)) else structure
    return spec(tensor)


def _raw_function(model):
    def raw(inputs):
        return model(inputs, training=False)
    return raw


def _may_hold_resources(model):
    """Whether `model` or one of its layers keeps, directly or in a list or
    dict, a TensorFlow module or resource that is not a Keras layer (such as
    a WordPiece tokenizer and its lookup table); True for non-Keras objects."""
    from tensorflow.saved_model.experimental import TrackableResource

    if not isinstance(model, keras.layers.Layer):
        return True

    def foreign(value):
        return (isinstance(value, (tf.Module, TrackableResource))
                and not isinstance(value, keras.layers.Layer))

    for layer in [model] + list(_all_layers(model)):
        for value in vars(layer).values():
            items = (list(value.values()) if isinstance(value, dict)
                     else list(value) if isinstance(value, (list, tuple)) else [value])
            if any(foreign(item) for item in items):
                return True
    return False


def write_saved_model(path, model, endpoints):
    """Write `model` (or a list of models) with `endpoints` {name: (fn, [specs])}
    to `path`."""
    archive = keras.export.ExportArchive()
    for tracked in (model if isinstance(model, list) else [model]):
        archive.track(tracked)
    # On writing, Keras walks the whole object graph of every tracked model
    # for lookup tables to save (the tokenizers' tables): seconds for a QAT
    # model of hundreds of layers. Only models that hold a TensorFlow module
    # or resource outside Keras's own layers are walked; the others have no
    # table to find (their variables come from the endpoints either way).
    if isinstance(getattr(archive, "_tracked", None), list):
        archive._tracked = [tracked for tracked in archive._tracked
                            if _may_hold_resources(tracked)]
    for name, (function, signature) in endpoints.items():
        archive.add_endpoint(name, function, input_signature=signature)
    # No gradient functions: by default SavedModel traces the gradient of
    # every op type in the graph (for fine-tuning the loaded model), which
    # neither TF Serving nor the LiteRT converter reads; it cost 3-4 s of a
    # 12 s write of the detection smoke model (same .tflite bytes without it).
    options = tf.saved_model.SaveOptions(experimental_custom_gradients=False)
    with contextlib.redirect_stdout(io.StringIO()):
        _write_out_tracing_once(archive, path, options)


def _write_out_tracing_once(archive, path, options):
    """`archive.write_out(path, options)`, tracing each endpoint once instead
    of twice.

    A tf.function's trace cache is keyed on whether it runs inside a
    SavedModel save context, and `ExportArchive.write_out` traces every
    endpoint first outside one (to list the variables it uses) and then again
    inside `tf.saved_model.save`. Listing the variables inside an equal save
    context makes the save reuse that trace: the same SavedModel, in half the
    tracing time (a QAT graph's trace is tens of seconds)."""
    from tensorflow.python.saved_model import save_context

    with save_context.save_context(options):
        archive._filter_and_track_resources()
    signatures = {name: archive._get_concrete_fn(name) for name in archive._endpoint_names}
    # TF Serving's default signature: the first endpoint, as write_out does.
    signatures.setdefault("serving_default", signatures[archive._endpoint_names[0]])
    tf.saved_model.save(archive._tf_trackable, path, options=options, signatures=signatures)


def convert_to_tflite(model, path, representative_dataset=None,
                      int8_io=True, batch_size=1, float_layers=(),
                      int16_activations=False, weight_only=False):
    """Convert the fixed-shape `model` to a `.tflite` file at `path`.

    `model` is one Keras model (signature "serve") or a dict {signature: model}
    for a program driven by a host loop (an encoder and a decoder step): one
    file, one signature per part. With `representative_dataset` (a callable
    yielding lists of batch-1 numpy inputs; for several signatures,
    `(signature, {input name: array})` pairs) the model is quantized to INT8;
    ops with no int8 kernel fall back to float and are listed by
    `tflite_op_report`. Float inputs and outputs become int8 when `int8_io` is
    set (the runner scales them). Returns the op report.

    Where INT8 loses too much, two ways to spend bits on it (post-training
    quantization only; a QAT model's ranges are 8-bit):
    - `float_layers`: names of Keras layers whose ops stay float (LiteRT's
      quantization debugger leaves their output tensors out of
      quantization; the file keeps float inputs and outputs). Sublayers
      count too: "self_attention_layer_norm" names that sublayer of every
      transformer block. The op report
      says which ops each name matched under "float_layers".
    - `int16_activations`: the whole file in LiteRT's 16x8 mode, int16
      activations and int8 weights (inputs and outputs int16 with `int8_io`).
      (The calibrator refuses int32 inputs in this mode, e.g. token ids.)
    - `weight_only`: dynamic-range quantization, int8 weights and float
      activations (no calibration; the representative dataset is unused).
    """
    float_layers = list(float_layers or ())
    if float_layers and isinstance(model, dict):
        raise UserError("export.float_layers: a multi-signature model cannot keep "
                        "chosen layers float (LiteRT's quantization debugger takes "
                        "one signature); use export.int16_activations")
    if weight_only and (float_layers or int16_activations):
        raise UserError("export.weight_only keeps every activation float: it cannot be "
                        "combined with export.float_layers or export.int16_activations")
    if weight_only:
        representative_dataset = None
    elif (float_layers or int16_activations) and representative_dataset is None:
        raise ValueError("float_layers / int16_activations need a representative "
                         "dataset (they are INT8 conversion options)")
    if float_layers and int16_activations:
        raise UserError("choose export.float_layers or export.int16_activations, not "
                        "both: LiteRT's quantization debugger only leaves layers out "
                        "of 8-bit files")
    parts = {key: as_float32(part) for key, part in
             (model.items() if isinstance(model, dict) else [("serve", model)])}
    known = sorted({layer.name for part in parts.values() for layer in _all_layers(part)})
    for name in float_layers:
        if name not in known:
            raise UserError(f"export.float_layers: no layer {name!r} in the exported "
                            f"model; its layers are: {', '.join(known)}")
    matched = {}
    with tempfile.TemporaryDirectory(prefix="export-") as folder:
        saved_model_dir = conversion_saved_model(parts, batch_size)
        converter = tf.lite.TFLiteConverter.from_saved_model(
            saved_model_dir, signature_keys=list(parts))
        if representative_dataset is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = representative_dataset
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
                if int16_activations else tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                tf.lite.OpsSet.TFLITE_BUILTINS,
            ]
            io_type = tf.int16 if int16_activations else tf.int8
            if int8_io and all(_all_float_inputs(part) for part in parts.values()):
                converter.inference_input_type = io_type
            if int8_io:
                converter.inference_output_type = io_type
        else:
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
            if weight_only:
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if float_layers:
            flatbuffer, matched = _convert_with_float_layers(
                converter, representative_dataset, parts, float_layers, folder)
        else:
            flatbuffer = converter.convert()
    files.write_bytes_atomic(path, flatbuffer)
    report = tflite_op_report(path)
    if float_layers:
        report["float_layers"] = matched
    if int16_activations:
        report["int16_activations"] = True
    if weight_only:
        report["weight_only"] = True
    return report


# SavedModels written for conversion, newest last: [(parts, batch size,
# weights digest, folder)]. A run converts its float model to LiteRT float,
# to post-training INT8 and, for the per-layer INT8 error, once more; tracing
# and writing the same SavedModel each time cost 5-10 s on two cores.
_CONVERSION_SAVED_MODELS = []
_CONVERSION_CACHE_SIZE = 2


def _weights_digest(parts):
    """A digest of every weight of `parts`: a model trained further between
    two conversions is written again."""
    digest = hashlib.sha1()
    for part in parts.values():
        for variable in part.weights:
            digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(variable)).tobytes())
    return digest.hexdigest()


def _remove_conversion_saved_models():
    while _CONVERSION_SAVED_MODELS:
        shutil.rmtree(os.path.dirname(_CONVERSION_SAVED_MODELS.pop()[3]), ignore_errors=True)


atexit.register(_remove_conversion_saved_models)


def conversion_saved_model(parts, batch_size=1):
    """The folder of a SavedModel of `parts` ({signature: Keras model}), each
    signature the part's raw call on inputs of `batch_size`, as the LiteRT
    converter reads it. The same parts with unchanged weights reuse the
    folder written before (removed when the process exits)."""
    digest = _weights_digest(parts)
    for entry in _CONVERSION_SAVED_MODELS:
        cached_parts, cached_batch, cached_digest, folder = entry
        if (cached_batch == batch_size and cached_digest == digest
                and list(cached_parts) == list(parts)
                and all(cached_parts[key]() is parts[key] for key in parts)
                and os.path.isdir(folder)):
            return folder
    folder = os.path.join(tempfile.mkdtemp(prefix="export-"), "saved_model")
    write_saved_model(
        folder, list(parts.values()),
        {key: (_raw_function(part), [input_signature(part, batch_size=batch_size)])
         for key, part in parts.items()})
    _CONVERSION_SAVED_MODELS.append(
        ({key: weakref.ref(part) for key, part in parts.items()}, batch_size, digest,
         folder))
    while len(_CONVERSION_SAVED_MODELS) > _CONVERSION_CACHE_SIZE:
        shutil.rmtree(os.path.dirname(_CONVERSION_SAVED_MODELS.pop(0)[3]),
                      ignore_errors=True)
    return folder


def _convert_with_float_layers(converter, representative_dataset, parts, layer_names,
                               folder):
    """INT8 conversion with the ops of `layer_names` left float.

    Returns (flatbuffer, {layer name: [output tensor names kept float]}).
    The calibrated model names each op's output tensor after the Keras
    layers that made it ("functional_1/middle_1/convolution"); a model's
    last op is named after the signature instead, so a single-output
    model's output layer matches the graph output. A name that matches
    no op (folded into another) is an error.
    """
    from common import tflite_graph

    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=representative_dataset)
    calibrated = os.path.join(folder, "calibrated.tflite")
    with open(calibrated, "wb") as handle:
        handle.write(debugger.calibrated_model)
    known = {layer.name: part for part in parts.values() for layer in _all_layers(part)}
    matched = {}
    for name in layer_names:
        part = known[name]
        is_output = len(part.outputs) == 1 and \
            part.outputs[0]._keras_history.operation.name == name
        pattern = re.compile(rf"(^|/){re.escape(name)}(_\d+)?(/|$)")
        nodes = []
        for graph in tflite_graph.subgraphs(calibrated):
            graph_outputs = {index for op in graph["ops"] for index in op["outputs"]} - {
                index for op in graph["ops"] for index in op["inputs"]}
            for op in graph["ops"]:
                for index in op["outputs"]:
                    tensor_name = graph["tensors"][index]["name"]
                    if any(pattern.search(piece) for piece in tensor_name.split(";")) or (
                            is_output and index in graph_outputs
                            and op["op_name"] not in ("QUANTIZE", "DEQUANTIZE")):
                        nodes.append(tensor_name)
        if not nodes:
            raise UserError(f"export.float_layers: layer {name!r} made no op of its own "
                             "in the LiteRT graph (folded into another op?)")
        matched[name] = sorted(set(nodes))
    debugger.options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_nodes=[node for nodes in matched.values() for node in nodes])
    return debugger.get_nondebug_quantized_model(), matched


def _all_layers(model):
    """Every layer of `model`, nested ones (a transformer's sublayers) included."""
    return model._flatten_layers(include_self=False, recursive=True)


def _all_float_inputs(model):
    return all("float" in str(t.dtype) for t in keras.tree.flatten(model.inputs))


def representative_from_dataset(dataset, num_samples):
    """Calibration generator: the first `num_samples` examples, batch 1.

    `dataset` yields batched `(inputs, targets)`; taking the first examples of
    an unshuffled pass keeps calibration deterministic.
    """
    def generator():
        produced = 0
        for inputs, _ in dataset:
            flat = keras.tree.flatten(inputs)
            batch = int(flat[0].shape[0])
            for index in range(batch):
                if produced >= num_samples:
                    return
                example = keras.tree.map_structure(
                    lambda t: np.asarray(t[index:index + 1]), inputs
                )
                yield example if isinstance(example, dict) else keras.tree.flatten(example)
                produced += 1
    return generator


def tflite_op_report(path):
    """Which ops a `.tflite` holds and on which types they compute.

    Returns {"ops": {"CONV_2D/int8": 12, ...}, "float_compute_ops": [...],
    "float_ops": [...]}; a compute op (conv, fully-connected, matmul) is
    "float" when its first input is float32.
    """
    from common import tflite_graph

    counts = collections.Counter()
    float_compute, float_ops = [], set()
    for graph in tflite_graph.subgraphs(path):
        tensors = graph["tensors"]
        for op in graph["ops"]:
            name = op["op_name"]
            inputs = [i for i in op["inputs"] if i >= 0 and i in tensors]
            # TRANSPOSE_CONV's first input is the output shape; its data is third.
            data = inputs[2] if name == "TRANSPOSE_CONV" and len(inputs) > 2 else \
                inputs[0] if inputs else None
            dtype = np.dtype(tensors[data]["dtype"]).name if data is not None else "none"
            counts[f"{name}/{dtype}"] += 1
            if dtype.startswith("float"):
                float_ops.add(name)
                if name in COMPUTE_OPS:
                    float_compute.append(tflite_graph.op_label(graph, op))
    return {
        "ops": dict(sorted(counts.items())),
        "float_compute_ops": float_compute,
        "float_ops": sorted(float_ops - {"QUANTIZE", "DEQUANTIZE"}),
    }


# --- SavedModel for TF Serving ----------------------------------------------

def next_version(task_dir):
    """The next integer version folder under `task_dir` (1 when empty)."""
    versions = [int(name) for name in os.listdir(task_dir) if re.fullmatch(r"\d+", name)] \
        if os.path.isdir(task_dir) else []
    return max(versions, default=0) + 1


def export_saved_model(model, endpoints, export_dir, task_name, extra_files=None):
    """Write a new version of `model` under `<export_dir>/<task_name>/<N>/`.

    `endpoints` come from the task's `build_serving_model`; a `raw` endpoint
    (the model's own inputs and raw outputs) is added so `evaluate` can score
    the SavedModel like any other artifact. `extra_files` {name: text} go to
    `assets.extra/` (TF Serving ignores that folder). Returns the version folder.
    """
    task_dir = os.path.join(export_dir, task_name)
    os.makedirs(task_dir, exist_ok=True)
    files.remove_stale_temporaries(task_dir, recursive=False)
    all_endpoints = dict(endpoints)
    all_endpoints.setdefault(
        "raw", (_raw_function(model), [input_signature(model)])
    )
    if "serving_default" not in all_endpoints:
        raise ValueError("build_serving_model must return a 'serving_default' endpoint")
    # A non-numeric name: TF Serving never loads a half-written version.
    temporary = tempfile.mkdtemp(prefix=f".export.tmp-{os.getpid()}.", dir=task_dir)
    try:
        write_saved_model(os.path.join(temporary, "model"), model, all_endpoints)
        if extra_files:
            extra_dir = os.path.join(temporary, "model", "assets.extra")
            os.makedirs(extra_dir, exist_ok=True)
            for name, content in extra_files.items():
                with open(os.path.join(extra_dir, name),
                          "wb" if isinstance(content, bytes) else "w") as handle:
                    handle.write(content)
        while True:
            target = os.path.join(task_dir, str(next_version(task_dir)))
            try:
                # rename fails if a concurrent export took the number: retry.
                os.rename(os.path.join(temporary, "model"), target)
                return target
            except OSError:
                if not os.path.exists(target):
                    raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
