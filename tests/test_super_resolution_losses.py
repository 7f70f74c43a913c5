"""The VGG19 perceptual loss: loads user weights, fails clearly without them."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from common.errors import UserError
from tasks.super_resolution import losses


@pytest.fixture(scope="module")
def vgg_weights(tmp_path_factory):
    # Random weights stand in for ImageNet ones (no downloads in tests).
    keras.utils.set_random_seed(0)
    path = str(tmp_path_factory.mktemp("vgg") / "vgg19_notop.weights.h5")
    keras.applications.VGG19(include_top=False, weights=None).save_weights(path)
    return path


def _reference_features(weights_path, images):
    """block5_conv4 before its ReLU, by hand: the user's VGG19 up to
    block5_conv3, then block5_conv4's kernel and bias; Caffe-style input."""
    vgg = keras.applications.VGG19(include_top=False, weights=None,
                                   input_shape=(None, None, 3))
    vgg.load_weights(weights_path)
    below = keras.Model(vgg.input, vgg.get_layer("block5_conv3").output)
    bgr = images[..., ::-1] * 255.0 - np.array([103.939, 116.779, 123.68], "float32")
    kernel, bias = vgg.get_layer("block5_conv4").get_weights()
    return np.asarray(tf.nn.conv2d(below(bgr), kernel, 1, "SAME")) + bias


def test_perceptual_loss_compares_pre_activation_vgg_features(vgg_weights):
    loss = losses.PerceptualLoss(vgg_weights)
    rng = np.random.default_rng(0)
    images = rng.random((2, 32, 32, 3)).astype("float32")
    other = np.clip(images + rng.normal(0, 0.1, images.shape), 0, 1).astype("float32")
    assert float(loss(images, images)) == 0.0
    features = _reference_features(vgg_weights, images)
    np.testing.assert_allclose(loss.extractor(loss.preprocess(images)), features,
                               rtol=1e-4, atol=1e-3)
    assert features.shape == (2, 2, 2, 512)
    assert features.min() < 0  # before the ReLU, as in ESRGAN
    expected = np.mean(np.abs(features - _reference_features(vgg_weights, other)))
    assert float(loss(images, other)) == pytest.approx(expected, rel=1e-4)


def test_perceptual_loss_trains_the_generated_side_only(vgg_weights):
    loss = losses.PerceptualLoss(vgg_weights)
    rng = np.random.default_rng(1)
    targets = tf.Variable(rng.random((1, 32, 32, 3)).astype("float32"))
    generated = tf.Variable(rng.random((1, 32, 32, 3)).astype("float32"))
    with tf.GradientTape() as tape:
        value = loss(targets, generated)
    to_targets, to_generated = tape.gradient(value, [targets, generated])
    assert to_targets is None or float(tf.reduce_max(tf.abs(to_targets))) == 0.0
    assert float(tf.reduce_max(tf.abs(to_generated))) > 0.0
    assert not loss.extractor.trainable_weights  # VGG19 stays frozen


def test_missing_or_wrong_weight_files_are_clear_errors(tmp_path):
    with pytest.raises(UserError, match="missing.h5.*file not found"):
        losses.PerceptualLoss(str(tmp_path / "missing.h5"))
    wrong = tmp_path / "wrong.weights.h5"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save_weights(str(wrong))
    with pytest.raises(UserError, match="not VGG19 'notop' weights"):
        losses.PerceptualLoss(str(wrong))


def test_l1_loss_is_the_mean_absolute_error():
    a = np.zeros((1, 2, 2, 3), "float32")
    assert float(losses.l1_loss(a, a + 0.25)) == pytest.approx(0.25)
    # Signs do not cancel: +0.5 on half the values, -0.5 on the rest.
    b = a.copy()
    b[..., :1], b[..., 1:] = 0.5, -0.5
    assert float(losses.l1_loss(a, b)) == pytest.approx(0.5)
