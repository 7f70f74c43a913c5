"""Mobile exports: the QAT INT8 model as a file MediaPipe Tasks loads.

A task's mobile file is its QAT INT8 model converted again with float
inputs and outputs (the converter puts builtin QUANTIZE / DEQUANTIZE ops at
the edges; everything between is the same int8 graph as `model_int8.tflite`),
plus MediaPipe metadata written with MediaPipe's own metadata writers
(`mediapipe.tasks.python.metadata.metadata_writers`): labels, input
normalisation, tokenizer, output semantics. MediaPipe's ImageSegmenter,
ObjectDetector and TextClassifier feed float tensors after applying the
metadata's normalisation, and read float scores, which is why the edges are
float and not int8.

MediaPipe is an optional extra (`pip install -e .[mobile]`); this module
imports it only inside functions and says how to install it when missing.

Known packaging gap: the MediaPipe wheels 0.10.35 to 1.2.3 ship the metadata
writers but not their compiled helper
`mediapipe.tasks.cc.metadata.python._pywrap_metadata_version` (the wheels moved
to a C API and that pybind module was dropped). `_metadata_version_module`
stands in for it with a line-by-line port of
mediapipe/tasks/cc/metadata/metadata_version.cc; it is only installed when
the real module cannot be imported.
"""

import importlib
import os
import sys
import tempfile
import types

import numpy as np

from common import export, files
from common.errors import UserError

INSTALL_HINT = ("MediaPipe is not installed; mobile exports need it: "
                "pip install -e '.[mobile]' (or pip install mediapipe)")
_VERSION_MODULE = "mediapipe.tasks.cc.metadata.python._pywrap_metadata_version"


def require_mediapipe():
    """The `mediapipe` module, or a UserError saying how to install it."""
    try:
        return importlib.import_module("mediapipe")
    except ImportError as error:
        raise UserError(INSTALL_HINT) from error


def metadata_writers():
    """`mediapipe.tasks.python.metadata.metadata_writers` (the package), with
    the missing version helper filled in where the wheel lacks it."""
    require_mediapipe()
    try:
        importlib.import_module(_VERSION_MODULE)
    except ImportError:
        _install_version_module()
    return importlib.import_module("mediapipe.tasks.python.metadata.metadata_writers")


def writer_module(name):
    """One metadata writer module: "image_segmenter", "text_classifier",
    "object_detector", "metadata_writer"."""
    metadata_writers()
    return importlib.import_module(f"mediapipe.tasks.python.metadata.metadata_writers.{name}")


# --- The minimum metadata parser version (port of metadata_version.cc) -------

# Members added to the metadata schema after 1.0.0, and the version that added them.
_MEMBER_VERSIONS = {
    "vocabulary_file": (1, 0, 1),
    "input_process_units": (1, 1, 0),
    "output_process_units": (1, 1, 0),
    "bert_tokenizer": (1, 1, 0),
    "sentence_piece_tokenizer": (1, 1, 0),
    "input_tensor_groups": (1, 2, 0),
    "output_tensor_groups": (1, 2, 0),
    "regex_tokenizer": (1, 2, 1),
    "audio_properties": (1, 3, 0),
    "scann_index_file": (1, 4, 0),
    "associated_file_version": (1, 4, 1),
    "custom_metadata": (1, 5, 0),
}


def minimum_parser_version(metadata_buffer):
    """The oldest metadata parser that reads `metadata_buffer`: the largest
    version of any schema member the buffer uses ("1.0.0" when none)."""
    from mediapipe.tasks.metadata import metadata_schema_py_generated as schema

    used = set()

    def files_(items):
        for item in items or []:
            if item.type == schema.AssociatedFileType.VOCABULARY:
                used.add("vocabulary_file")
            if item.type == schema.AssociatedFileType.SCANN_INDEX_FILE:
                used.add("scann_index_file")
            if item.version is not None:
                used.add("associated_file_version")

    def process_units(items):
        kinds = {schema.ProcessUnitOptions.BertTokenizerOptions: "bert_tokenizer",
                 schema.ProcessUnitOptions.SentencePieceTokenizerOptions:
                     "sentence_piece_tokenizer",
                 schema.ProcessUnitOptions.RegexTokenizerOptions: "regex_tokenizer"}
        for item in items or []:
            if item.optionsType in kinds:
                used.add(kinds[item.optionsType])

    def tensors(items):
        for item in items or []:
            files_(item.associatedFiles)
            process_units(item.processUnits)
            if item.content is not None and item.content.contentPropertiesType == \
                    schema.ContentProperties.AudioProperties:
                used.add("audio_properties")

    metadata = schema.ModelMetadataT.InitFromObj(
        schema.ModelMetadata.GetRootAsModelMetadata(bytes(metadata_buffer), 0))
    for subgraph in metadata.subgraphMetadata or []:
        tensors(subgraph.inputTensorMetadata)
        tensors(subgraph.outputTensorMetadata)
        files_(subgraph.associatedFiles)
        for field in ("inputProcessUnits", "outputProcessUnits"):
            units = getattr(subgraph, field)
            if units is not None:
                used.add("input_process_units" if field.startswith("input")
                         else "output_process_units")
                process_units(units)
        if subgraph.inputTensorGroups is not None:
            used.add("input_tensor_groups")
        if subgraph.outputTensorGroups is not None:
            used.add("output_tensor_groups")
        if subgraph.customMetadata is not None:
            used.add("custom_metadata")
    files_(metadata.associatedFiles)
    version = max([(1, 0, 0)] + [_MEMBER_VERSIONS[name] for name in used])
    return ".".join(str(part) for part in version)


def _install_version_module():
    """Register the port as `_VERSION_MODULE`, with empty parent packages
    (`mediapipe.tasks.cc...`) where the wheel has none."""
    parent = None
    parts = _VERSION_MODULE.split(".")
    for depth in range(1, len(parts) + 1):
        name = ".".join(parts[:depth])
        module = sys.modules.get(name)
        if module is None:
            try:
                module = importlib.import_module(name)
            except ImportError:
                module = types.ModuleType(name)
                if depth < len(parts):
                    module.__path__ = []  # a package, so children can be imported
                sys.modules[name] = module
        if parent is not None and not hasattr(parent, parts[depth - 1]):
            setattr(parent, parts[depth - 1], module)
        parent = module
    sys.modules[_VERSION_MODULE].GetMinimumMetadataParserVersion = minimum_parser_version


# --- Writing a mobile file ----------------------------------------------------

def convert_float_edges(model, representative_dataset):
    """The INT8 flatbuffer of a fake-quant `model` with float32 inputs and
    outputs (QUANTIZE / DEQUANTIZE at the edges, builtin ops only)."""
    with tempfile.TemporaryDirectory(prefix="mobile-") as folder:
        path = os.path.join(folder, "model.tflite")
        export.convert_to_tflite(model, path, representative_dataset, int8_io=False)
        with open(path, "rb") as handle:
            return handle.read()


def labels_for_outputs(class_names, num_outputs, what):
    """MediaPipe Labels for an output with `num_outputs` classes, or a
    UserError: a label file that does not match the scores would make the
    Tasks API answer with the wrong names."""
    names = list(class_names or [])
    if not names:
        raise UserError(f"{what}: the run's info.json has no class names; the "
                        f"MediaPipe label file needs one name per output class "
                        f"({num_outputs})")
    if len(names) != num_outputs:
        raise UserError(f"{what}: the model outputs {num_outputs} classes but the "
                        f"label file would have {len(names)} names ({names[:5]}...)")
    bad = [name for name in names if not str(name).strip() or "\n" in str(name)]
    if bad:
        raise UserError(f"{what}: class names must be non-empty single lines for "
                        f"MediaPipe's label file; got {bad!r}")
    labels = writer_module("metadata_writer").Labels()
    return labels.add([str(name) for name in names])


def write_populated(writer, path):
    """Run a MediaPipe metadata writer and write the model atomically.
    Returns the metadata as JSON text (what MediaPipe will read)."""
    model_buffer, metadata_json = writer.populate()
    files.write_bytes_atomic(path, bytes(model_buffer))
    # The writer keeps a temporary folder for the label files and removes it
    # in __del__, which fails when that runs at interpreter exit: remove it now.
    # Callers pass the writer without naming it, and the name is dropped
    # here, so no kept frame holds it until exit.
    inner = getattr(writer, "writer", writer)
    temporary = getattr(inner, "_temp_folder", None)
    if temporary is not None:
        temporary.cleanup()
    del writer, inner
    return metadata_json


def mediapipe_image(pixels):
    """A MediaPipe SRGB image from one uint8 (H, W, 3) array."""
    mp = require_mediapipe()
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise ValueError(f"MediaPipe images are (height, width, 3) uint8; got {pixels.shape}")
    return mp.Image(image_format=mp.ImageFormat.SRGB, data=pixels)


def to_uint8_pixels(images):
    """Float images in [0, 1] -> uint8 pixels (what a camera gives MediaPipe)."""
    return np.clip(np.round(np.asarray(images, np.float32) * 255.0), 0, 255).astype(np.uint8)


def convert_with_trained_ranges(model, function, input_spec):
    """The flatbuffer of `function(inputs)` (TF ops around the fake-quant
    `model`), quantized only where the model's fake-quant ops give ranges.

    No representative dataset: every tensor a QAT model keeps carries a
    trained range, so its ops run int8 (QUANTIZE after the float input,
    DEQUANTIZE where float arithmetic follows), and the TF ops around it
    that have no range, such as box decoding before an NMS, stay float32.
    Builtin ops only; the signature is "serve" with `function`'s outputs.
    """
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="mobile-") as folder:
        saved_model_dir = os.path.join(folder, "saved_model")
        export.write_saved_model(saved_model_dir, model, {"serve": (function, [input_spec])})
        converter = tf.lite.TFLiteConverter.from_saved_model(
            saved_model_dir, signature_keys=["serve"])
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        return bytes(converter.convert())


def order_outputs(flatbuffer, names):
    """`flatbuffer` with its signature outputs `names` (all of them) as the
    subgraph's outputs in that order, held by tensors whose indices rise in
    that order.

    MediaPipe's metadata writer for detection models with NMS inside pairs
    location, category, score and number of detections with the output
    tensors sorted by tensor index (TFLite_Detection_PostProcess's port
    order); the converter numbers tensors as it likes, so the four tensors
    are swapped into place here (every op, the subgraph and the signature
    are renumbered with them).
    """
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    if len(model.subgraphs) != 1 or len(model.signatureDefs or []) != 1:
        raise ValueError("order_outputs: expected one subgraph with one signature")
    graph, signature = model.subgraphs[0], model.signatureDefs[0]
    by_name = {item.name.decode() if isinstance(item.name, bytes) else item.name:
               item.tensorIndex for item in signature.outputs}
    if sorted(by_name) != sorted(names):
        raise ValueError(f"order_outputs: the signature outputs {sorted(by_name)}, "
                         f"expected {sorted(names)}")
    wanted = [by_name[name] for name in names]
    slots = sorted(wanted)
    renumber = dict(zip(wanted, slots))  # old index -> new index
    if any(old != new for old, new in renumber.items()):
        tensors = list(graph.tensors)
        for old, new in renumber.items():
            tensors[new] = graph.tensors[old]
        graph.tensors = tensors

        def fix(indices):
            return [renumber.get(int(index), int(index)) for index in indices]

        for op in graph.operators:
            op.inputs = fix(op.inputs)
            op.outputs = fix(op.outputs)
            if op.intermediates is not None:
                op.intermediates = fix(op.intermediates)
        graph.inputs = fix(graph.inputs)
        for item in signature.outputs:
            item.tensorIndex = renumber[item.tensorIndex]
    graph.outputs = slots
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
