"""Super-resolution benchmark: PSNR/SSIM of bicubic, float and INT8 on whole test
images, and LiteRT time per 64x64 tile, as JSON.

    python benchmarks/super_resolution.py                 # trains the default preset first
    python benchmarks/super_resolution.py --run runs/super_resolution-default   # reuse a run

Whole images, not the report's tiles: each test image (the run's data source;
built in: chelsea, coffee, rocket) is cropped to a multiple of 4, downscaled
x4 (bicubic, antialiased), and upscaled by bicubic, by the float Keras
generators (whole image at once: PSNR stage, GAN stage, exported) and by
the LiteRT float / INT8 files (overlapping tiles). Scores use the usual
4-pixel border crop. Latencies of the float, QAT INT8 and post-training
INT8 files are medians of interleaved rounds (float, QAT, PTQ, float, ...)
so all see the same machine load; still noisy on a shared machine.

    python benchmarks/super_resolution.py --run RUN --latency-only --json out.json
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

import tasks.super_resolution as task  # noqa: E402
from common import cli, litert  # noqa: E402
from common import report as report_lib  # noqa: E402
from tasks.super_resolution import data, train  # noqa: E402
from tasks.super_resolution.metrics import image_scores  # noqa: E402
from tasks.super_resolution.tiling import upscale_tiled  # noqa: E402


def litert_latency(run_dir, tile, files, rounds=7, calls_per_round=10):
    """Median batch-1 milliseconds per tile of each file (2 threads); rounds
    interleave the files so each sees the same machine load."""
    example = np.random.default_rng(0).random((1, tile, tile, 3)).astype("float32")
    models = {name: litert.LiteRTModel(os.path.join(run_dir, path))
              for name, path in files.items()}
    samples = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            samples[name].append(model.median_latency_ms(example, repeats=calls_per_round))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    for name in ("qat_int8", "ptq_int8"):
        if name in medians:
            medians[f"{name}_over_float"] = medians[name] / medians["float"]
    medians["round_medians_min_max"] = {name: [min(values), max(values)]
                                        for name, values in samples.items()}
    medians["files"] = files
    medians["tile_lr"] = f"{tile}x{tile}"
    return medians


def whole_image_scores(run_dir, cfg):
    """{model: {metric: mean}} and per-image PSNR-Y over the run's test images."""
    scale, tile, overlap = cfg.model.scale, cfg.model.tile_size, cfg.model.tile_overlap
    predictors = {"bicubic": lambda low: data.bicubic_upscale(low, scale).numpy()}
    for name in ("psnr_generator", "gan_generator", "model"):
        path = os.path.join(run_dir, f"{name}.keras")
        if os.path.exists(path):
            generator = keras.saving.load_model(path, custom_objects=task.custom_objects(),
                                                safe_mode=True)
            label = {"model": "float_exported"}.get(name, f"float_{name.split('_')[0]}_stage")
            predictors[label] = (lambda g: lambda low: np.asarray(g(low[None]))[0])(generator)
    for name in ("float", "int8", "ptq_int8"):
        path = os.path.join(run_dir, f"model_{name}.tflite")
        if os.path.exists(path):
            runner = litert.LiteRTModel(path)
            label = f"litert_{name}"
            predictors[label] = (lambda r: lambda low: upscale_tiled(
                r, low, tile, overlap, scale))(runner)
    source = data.image_source(cfg)
    per_image, totals = {}, {}
    for image_name, image in source.test_images:
        hr = data.crop_to_scale(image, scale).astype(np.float32) / 255.0
        low = data.downscale(hr, scale).numpy()
        per_image[image_name] = {}
        for label, predict in predictors.items():
            scores = image_scores(hr, np.clip(predict(low), 0.0, 1.0), scale)
            per_image[image_name][label] = round(scores["psnr_y"], 3)
            for key, value in scores.items():
                totals.setdefault(label, {}).setdefault(key, []).append(value)
    means = {label: {key: float(np.mean(values)) for key, values in scores.items()}
             for label, scores in totals.items()}
    return means, per_image


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a finished run folder to reuse")
    parser.add_argument("--json", help="also write the result to this file")
    parser.add_argument("--latency-only", action="store_true",
                        help="only the float / QAT INT8 / PTQ INT8 latencies (no PSNR)")
    args = parser.parse_args()
    run_dir = args.run
    train_wall_seconds = None
    if run_dir is None:
        run_dir = "runs/super_resolution-benchmark"
        started = time.time()
        train.main(["--preset", "default", "--out", run_dir])
        train_wall_seconds = time.time() - started
    report = json.load(open(os.path.join(run_dir, "report.json")))
    cfg = cli.load_config(task, os.path.join(run_dir, "config.json"))
    files = report_lib.tflite_files(report)
    latency = litert_latency(run_dir, cfg.model.tile_size, files)
    keys = {value: key for key, value in report["artifacts"].items()}
    requantize = {name: report.get("quantization", {}).get(keys[path], {}).get(
        "tflite", {}).get("requantize_ops") for name, path in files.items() if name != "float"}
    if args.latency_only:
        text = json.dumps({"run": run_dir, "preset": report.get("preset"),
                           "litert_latency_ms_per_tile_batch1_2threads": latency,
                           "requantize_ops": requantize,
                           "int8_validation": report.get("int8_validation", {}),
                           "sizes_bytes": report["sizes_bytes"]}, indent=2)
        print(text)
        if args.json:
            with open(args.json, "w") as handle:
                handle.write(text + "\n")
        return
    means, per_image = whole_image_scores(run_dir, cfg)
    bicubic = means["bicubic"]["psnr_y"]
    result = {
        "run": run_dir,
        "whole_images": means,
        "psnr_y_gain_over_bicubic_db": {label: scores["psnr_y"] - bicubic
                                        for label, scores in means.items()},
        "int8_loss_vs_float_db": means["float_exported"]["psnr_y"] - means["litert_int8"]["psnr_y"]
        if "litert_int8" in means and "float_exported" in means else None,
        "per_image_psnr_y": per_image,
        "report_test_tiles_psnr_y": {name: values["psnr_y"]
                                     for name, values in report["metrics"].items()},
        "sizes_bytes": report["sizes_bytes"],
        "litert_latency_ms_per_tile_batch1_2threads": latency,
        "requantize_ops": requantize,
        "int8_validation": report.get("int8_validation", {}),
        "train_seconds": report["seconds"],
        "train_wall_seconds": train_wall_seconds,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
