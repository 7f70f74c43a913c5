"""What stock TF Serving needs beside the SavedModels: a model config naming
every task, and warm-up requests inside each version.

- `update_models_config(export_dir)` writes `<export_dir>/models.config` (a
  `model_config_list` with each task's absolute base path, for a server
  started on this machine) and `models.docker.config` (the same under
  `/models/<task>`, for the docker image with `saved_models/` mounted at
  `/models`). Both are written atomically after every export.
- `warmup_records(input_specs)` builds `assets.extra/tf_serving_warmup_requests`:
  a TFRecord of `PredictionLog`s, one small request per input kind, so that
  the server traces the graph before its first real request.
- `REQUEST_KINDS` and `example_request` say how a serving input is fed: a
  uint8 image batch, encoded image bytes, or text. The client
  (`tasks/client.py`) uses the same rules.
"""

import io
import os
import re
import tempfile

import numpy as np

from common import files

WARMUP_FILE = "tf_serving_warmup_requests"
# A warm-up image: small, mid-grey, valid for every image task.
WARMUP_IMAGE_SIZE = 32
WARMUP_TEXT = "A warm-up request."


def request_kind(name, dtype):
    """How a serving input is fed: "image" (uint8 batch [N, H, W, 3]),
    "image_bytes" (encoded PNG/JPEG strings) or "text" (UTF-8 strings)."""
    dtype = str(getattr(dtype, "name", dtype))
    if dtype == "uint8":
        return "image"
    if dtype == "string":
        return "image_bytes" if "image" in name else "text"
    raise ValueError(f"serving input {name!r}: dtype {dtype} is not uint8 or string")


def png_bytes(image):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def example_request(name, dtype):
    """A one-example batch for the input `name`, as numpy."""
    kind = request_kind(name, dtype)
    image = np.full((WARMUP_IMAGE_SIZE, WARMUP_IMAGE_SIZE, 3), 128, np.uint8)
    if kind == "image":
        return image[None]
    if kind == "image_bytes":
        return np.array([png_bytes(image)], dtype=object)
    return np.array([WARMUP_TEXT.encode()], dtype=object)


def warmup_records(input_specs, signature_name="serving_default"):
    """TFRecord bytes of one `PredictionLog` for a signature whose inputs are
    `input_specs` [tf.TensorSpec with names]."""
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(signature_name=signature_name))
    for spec in input_specs:
        request.inputs[spec.name].CopyFrom(
            tf.make_tensor_proto(example_request(spec.name, spec.dtype)))
    log = prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request))
    # TFRecord framing (lengths, masked CRCs) by TensorFlow's own writer.
    with tempfile.TemporaryDirectory(prefix="warmup-") as folder:
        path = os.path.join(folder, WARMUP_FILE)
        with tf.io.TFRecordWriter(path) as writer:
            writer.write(log.SerializeToString())
        with open(path, "rb") as handle:
            return handle.read()


def read_warmup(saved_model_dir):
    """The `PredictRequest`s stored in a SavedModel's warm-up file."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(saved_model_dir, "assets.extra", WARMUP_FILE)
    requests = []
    for record in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        requests.append(log.predict_log.request)
    return requests


def replay(saved_model_dir, requests):
    """Run warm-up requests through the loaded SavedModel, as the server
    does at load time; returns the outputs as numpy dicts."""
    import tensorflow as tf

    loaded = tf.saved_model.load(saved_model_dir)
    answers = []
    for request in requests:
        signature = loaded.signatures[request.model_spec.signature_name or "serving_default"]
        feed = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
        outputs = signature(**{name: tf.constant(value) for name, value in feed.items()})
        answers.append({name: value.numpy() for name, value in outputs.items()})
    return answers


def _config_text(entries):
    lines = ["model_config_list {"]
    for name, base_path in entries:
        lines += ["  config {", f'    name: "{name}"', f'    base_path: "{base_path}"',
                  '    model_platform: "tensorflow"', "  }"]
    lines.append("}")
    return "\n".join(lines) + "\n"


def exported_tasks(export_dir):
    """Task folders under `export_dir` holding at least one integer version."""
    if not os.path.isdir(export_dir):
        return []
    return sorted(
        name for name in os.listdir(export_dir)
        if os.path.isdir(os.path.join(export_dir, name)) and any(
            re.fullmatch(r"\d+", version) and os.path.exists(
                os.path.join(export_dir, name, version, "saved_model.pb"))
            for version in os.listdir(os.path.join(export_dir, name))))


def update_models_config(export_dir):
    """Rewrite `models.config` and `models.docker.config` for every task
    exported under `export_dir`; returns the local config's path."""
    tasks = exported_tasks(export_dir)
    root = os.path.abspath(export_dir)
    local = os.path.join(export_dir, "models.config")
    files.write_text_atomic(local, _config_text(
        [(task, os.path.join(root, task)) for task in tasks]))
    files.write_text_atomic(os.path.join(export_dir, "models.docker.config"), _config_text(
        [(task, f"/models/{task}") for task in tasks]))
    return local
