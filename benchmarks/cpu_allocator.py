"""What TensorFlow's pooling CPU allocator saves: training time with it on and off.

    python benchmarks/cpu_allocator.py [--tasks segmentation,super_resolution] \
        [--preset default] [--epochs 1] [--rounds 1] [--out results.json]

`common/__init__.py` sets TF_CPU_ALLOCATOR_USE_BFC=true. This runs each task's
float stage of the preset in fresh processes, alternating the allocator on
and off (the machine's load hits both alike), and prints JSON with the
stage's median seconds, the process's user and system CPU seconds and its
peak memory, and the ratio of the seconds.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

TASKS = ("segmentation", "detection", "super_resolution", "translation", "sentiment", "tts")


def float_stage(task, preset, epochs, pooled, root):
    """(float stage seconds, user CPU s, system CPU s, peak RSS MiB) of one run."""
    out = tempfile.mkdtemp(dir=root)
    argv = [sys.executable, "-m", f"tasks.{task}.train", "--preset", preset, "--out", out,
            "--export-dir", os.path.join(root, "sm"), "--epochs", str(epochs), "--no-qat"]
    env = dict(os.environ, TF_CPU_ALLOCATOR_USE_BFC="true" if pooled else "false")
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    manifest = os.path.join(out, "manifest.json")
    # Train only: the run is stopped as soon as the float stage is recorded.
    while process.poll() is None:
        if os.path.exists(manifest):
            with open(manifest) as handle:
                if "float" in json.load(handle)["stages"]:
                    process.kill()
                    break
        time.sleep(0.5)
    _, _, usage = os.wait4(process.pid, 0)
    with open(manifest) as handle:
        seconds = json.load(handle)["stages"]["float"]["seconds"]
    return {"seconds": round(seconds, 1), "user": round(usage.ru_utime, 1),
            "system": round(usage.ru_stime, 1), "peak_mib": usage.ru_maxrss // 1024}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--preset", default="default")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as root:
        for task in args.tasks.split(","):
            runs = {"pooled": [], "unpooled": []}
            for _ in range(args.rounds):
                for pooled in (True, False):
                    measured = float_stage(task, args.preset, args.epochs, pooled, root)
                    runs["pooled" if pooled else "unpooled"].append(measured)
                    print(f"[benchmark] {task} {'pooled' if pooled else 'unpooled'}: "
                          f"{json.dumps(measured)}", file=sys.stderr, flush=True)
            medians = {key: {name: statistics.median(run[name] for run in values)
                             for name in values[0]} for key, values in runs.items()}
            results[task] = {"runs": runs, "median": medians, "unpooled_over_pooled_seconds":
                             round(medians["unpooled"]["seconds"] /
                                   medians["pooled"]["seconds"], 2)}
    text = json.dumps({"preset": args.preset, "epochs": args.epochs, "rounds": args.rounds,
                       "tasks": results}, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
