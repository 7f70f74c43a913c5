"""The run folder: lock, resume checks, stale temporaries, stage manifest."""

import json
import os
import subprocess
import sys

import pytest

from common import config, files
from common.errors import UserError
from common.runfolder import RunFolder, config_differences


def make_config(tmp_path, **run):
    cfg = config.BaseConfig()
    cfg.run.out = str(tmp_path / "run")
    for key, value in run.items():
        setattr(cfg.run, key, value)
    return cfg


def test_a_second_process_cannot_train_into_the_same_folder(tmp_path):
    cfg = make_config(tmp_path)
    with RunFolder(cfg):
        with pytest.raises(UserError, match=rf"run is in use by process {os.getpid()} "):
            RunFolder(make_config(tmp_path, resume=True)).__enter__()
    # Released when the first run ends.
    with RunFolder(make_config(tmp_path, resume=True)):
        pass


def test_resume_with_another_config_names_every_difference(tmp_path):
    cfg = make_config(tmp_path)
    with RunFolder(cfg) as run:
        run.record("prepare", 1.0)
    changed = make_config(tmp_path, resume=True)
    changed.train.epochs, changed.run.seed = 99, 7
    with pytest.raises(UserError, match=r"run.seed: 0 -> 7; train.epochs: 10 -> 99$"):
        RunFolder(changed).__enter__()


def test_config_differences_ignore_resume_and_verbosity():
    saved = {"run": {"resume": False, "verbose": False, "seed": 1}}
    assert config_differences(saved, {"run": {"resume": True, "verbose": True, "seed": 1}}) == []


def test_an_interrupted_run_needs_resume_and_a_finished_one_is_replaced(tmp_path):
    with RunFolder(make_config(tmp_path)) as run:
        run.record("prepare", 1.0)
        run.record("float", 2.0, {"model": "model.keras"})
    with pytest.raises(UserError, match="holds an interrupted run; pass --resume"):
        RunFolder(make_config(tmp_path)).__enter__()
    with RunFolder(make_config(tmp_path, resume=True)) as run:
        assert run.finished("float") == {"model": "model.keras"}
        assert run.finished("qat") is None
        files.write_json_atomic(run.file("report.json"), {})
    with RunFolder(make_config(tmp_path)) as run:  # finished: a fresh run starts over
        assert run.finished("float") is None
        assert not os.path.exists(run.file("manifest.json"))


def test_temporaries_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, timeout=60)
    pid = int(dead.stdout)
    folder = tmp_path / "run"
    (folder / "stages" / "float" / "backup").mkdir(parents=True)
    stale_file = folder / "stages" / "float" / "backup" / f"latest.weights.h5.tmp-{pid}.weights.h5"
    stale_file.write_bytes(b"half")
    stale_folder = folder / f"model.keras.tmp-{pid}.keras"
    stale_folder.mkdir()
    alive = folder / f"report.json.tmp-{os.getpid()}"
    alive.write_text("{}")
    kept = folder / "model.keras"
    kept.write_bytes(b"whole")
    with RunFolder(make_config(tmp_path, resume=True)):
        pass
    assert not stale_file.exists() and not stale_folder.exists()
    assert alive.exists() and kept.exists()


def test_manifest_records_stages_with_seconds(tmp_path):
    with RunFolder(make_config(tmp_path)) as run:
        run.record("prepare", 1.234, {"skipped": 0})
        run.record("float", 5.0)
        with open(run.file("manifest.json")) as handle:
            manifest = json.load(handle)
    assert list(manifest["stages"]) == ["prepare", "float"]
    assert manifest["stages"]["prepare"]["seconds"] == 1.23
    assert run.seconds() == {"prepare": 1.23, "float": 5.0}
