"""Every task's SavedModel refuses requests that could knock the server over.

For each task the smoke-preset model (untrained: only the graph matters) is
exported exactly as a run exports it, then loaded in a fresh process that
sends bad requests: the wrong dtype, the wrong rank, an empty batch, an
oversized image (a real 20000 x 20000 PNG of under 1 MB) or text, bytes that
are not an image, a batch over the limit. Each must give a clear error (or a
defined empty answer), the process must keep its memory small, and the
next valid request must get the same answer as before.
"""

import json
import os
import struct
import subprocess
import sys
import zlib

import pytest

from common import config
from common import export

# A small limit, so that the test also shows the config reaches the graph.
MAX_BATCH = 8
DEFAULT_MAX_PIXELS = 4096 * 4096
HUGE_SIDE = 20_000
# Peak-memory growth allowed for a refused request: decoding the 20000 x 20000
# PNG as RGB would take 1.2 GB.
MAX_GROWTH_MB = 200
MAX_CHILD_RSS_MB = 2048

CHILD = r"""
import json, resource, sys, time, zlib
import numpy as np
import tensorflow as tf

folder, cases = sys.argv[1], json.loads(sys.argv[2])
loaded = tf.saved_model.load(folder)


def make(spec):
    # Seeded by the spec: the same request twice gets the same pixels.
    rng = np.random.default_rng(zlib.crc32(json.dumps(spec).encode()))
    kind, value = next(iter(spec.items()))
    if kind in ("uint8", "int32"):
        return tf.constant(rng.integers(0, 256, value, dtype=kind))
    if kind == "float32":
        return tf.constant(rng.random(value), tf.float32)
    if kind == "png":
        height, width = value
        pixels = rng.integers(0, 256, (height, width, 3)).astype(np.uint8)
        return tf.io.encode_png(pixels).numpy()
    if kind == "file":
        with open(value, "rb") as handle:
            return handle.read()
    if kind == "text":
        return value.encode("utf-8")
    if kind == "list":
        return [make(item) for item in value]
    if kind == "repeat":
        item, count = value
        return [make(item)] * count
    raise ValueError(f"unknown request spec {spec}")


def tensor(spec):
    value = make(spec)
    if isinstance(value, (bytes, list)):
        return tf.constant(value, tf.string)
    return value


def max_rss_mb():
    # VmHWM: the peak resident size of this process image. ru_maxrss would
    # also count the parent it was forked from (a large pytest process).
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


answers, results = {}, []
for case in cases:
    inputs = {name: tensor(spec) for name, spec in case["inputs"].items()}
    result = {"name": case["name"], "rss_before_mb": max_rss_mb()}
    start = time.perf_counter()
    try:
        outputs = loaded.signatures[case["signature"]](**inputs)
        outputs = {key: value.numpy() for key, value in outputs.items()}
        result["shapes"] = {key: list(value.shape) for key, value in outputs.items()}
        result["dtypes"] = {key: value.dtype.name for key, value in outputs.items()}
        answers[case["name"]] = outputs
        if case.get("same_as"):
            first = answers[case["same_as"]]
            result["same_as_difference"] = max(
                (float(np.max(np.abs(first[key].astype(np.float64)
                                     - value.astype(np.float64)))) if value.size
                 and value.dtype.kind in "iuf" else
                 (0.0 if np.array_equal(first[key], value) else float("inf")))
                for key, value in outputs.items())
        if case.get("whole_image_of"):
            # The tiled serving output against the generator run on the
            # whole image at once (the `raw` endpoint).
            images = inputs[case["whole_image_of"]]
            whole = loaded.signatures["raw"](tf.cast(images, tf.float32) / 255.0)
            whole = next(iter(whole.values())).numpy()
            whole = np.round(np.clip(whole, 0.0, 1.0) * 255.0)
            difference = np.abs(whole - outputs["high_resolution"].astype(np.float64))
            result["whole_image_max_difference"] = float(difference.max())
            result["whole_image_mean_difference"] = float(difference.mean())
    except Exception as error:  # the test reads what each request raised
        result["error_type"] = type(error).__name__
        result["message"] = str(error)[-1500:]
    result["seconds"] = time.perf_counter() - start
    result["rss_after_mb"] = max_rss_mb()
    results.append(result)
print("RESULTS " + json.dumps(results))
"""


def huge_png(path, side=HUGE_SIDE):
    """A valid 1-bit greyscale PNG of `side` x `side` pixels, all black,
    written row by row (PIL would hold the whole image: 400 MB)."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    compressed = b"".join(compressor.compress(row) for _ in range(side))
    compressed += compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    with open(path, "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", compressed) + chunk(b"IEND", b""))
    return str(path)


def export_smoke_model(task_name, folder, overrides):
    """build_datasets -> build_model -> build_serving_model -> export, as a
    run does, on the smoke preset with tiny data."""
    import importlib

    task = importlib.import_module(f"tasks.{task_name}")
    cfg = config.from_preset(task.Config, task.PRESETS, "smoke")
    config.apply_overrides(cfg, {"export.serving_max_batch": MAX_BATCH, **overrides})
    splits = task.build_datasets(cfg)
    model = task.build_model(cfg, splits.info)
    endpoints = task.build_serving_model(model, cfg, splits.info)
    return export.export_saved_model(model, endpoints, str(folder), task_name), splits.info


def serve(folder, cases):
    """Send `cases` to the SavedModel in a fresh process; results by name."""
    process = subprocess.run(
        [sys.executable, "-c", CHILD, folder, json.dumps(cases)],
        capture_output=True, text=True, timeout=240,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert process.returncode == 0, process.stderr[-3000:]
    line = [text for text in process.stdout.splitlines() if text.startswith("RESULTS ")][-1]
    return {result["name"]: result for result in json.loads(line[len("RESULTS "):])}


def case(name, signature, same_as=None, **inputs):
    entry = {"name": name, "signature": signature, "inputs": inputs}
    if same_as:
        entry["same_as"] = same_as
    return entry


def bad_then_valid(bad_cases, valid):
    """Each bad case followed by the valid request again."""
    cases = [valid]
    for index, bad in enumerate(bad_cases):
        again = dict(valid, name=f"{valid['name']} again {index}", same_as=valid["name"])
        cases += [bad, again]
    return cases


def assert_refused(result, error_type, *phrases):
    assert "error_type" in result, f"{result['name']}: expected an error, got {result}"
    assert result["error_type"] == error_type, result
    for phrase in phrases:
        assert phrase in result["message"], (phrase, result["message"])


def assert_still_answers(results):
    """Every repeated valid request got the first answer again."""
    repeats = [r for r in results.values() if " again " in r["name"]]
    assert repeats
    for result in repeats:
        assert "error_type" not in result, result
        assert result["same_as_difference"] <= 1e-5, result


def assert_refused_huge_image_cheaply(result):
    assert_refused(result, "InvalidArgumentError",
                   f"image is {HUGE_SIDE}x{HUGE_SIDE} = {HUGE_SIDE ** 2} pixels",
                   f"at most {DEFAULT_MAX_PIXELS} (export.serving_max_pixels)")
    growth = result["rss_after_mb"] - result["rss_before_mb"]
    assert growth < MAX_GROWTH_MB, result
    assert result["rss_after_mb"] < MAX_CHILD_RSS_MB, result
    assert result["seconds"] < 10, result


NOT_AN_IMAGE = {"text": "this is not an image"}
HUGE_SHAPE_ERROR = "each image is 4097x4097 = 16785409 pixels"
# The runtime checks dtypes (as TF Serving does); shapes are checked in the graph.
DTYPE_ERROR = "InvalidArgumentError"
IMAGES_SHAPE = "images: expected shape (batch, height, width, 3), received shape"


@pytest.fixture(scope="module")
def huge_png_path(tmp_path_factory):
    path = huge_png(tmp_path_factory.mktemp("images") / "huge.png")
    assert os.path.getsize(path) < 1_000_000
    return path


@pytest.mark.slow
def test_segmentation_limits(tmp_path, huge_png_path):
    folder, _ = export_smoke_model("segmentation", tmp_path, {
        "data.num_train": 16, "data.num_val": 8, "data.num_test": 8})
    valid = case("valid", "serving_default", images={"uint8": [2, 20, 24, 3]})
    valid_bytes = case("valid bytes", "serve_bytes", image_bytes={"list": [{"png": [18, 30]}]})
    results = serve(folder, bad_then_valid([
        case("float images", "serving_default", images={"float32": [1, 20, 24, 3]}),
        case("rank 3 images", "serving_default", images={"uint8": [20, 24, 3]}),
        case("empty batch", "serving_default", images={"uint8": [0, 20, 24, 3]}),
        case("huge png", "serve_bytes", image_bytes={"list": [{"file": huge_png_path}]}),
        case("huge images", "serving_default", images={"uint8": [1, 4097, 4097, 3]}),
        case("not an image", "serve_bytes", image_bytes={"list": [NOT_AN_IMAGE]}),
        case("two bytes", "serve_bytes", image_bytes={"repeat": [{"png": [8, 8]}, 2]}),
        case("batch over", "serving_default", images={"uint8": [MAX_BATCH + 1, 8, 8, 3]}),
    ], valid) + [valid_bytes])

    assert results["valid"]["shapes"] == {"classes": [2, 20, 24], "confidence": [2, 20, 24]}
    assert results["valid bytes"]["shapes"]["classes"] == [1, 18, 30]
    assert_refused(results["float images"], DTYPE_ERROR, "expected to be a uint8 tensor")
    assert_refused(results["rank 3 images"], "InvalidArgumentError", IMAGES_SHAPE + " [20 24 3]")
    # Empty batch: empty answers of the same layout.
    assert results["empty batch"]["shapes"] == {"classes": [0, 20, 24], "confidence": [0, 20, 24]}
    assert_refused_huge_image_cheaply(results["huge png"])
    assert_refused(results["huge images"], "InvalidArgumentError", HUGE_SHAPE_ERROR,
                   "(export.serving_max_pixels)")
    assert_refused(results["not an image"], "InvalidArgumentError",
                   "not a PNG, JPEG, GIF or BMP image (received 20 bytes")
    # serve_bytes takes exactly one image.
    assert_refused(results["two bytes"], "InvalidArgumentError",
                   "image_bytes: expected shape (1), received shape [2]")
    assert_refused(results["batch over"], "InvalidArgumentError",
                   f"batch of {MAX_BATCH + 1} items; this model accepts at most "
                   f"{MAX_BATCH} per request (export.serving_max_batch)")
    assert_still_answers(results)


@pytest.mark.slow
def test_detection_limits(tmp_path, huge_png_path):
    folder, _ = export_smoke_model("detection", tmp_path, {
        "data.num_train": 16, "data.num_val": 8, "data.num_test": 8})
    valid = case("valid", "serving_default",
                 images={"list": [{"png": [40, 50]}, {"png": [64, 30]}]})
    valid_pixels = case("valid pixels", "detect_images", images={"uint8": [1, 50, 70, 3]})
    results = serve(folder, bad_then_valid([
        case("uint8 to bytes", "serving_default", images={"uint8": [1, 8, 8, 3]}),
        case("float images", "detect_images", images={"float32": [1, 50, 70, 3]}),
        case("rank 0 bytes", "serving_default", images={"png": [8, 8]}),
        case("empty bytes", "serving_default", images={"list": []}),
        case("empty images", "detect_images", images={"uint8": [0, 50, 70, 3]}),
        case("huge png", "serving_default",
             images={"list": [{"png": [8, 8]}, {"file": huge_png_path}]}),
        case("huge images", "detect_images", images={"uint8": [1, 4097, 4097, 3]}),
        case("not an image", "serving_default", images={"list": [{"png": [8, 8]}, NOT_AN_IMAGE]}),
        case("batch over", "serving_default",
             images={"repeat": [{"png": [8, 8]}, MAX_BATCH + 1]}),
        case("pixels batch over", "detect_images", images={"uint8": [MAX_BATCH + 1, 8, 8, 3]}),
    ], valid) + [valid_pixels])

    max_detections = results["valid"]["shapes"]["boxes"][1]
    assert results["valid"]["shapes"]["boxes"] == [2, max_detections, 4]
    assert results["valid pixels"]["shapes"]["num_detections"] == [1]
    assert_refused(results["uint8 to bytes"], DTYPE_ERROR, "expected to be a string tensor")
    assert_refused(results["float images"], DTYPE_ERROR, "expected to be a uint8 tensor")
    assert_refused(results["rank 0 bytes"], "InvalidArgumentError",
                   "images: expected shape (batch), received shape []")
    for name in ("empty bytes", "empty images"):
        assert results[name]["shapes"]["boxes"] == [0, max_detections, 4], results[name]
        assert results[name]["shapes"]["num_detections"] == [0], results[name]
    assert_refused_huge_image_cheaply(results["huge png"])
    assert_refused(results["huge images"], "InvalidArgumentError", HUGE_SHAPE_ERROR)
    assert_refused(results["not an image"], "InvalidArgumentError",
                   "not a PNG, JPEG, GIF or BMP image")
    for name in ("batch over", "pixels batch over"):
        assert_refused(results[name], "InvalidArgumentError",
                       f"batch of {MAX_BATCH + 1} items", "(export.serving_max_batch)")
    assert_still_answers(results)


@pytest.mark.slow
def test_super_resolution_limits(tmp_path, huge_png_path):
    folder, _ = export_smoke_model("super_resolution", tmp_path, {
        "data.num_train": 8, "data.num_val": 2, "data.num_test": 2,
        "data.num_tile_crops": 4})
    # 72 x 100 LR pixels with 32-pixel tiles: 4 x 5 overlapping tiles.
    valid = case("valid", "serving_default", images={"uint8": [1, 72, 100, 3]})
    valid["whole_image_of"] = "images"
    valid_bytes = case("valid bytes", "serve_bytes", image_bytes={"list": [{"png": [9, 13]}]})
    results = serve(folder, bad_then_valid([
        case("float images", "serving_default", images={"float32": [1, 8, 8, 3]}),
        case("rank 3 images", "serving_default", images={"uint8": [8, 8, 3]}),
        case("empty batch", "serving_default", images={"uint8": [0, 8, 12, 3]}),
        case("huge png", "serve_bytes", image_bytes={"list": [{"file": huge_png_path}]}),
        case("huge images", "serving_default", images={"uint8": [1, 4097, 4097, 3]}),
        case("not an image", "serve_bytes", image_bytes={"list": [NOT_AN_IMAGE]}),
        case("batch over", "serving_default", images={"uint8": [MAX_BATCH + 1, 8, 8, 3]}),
    ], valid) + [valid_bytes])

    result = results["valid"]
    assert result["shapes"] == {"high_resolution": [1, 288, 400, 3]}
    # Tiles overlap by model.tile_overlap LR pixels: the seams match the
    # whole-image pass to within one uint8 level (float rounding only).
    assert result["whole_image_max_difference"] <= 1.0, result
    assert result["whole_image_mean_difference"] < 0.01, result
    assert results["valid bytes"]["shapes"]["high_resolution"] == [1, 36, 52, 3]
    assert results["valid bytes"]["shapes"]["png"] == [1]
    assert_refused(results["float images"], DTYPE_ERROR, "expected to be a uint8 tensor")
    assert_refused(results["rank 3 images"], "InvalidArgumentError", IMAGES_SHAPE + " [8 8 3]")
    assert results["empty batch"]["shapes"] == {"high_resolution": [0, 32, 48, 3]}
    assert_refused_huge_image_cheaply(results["huge png"])
    assert_refused(results["huge images"], "InvalidArgumentError", HUGE_SHAPE_ERROR)
    assert_refused(results["not an image"], "InvalidArgumentError",
                   "not a PNG, JPEG, GIF or BMP image")
    assert_refused(results["batch over"], "InvalidArgumentError",
                   f"batch of {MAX_BATCH + 1} items", "(export.serving_max_batch)")
    assert_still_answers(results)


@pytest.mark.slow
def test_sentiment_limits(tmp_path):
    folder, info = export_smoke_model("sentiment", tmp_path, {
        "data.num_train": 64, "data.num_val": 16, "data.num_test": 16})
    max_bytes = config.ExportConfig().serving_max_text_bytes
    valid = case("valid", "serving_default",
                 text={"list": [{"text": "the food was very good ."}, {"text": "awful"}]})
    results = serve(folder, bad_then_valid([
        case("int text", "serving_default", text={"int32": [2]}),
        case("rank 2 text", "serving_default", text={"list": [{"list": [{"text": "good"}]}]}),
        case("empty batch", "serving_default", text={"list": []}),
        case("long text", "serving_default",
             text={"list": [{"text": "fine"}, {"text": "a " * (max_bytes // 2 + 1)}]}),
        case("batch over", "serving_default",
             text={"repeat": [{"text": "good"}, MAX_BATCH + 1]}),
    ], valid) + [case("text at the limit", "serving_default",
                      text={"list": [{"text": "é" * (max_bytes // 2)}]})])

    num_classes = len(info["classes"])
    assert results["valid"]["shapes"]["probabilities"] == [2, num_classes]
    assert_refused(results["int text"], DTYPE_ERROR, "expected to be a string tensor")
    assert_refused(results["rank 2 text"], "InvalidArgumentError",
                   "text: expected shape (batch), received shape [1 1]")
    assert results["empty batch"]["shapes"]["probabilities"] == [0, num_classes]
    assert results["empty batch"]["shapes"]["label"] == [0]
    assert_refused(results["long text"], "InvalidArgumentError",
                   f"text 1 is {max_bytes + 2} bytes long; this model accepts at most "
                   f"{max_bytes} bytes per text (export.serving_max_text_bytes)")
    assert_refused(results["batch over"], "InvalidArgumentError",
                   f"batch of {MAX_BATCH + 1} items", "(export.serving_max_batch)")
    assert results["text at the limit"]["shapes"]["label"] == [1]
    assert_still_answers(results)
