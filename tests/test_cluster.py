"""Distribution: TF_CONFIG is checked before a multi-worker strategy is made
(a broken one is one clear error, not a hang). Mirrored training over two
logical CPU devices is compared with a single-device run in
tests/test_segmentation_end_to_end.py, whose smoke run is the single-device one."""

import json
import os

import pytest

from common import cluster
from common.errors import UserError

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


def test_a_failing_worker_stops_the_others_instead_of_leaving_them_waiting():
    import sys
    import time

    # Worker 1 fails at once; worker 0 would wait (as in a collective) for a minute.
    command = [sys.executable, "-c",
               "import json, os, sys, time\n"
               "index = json.loads(os.environ['TF_CONFIG'])['task']['index']\n"
               "sys.exit(3) if index == 1 else time.sleep(60)"]
    started = time.monotonic()
    assert cluster.launch(command, workers=2, poll_seconds=0.1) == 3
    assert time.monotonic() - started < 20


def test_workers_that_do_not_finish_are_stopped_at_the_timeout():
    import sys

    command = [sys.executable, "-c", "import time; time.sleep(60)"]
    assert cluster.launch(command, workers=2, timeout=1, poll_seconds=0.1) == 124
