"""Detection benchmark: frames per second of the float, QAT INT8 and
post-training INT8 `.tflite` (batch 1, 2 threads, default input size) and
the float / PTQ / QAT mAP table.

    python benchmarks/detection.py                               # trains the default preset first
    python benchmarks/detection.py --run runs/detection-default  # reuse a finished run
    python benchmarks/detection.py --run RUN --out result.json   # also write the JSON

FPS is given twice: the `.tflite` alone (backbone + head), and end to end with
the host-side decoding + NMS (`tasks/detection/postprocess.py`) that ships
with it. Rounds interleave the files so each sees the same machine load; the
medians are still noisy on a shared machine. Which file is which comes from
the run's report (`model_int8.tflite` is whichever INT8 file won on
validation; the QAT file is `model_qat_int8.tflite` when it lost).
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

from common import litert  # noqa: E402
from common import report as report_lib  # noqa: E402
from tasks.detection import postprocess, synthetic, train  # noqa: E402

NAMES = ("float", "int8 (QAT)", "int8 (PTQ)")


def tflite_files(report):
    """{"float" | "int8 (QAT)" | "int8 (PTQ)": file name} from a run report."""
    return {dict(zip(("float", "qat_int8", "ptq_int8"), NAMES))[key]: name
            for key, name in report_lib.tflite_files(report).items()}


def frames_per_second(run_dir, files, rounds=7, calls_per_round=30):
    with open(os.path.join(run_dir, "config.json")) as handle:
        cfg = json.load(handle)
    size = cfg["model"]["image_size"]
    post = cfg["postprocess"]
    image = synthetic.make_split(1, size, 1, 4, seed=[0, 9])[0].astype(np.float32)
    models = {name: litert.LiteRTModel(os.path.join(run_dir, path), num_threads=2)
              for name, path in files.items()}
    model_ms = {name: [] for name in models}
    end_to_end_ms = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            model_ms[name].append(model.median_latency_ms(image, repeats=calls_per_round))
            times = []
            for _ in range(calls_per_round):
                start = time.perf_counter()
                postprocess.postprocess(
                    model(image), size, score_threshold=post["display_threshold"],
                    iou_threshold=post["iou_threshold"], max_detections=post["max_detections"])
                times.append((time.perf_counter() - start) * 1000.0)
            end_to_end_ms[name].append(statistics.median(times))
    result = {"image_size": size, "batch": 1, "threads": 2, "rounds": rounds,
              "calls_per_round": calls_per_round}
    for name in models:
        model_median = statistics.median(model_ms[name])
        full_median = statistics.median(end_to_end_ms[name])
        result[name] = {"file": files[name], "model_ms": model_median,
                        "model_fps": 1000.0 / model_median,
                        "with_nms_ms": full_median, "with_nms_fps": 1000.0 / full_median,
                        # spread of the per-round medians: how noisy the machine was
                        "model_ms_min_max": [min(model_ms[name]), max(model_ms[name])]}
    return result


def requantize_ops(report, files):
    """Requantize ops per INT8 file, from the report's `quantization`."""
    keys = {value: key for key, value in report["artifacts"].items()}
    return {name: report.get("quantization", {}).get(keys[path], {}).get(
        "tflite", {}).get("requantize_ops") for name, path in files.items()
        if name != "float"}


def map_table(report):
    qat_lost = "qat_int8" in report["metrics"]
    names = {"float": "float (Keras)", "tflite_float": "float .tflite",
             "ptq_int8": "INT8 post-training",
             "qat_int8" if qat_lost else "int8": "INT8 QAT", "baseline": "baseline"}
    rows = []
    for key, label in names.items():
        if key in report["metrics"]:
            values = report["metrics"][key]
            rows.append({"model": label, "map50": values["map50"], "map": values["map"]})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a finished default run folder to reuse")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    run_dir = args.run
    if run_dir is None:
        run_dir = "runs/detection-benchmark"
        train.main(["--preset", "default", "--out", run_dir])
    with open(os.path.join(run_dir, "report.json")) as handle:
        report = json.load(handle)
    files = tflite_files(report)
    result = {
        "run": run_dir,
        "preset": report.get("preset"),
        "map_table": map_table(report),
        "speed": frames_per_second(run_dir, files),
        "requantize_ops": requantize_ops(report, files),
        "int8_validation": report.get("int8_validation", {}),
        "sizes_bytes": report["sizes_bytes"],
        "seconds": report["seconds"],
    }
    print("| model | mAP@0.5 | mAP@0.5:0.95 |\n|---|---|---|")
    for row in result["map_table"]:
        print(f"| {row['model']} | {row['map50']:.3f} | {row['map']:.3f} |")
    print("\n| .tflite | model FPS | FPS with decode + NMS |\n|---|---|---|")
    for name in NAMES:
        if name in result["speed"]:
            speed = result["speed"][name]
            print(f"| {name} | {speed['model_fps']:.1f} | {speed['with_nms_fps']:.1f} |")
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()
