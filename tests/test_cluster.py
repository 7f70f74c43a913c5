"""Distribution: TF_CONFIG is checked before a multi-worker strategy is made
(a broken one is one clear error, not a hang), and mirrored training over two
logical CPU devices matches a single-device run."""

import json
import os
import subprocess
import sys

import pytest

from common import cluster
from common.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOOD = {"cluster": {"worker": ["127.0.0.1:12345", "127.0.0.1:12346"]},
        "task": {"type": "worker", "index": 1}}


def check(value):
    text = value if isinstance(value, str) else json.dumps(value)
    return cluster.check_tf_config({"TF_CONFIG": text})


def test_a_complete_tf_config_passes_and_names_the_chief():
    config = check(GOOD)
    assert not cluster.is_chief(config)
    assert cluster.is_chief(check(dict(GOOD, task={"type": "worker", "index": 0})))
    assert cluster.worker_run_dir("runs/x", config) == os.path.join("runs/x", "workers",
                                                                    "worker-1")


@pytest.mark.parametrize("value,message", [
    ("", "not set"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "wor', "not valid JSON"),
    ({"task": {"type": "worker", "index": 0}}, '"cluster"'),
    ({"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}, "no \"worker\""),
    ({"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}},
     "'localhost' is not \"host:port\""),
    ({"cluster": GOOD["cluster"]}, '"task"'),
    ({"cluster": GOOD["cluster"], "task": {"type": "ps", "index": 0}}, "'ps' is not in"),
    ({"cluster": GOOD["cluster"], "task": {"type": "worker", "index": 2}}, "outside cluster"),
])
def test_broken_tf_config_is_one_clear_error(value, message):
    with pytest.raises(UserError, match=message):
        check(value) if value else cluster.check_tf_config({})


def test_multi_worker_strategy_checks_tf_config_first(monkeypatch):
    from common import training

    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["127.0.0.1:1"]}')
    with pytest.raises(UserError, match="TF_CONFIG: not valid JSON"):
        training.make_strategy("multi_worker")


# The `prepare` and `float` stages of the segmentation smoke run in a child
# process (the strategy's logical devices must exist before TensorFlow
# starts), scored on the test split: QAT and export do not depend on the
# strategy and cost minutes.
FLOAT_STAGE = """
import json, sys
import tasks.segmentation as task
from common import artifacts, pipeline
cfg, splits, model = pipeline.run_float_stage(task, sys.argv[1:])
info = splits.info
fns = dict(task.baseline_predict_fns(splits, info),
           float=pipeline.predict_fn_from_raw(task, artifacts.keras_raw_fn(model), cfg, info))
print(json.dumps({name: task.score(fn, splits.test, info)["dice"] for name, fn in fns.items()}))
"""


def _dice(tmp_path, name, *extra):
    result = subprocess.run(
        [sys.executable, "-c", FLOAT_STAGE, "--preset", "smoke", "--out", str(tmp_path / name),
         "--export-dir", str(tmp_path / "sm"), *extra],
        cwd=ROOT, check=True, capture_output=True, text=True, timeout=900)
    scores = json.loads(result.stdout.strip().splitlines()[-1])
    return scores["float"], max(value for key, value in scores.items() if key != "float")


@pytest.mark.slow
def test_mirrored_over_two_logical_cpus_matches_one_device(tmp_path):
    single, baseline = _dice(tmp_path, "single")
    mirrored, _ = _dice(tmp_path, "mirrored", "--strategy", "mirrored")
    assert mirrored > baseline + 0.1
    assert abs(mirrored - single) < 0.1
