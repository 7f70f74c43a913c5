"""Query a TF Serving server for any task, over REST or gRPC.

    python -m tasks.client segmentation photo.png --server localhost:8501
    python -m tasks.client sentiment "What a film!" --server localhost:8500 --grpc

The request is built from raw inputs (image files or text) and checked here,
before it is sent: an empty batch, an image over the pixel limit, a text over
the byte limit or images of different sizes in one batch are refused with a
message naming the input. The answer is printed as JSON (arrays summarised;
`--out DIR` saves each output as `.npy`).
"""

import argparse
import base64
import json
import os
import sys
import urllib.error
import urllib.request

import numpy as np

from common import serving_bundle
from common.config import ExportConfig
from common.errors import UserError

# The `serving_default` input of each task: (name, dtype). A test checks this
# table against every task's exported SavedModel.
SERVING_INPUTS = {
    "segmentation": ("images", "uint8"),
    "super_resolution": ("images", "uint8"),
    "detection": ("images", "string"),
    "sentiment": ("text", "string"),
    "translation": ("text", "string"),
    "tts": ("text", "string"),
}
REST_PORT, GRPC_PORT = 8501, 8500


def _limits():
    return ExportConfig()


def _read_image(path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as error:
        raise UserError(f"{path}: not a readable image ({error})") from None


def build_inputs(task, raw_inputs, limits=None):
    """{input name: numpy batch} for `task` from file paths or texts,
    refused before sending when the server would refuse it."""
    if task not in SERVING_INPUTS:
        raise UserError(f"unknown task {task!r}; expected one of {sorted(SERVING_INPUTS)}")
    limits = limits or _limits()
    name, dtype = SERVING_INPUTS[task]
    kind = serving_bundle.request_kind(name, dtype)
    if not raw_inputs:
        raise UserError(f"{task}: empty batch: give at least one "
                        f"{'image file' if kind.startswith('image') else 'text'}")
    if len(raw_inputs) > limits.serving_max_batch:
        raise UserError(f"{task}: {len(raw_inputs)} inputs, the server accepts at most "
                        f"{limits.serving_max_batch} per request")
    if kind == "text":
        for text in raw_inputs:
            size = len(text.encode("utf-8"))
            if size > limits.serving_max_text_bytes:
                raise UserError(f"{task}: a text of {size} bytes is over the server's limit "
                                f"of {limits.serving_max_text_bytes} ({text[:40]!r}...)")
        return {name: np.array([text.encode("utf-8") for text in raw_inputs], dtype=object)}
    images = [_read_image(path) for path in raw_inputs]
    for path, image in zip(raw_inputs, images):
        pixels = image.shape[0] * image.shape[1]
        if pixels > limits.serving_max_pixels:
            raise UserError(f"{path}: {image.shape[1]}x{image.shape[0]} = {pixels} pixels, over "
                            f"the server's limit of {limits.serving_max_pixels}")
    if kind == "image_bytes":
        encoded = []
        for path in raw_inputs:
            with open(path, "rb") as handle:
                encoded.append(handle.read())
        return {name: np.array(encoded, dtype=object)}
    shapes = {image.shape for image in images}
    if len(shapes) > 1:
        sizes = ", ".join(f"{path}: {image.shape[1]}x{image.shape[0]}"
                          for path, image in zip(raw_inputs, images))
        raise UserError(f"{task}: images of different sizes ({sizes}) cannot share one "
                        "uint8 batch; send them in separate requests")
    return {name: np.stack(images)}


# --- REST --------------------------------------------------------------------

def _json_value(name, array):
    """Columnar JSON of one input: numbers as nested lists, text as strings,
    encoded images as {"b64": ...} (TF Serving's rule for binary strings)."""
    if array.dtype != object:
        return array.tolist()
    if serving_bundle.request_kind(name, "string") == "text":
        return [value.decode("utf-8") for value in array]
    return [{"b64": base64.b64encode(value).decode("ascii")} for value in array]


def rest_body(inputs, signature="serving_default"):
    """The JSON body of a REST predict request (columnar "inputs" format)."""
    return {"signature_name": signature,
            "inputs": {name: _json_value(name, array) for name, array in inputs.items()}}


def decode_rest_response(body):
    outputs = body["outputs"]
    if not isinstance(outputs, dict):
        outputs = {"output": outputs}
    return {name: np.asarray(value) for name, value in outputs.items()}


def post_rest(server, model, body, timeout):
    url = f"http://{server}/v1/models/{model}:predict"
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")[:500]
        raise UserError(f"{url}: the server refused the request ({error.code}): {detail}") \
            from None
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise UserError(f"{url}: no answer within {timeout:g} s ({error}); is TF Serving "
                        f"running with --rest_api_port?") from None


# --- gRPC --------------------------------------------------------------------

def grpc_request(inputs, model, signature="serving_default"):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    for name, array in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(array))
    return request


def decode_grpc_response(response):
    import tensorflow as tf

    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def call_grpc(server, request, timeout):
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    channel = grpc.insecure_channel(server)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    try:
        return stub.Predict(request, timeout=timeout)
    except grpc.RpcError as error:
        code = error.code()
        if code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE):
            raise UserError(f"{server}: no answer within {timeout:g} s ({code.name}); is TF "
                            "Serving running with --port?") from None
        raise UserError(f"{server}: the server refused the request ({code.name}): "
                        f"{error.details()}") from None
    finally:
        channel.close()


# --- command -----------------------------------------------------------------

def summarise(outputs):
    summary = {}
    for name, value in outputs.items():
        value = np.asarray(value)
        if value.dtype == object or value.dtype.kind in "SU":
            summary[name] = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                             for v in value.reshape(-1)]
        elif value.size <= 16:
            summary[name] = value.tolist()
        else:
            summary[name] = {"shape": list(value.shape), "dtype": str(value.dtype),
                             "min": float(value.min()), "max": float(value.max())}
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tasks.client", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=sorted(SERVING_INPUTS))
    parser.add_argument("inputs", nargs="*", help="image files, or texts")
    parser.add_argument("--server", default=None,
                        help=f"HOST:PORT (default localhost:{REST_PORT}, or :{GRPC_PORT} "
                             "with --grpc)")
    parser.add_argument("--grpc", action="store_true", help="gRPC instead of REST")
    parser.add_argument("--model", default=None, help="model name on the server (the task)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds")
    parser.add_argument("--out", default=None, help="folder for each output as .npy")
    args = parser.parse_args(argv)
    model = args.model or args.task
    server = args.server or f"localhost:{GRPC_PORT if args.grpc else REST_PORT}"
    try:
        inputs = build_inputs(args.task, args.inputs)
        if args.grpc:
            outputs = decode_grpc_response(call_grpc(
                server, grpc_request(inputs, model), args.timeout))
        else:
            outputs = decode_rest_response(post_rest(server, model, rest_body(inputs),
                                                     args.timeout))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        for name, value in outputs.items():
            np.save(os.path.join(args.out, f"{name}.npy"), np.asarray(value))
    print(json.dumps(summarise(outputs), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
