"""The suite as one product: the task list and the benchmark table.

    python -m tasks                       # tasks, presets, metrics, data options
    python -m tasks benchmark [--tasks segmentation sentiment] [--preset smoke]

`benchmark` runs each task's whole flow (train -> QAT -> export -> evaluate)
in its own process, so that peak memory is that task's alone, `--jobs` of
them at a time (default 2: much of a flow is single-threaded tracing and
conversion), reads each `report.json`, and writes one table as JSON,
Markdown and a chart. Then, with no flow running, one process measures how
well training uses the machine, one task after the other
(`common/efficiency.py`: the shared trainer against a plain `model.fit`, the
input pipeline against the model, FLOP/s against a matmul peak, XLA and
bfloat16 against float32), and times each run's LiteRT files again, alone
(their latency in the run may have shared the CPU with another flow);
`--no-efficiency` skips that phase.

    python -m tasks efficiency --tasks segmentation [--preset smoke]   # measure only
"""

import argparse
import concurrent.futures
import importlib
import json
import os
import pkgutil
import subprocess
import sys
import time
import types

import tensorflow as tf

from common import efficiency, files, training

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLUMNS = ("task", "primary metric", "float", "PTQ INT8", "QAT INT8", "baseline",
           "float .tflite KB", "INT8 .tflite KB", "LiteRT float ms", "LiteRT INT8 ms",
           "train examples/s", "peak MiB", "wall s")
# Measured by common/efficiency.py in a second child process per task.
EFFICIENCY_COLUMNS = ("trainer / plain fit %", "input x", "FLOP/s % of matmul peak",
                      "ms/step fp32", "XLA x", "bf16 x")
INPUT_BOUND_BELOW = efficiency.INPUT_BOUND_BELOW


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


def _overrides_only(extra):
    """The `--set KEY=VALUE` pairs of the train command's extra arguments:
    the efficiency measurement builds the same model, but trains no QAT."""
    pairs = []
    for flag, value in zip(extra, list(extra[1:]) + [None]):
        if flag == "--set" and value is not None:
            pairs += ["--set", value]
    return pairs


def efficiency_path(folder, name):
    return os.path.join(folder, f"{name}-efficiency.json")


def run_efficiency(names, preset, folder, extra=(), configurations=None, run_dirs=None):
    """Measure the training efficiency of every task in `names`, one after
    the other, in a child process (the mixed precision policy is global, and
    the training children's peak memory stays their own), and time the
    LiteRT files of `run_dirs[name]` again. Returns {name: result dict, or
    {"fails": reason}}. A child that dies is started again for the tasks
    after the one it died on (TensorFlow is imported once per child, not
    once per task: seconds each on 2 cores)."""
    if isinstance(names, str):
        names = [names]
    results, remaining = {}, list(names)
    log_path = os.path.join(folder, "efficiency.log")
    while remaining:
        command = [sys.executable, "-m", "tasks", "efficiency", "--tasks", *remaining,
                   "--preset", preset, "--json-dir", folder, "--work-dir", folder,
                   *_overrides_only(list(extra))]
        if configurations is not None:
            command += ["--configurations", *configurations]
        for name in remaining:
            if run_dirs and run_dirs.get(name):
                command += ["--run-dir", f"{name}={run_dirs[name]}"]
        with open(log_path, "a") as log:
            status = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                    check=False).returncode
        while remaining and os.path.exists(efficiency_path(folder, remaining[0])):
            name = remaining.pop(0)
            with open(efficiency_path(folder, name)) as handle:
                results[name] = json.load(handle)
        if remaining:  # the child died on (or before) this task
            results[remaining.pop(0)] = {
                "fails": f"efficiency child exited {status}; see {log_path}"}
    return results


def _measured(part, key):
    """`part[key]`, or the failure text when that part failed."""
    if not isinstance(part, dict):
        return None
    if "fails" in part:
        return f"fails: {part['fails']}"
    return part.get(key)


def efficiency_cells(efficiency):
    """The efficiency columns of one row: numbers, None (not measured) or
    "fails: <reason>" (JSON keeps the reason; Markdown shows '-' and a note)."""
    if efficiency is None:
        return {column: None for column in EFFICIENCY_COLUMNS}
    if "fails" in efficiency:
        return {column: f"fails: {efficiency['fails']}" for column in EFFICIENCY_COLUMNS}
    ratio = efficiency.get("trainer_vs_plain")
    flops = efficiency.get("flops") or {}
    share = _measured(flops, "share_of_peak")
    configurations = efficiency.get("configurations") or {}
    return {
        # The comparison's failure is recorded in both of its parts.
        "trainer / plain fit %": (100.0 * ratio if ratio is not None
                                  else _measured(efficiency.get("trainer"), "fails")),
        "input x": _measured(efficiency.get("input"), "input_x"),
        "FLOP/s % of matmul peak": 100.0 * share if isinstance(share, float) else share,
        "ms/step fp32": _measured(configurations.get("float32"), "ms_per_step"),
        "XLA x": _measured(configurations.get("xla"), "speedup"),
        "bf16 x": _measured(configurations.get("bfloat16"), "speedup"),
    }


def table_row(name, report, run_dir, peak_mib, wall, efficiency=None):
    primary = report["primary_metric"]
    metrics = report["metrics"]
    baseline = metrics.get("baseline") or {}
    sizes, latency = report["sizes_bytes"], report["latency_ms"]
    qat_ran = "qat" in report.get("stages", {})
    alone = (efficiency or {}).get("litert_ms") or {}
    if not isinstance(alone, dict) or "fails" in alone:
        alone = {}
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
        # Measured again alone after all flows, when the efficiency phase ran.
        "LiteRT float ms": alone.get("tflite_float", latency.get("tflite_float")),
        "LiteRT INT8 ms": alone.get("tflite_int8", latency.get("tflite_int8")),
        "LiteRT ms in the run": latency,
        "train examples/s": _train_throughput(run_dir, report),
        "peak MiB": peak_mib, "wall s": wall,
        **efficiency_cells(efficiency),
        "efficiency": efficiency,
    }


def _cell(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def _ratio_cell(value):
    """Efficiency numbers: two decimals are all their noise allows."""
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 10 else f"{value:.0f}"
    return _cell(value)


def _failed(value):
    return isinstance(value, str) and value.startswith("fails: ")


TRAINER_KEEPS = 0.95


def trainer_notes(measured):
    """Where the trainer loses to a plain fit, the callbacks its time went to."""
    notes = []
    for row in measured:
        ratio = row["efficiency"].get("trainer_vs_plain")
        trainer = row["efficiency"].get("trainer") or {}
        if ratio is None or ratio >= TRAINER_KEEPS:
            continue
        spent = sorted((trainer.get("epoch_end_by_callback") or {}).items(),
                       key=lambda item: -item[1])
        work = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in spent[:3]
                         if seconds >= 0.005)
        hooks = ", ".join(f"{name} {ms:.1f} ms" for name, ms in
                          (trainer.get("batch_hook_ms_by_callback") or {}).items() if ms >= 0.1)
        row_steps = row["efficiency"].get("steps_per_epoch")
        notes.append(
            f"{row['task']}: the trainer keeps {100 * ratio:.0f}% of a plain fit (below "
            f"{100 * TRAINER_KEEPS:.0f}%) on epochs of {row_steps} "
            f"step{'' if row_steps == 1 else 's'} (the run's); its end-of-epoch "
            f"work: {work or 'none measurable'}"
            + (f"; after every step: {hooks}" if hooks else "") + ".")
    return notes


def efficiency_notes(rows):
    """Sentences under the table: which tasks wait for data, which numbers
    are lower bounds, and why a '-' efficiency cell is empty."""
    measured = [row for row in rows if row.get("efficiency")]
    if not measured:
        return []
    waiting = [f"{row['task']} (input x {row['input x']:.1f})" for row in measured
               if isinstance(row.get("input x"), float) and row["input x"] < INPUT_BOUND_BELOW]
    notes = [("The model waits for data (the input pipeline is less than "
              f"{INPUT_BOUND_BELOW:g}x as fast as training): {', '.join(waiting)}." if waiting
              else f"No task waits for data (input x >= {INPUT_BOUND_BELOW:g} everywhere).")]
    notes += trainer_notes(measured)
    partial = [row["task"] for row in measured
               if (row["efficiency"].get("flops") or {}).get("complete") is False]
    if partial:
        notes.append("FLOPs inside loops (LSTM steps) are counted once, not once per step, "
                      f"for {', '.join(partial)}: their FLOP/s share is a lower bound.")
    for row in measured:
        columns_by_reason = {}
        for column in EFFICIENCY_COLUMNS:
            if _failed(row.get(column)):
                columns_by_reason.setdefault(row[column], []).append(column)
        notes += [f"{row['task']}, {', '.join(columns)}: {reason.rstrip('.')}."
                  for reason, columns in columns_by_reason.items()]
    return notes


def _load(values):
    return "-" if not values else f"{min(values):.1f}-{max(values):.1f}"


def how_measured(rows, run):
    """The sentence saying how the flows shared the machine and what was
    measured alone, with the load average seen (other users count too)."""
    jobs = run.get("jobs", 1)
    loads = run.get("load_average") or {}
    flows = ("one at a time" if jobs == 1 else f"{jobs} at a time: their wall s and "
             "train examples/s include sharing the CPU with another flow")
    sentence = (f"Task flows ran {flows} (1-minute load average {_load(loads.get('training'))}).")
    if any(row.get("efficiency") for row in rows):
        sentence += (" The efficiency columns and LiteRT ms were measured afterwards, one task "
                     "at a time with no flow running (load average "
                     f"{_load(loads.get('efficiency'))}).")
    return sentence


def markdown(rows, preset, total_seconds=None, run=None):
    total = (f" All tasks in {total_seconds / 60:.1f} minutes"
             f" (`python -m tasks benchmark --preset {preset}`)." if total_seconds else "")
    columns = COLUMNS + (EFFICIENCY_COLUMNS if any(row.get("efficiency") for row in rows)
                         else ())
    shared = f" {how_measured(rows, run)}" if run else ""
    lines = [f"Preset `{preset}`, one process per task, on this machine "
             f"({os.cpu_count()} CPUs).{total}{shared} QAT INT8 is the QAT file "
             "(`metrics.qat_int8` when post-training INT8 won on validation and shipped).", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = ["-" if _failed(row.get(column)) else
                 _ratio_cell(row.get(column)) if column in EFFICIENCY_COLUMNS
                 else _cell(row.get(column)) for column in columns]
        if row.get("baseline name"):
            cells[columns.index("baseline")] += f" ({row['baseline name']})"
        lines.append("| " + " | ".join(cells) + " |")
    notes = efficiency_notes(rows)
    if notes:
        lines += [""] + notes
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


def train_all(names, preset, work, extra=(), jobs=2):
    """Every task's flow in its own child, `jobs` at a time (the longest
    first keeps the lanes even: pass names in that order); {name: (report,
    run_dir, peak MiB, wall s)} and the load averages seen as each ended."""
    loads, finished = [os.getloadavg()[0]], {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(run_task, name, preset, work, extra): name for name in names}
        for future in concurrent.futures.as_completed(futures):
            name = futures[future]
            finished[name] = future.result()  # a failed flow stops the benchmark
            loads.append(os.getloadavg()[0])
            print(f"[benchmark] {name} trained in {finished[name][3]:.0f} s", flush=True)
    return finished, loads


def benchmark(names, preset, out, extra=(), readme=None, efficiency=True,
              configurations=None, jobs=2):
    """Train and measure every task in `names`; write the table. `efficiency`
    False skips the efficiency columns; `configurations` limits the timed
    configurations besides float32 (default: XLA and bfloat16); `jobs` task
    flows train at a time (the measurements afterwards run alone)."""
    started = time.time()
    os.makedirs(out, exist_ok=True)
    work = os.path.join(out, f"runs-{preset}-{os.getpid()}")
    os.makedirs(work, exist_ok=True)
    print(f"[benchmark] {', '.join(names)} ({preset}), {jobs} at a time", flush=True)
    trained, training_loads = train_all(names, preset, work, extra, jobs)
    run = {"jobs": jobs, "load_average": {"training": training_loads}}
    measured = {}
    if efficiency:
        print("[benchmark] efficiency and LiteRT latency, one task at a time", flush=True)
        measured = run_efficiency(names, preset, work, extra, configurations,
                                  {name: trained[name][1] for name in names})
        run["load_average"]["efficiency"] = [
            load for result in measured.values() for load in result.get("load_average", [])]
    rows = [table_row(name, *trained[name], measured.get(name)) for name in names]
    total = time.time() - started
    stem = os.path.join(out, f"suite-{preset}")
    table = markdown(rows, preset, total, run)
    files.write_json_atomic(stem + ".json", {"preset": preset, "rows": rows,
                                             "total_seconds": total,
                                             "cpu_count": os.cpu_count(), **run})
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
    bench.add_argument("--jobs", type=int, default=2,
                       help="task flows trained at a time (default 2); the efficiency "
                            "measurements run afterwards, alone")
    bench.add_argument("--no-efficiency", dest="efficiency", action="store_false",
                       help="skip the efficiency columns and the LiteRT latency measured "
                            "alone (a phase after the flows, about a third of the time)")
    bench.add_argument("--efficiency-configurations", nargs="*", default=None,
                       choices=efficiency.CONFIGURATIONS,
                       help="which of xla, bfloat16 to time besides float32 "
                       "(default: both; none: only the trainer, input and FLOP columns)")
    one = commands.add_parser("efficiency", help="measure tasks' training efficiency")
    one.add_argument("--tasks", "--task", dest="tasks", nargs="+", required=True)
    one.add_argument("--preset", default="smoke")
    one.add_argument("--set", dest="overrides", action="append", default=[],
                     metavar="KEY=VALUE")
    one.add_argument("--configurations", nargs="*", default=None,
                     choices=efficiency.CONFIGURATIONS, help="(default: all)")
    one.add_argument("--json-dir", help="also write <task>-efficiency.json here, each as "
                     "its task is done")
    one.add_argument("--work-dir", default=None, help="for the trainer's files (default: /tmp)")
    one.add_argument("--run-dir", action="append", default=[], metavar="TASK=FOLDER",
                     help="a finished run of TASK: its LiteRT files are timed again")
    args = parser.parse_args(argv)
    if args.command == "efficiency":
        return efficiency_command(parser, args)
    if args.command != "benchmark":
        list_tasks()
        return 0
    known = task_names()
    unknown = [name for name in (args.tasks or []) if name not in known]
    if unknown:
        parser.error(f"unknown task(s) {unknown}; expected some of {known}")
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: expected 1 or more")
    extra = [part for override in args.overrides for part in ("--set", override)]
    benchmark(args.tasks or known, args.preset, args.out, extra, args.readme, args.efficiency,
              args.efficiency_configurations, args.jobs)
    return 0


def litert_latency(task, cfg, splits, run_dir):
    """Median batch-1 milliseconds of the run's float and INT8 `.tflite`, as
    its report measured them (`common.pipeline.latency`: the file alone, or
    the host loop around a multi-part edge), measured again now."""
    from common import litert, pipeline

    with open(os.path.join(run_dir, "report.json")) as handle:
        artifacts = {key: path for key, path in json.load(handle)["artifacts"].items()
                     if key in ("tflite_float", "tflite_int8")}
    run = types.SimpleNamespace(file=lambda path: os.path.join(run_dir, path))
    example = next(iter(pipeline.limited(splits.test, cfg).unbatch().batch(1).take(1)))[0]
    example = tf.nest.map_structure(lambda tensor: tensor.numpy(), example)
    predict_fns = None
    if getattr(task, "EDGE_SIGNATURES", None):
        names = {key: name for name, key in pipeline.ARTIFACT_SCORES}
        predict_fns = {names[key]: pipeline.predict_fn_from_raw(
            task, litert.load(run.file(path)), cfg, splits.info)
            for key, path in artifacts.items()}
    return pipeline.latency(artifacts, run, example, cfg.export.latency_samples, predict_fns)


def measure_task(name, args, run_dir=None):
    """One task's efficiency (and LiteRT latency when `run_dir` is given)."""
    from common import cli

    task = importlib.import_module(f"tasks.{name}")
    argv = ["--preset", args.preset]
    for override in args.overrides:
        argv += ["--set", override]
    cfg = cli.parse_train_args(task, argv)
    configurations = (efficiency.CONFIGURATIONS if args.configurations is None
                      else tuple(args.configurations))
    loads = [os.getloadavg()[0]]
    training.set_seed(cfg.run.seed)
    splits = efficiency.attempt(task.build_datasets, cfg)
    if efficiency.failed(splits):
        return dict(splits, load_average=loads)
    result = efficiency.attempt(efficiency.measure, task, cfg, args.work_dir, splits=splits,
                                configurations=configurations)
    if run_dir and not efficiency.failed(result):
        result["litert_ms"] = efficiency.attempt(litert_latency, task, cfg, splits, run_dir)
    loads.append(os.getloadavg()[0])
    result["load_average"] = loads
    return result


def efficiency_command(parser, args):
    """`python -m tasks efficiency --tasks NAME ...`: the measurement of each
    task in turn (the benchmark runs it in one child after the flows),
    printed as JSON and, with --json-dir, written as each task is done."""
    import keras

    unknown = [name for name in args.tasks if name not in task_names()]
    if unknown:
        parser.error(f"unknown task(s) {unknown}; expected some of {task_names()}")
    run_dirs = {}
    for pair in args.run_dir:
        name, separator, folder = pair.partition("=")
        if not separator or not folder:
            parser.error(f"--run-dir {pair!r}: expected TASK=FOLDER")
        run_dirs[name] = folder
    for name in args.tasks:
        started = time.time()
        result = measure_task(name, args, run_dirs.get(name))
        result["wall_seconds"] = time.time() - started
        text = json.dumps(result, indent=2)
        if args.json_dir:
            files.write_text_atomic(efficiency_path(args.json_dir, name), text + "\n")
        print(f"[efficiency] {name}\n{text}", flush=True)
        keras.backend.clear_session()  # the next task starts from no graphs
    return 0
