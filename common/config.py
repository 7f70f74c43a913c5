"""Configuration: dataclasses, presets and `key=value` overrides.

Every task's `Config` subclasses `BaseConfig` and replaces `model` and `data`
with its own dataclasses. Training, QAT and export hyperparameters are kept
apart (as MediaPipe Model Maker does), so a preset or a `--set` override names
exactly which knob it turns: `train.epochs=5`, `qat.learning_rate=1e-5`,
`model.filters=32`.

A preset is a dict of dotted overrides applied on top of the dataclass
defaults; unknown keys are an error that names the key and the known ones.
"""

import dataclasses
import json
import typing
from typing import Optional

from common.errors import UserError


@dataclasses.dataclass
class TrainConfig:
    """Hyperparameters of the float training stage."""

    epochs: int = 10
    batch_size: int = 16
    # Optimizer by name: sgd, momentum, adam, adamw.
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    # Learning-rate schedule by name: constant, cosine, step, exponential.
    schedule: str = "cosine"
    warmup_epochs: int = 0
    # Gradient clipping by global norm; 0 turns it off.
    clipnorm: float = 0.0
    label_smoothing: float = 0.0
    # Early stopping on the monitored validation metric; 0 turns it off.
    early_stopping_patience: int = 0
    # A budget in optimizer steps: small datasets train more epochs so that
    # the model sees at least this many updates (0: `epochs` as given; an
    # explicit --epochs turns the budget off), never more than `max_epochs`.
    min_steps: int = 0
    max_epochs: int = 300
    # Load the weights of the best validation epoch (by the task's primary
    # metric) before QAT and export, instead of keeping the last epoch.
    restore_best: bool = True
    # None: one pass over the training split per epoch.
    steps_per_epoch: Optional[int] = None
    # The resume backup and the best epoch's weights are written at most
    # this share of the training time: a write waits until training has run
    # (last write's seconds / share) since the previous one, so a kill loses
    # at most that much training. Short epochs otherwise spend more time
    # saving than stepping. 1 writes at every epoch's end.
    checkpoint_share: float = 0.02


@dataclasses.dataclass
class QATConfig:
    """Quantization-aware fine-tuning, started from the float checkpoint."""

    enabled: bool = True
    epochs: int = 2
    learning_rate: float = 1e-4
    steps_per_epoch: Optional[int] = None
    # Continue the float run instead of restarting it: the learning rate is
    # at most where the float schedule ended (`learning_rate` caps it), held
    # constant. Off: `learning_rate` on a fresh `train.schedule`.
    follow_float: bool = True
    # BatchNormalization keeps the float statistics (what the converter folds).
    freeze_batch_norm: bool = True
    # The calibrated, not fine-tuned model competes with the fine-tuned
    # epochs on the validation metric (needs train.restore_best).
    keep_start_if_better: bool = True


@dataclasses.dataclass
class ExportConfig:
    """Export to LiteRT and to TF Serving."""

    # Calibration samples drawn from the training split for INT8 conversion.
    representative_samples: int = 200
    # Also export a post-training INT8 model of the float model, to show what
    # QAT buys.
    post_training_int8: bool = True
    # Examples timed for the latency figures in the report.
    latency_samples: int = 30
    # Also write model_mobile.tflite (the QAT INT8 model with MediaPipe Tasks
    # metadata) for tasks that have one, when MediaPipe is installed.
    mobile: bool = True
    # Name the five layers with the largest INT8 error (LiteRT's quantization
    # debugger on the post-training export; it converts the model once more).
    debug_layers: bool = True
    # Where INT8 loses more than the task can afford, spend bits where it
    # hurts (the post-training file only; QAT ranges are 8-bit). Names of
    # Keras layers whose ops stay float (e.g. "logits,decoder0_2_conv"; the
    # worst layers in report.json `quantization` are a place to start)...
    float_layers: list = dataclasses.field(default_factory=list)
    # ...or the whole file with 16-bit activations and 8-bit weights
    # (LiteRT's 16x8 mode: closer to float, slower than int8). One of the two.
    int16_activations: bool = False
    # ...or 8-bit weights with float activations (dynamic-range
    # quantization: no calibration, weights 4x smaller, activations exact).
    weight_only: bool = False
    # Limits every SavedModel signature enforces, so that one request cannot
    # exhaust the server: images per batch, pixels per image (checked from
    # the header, before decoding), bytes per text.
    serving_max_batch: int = 64
    serving_max_pixels: int = 4096 * 4096
    serving_max_text_bytes: int = 10_000


@dataclasses.dataclass
class RunConfig:
    """How and where a run executes (not what it learns)."""

    out: str = ""  # run folder; "" means runs/<task>-<preset>
    export_dir: str = "saved_models"
    seed: int = 0
    # None: XLA on where a GPU is present, off on CPU (measured slower there).
    xla: Optional[bool] = None
    # True (--mixed-precision): bfloat16 on a CPU, float16 on a GPU; False
    # (--no-mixed-precision): float32; None: bfloat16 where the preset opts
    # in and the CPU multiplies it natively, else float32 (common/precision.py).
    mixed_precision: Optional[bool] = None
    # The preset's opt-in to bfloat16 on CPUs with native bfloat16 (set where
    # a default run was measured as fast or faster with the same quality).
    bfloat16_on_cpu: bool = False
    strategy: str = "default"  # default, mirrored, multi_worker, tpu
    resume: bool = False
    skip_bad: bool = False
    # Op determinism (same seed, same report) costs some speed; this turns it off.
    fast_nondeterministic: bool = False
    # Show TensorFlow's own log lines and converter output.
    verbose: bool = False
    # Cap on test examples scored (None: the whole test split).
    max_test_examples: Optional[int] = None


@dataclasses.dataclass
class DataConfig:
    """Where the data comes from; tasks extend this with their own fields."""

    # "synthetic" (built in), a TFDS name, or a local folder / file path.
    source: str = "synthetic"
    num_train: int = 512
    num_val: int = 64
    num_test: int = 128
    # With --skip-bad, a run that skips more than this share of the samples
    # stops: the data is broken, not a few files.
    max_skipped_fraction: float = 0.1


@dataclasses.dataclass
class BaseConfig:
    task: str = ""
    preset: str = "default"
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    qat: QATConfig = dataclasses.field(default_factory=QATConfig)
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)
    run: RunConfig = dataclasses.field(default_factory=RunConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)

    def to_dict(self):
        return dataclasses.asdict(self)

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


class ConfigError(UserError):
    """A preset name, key or value that the configuration does not accept."""


def _field_type(obj, name):
    hints = typing.get_type_hints(type(obj))
    return hints[name]


def _coerce(value, annotation, key):
    """Turn `value` (often a string from the command line) into `annotation`."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation in (list, tuple):
        origin = annotation
    if origin is typing.Union:
        non_none = [a for a in args if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            return None
        return _coerce(value, non_none[0], key)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        item_type = args[0] if args else str
        return origin(_coerce(v, item_type, key) for v in value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if annotation in (int, float, str):
        try:
            if annotation is int and isinstance(value, str):
                number = float(value)
                if number != int(number):
                    raise ValueError
                return int(number)
            return annotation(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{key}: expected {annotation.__name__}, got {value!r}"
            ) from None
    return value


def set_value(cfg, key, value):
    """Set a dotted `key` (e.g. `train.epochs`) on `cfg`, converting types."""
    parts = key.split(".")
    target = cfg
    for depth, part in enumerate(parts):
        known = [f.name for f in dataclasses.fields(target)]
        if part not in known:
            prefix = ".".join(parts[:depth])
            where = f" in {prefix!r}" if prefix else ""
            raise ConfigError(
                f"unknown config key {key!r}: {part!r} is not a field{where}; "
                f"known: {', '.join(known)}"
            )
        if depth == len(parts) - 1:
            current = getattr(target, part)
            if dataclasses.is_dataclass(current):
                raise ConfigError(
                    f"config key {key!r} is a section; set one of its fields "
                    f"({', '.join(f.name for f in dataclasses.fields(current))})"
                )
            setattr(target, part, _coerce(value, _field_type(target, part), key))
        else:
            target = getattr(target, part)
            if not dataclasses.is_dataclass(target):
                raise ConfigError(f"config key {key!r}: {part!r} is not a section")


def apply_overrides(cfg, overrides):
    """Apply a dict (or `key=value` strings) of dotted overrides to `cfg`."""
    if isinstance(overrides, (list, tuple)):
        pairs = {}
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r}: expected KEY=VALUE")
            key, value = item.split("=", 1)
            pairs[key.strip()] = value.strip()
        overrides = pairs
    for key, value in overrides.items():
        set_value(cfg, key, value)
    return cfg


def from_preset(config_class, presets, preset_name):
    """A fresh `config_class()` with the named preset applied."""
    if preset_name not in presets:
        raise ConfigError(
            f"unknown preset {preset_name!r}; expected one of: "
            f"{', '.join(sorted(presets))}"
        )
    cfg = config_class()
    apply_overrides(cfg, presets[preset_name])
    cfg.preset = preset_name
    return cfg
