"""`--mixed-precision` and `--xla` on the CPU, for every task's model.

For each task the smoke model is built under float32 and again under the
mode with the same weights, and run on one batch of its own smoke data:
predictions within tolerance of float32 and a finite loss. bfloat16 takes a
training step (its gradients are where mixed precision breaks; detection's
loss is computed without tracing a step); XLA compiles the forward pass
(`python -m tasks benchmark` times XLA training steps and checks their
losses are finite; compiling a step costs up to a minute per model here). float16 with
loss scaling is checked on the GAN trainer, the one loop that applies its own
gradients.
"""

import importlib

import keras
import numpy as np
import pytest

from common import config, training

pytestmark = pytest.mark.slow

TASKS = ("segmentation", "detection", "super_resolution", "sentiment", "translation", "tts")
# Tacotron keeps its pre-net dropout on at inference (two float32 calls
# differ too); the comparison turns it off.
OVERRIDES = {"tts": {"model.prenet_dropout": 0.0}}
# Mean absolute difference relative to the mean absolute float32 output.
# bfloat16 keeps 8 bits of mantissa: about 0.4% per op, compounding with depth.
TOLERANCE = {"bfloat16": 0.05, "xla": 1e-4}


@pytest.fixture(autouse=True)
def float32_policy_after():
    yield
    keras.mixed_precision.set_global_policy("float32")


def smoke_setup(name):
    task = importlib.import_module(f"tasks.{name}")
    cfg = config.from_preset(task.Config, task.PRESETS, "smoke")
    config.apply_overrides(cfg, OVERRIDES.get(name, {}))
    splits = task.build_datasets(cfg)
    inputs, targets = next(iter(splits.train))[:2]
    two = lambda tree: keras.tree.map_structure(lambda t: t[:2], tree)  # noqa: E731
    return task, cfg, splits.info, two(inputs), two(targets)


def build(task, cfg, info, policy, jit_compile=False, weights=None):
    keras.mixed_precision.set_global_policy(policy)
    model = task.build_model(cfg, info)
    if weights is not None:
        model.set_weights(weights)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), jit_compile=jit_compile,
                  **task.compile_args(cfg, info))
    return model


def flat(outputs):
    return np.concatenate([np.asarray(keras.ops.convert_to_numpy(tensor), np.float32).ravel()
                           for tensor in keras.tree.flatten(outputs)])


def relative_difference(outputs, reference):
    return float(np.abs(flat(outputs) - reference).mean() / (np.abs(reference).mean() + 1e-6))


def first_loss(logs):
    return float(np.asarray(keras.tree.flatten(logs)[0]))


@pytest.mark.parametrize("name", TASKS)
def test_bfloat16_and_xla_run_the_model_like_float32(name):
    task, cfg, info, inputs, targets = smoke_setup(name)
    keras.utils.set_random_seed(1)
    reference_model = build(task, cfg, info, "float32")
    reference = flat(reference_model(inputs, training=False))
    weights = reference_model.get_weights()

    bfloat16 = build(task, cfg, info, "mixed_bfloat16", weights=weights)
    # Computing in bfloat16 (not float32 relabelled), variables kept float32.
    assert bfloat16.dtype_policy.compute_dtype == "bfloat16"
    assert all(weight.dtype == "float32" for weight in bfloat16.trainable_weights)
    difference = relative_difference(bfloat16(inputs, training=False), reference)
    assert 0 < difference < TOLERANCE["bfloat16"]
    if name == "detection":
        # Its loss (the task-aligned assigner) is checked on its own below:
        # tracing a whole training step costs a minute here.
        loss = bfloat16.compute_loss(inputs, targets, bfloat16(inputs, training=False))
    else:
        loss = first_loss(bfloat16.train_on_batch(inputs, targets))
    assert np.isfinite(float(loss))

    # Keras turns jit_compile off under op determinism (which other tests in
    # this process may have turned on), as `training.configure` knows.
    training.set_op_determinism(False)
    xla = build(task, cfg, info, "float32", jit_compile=True, weights=weights)
    assert xla.jit_compile  # compiled, not silently eager
    assert relative_difference(xla.predict_on_batch(inputs), reference) < TOLERANCE["xla"]


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_gan_trainer_trains_under_mixed_precision(policy):
    from common.gan import AdversarialTrainer, ContentLoss
    from tasks.super_resolution import model as sr_model

    task, cfg, info, inputs, targets = smoke_setup("super_resolution")
    keras.mixed_precision.set_global_policy(policy)
    generator = sr_model.build_generator(cfg.model)
    discriminator = sr_model.build_discriminator(cfg.model, int(targets.shape[1]))
    # A content loss as the super-resolution stage adds: its float32 value and
    # the discriminator's low-precision logits add up in one generator loss.
    l1 = ContentLoss("l1", 1.0, lambda real, fake: keras.ops.mean(keras.ops.abs(
        keras.ops.cast(real, "float32") - keras.ops.cast(fake, "float32"))))
    trainer = AdversarialTrainer(generator, discriminator, content_losses=[l1], seed=1)
    trainer.compile(generator_optimizer=keras.optimizers.Adam(1e-4),
                    discriminator_optimizer=keras.optimizers.Adam(1e-4))
    # float16 gradients underflow to zero without loss scaling; bfloat16 has
    # float32's exponent range and needs none.
    scaled = policy == "mixed_float16"
    for optimizer in (trainer.generator_optimizer, trainer.discriminator_optimizer):
        assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer) == scaled
    before = [weight.numpy().copy() for weight in generator.trainable_weights]
    for _ in range(3):
        logs = trainer.train_on_batch(inputs, targets, return_dict=True)
    assert all(np.isfinite(float(value)) for value in logs.values())
    assert logs["l1"] > 0
    # A step was applied (the first float16 steps may be skipped while the
    # scale drops from its start value of 2^15; later ones must go through).
    moved = [not np.array_equal(weight.numpy(), old)
             for weight, old in zip(generator.trainable_weights, before)]
    assert any(moved)
