"""What op determinism costs: training throughput with it on and off.

    python benchmarks/determinism.py [--task segmentation] [--preset default] [--rounds 3]

Runs the task's float model for a few epochs of its preset in fresh processes,
alternating deterministic and --fast-nondeterministic, and prints JSON with the
median seconds per epoch of each and their ratio.
"""

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def epoch_seconds(task, preset, epochs, deterministic, root):
    out = tempfile.mkdtemp(dir=root)
    argv = [sys.executable, "-m", f"tasks.{task}.train", "--preset", preset, "--out", out,
            "--export-dir", os.path.join(root, "sm"), "--epochs", str(epochs), "--no-qat"]
    if not deterministic:
        argv.append("--fast-nondeterministic")
    # Train only: the run is stopped as soon as the float stage is recorded.
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = os.path.join(out, "manifest.json")
    while process.poll() is None:
        if os.path.exists(manifest):
            with open(manifest) as handle:
                stages = json.load(handle)["stages"]
            if "float" in stages:
                process.kill()
                break
        time.sleep(0.5)
    process.wait()
    history = os.path.join(out, "stages", "float", "history.csv")
    with open(manifest) as handle:
        seconds = json.load(handle)["stages"]["float"]["seconds"]
    with open(history) as handle:
        count = len(list(csv.DictReader(handle)))
    return seconds / count


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="segmentation")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    timings = {"deterministic": [], "nondeterministic": []}
    with tempfile.TemporaryDirectory() as root:
        for _ in range(args.rounds):  # interleaved: the machine's load hits both alike
            for deterministic in (True, False):
                key = "deterministic" if deterministic else "nondeterministic"
                timings[key].append(epoch_seconds(args.task, args.preset, args.epochs,
                                                  deterministic, root))
    medians = {key: statistics.median(values) for key, values in timings.items()}
    print(json.dumps({
        "task": args.task, "preset": args.preset, "epochs": args.epochs,
        "seconds_per_epoch": timings, "median": medians,
        "deterministic_over_nondeterministic": medians["deterministic"] / medians["nondeterministic"],
    }, indent=2))


if __name__ == "__main__":
    main()
