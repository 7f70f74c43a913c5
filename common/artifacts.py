"""Loading what a run saved: models of every format, and the run's config.

A model is used through a raw function `inputs -> outputs` (numpy in and out)
whatever its format, so the task's `score` treats the Keras model, a `.tflite`
file and a SavedModel alike.
"""

import json
import os

import keras
import numpy as np

from common import cli, litert, qat
from common import config as config_lib
from common.errors import UserError


def custom_objects(task):
    """Classes a task's `.keras` files may name (QAT layers included)."""
    objects = qat.custom_objects()
    objects.update(getattr(task, "custom_objects", dict)())
    return objects


def load_keras(task, path):
    """Load a `.keras` file with safe_mode on; refuse lambdas and unknown classes
    with one line instead of a stack trace."""
    try:
        return keras.saving.load_model(path, custom_objects=custom_objects(task),
                                       safe_mode=True)
    except (TypeError, ValueError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "lambda" in str(error).lower() or "safe_mode" in str(error):
            raise UserError(f"{path}: refused to load: it holds a Lambda layer or "
                            "Python code, which safe mode does not run") from None
        raise UserError(f"{path}: cannot load as a {task.NAME} model ({message})") from None


def keras_raw_fn(model):
    """`inputs -> outputs` in numpy through the model's compiled predict
    function (an eager call is about 18x slower on the detection model, and
    the validation score runs every epoch)."""
    strategy = getattr(model, "distribute_strategy", None)
    # predict_on_batch returns one replica's share of a batch under a
    # mirrored strategy (Keras 3.15): call the model there.
    replicated = strategy is not None and strategy.num_replicas_in_sync > 1

    def raw(inputs):
        outputs = model(inputs, training=False) if replicated else \
            model.predict_on_batch(inputs)
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


def edge_raw_fns(task, model, cfg):
    """{signature: raw_fn} of a task whose edge program has several parts
    (`EDGE_SIGNATURES`, e.g. an encoder and a decoder step), else None."""
    if not getattr(task, "EDGE_SIGNATURES", None) or cfg is None:
        return None
    from common import export

    return {key: keras_raw_fn(export.as_float32(part))
            for key, part in task.edge_model(model, cfg).items()}


def load_raw_fn(task, path, cfg=None):
    """A batch function giving raw outputs for a `.keras`, `.tflite` or
    SavedModel; {signature: function} for a task with several edge parts
    (a `.keras` needs the run's `cfg` to cut it into them)."""
    if not os.path.exists(path):
        raise UserError(f"{path}: model file not found")
    if path.endswith(".tflite"):
        return litert.load(path)
    if path.endswith(".keras"):
        # A mixed-precision run's model.keras keeps its bfloat16 layer
        # policies; score it in float32, as the run's report and exports do.
        from common import export

        model = export.as_float32(load_keras(task, path))
        return edge_raw_fns(task, model, cfg) or keras_raw_fn(model)
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "saved_model.pb")):
        return saved_model_raw_fn(path)
    raise UserError(f"{path}: expected a .keras file, a .tflite file or a SavedModel folder")


def find_run_files(model_path):
    """`config.json` and `info.json` saved beside a model by a training run.

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
    """(cfg, info) of the run that trained `model_path`, with overrides applied."""
    found_config, info_path = find_run_files(model_path)
    config_path = config_path or found_config
    if config_path is None:
        raise UserError(
            f"{model_path}: no config.json beside the model; pass --config "
            "PATH/config.json from its training run"
        )
    cfg = cli.load_config(task, config_path)
    config_lib.apply_overrides(cfg, list(overrides))
    info = None
    if info_path:
        with open(info_path) as handle:
            info = json.load(handle)
    return cfg, info


def load_for_predict(task, args):
    """(cfg, info, raw_fn) for the `--model` / `--config` of a predict command."""
    cfg, info = load_run_config(task, args.model, args.config)
    raw_fn = load_raw_fn(task, args.model, cfg)
    os.makedirs(args.out, exist_ok=True)
    return cfg, info, raw_fn
