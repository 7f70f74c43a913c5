"""How well training uses the machine, measured side by side in one process.

`measure(task, cfg, work_dir)` takes a task module (duck-typed by the task
contract: `build_datasets`, `build_model`, `compile_args`; common/ never
imports tasks/) and returns a JSON-able dict:

- `trainer` and `plain`: training examples/s of `common.training.fit` and
  of a plain `model.fit` (no callbacks) on the same compiled model (same
  optimizer, same traced step) and the same `tf.data`, over epochs of the
  real run's length (one pass over the training split, or
  `train.steps_per_epoch`), so that the trainer's end-of-epoch work
  (resume backup, best checkpoint, CSV and TensorBoard logs) weighs as
  often as it does in the run; the first epoch of each is the warm-up (the
  trainer's first epoch traces the step), the others are timed. `trainer_vs_plain` is
  their ratio (the shared trainer should keep >= 95%). Neither validates:
  scoring the validation split is the same in both. The trainer's
  `epoch_end_by_callback` says which of its callbacks the time went to.
- `input`: examples/s of iterating the training `tf.data` alone, and
  `input_x`, that rate as a multiple of what the model consumes (under about
  3 the model waits for data).
- `flops`: training FLOPs per example (forward FLOPs counted by TensorFlow's
  profiler on the graph of one forward call, times 3 for forward + backward),
  the FLOP/s the fp32 fit reaches, and its share of `matmul_peak` (the best of
  a few large fp32 `tf.matmul` on this machine, in this process).
- `configurations`: median ms per training step of a plain fit with the
  float32 policy (the compiled model above, no new trace), with
  `jit_compile=True` (XLA) and under the `mixed_bfloat16` policy (the model
  built again), each timed alike with its last loss. The precision policy
  is set explicitly for each, whatever the task's default precision is.
  A configuration that raises or whose loss is not finite is recorded as
  `{"fails": "<short reason>"}` instead of stopping the measurement.

Each part is short (a few epochs of a few steps): the numbers are for
comparing configurations on one machine, not for a paper.
"""

import contextlib
import copy
import itertools
import math
import re
import statistics
import tempfile
import time
import types

import keras
import numpy as np
import tensorflow as tf

from common import training

# The trainer / plain-fit comparison times at least this many epochs of the
# real run's length after its warm-up epoch, and at least COMPARE_TIMED_STEPS
# steps (more epochs when an epoch is a step or two).
COMPARE_TIMED_EPOCHS = 2
COMPARE_TIMED_STEPS = 8
# Timed steps of each configuration (after one warm-up step).
CONFIGURATION_STEPS = 6
# The input pipeline is iterated for at most this many batches or seconds.
INPUT_BATCHES = 40
INPUT_SECONDS = 3.0
# Below this multiple of the training rate the input pipeline does not keep
# well ahead of the model: steps wait for data whenever it slows down.
INPUT_BOUND_BELOW = 3.0
MATMUL_SIZE = 1024
MATMUL_REPEATS = 6
# Graph ops that make a static FLOP count wrong: functional control flow and
# calls, whose bodies the profiler does not enter, and the lowered loops
# (LoopCond, NextIteration) and conditionals (Switch, Merge) that freezing
# leaves, whose bodies are counted once, not once per iteration or branch
# taken. An LSTM's steps are such a loop.
OPAQUE_OPS = ("While", "StatelessWhile", "If", "StatelessIf", "PartitionedCall",
              "StatefulPartitionedCall", "Case", "StatelessCase", "LoopCond",
              "NextIteration", "Switch", "Merge")


# Lines of a TensorFlow error that say where, not what.
_WHERE_LINES = ("Graph execution error", "Detected at node", "<stack traces", "The op is created",
                "File ")
# A node named in backquotes: its full scope path says little in a note.
_NODE_PATH = re.compile(r"`([^`]*/)?([^/`]+)`")
_XLA_UNSUPPORTED = re.compile(
    r"Detected unsupported operations when trying to compile graph \S+ on (\S+): ([^(]+)")


def short_reason(error, limit=120):
    """The line of an exception that says what went wrong, short enough for
    a table note ("XLA_CPU_JIT cannot compile EagerPyFunc")."""
    lines = [line.strip() for line in str(getattr(error, "message", error)).splitlines()]
    useful = [line for line in lines if line and not line.startswith(_WHERE_LINES)]
    line = _NODE_PATH.sub(r"`\2`", useful[0]) if useful else ""
    unsupported = _XLA_UNSUPPORTED.match(line)
    if unsupported:
        line = f"{unsupported[1]} cannot compile {unsupported[2].strip()}"
    reason = f"{type(error).__name__}: {line}" if line else type(error).__name__
    return reason if len(reason) <= limit else reason[:limit - 3] + "..."


def attempt(function, *args, **kwargs):
    """`function(...)`, or {"fails": reason} when it raises: one broken
    configuration must not hide the others."""
    try:
        return function(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 (recorded, not hidden)
        return {"fails": short_reason(error)}


def failed(result):
    return isinstance(result, dict) and "fails" in result


def batch_size_of(dataset):
    """Examples per batch: the leading size of the first input tensor."""
    inputs = next(iter(dataset.take(1)))[0]
    return int(tf.nest.flatten(inputs)[0].shape[0])


# --- FLOPs --------------------------------------------------------------------

def _einsum_flops(graph, node):
    """2 x the product of every index's size (a multiply and an add per term):
    TensorFlow registers no FLOP count for Einsum, which Keras's EinsumDense
    and MultiHeadAttention use."""
    from tensorflow.python.framework import graph_util, ops

    equation = node.attr["equation"].s.decode()
    operands = equation.split("->")[0].split(",")
    if "..." in equation:
        return ops.OpStats("flops", None)
    sizes = {}
    for operand, name in zip(operands, node.input):
        shape = graph_util.tensor_shape_from_node_def_name(graph, name)
        if not shape.is_fully_defined():
            return ops.OpStats("flops", None)
        sizes.update(zip(operand, shape.as_list()))
    return ops.OpStats("flops", (2 if len(operands) > 1 else 1) * math.prod(sizes.values()))


def _register_einsum_flops():
    from tensorflow.python.framework import ops

    try:
        ops.RegisterStatistics("Einsum", "flops")(_einsum_flops)
    except KeyError:
        pass  # registered already (by an earlier call or by TensorFlow itself)


def forward_flops(model, example_inputs):
    """(FLOPs of one forward call on `example_inputs`, complete): counted by
    TensorFlow's profiler on the frozen graph of the call. `complete` is
    False when the graph holds loops, conditionals or nested functions (see
    OPAQUE_OPS): the count is then not exact, for a loop a lower bound."""
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    _register_einsum_flops()
    specs = tf.nest.map_structure(lambda value: tf.TensorSpec(value.shape, value.dtype),
                                  example_inputs)
    function = tf.function(lambda inputs: model(inputs, training=False))
    concrete = function.get_concrete_function(specs)
    try:
        graph = convert_variables_to_constants_v2(concrete).graph
    except ValueError:
        # A model that assigns a variable while predicting (a decoder's step
        # counter) cannot be frozen; the reads in the unfrozen graph carry
        # the weights' shapes just as well.
        graph = concrete.graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(graph=graph, run_meta=tf.compat.v1.RunMetadata(),
                                            cmd="op", options=options)
    complete = not any(op.type in OPAQUE_OPS for op in graph.get_operations())
    return int(profile.total_float_ops), complete


def first_example(dataset):
    """The inputs of the first training example (a batch of one)."""
    inputs = next(iter(dataset.take(1)))[0]
    return tf.nest.map_structure(lambda value: value[:1], inputs)


def training_flops_per_example(model, dataset):
    """Forward FLOPs of one example, times 3: the backward pass costs about
    twice the forward (a gradient for the inputs and one for the weights)."""
    forward, complete = forward_flops(model, first_example(dataset))
    return {"forward_per_example": forward, "train_per_example": 3 * forward,
            "complete": complete}


def matmul_peak(size=MATMUL_SIZE, repeats=MATMUL_REPEATS):
    """FLOP/s of the fastest of `repeats` fp32 size x size matmuls: what this
    machine's dense kernels reach now (with whatever else is running)."""
    generator = tf.random.Generator.from_seed(0)
    left = generator.normal((size, size), dtype=tf.float32)
    right = generator.normal((size, size), dtype=tf.float32)
    tf.matmul(left, right).numpy()  # warm-up: thread pools, kernel choice
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        tf.matmul(left, right).numpy()
        best = min(best, time.perf_counter() - started)
    return 2.0 * size ** 3 / best


# --- timing ---------------------------------------------------------------------

class EpochTimer(keras.callbacks.Callback):
    """Wall time at the end of every epoch, and no Python after a step: a
    plain fit runs none of its own (the trainer's batch hooks are its cost,
    and are measured as such)."""

    def __init__(self):
        super().__init__()
        self.epoch_ends = []

    def on_epoch_end(self, epoch, logs=None):
        # Keras converts the epoch's logs before this call: the steps are done.
        self.epoch_ends.append(time.perf_counter())

    def epoch_seconds(self):
        """Seconds of each epoch after the first (the warm-up)."""
        return [later - earlier for earlier, later in itertools.pairwise(self.epoch_ends)]

    def examples_per_second(self, steps_per_epoch, batch_size):
        """Throughput over the epochs after the first, their epoch-end work
        (the callbacks' saving and logging) included."""
        seconds = self.epoch_seconds()
        if not seconds:
            raise ValueError("needs at least two epochs: the first one is the warm-up")
        return len(seconds) * steps_per_epoch * batch_size / sum(seconds)


class StepTimer(keras.callbacks.Callback):
    """Wall time at the end of every training batch (a step time; the
    configurations are timed with it, each alike).

    Reading the loss as a float waits for the step to finish, so a time is
    the end of that step, not of its dispatch."""

    def __init__(self):
        super().__init__()
        self.batch_ends = []   # [[seconds, ...] per epoch]
        self.losses = []

    def on_epoch_begin(self, epoch, logs=None):
        self.batch_ends.append([])

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None:
            self.losses.append(float(loss))
        self.batch_ends[-1].append(time.perf_counter())

    def step_seconds(self):
        """Median time between consecutive batch ends inside an epoch (the
        first batch of an epoch also waits for the epoch's start)."""
        gaps = [later - earlier for ends in self.batch_ends
                for earlier, later in itertools.pairwise(ends)]
        if not gaps:
            raise ValueError("too few steps were timed for a step time")
        return statistics.median(gaps)

    def last_loss(self):
        return self.losses[-1] if self.losses else None


def _check_finite(timer):
    loss = timer.last_loss()
    if loss is None or not np.isfinite(loss):
        raise FloatingPointError(f"loss is {loss}")
    return loss


def compile_plain(model, task, cfg, info, steps_per_epoch, epochs, jit_compile=None):
    """Compile as the trainer does (same optimizer and schedule, same XLA
    setting unless `jit_compile` is given), with the task's loss/metrics."""
    optimizer = training.make_optimizer(cfg.train, steps_per_epoch, epochs=epochs)
    jit = training.use_xla(cfg.run) if jit_compile is None else jit_compile
    model.compile(optimizer=optimizer, jit_compile=jit, **task.compile_args(cfg, info))
    if jit and not model.jit_compile:
        # Keras turns XLA off with only a warning (a layer without XLA
        # support, or op determinism on): that is not an XLA measurement.
        raise RuntimeError("Keras kept jit_compile off for this model")


def real_epoch(cfg, dataset):
    """(fixed steps or None, steps) of one epoch of the real run: one pass
    over `dataset`, or `train.steps_per_epoch` of it repeated; passes
    grouped into one epoch when the trainer groups short ones."""
    fixed = cfg.train.steps_per_epoch or None
    steps = fixed or training.steps_in(dataset)
    group = getattr(training, "group_short_epochs", None)
    if group is not None and not fixed:
        passes, _ = group(cfg.train, steps, training.epochs_for_budget(cfg.train, steps))
        if passes > 1:
            fixed = steps = steps * passes
    return fixed, steps


class CallbackClock:
    """Seconds each of the trainer's callbacks spends at every epoch end and
    after every step. While `installed`, the callbacks `training.fit` makes
    have those methods wrapped in place (a method Keras sees as a default,
    absent, hook is left alone, so Keras dispatches steps as it would)."""

    def __init__(self):
        self.epoch_end = {}  # callback class -> [seconds, one per epoch]
        self.batch_end = {}  # callback class -> [seconds, one per step]

    @contextlib.contextmanager
    def installed(self):
        original = training.make_callbacks

        def make_timed_callbacks(*args, **kwargs):
            callbacks = original(*args, **kwargs)
            for callback in callbacks:
                self._wrap(callback, "on_epoch_end", self.epoch_end)
                self._wrap(callback, "on_train_batch_end", self.batch_end)
            return callbacks

        training.make_callbacks = make_timed_callbacks
        try:
            yield self
        finally:
            training.make_callbacks = original

    @staticmethod
    def _wrap(callback, name, record):
        method = getattr(callback, name)
        if getattr(method, "_is_default", False):  # keras.utils.is_default
            return
        times = record.setdefault(type(callback).__name__, [])

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                times.append(time.perf_counter() - started)

        setattr(callback, name, timed)

    def summary(self):
        """Median seconds per epoch end after the warm-up epoch, and mean
        milliseconds per step, of each callback that has such a hook."""
        return {"epoch_end_by_callback": {name: statistics.median(times[1:] or times)
                                          for name, times in self.epoch_end.items() if times},
                "batch_hook_ms_by_callback": {name: 1000.0 * statistics.fmean(times)
                                              for name, times in self.batch_end.items()
                                              if times}}


def trainer_fit(model, task, cfg, splits, fixed_steps, epochs, work_dir):
    """`common.training.fit` (its callbacks: NaN guard, backup, best
    checkpoint, CSV and TensorBoard logs) on the training split; its
    EpochTimer and CallbackClock. Without validation data its best
    checkpoint follows the training loss, so it saves at the end of each
    epoch that improves, as the run's does on its validation score."""
    timer, clock = EpochTimer(), CallbackClock()
    no_validation = types.SimpleNamespace(train=splits.train, val=None)
    with clock.installed():
        training.fit(model, no_validation, cfg, task.compile_args(cfg, splits.info),
                     f"{work_dir}/trainer", epochs=epochs, steps_per_epoch=fixed_steps,
                     monitor=("loss", "min"), log_dir=f"{work_dir}/logs",
                     extra_callbacks=[timer])
    return timer, clock


def plain_fit(model, splits, fixed_steps, epochs):
    """A plain `model.fit` of the model as compiled (no new trace), no
    callback but its timer, on the same data as the trainer; its EpochTimer."""
    timer = EpochTimer()
    train = splits.train.repeat() if fixed_steps else splits.train
    model.fit(train, steps_per_epoch=fixed_steps, epochs=epochs, callbacks=[timer],
              shuffle=False, verbose=0)
    return timer


def timed_steps(model, dataset, steps=CONFIGURATION_STEPS + 1):
    """`steps` steps of a plain fit of the model as compiled; its StepTimer."""
    timer = StepTimer()
    model.fit(dataset.repeat(), steps_per_epoch=steps, epochs=1, callbacks=[timer],
              shuffle=False, verbose=0)
    return timer


def input_throughput(dataset, batch_size, batches=INPUT_BATCHES, seconds=INPUT_SECONDS):
    """Examples/s of iterating `dataset` (repeated) alone, after one batch."""
    iterator = iter(dataset.repeat())
    next(iterator)
    count, started = 0, time.perf_counter()
    while count < batches and time.perf_counter() - started < seconds:
        next(iterator)
        count += 1
    return count * batch_size / (time.perf_counter() - started)


def _configuration(model, task, cfg, splits, jit_compile=None, compile_first=True):
    """Median ms per step and last loss of `CONFIGURATION_STEPS` timed steps
    (after one warm-up step); compiled first unless `compile_first` is False
    (the model as the trainer compiled it: its traced step is reused)."""
    if compile_first:
        compile_plain(model, task, cfg, splits.info, CONFIGURATION_STEPS + 1, 1,
                      jit_compile=jit_compile)
    timer = timed_steps(model, splits.train)
    return {"ms_per_step": 1000.0 * timer.step_seconds(), "loss": _check_finite(timer)}


def bfloat16_configuration(task, cfg, splits):
    """The model built again under `mixed_bfloat16` (the policy is global and
    read when layers are made), timed, then the previous policy restored."""
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = task.build_model(cfg, splits.info)
        return _configuration(model, task, cfg, splits)
    finally:
        keras.mixed_precision.set_global_policy(previous)


CONFIGURATIONS = ("xla", "bfloat16")


def measure(task, cfg, work_dir=None, splits=None, configurations=CONFIGURATIONS):
    """Every efficiency number of `task` at `cfg` (see the module docstring);
    `configurations` names which of XLA and bfloat16 to time besides float32."""
    unknown = set(configurations) - set(CONFIGURATIONS)
    if unknown:
        raise ValueError(f"unknown configurations {sorted(unknown)}; expected some of "
                         f"{list(CONFIGURATIONS)}")
    # A fresh folder: a backup left by an earlier measurement would make the
    # trainer resume after its last epoch and train nothing.
    work_dir = tempfile.mkdtemp(prefix="efficiency-", dir=work_dir)
    clock = {"started": time.perf_counter()}
    seconds = {}

    def lap(name):
        now = time.perf_counter()
        seconds[name] = now - clock.pop("started")
        clock["started"] = now

    # Keras keeps XLA off while op determinism is on (keras/src/trainers/
    # trainer.py, model_supports_jit), so every configuration is timed
    # without it: the same setting for all, and the fast one. float32 is set
    # explicitly (a task may default to bfloat16 on this CPU), whether
    # `run.mixed_precision` is a flag or "the task's default" (None).
    cfg = copy.deepcopy(cfg)
    cfg.run.fast_nondeterministic = True
    cfg.run.mixed_precision = False
    training.configure(cfg)
    keras.mixed_precision.set_global_policy("float32")
    splits = splits or task.build_datasets(cfg)
    batch = batch_size_of(splits.train)
    fixed_steps, steps = real_epoch(cfg, splits.train)
    epochs = 1 + max(COMPARE_TIMED_EPOCHS, math.ceil(COMPARE_TIMED_STEPS / steps))
    result = {"op_determinism": False, "policy": keras.mixed_precision.global_policy().name,
              "batch_size": batch, "steps_per_epoch": steps,
              "epochs": epochs, "configuration_steps": CONFIGURATION_STEPS,
              "seconds": seconds}
    model = task.build_model(cfg, splits.info)
    lap("data_and_model")

    def compare():
        trainer, clock = trainer_fit(model, task, cfg, splits, fixed_steps, epochs, work_dir)
        lap("trainer_fit")
        plain = plain_fit(model, splits, fixed_steps, epochs)
        lap("plain_fit")
        plain_epoch = statistics.median(plain.epoch_seconds())
        trainer_epoch = statistics.median(trainer.epoch_seconds())
        return ({"examples_per_second": plain.examples_per_second(steps, batch),
                 "seconds_per_epoch": plain_epoch},
                {"examples_per_second": trainer.examples_per_second(steps, batch),
                 "seconds_per_epoch": trainer_epoch,
                 "extra_seconds_per_epoch": trainer_epoch - plain_epoch, **clock.summary()})

    compared = attempt(compare)
    if failed(compared):
        result.update(plain=compared, trainer=compared)
    else:
        plain, trainer = compared
        result.update(plain=plain, trainer=trainer, trainer_vs_plain=(
            trainer["examples_per_second"] / plain["examples_per_second"]))
    # The trainer's compiled step, timed as the other configurations are.
    timed = {"float32": attempt(_configuration, model, task, cfg, splits,
                                compile_first=failed(compared))}
    lap("float32")
    if "xla" in configurations:
        timed["xla"] = attempt(_configuration, model, task, cfg, splits, jit_compile=True)
        lap("xla")
    if "bfloat16" in configurations:
        timed["bfloat16"] = attempt(bfloat16_configuration, task, cfg, splits)
        lap("bfloat16")
    result["configurations"] = timed

    fp32 = timed["float32"]
    consumed = None if failed(fp32) else batch / (fp32["ms_per_step"] / 1000.0)
    input_rate = attempt(input_throughput, splits.train, batch)
    result["input"] = (input_rate if failed(input_rate) else
                       {"examples_per_second": input_rate, "model_examples_per_second": consumed,
                        "input_x": input_rate / consumed if consumed else None})
    lap("input")
    flops = attempt(training_flops_per_example, model, splits.train)
    if not failed(flops):
        flops["matmul_peak"] = matmul_peak()
        if consumed:
            flops["achieved"] = flops["train_per_example"] * consumed
            flops["share_of_peak"] = flops["achieved"] / flops["matmul_peak"]
    result["flops"] = flops
    lap("flops")
    for name in configurations:
        other = timed[name]
        if not failed(other) and not failed(fp32):
            other["speedup"] = fp32["ms_per_step"] / other["ms_per_step"]
    return result
