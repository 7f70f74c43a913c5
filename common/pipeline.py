"""One run of any task: float training, QAT, export, evaluation, report.

`run_train(task, argv)` is what every `python -m tasks.<task>.train` calls.
`task` is the task package (e.g. `tasks.segmentation`); `common/` only reads
the names of the task contract from it and never imports `tasks/` itself.

The task contract
-----------------
Required names on the task package:

- `NAME`: "segmentation", "detection", ...
- `Config`: a dataclass subclassing `common.config.BaseConfig`.
- `PRESETS`: {"smoke": {...}, "default": {...}, <paper-sized>: {...}}, each a
  dict of dotted overrides (`{"train.epochs": 2, "model.filters": 8}`).
- `PRIMARY_METRIC`: the key of `evaluate()`'s dict that the report leads with.
- `build_datasets(cfg) -> common.data.Splits`: batched `train`, `val`, `test`
  datasets of fixed-shape `(inputs, targets)`, plus `info` (a dict: classes,
  vocabulary, image size ...). The test split is fixed and never augmented.
- `build_model(cfg, info) -> keras.Model`: Functional, standard or registered
  layers, raw outputs (logits; no NMS/argmax/tokenizer inside).
- `compile_args(cfg, info) -> dict`: keyword arguments for `model.compile`
  other than the optimizer (`loss`, `metrics`, `loss_weights`); common adds
  the optimizer, `jit_compile` and `steps_per_execution`.
- `build_serving_model(model, cfg, info) -> dict`: TF Serving endpoints,
  `{"serving_default": (fn, [tf.TensorSpec, ...]), ...}` where `fn` may use
  TF ops (resize, decode, tokenizer, argmax) around `model`.
- `metrics.evaluate(predict_fn, dataset, info) -> dict`: metric name ->
  float (lists/dicts allowed for per-class values). `predict_fn(inputs) ->
  outputs` takes one batch of inputs as numpy (array or dict of arrays) and
  returns numpy. It is read from the task's `metrics` module because the
  package attribute `evaluate` becomes the `evaluate.py` CLI module as soon
  as that module is imported.
- `baseline_predict_fn(splits, info) -> predict_fn`: the trivial baseline,
  scored by the same `evaluate`.

Optional names (the default is used when absent):

- `MONITOR = ("val_loss", "min")`: checkpoint / early-stopping metric.
- `edge_model(model, cfg) -> keras.Model`: the fixed-shape part converted to
  LiteRT; default: `model` itself.
- `representative_dataset(splits, cfg) -> callable`: returns a generator of
  lists of batch-1 numpy inputs; default: the first
  `cfg.export.representative_samples` examples of `splits.calibration`
  (unshuffled, unaugmented training examples; the validation split when the
  task leaves it None).
- `predict_fn_from_raw(raw_fn, cfg, info) -> predict_fn`: wraps a function
  giving the edge model's raw outputs (Keras or LiteRT alike) with host-side
  post-processing (e.g. box decoding + NMS); default: `raw_fn` unchanged.
- `fit_float(model, splits, cfg, info, context) -> keras.Model`: replaces the
  default float stage (`common.training.fit`), for tasks with several stages
  (MLM pre-training, GAN); `context` is a `RunContext`. Scores it measures
  itself go in `info["extra_metrics"]` ({name: {metric: value}}) and appear
  in the report beside `float`, `int8`, ...
- `save_samples(predict_fn, splits, info, out_dir, int8_predict_fn=None)
  -> [png paths]`: pictures of predictions (float, and INT8 when given) for
  the report.
- `CLI_FLAGS = {"--teacher": "model.teacher", ...}`: extra command-line
  flags, each bound to one dotted config key.
- `custom_objects() -> dict`: registered classes needed to load `.keras`.
"""

import dataclasses
import importlib
import os
import shutil
import time

import keras
import numpy as np

from common import cli, export, litert, qat, report as report_lib, training
from common.errors import UserError


@dataclasses.dataclass
class RunContext:
    """What a custom `fit_float` needs to train like the default stage does."""

    run_dir: str
    strategy: object
    monitor: tuple

    def stage_dir(self, stage):
        return os.path.join(self.run_dir, "stages", stage)

    def fit(self, model, splits, cfg, compile_args, stage, **kwargs):
        """`common.training.fit` with this run's folders and monitor."""
        kwargs.setdefault("monitor", self.monitor)
        return training.fit(model, splits, cfg, compile_args, self.stage_dir(stage),
                            log_dir=os.path.join(self.run_dir, "logs", stage), **kwargs)


# --- helpers shared by train / evaluate / predict ---------------------------

def _optional(task, name, default):
    return getattr(task, name, default)


def custom_objects(task):
    objects = qat.custom_objects()
    objects.update(_optional(task, "custom_objects", dict)())
    return objects


def save_keras_atomic(model, path):
    temporary = f"{path}.tmp-{os.getpid()}.keras"
    model.save(temporary)
    os.replace(temporary, path)


def keras_raw_fn(model):
    def raw(inputs):
        outputs = model(inputs, training=False)
        return keras.tree.map_structure(lambda t: np.asarray(t), outputs)
    return raw


def saved_model_raw_fn(path):
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    if "raw" not in loaded.signatures:
        raise UserError(f"{path}: SavedModel has no 'raw' signature (not exported by this suite?)")
    signature = loaded.signatures["raw"]
    input_names = sorted(signature.structured_input_signature[1])
    output_names = sorted(signature.structured_outputs)

    def raw(inputs):
        if isinstance(inputs, dict):
            feed = {name: tf.constant(inputs[name]) for name in input_names}
        else:
            arrays = inputs if isinstance(inputs, (list, tuple)) else [inputs]
            feed = {name: tf.constant(a) for name, a in zip(input_names, arrays)}
        result = signature(**feed)
        outputs = [result[name].numpy() for name in output_names]
        return outputs[0] if len(outputs) == 1 else outputs
    return raw


def load_raw_fn(task, path):
    """A batch function giving raw outputs for a `.keras`, `.tflite` or SavedModel."""
    if not os.path.exists(path):
        raise UserError(f"{path}: model file not found")
    if path.endswith(".tflite"):
        return litert.LiteRTModel(path)
    if path.endswith(".keras"):
        model = keras.saving.load_model(path, custom_objects=custom_objects(task),
                                        safe_mode=True)
        return keras_raw_fn(model)
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "saved_model.pb")):
        return saved_model_raw_fn(path)
    raise UserError(f"{path}: expected a .keras file, a .tflite file or a SavedModel folder")


def representative_dataset(task, splits, cfg):
    """The task's calibration generator, or the first examples of
    `splits.calibration` (validation when absent): deterministic, never test."""
    custom = _optional(task, "representative_dataset", None)
    if custom:
        return custom(splits, cfg)
    source = splits.calibration if splits.calibration is not None else splits.val
    return export.representative_from_dataset(source, cfg.export.representative_samples)


def task_evaluate(task):
    """The task's metric function (see the contract above for why `metrics`)."""
    return importlib.import_module(f"{task.__name__}.metrics").evaluate


def predict_fn_from_raw(task, raw_fn, cfg, info):
    wrap = _optional(task, "predict_fn_from_raw", None)
    return wrap(raw_fn, cfg, info) if wrap else raw_fn


def limited(dataset, cfg):
    if cfg.run.max_test_examples:
        return dataset.unbatch().take(cfg.run.max_test_examples).batch(cfg.train.batch_size)
    return dataset


def _check_run_folder(cfg):
    """Refuse to mix a new run into a folder holding an interrupted one."""
    stages = os.path.join(cfg.run.out, "stages")
    interrupted = os.path.isdir(stages) and not os.path.exists(
        os.path.join(cfg.run.out, "report.json"))
    if interrupted and not cfg.run.resume:
        raise UserError(
            f"{cfg.run.out} holds an interrupted run; pass --resume to continue it, "
            "or choose another --out"
        )
    if not cfg.run.resume and os.path.isdir(stages):
        # A finished run is replaced by a fresh one in the same folder.
        shutil.rmtree(stages)


# --- the training run -------------------------------------------------------

def run_train(task, argv=None):
    """Parse `argv`, then train, quantize, export, evaluate and report."""
    started = time.time()
    seconds = {}
    cfg = cli.parse_train_args(task, argv)
    run_dir = cfg.run.out
    _check_run_folder(cfg)
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "config.json"), "w") as handle:
        handle.write(cfg.to_json())
    strategy = training.configure(cfg)
    monitor = tuple(_optional(task, "MONITOR", ("val_loss", "min")))
    context = RunContext(run_dir=run_dir, strategy=strategy, monitor=monitor)
    notes = []

    print(f"[{task.NAME}] preset {cfg.preset}, data {cfg.data.source}, run folder {run_dir}")
    splits = task.build_datasets(cfg)
    info = splits.info
    report_lib.write_json_atomic(os.path.join(run_dir, "info.json"), info)
    compile_args = task.compile_args(cfg, info)

    # 1. Float training (skipped on --resume when it already finished).
    float_path = os.path.join(run_dir, "model.keras")
    phase = time.time()
    if cfg.run.resume and os.path.exists(float_path):
        print(f"[{task.NAME}] resume: float model already trained, loading {float_path}")
        model = keras.saving.load_model(float_path, custom_objects=custom_objects(task),
                                        safe_mode=True)
    else:
        with strategy.scope():
            model = task.build_model(cfg, info)
            fit_float = _optional(task, "fit_float", None)
            if fit_float:
                model = fit_float(model, splits, cfg, info, context)
            else:
                context.fit(model, splits, cfg, compile_args, "float")
        save_keras_atomic(model, float_path)
    seconds["train"] = time.time() - phase
    edge = _optional(task, "edge_model", lambda m, c: m)(model, cfg)

    # 2. Quantization-aware fine-tuning from the float weights.
    phase = time.time()
    qat_model = None
    if cfg.qat.enabled:
        with strategy.scope():
            qat_model = qat.quantize_model(edge)
            qat.calibrate(qat_model, splits.train, steps=5)
            context.fit(qat_model, splits, cfg, compile_args, "qat",
                        epochs=cfg.qat.epochs, learning_rate=cfg.qat.learning_rate,
                        steps_per_epoch=cfg.qat.steps_per_epoch)
    else:
        notes.append("QAT was off (--no-qat or qat.enabled=false): metrics.int8 is the post-training INT8 model.")
    seconds["qat"] = time.time() - phase

    # 3. Export: LiteRT float, INT8 (QAT), INT8 (post-training), SavedModel.
    phase = time.time()
    representative = representative_dataset(task, splits, cfg)
    artifacts = {"keras": "model.keras"}
    op_reports = {}
    print(f"[{task.NAME}] exporting LiteRT float")
    export.convert_to_tflite(edge, os.path.join(run_dir, "model_float.tflite"))
    artifacts["tflite_float"] = "model_float.tflite"
    if qat_model is not None:
        print(f"[{task.NAME}] exporting LiteRT INT8 (QAT)")
        op_reports["tflite_int8"] = export.convert_to_tflite(
            qat_model, os.path.join(run_dir, "model_int8.tflite"), representative)
        artifacts["tflite_int8"] = "model_int8.tflite"
    if cfg.export.post_training_int8 or qat_model is None:
        print(f"[{task.NAME}] exporting LiteRT INT8 (post-training)")
        name = "model_ptq_int8.tflite" if qat_model is not None else "model_int8.tflite"
        key = "tflite_ptq_int8" if qat_model is not None else "tflite_int8"
        op_reports[key] = export.convert_to_tflite(edge, os.path.join(run_dir, name),
                                                   representative)
        artifacts[key] = name
    print(f"[{task.NAME}] exporting SavedModel for TF Serving")
    serving = export.as_float32(model)
    endpoints = task.build_serving_model(serving, cfg, info)
    saved_model_dir = export.export_saved_model(
        serving, endpoints, cfg.run.export_dir, task.NAME,
        extra_files={"config.json": cfg.to_json(), "info.json": _json_text(info)})
    artifacts["saved_model"] = os.path.abspath(saved_model_dir)
    seconds["export"] = time.time() - phase

    # 4. Evaluation of every artifact on the same test split.
    phase = time.time()
    test = limited(splits.test, cfg)
    metrics = {}
    scored = [("float", keras_raw_fn(export.as_float32(edge)))]
    for name, key in (("tflite_float", "tflite_float"), ("int8", "tflite_int8"),
                      ("ptq_int8", "tflite_ptq_int8")):
        if key in artifacts:
            scored.append((name, litert.LiteRTModel(os.path.join(run_dir, artifacts[key]))))
    predict_fns = {}
    for name, raw_fn in scored:
        print(f"[{task.NAME}] evaluating {name}")
        predict_fns[name] = predict_fn_from_raw(task, raw_fn, cfg, info)
        metrics[name] = task_evaluate(task)(predict_fns[name], test, info)
    metrics["baseline"] = task_evaluate(task)(task.baseline_predict_fn(splits, info), test, info)
    # Scores a custom `fit_float` measured itself (e.g. the GAN stage's model).
    for name, values in info.get("extra_metrics", {}).items():
        metrics.setdefault(name, values)
    seconds["evaluate"] = time.time() - phase

    # 5. Sizes, latency, pictures, report.
    sizes = {key: os.path.getsize(os.path.join(run_dir, path))
             for key, path in artifacts.items() if key.startswith("tflite")}
    example = next(iter(test.unbatch().batch(1).take(1)))[0]
    example = keras.tree.map_structure(lambda t: np.asarray(t), example)
    latency = {}
    for key in sizes:
        latency[key] = litert.LiteRTModel(os.path.join(run_dir, artifacts[key])).median_latency_ms(
            example, repeats=cfg.export.latency_samples)
    pictures = []
    histories = {stage: training.read_history(context.stage_dir(stage))
                 for stage in sorted(os.listdir(os.path.join(run_dir, "stages")))} \
        if os.path.isdir(os.path.join(run_dir, "stages")) else {}
    if report_lib.plot_history(histories, os.path.join(run_dir, "training_curves.png")):
        pictures.append("training_curves.png")
    if report_lib.plot_metrics(metrics, task.PRIMARY_METRIC, os.path.join(run_dir, "metrics.png")):
        pictures.append("metrics.png")
    save_samples = _optional(task, "save_samples", None)
    if save_samples:
        int8_fn = predict_fns.get("int8", predict_fns.get("ptq_int8"))
        for path in save_samples(predict_fns["float"], splits, info, run_dir, int8_fn):
            pictures.append(os.path.relpath(path, run_dir))
    for name, op_report in op_reports.items():
        if op_report["float_compute_ops"]:
            notes.append(f"{name}: these compute ops stay float: "
                         f"{', '.join(op_report['float_compute_ops'])}")
    notes.extend(info.get("notes", []))
    seconds["total"] = time.time() - started
    run_report = {
        "task": task.NAME,
        "preset": cfg.preset,
        "data": cfg.data.source,
        "primary_metric": task.PRIMARY_METRIC,
        "metrics": metrics,
        "artifacts": artifacts,
        "sizes_bytes": sizes,
        "latency_ms": latency,
        "seconds": seconds,
        "test_examples": info.get("num_test", None),
        "int8_ops": op_reports,
        "xla": training.use_xla(cfg.run),
        "notes": notes,
        "pictures": pictures,
    }
    report_lib.write_json_atomic(os.path.join(run_dir, "report.json"), run_report)
    report_lib.write_markdown(run_report, os.path.join(run_dir, "report.md"))
    primary = task.PRIMARY_METRIC
    summary = ", ".join(f"{name} {values.get(primary, float('nan')):.4f}"
                        for name, values in metrics.items())
    print(f"[{task.NAME}] {primary}: {summary}")
    print(f"[{task.NAME}] report: {os.path.join(run_dir, 'report.md')}; "
          f"SavedModel: {saved_model_dir}")
    return run_report


def main_train(task, argv=None):
    return cli.main_guard(lambda: run_train(task, argv))


def _json_text(data):
    import json
    return json.dumps(report_lib._jsonable(data), indent=2)


# --- evaluate / export / predict --------------------------------------------

def find_run_files(model_path):
    """`config.json` and `info.json` saved beside a model by `run_train`.

    They sit in the run folder (beside `.keras` / `.tflite`) or in a
    SavedModel's `assets.extra/`.
    """
    folder = model_path if os.path.isdir(model_path) else os.path.dirname(model_path)
    for candidate in (folder, os.path.join(folder, "assets.extra")):
        config_path = os.path.join(candidate, "config.json")
        if os.path.exists(config_path):
            info_path = os.path.join(candidate, "info.json")
            return config_path, info_path if os.path.exists(info_path) else None
    return None, None


def load_run_config(task, model_path, config_path=None, overrides=()):
    """The training config of `model_path` (or `config_path`), with overrides."""
    import json

    from common import config as config_lib

    info = None
    found_config, info_path = find_run_files(model_path)
    config_path = config_path or found_config
    if config_path is None:
        raise UserError(
            f"{model_path}: no config.json beside the model; pass --config "
            "PATH/config.json from its training run"
        )
    cfg = cli.load_config(task, config_path)
    config_lib.apply_overrides(cfg, list(overrides))
    if info_path:
        with open(info_path) as handle:
            info = json.load(handle)
    return cfg, info


def load_for_predict(task, args):
    """(cfg, info, raw_fn) for the `--model` / `--config` of a predict command."""
    cfg, info = load_run_config(task, args.model, args.config)
    raw_fn = load_raw_fn(task, args.model)
    os.makedirs(args.out, exist_ok=True)
    return cfg, info, raw_fn


def run_evaluate(task, argv=None):
    """Score a `.keras`, `.tflite` or SavedModel on the test split of its data."""
    import argparse
    import json

    parser = argparse.ArgumentParser(
        prog=f"python -m tasks.{task.NAME}.evaluate",
        description="Score a saved model on the test split its config names.")
    parser.add_argument("model", help=".keras file, .tflite file or SavedModel folder")
    parser.add_argument("--config", help="config.json of the training run "
                        "(default: found beside the model)")
    parser.add_argument("--data", help="score on other data than the training run's")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE")
    parser.add_argument("--baseline", action="store_true",
                        help="also score the trivial baseline")
    args = parser.parse_args(argv)
    overrides = list(args.overrides) + ([f"data.source={args.data}"] if args.data else [])
    cfg, _ = load_run_config(task, args.model, args.config, overrides)
    training.set_seed(cfg.run.seed)
    splits = task.build_datasets(cfg)
    raw_fn = load_raw_fn(task, args.model)
    test = limited(splits.test, cfg)
    results = {"model": args.model,
               "metrics": task_evaluate(task)(
                   predict_fn_from_raw(task, raw_fn, cfg, splits.info), test, splits.info)}
    if args.baseline:
        results["baseline"] = task_evaluate(task)(
            task.baseline_predict_fn(splits, splits.info), test, splits.info)
    print(json.dumps(report_lib._jsonable(results), indent=2))
    return results


def run_export(task, argv=None):
    """Export a trained `.keras` again: LiteRT float + post-training INT8 and a
    new SavedModel version (QAT happens during training, not here)."""
    import argparse
    import json

    parser = argparse.ArgumentParser(
        prog=f"python -m tasks.{task.NAME}.export",
        description="Export a trained .keras model to LiteRT and TF Serving.")
    parser.add_argument("model", help="the .keras file of a training run")
    parser.add_argument("--config", help="config.json of the training run")
    parser.add_argument("--export-dir", default=None, help="TF Serving root (default: the run's)")
    parser.add_argument("--out", default=None, help="folder for the .tflite files "
                        "(default: beside the model)")
    args = parser.parse_args(argv)
    if not args.model.endswith(".keras"):
        raise UserError(f"{args.model}: expected a .keras file")
    cfg, _ = load_run_config(task, args.model, args.config)
    training.set_seed(cfg.run.seed)
    splits = task.build_datasets(cfg)
    model = keras.saving.load_model(args.model, custom_objects=custom_objects(task),
                                    safe_mode=True)
    edge = _optional(task, "edge_model", lambda m, c: m)(model, cfg)
    out = args.out or os.path.dirname(os.path.abspath(args.model))
    os.makedirs(out, exist_ok=True)
    representative = representative_dataset(task, splits, cfg)
    written = {"tflite_float": os.path.join(out, "export_float.tflite"),
               "tflite_ptq_int8": os.path.join(out, "export_ptq_int8.tflite")}
    export.convert_to_tflite(edge, written["tflite_float"])
    ops = export.convert_to_tflite(edge, written["tflite_ptq_int8"], representative)
    written["saved_model"] = export.export_saved_model(
        model, task.build_serving_model(model, cfg, splits.info),
        args.export_dir or cfg.run.export_dir, task.NAME,
        extra_files={"config.json": cfg.to_json(), "info.json": _json_text(splits.info)})
    print(json.dumps({"written": written, "int8_ops": ops}, indent=2))
    return written
