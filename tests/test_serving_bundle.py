"""The TF Serving bundle without a server binary: each task's exported
`serving_default` matches the README and the client's table, its warm-up
requests parse and replay, and the client's REST body, converted as TF
Serving converts JSON, answers like calling the signature directly."""

import base64
import importlib
import os
import re

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from common import cli, pipeline, serving_bundle
from common.errors import UserError
from tasks import client

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASKS = [name for name in client.SERVING_INPUTS
         if os.path.isdir(os.path.join(ROOT, "tasks", name))]


def readme_serving_inputs():
    """Rows `| task | input | dtype | ... |` of the README's serving table."""
    with open(os.path.join(ROOT, "README.md")) as handle:
        text = handle.read()
    section = text.split("### Serving signatures", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| `(\w+)` \| `(\w+)`", section, re.MULTILINE)
    return {task: (name, dtype) for task, name, dtype in rows}


def tf_serving_json_to_tensors(body, signature):
    """What TF Serving does with a columnar REST body: lists become tensors of
    the signature's dtype, {"b64": ...} becomes bytes, JSON strings UTF-8."""
    specs = signature.structured_input_signature[1]
    tensors = {}
    for name, value in body["inputs"].items():
        dtype = specs[name].dtype
        if dtype == tf.string:
            value = [base64.b64decode(v["b64"]) if isinstance(v, dict) else v.encode("utf-8")
                     for v in value]
        tensors[name] = tf.constant(value, dtype=dtype)
    return tensors


class Exports:
    """One SavedModel per task, from an untrained smoke-sized model, exported
    on first use into one folder (so models.config names all of them)."""

    def __init__(self, folder):
        self.folder = folder
        self.exported = {}
        self._loaded = {}

    def __getitem__(self, name):
        if name not in self.exported:
            task = importlib.import_module(f"tasks.{name}")
            cfg = cli.parse_train_args(task, ["--preset", "smoke"])
            splits = task.build_datasets(cfg)
            model = task.build_model(cfg, splits.info)
            self.exported[name] = pipeline.export_serving(task, cfg, model, splits.info,
                                                          self.folder)
        return self.exported[name]

    def loaded(self, name):
        """The task's SavedModel loaded once for every test that reads it
        (a load restores and traces its functions again: seconds each)."""
        if name not in self._loaded:
            self._loaded[name] = tf.saved_model.load(self[name])
        return self._loaded[name]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    return Exports(str(tmp_path_factory.mktemp("saved_models")))


def image_file(folder, name, size=(40, 48)):
    pixels = np.random.default_rng(len(name)).integers(0, 256, size + (3,), np.uint8)
    path = os.path.join(folder, name)
    Image.fromarray(pixels).save(path)
    return path


def raw_inputs_for(name, folder):
    kind = serving_bundle.request_kind(*client.SERVING_INPUTS[name])
    if kind == "text":
        return ["a small test sentence", "another one"]
    return [image_file(folder, "a.png"), image_file(folder, "b.png")]


def test_models_config_names_every_exported_task(exports):
    for name in ("segmentation", "sentiment"):
        exports[name]
    text = open(os.path.join(exports.folder, "models.config")).read()
    for name, version_dir in exports.exported.items():
        assert f'name: "{name}"' in text
        assert f'base_path: "{os.path.dirname(os.path.abspath(version_dir))}"' in text
    docker = open(os.path.join(exports.folder, "models.docker.config")).read()
    assert all(f'base_path: "/models/{name}"' in docker for name in exports.exported)


@pytest.mark.parametrize("name", TASKS)
def test_serving_default_matches_readme_and_client(exports, name):
    loaded = exports.loaded(name)
    specs = loaded.signatures["serving_default"].structured_input_signature[1]
    assert {key: spec.dtype.name for key, spec in specs.items()} == \
        {client.SERVING_INPUTS[name][0]: client.SERVING_INPUTS[name][1]}
    assert readme_serving_inputs()[name] == client.SERVING_INPUTS[name]


@pytest.mark.parametrize("name", TASKS)
def test_warmup_requests_parse_and_replay(exports, name):
    version_dir = exports[name]
    requests = serving_bundle.read_warmup(version_dir)
    assert len(requests) == 1
    assert set(requests[0].inputs) == {client.SERVING_INPUTS[name][0]}
    answers = serving_bundle.replay(version_dir, requests)
    outputs = exports.loaded(name).signatures["serving_default"].structured_outputs
    assert set(answers[0]) == set(outputs)


@pytest.mark.parametrize("name", TASKS)
def test_rest_body_answers_like_the_signature(exports, name, tmp_path):
    signature = exports.loaded(name).signatures["serving_default"]
    inputs = client.build_inputs(name, raw_inputs_for(name, str(tmp_path)))
    direct = signature(**{key: tf.constant(value) for key, value in inputs.items()})
    body = client.rest_body(inputs)
    through_json = signature(**tf_serving_json_to_tensors(body, signature))
    assert set(through_json) == set(direct)
    # Tacotron 2 keeps its pre-net dropout at inference (the paper's choice),
    # so two syntheses differ: there, the answer's shape and rate must agree.
    random_keys = {"waveform", "length"} if name == "tts" else set()
    for key in direct:
        if key in random_keys:
            assert through_json[key].dtype == direct[key].dtype
            assert through_json[key].shape[0] == direct[key].shape[0]
        else:
            np.testing.assert_array_equal(direct[key].numpy(), through_json[key].numpy())
    # gRPC: the request proto carries the same tensors.
    request = client.grpc_request(inputs, name)
    for key, value in inputs.items():
        np.testing.assert_array_equal(tf.make_ndarray(request.inputs[key]), value)


def test_client_refuses_bad_requests_before_sending(tmp_path):
    with pytest.raises(UserError, match="empty batch"):
        client.build_inputs("sentiment", [])
    with pytest.raises(UserError, match="over the server's limit"):
        client.build_inputs("sentiment", ["x" * 20_000])
    small = image_file(str(tmp_path), "small.png", (8, 8))
    large = image_file(str(tmp_path), "large.png", (16, 8))
    with pytest.raises(UserError, match="different sizes"):
        client.build_inputs("segmentation", [small, large])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(UserError, match="broken.png: not a readable image"):
        client.build_inputs("detection", [str(broken)])
    with pytest.raises(UserError, match="unknown task"):
        client.build_inputs("speech", ["hi"])


def test_a_server_that_does_not_answer_is_a_clear_error():
    # Port 9 (discard) on loopback: nothing listens, so REST fails at once.
    with pytest.raises(UserError, match="no answer within"):
        client.post_rest("127.0.0.1:9", "sentiment", {"inputs": {"text": ["hi"]}}, timeout=2)
    request = client.grpc_request(client.build_inputs("sentiment", ["hi"]), "sentiment")
    with pytest.raises(UserError, match="no answer within"):
        client.call_grpc("127.0.0.1:9", request, timeout=2)
