import types

import pytest

from common import cli
from tests.test_config import PRESETS, ExampleConfig

TASK = types.SimpleNamespace(NAME="example", Config=ExampleConfig, PRESETS=PRESETS,
                             CLI_FLAGS={"--filters": "model.filters"})


def test_shared_flags_and_task_flags_reach_the_config():
    cfg = cli.parse_train_args(TASK, [
        "--preset", "smoke", "--epochs", "5", "--batch-size", "4", "--no-qat", "--xla",
        "--seed", "3", "--resume", "--filters", "16", "--set", "train.optimizer=sgd",
        "--data", "/tmp/folder", "--strategy", "mirrored", "--mixed-precision"])
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.qat.enabled) == (5, 4, False)
    assert cfg.run.xla is True and cfg.run.seed == 3 and cfg.run.resume
    assert cfg.model.filters == 16 and cfg.train.optimizer == "sgd"
    assert cfg.data.source == "/tmp/folder" and cfg.run.strategy == "mirrored"
    assert cfg.run.mixed_precision and cfg.run.out == "runs/example-smoke"


def test_preset_then_flags_then_set_each_win_over_the_one_before():
    cfg = cli.parse_train_args(TASK, ["--preset", "smoke"])
    assert (cfg.train.epochs, cfg.model.filters) == (1, 4)  # the preset's
    cfg = cli.parse_train_args(TASK, ["--preset", "smoke", "--epochs", "5", "--filters", "6"])
    assert (cfg.train.epochs, cfg.model.filters) == (5, 6)  # flags over the preset
    cfg = cli.parse_train_args(TASK, [
        "--set", "train.epochs=7", "--preset", "smoke", "--epochs", "5",
        "--set", "model.filters=9", "--filters", "6", "--out", "elsewhere"])
    # --set over flags, whatever the order on the command line.
    assert (cfg.train.epochs, cfg.model.filters, cfg.run.out) == (7, 9, "elsewhere")


def test_xla_defaults_to_automatic():
    assert cli.parse_train_args(TASK, []).run.xla is None
    assert cli.parse_train_args(TASK, ["--no-xla"]).run.xla is False


def test_user_errors_become_one_line_and_exit_code_2(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main_guard(lambda: cli.parse_train_args(TASK, ["--set", "train.nope=1"]))
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown config key 'train.nope'") and "\n" not in err


def test_saved_config_loads_back(tmp_path):
    cfg = cli.parse_train_args(TASK, ["--preset", "smoke", "--epochs", "9"])
    path = tmp_path / "config.json"
    path.write_text(cfg.to_json())
    loaded = cli.load_config(TASK, str(path))
    assert loaded == cfg
