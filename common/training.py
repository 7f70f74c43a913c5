"""Training: strategy, precision, XLA, optimizers, schedules, callbacks, fit.

`fit()` is `model.compile` + `model.fit` with the run's settings, writing
logs and a resumable backup under the run folder.
"""

import contextlib
import dataclasses
import json
import math
import os
import shutil
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from common import files
from common import keras_fixes  # noqa: F401  (every backup and checkpoint saves)
from common import precision
from common.errors import UserError

@dataclasses.dataclass
class FloatResult:
    """What a task's custom `fit_float` returns to the pipeline.

    `metrics` are scores the stage measured itself ({name: {metric: value}},
    e.g. the GAN-stage generator), shown in the report beside `float`;
    `notes` are sentences for the report.
    """

    model: keras.Model
    notes: list = dataclasses.field(default_factory=list)
    metrics: dict = dataclasses.field(default_factory=dict)


STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step", "exponential", "inverse_sqrt")


def gpu_available():
    return bool(tf.config.list_physical_devices("GPU"))


def use_xla(run_config):
    """XLA on by default where a GPU is present; on CPU only when asked.

    On a 2-core CPU the compile time of XLA usually outweighs its gain
    (see benchmarks/segmentation.py for the measured ratio).
    """
    return gpu_available() if run_config.xla is None else bool(run_config.xla)


def logical_cpus(count):
    """Split the CPU into `count` logical devices (mirrored training without
    a GPU); only possible before TensorFlow starts its runtime."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:
        pass  # already initialised: use the logical devices it has
    devices = [device.name for device in tf.config.list_logical_devices("CPU")]
    if len(devices) < count:
        raise UserError(f"--strategy mirrored on CPU needs {count} logical CPU devices, "
                        f"TensorFlow already started with {len(devices)}")
    return devices[:count]


def make_strategy(name):
    if name not in STRATEGIES:
        raise UserError(f"unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)}")
    if name == "mirrored":
        if gpu_available():
            return tf.distribute.MirroredStrategy()
        return tf.distribute.MirroredStrategy(devices=logical_cpus(2))
    if name == "multi_worker":
        # Reads the cluster from TF_CONFIG, as every TF multi-worker job does;
        # checked first, so that a broken one fails instead of hanging.
        from common import cluster

        cluster.check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    return tf.distribute.get_strategy()


def set_op_determinism(enabled):
    """Turn TensorFlow's op determinism on or off (TensorFlow exports only
    the switch that turns it on)."""
    from tensorflow.python.framework import config as tf_config

    if enabled:
        tf_config.enable_op_determinism()
    else:
        tf_config.disable_op_determinism()


def configure(cfg):
    """Seed everything, make ops deterministic, set the precision policy;
    return the strategy."""
    set_seed(cfg.run.seed)
    if use_xla(cfg.run):
        # Keras compiles nothing under op determinism (it turns jit_compile
        # off with a warning), so XLA means nondeterministic kernels.
        if not cfg.run.fast_nondeterministic:
            print("[run] XLA is on: TensorFlow's op determinism is off (XLA kernels are "
                  "not deterministic), so the same seed may not repeat a report exactly",
                  flush=True)
        set_op_determinism(False)
    else:
        # Same seed, same report: deterministic kernels and tf.data ordering
        # (benchmarks/determinism.py measures what it costs).
        set_op_determinism(not cfg.run.fast_nondeterministic)
    decision = precision_decision(cfg.run)
    print(precision.describe(decision), flush=True)
    keras.mixed_precision.set_global_policy(decision.policy)
    return make_strategy(cfg.run.strategy)


def precision_decision(run_config):
    """The precision policy of a run on this machine and why
    (`common/precision.py`: the user's flag, else the preset's bfloat16
    opt-in where the CPU multiplies bfloat16 natively)."""
    return precision.decide(run_config, precision.cpu_flags(), gpu_available())


@keras.saving.register_keras_serializable(package="common")
class InverseSquareRootSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """"Attention Is All You Need" 5.3, normalised to its peak: a linear
    warm-up to `peak` over `warmup_steps`, then peak * sqrt(warmup / step)."""

    def __init__(self, peak, warmup_steps):
        self.peak, self.warmup_steps = float(peak), int(warmup_steps)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32") + 1.0
        warmup = float(self.warmup_steps)
        return self.peak * keras.ops.minimum(step / warmup, keras.ops.sqrt(warmup / step))

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps}


def make_schedule(train_config, steps_per_epoch, learning_rate=None, epochs=None):
    learning_rate = train_config.learning_rate if learning_rate is None else learning_rate
    epochs = train_config.epochs if epochs is None else epochs
    total_steps = max(1, steps_per_epoch * epochs)
    warmup_steps = min(steps_per_epoch * train_config.warmup_epochs, total_steps - 1)
    name = train_config.schedule
    if name not in SCHEDULES:
        raise UserError(f"unknown schedule {name!r}; expected one of {', '.join(SCHEDULES)}")
    if name == "constant":
        return learning_rate
    if name == "cosine":
        if warmup_steps > 0:
            return keras.optimizers.schedules.CosineDecay(
                learning_rate * 0.01, total_steps - warmup_steps, alpha=0.01,
                warmup_target=learning_rate, warmup_steps=warmup_steps,
            )
        return keras.optimizers.schedules.CosineDecay(learning_rate, total_steps, alpha=0.01)
    if name == "inverse_sqrt":
        return InverseSquareRootSchedule(learning_rate, max(1, warmup_steps))
    if name == "step":
        boundaries = [int(total_steps * 0.5), int(total_steps * 0.75)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(
            boundaries, [learning_rate, learning_rate * 0.1, learning_rate * 0.01]
        )
    return keras.optimizers.schedules.ExponentialDecay(
        learning_rate, decay_steps=max(1, steps_per_epoch), decay_rate=0.9
    )


def make_optimizer(train_config, steps_per_epoch, learning_rate=None, epochs=None):
    schedule = make_schedule(train_config, steps_per_epoch, learning_rate, epochs)
    clip = {"global_clipnorm": train_config.clipnorm} if train_config.clipnorm > 0 else {}
    name = train_config.optimizer
    if name == "sgd":
        return keras.optimizers.SGD(schedule, **clip)
    if name == "momentum":
        return keras.optimizers.SGD(schedule, momentum=train_config.momentum,
                                    nesterov=True, **clip)
    if name == "adam":
        return keras.optimizers.Adam(schedule, **clip)
    if name == "adamw":
        return keras.optimizers.AdamW(
            schedule, weight_decay=train_config.weight_decay or 1e-4, **clip
        )
    raise UserError(f"unknown optimizer {name!r}; expected one of {', '.join(OPTIMIZERS)}")


def sparse_categorical_loss(num_classes, label_smoothing=0.0, from_logits=True):
    """Cross-entropy on integer labels, with optional label smoothing.

    Keras's sparse loss has no label smoothing, so smoothing goes through a
    one-hot encoding; without smoothing the cheaper sparse loss is used.
    """
    if label_smoothing <= 0:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
    return SmoothedSparseCategoricalCrossentropy(
        num_classes=num_classes, label_smoothing=label_smoothing, from_logits=from_logits
    )


@keras.saving.register_keras_serializable(package="common")
class SmoothedSparseCategoricalCrossentropy(keras.losses.Loss):
    def __init__(self, num_classes, label_smoothing=0.1, from_logits=True,
                 name="smoothed_sparse_categorical_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.from_logits = from_logits

    def call(self, y_true, y_pred):
        labels = keras.ops.one_hot(
            keras.ops.cast(keras.ops.squeeze(y_true, -1) if len(y_true.shape) == len(y_pred.shape)
                           else y_true, "int32"), self.num_classes)
        return keras.losses.categorical_crossentropy(
            labels, y_pred, from_logits=self.from_logits,
            label_smoothing=self.label_smoothing,
        )

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, label_smoothing=self.label_smoothing,
                      from_logits=self.from_logits)
        return config


def steps_in(dataset):
    steps = int(dataset.cardinality())
    if steps < 0:
        steps = sum(1 for _ in dataset)
    if steps == 0:
        raise UserError("the training split is empty (fewer examples than one batch?)")
    return steps


class TrainingDiverged(UserError):
    """A loss or metric became NaN or infinite."""


class StopOnNonFinite(keras.callbacks.Callback):
    """Stop with an error naming the stage and epoch when a loss turns NaN/Inf.

    Keras's TerminateOnNaN ends training quietly and the run would go on to
    export a broken model; raising makes the command fail instead. The error
    is raised before the epoch's backup is written, so the last backup holds
    finite weights.
    """

    def __init__(self, stage):
        super().__init__()
        self.stage = stage
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def _check(self, logs, where):
        for key, value in (logs or {}).items():
            if "loss" in key and value is not None and not np.isfinite(float(value)):
                raise TrainingDiverged(
                    f"{self.stage} training diverged: {key} is {float(value)} at epoch "
                    f"{self.epoch + 1}{where}; lower the learning rate (--learning-rate) "
                    "or turn on gradient clipping (--set train.clipnorm=1.0)")

    def on_train_batch_end(self, batch, logs=None):
        self._check(logs, f", batch {batch + 1}")

    def on_epoch_end(self, epoch, logs=None):
        self._check(logs, "")


def backup_variables(model):
    """Every variable a resumed fit needs, in a fixed order: the model's
    (weights, statistics, QAT ranges, random seeds) then its optimizer's
    (step count, moments). None for a model with several optimizers (the
    GAN trainer) or a loss-scaling one: those keep Keras's own format."""
    optimizer = getattr(model, "optimizer", None)
    others = [value for value in vars(model).values()
              if isinstance(value, keras.optimizers.Optimizer) and value is not optimizer]
    if (not isinstance(optimizer, keras.optimizers.Optimizer) or others
            or isinstance(optimizer, keras.optimizers.LossScaleOptimizer)):
        return None
    return list(model.variables) + list(optimizer.variables)


def save_arrays(path, arrays):
    """`arrays` in order, in one `.npz` written atomically."""
    with files.atomic_path(path, ".npz") as temporary:
        np.savez(temporary, **{str(index): keras.ops.convert_to_numpy(array)
                               for index, array in enumerate(arrays)})


def load_arrays_into(path, variables, what, restart_folder):
    """Assign the arrays `save_arrays` wrote to `variables`, in order; a
    UserError naming `what` when their number or shapes differ."""
    with np.load(path) as saved:
        arrays = [saved[str(index)] for index in range(len(saved.files))]
    if variables is None or len(arrays) != len(variables) or any(
            tuple(array.shape) != tuple(variable.shape)
            for array, variable in zip(arrays, variables)):
        raise UserError(
            f"{path}: {what} do not match the model ({len(arrays)} arrays for "
            f"{len(variables or [])} variables); remove {restart_folder} to restart the stage")
    for variable, array in zip(variables, arrays):
        variable.assign(array)


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """BackupAndRestore whose files are replaced whole: a kill while saving
    leaves the previous backup, never a truncated one. The backup is kept
    after training (the pipeline deletes it once the stage's model is saved).

    The backup is the arrays of `backup_variables` in one `.npz`, restored
    in the same order: Keras's `.weights.h5` walks every attribute of every
    layer and took 0.3-1 s an epoch (the segmentation default on a folder of
    32 images spent more time saving its backup than training)."""

    VARIABLES_FILE = "latest.variables.npz"

    def __init__(self, backup_dir, clock=None, best=None):
        super().__init__(backup_dir, delete_checkpoint=False)
        self._variables_path = os.path.join(backup_dir, self.VARIABLES_FILE)
        # With a CheckpointClock, an epoch's end writes only when the clock
        # says so; the best checkpoint's pending weights go to disk first, so
        # a backup never lies ahead of the best epoch it knows.
        self.clock, self.best = clock, best
        self._written_epoch = 0

    def _save_model(self):
        if self.clock is None:
            self._write()
        elif self.clock.due():
            with self.clock.writing():
                self._write()

    def on_train_end(self, logs=None):
        # The last epoch is always on disk (the stage's model is saved next);
        # a fit that resumed after its last epoch ran none and writes nothing.
        if self._current_epoch > self._written_epoch:
            self._write()
        super().on_train_end(logs)

    def _write(self):
        if self.best is not None:
            self.best.flush()
        self._written_epoch = self._current_epoch
        os.makedirs(self.backup_dir, exist_ok=True)
        variables = backup_variables(self.model)
        if variables is None:
            with files.atomic_path(self._weights_path, ".weights.h5") as temporary:
                self.model.save_weights(temporary, overwrite=True)
        else:
            save_arrays(self._variables_path, variables)
        files.write_json_atomic(self._training_metadata_path,
                                {"epoch": self._current_epoch, "batch": self._last_batch_seen})

    def _load_model(self):
        if not os.path.exists(self._variables_path):
            return super()._load_model()
        if not self.model.built:
            raise ValueError("To use the BackupAndRestore callback, the model must be built "
                             "before fit()")
        optimizer = getattr(self.model, "optimizer", None)
        if isinstance(optimizer, keras.optimizers.Optimizer) and not optimizer.built:
            # As Keras does before loading: the optimizer's variables must exist.
            optimizer.build(self.model.trainable_variables)
        load_arrays_into(self._variables_path, backup_variables(self.model),
                         "this backup's arrays", self.backup_dir)
        if os.path.exists(self._training_metadata_path):
            with open(self._training_metadata_path) as handle:
                self.model._initial_epoch = json.load(handle)["epoch"]


class CheckpointClock:
    """When the trainer may write its checkpoints: at the first epoch's end,
    then once training has run `seconds of the last write / share` since it
    ended, so that writing takes at most `share` of the time (`share` 1:
    every epoch). Measured: detection's smoke epoch of 48 steps ended with
    1.8 s of writing, more than its steps took."""

    def __init__(self, share):
        if not 0 < share <= 1:
            raise UserError(f"train.checkpoint_share={share}: expected a share of the "
                            "training time in (0, 1] (1 writes at every epoch's end)")
        self.share = share
        self.last_end = None
        self.cost = 0.0

    def due(self):
        if self.share >= 1 or self.last_end is None:
            return True
        return time.perf_counter() - self.last_end >= self.cost / self.share

    @contextlib.contextmanager
    def writing(self):
        started = time.perf_counter()
        yield
        self.last_end = time.perf_counter()
        self.cost = self.last_end - started


BEST_WEIGHTS = "best.weights.npz"


def save_best(model_or_arrays, stage_dir, record):
    """The best epoch's weights (`model.weights` in order, as arrays) and its
    `record` ({"value", "epoch", "monitor"}), each written atomically."""
    arrays = model_or_arrays
    if isinstance(model_or_arrays, keras.Model):
        arrays = model_or_arrays.weights
    os.makedirs(stage_dir, exist_ok=True)
    path = os.path.join(stage_dir, BEST_WEIGHTS)
    save_arrays(path, arrays)
    files.write_json_atomic(path + ".json", record)


def best_record(stage_dir):
    """{"value", "epoch", "monitor"} of a stage's best epoch, or None."""
    path = os.path.join(stage_dir, BEST_WEIGHTS + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        return json.load(handle)


class BestCheckpoint(keras.callbacks.Callback):
    """Weights of the best epoch by `monitor`, written atomically.

    The best value so far is kept beside the weights, so a resumed fit does
    not forget it and overwrite a better epoch with a worse one. With a
    `clock`, an improving epoch's weights are copied in memory and written
    by `flush` (the resume backup calls it when it writes, and at the end).
    """

    def __init__(self, stage_dir, monitor, mode, clock=None):
        super().__init__()
        self.stage_dir, self.monitor, self.mode = stage_dir, monitor, mode
        self.clock = clock
        self.pending = None
        record = best_record(stage_dir)
        self.best = None if record is None else record["value"]

    def _better(self, value):
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not np.isfinite(value) or not self._better(float(value)):
            return
        self.best = float(value)
        arrays = [keras.ops.convert_to_numpy(weight) for weight in self.model.weights]
        self.pending = (arrays, {"value": self.best, "epoch": epoch + 1,
                                 "monitor": self.monitor})
        if self.clock is None:
            self.flush()

    def flush(self):
        if self.pending is not None:
            save_best(self.pending[0], self.stage_dir, self.pending[1])
            self.pending = None

    def on_train_end(self, logs=None):
        self.flush()


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """TensorBoard logs once an epoch, without Keras 3.15's summary work
    after every step (0.5-2 ms a step here even with update_freq="epoch";
    13 ms under load): no graph, no profile, no per-step scalars to write."""

    on_train_batch_end = keras.callbacks.Callback.on_train_batch_end


def make_callbacks(stage_dir, monitor, mode, patience=0, log_dir=None, stage="float",
                   checkpoint_share=1.0):
    """Backup for resume, best checkpoint, early stop, NaN guard, CSV/TensorBoard;
    the two checkpoints write on one CheckpointClock(`checkpoint_share`)."""
    os.makedirs(stage_dir, exist_ok=True)
    clock = CheckpointClock(checkpoint_share)
    best = BestCheckpoint(stage_dir, monitor, mode, clock=clock)
    callbacks = [
        StopOnNonFinite(stage),
        # Before the backup: an epoch's best weights are in memory when it writes.
        best,
        AtomicBackupAndRestore(os.path.join(stage_dir, "backup"), clock=clock, best=best),
        keras.callbacks.CSVLogger(os.path.join(stage_dir, "history.csv"), append=True),
    ]
    if log_dir:
        callbacks.append(EpochTensorBoard(
            log_dir, write_graph=False, update_freq="epoch", profile_batch=0))
    if patience > 0:
        # The best weights come back from BestCheckpoint's file (which also
        # survives a resume), not from EarlyStopping's memory.
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=monitor, mode=mode, patience=patience))
    return callbacks


# An epoch ends with the trainer's own work (validation score, best
# checkpoint, resume backup, logs): on a folder of a few dozen images that
# costs more than the epoch's few steps (measured: detection, 51 images,
# 100 epochs of 4 steps, 2.6 s an epoch of which about 1.6 s epoch-end work).
MIN_EPOCH_STEPS = 25


def group_short_epochs(train_config, steps_per_epoch, epochs):
    """(passes per epoch, epochs) for a fit of `epochs` passes over data of
    `steps_per_epoch` batches: when the step budget (`train.min_steps`)
    stretches a small dataset over many short passes, passes are grouped
    into epochs of at least MIN_EPOCH_STEPS steps, so the trainer validates
    and checkpoints every few dozen steps rather than every few. Epochs the
    user asked for (`train.epochs`) are never grouped."""
    if (epochs == train_config.epochs or steps_per_epoch >= MIN_EPOCH_STEPS
            or epochs <= 1):
        return 1, epochs
    passes = min(math.ceil(MIN_EPOCH_STEPS / steps_per_epoch), epochs)
    return passes, max(1, round(epochs / passes))


def epochs_for_budget(train_config, steps_per_epoch):
    """`train.epochs`, raised so that training makes at least
    `train.min_steps` optimizer steps (capped at `train.max_epochs`): a
    50-image folder and a 5,000-image folder both get enough updates."""
    epochs = train_config.epochs
    if train_config.min_steps > 0:
        epochs = max(epochs, math.ceil(train_config.min_steps / steps_per_epoch))
        epochs = min(epochs, max(train_config.max_epochs, train_config.epochs))
    return epochs


class ValidationScore(keras.callbacks.Callback):
    """Adds `val_<name>` to each epoch's logs: the task's own metric on the
    validation split, so checkpoint selection and early stopping follow what
    the report measures rather than the loss."""

    def __init__(self, score_fn, name):
        super().__init__()
        self.score_fn, self.name = score_fn, name

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            value = float(self.score_fn(self.model)[self.name])
            logs[f"val_{self.name}"] = agree_across_workers(value, self.model)


def agree_across_workers(value, model):
    """`value` averaged over the workers of a multi-worker run, `value` itself
    otherwise. Each worker scores its own copy of the model, and the copies'
    BatchNormalization statistics are per worker, so the scores differ a
    little; checkpoint selection and early stopping must decide the same
    on every worker, or one stops while the others wait in a collective."""
    strategy = getattr(model, "distribute_strategy", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return value
    per_replica = strategy.run(lambda: tf.constant(value, tf.float32))
    return float(strategy.reduce("MEAN", per_replica, axis=None))


def restore_best(model, stage_dir):
    """Load the best epoch's weights into `model`; returns that epoch's record
    ({"epoch", "value", "monitor"}) or None when none was saved."""
    record = best_record(stage_dir)
    if record is None:
        return None
    load_arrays_into(os.path.join(stage_dir, BEST_WEIGHTS), model.weights,
                     "these best weights", stage_dir)
    return record


def _build_before_multi_worker_fit(model, dataset):
    """Keras 3.15 cannot start `fit` under MultiWorkerMirroredStrategy: its
    symbolic build reduces the first distributed batch with "MEAN" and fails
    on a PerReplica (keras-team/keras#20585). Build from one local batch
    first and mark the model's distribution as built, so fit skips that."""
    strategy = tf.distribute.get_strategy()
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    batch = next(iter(dataset.take(1)))
    with strategy.scope():
        model._symbolic_build(data_batch=batch)
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    # Its step then reduces the (already all-reduced, scalar) logs with
    # "MEAN" over axis 0, which fails on scalars: every replica holds the
    # same synchronised value, so take the first.
    from keras.src.backend.tensorflow import trainer as tf_trainer

    reduce = getattr(tf_trainer.reduce_per_replica, "original", tf_trainer.reduce_per_replica)

    def reduce_first_when_auto(values, strategy, reduction):
        if reduction == "auto" and isinstance(strategy,
                                              tf.distribute.MultiWorkerMirroredStrategy):
            return tf.nest.map_structure(
                lambda value: strategy.experimental_local_results(value)[0]
                if isinstance(value, tf.distribute.DistributedValues) else value, values)
        return reduce(values, strategy, reduction)

    reduce_first_when_auto.original = reduce
    tf_trainer.reduce_per_replica = reduce_first_when_auto


def fit(model, splits, cfg, compile_args, stage_dir, epochs=None, learning_rate=None,
        monitor=("val_loss", "min"), steps_per_epoch=None, log_dir=None,
        validation_score=None, extra_callbacks=(), validation_loss=True):
    """Compile and fit `model` on `splits`; returns the Keras history dict.

    Resumes from `stage_dir/backup` when a previous fit was interrupted.
    `validation_score` is `(score_fn(model) -> dict, name)`: the metric named
    `name` is logged as `val_<name>` every epoch (use it as `monitor`). With
    `train.restore_best` the weights of the best epoch by `monitor` are
    loaded at the end. Without explicit `epochs`, the float budget
    `train.min_steps` applies. `extra_callbacks` run after the trainer's own
    (e.g. a step timer). `validation_loss=False` skips Keras's own pass over
    the validation split (`val_loss`, and tracing the test step) for a fit
    that `validation_score` already monitors.
    """
    fixed_steps = steps_per_epoch or cfg.train.steps_per_epoch
    steps_per_epoch = fixed_steps or steps_in(splits.train)
    passes = 1
    patience = cfg.train.early_stopping_patience
    if epochs is None:
        epochs = epochs_for_budget(cfg.train, steps_per_epoch)
        if not fixed_steps:
            passes, epochs = group_short_epochs(cfg.train, steps_per_epoch, epochs)
        if epochs * passes != cfg.train.epochs:
            grouped = (f" of {passes} passes ({steps_per_epoch * passes} steps; fewer "
                       f"validations and checkpoints)" if passes > 1 else "")
            print(f"[{os.path.basename(stage_dir)}] {steps_per_epoch} steps per pass over "
                  f"the data: training {epochs} epochs{grouped} to reach "
                  f"train.min_steps={cfg.train.min_steps}", flush=True)
        if passes > 1:
            # The data repeats inside an epoch; patience stays about as many passes.
            fixed_steps = steps_per_epoch * passes
            patience = math.ceil(patience / passes) if patience > 0 else 0
    callbacks = make_callbacks(stage_dir, monitor[0], monitor[1], patience, log_dir,
                               stage=os.path.basename(stage_dir),
                               checkpoint_share=cfg.train.checkpoint_share)
    if validation_score is not None:
        # First, so that every later callback sees val_<name> in the logs.
        callbacks.insert(0, ValidationScore(*validation_score))
    # The schedule counts passes: warm-up stays train.warmup_epochs passes.
    optimizer = make_optimizer(cfg.train, steps_per_epoch, learning_rate, epochs * passes)
    # compile() drops the traced predict function. Predicting does not depend
    # on the loss or the optimizer, so a model scored before this fit (a QAT
    # model scored as it starts) keeps its trace: the validation score does
    # not trace the fake-quant graph a second time.
    predict_function = getattr(model, "predict_function", None)
    model.compile(optimizer=optimizer, jit_compile=use_xla(cfg.run), **compile_args)
    if predict_function is not None and not model.jit_compile:
        model.predict_function = predict_function
    _build_before_multi_worker_fit(model, splits.train)
    train = splits.train.repeat() if fixed_steps else splits.train
    history = model.fit(
        train,
        validation_data=splits.val if validation_loss else None,
        epochs=epochs,
        steps_per_epoch=fixed_steps or None,
        callbacks=callbacks + list(extra_callbacks),
        shuffle=False,  # tf.data splits are shuffled by common.data.finish
        verbose=1 if sys.stdout.isatty() else 2,
    )
    if cfg.train.restore_best:
        restore_best(model, stage_dir)
    return {key: [float(v) for v in values] for key, values in history.history.items()}


def read_history(stage_dir):
    """The CSV log of a stage as {column: [values]} (covers resumed runs)."""
    path = os.path.join(stage_dir, "history.csv")
    if not os.path.exists(path):
        return {}
    import csv
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    # A resumed stage repeats the epochs after its last backup: the later
    # row of an epoch is the one whose weights training continued from.
    by_epoch = {}
    for row in rows:
        by_epoch[row.get("epoch")] = row
    history = {}
    for row in by_epoch.values():
        for key, value in row.items():
            try:
                history.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                pass
    return history


def set_seed(seed):
    """Python, numpy, TensorFlow and Keras seeds at once."""
    keras.utils.set_random_seed(seed)


def remove_backup(stage_dir):
    """Drop a finished stage's resume backup (after its model is saved)."""
    shutil.rmtree(os.path.join(stage_dir, "backup"), ignore_errors=True)
