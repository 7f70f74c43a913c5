"""Where a training step's time goes in float32 and in mixed_bfloat16, as JSON.

    python benchmarks/bfloat16_profile.py                        # segmentation, default preset
    python benchmarks/bfloat16_profile.py --task super_resolution --no-profile

One batch of the preset's training data, one model built under each policy
with the same weights, the same optimizer and loss as a run (op determinism
on, no XLA, as `training.configure` sets them on this CPU):

- `step_ms`: the median ms per `train_on_batch` of each policy, measured in
  interleaved rounds (float32, bfloat16, float32, ...) so both see the same
  machine load; `bf16_speedup` = float32 ms / bfloat16 ms (the "bf16 x" of
  `python -m tasks efficiency`); the same for the process's CPU time per
  step (`cpu_median`, `bf16_cpu_speedup`), steadier on a shared machine.
- `qat_step_ms` (with `--qat`): the same for the QAT clone of each model
  (the pipeline's QAT stage keeps the trained model's policy).
- `profile` (unless `--no-profile`): TensorFlow's profiler over a few more
  steps of each model; every op executed on the inter-op threads is summed
  by op type, by Keras layer class and pass (forward, backward, loss,
  optimizer), with the casts and the convolutions / matmuls counted apart.
  Op times are summed over the inter-op threads, so they add up to more
  than the wall time of a step when ops overlap: read them as shares.

The numbers compare the two policies on one machine at one moment; on the
shared 2-core machine repeat the run before trusting a small difference.
"""

import argparse
import collections
import glob
import json
import os
import re
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from common import quiet  # noqa: E402  (before TensorFlow starts)

quiet.quiet_tensorflow()

import importlib  # noqa: E402

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from common import config, training  # noqa: E402

POLICIES = ("float32", "mixed_bfloat16")
# Op types doing the multiply-accumulates bfloat16 should speed up (oneDNN's
# convolutions and matmuls appear as _MklNative* / _MklFused* kernels).
MATMUL_OP = re.compile(r"Conv|MatMul|Einsum", re.IGNORECASE)
# The preset's data sizes are cut to a few batches: the step does not depend
# on how many examples the split has, and building them all costs minutes.
SMALL_SPLITS = {"data.num_train": 64, "data.num_val": 16, "data.num_test": 16}


def one_batch(task, cfg):
    splits = task.build_datasets(cfg)
    inputs, targets = next(iter(splits.train))[:2]
    return splits.info, inputs, targets


def build_models(task, cfg, info, inputs, targets):
    """{policy: compiled model}, all with the float32 model's weights,
    each traced by one step (the tracing is not timed)."""
    models, weights = {}, None
    try:
        for policy in POLICIES:
            keras.mixed_precision.set_global_policy(policy)
            keras.utils.set_random_seed(cfg.run.seed)
            model = task.build_model(cfg, info)
            if weights is None:
                weights = model.get_weights()
            else:
                model.set_weights(weights)
            model.compile(optimizer=training.make_optimizer(cfg.train, 100), jit_compile=False,
                          **task.compile_args(cfg, info))
            model.train_on_batch(inputs, targets)
            models[policy] = model
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return models


def qat_models(task, cfg, info, models, inputs, targets):
    """{policy: the QAT clone of that policy's model, compiled and traced},
    as the pipeline's QAT stage makes it (BatchNormalization frozen)."""
    from common import qat

    clones = {}
    for policy, model in models.items():
        clone = qat.quantize_model(model)
        if cfg.qat.freeze_batch_norm:
            qat.freeze_batch_norm(clone)
        clone.compile(optimizer=training.make_optimizer(cfg.train, 100), jit_compile=False,
                      **task.compile_args(cfg, info))
        clone.train_on_batch(inputs, targets)
        clones[policy] = clone
    return clones


def interleaved_step_ms(models, inputs, targets, rounds, steps):
    """{policy: {"median", "rounds", "cpu_median"}}: wall ms per step, and
    the process's CPU ms per step (all threads), which other processes on a
    shared machine disturb less than the wall time."""
    samples = {policy: [] for policy in models}
    cpu = {policy: [] for policy in models}
    for _ in range(rounds):
        for policy, model in models.items():
            started, cpu_started = time.perf_counter(), time.process_time()
            for _ in range(steps):
                model.train_on_batch(inputs, targets)
            samples[policy].append(1000.0 * (time.perf_counter() - started) / steps)
            cpu[policy].append(1000.0 * (time.process_time() - cpu_started) / steps)
    return {policy: {"median": statistics.median(values), "rounds": values,
                     "cpu_median": statistics.median(cpu[policy])}
            for policy, values in samples.items()}


def trace_ops(model, inputs, targets, steps, log_dir):
    """[(scope, op type, ms)] of every op the inter-op threads ran in
    `steps` steps, read from the profiler's XSpace."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    for _ in range(2):
        model.train_on_batch(inputs, targets)  # the profiler starts after a warm step
    tf.profiler.experimental.start(log_dir)
    for _ in range(steps):
        model.train_on_batch(inputs, targets)
    tf.profiler.experimental.stop()
    path = sorted(glob.glob(os.path.join(log_dir, "**", "*.xplane.pb"), recursive=True))[-1]
    space = xplane_pb2.XSpace()
    with open(path, "rb") as handle:
        space.ParseFromString(handle.read())
    ops = []
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            # tf_Compute threads run the graph's ops; the Eigen threads' events
            # are the same ops' intra-op shards (counting them would double).
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" not in name or name.startswith("ExecutorState"):
                    continue
                scope, op_type = name.rsplit(":", 1)
                ops.append((scope, op_type, event.duration_ps / 1e9 / steps))
    return ops


def _without_suffix(name):
    # Keras numbers a name scope on each new trace ("unet_1", "encoder0_1_bn_1").
    return re.sub(r"_\d+$", "", name)


def classify(scope, model):
    """(pass, layer class) of an op from its name scope."""
    parts = scope.split("/")
    phase = "forward"
    if parts[0] == "gradient_tape":
        phase, parts = "backward", parts[1:]
    if parts and parts[0] == "compile_loss":
        return ("loss" if phase == "forward" else "loss backward"), "loss"
    optimizer = _without_suffix(model.optimizer.name)
    if parts and _without_suffix(parts[0]) == optimizer:
        return "optimizer", "optimizer"
    if len(parts) >= 2 and _without_suffix(parts[0]) == model.name:
        layer_classes = {layer.name: type(layer).__name__ for layer in model.layers}
        layer = _without_suffix(parts[1])
        return phase, layer_classes.get(layer, layer_classes.get(parts[1], "model (other)"))
    # Gradient sums of tensors used twice (AddN), metrics, step counters.
    return "other", "other"


def _layer_row(classified):
    # "BatchNormalization backward"; the loss, optimizer and other ops by pass alone.
    phase, layer_class = classified
    return f"{layer_class} {phase}" if phase in ("forward", "backward") else phase


def summarise(ops, model, step_ms):
    total = sum(ms for _, _, ms in ops)

    def table(key):
        sums = collections.Counter()
        for scope, op_type, ms in ops:
            sums[key(scope, op_type)] += ms
        return [{"name": name, "ms": round(ms, 3), "share": round(ms / total, 4)}
                for name, ms in sums.most_common()]

    matmul_ms = sum(ms for _, op_type, ms in ops if MATMUL_OP.search(op_type))
    cast_ms = sum(ms for _, op_type, ms in ops if op_type == "Cast")
    return {
        "step_ms_while_profiling": step_ms,
        "op_ms_summed": round(total, 3),
        "matmul_ms": round(matmul_ms, 3), "matmul_share": round(matmul_ms / total, 4),
        "cast_ms": round(cast_ms, 3), "cast_share": round(cast_ms / total, 4),
        "by_op_type": table(lambda scope, op_type: op_type)[:25],
        "by_layer_class": table(lambda scope, op_type: _layer_row(classify(scope, model))),
        "by_pass": table(lambda scope, op_type: classify(scope, model)[0]),
    }


def profile(models, inputs, targets, steps):
    results = {}
    for policy, model in models.items():
        with tempfile.TemporaryDirectory(prefix="bf16-profile-") as log_dir:
            started = time.perf_counter()
            ops = trace_ops(model, inputs, targets, steps, log_dir)
            step_ms = 1000.0 * (time.perf_counter() - started) / (steps + 2)
        results[policy] = summarise(ops, model, round(step_ms, 1))
    return results


def print_summary(result):
    step = result["step_ms"]
    print(f"{result['task']} {result['preset']}: float32 {step['float32']['median']:.1f} ms, "
          f"bfloat16 {step['mixed_bfloat16']['median']:.1f} ms per step "
          f"(bf16 x {result['bf16_speedup']:.2f}); CPU ms per step "
          f"{step['float32']['cpu_median']:.1f} vs {step['mixed_bfloat16']['cpu_median']:.1f} "
          f"(x {result['bf16_cpu_speedup']:.2f})")
    if "qat_step_ms" in result:
        qat_ms = result["qat_step_ms"]
        print(f"QAT clone: float32 {qat_ms['float32']['median']:.1f} ms, bfloat16 "
              f"{qat_ms['mixed_bfloat16']['median']:.1f} ms per step (x "
              f"{result['qat_bf16_speedup']:.2f}; CPU x {result['qat_bf16_cpu_speedup']:.2f})")
    for policy, summary in result.get("profile", {}).items():
        print(f"\n{policy}: ops {summary['op_ms_summed']:.1f} ms/step summed over threads, "
              f"convolutions/matmuls {100 * summary['matmul_share']:.0f}%, "
              f"casts {100 * summary['cast_share']:.0f}%")
        for row in summary["by_layer_class"][:10]:
            print(f"  {row['ms']:8.1f} ms {100 * row['share']:5.1f}%  {row['name']}")
        print("  by op type:")
        for row in summary["by_op_type"][:12]:
            print(f"  {row['ms']:8.1f} ms {100 * row['share']:5.1f}%  {row['name']}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="segmentation")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round and policy")
    parser.add_argument("--profile-steps", type=int, default=3)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--qat", action="store_true",
                        help="also time the QAT clone's steps under each policy")
    parser.add_argument("--out", help="JSON file (default: benchmarks/results/"
                        "bfloat16_profile_<task>_<preset>.json)")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)

    task = importlib.import_module(f"tasks.{args.task}")
    cfg = config.from_preset(task.Config, task.PRESETS, args.preset)
    config.apply_overrides(cfg, SMALL_SPLITS)
    # As a run on this CPU: deterministic kernels, no XLA.
    training.set_seed(cfg.run.seed)
    training.set_op_determinism(True)
    info, inputs, targets = one_batch(task, cfg)
    models = build_models(task, cfg, info, inputs, targets)
    step_ms = interleaved_step_ms(models, inputs, targets, args.rounds, args.steps)
    result = {
        "task": args.task, "preset": args.preset,
        "batch_shape": list(keras.tree.flatten(inputs)[0].shape),
        "cpu_bf16_flags": sorted(_bf16_flags()),
        "rounds": args.rounds, "steps_per_round": args.steps,
        "step_ms": step_ms,
        "bf16_speedup": step_ms["float32"]["median"] / step_ms["mixed_bfloat16"]["median"],
        "bf16_cpu_speedup": (step_ms["float32"]["cpu_median"]
                             / step_ms["mixed_bfloat16"]["cpu_median"]),
        "load_average": list(os.getloadavg()),
    }
    if args.qat:
        # The QAT fine-tune clones the trained model with its layers' policy.
        clones = qat_models(task, cfg, info, models, inputs, targets)
        qat_ms = interleaved_step_ms(clones, inputs, targets, args.rounds, args.steps)
        result["qat_step_ms"] = qat_ms
        result["qat_bf16_speedup"] = (qat_ms["float32"]["median"]
                                      / qat_ms["mixed_bfloat16"]["median"])
        result["qat_bf16_cpu_speedup"] = (qat_ms["float32"]["cpu_median"]
                                          / qat_ms["mixed_bfloat16"]["cpu_median"])
    if not args.no_profile:
        result["profile"] = profile(models, inputs, targets, args.profile_steps)
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                   f"bfloat16_profile_{args.task}_{args.preset}.json")
    with open(out, "w") as handle:
        json.dump(result, handle, indent=1)
    print_summary(result)
    print(f"\nwritten: {out}")


def _bf16_flags():
    from common import precision

    return precision.cpu_flags() & set(precision.NATIVE_BF16_FLAGS)


if __name__ == "__main__":
    main()
