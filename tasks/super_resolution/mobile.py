"""The super-resolution model as a plain LiteRT file with documented tensors.

    python -m tasks.super_resolution.export runs/super_resolution-default/model_qat.keras --mobile

No MediaPipe Tasks API takes an image and returns an image, so the mobile
file is for LiteRT's plain `Interpreter` (Android, iOS, web): the QAT INT8
generator on one fixed LR tile, with uint8 RGB pixels in and uint8 RGB
pixels out, so that an app copies a bitmap's bytes in and out and applies
no scale, offset or clipping of its own. The pixel conversions are builtin
ops inside the graph (CAST, MUL, ROUND, MINIMUM/MAXIMUM at the edges; the
generator between them is the int8 graph with its trained ranges).

The tensors are described in the file's metadata (written with MediaPipe's
generic metadata writer): the input and output names, shapes and meaning,
and a `super_resolution` custom-metadata JSON with the scale and tile size
that tiling code on the phone needs. Images larger than one tile are cut
into overlapping tiles, as tasks/super_resolution/tiling.py does.
"""

import json

import numpy as np

from common import mobile
from common.errors import UserError

FILE_NAME = "model_mobile.tflite"
# The report says which runtime scored the file (no MediaPipe Tasks API fits).
RUNTIME = "LiteRT, the plain interpreter"
INPUT_NAME, OUTPUT_NAME = "low_res_pixels", "high_res_pixels"


def file_facts(qat_model, info):
    """Tile size and scale of the mobile file, checked against the model."""
    shape = tuple(qat_model.inputs[0].shape[1:])
    if len(shape) != 3 or shape[-1] != 3 or shape[0] is None or shape[0] != shape[1]:
        raise UserError(f"super-resolution mobile export: the model takes {shape}; expected "
                        "a fixed square RGB tile (the QAT edge model, model_qat.keras)")
    tile = int(shape[0])
    scale = int(info.get("scale", 4))
    output = tuple(qat_model.outputs[0].shape[1:])
    if output != (tile * scale, tile * scale, 3):
        raise UserError(f"super-resolution mobile export: the model maps {tile}x{tile} tiles "
                        f"to {output}, not the x{scale} RGB tile info.json's scale says")
    return {"tile_size": tile, "scale": scale, "input": INPUT_NAME, "output": OUTPUT_NAME,
            "input_shape": [1, tile, tile, 3], "output_shape": [1, tile * scale,
                                                                tile * scale, 3],
            "dtype": "uint8", "color_space": "RGB"}


def export_mobile(qat_model, info, path, representative_dataset=None):
    """Write the plain mobile file at `path`; returns its metadata as JSON.

    Converted with the QAT model's trained ranges (the pixel conversions
    around it stay float), so `representative_dataset` is not needed.
    """
    import tensorflow as tf

    facts = file_facts(qat_model, info)
    tile = facts["tile_size"]
    writers = mobile.writer_module("metadata_writer")
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_info

    def upscale(pixels):
        low_res = tf.cast(pixels, tf.float32) * (1.0 / 255.0)
        high_res = qat_model(low_res, training=False)
        levels = tf.round(tf.clip_by_value(high_res, 0.0, 1.0) * 255.0)
        return {OUTPUT_NAME: tf.cast(levels, tf.uint8)}

    spec = tf.TensorSpec([1, tile, tile, 3], tf.uint8, name=INPUT_NAME)
    flatbuffer = mobile.convert_with_trained_ranges(qat_model, upscale, spec)
    description = (
        f"ESRGAN x{facts['scale']} super-resolution (RRDB generator, QAT INT8) on one "
        f"{tile}x{tile} RGB tile. Input {INPUT_NAME}: uint8 [1, {tile}, {tile}, 3] RGB "
        f"pixels. Output {OUTPUT_NAME}: uint8 {facts['output_shape']} RGB pixels. Larger "
        "images: cut into overlapping tiles and keep each tile's centre.")
    return mobile.write_populated(
        writers.MetadataWriter.create(bytearray(flatbuffer))
        .add_general_info("super_resolution", description)
        .add_feature_input(INPUT_NAME, f"uint8 RGB pixels (0-255) of one "
                                       f"{tile}x{tile} low-resolution tile")
        .add_feature_output(OUTPUT_NAME, f"uint8 RGB pixels (0-255), the tile "
                                         f"upscaled x{facts['scale']}")
        .add_custom_metadata(_json_metadata(metadata_info, "super_resolution", facts)), path)


def _json_metadata(metadata_info, name, values):
    """A custom-metadata entry holding `values` as JSON text (MediaPipe's
    writer has only task-specific custom metadata classes)."""

    class JsonMetadata(metadata_info.CustomMetadataMd):
        def create_metadata(self):
            from mediapipe.tasks.metadata import metadata_schema_py_generated as schema

            item = schema.CustomMetadataT()
            item.name = self.name
            item.data = list(json.dumps(values, sort_keys=True).encode())
            return item
    return JsonMetadata(name)


def read_facts(path):
    """The custom metadata `export_mobile` wrote (scale, tile size, names)."""
    mobile.metadata_writers()
    from mediapipe.tasks.python.metadata import metadata

    with open(path, "rb") as handle:
        buffer = handle.read()
    items = []
    if metadata.get_metadata_buffer(buffer):
        subgraph = json.loads(metadata.MetadataDisplayer.with_model_buffer(
            buffer).get_metadata_json())["subgraph_metadata"][0]
        items = subgraph.get("custom_metadata", [])
    for item in items:
        if item.get("name") == "super_resolution":
            return json.loads(bytes(item["data"]))
    raise UserError(f"{path}: no super_resolution metadata; it is not a mobile file "
                    "written by tasks.super_resolution.mobile")


class PlainUpscaler:
    """The mobile file run by LiteRT as a predict_fn: float LR tiles in
    [0, 1] (N, T, T, 3) -> float SR tiles in [0, 1]. Tiles go in as uint8
    pixels, as an app sends them."""

    def __init__(self, path):
        from common import litert

        self.model = litert.LiteRTModel(path)

    def __call__(self, low_res):
        pixels = mobile.to_uint8_pixels(low_res)
        return np.asarray(self.model(pixels), np.float32) / 255.0

    def close(self):
        self.model = None


def predict_fn(path, info=None):
    """A predict_fn for `metrics.score` (call `.close()` when done)."""
    return PlainUpscaler(path)


def scoring_dataset(splits, cfg):
    """The usual test split of (LR tile, HR tile) pairs."""
    return splits.test
