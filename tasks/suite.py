"""The suite as one product: the task list and the benchmark table.

    python -m tasks                       # tasks, presets, metrics, data options
    python -m tasks benchmark [--tasks segmentation sentiment] [--preset smoke]

`benchmark` runs each task's whole flow (train -> QAT -> export -> evaluate)
in its own process, so that peak memory and wall time are that task's alone,
reads each `report.json`, and writes one table as JSON, Markdown and a chart.
"""

import argparse
import importlib
import json
import os
import pkgutil
import subprocess
import sys
import time

from common import files, training

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLUMNS = ("task", "primary metric", "float", "PTQ INT8", "QAT INT8", "baseline",
           "float .tflite KB", "INT8 .tflite KB", "LiteRT float ms", "LiteRT INT8 ms",
           "train examples/s", "peak MiB", "wall s")


def task_names():
    """Every package under tasks/ that follows the contract."""
    names = []
    for module in pkgutil.iter_modules([os.path.join(ROOT, "tasks")]):
        if module.ispkg:
            package = importlib.import_module(f"tasks.{module.name}")
            if hasattr(package, "PRIMARY_METRIC") and hasattr(package, "PRESETS"):
                names.append(module.name)
    return names


def describe(name):
    task = importlib.import_module(f"tasks.{name}")
    return {"task": name, "presets": list(task.PRESETS),
            "primary_metric": task.PRIMARY_METRIC,
            "data": list(getattr(task, "DATA_SOURCES", ("synthetic",)))}


def list_tasks():
    for entry in (describe(name) for name in task_names()):
        print(f"{entry['task']}\n  presets: {', '.join(entry['presets'])}\n"
              f"  primary metric: {entry['primary_metric']}\n  --data:")
        for source in entry["data"]:
            print(f"    {source}")
    print("\npython -m tasks.<task>.train --preset NAME --data SOURCE; "
          "python -m tasks benchmark [--tasks ...] [--preset smoke]")


def _primary(metrics, key, primary):
    values = metrics.get(key) or {}
    return values.get(primary)


def _train_throughput(run_dir, report):
    """Training examples per second of the float stage (validation scoring
    included), from the report's data summary (or info.json) and the history."""
    with open(os.path.join(run_dir, "info.json")) as handle:
        info = json.load(handle)
    examples = (report.get("data_summary", {}).get("examples") or {}).get("train") \
        or info.get("num_train")
    history = training.read_history(os.path.join(run_dir, "stages", "float"))
    epochs = len(next(iter(history.values()), []))
    seconds = report["seconds"].get("train") or 0.0
    if not examples or not epochs or not seconds:
        return None
    return examples * epochs / seconds


def run_task(name, preset, folder, extra=()):
    """Train `name` in a child process; (report, peak MiB, wall seconds)."""
    run_dir = os.path.join(folder, f"{name}-{preset}")
    command = [sys.executable, "-m", f"tasks.{name}.train", "--preset", preset,
               "--out", run_dir, "--export-dir", os.path.join(folder, "saved_models"),
               *extra]
    started = time.time()
    with open(os.path.join(folder, f"{name}.log"), "w") as log:
        child = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.time() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{name}: training failed (exit {os.waitstatus_to_exitcode(status)}); "
                           f"see {os.path.join(folder, name + '.log')}")
    with open(os.path.join(run_dir, "report.json")) as handle:
        report = json.load(handle)
    return report, run_dir, usage.ru_maxrss / 1024.0, wall


def table_row(name, report, run_dir, peak_mib, wall):
    primary = report["primary_metric"]
    metrics = report["metrics"]
    baseline = metrics.get("baseline") or {}
    sizes, latency = report["sizes_bytes"], report["latency_ms"]
    qat_ran = "qat" in report.get("stages", {})
    return {
        "task": name, "primary metric": primary,
        "float": _primary(metrics, "float", primary),
        # Without a QAT stage, metrics.int8 is the post-training file.
        "PTQ INT8": _primary(metrics, "ptq_int8" if qat_ran else "int8", primary),
        "QAT INT8": (_primary(metrics, "qat_int8", primary) or _primary(metrics, "int8", primary)
                     if qat_ran else None),
        "baseline": baseline.get(primary), "baseline name": baseline.get("name"),
        "float .tflite KB": sizes.get("tflite_float", 0) / 1024,
        "INT8 .tflite KB": sizes.get("tflite_int8", 0) / 1024,
        "LiteRT float ms": latency.get("tflite_float"),
        "LiteRT INT8 ms": latency.get("tflite_int8"),
        "train examples/s": _train_throughput(run_dir, report),
        "peak MiB": peak_mib, "wall s": wall,
    }


def _cell(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def markdown(rows, preset, total_seconds=None):
    total = (f" All tasks in {total_seconds / 60:.1f} minutes"
             f" (`python -m tasks benchmark --preset {preset}`)." if total_seconds else "")
    lines = [f"Preset `{preset}`, one process per task, on this machine "
             f"({os.cpu_count()} CPUs).{total} QAT INT8 is the QAT file (`metrics.qat_int8` "
             "when post-training INT8 won on validation and shipped).", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = [_cell(row[column]) for column in COLUMNS]
        if row.get("baseline name"):
            cells[COLUMNS.index("baseline")] += f" ({row['baseline name']})"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def chart(rows, path):
    """Float / PTQ / QAT primary metric per task, beside the baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 3.2), squeeze=False)
    for axis, row in zip(axes[0], rows):
        labels = ["float", "PTQ INT8", "QAT INT8", "baseline"]
        values = [row[label] or 0.0 for label in labels]
        axis.bar(labels, values, color=["#4c72b0", "#dd8452", "#55a868", "#999999"])
        axis.set_title(f"{row['task']}\n{row['primary metric']}", fontsize=9)
        axis.tick_params(axis="x", labelrotation=45, labelsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


README_START = "<!-- suite table: start (python -m tasks benchmark --readme) -->"
README_END = "<!-- suite table: end -->"


def update_readme(path, table):
    """Replace the block between README_START and README_END in `path` with
    `table` (the generated Markdown), so the README shows measured numbers."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"{path}: no '{README_START}' ... '{README_END}' block to replace")
    text = text[:start + len(README_START)] + "\n" + table + text[end:]
    files.write_text_atomic(path, text)


def benchmark(names, preset, out, extra=(), readme=None):
    started = time.time()
    os.makedirs(out, exist_ok=True)
    work = os.path.join(out, f"runs-{preset}-{os.getpid()}")
    os.makedirs(work, exist_ok=True)
    rows = []
    for name in names:
        print(f"[benchmark] {name} ({preset})", flush=True)
        report, run_dir, peak, wall = run_task(name, preset, work, extra)
        rows.append(table_row(name, report, run_dir, peak, wall))
        print(markdown(rows[-1:], preset).splitlines()[-1], flush=True)
    total = time.time() - started
    stem = os.path.join(out, f"suite-{preset}")
    table = markdown(rows, preset, total)
    files.write_json_atomic(stem + ".json", {"preset": preset, "rows": rows,
                                             "total_seconds": total,
                                             "cpu_count": os.cpu_count()})
    files.write_text_atomic(stem + ".md", table)
    chart(rows, stem + ".png")
    if readme:
        update_readme(readme, table)
    print(table)
    print(f"[benchmark] {stem}.json, .md, .png")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tasks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command")
    bench = commands.add_parser("benchmark", help="train every task and print one table")
    bench.add_argument("--tasks", nargs="+", default=None, help="default: every task")
    bench.add_argument("--preset", default="smoke")
    bench.add_argument("--out", default=os.path.join("benchmarks", "results"))
    bench.add_argument("--readme", nargs="?", const=os.path.join(ROOT, "README.md"),
                       default=None, help="also write the table into README.md's suite block")
    bench.add_argument("--set", dest="overrides", action="append", default=[],
                       metavar="KEY=VALUE", help="passed to every task's train command")
    args = parser.parse_args(argv)
    if args.command != "benchmark":
        list_tasks()
        return 0
    known = task_names()
    unknown = [name for name in (args.tasks or []) if name not in known]
    if unknown:
        parser.error(f"unknown task(s) {unknown}; expected some of {known}")
    extra = [part for override in args.overrides for part in ("--set", override)]
    benchmark(args.tasks or known, args.preset, args.out, extra, args.readme)
    return 0
