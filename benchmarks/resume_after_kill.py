"""Kill a training run with SIGKILL at chosen moments, resume it, compare reports.

    python benchmarks/resume_after_kill.py                       # segmentation, default preset
    python benchmarks/resume_after_kill.py --preset smoke --kills float,qat,export

One uninterrupted run is the reference. Then, for each stage named in
--kills, a fresh run is killed (kill -9) once that stage has started, and
resumed with --resume until it finishes. Prints JSON: each run's primary
metrics, seconds, and the largest difference from the reference.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

PYTHON = sys.executable


def stage_started(out, stage):
    """True once `stage` is under way in the run folder `out`."""
    if stage == "float":
        return os.path.exists(os.path.join(out, "stages", "float", "backup",
                                           "training_metadata.json"))
    if stage == "qat":
        return os.path.isdir(os.path.join(out, "stages", "qat"))
    if stage == "gan":
        return os.path.isdir(os.path.join(out, "stages", "gan"))
    if stage == "export":
        manifest = os.path.join(out, "manifest.json")
        if not os.path.exists(manifest):
            return False
        with open(manifest) as handle:
            return any(name.startswith("export:") for name in json.load(handle)["stages"])
    raise ValueError(f"unknown stage {stage!r}")


def train(task, argv, kill_at=None, timeout=7200):
    command = [PYTHON, "-m", f"tasks.{task}.train", *argv]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    out = argv[argv.index("--out") + 1]
    deadline = time.time() + timeout
    killed = False
    while process.poll() is None and time.time() < deadline:
        if kill_at and stage_started(out, kill_at):
            time.sleep(2.0)  # inside the stage, not at its first line
            process.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.2)
    _, errors = process.communicate(timeout=60)
    if process.returncode not in (0, -signal.SIGKILL):
        print(errors.decode("utf-8", "replace")[-3000:], file=sys.stderr)
    return killed, process.returncode


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="segmentation")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--kills", default="float,qat,export")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="resume-bench-")
    results = {}
    try:
        for name in ["reference"] + args.kills.split(","):
            out = os.path.join(root, name)
            argv = ["--preset", args.preset, "--out", out,
                    "--export-dir", os.path.join(root, "saved_models")]
            started = time.time()
            killed, code = train(args.task, argv, None if name == "reference" else name)
            resumes = 0
            while killed or code != 0:
                if not killed and code != 0:
                    raise SystemExit(f"{name}: resumed run failed with exit code {code}")
                resumes += 1
                killed, code = train(args.task, argv + ["--resume"])
            with open(os.path.join(out, "report.json")) as handle:
                report = json.load(handle)
            primary = report["primary_metric"]
            results[name] = {
                "resumes": resumes, "wall_seconds": round(time.time() - started, 1),
                primary: {key: report["metrics"][key][primary]
                          for key in ("float", "int8", "ptq_int8") if key in report["metrics"]},
            }
        reference = results["reference"]
        for name, result in results.items():
            primary = next(key for key in result if isinstance(result[key], dict))
            result["largest_difference"] = max(
                abs(result[primary][key] - reference[primary][key]) for key in result[primary])
        print(json.dumps({"task": args.task, "preset": args.preset, "runs": results}, indent=2))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
