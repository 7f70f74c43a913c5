"""The VGG19 perceptual loss: loads user weights, fails clearly without them."""

import keras
import numpy as np
import pytest

from common.errors import UserError
from tasks.super_resolution import losses


@pytest.fixture(scope="module")
def vgg_weights(tmp_path_factory):
    # Random weights stand in for ImageNet ones (no downloads in tests).
    keras.utils.set_random_seed(0)
    path = str(tmp_path_factory.mktemp("vgg") / "vgg19_notop.weights.h5")
    keras.applications.VGG19(include_top=False, weights=None).save_weights(path)
    return path


def test_perceptual_loss_compares_pre_activation_vgg_features(vgg_weights):
    loss = losses.PerceptualLoss(vgg_weights)
    rng = np.random.default_rng(0)
    images = rng.random((2, 32, 32, 3)).astype("float32")
    other = np.clip(images + rng.normal(0, 0.1, images.shape), 0, 1).astype("float32")
    assert float(loss(images, images)) == 0.0
    assert float(loss(images, other)) > 0.0
    features = np.asarray(loss.extractor(loss.preprocess(images)))
    assert features.shape == (2, 2, 2, 512)
    assert features.min() < 0  # before the ReLU, as in ESRGAN


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
