"""The precision default: bfloat16 on CPUs that multiply it natively, for the
presets that opt in; float32 everywhere else; exports float32 either way."""

import importlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from common import config, export, layers, precision, qat, tflite_graph, training
from common.cli import parse_train_args

NATIVE = {"avx512f", "avx512_bf16"}
EMULATED = {"avx2", "avx512f", "avx512_vnni"}  # no bfloat16 multiply
TASKS = ("segmentation", "detection", "super_resolution", "sentiment", "translation", "tts")
# The tasks whose default preset opts in, each for its measured numbers
# (the comments beside `run.bfloat16_on_cpu` in tasks/<task>/config.py).
# super_resolution: the same PSNR, its generator steps 1.87x faster; the
# others lose quality (segmentation, translation, detection) or train slower
# (sentiment, tts).
OPTED_IN = ("super_resolution",)


@pytest.fixture(autouse=True)
def float32_policy_after():
    yield
    keras.mixed_precision.set_global_policy("float32")


def run_config(**fields):
    return config.RunConfig(**fields)


@pytest.mark.parametrize("fields, flags, gpu, policy", [
    # Auto: only an opted-in preset on a native-bfloat16 CPU without a GPU.
    ({"bfloat16_on_cpu": True}, NATIVE, False, "mixed_bfloat16"),
    ({"bfloat16_on_cpu": True}, {"amx_bf16"}, False, "mixed_bfloat16"),
    ({"bfloat16_on_cpu": True}, EMULATED, False, "float32"),
    ({"bfloat16_on_cpu": True}, set(), False, "float32"),
    ({"bfloat16_on_cpu": True}, NATIVE, True, "float32"),
    ({"bfloat16_on_cpu": False}, NATIVE, False, "float32"),
    # The user's flag wins both ways.
    ({"mixed_precision": True}, EMULATED, False, "mixed_bfloat16"),
    ({"mixed_precision": True}, NATIVE, True, "mixed_float16"),
    ({"mixed_precision": False, "bfloat16_on_cpu": True}, NATIVE, False, "float32"),
])
def test_decision(fields, flags, gpu, policy):
    decision = precision.decide(run_config(**fields), flags, gpu)
    assert decision.policy == policy
    assert decision.reason and decision.reason in precision.describe(decision)


def test_decision_says_why_an_opt_in_stays_float32():
    opted_in = run_config(bfloat16_on_cpu=True)
    assert "emulated" in precision.decide(opted_in, EMULATED, False).reason
    assert "GPU" in precision.decide(opted_in, NATIVE, True).reason
    assert "avx512_bf16" in precision.decide(opted_in, NATIVE, False).reason


def test_cpu_flags_read_the_flags_line(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx512f amx_bf16\n\nflags\t: other\n")
    assert precision.cpu_flags(str(cpuinfo)) == {"fpu", "avx512f", "amx_bf16"}
    assert precision.cpu_flags(str(tmp_path / "missing")) == set()


def test_cli_flag_is_tri_state():
    task = importlib.import_module("tasks.segmentation")
    assert parse_train_args(task, ["--preset", "smoke"]).run.mixed_precision is None
    assert parse_train_args(task, ["--mixed-precision"]).run.mixed_precision is True
    assert parse_train_args(task, ["--no-mixed-precision"]).run.mixed_precision is False


def test_configure_sets_and_prints_the_resolved_policy(monkeypatch, capsys):
    from tensorflow.python.framework import config as tf_config

    task = importlib.import_module("tasks.segmentation")
    cfg = parse_train_args(task, ["--preset", "smoke", "--out", "unused"])
    cfg.run.bfloat16_on_cpu = True
    monkeypatch.setattr(training, "gpu_available", lambda: False)
    deterministic = tf_config.is_op_determinism_enabled()
    try:
        monkeypatch.setattr(precision, "cpu_flags", lambda: NATIVE)
        training.configure(cfg)
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
        assert "[run] precision mixed_bfloat16: the preset opts in" in capsys.readouterr().out
        monkeypatch.setattr(precision, "cpu_flags", lambda: EMULATED)
        training.configure(cfg)
        assert keras.mixed_precision.global_policy().name == "float32"
        assert "[run] precision float32:" in capsys.readouterr().out
    finally:
        training.set_op_determinism(deterministic)


@pytest.mark.parametrize("name", TASKS)
def test_presets_opt_in_as_measured(name):
    task = importlib.import_module(f"tasks.{name}")
    smoke = config.from_preset(task.Config, task.PRESETS, "smoke")
    default = config.from_preset(task.Config, task.PRESETS, "default")
    # Smoke presets stay float32 so the tests keep their numbers.
    assert precision.decide(smoke.run, NATIVE, False).policy == "float32"
    expected = "mixed_bfloat16" if name in OPTED_IN else "float32"
    assert precision.decide(default.run, NATIVE, False).policy == expected
    # On this machine: bfloat16 only if its CPU multiplies it natively.
    here = precision.decide(default.run, precision.cpu_flags(), training.gpu_available())
    native_here = bool(precision.cpu_flags() & set(precision.NATIVE_BF16_FLAGS))
    assert here.policy == (expected if native_here and not training.gpu_available()
                           else "float32")


def test_a_bfloat16_trained_model_exports_float32(tmp_path):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3), name="image")
    x = layers.conv_bn_act(inputs, 8, name="a")
    logits = keras.layers.Conv2D(2, 1, name="logits", dtype="float32")(x)
    model = keras.Model(inputs, logits)
    keras.mixed_precision.set_global_policy("float32")
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    images = np.random.default_rng(0).random((4, 8, 8, 3)).astype("float32")
    labels = (images[..., 0] > 0.5).astype("int32")
    model.train_on_batch(images, labels)
    assert model.get_layer("a_conv").compute_dtype == "bfloat16"

    # model.keras keeps float32 weights (mixed precision's variables).
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    assert {weight.dtype for weight in reloaded.weights} == {"float32"}

    # The SavedModel and LiteRT files compute in float32 throughout.
    serving = export.as_float32(model)
    assert {layer.compute_dtype for layer in serving.layers} == {"float32"}
    np.testing.assert_allclose(serving(images), model(images), atol=0.05)
    endpoint = (tf.function(lambda batch: {"logits": serving(batch)}),
                [tf.TensorSpec((None, 8, 8, 3), tf.float32)])
    version = export.export_saved_model(serving, {"serving_default": endpoint},
                                        str(tmp_path / "serving"), "tiny")
    loaded = tf.saved_model.load(version)
    assert {variable.dtype for variable in loaded.variables} == {tf.float32}
    assert loaded.signatures["serving_default"].structured_outputs["logits"].dtype == tf.float32
    # QAT fine-tunes a float32 copy (pipeline.train_qat): fake quantization
    # in float32, like the int8 arithmetic it simulates.
    qat_model = qat.quantize_model(export.as_float32(model))
    assert {layer.compute_dtype for layer in qat_model.layers} == {"float32"}
    export.convert_to_tflite(model, str(tmp_path / "model.tflite"))
    dtypes = {tensor["dtype"] for graph in tflite_graph.subgraphs(str(tmp_path / "model.tflite"))
              for tensor in graph["tensors"].values()}
    assert np.dtype("float32") in dtypes
    assert dtypes <= {np.dtype("float32"), np.dtype("int32")}
