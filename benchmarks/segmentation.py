"""Segmentation benchmark: quality, size, LiteRT latency and XLA throughput, as JSON.

    python benchmarks/segmentation.py                     # runs the default preset first
    python benchmarks/segmentation.py --run runs/segmentation-default   # reuse a finished run

Latencies are medians of interleaved rounds (float, INT8, float, ...) so both
files see the same machine load; XLA on/off throughput is measured the same
way, on the default model and batch, after each variant's compile warm-up.
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tasks.segmentation as task  # noqa: E402
from common import config, litert, training  # noqa: E402
from tasks.segmentation import train  # noqa: E402


def litert_latency(run_dir, rounds=7, calls_per_round=20):
    size = json.load(open(os.path.join(run_dir, "config.json")))["data"]["image_size"]
    example = np.random.default_rng(0).random((1, size, size, 3)).astype("float32")
    models = {name: litert.LiteRTModel(os.path.join(run_dir, f"model_{name}.tflite"))
              for name in ("float", "int8")}
    samples = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            samples[name].append(model.median_latency_ms(example, repeats=calls_per_round))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    medians["int8_over_float"] = medians["int8"] / medians["float"]
    return medians


def xla_throughput(rounds=5, steps_per_round=10):
    """Training examples per second with jit_compile on and off, interleaved."""
    cfg = config.from_preset(task.Config, task.PRESETS, "default")
    splits = task.build_datasets(cfg)
    batch = next(iter(splits.train))
    models = {}
    for xla in (False, True):
        keras.utils.set_random_seed(0)
        model = task.build_model(cfg, splits.info)
        model.compile(optimizer=training.make_optimizer(cfg.train, 100), jit_compile=xla,
                      **task.compile_args(cfg, splits.info))
        model.train_on_batch(*batch)  # compile / trace before timing
        models["xla_on" if xla else "xla_off"] = model
    timings = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            start = time.perf_counter()
            for _ in range(steps_per_round):
                model.train_on_batch(*batch)
            timings[name].append(steps_per_round * cfg.train.batch_size
                                 / (time.perf_counter() - start))
    result = {f"{name}_examples_per_s": statistics.median(values)
              for name, values in timings.items()}
    result["xla_speedup"] = result["xla_on_examples_per_s"] / result["xla_off_examples_per_s"]
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a finished default run folder to reuse")
    args = parser.parse_args()
    run_dir = args.run
    if run_dir is None:
        run_dir = "runs/segmentation-benchmark"
        train.main(["--preset", "default", "--out", run_dir])
    report = json.load(open(os.path.join(run_dir, "report.json")))
    result = {
        "run": run_dir,
        "dice": {name: report["metrics"][name]["dice"]
                 for name in ("float", "int8", "ptq_int8", "baseline") if name in report["metrics"]},
        "sizes_bytes": report["sizes_bytes"],
        "int8_size_ratio": report["sizes_bytes"]["tflite_int8"] / report["sizes_bytes"]["tflite_float"],
        "litert_latency_ms_batch1_2threads": litert_latency(run_dir),
        "training_throughput": xla_throughput(),
        "train_seconds": report["seconds"],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
