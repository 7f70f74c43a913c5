"""Multi-worker training on TensorFlow's own engine (`MultiWorkerMirroredStrategy`).

Every worker runs the same command with its own `TF_CONFIG`; worker 0 (the
chief) writes the run folder and the exports, the others write theirs under
`<run folder>/workers/<index>/` (Keras's rule: only the chief's files count).

- `check_tf_config()` validates `TF_CONFIG` before the strategy is made: a
  wrong or half-written one is one clear error, not a hang in the collective
  set-up.
- `launch(command, workers)` starts `workers` copies of a command on this
  machine with `TF_CONFIG` on free loopback ports (`python -m
  common.cluster --workers 2 -- python -m tasks.segmentation.train ...`).
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time

from common.errors import UserError

WORKER_TYPES = ("chief", "worker")


def _fail(message):
    raise UserError(f"TF_CONFIG: {message}")


def check_tf_config(environ=None):
    """The parsed `TF_CONFIG` of a multi-worker run, checked; UserError if
    it is missing, not JSON, or names a task the cluster does not have."""
    text = (environ if environ is not None else os.environ).get("TF_CONFIG")
    if not text:
        _fail("not set; --strategy multi_worker needs every worker's TF_CONFIG "
              '({"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", '
              '"index": i}}), or start the workers with `python -m common.cluster`')
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        _fail(f"not valid JSON ({error.msg} at character {error.pos}): {text[:80]!r}")
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict):
        _fail('expected an object with "cluster": {"worker": ["host:port", ...]}')
    cluster = config["cluster"]
    if not cluster.get("worker") and not cluster.get("chief"):
        _fail('"cluster" lists no "worker" (or "chief") addresses')
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses:
            _fail(f'cluster "{job}" must be a non-empty list of "host:port" strings')
        for address in addresses:
            host, _, port = str(address).rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                _fail(f'cluster "{job}" address {address!r} is not "host:port"')
    task = config.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        _fail('expected "task": {"type": "worker", "index": i} naming this process')
    job, index = task["type"], task["index"]
    if job not in cluster:
        _fail(f'task type {job!r} is not in the cluster ({", ".join(cluster)})')
    if not isinstance(index, int) or not 0 <= index < len(cluster[job]):
        _fail(f'task index {index!r} is outside cluster "{job}" '
              f"(0..{len(cluster[job]) - 1})")
    return config


def is_chief(config):
    task = config["task"]
    chief_job = "chief" if "chief" in config["cluster"] else "worker"
    return task["type"] == chief_job and task["index"] == 0


def worker_run_dir(run_dir, config):
    """Where this worker writes: the run folder for the chief, a folder of
    its own below it for the others."""
    if is_chief(config):
        return run_dir
    return os.path.join(run_dir, "workers", f"{config['task']['type']}-{config['task']['index']}")


def barrier(strategy):
    """Every worker waits here until all have arrived (an all-reduce), so no
    worker leaves while another still has collective work pending."""
    import tensorflow as tf

    strategy.reduce("SUM", strategy.run(lambda: tf.constant(1.0)), axis=None)


def local_strategy():
    """The default (single-process) strategy, for work only the chief does."""
    import tensorflow as tf

    return tf.distribute.get_strategy()


def free_ports(count):
    sockets = []
    for _ in range(count):
        handle = socket.socket()
        handle.bind(("127.0.0.1", 0))
        sockets.append(handle)
    ports = [handle.getsockname()[1] for handle in sockets]
    for handle in sockets:
        handle.close()
    return ports


def launch(command, workers, timeout=None, poll_seconds=0.5):
    """Run `command` as `workers` workers on loopback; the chief's exit code.

    A worker that fails stops the others (they would wait for it in their
    next collective for as long as the coordination service allows), and
    `timeout` seconds stop them all (exit code 124).
    """
    addresses = [f"127.0.0.1:{port}" for port in free_ports(workers)]
    processes = []
    for index in range(workers):
        environ = dict(os.environ, TF_CONFIG=json.dumps(
            {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}))
        processes.append(subprocess.Popen(command, env=environ))
    started = time.monotonic()
    try:
        while True:
            codes = [process.poll() for process in processes]
            failed = [index for index, code in enumerate(codes) if code not in (None, 0)]
            if failed:
                print(f"cluster: worker {failed[0]} exited with code {codes[failed[0]]}; "
                      "stopping the other workers", file=sys.stderr)
                return codes[failed[0]]
            if all(code == 0 for code in codes):
                return 0
            if timeout is not None and time.monotonic() - started > timeout:
                print(f"cluster: the workers did not finish within {timeout:g} s; "
                      "stopping them", file=sys.stderr)
                return 124
            time.sleep(poll_seconds)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m common.cluster",
        description="Start N workers of a training command on this machine "
                    "(TF_CONFIG on loopback ports), e.g. `python -m common.cluster "
                    "--workers 2 -- python -m tasks.segmentation.train --preset smoke "
                    "--strategy multi_worker`.")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=None, help="seconds")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --")
    return launch(command, args.workers, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
