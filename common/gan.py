"""Adversarial training step for any generator / discriminator pair.

`AdversarialTrainer` is a `keras.Model` whose `fit` alternates one
discriminator update and one generator update per batch of
`(inputs, targets)`:

- `loss="ragan"`: the relativistic average GAN of ESRGAN (Jolicoeur-Martineau
  2018): the discriminator judges whether a real image is more realistic
  than the average fake, and the other way round; both terms feed the
  generator too.
- `loss="wgan_gp"`: Wasserstein GAN with gradient penalty (Gulrajani et al.
  2017); the critic should have no batch normalisation.

Extra generator losses (L1, perceptual, ...) are plugged in as
`ContentLoss(name, weight, fn)`, `fn(targets, generated) -> scalar`; the
generator minimises `sum(weight * fn) + adversarial_weight * adversarial`.

The step uses `tf.GradientTape`, so it needs the TensorFlow backend (the
suite's training backend); building one on another backend is an error.
"""

import dataclasses
from typing import Callable

import keras
from keras import ops

from common.errors import UserError

LOSSES = ("ragan", "wgan_gp")


@dataclasses.dataclass
class ContentLoss:
    """One weighted generator loss: `weight * fn(targets, generated)`."""

    name: str
    weight: float
    fn: Callable


def _binary_crossentropy_with_logits(labels_value, logits):
    labels = ops.full_like(logits, labels_value)
    return ops.mean(ops.binary_crossentropy(labels, logits, from_logits=True))


def ragan_discriminator_loss(real_logits, fake_logits):
    """D_ra(real, fake) -> 1, D_ra(fake, real) -> 0."""
    real_vs_fake = real_logits - ops.mean(fake_logits)
    fake_vs_real = fake_logits - ops.mean(real_logits)
    return (_binary_crossentropy_with_logits(1.0, real_vs_fake)
            + _binary_crossentropy_with_logits(0.0, fake_vs_real)) / 2.0


def ragan_generator_loss(real_logits, fake_logits):
    """The symmetric target: D_ra(real, fake) -> 0, D_ra(fake, real) -> 1."""
    real_vs_fake = real_logits - ops.mean(fake_logits)
    fake_vs_real = fake_logits - ops.mean(real_logits)
    return (_binary_crossentropy_with_logits(0.0, real_vs_fake)
            + _binary_crossentropy_with_logits(1.0, fake_vs_real)) / 2.0


def wgan_discriminator_loss(real_logits, fake_logits):
    return ops.mean(fake_logits) - ops.mean(real_logits)


def wgan_generator_loss(real_logits, fake_logits):
    return -ops.mean(fake_logits)


def _loss_scaled(optimizer):
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer
    return keras.optimizers.LossScaleOptimizer(optimizer)


def _scale(optimizer, loss):
    """The loss a loss-scaling optimizer expects gradients of (it unscales
    them, and skips the step when they are not finite); `loss` otherwise."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer.scale_loss(loss)
    return loss


class AdversarialTrainer(keras.Model):
    """Trains `generator` against `discriminator`; `call` runs the generator.

    Compile with `compile(generator_optimizer=..., discriminator_optimizer=...)`.
    Logged per epoch: `d_loss`, `g_loss`, `g_adversarial`, each content loss
    by name, and `d_real` / `d_fake` (mean raw discriminator outputs).
    Validation (`test_step`) reports the content losses only.
    """

    def __init__(self, generator, discriminator, loss="ragan", adversarial_weight=5e-3,
                 content_losses=(), gradient_penalty_weight=10.0, discriminator_steps=1,
                 seed=None, **kwargs):
        super().__init__(**kwargs)
        if keras.backend.backend() != "tensorflow":
            raise UserError(f"AdversarialTrainer needs the TensorFlow backend, "
                            f"got {keras.backend.backend()!r} (set KERAS_BACKEND=tensorflow)")
        if loss not in LOSSES:
            raise UserError(f"GAN loss: expected one of {', '.join(LOSSES)}, got {loss!r}")
        if discriminator_steps < 1:
            raise UserError(f"discriminator_steps: expected >= 1, got {discriminator_steps}")
        self.generator = generator
        self.discriminator = discriminator
        self.loss_name = loss
        self.adversarial_weight = adversarial_weight
        self.content_losses = list(content_losses)
        self.gradient_penalty_weight = gradient_penalty_weight
        self.discriminator_steps = discriminator_steps
        # Draws the interpolation weights of the gradient penalty.
        self.seed_generator = keras.random.SeedGenerator(seed)
        if loss == "ragan":
            self._d_loss, self._g_loss = ragan_discriminator_loss, ragan_generator_loss
        else:
            self._d_loss, self._g_loss = wgan_discriminator_loss, wgan_generator_loss
        names = ["d_loss", "g_loss", "g_adversarial", "d_real", "d_fake"]
        names += [content.name for content in self.content_losses]
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}
        # Both networks arrive built; saying so lets BackupAndRestore and
        # save_weights work before the first step.
        self.built = True

    def compile(self, generator_optimizer, discriminator_optimizer, **kwargs):
        super().compile(**kwargs)
        if keras.mixed_precision.global_policy().compute_dtype == "float16":
            # float16 gradients underflow without loss scaling; Keras's own
            # compile wraps only `self.optimizer`, which this trainer has not.
            generator_optimizer = _loss_scaled(generator_optimizer)
            discriminator_optimizer = _loss_scaled(discriminator_optimizer)
        self.generator_optimizer = generator_optimizer
        self.discriminator_optimizer = discriminator_optimizer
        # Built now so their slots exist for a resumed run's restore.
        generator_optimizer.build(self.generator.trainable_variables)
        discriminator_optimizer.build(self.discriminator.trainable_variables)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, inputs, training=False):
        return self.generator(inputs, training=training)

    # --- losses -------------------------------------------------------------

    def _gradient_penalty(self, real, fake):
        import tensorflow as tf

        batch = ops.shape(real)[0]
        mix = keras.random.uniform([batch] + [1] * (len(real.shape) - 1),
                                   seed=self.seed_generator)
        mixed = mix * real + (1.0 - mix) * fake
        with tf.GradientTape() as tape:
            tape.watch(mixed)
            logits = self._logits(mixed)
        gradients = tape.gradient(logits, mixed)
        norms = ops.sqrt(ops.sum(ops.square(gradients),
                                 axis=list(range(1, len(real.shape)))) + 1e-12)
        return ops.mean(ops.square(norms - 1.0))

    def _logits(self, images):
        # Losses add up in float32: under a mixed policy the discriminator
        # may answer in bfloat16 / float16 while content losses are float32.
        return ops.cast(self.discriminator(images, training=True), "float32")

    def content_loss_values(self, targets, generated):
        return {content.name: ops.cast(content.fn(targets, generated), "float32")
                for content in self.content_losses}

    # --- steps --------------------------------------------------------------

    def train_step(self, data):
        import tensorflow as tf

        inputs, targets = data[0], data[1]
        # Mean losses per replica; gradients are summed across replicas.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync

        for _ in range(self.discriminator_steps):
            fake = self.generator(inputs, training=True)
            with tf.GradientTape() as tape:
                real_logits = self._logits(targets)
                fake_logits = self._logits(fake)
                d_loss = self._d_loss(real_logits, fake_logits)
                if self.loss_name == "wgan_gp":
                    d_loss += self.gradient_penalty_weight * self._gradient_penalty(
                        targets, fake)
                scaled = _scale(self.discriminator_optimizer, d_loss / replicas)
            weights = self.discriminator.trainable_variables
            self.discriminator_optimizer.apply_gradients(
                zip(tape.gradient(scaled, weights), weights))

        with tf.GradientTape() as tape:
            fake = self.generator(inputs, training=True)
            fake_logits = self._logits(fake)
            # The real images' logits carry no generator gradient.
            real_logits = ops.stop_gradient(self._logits(targets))
            adversarial = self._g_loss(real_logits, fake_logits)
            contents = self.content_loss_values(targets, fake)
            g_loss = self.adversarial_weight * adversarial
            for content in self.content_losses:
                g_loss += content.weight * contents[content.name]
            scaled = _scale(self.generator_optimizer, g_loss / replicas)
        weights = self.generator.trainable_variables
        self.generator_optimizer.apply_gradients(zip(tape.gradient(scaled, weights), weights))

        values = {"d_loss": d_loss, "g_loss": g_loss, "g_adversarial": adversarial,
                  "d_real": ops.mean(real_logits), "d_fake": ops.mean(fake_logits),
                  **contents}
        for name, value in values.items():
            self.trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def test_step(self, data):
        inputs, targets = data[0], data[1]
        generated = self.generator(inputs, training=False)
        contents = self.content_loss_values(targets, generated)
        for name, value in contents.items():
            self.trackers[name].update_state(value)
        return {name: self.trackers[name].result() for name in contents}
