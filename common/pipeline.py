"""One training run of any task, in named stages.

    prepare -> float -> qat -> export -> evaluate -> report

`run_train(task, argv)` is what every `python -m tasks.<task>.train` calls.
Each stage is a small function with explicit inputs and outputs; when it
finishes, the run folder's `manifest.json` records it (see
`common/runfolder.py`) and `--resume` skips it. `task` is the task package;
`common/` reads the names of the task contract from it (documented in
docs/ARCHITECTURE.md) and never imports `tasks/` itself.
"""

import dataclasses
import importlib
import json
import os
import time

import keras
import numpy as np

from common import artifacts as artifacts_lib
from common import cli, cluster, export, files, litert, qat, quant_report, quiet, serving_bundle, training
from common import report as report_lib
from common.runfolder import RunFolder


@dataclasses.dataclass
class RunContext:
    """What a custom `fit_float` needs to train like the default stage does."""

    run_dir: str
    strategy: object
    monitor: tuple
    resume: bool = False
    # (score_fn(model) -> dict, metric name): the task's primary metric on the
    # validation split, logged every epoch as `val_<name>`.
    validation_score: tuple = None

    def stage_dir(self, stage):
        return os.path.join(self.run_dir, "stages", stage)

    def fit(self, model, splits, cfg, compile_args, stage, **kwargs):
        """`common.training.fit` with this run's folders and monitor; a stage
        that passes its own `monitor` (e.g. MLM pre-training, which the task
        metric cannot score) gets no validation score."""
        if "monitor" not in kwargs:
            kwargs["monitor"] = self.monitor
            kwargs.setdefault("validation_score", self.validation_score)
        return training.fit(model, splits, cfg, compile_args, self.stage_dir(stage),
                            log_dir=os.path.join(self.run_dir, "logs", stage), **kwargs)


# --- the task contract, with its defaults ----------------------------------

def _optional(task, name, default):
    return getattr(task, name, default)


def task_score(task):
    """The task's metric function, `<task>.metrics.score`."""
    return importlib.import_module(f"{task.__name__}.metrics").score


def edge_model(task, model, cfg):
    """The fixed-shape part converted to LiteRT: one Keras model, or
    {signature: model} for a task that declares `EDGE_SIGNATURES` (an encoder
    and a decoder step driven by a host loop; one `.tflite`, one signature
    each)."""
    return _optional(task, "edge_model", lambda m, c: m)(model, cfg)


def is_multipart(edge):
    return isinstance(edge, dict)


def raw_fn_of(edge):
    """The raw function of a Keras edge model, {signature: function} for parts."""
    if is_multipart(edge):
        return {key: artifacts_lib.keras_raw_fn(export.as_float32(part))
                for key, part in edge.items()}
    return artifacts_lib.keras_raw_fn(export.as_float32(edge))


def representative_dataset(task, splits, cfg, edge=None):
    """The task's calibration generator, or the first examples of
    `splits.calibration` (validation when absent): deterministic, never test.
    A multi-part edge's generator gets the float parts (to run the encoder
    for the decoder step's inputs) and yields (signature, inputs) pairs."""
    custom = _optional(task, "representative_dataset", None)
    if custom:
        return custom(splits, cfg, edge) if is_multipart(edge) else custom(splits, cfg)
    source = splits.calibration if splits.calibration is not None else splits.val
    return export.representative_from_dataset(source, cfg.export.representative_samples)


def predict_fn_from_raw(task, raw_fn, cfg, info):
    wrap = _optional(task, "predict_fn_from_raw", None)
    return wrap(raw_fn, cfg, info) if wrap else raw_fn


def limited(dataset, cfg):
    if cfg.run.max_test_examples:
        return dataset.unbatch().take(cfg.run.max_test_examples).batch(cfg.train.batch_size)
    return dataset


def validation_scorer(task, cfg, splits):
    """(score_fn, name) scoring a Keras model on the validation split with the
    task's own metric, as `training.fit` expects."""
    score = task_score(task)

    def score_model(model):
        raw_fn = artifacts_lib.keras_raw_fn(model)
        return score(predict_fn_from_raw(task, raw_fn, cfg, splits.info), splits.val,
                     splits.info)
    return score_model, task.PRIMARY_METRIC


def strongest_baseline(baselines, primary_metric, mode, ceilings=()):
    """Name of the best baseline by the primary metric (`mode` max or min);
    `ceilings` (upper references such as the recordings themselves) are
    scored but never the baseline the model must beat."""
    scored = {name: values[primary_metric] for name, values in baselines.items()
              if primary_metric in values and name not in ceilings}
    if not scored:
        return None
    pick = max if mode == "max" else min
    return pick(scored, key=scored.get)


def baseline_notes(metrics, primary_metric, mode):
    """The report's first notes: the float model and the INT8 file that ships
    (`metrics.int8`), each when it does not beat the strongest baseline. A
    float model that wins narrowly can lose once quantized, and the INT8 file
    is what goes to the device."""
    baseline = metrics.get("baseline")
    if not baseline or primary_metric not in baseline:
        return []
    bar = baseline[primary_metric]
    notes = []
    for key, what in (("float", "The float model"), ("int8", "The INT8 file (model_int8.tflite)")):
        if primary_metric not in metrics.get(key, {}):
            continue
        value = metrics[key][primary_metric]
        if not (value > bar if mode == "max" else value < bar):
            notes.append(f"{what} does NOT beat the {baseline['name']} baseline: "
                         f"{primary_metric} {value:.4f} vs {bar:.4f}.")
    return notes


# (metrics key, artifacts key) of every LiteRT file a run scores.
ARTIFACT_SCORES = (("tflite_float", "tflite_float"), ("int8", "tflite_int8"),
                   ("qat_int8", "tflite_qat_int8"), ("ptq_int8", "tflite_ptq_int8"))


def _say(task, message):
    print(f"[{task.NAME}] {message}", flush=True)


# --- the stages --------------------------------------------------------------

def prepare_data(task, cfg, run):
    """Stage `prepare`: the task's splits; `info.json` in the run folder."""
    phase = time.time()
    _say(task, f"preset {cfg.preset}, data {cfg.data.source}, run folder {run.path}")
    splits = task.build_datasets(cfg)
    files.write_text_atomic(run.file("info.json"), files.json_text(splits.info))
    if not run.finished("prepare"):
        run.record("prepare", time.time() - phase,
                   {"skipped": splits.skipped, "summary": splits.summary})
    return splits


def train_float(task, cfg, splits, run, context):
    """Stage `float`: `model.keras`, plus the notes and scores a custom stage returns."""
    path = run.file("model.keras")
    done = run.finished("float")
    if done and os.path.exists(path):
        _say(task, "resume: float training already finished, loading model.keras")
        return artifacts_lib.load_keras(task, path), done
    phase = time.time()
    with context.strategy.scope():
        model = task.build_model(cfg, splits.info)
        fit_float = _optional(task, "fit_float", None)
        if fit_float:
            result = fit_float(model, splits, cfg, splits.info, context)
        else:
            context.fit(model, splits, cfg, task.compile_args(cfg, splits.info), "float")
            result = training.FloatResult(model)
    files.save_keras_atomic(result.model, path)
    outputs = {"model": "model.keras", "notes": result.notes, "metrics": result.metrics}
    run.record("float", time.time() - phase, outputs)
    training.remove_backup(context.stage_dir("float"))
    return result.model, outputs


def train_qat(task, cfg, splits, edge, run, context):
    """Stage `qat`: fake-quant clone of the edge model (of the whole trained
    model when the edge has several parts: it trains teacher-forced), fine-tuned
    from the float weights; `model_qat.keras`. None when QAT is off.

    The fine-tune continues the float run rather than restarting it (with
    `qat.follow_float`): its learning rate is at most the float schedule's
    last one, held constant; BatchNormalization keeps the float statistics
    (the converter folds those); and the calibrated start competes with the
    fine-tuned epochs on the validation metric, so fine-tuning that hurts is
    dropped (`chosen_epochs.qat` 0 in the report)."""
    if not cfg.qat.enabled:
        return None
    path = run.file("model_qat.keras")
    if run.finished("qat") and os.path.exists(path):
        _say(task, "resume: QAT already finished, loading model_qat.keras")
        return artifacts_lib.load_keras(task, path)
    phase = time.time()
    _say(task, "quantization-aware fine-tuning")
    qat_cfg = cfg
    learning_rate = cfg.qat.learning_rate
    if cfg.qat.follow_float:
        steps = cfg.train.steps_per_epoch or training.steps_in(splits.train)
        learning_rate = min(learning_rate, qat.final_learning_rate(cfg.train, steps))
        qat_cfg = dataclasses.replace(cfg, train=dataclasses.replace(
            cfg.train, schedule="constant", warmup_epochs=0))
    with context.strategy.scope():
        # Fake quantization simulates int8 arithmetic; it runs in float32
        # after a bfloat16 float stage (bfloat16 QAT was slower, measured).
        qat_model = qat.quantize_model(export.as_float32(edge))
        if cfg.qat.freeze_batch_norm:  # before calibrating: ranges of inference-mode BN
            qat.freeze_batch_norm(qat_model)
        qat.calibrate(qat_model, splits.train, steps=5)
        score_fn, metric = context.validation_score or (None, None)
        monitors_score = bool(score_fn) and context.monitor[0] == f"val_{metric}"
        if cfg.qat.keep_start_if_better and cfg.train.restore_best and monitors_score:
            qat.record_start_as_best(qat_model, context.stage_dir("qat"),
                                     context.monitor[0], lambda m: score_fn(m)[metric])
        # The task metric picks the epoch: no val_loss pass, whose test step
        # would trace the fake-quant graph once more (tens of seconds).
        context.fit(qat_model, splits, qat_cfg, task.compile_args(cfg, splits.info), "qat",
                    epochs=cfg.qat.epochs, learning_rate=learning_rate,
                    steps_per_epoch=cfg.qat.steps_per_epoch,
                    validation_loss=not monitors_score)
    files.save_keras_atomic(qat_model, path)
    run.record("qat", time.time() - phase, {"model": "model_qat.keras",
                                            "learning_rate": float(learning_rate)})
    training.remove_backup(context.stage_dir("qat"))
    return qat_model


def export_models(task, cfg, splits, model, edge, qat_model, run):
    """Stage `export`: LiteRT float, INT8 (QAT), INT8 (post-training) and a
    SavedModel version; each artifact is recorded as it is written, so a
    resumed run writes only the missing ones."""
    done = run.finished("export")
    if done:
        return done
    phase = time.time()
    outputs = {"artifacts": {"keras": "model.keras"}, "int8_ops": {}, "quantization": {},
               "notes": []}
    representative = representative_dataset(task, splits, cfg, edge)
    multipart = is_multipart(edge)
    # A multi-part edge's QAT parts are cut from the fake-quant whole model.
    qat_edge = edge_model(task, qat_model, cfg) if multipart and qat_model is not None \
        else qat_model
    conversions = [("tflite_float", "model_float.tflite", edge, None, "LiteRT float")]
    if qat_model is not None:
        conversions.append(("tflite_int8", "model_int8.tflite", qat_edge, representative,
                            "LiteRT INT8 (QAT)"))
    if cfg.export.weight_only and qat_model is None:
        # int8 weights, float activations ship; the all-int8 file beside it
        # is scored too, so the report shows what full INT8 would lose.
        conversions += [("tflite_int8", "model_int8.tflite", edge, representative,
                         "LiteRT int8 weights, float activations (export.weight_only)"),
                        ("tflite_ptq_int8", "model_ptq_int8.tflite", edge, representative,
                         "LiteRT INT8 (post-training, all int8, for comparison)")]
    elif cfg.export.post_training_int8 or qat_model is None:
        key, name = (("tflite_ptq_int8", "model_ptq_int8.tflite") if qat_model is not None
                     else ("tflite_int8", "model_int8.tflite"))
        conversions.append((key, name, edge, representative, "LiteRT INT8 (post-training)"))
    for key, name, source, calibration, label in conversions:
        step = f"export:{key}"
        previous = run.finished(step)
        if not (previous and os.path.exists(run.file(name))):
            _say(task, f"exporting {label}")
            started = time.time()
            previous = {"ops": None, "quantization": None, "notes": []}
            # Layers kept float / 16-bit activations: post-training files only
            # (a QAT model's ranges are 8-bit).
            mixed = {"float_layers": cfg.export.float_layers,
                     "int16_activations": cfg.export.int16_activations,
                     "weight_only": cfg.export.weight_only and key == "tflite_int8"} \
                if calibration is not None and source is edge else {}
            with quiet.captured_stderr(cfg.run.verbose):
                op_report = export.convert_to_tflite(source, run.file(name), calibration,
                                                     **mixed)
                if calibration is not None:  # an INT8 file: what runs int8, and how well
                    summary, notes = quant_report.describe_int8(
                        run.file(name), model if multipart else edge,
                        qat_model if source is qat_edge else None, calibration,
                        debug_layers=(cfg.export.debug_layers and source is edge
                                      and not multipart), conversion=op_report)
                    if source is qat_edge and (cfg.export.float_layers
                                               or cfg.export.int16_activations
                                               or cfg.export.weight_only):
                        notes.append(f"{name}: all 8-bit; export.float_layers / "
                                     "export.int16_activations / export.weight_only apply "
                                     "to the post-training file only.")
                    previous = {"ops": op_report, "quantization": summary, "notes": notes}
            run.record(step, time.time() - started, previous)
        outputs["artifacts"][key] = name
        if previous.get("ops"):
            outputs["int8_ops"][key] = previous["ops"]
            outputs["quantization"][key] = previous["quantization"]
            outputs["notes"] += previous["notes"]
    if "tflite_ptq_int8" in outputs["artifacts"] and qat_model is not None:
        ship_better_int8(task, cfg, splits, run, outputs)
    if cfg.export.mobile and qat_model is not None and _optional(task, "MOBILE", None):
        export_mobile(task, cfg, splits.info, qat_model, representative, run, outputs)

    _say(task, "exporting SavedModel for TF Serving")
    with quiet.captured_stderr(cfg.run.verbose):
        saved_model_dir = export_serving(task, cfg, model, splits.info, cfg.run.export_dir)
    outputs["artifacts"]["saved_model"] = os.path.relpath(saved_model_dir, run.path)
    outputs["saved_model_dir"] = os.path.abspath(saved_model_dir)
    run.record("export", time.time() - phase, outputs)
    return outputs


def export_mobile(task, cfg, info, qat_model, representative, run, outputs, required=False):
    """`model_mobile.tflite`: the QAT INT8 model with MediaPipe Tasks metadata
    (labels, normalisation, tokenizer), written by the task's `MOBILE` module.
    Without MediaPipe a training run notes how to install it; `export
    --mobile` (`required`) stops with that message."""
    from common import mobile as mobile_lib
    from common.errors import UserError

    module = task.MOBILE
    step = "export:tflite_mobile"
    previous = run.finished(step)
    if not (previous and os.path.exists(run.file(module.FILE_NAME))):
        try:
            mobile_lib.require_mediapipe()
        except UserError:
            if required:
                raise
            outputs["notes"].append(f"no mobile file: {mobile_lib.INSTALL_HINT}.")
            return
        _say(task, "exporting the mobile file (MediaPipe Tasks metadata)")
        started = time.time()
        try:
            with quiet.captured_stderr(cfg.run.verbose):
                # LiteRT has no bfloat16 kernels: a mixed-precision QAT model
                # converts in float32.
                module.export_mobile(export.as_float32(qat_model), info,
                                     run.file(module.FILE_NAME),
                                     representative)
        except UserError as error:  # a model the Tasks API cannot take: say why
            if required:
                raise
            outputs["notes"].append(f"no mobile file: {error}")
            return
        previous = {"ops": export.tflite_op_report(run.file(module.FILE_NAME))}
        run.record(step, time.time() - started, previous)
    outputs["artifacts"]["tflite_mobile"] = module.FILE_NAME
    outputs["int8_ops"]["tflite_mobile"] = previous["ops"]


def score_mobile(task, cfg, splits, artifacts, run):
    """The mobile file scored through MediaPipe's own Tasks API (or the
    runtime the task's `MOBILE.RUNTIME` names, where no Tasks API fits)."""
    module = task.MOBILE
    predict = module.predict_fn(run.file(artifacts["tflite_mobile"]), splits.info)
    try:
        return task_score(task)(predict, module.scoring_dataset(splits, cfg), splits.info)
    finally:
        predict.close()


def export_serving(task, cfg, model, info, export_dir):
    """A new SavedModel version with its run files and TF Serving warm-up
    requests in `assets.extra/`, then `models.config` naming every task."""
    serving = export.as_float32(model)
    endpoints = task.build_serving_model(serving, cfg, info)
    warmup = serving_bundle.warmup_records(endpoints["serving_default"][1])
    saved_model_dir = export.export_saved_model(
        serving, endpoints, export_dir, task.NAME,
        extra_files={"config.json": cfg.to_json(), "info.json": files.json_text(info),
                     serving_bundle.WARMUP_FILE: warmup})
    serving_bundle.update_models_config(export_dir)
    return saved_model_dir


def ship_better_int8(task, cfg, splits, run, outputs):
    """QAT should never lose to post-training INT8. Both files are scored on
    the validation split; when the post-training file is better, it becomes
    `model_int8.tflite` and the QAT file stays as `model_qat_int8.tflite`."""
    score = task_score(task)
    primary = task.PRIMARY_METRIC
    better = max if _optional(task, "PRIMARY_METRIC_MODE", "max") == "max" else min
    values = {}
    for key in ("tflite_int8", "tflite_ptq_int8"):
        model = litert.load(run.file(outputs["artifacts"][key]))
        values[key] = score(predict_fn_from_raw(task, model, cfg, splits.info), splits.val,
                            splits.info)[primary]
    outputs["validation"] = {"qat_int8": values["tflite_int8"],
                             "ptq_int8": values["tflite_ptq_int8"]}
    if values["tflite_int8"] == better(values.values()):
        return
    qat_file = "model_qat_int8.tflite"
    os.replace(run.file("model_int8.tflite"), run.file(qat_file))
    with open(run.file("model_ptq_int8.tflite"), "rb") as handle:
        files.write_bytes_atomic(run.file("model_int8.tflite"), handle.read())
    outputs["artifacts"]["tflite_qat_int8"] = qat_file
    outputs["notes"] = [note.replace("model_int8.tflite:", f"{qat_file}:")
                        for note in outputs["notes"]]
    for table in ("int8_ops", "quantization"):
        outputs[table]["tflite_qat_int8"] = outputs[table]["tflite_int8"]
        outputs[table]["tflite_int8"] = outputs[table]["tflite_ptq_int8"]
    outputs["notes"].append(
        f"QAT INT8 lost to post-training INT8 on the validation split ({primary} "
        f"{values['tflite_int8']:.4f} vs {values['tflite_ptq_int8']:.4f}): model_int8.tflite "
        f"is the post-training file; the QAT file is {qat_file} (metrics.qat_int8).")


def evaluate_models(task, cfg, splits, edge, artifacts, run):
    """Stage `evaluate`: every artifact and every baseline on the same test split.

    Returns (metrics, predict_fns); the predict functions serve the pictures.
    """
    phase = time.time()
    test = limited(splits.test, cfg)
    info = splits.info
    score = task_score(task)
    scored = [("float", raw_fn_of(edge))]
    for name, key in ARTIFACT_SCORES:
        if key in artifacts:
            scored.append((name, litert.load(run.file(artifacts[key]))))
    predict_fns = {name: predict_fn_from_raw(task, raw_fn, cfg, info) for name, raw_fn in scored}
    done = run.finished("evaluate")
    if done:
        return done["metrics"], predict_fns
    metrics = {}
    for name in predict_fns:
        _say(task, f"evaluating {name}")
        metrics[name] = score(predict_fns[name], test, info)
    if "tflite_mobile" in artifacts and _optional(task, "MOBILE", None):
        runtime = getattr(task.MOBILE, "RUNTIME", "MediaPipe Tasks")
        _say(task, f"evaluating mobile (through {runtime})")
        metrics["mobile"] = score_mobile(task, cfg, splits, artifacts, run)
    metrics["baselines"] = {name: score(fn, test, info)
                            for name, fn in task.baseline_predict_fns(splits, info).items()}
    best = strongest_baseline(metrics["baselines"], task.PRIMARY_METRIC,
                              _optional(task, "PRIMARY_METRIC_MODE", "max"),
                              _optional(task, "REFERENCE_BASELINES", ()))
    if best is not None:
        metrics["baseline"] = dict(metrics["baselines"][best], name=best)
    run.record("evaluate", time.time() - phase, {"metrics": metrics})
    return metrics, predict_fns


def chosen_epochs(run, context):
    chosen = {}
    stages_dir = run.file("stages")
    for stage in sorted(os.listdir(stages_dir)) if os.path.isdir(stages_dir) else []:
        record = training.best_record(context.stage_dir(stage))
        if record is not None:
            chosen[stage] = record
    return chosen


def latency(artifacts, run, example, repeats, predict_fns=None):
    """Median batch-1 milliseconds per `.tflite`: the file alone, or (for a
    multi-part edge, `predict_fns` given) the whole host loop around it."""
    if predict_fns is None:
        # The mobile file takes MediaPipe's inputs (e.g. ids, mask, segment ids).
        return {key: litert.LiteRTModel(run.file(path)).median_latency_ms(example,
                                                                          repeats=repeats)
                for key, path in artifacts.items()
                if key.startswith("tflite") and key != "tflite_mobile"}
    names = {key: name for name, key in ARTIFACT_SCORES}
    result = {}
    for key in artifacts:
        if key in names and names[key] in predict_fns:
            function = predict_fns[names[key]]
            function(example)  # warm-up
            times = []
            for _ in range(max(1, repeats // 10)):
                started = time.perf_counter()
                function(example)
                times.append((time.perf_counter() - started) * 1000.0)
            result[key] = float(np.median(times))
    return result


def int8_slower_note(latency_ms, sizes):
    """Say so when the INT8 file is slower than float on this CPU, and why
    that happens (measured on the sentiment transformer)."""
    int8, float_ms = latency_ms.get("tflite_int8"), latency_ms.get("tflite_float")
    if not int8 or not float_ms or int8 <= float_ms:
        return None
    return (f"model_int8.tflite is slower than model_float.tflite on this CPU ({int8:.3f} vs "
            f"{float_ms:.3f} ms per example): where the model is small and its elementwise "
            "ops (LayerNorm, softmax, GELU) have no fast int8 kernel, XNNPACK splits the int8 "
            "graph into many partitions and those ops fall back to slower built-in kernels. "
            f"The INT8 file is {sizes.get('tflite_float', 0) / max(1, sizes.get('tflite_int8', 1)):.1f}x "
            "smaller; `export.float_layers` can keep chosen layers float.")


def int8_budget(task, metrics):
    """The task's INT8 quality budget checked on the test scores: optional
    `INT8_BUDGET = {metric: largest relative loss}` (metrics where lower is
    better, e.g. TTS mel L1 within 10% of float). Returns the per-metric
    figures and a note for the report, or None."""
    budget = _optional(task, "INT8_BUDGET", None)
    if not budget or "int8" not in metrics or "float" not in metrics:
        return None
    checks, within = {}, True
    for metric, tolerance in budget.items():
        if metric not in metrics["int8"] or metric not in metrics["float"]:
            continue
        float_value, int8_value = metrics["float"][metric], metrics["int8"][metric]
        loss = (int8_value - float_value) / max(abs(float_value), 1e-12)
        checks[metric] = {"float": float_value, "int8": int8_value,
                          "relative_loss": loss, "budget": tolerance}
        within = within and loss <= tolerance
    if not checks:
        return None
    figures = "; ".join(f"{metric} {c['int8']:.4f} vs float {c['float']:.4f} "
                        f"({c['relative_loss']:+.1%}, budget {c['budget']:.0%})"
                        for metric, c in checks.items())
    note = (f"INT8 within its budget: {figures}." if within else
            f"INT8 EXCEEDS its budget: {figures}. Ship the float file, or export with "
            "8-bit weights and float activations (--set export.weight_only=true), "
            "16-bit activations (export.int16_activations, LiteRT's 16x8 mode) "
            "or the worst layers float (export.float_layers).")
    return {"within": within, "metrics": checks, "note": note}


def write_report(task, cfg, splits, run, context, float_outputs, export_outputs,
                 metrics, predict_fns):
    """Stage `report`: report.json (the contract), report.md, pictures."""
    phase = time.time()
    artifacts = export_outputs["artifacts"]
    primary = task.PRIMARY_METRIC
    mode = _optional(task, "PRIMARY_METRIC_MODE", "max")
    # Scores a custom float stage measured itself (e.g. the GAN-stage generator).
    for name, values in float_outputs.get("metrics", {}).items():
        metrics.setdefault(name, values)
    sizes = {key: os.path.getsize(run.file(path))
             for key, path in artifacts.items() if key.startswith("tflite")}
    example = next(iter(limited(splits.test, cfg).unbatch().batch(1).take(1)))[0]
    example = keras.tree.map_structure(lambda t: np.asarray(t), example)
    latency_ms = latency(artifacts, run, example, cfg.export.latency_samples,
                         predict_fns if _optional(task, "EDGE_SIGNATURES", None) else None)

    notes = baseline_notes(metrics, primary, mode)
    if not cfg.qat.enabled:
        notes.append("QAT was off (--no-qat or qat.enabled=false): metrics.int8 is the "
                     "post-training INT8 model.")
    if splits.skipped:
        notes.append(f"data: {splits.skipped} bad samples were skipped (--skip-bad).")
    notes.extend(splits.notes)
    notes.extend(float_outputs.get("notes", []))
    notes.extend(export_outputs.get("notes", []))
    slower = int8_slower_note(latency_ms, sizes)
    if slower:
        notes.append(slower)
    budget = int8_budget(task, metrics)
    if budget:
        notes.append(budget["note"])

    pictures = []
    stages_dir = run.file("stages")
    histories = ({stage: training.read_history(context.stage_dir(stage))
                  for stage in sorted(os.listdir(stages_dir))}
                 if os.path.isdir(stages_dir) else {})
    if report_lib.plot_history(histories, run.file("training_curves.png")):
        pictures.append("training_curves.png")
    if report_lib.plot_metrics(metrics, primary, run.file("metrics.png")):
        pictures.append("metrics.png")
    save_samples = _optional(task, "save_samples", None)
    if save_samples:
        int8_fn = predict_fns.get("int8", predict_fns.get("ptq_int8"))
        for path in save_samples(predict_fns["float"], splits, splits.info, run.path, int8_fn):
            pictures.append(os.path.relpath(path, run.path))

    seconds = {stage: value for stage, value in run.seconds().items() if ":" not in stage}
    run_report = {
        "task": task.NAME,
        "preset": cfg.preset,
        "data": cfg.data.source,
        "primary_metric": primary,
        "metrics": metrics,
        "artifacts": artifacts,
        "sizes_bytes": sizes,
        "latency_ms": latency_ms,
        "seconds": {
            "train": seconds.get("float", 0.0), "qat": seconds.get("qat", 0.0),
            "export": seconds.get("export", 0.0), "evaluate": seconds.get("evaluate", 0.0),
            # Stages of every process that worked on the run (resumed ones too).
            "total": sum(seconds.values()) + time.time() - phase,
        },
        "test_examples": splits.info.get("num_test"),
        "data_summary": dict(splits.summary, skipped=splits.skipped),
        "int8_ops": export_outputs["int8_ops"],
        # Per INT8 file: int8 share of multiply-accumulates, requantize ops,
        # QAT coverage, the layers with the largest INT8 error.
        "quantization": export_outputs.get("quantization", {}),
        "int8_validation": export_outputs.get("validation", {}),
        "int8_budget": {key: value for key, value in (budget or {}).items() if key != "note"},
        "xla": training.use_xla(cfg.run),
        # The precision policy the run trained under, and why (common/precision.py).
        "precision": training.precision_decision(cfg.run).as_dict(),
        "deterministic": not cfg.run.fast_nondeterministic,
        # The epoch whose weights each stage kept (best by its monitor).
        "chosen_epochs": chosen_epochs(run, context),
        "stages": {stage: {"seconds": record["seconds"], "finished": record["finished"]}
                   for stage, record in run.manifest["stages"].items()},
        "notes": notes,
        "pictures": pictures,
    }
    files.write_json_atomic(run.file("report.json"), run_report)
    report_lib.write_markdown(run_report, run.file("report.md"))
    return run_report


def run_context(task, cfg, run, strategy, splits):
    """What the training stages share: the metric checkpoints follow (the
    task's primary validation metric unless it names another MONITOR) and
    the scorer that computes it each epoch."""
    mode = _optional(task, "PRIMARY_METRIC_MODE", "max")
    monitor = tuple(_optional(task, "MONITOR", (f"val_{task.PRIMARY_METRIC}", mode)))
    scorer = validation_scorer(task, cfg, splits) if monitor[0] == \
        f"val_{task.PRIMARY_METRIC}" else None
    return RunContext(run_dir=run.path, strategy=strategy, monitor=monitor,
                      resume=cfg.run.resume, validation_score=scorer)


def run_float_stage(task, argv=None):
    """The `prepare` and `float` stages exactly as `run_train` runs them, and
    nothing after (no QAT, export or report): (cfg, splits, float model).
    For checks of the float model alone, such as the real-data tests."""
    cfg = cli.parse_train_args(task, argv)
    multi_worker, _ = worker_role(cfg)
    with RunFolder(cfg) as run:
        strategy = training.configure(cfg)
        splits = prepare_data(task, cfg, run)
        model, _ = train_float(task, cfg, splits, run,
                               run_context(task, cfg, run, strategy, splits))
        if multi_worker:
            cluster.barrier(strategy)
    return cfg, splits, model


def worker_role(cfg):
    """(multi_worker, chief) for this process. Under `--strategy
    multi_worker` only the chief's files count: the other workers' run
    folders move below it (`<run>/workers/worker-<i>`)."""
    if cfg.run.strategy != "multi_worker":
        return False, True
    tf_config = cluster.check_tf_config()
    chief = cluster.is_chief(tf_config)
    if not chief:
        cfg.run.out = cluster.worker_run_dir(cfg.run.out, tf_config)
    return True, chief


def run_train(task, argv=None):
    """Parse `argv`, then run every stage; returns the report dict."""
    cfg = cli.parse_train_args(task, argv)
    multi_worker, chief = worker_role(cfg)
    with RunFolder(cfg) as run:
        strategy = training.configure(cfg)
        splits = prepare_data(task, cfg, run)
        context = run_context(task, cfg, run, strategy, splits)
        model, float_outputs = train_float(task, cfg, splits, run, context)
        edge = edge_model(task, model, cfg)
        if multi_worker:
            # The float training is the shared work. The short QAT fine-tune,
            # exports and the report are the chief's alone (QAT on several
            # workers is untried since their validation scores were agreed;
            # see docs/ARCHITECTURE.md, "Distribution").
            cluster.barrier(strategy)
            if not chief:
                _say(task, "worker finished its share of training; waiting for the chief")
                # Leaving now would stop this worker's heartbeats, which the
                # chief's coordination service reports as a crashed task.
                cluster.barrier(strategy)
                return None
            context.strategy = cluster.local_strategy()
        qat_model = train_qat(task, cfg, splits, model if is_multipart(edge) else edge,
                              run, context)
        export_outputs = export_models(task, cfg, splits, model, edge, qat_model, run)
        metrics, predict_fns = evaluate_models(task, cfg, splits, edge,
                                               export_outputs["artifacts"], run)
        run_report = write_report(task, cfg, splits, run, context, float_outputs,
                                  export_outputs, metrics, predict_fns)
        if multi_worker:
            cluster.barrier(strategy)  # the other workers may leave now
    primary = task.PRIMARY_METRIC
    summary = ", ".join(f"{name} {values[primary]:.4f}" for name, values in metrics.items()
                        if isinstance(values, dict) and primary in values)
    _say(task, f"{primary}: {summary}")
    # The baseline verdicts (float model and shipped INT8 file) when there
    # are any, else the report's first note.
    mode = _optional(task, "PRIMARY_METRIC_MODE", "max")
    for note in baseline_notes(metrics, primary, mode) or run_report["notes"][:1]:
        _say(task, note)
    _say(task, f"report: {run.file('report.md')}; SavedModel: "
               f"{export_outputs['saved_model_dir']}")
    return run_report


def main_train(task, argv=None):
    return cli.main_guard(lambda: run_train(task, argv))


# --- evaluate / export --------------------------------------------------------

def run_evaluate(task, argv=None):
    """Score a `.keras`, `.tflite` or SavedModel on the test split of its data."""
    args = cli.parse_evaluate_args(task, argv)
    overrides = list(args.overrides)
    task_overrides = _optional(task, "evaluation_overrides", None)
    if task_overrides:
        overrides += task_overrides(args.model, args)
    cfg, _ = artifacts_lib.load_run_config(task, args.model, args.config, overrides)
    training.set_seed(cfg.run.seed)
    splits = task.build_datasets(cfg)
    raw_fn = artifacts_lib.load_raw_fn(task, args.model, cfg)
    test = limited(splits.test, cfg)
    score = task_score(task)
    results = {"model": args.model,
               "metrics": score(predict_fn_from_raw(task, raw_fn, cfg, splits.info),
                                test, splits.info)}
    if args.baseline:
        results["baselines"] = {name: score(fn, test, splits.info) for name, fn in
                                task.baseline_predict_fns(splits, splits.info).items()}
    print(json.dumps(files.jsonable(results), indent=2))
    return results


def run_export(task, argv=None):
    """Export a trained `.keras` again: LiteRT float + post-training INT8 and a
    new SavedModel version (QAT happens during training, not here)."""
    args = cli.parse_export_args(task, argv)
    cfg, _ = artifacts_lib.load_run_config(task, args.model, args.config)
    training.set_seed(cfg.run.seed)
    splits = task.build_datasets(cfg)
    model = artifacts_lib.load_keras(task, args.model)
    edge = edge_model(task, model, cfg)
    out = args.out or os.path.dirname(os.path.abspath(args.model))
    os.makedirs(out, exist_ok=True)
    representative = representative_dataset(task, splits, cfg, edge)
    written = {"tflite_float": os.path.join(out, "export_float.tflite"),
               "tflite_ptq_int8": os.path.join(out, "export_ptq_int8.tflite")}
    with quiet.captured_stderr(args.verbose):
        export.convert_to_tflite(edge, written["tflite_float"])
        ops = export.convert_to_tflite(edge, written["tflite_ptq_int8"], representative)
        written["saved_model"] = export_serving(task, cfg, model, splits.info,
                                                args.export_dir or cfg.run.export_dir)
    if args.mobile:
        written.update(export_mobile_command(task, cfg, splits, args, representative, out))
    print(json.dumps({"written": written, "int8_ops": ops}, indent=2))
    return written


def export_mobile_command(task, cfg, splits, args, representative, out):
    """`export MODEL --mobile`: the mobile file from the run's QAT model."""
    from common.errors import UserError

    if not _optional(task, "MOBILE", None):
        raise UserError(f"{task.NAME} has no mobile export (no MediaPipe Tasks API fits it)")
    qat_path = os.path.join(os.path.dirname(os.path.abspath(args.model)), "model_qat.keras")
    if not os.path.exists(qat_path):
        raise UserError(f"{qat_path}: not found; the mobile file is the QAT model, trained "
                        "with QAT on (the default)")
    qat_model = artifacts_lib.load_keras(task, qat_path)
    path = os.path.join(out, task.MOBILE.FILE_NAME)
    with quiet.captured_stderr(args.verbose):
        from common import mobile as mobile_lib

        mobile_lib.require_mediapipe()
        task.MOBILE.export_mobile(qat_model, splits.info, path, representative)
    return {"tflite_mobile": path}
