"""common/efficiency.py: the trainer against a plain fit, the input pipeline
against the model, FLOPs against the analytic count, XLA and bfloat16 against
float32, and the benchmark columns made from them (tasks/suite.py)."""

import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from common import config as config_lib
from common import data, efficiency, training
from tasks import suite

INPUTS, OUTPUTS, BATCH = 16, 4, 16


class HostIdentity(keras.layers.Layer):
    """Passes its input through a Python function: runs in a plain fit and
    under bfloat16, but XLA cannot compile it (a configuration that fails)."""

    def call(self, inputs):
        outputs = tf.py_function(lambda values: values, [inputs], inputs.dtype)
        outputs.set_shape(inputs.shape)
        return outputs


def dense_task():
    """A task by the contract (build_datasets, build_model, compile_args),
    small enough to time every configuration in seconds."""
    generator = np.random.default_rng(0)
    features = generator.normal(size=(256, INPUTS)).astype("float32")
    targets = features @ generator.normal(size=(INPUTS, OUTPUTS)).astype("float32")

    def split(start, stop):
        return tf.data.Dataset.from_tensor_slices(
            (features[start:stop], targets[start:stop])).batch(BATCH).cache()

    def build_model(cfg, info):
        inputs = keras.Input((INPUTS,))
        return keras.Model(inputs, HostIdentity()(keras.layers.Dense(OUTPUTS)(inputs)))

    return types.SimpleNamespace(
        build_datasets=lambda cfg: data.Splits(split(0, 192), split(192, 224), split(224, 256)),
        build_model=build_model, compile_args=lambda cfg, info: {"loss": "mse"})


@pytest.fixture(scope="module")
def dense_result(tmp_path_factory):
    cfg = config_lib.BaseConfig()
    cfg.train.learning_rate = 1e-2
    # A task defaulting to bfloat16 (or a policy left by an earlier run):
    # the float32 columns are still float32.
    cfg.run.mixed_precision = None
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        return efficiency.measure(dense_task(), cfg, str(tmp_path_factory.mktemp("dense")))
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_a_configuration_xla_cannot_compile_is_recorded_and_the_others_measured(dense_result):
    configurations = dense_result["configurations"]
    assert configurations["xla"]["fails"].startswith("InvalidArgumentError")
    assert configurations["xla"]["fails"].endswith("XLA_CPU_JIT cannot compile EagerPyFunc")
    for name in ("float32", "bfloat16"):
        assert configurations[name]["ms_per_step"] > 0
        assert np.isfinite(configurations[name]["loss"])
    assert configurations["bfloat16"]["speedup"] == pytest.approx(
        configurations["float32"]["ms_per_step"] / configurations["bfloat16"]["ms_per_step"])
    assert dense_result["policy"] == "float32"
    # Epochs of the real run's length (one pass over the 12-batch split): a
    # warm-up epoch and two timed ones.
    assert dense_result["steps_per_epoch"] == 12 and dense_result["batch_size"] == BATCH
    assert dense_result["epochs"] == 3


def test_trainer_and_plain_fit_are_timed_alike_and_the_trainer_callbacks_named(dense_result):
    plain, trainer = dense_result["plain"], dense_result["trainer"]
    assert dense_result["trainer_vs_plain"] == pytest.approx(
        trainer["examples_per_second"] / plain["examples_per_second"])
    assert trainer["extra_seconds_per_epoch"] == pytest.approx(
        trainer["seconds_per_epoch"] - plain["seconds_per_epoch"])
    # Each epoch end of the trainer writes its resume backup and (the loss
    # falls) its best checkpoint: both timed, each a file write.
    spent = trainer["epoch_end_by_callback"]
    assert spent["AtomicBackupAndRestore"] > 0 and spent["BestCheckpoint"] > 0
    assert "StopOnNonFinite" in trainer["batch_hook_ms_by_callback"]
    # The wrapping was undone.
    assert training.make_callbacks.__name__ == "make_callbacks"


def test_an_epoch_is_one_pass_over_the_data_or_the_configured_steps():
    cfg = config_lib.BaseConfig()
    dataset = tf.data.Dataset.range(20).batch(4)
    assert efficiency.real_epoch(cfg, dataset) == (None, 5)
    cfg.train.steps_per_epoch = 7
    assert efficiency.real_epoch(cfg, dataset) == (7, 7)


def test_input_x_is_the_input_rate_over_the_rate_the_model_consumes(dense_result):
    measured = dense_result["input"]
    consumed = BATCH / (dense_result["configurations"]["float32"]["ms_per_step"] / 1000.0)
    assert measured["model_examples_per_second"] == pytest.approx(consumed)
    assert measured["input_x"] == pytest.approx(measured["examples_per_second"] / consumed)
    # Cached in-memory tensors come far faster than a training step uses them.
    assert measured["input_x"] > 3


def test_flops_of_the_measured_model_match_the_analytic_count(dense_result):
    flops = dense_result["flops"]
    # A matmul (a multiply and an add per weight) and a bias add per output.
    assert flops["forward_per_example"] == 2 * INPUTS * OUTPUTS + OUTPUTS
    assert flops["train_per_example"] == 3 * flops["forward_per_example"]
    assert flops["complete"] is True  # the Python function is not a loop
    assert flops["achieved"] == pytest.approx(
        flops["train_per_example"] * dense_result["input"]["model_examples_per_second"])
    assert 0 < flops["share_of_peak"] < 1 and flops["matmul_peak"] > 1e8


def test_flop_counts_of_dense_einsum_and_a_loop():
    example = tf.zeros((1, INPUTS))
    inputs = keras.Input((INPUTS,))
    no_bias = keras.Model(inputs, keras.layers.Dense(OUTPUTS, use_bias=False)(inputs))
    assert efficiency.forward_flops(no_bias, example) == (2 * INPUTS * OUTPUTS, True)
    # TensorFlow counts no Einsum FLOPs; efficiency registers them.
    einsum = keras.Model(inputs, keras.layers.EinsumDense("ab,bc->ac", OUTPUTS)(inputs))
    assert efficiency.forward_flops(einsum, example) == (2 * INPUTS * OUTPUTS, True)
    # An LSTM's steps are a loop, counted once instead of once a step: flagged.
    sequence = keras.Input((5, INPUTS))
    recurrent = keras.Model(sequence, keras.layers.LSTM(OUTPUTS)(sequence))
    counted, complete = efficiency.forward_flops(recurrent, tf.zeros((1, 5, INPUTS)))
    assert not complete and counted < 5 * 2 * 4 * OUTPUTS * (INPUTS + OUTPUTS)


def test_benchmark_columns_show_failures_as_dash_with_a_note(dense_result):
    cells = suite.efficiency_cells(dense_result)
    assert cells["trainer / plain fit %"] == pytest.approx(100 * dense_result["trainer_vs_plain"])
    assert cells["XLA x"].startswith("fails: InvalidArgumentError")
    assert cells["bf16 x"] == dense_result["configurations"]["bfloat16"]["speedup"]
    waiting = dict(dense_result, input=dict(dense_result["input"], input_x=1.5))
    rows = [{"task": "dense", "primary metric": "mse", "efficiency": dense_result,
             **suite.efficiency_cells(dense_result)},
            {"task": "slow_input", "primary metric": "mse", "efficiency": waiting,
             **suite.efficiency_cells(waiting)},
            {"task": "broken", "primary metric": "mse", "efficiency": {"fails": "child exited 1"},
             **suite.efficiency_cells({"fails": "child exited 1"})}]
    table = suite.markdown(rows, "smoke")
    dense_line = next(line for line in table.splitlines() if line.startswith("| dense |"))
    assert dense_line.split(" | ")[-2:] == ["-", f"{cells['bf16 x']:.2f} |"]
    assert "The model waits for data" in table and "slow_input (input x 1.5)" in table
    assert "dense, XLA x: fails: InvalidArgumentError" in table
    # A child that failed altogether: one note for its six empty cells.
    assert f"broken, {', '.join(suite.EFFICIENCY_COLUMNS)}: fails: child exited 1." in table


@pytest.mark.slow
def test_segmentation_trainer_and_plain_fit_measured_side_by_side(tmp_path):
    """Through the benchmark's child process, as `python -m tasks benchmark`
    runs it; train-only flags (--no-qat) are left out of the measurement."""
    # Epochs of 16 steps (128 images): the real length is measured, so a
    # smaller split keeps the test short.
    result = suite.run_efficiency(["segmentation"], "smoke", str(tmp_path),
                                  ["--no-qat", "--set", "model.filters=4",
                                   "--set", "data.num_train=128"],
                                  configurations=())["segmentation"]
    assert "fails" not in result, result
    assert result["steps_per_epoch"] == 16 and result["policy"] == "float32"
    plain = result["plain"]["examples_per_second"]
    trainer = result["trainer"]["examples_per_second"]
    assert plain > 0 and trainer > 0
    assert result["trainer_vs_plain"] == pytest.approx(trainer / plain)
    # The same steps on the same data: the trainer's callbacks cost some, not most.
    assert 0.3 < result["trainer_vs_plain"] < 2.0
    assert set(result["configurations"]) == {"float32"}
    assert result["input"]["input_x"] == pytest.approx(
        result["input"]["examples_per_second"] / result["input"]["model_examples_per_second"])
    flops = result["flops"]
    assert flops["complete"] and 0 < flops["share_of_peak"] < 1
