"""`python -m tasks` lists the tasks and refuses unknown ones. That
`python -m tasks benchmark` runs one and writes its row as JSON, Markdown and
a chart is checked in tests/test_segmentation_end_to_end.py, which also uses
that run as its second run of the same seed."""

import os
import subprocess
import sys

import pytest

from tasks import suite

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_listing_names_every_task_with_presets_and_metric():
    listing = subprocess.run([sys.executable, "-m", "tasks"], cwd=ROOT, capture_output=True,
                             text=True, timeout=300, check=True).stdout
    for name in ("segmentation", "detection", "super_resolution", "sentiment"):
        entry = suite.describe(name)
        assert f"{name}\n  presets: {', '.join(entry['presets'])}" in listing
        assert f"primary metric: {entry['primary_metric']}" in listing
        assert "smoke" in entry["presets"] and "default" in entry["presets"]
    assert "oxford_iiit_pet (TFDS)" in listing


def test_unknown_task_is_refused(capsys):
    with pytest.raises(SystemExit):
        suite.main(["benchmark", "--tasks", "speech"])
    assert "unknown task(s) ['speech']" in capsys.readouterr().err


def test_readme_block_is_replaced_and_a_missing_block_is_an_error(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{suite.README_START}\nold table\n{suite.README_END}\nafter\n")
    suite.update_readme(str(readme), "| new |\n")
    assert readme.read_text() == (f"# x\n{suite.README_START}\n| new |\n"
                                  f"{suite.README_END}\nafter\n")
    readme.write_text("# no block\n")
    with pytest.raises(ValueError, match="no '<!-- suite table: start"):
        suite.update_readme(str(readme), "| new |\n")


def fake_flow(log):
    """run_task's stand-in: a flow of 0.3 s that records when it ran."""
    import time

    def run_task(name, preset, folder, extra=()):
        started = time.perf_counter()
        time.sleep(0.3)
        log.append((name, started, time.perf_counter()))
        return {"task": name, "preset": preset}, f"{folder}/{name}-{preset}", 100.0, 0.3
    return run_task


def test_flows_run_two_at_a_time_and_give_the_same_results_as_one_at_a_time(monkeypatch):
    names = ["a", "b", "c"]
    serial_log, parallel_log = [], []
    monkeypatch.setattr(suite, "run_task", fake_flow(serial_log))
    serial, _ = suite.train_all(names, "smoke", "/runs", jobs=1)
    monkeypatch.setattr(suite, "run_task", fake_flow(parallel_log))
    parallel, loads = suite.train_all(names, "smoke", "/runs", jobs=2)
    assert parallel == serial and set(parallel) == set(names)
    assert len(loads) == len(names) + 1  # at the start and as each flow ended
    # One at a time: no overlap. Two at a time: the first two overlap.
    spans = sorted(serial_log, key=lambda entry: entry[1])
    assert all(later[1] >= earlier[2] for earlier, later in zip(spans, spans[1:]))
    first, second = sorted(parallel_log, key=lambda entry: entry[1])[:2]
    assert second[1] < first[2]


def test_a_failed_flow_stops_the_benchmark(monkeypatch):
    def failing(name, preset, folder, extra=()):
        raise RuntimeError(f"{name}: training failed (exit 1)")
    monkeypatch.setattr(suite, "run_task", failing)
    with pytest.raises(RuntimeError, match="a: training failed"):
        suite.train_all(["a", "b"], "smoke", "/runs", jobs=2)


def test_an_efficiency_child_that_dies_is_restarted_after_the_task_it_died_on(
        monkeypatch, tmp_path):
    """One child measures every task; when it dies on a task, that task's
    cells say so and a new child measures the tasks after it."""
    commands = []

    def child(command, **kwargs):
        tasks = command[command.index("--tasks") + 1:command.index("--preset")]
        commands.append(tasks)
        for name in tasks:
            if name == "b":  # dies here, after writing a's result
                return subprocess.CompletedProcess(command, -11)
            (tmp_path / f"{name}-efficiency.json").write_text(f'{{"measured": "{name}"}}')
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(suite.subprocess, "run", child)
    results = suite.run_efficiency(["a", "b", "c"], "smoke", str(tmp_path),
                                   run_dirs={"a": "/runs/a-smoke"})
    assert commands == [["a", "b", "c"], ["c"]]
    assert results["a"] == {"measured": "a"} and results["c"] == {"measured": "c"}
    assert results["b"]["fails"].startswith("efficiency child exited -11; see ")


def test_the_table_says_how_the_flows_shared_the_machine_and_why_the_trainer_loses():
    efficiency = {"trainer_vs_plain": 0.6, "steps_per_epoch": 8,
                  "trainer": {"epoch_end_by_callback": {"BestCheckpoint": 0.14,
                                                        "AtomicBackupAndRestore": 0.03,
                                                        "CSVLogger": 0.0001},
                              "batch_hook_ms_by_callback": {"TensorBoard": 0.4}}}
    row = {"task": "sentiment", "primary metric": "accuracy", "efficiency": efficiency,
           **suite.efficiency_cells(efficiency)}
    run = {"jobs": 2, "load_average": {"training": [2.0, 3.5], "efficiency": [1.2, 1.4]}}
    table = suite.markdown([row], "smoke", 600.0, run)
    assert ("Task flows ran 2 at a time: their wall s and train examples/s include sharing "
            "the CPU with another flow (1-minute load average 2.0-3.5).") in table
    assert "one task at a time with no flow running (load average 1.2-1.4)" in table
    assert ("sentiment: the trainer keeps 60% of a plain fit (below 95%) on epochs of 8 "
            "steps (the run's); its end-of-epoch work: BestCheckpoint 0.14 s, AtomicBackupAndRestore "
            "0.03 s; after every step: TensorBoard 0.4 ms.") in table


def test_litert_files_of_a_run_are_timed_again_as_its_report_timed_them(tmp_path):
    """The efficiency phase times a run's float and INT8 `.tflite` again,
    alone on the machine: the same files, batch 1, the first test example."""
    import json
    import types

    import keras
    import numpy as np
    import tensorflow as tf

    from common import config as config_lib
    from common import data, export

    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    export.convert_to_tflite(model, str(tmp_path / "model_float.tflite"))
    (tmp_path / "report.json").write_text(json.dumps({"artifacts": {
        "tflite_float": "model_float.tflite", "tflite_int8": "model_float.tflite",
        "tflite_mobile": "model_mobile.tflite", "keras": "model.keras"}}))
    examples = tf.data.Dataset.from_tensor_slices(
        (np.ones((4, 8), "float32"), np.zeros((4, 3), "float32"))).batch(2)
    splits = data.Splits(examples, examples, examples)
    cfg = config_lib.BaseConfig()
    cfg.export.latency_samples = 5
    latency = suite.litert_latency(types.SimpleNamespace(), cfg, splits, str(tmp_path))
    assert set(latency) == {"tflite_float", "tflite_int8"}
    assert all(0 < value < 1000 for value in latency.values())
    # The table shows the latency measured alone and keeps the run's own.
    (tmp_path / "info.json").write_text("{}")
    report = {"primary_metric": "mse", "metrics": {}, "sizes_bytes": {}, "seconds": {},
              "latency_ms": {"tflite_float": 9.0, "tflite_int8": 7.0}}
    row = suite.table_row("dense", report, str(tmp_path), 100.0, 1.0,
                          {"litert_ms": latency})
    assert row["LiteRT float ms"] == latency["tflite_float"]
    assert row["LiteRT INT8 ms"] == latency["tflite_int8"]
    assert row["LiteRT ms in the run"] == report["latency_ms"]
