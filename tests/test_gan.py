"""The reusable adversarial step: RaGAN and WGAN-GP on tiny problems."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from common import gan
from common.errors import UserError


def _gaussian_problem(seed=0):
    """Noise in, samples of N(2, 0.3) wanted: the generator starts near 0."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(512, 4)).astype("float32")
    real = (2.0 + 0.3 * rng.normal(size=(512, 4))).astype("float32")
    return noise, real, tf.data.Dataset.from_tensor_slices((noise, real)).batch(64)


def _networks():
    generator = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4)])
    critic = keras.Sequential([keras.Input((4,)), keras.layers.Dense(16),
                               keras.layers.LeakyReLU(0.2), keras.layers.Dense(1)])
    return generator, critic


@pytest.mark.parametrize("loss", ["ragan", "wgan_gp"])
def test_adversarial_loss_alone_moves_the_generator_to_the_data(loss):
    keras.utils.set_random_seed(0)
    noise, _, dataset = _gaussian_problem()
    generator, critic = _networks()
    before = float(np.mean(generator.predict(noise, verbose=0)))
    trainer = gan.AdversarialTrainer(generator, critic, loss=loss, adversarial_weight=1.0,
                                     seed=0)
    trainer.compile(keras.optimizers.Adam(1e-2), keras.optimizers.Adam(1e-2))
    history = trainer.fit(dataset, epochs=15, verbose=0).history
    after = float(np.mean(generator.predict(noise, verbose=0)))
    assert abs(before) < 0.5 and after > 1.0  # more than half way to the mean 2
    for key in ("d_loss", "g_loss", "g_adversarial", "d_real", "d_fake"):
        assert np.all(np.isfinite(history[key])), key


def test_content_losses_are_weighted_logged_and_fall():
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(1)
    targets = rng.random((128, 8, 8, 1)).astype("float32")
    inputs = targets + 0.3 * rng.normal(size=targets.shape).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((inputs, targets)).batch(32)
    generator = keras.Sequential([keras.Input((8, 8, 1)),
                                  keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
                                  keras.layers.Conv2D(1, 3, padding="same")])
    critic = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(8, 3, strides=2),
                               keras.layers.Flatten(), keras.layers.Dense(1)])
    l1 = gan.ContentLoss("l1", 2.0, lambda t, g: keras.ops.mean(keras.ops.abs(t - g)))
    trainer = gan.AdversarialTrainer(generator, critic, content_losses=[l1], seed=1)
    trainer.compile(keras.optimizers.Adam(3e-3), keras.optimizers.Adam(1e-4))
    history = trainer.fit(dataset, epochs=8, validation_data=dataset, verbose=0).history
    assert history["l1"][-1] < 0.7 * history["l1"][0]
    assert history["val_l1"][-1] < history["val_l1"][0]
    # g_loss = 2 * l1 + 5e-3 * adversarial, to float32 precision.
    expected = 2.0 * np.array(history["l1"]) + 5e-3 * np.array(history["g_adversarial"])
    np.testing.assert_allclose(history["g_loss"], expected, rtol=1e-4)


def test_relativistic_losses_have_the_textbook_values():
    equal = keras.ops.zeros((4, 1))
    # A critic that cannot tell real from fake: both terms are log 2.
    assert float(gan.ragan_discriminator_loss(equal, equal)) == pytest.approx(np.log(2), 1e-6)
    assert float(gan.ragan_generator_loss(equal, equal)) == pytest.approx(np.log(2), 1e-6)
    real, fake = keras.ops.full((4, 1), 5.0), keras.ops.full((4, 1), -5.0)
    # A confident, right critic: its loss is small and the generator's large.
    assert float(gan.ragan_discriminator_loss(real, fake)) < 1e-3
    assert float(gan.ragan_generator_loss(real, fake)) > 9.0
    assert float(gan.wgan_discriminator_loss(real, fake)) == pytest.approx(-10.0)
    assert float(gan.wgan_generator_loss(real, fake)) == pytest.approx(5.0)


def test_gradient_penalty_is_zero_for_a_unit_gradient_critic():
    critic = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, use_bias=False)])
    critic.layers[0].set_weights([np.array([[0.6], [0.8], [0.0]], "float32")])
    trainer = gan.AdversarialTrainer(keras.Sequential([keras.Input((3,)), keras.layers.Dense(3)]),
                                     critic, loss="wgan_gp", seed=0)
    real = np.random.default_rng(0).random((8, 3)).astype("float32")
    assert float(trainer._gradient_penalty(real, real + 1.0)) == pytest.approx(0.0, abs=1e-6)
    critic.layers[0].set_weights([np.array([[2.0], [0.0], [0.0]], "float32")])
    assert float(trainer._gradient_penalty(real, real + 1.0)) == pytest.approx(1.0, 1e-5)


def test_bad_settings_are_user_errors():
    generator, critic = _networks()
    with pytest.raises(UserError, match="GAN loss"):
        gan.AdversarialTrainer(generator, critic, loss="lsgan")
    with pytest.raises(UserError, match="discriminator_steps"):
        gan.AdversarialTrainer(generator, critic, discriminator_steps=0)
