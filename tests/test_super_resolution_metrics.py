"""PSNR / SSIM against scikit-image, the Y channel, border crop, the baseline."""

import numpy as np
import pytest
import tensorflow as tf
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from tasks.super_resolution import metrics


def _pair(seed=0, size=(40, 52)):
    rng = np.random.default_rng(seed)
    smooth = tf.image.resize(rng.random((1, 6, 8, 3)), size, method="bicubic")[0].numpy()
    reference = np.clip(smooth, 0, 1)
    estimate = np.clip(reference + rng.normal(0, 0.05, reference.shape), 0, 1)
    return reference, estimate


def test_psnr_and_ssim_match_scikit_image_on_rgb_and_y():
    reference, estimate = _pair()
    scores = metrics.image_scores(reference, estimate, border=4)
    ref8, est8 = metrics.to_8bit(reference)[4:-4, 4:-4], metrics.to_8bit(estimate)[4:-4, 4:-4]
    assert scores["psnr_rgb"] == pytest.approx(
        peak_signal_noise_ratio(ref8, est8, data_range=255), abs=1e-9)
    assert scores["ssim_rgb"] == pytest.approx(structural_similarity(
        ref8, est8, data_range=255, channel_axis=-1, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False), abs=1e-9)
    ref_y = rgb2ycbcr(metrics.to_8bit(reference) / 255.0)[4:-4, 4:-4, 0]
    est_y = rgb2ycbcr(metrics.to_8bit(estimate) / 255.0)[4:-4, 4:-4, 0]
    assert scores["psnr_y"] == pytest.approx(
        peak_signal_noise_ratio(ref_y, est_y, data_range=255), abs=1e-6)
    assert scores["ssim_y"] == pytest.approx(structural_similarity(
        ref_y, est_y, data_range=255, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False), abs=1e-6)


def test_y_is_bt601_luma_in_16_to_235():
    assert metrics.rgb_to_y(np.zeros(3)) == pytest.approx(16.0)
    assert metrics.rgb_to_y(np.full(3, 255.0)) == pytest.approx(235.0)


def test_border_crop_ignores_errors_at_the_edge():
    reference, _ = _pair(1)
    damaged = reference.copy()
    damaged[:4] = 1.0 - damaged[:4]
    assert metrics.image_scores(reference, damaged, border=4)["psnr_y"] == float("inf")
    assert metrics.image_scores(reference, damaged, border=0)["psnr_y"] < 30


def test_outputs_are_scored_as_8_bit_images():
    reference, _ = _pair(2)
    reference = metrics.to_8bit(reference) / 255.0  # exactly on 8-bit levels
    # Within half a level either way the rounded image is unchanged: a
    # perfect score (truncation instead of rounding would fail the -0.4).
    for offset in (0.4, -0.4):
        nudged = reference + offset / 255.0
        np.testing.assert_array_equal(metrics.to_8bit(nudged), metrics.to_8bit(reference))
        assert metrics.image_scores(reference, nudged, border=4)["psnr_rgb"] == float("inf")
    # Past half a level every pixel moves one level, except those clipped at 255.
    moved = metrics.to_8bit(reference + 0.6 / 255.0) - metrics.to_8bit(reference)
    np.testing.assert_array_equal(moved, np.where(reference < 1.0, 1.0, 0.0))
    clipped = metrics.to_8bit(np.array([-0.2, 1.3]))
    np.testing.assert_array_equal(clipped, [0, 255])


def test_evaluate_averages_over_examples_and_bicubic_beats_nearest():
    rng = np.random.default_rng(3)
    smooth = tf.image.resize(rng.random((6, 8, 8, 3)), (64, 64), method="bicubic")
    high = tf.clip_by_value(smooth, 0, 1)
    low = tf.image.resize(high, (16, 16), method="bicubic", antialias=True)
    dataset = tf.data.Dataset.from_tensor_slices((low, high)).batch(4)
    info = {"scale": 4}
    bicubic = metrics.score(metrics.bicubic_predict_fn(None, info), dataset, info)
    nearest = metrics.score(
        lambda x: np.repeat(np.repeat(x, 4, axis=1), 4, axis=2), dataset, info)
    assert bicubic["psnr"] == bicubic["psnr_y"] and bicubic["ssim"] == bicubic["ssim_y"]
    assert bicubic["psnr_y"] > nearest["psnr_y"] + 1.0
    assert bicubic["ssim_y"] > nearest["ssim_y"]
    per_example = [metrics.image_scores(h, p, 4)["psnr_y"] for h, p in zip(
        high.numpy(), metrics.bicubic_predict_fn(None, info)(low.numpy()))]
    assert bicubic["psnr_y"] == pytest.approx(np.mean(per_example))
