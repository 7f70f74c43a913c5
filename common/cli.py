"""The one argument parser every task's train / evaluate / export uses."""

import argparse
import json
import os
import sys

from common import config as config_lib
from common.errors import UserError


def add_run_arguments(parser, task):
    parser.add_argument("--preset", default="default",
                        help=f"one of: {', '.join(task.PRESETS)} (default: default)")
    parser.add_argument("--data", help="'synthetic' (built in), a TFDS name, or a local path")
    parser.add_argument("--epochs", type=int, help="float training epochs")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--out", help="run folder (default: runs/<task>-<preset>)")
    parser.add_argument("--export-dir", help="TF Serving export root (default: saved_models)")
    parser.add_argument("--no-qat", action="store_true",
                        help="skip quantization-aware training (INT8 is then post-training only)")
    parser.add_argument("--qat-epochs", type=int)
    parser.add_argument("--xla", action=argparse.BooleanOptionalAction, default=None,
                        help="XLA compilation (default: on with a GPU, off on CPU)")
    parser.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction,
                        default=None,
                        help="bfloat16 (float16 on a GPU) with float32 variables (default: "
                        "bfloat16 where the preset opts in and the CPU has AVX512_BF16 or "
                        "AMX_BF16, else float32)")
    parser.add_argument("--strategy", choices=["default", "mirrored", "multi_worker", "tpu"])
    parser.add_argument("--seed", type=int)
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run in the same --out folder")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip and count bad samples instead of stopping")
    parser.add_argument("--fast-nondeterministic", action="store_true",
                        help="allow nondeterministic kernels (faster; the same seed no "
                        "longer gives the same report)")
    add_verbose_argument(parser)
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override any config field, e.g. model.filters=32")
    for flag, key in getattr(task, "CLI_FLAGS", {}).items():
        parser.add_argument(flag, dest="task_flag:" + key, metavar="VALUE",
                            help=f"sets {key}")
    return parser


# Flag -> dotted config key, for the flags every task shares.
_SHARED_FLAGS = {
    "data": "data.source",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "learning_rate": "train.learning_rate",
    "out": "run.out",
    "export_dir": "run.export_dir",
    "qat_epochs": "qat.epochs",
    "xla": "run.xla",
    "strategy": "run.strategy",
    "seed": "run.seed",
}


def config_from_args(task, args):
    """The task's config: preset, then the shared flags, then `--set`."""
    cfg = config_lib.from_preset(task.Config, task.PRESETS, args.preset)
    cfg.task = task.NAME
    for attribute, key in _SHARED_FLAGS.items():
        value = getattr(args, attribute, None)
        if value is not None:
            config_lib.set_value(cfg, key, value)
    if getattr(args, "epochs", None) is not None:
        cfg.train.min_steps = 0  # the user's epoch count wins over the step budget
    if getattr(args, "no_qat", False):
        cfg.qat.enabled = False
    if getattr(args, "mixed_precision", None) is not None:
        cfg.run.mixed_precision = args.mixed_precision
    if getattr(args, "resume", False):
        cfg.run.resume = True
    if getattr(args, "skip_bad", False):
        cfg.run.skip_bad = True
    if getattr(args, "fast_nondeterministic", False):
        cfg.run.fast_nondeterministic = True
    if getattr(args, "verbose", False):
        cfg.run.verbose = True
    for name, value in vars(args).items():
        if name.startswith("task_flag:") and value is not None:
            config_lib.set_value(cfg, name.split(":", 1)[1], value)
    config_lib.apply_overrides(cfg, args.overrides)
    if not cfg.run.out:
        cfg.run.out = os.path.join("runs", f"{task.NAME}-{cfg.preset}")
    return cfg


def parse_train_args(task, argv=None):
    parser = argparse.ArgumentParser(
        prog=f"python -m tasks.{task.NAME}.train",
        description=f"Train, quantize and export the {task.NAME} model.",
    )
    add_run_arguments(parser, task)
    args = parser.parse_args(argv)
    return config_from_args(task, args)


def add_verbose_argument(parser):
    # Read before TensorFlow is imported (see common/quiet.py); declared here
    # so that --help lists it and argparse accepts it.
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's log lines and converter output")


def parse_evaluate_args(task, argv=None):
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
                        help="also score the trivial baselines")
    add_verbose_argument(parser)
    args = parser.parse_args(argv)
    args.overrides = list(args.overrides) + ([f"data.source={args.data}"] if args.data else [])
    return args


def parse_export_args(task, argv=None):
    parser = argparse.ArgumentParser(
        prog=f"python -m tasks.{task.NAME}.export",
        description="Export a trained .keras model to LiteRT and TF Serving.")
    parser.add_argument("model", help="the .keras file of a training run")
    parser.add_argument("--config", help="config.json of the training run")
    parser.add_argument("--export-dir", default=None, help="TF Serving root (default: the run's)")
    parser.add_argument("--out", default=None, help="folder for the .tflite files "
                        "(default: beside the model)")
    parser.add_argument("--mobile", action="store_true",
                        help="also write model_mobile.tflite (MediaPipe Tasks metadata) "
                        "from the run's model_qat.keras")
    add_verbose_argument(parser)
    args = parser.parse_args(argv)
    if not args.model.endswith(".keras"):
        raise UserError(f"{args.model}: expected a .keras file")
    return args


def predict_parser(task, description, default_model, inputs_help="image files",
                   writes_files=True):
    """The arguments every `predict` shares: inputs, --model, --config, and
    --out for commands that write files."""
    parser = argparse.ArgumentParser(prog=f"python -m tasks.{task.NAME}.predict",
                                     description=description)
    add_verbose_argument(parser)
    parser.add_argument("inputs", nargs="+", help=inputs_help)
    parser.add_argument("--model", default=default_model,
                        help=".keras, .tflite or SavedModel folder")
    parser.add_argument("--config", help="config.json of the training run "
                        "(default: found beside the model)")
    if writes_files:
        parser.add_argument("--out", default="predictions", help="output folder")
    return parser


def load_config(task, path):
    """A config saved as `config.json` by a training run."""
    with open(path) as handle:
        saved = json.load(handle)
    cfg = task.Config()

    def flatten(prefix, value, out):
        if isinstance(value, dict):
            for key, inner in value.items():
                flatten(f"{prefix}.{key}" if prefix else key, inner, out)
        else:
            out[prefix] = value
    pairs = {}
    flatten("", saved, pairs)
    for key, value in pairs.items():
        config_lib.set_value(cfg, key, value)
    return cfg


def command(run, argv=None):
    """What every command module's `main` does: run `run(argv)` under `main_guard`."""
    return main_guard(lambda: run(argv))


def main_guard(function):
    """Run `function`; a `UserError` becomes one line on stderr and exit 2."""
    try:
        return function()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; run again with --resume to continue", file=sys.stderr)
        sys.exit(130)
