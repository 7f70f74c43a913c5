"""The run report: report.json (a contract other tools read), report.md, plots."""

import os

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".svg")

import matplotlib

matplotlib.use("Agg")  # headless: plots are files, never windows
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from common.files import write_json_atomic  # noqa: E402,F401 (re-exported)


def plot_history(histories, path):
    """Training curves: one panel per metric, one line per stage and split."""
    metrics = sorted({
        key.removeprefix("val_") for history in histories.values() for key in history
        if key not in ("epoch", "learning_rate", "lr")
    })
    if not metrics:
        return None
    figure, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.2),
                                squeeze=False)
    for axis, metric in zip(axes[0], metrics):
        offset = 0
        for stage, history in histories.items():
            for split, key in (("train", metric), ("val", f"val_{metric}")):
                if key in history and history[key]:
                    values = history[key]
                    epochs = np.arange(offset + 1, offset + len(values) + 1)
                    axis.plot(epochs, values, marker=".",
                              linestyle="-" if split == "train" else "--",
                              label=f"{stage} {split}")
            lengths = [len(v) for v in history.values() if isinstance(v, list)]
            offset += max(lengths, default=0)
        axis.set_title(metric)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_metrics(metrics, primary_metric, path):
    """Bar chart of the primary metric for float, INT8, PTQ INT8 and baseline."""
    names = [name for name in ("float", "tflite_float", "int8", "ptq_int8", "baseline")
             if name in metrics and primary_metric in metrics[name]]
    if not names:
        return None
    values = [metrics[name][primary_metric] for name in names]
    figure, axis = plt.subplots(figsize=(5, 3.2))
    bars = axis.bar(names, values, color=["#4878d0", "#6acc64", "#d65f5f", "#ee854a", "#956cb4"][:len(names)])
    for bar, value in zip(bars, values):
        axis.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"{value:.3f}",
                  ha="center", va="bottom", fontsize=8)
    axis.set_ylabel(primary_metric)
    axis.set_title(f"{primary_metric} on the test split")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _format(value):
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def write_markdown(report, path):
    primary = report["primary_metric"]
    lines = [
        f"# {report['task']} — preset `{report['preset']}`, data `{report['data']}`",
        "",
        f"Primary metric: **{primary}** on the test split "
        f"({report.get('test_examples', '?')} examples).",
        "",
    ]
    # Notes first: "the model does not beat the baseline" must not hide at the end.
    for note in report.get("notes", []):
        lines += [f"> {note}", ""]
    rows = [(name, values) for name, values in report["metrics"].items()
            if name not in ("baselines", "baseline")]
    rows += [(f"baseline: {name}", values)
             for name, values in report["metrics"].get("baselines", {}).items()]
    columns = sorted({k for _, m in rows for k in m if isinstance(m.get(k), (int, float))})
    lines.append("| model | " + " | ".join(columns) + " |")
    lines.append("|---|" + "---|" * len(columns))
    for name, values in rows:
        lines.append(f"| {name} | " + " | ".join(_format(values.get(c, "")) for c in columns) + " |")
    lines += ["", "| artifact | path | size (bytes) | latency (ms, batch 1, 2 threads) |",
              "|---|---|---|---|"]
    for name, artifact in report["artifacts"].items():
        size = report.get("sizes_bytes", {}).get(name, "")
        latency = report.get("latency_ms", {}).get(name, "")
        lines.append(f"| {name} | `{artifact}` | {size} | {_format(latency)} |")
    lines += ["", "Seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in report["seconds"].items())]
    chosen = report.get("chosen_epochs", {})
    if chosen:
        lines += ["", "Kept epoch per stage (best by its monitor on the validation split): "
                  + ", ".join(f"{stage} {record['epoch']} ({record['monitor']} "
                              f"{record['value']:.4f})" for stage, record in chosen.items())]
    ops = report.get("int8_ops", {})
    if ops:
        lines += ["", "## INT8 op check", ""]
        for name, op_report in ops.items():
            float_ops = op_report.get("float_ops", [])
            compute = op_report.get("float_compute_ops", [])
            # report.json keeps every op; the page shows the first dozen.
            shown = ", ".join(compute[:12]) + (f", ... ({len(compute)} in all)"
                                                if len(compute) > 12 else "")
            lines.append(f"- `{name}`: compute ops on float: "
                         f"{shown if compute else 'none'}; "
                         f"other ops left in float: {', '.join(float_ops) if float_ops else 'none'}")
    for name, summary in report.get("quantization", {}).items():
        if not summary:
            continue
        tflite = summary["tflite"]
        unit = "compute ops" if tflite.get("shares_are_op_counts") else "multiply-accumulates"
        line = (f"- `{name}`: {100 * tflite['mac_share_int8']:.1f}% of {unit} on int8, "
                f"{tflite['requantize_ops']} requantize ops")
        coverage = summary.get("qat_coverage")
        if coverage:
            line += f"; QAT fake-quant covered {100 * coverage['mac_share']:.1f}%"
        lines.append(line)
        for layer in summary.get("worst_layers", []):
            # Fused tensors are named by every op they fuse; the first is enough.
            lines.append(f"  - largest INT8 error: `{layer['tensor'].split(';')[0]}` "
                         f"({layer['op']}), "
                         f"RMSE {layer['rmse_over_scale']:.2f} int8 steps")
    pictures = report.get("pictures", [])
    if pictures:
        lines += ["", "## Pictures", ""]
        # Pictures are shown; other files a task writes (sample tables, WAVs) linked.
        lines += [f"![{os.path.basename(p)}]({p})" if p.lower().endswith(IMAGE_SUFFIXES)
                  else f"- [{os.path.basename(p)}]({p})" for p in pictures]
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")


def tflite_files(report):
    """{"float" | "qat_int8" | "ptq_int8": file name} of a run report's
    LiteRT files (the QAT file may have lost to post-training and be kept
    as `tflite_qat_int8`; without QAT the INT8 file is post-training)."""
    artifacts = report["artifacts"]
    files = {"float": artifacts["tflite_float"]}
    if "tflite_ptq_int8" in artifacts:  # QAT on: both INT8 files exist
        files["qat_int8"] = artifacts.get("tflite_qat_int8", artifacts["tflite_int8"])
        files["ptq_int8"] = artifacts["tflite_ptq_int8"]
    else:
        files["ptq_int8"] = artifacts["tflite_int8"]
    return files
