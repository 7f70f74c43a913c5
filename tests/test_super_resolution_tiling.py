"""Tiled upscaling equals whole-image upscaling; small images are padded."""

import keras
import numpy as np
import pytest

from common import config
from common.errors import UserError
from tasks.super_resolution import PRESETS, Config
from tasks.super_resolution import model as sr_model
from tasks.super_resolution.tiling import tile_starts, upscale_tiled


def _fixed_tile_fn(model, tile):
    """A raw function that, like a .tflite, refuses anything but tiles."""
    def raw(batch):
        assert batch.shape[1:3] == (tile, tile), batch.shape
        return np.asarray(model(batch))
    return raw


def _pointwise_model():
    # Receptive field of one LR pixel: tiling must give exactly the same image.
    inputs = keras.Input((None, None, 3))
    x = keras.layers.UpSampling2D(4)(inputs)
    outputs = keras.layers.Conv2D(3, 1)(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("length,tile,overlap", [(100, 64, 16), (64, 64, 8), (130, 32, 4)])
def test_tile_starts_cover_every_pixel(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] + tile == length
    assert all(b - a <= tile - 2 * overlap for a, b in zip(starts, starts[1:]))


def test_tile_starts_refuse_a_tile_longer_than_the_axis():
    with pytest.raises(ValueError, match="length 10 is shorter than one tile \\(16\\)"):
        tile_starts(10, 16)
    with pytest.raises(ValueError, match="tile overlap 8"):
        tile_starts(40, 16, 8)
    assert tile_starts(40, 16) == [0, 16, 24]  # overlap 0 by default


def test_tiling_is_exact_for_a_pointwise_model():
    model = _pointwise_model()
    image = np.random.default_rng(0).random((37, 53, 3)).astype("float32")
    tiled = upscale_tiled(_fixed_tile_fn(model, 16), image, tile=16, overlap=4, batch_size=3)
    np.testing.assert_allclose(tiled, np.asarray(model(image[None]))[0], atol=1e-6)


def test_tiled_generator_matches_the_whole_image_within_tolerance():
    cfg = config.from_preset(Config, PRESETS, "smoke")
    keras.utils.set_random_seed(0)
    generator = sr_model.build_generator(cfg.model)
    rng = np.random.default_rng(1)
    # A smooth photo-like image: coarse noise upsampled, plus fine texture.
    coarse = rng.random((1, 6, 8, 3)).astype("float32")
    image = np.asarray(keras.ops.image.resize(coarse, (72, 90)))[0]
    image = np.clip(image + rng.normal(0, 0.02, image.shape), 0, 1).astype("float32")
    whole = np.asarray(generator(image[None]))[0]
    tiled = upscale_tiled(_fixed_tile_fn(generator, 32), image, tile=32, overlap=8)
    assert tiled.shape == whole.shape == (288, 360, 3)
    difference = np.abs(tiled - whole)
    assert difference.mean() < 1e-4 and difference.max() < 5e-3
    # Without overlap the seams show: the tolerance above is not loose.
    seams = upscale_tiled(_fixed_tile_fn(generator, 32), image, tile=32, overlap=0)
    assert np.abs(seams - whole).max() > 20 * difference.max()


def test_images_smaller_than_a_tile_are_padded_and_cropped_back():
    model = _pointwise_model()
    image = np.random.default_rng(2).random((9, 20, 3)).astype("float32")
    tiled = upscale_tiled(_fixed_tile_fn(model, 32), image, tile=32, overlap=8)
    np.testing.assert_allclose(tiled, np.asarray(model(image[None]))[0], atol=1e-6)


def test_unusable_images_and_settings_are_clear_errors():
    raw = _fixed_tile_fn(_pointwise_model(), 16)
    with pytest.raises(UserError, match="too small"):
        upscale_tiled(raw, np.zeros((3, 40, 3), "float32"), tile=16, overlap=4)
    with pytest.raises(UserError, match="RGB"):
        upscale_tiled(raw, np.zeros((20, 20), "float32"), tile=16, overlap=4)
    with pytest.raises(UserError, match="overlap"):
        upscale_tiled(raw, np.zeros((20, 20, 3), "float32"), tile=16, overlap=8)
