"""PSNR and SSIM on RGB and on the Y channel, and the bicubic baseline.

As the SR benchmarks measure them (BasicSR, the ESRGAN paper): both images
are rounded to 8-bit levels, `scale` pixels are cropped from every border,
Y is ITU-R BT.601 luma in [16, 235] (MATLAB `rgb2ycbcr`), and SSIM is
Wang et al.'s with an 11x11 Gaussian window (sigma 1.5), K1 = 0.01,
K2 = 0.03, averaged over the valid region (and over channels for RGB).
Scores are averaged over test examples.
"""

import numpy as np

from tasks.super_resolution.data import bicubic_upscale

PRIMARY_METRIC = "psnr"


def to_8bit(image):
    """Float [0, 1] image -> float64 in [0, 255] on 8-bit levels."""
    return np.round(np.clip(np.asarray(image, np.float64), 0.0, 1.0) * 255.0)


def rgb_to_y(image):
    """BT.601 luma of an RGB image in [0, 255] -> [16, 235] (not rounded)."""
    return 16.0 + (image @ np.array([65.481, 128.553, 24.966])) / 255.0


def crop_border(image, border):
    return image[border:-border, border:-border] if border > 0 else image


def psnr(reference, estimate, data_range=255.0):
    error = np.mean((np.asarray(reference, np.float64) - np.asarray(estimate, np.float64)) ** 2)
    if error == 0:
        return float("inf")
    return float(10.0 * np.log10(data_range ** 2 / error))


def _gaussian_window(size=11, sigma=1.5):
    offsets = np.arange(size) - (size - 1) / 2.0
    window = np.exp(-(offsets ** 2) / (2.0 * sigma ** 2))
    return window / window.sum()


def _filter_valid(image, window):
    """Separable 'valid' filtering of a 2-D image with a 1-D window."""
    size = len(window)
    rows = sum(w * image[k:image.shape[0] - size + 1 + k] for k, w in enumerate(window))
    return sum(w * rows[:, k:rows.shape[1] - size + 1 + k] for k, w in enumerate(window))


def ssim(reference, estimate, data_range=255.0):
    """Mean SSIM of two 2-D images, or of each channel of (H, W, C) averaged."""
    reference = np.asarray(reference, np.float64)
    estimate = np.asarray(estimate, np.float64)
    if reference.ndim == 3:
        return float(np.mean([ssim(reference[..., c], estimate[..., c], data_range)
                              for c in range(reference.shape[-1])]))
    window = _gaussian_window()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = _filter_valid(reference, window), _filter_valid(estimate, window)
    var_x = _filter_valid(reference * reference, window) - mu_x ** 2
    var_y = _filter_valid(estimate * estimate, window) - mu_y ** 2
    cov = _filter_valid(reference * estimate, window) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return float(ssim_map.mean())


def image_scores(reference, estimate, border):
    """PSNR / SSIM on RGB and Y of one pair of float [0, 1] RGB images."""
    reference, estimate = to_8bit(reference), to_8bit(estimate)
    reference_y, estimate_y = rgb_to_y(reference), rgb_to_y(estimate)
    reference, estimate = crop_border(reference, border), crop_border(estimate, border)
    reference_y, estimate_y = crop_border(reference_y, border), crop_border(estimate_y, border)
    return {
        "psnr_y": psnr(reference_y, estimate_y),
        "ssim_y": ssim(reference_y, estimate_y),
        "psnr_rgb": psnr(reference, estimate),
        "ssim_rgb": ssim(reference, estimate),
    }


def score(predict_fn, dataset, info):
    """Mean scores over `dataset`'s `(lr, hr)` batches; `psnr`/`ssim` are on Y."""
    border = info.get("scale", 4)
    totals, count = {}, 0
    for lr, hr in dataset:
        predicted = np.asarray(predict_fn(lr.numpy()))
        for reference, estimate in zip(hr.numpy(), predicted):
            for key, value in image_scores(reference, estimate, border).items():
                totals[key] = totals.get(key, 0.0) + value
            count += 1
    if count == 0:
        raise ValueError("score: the dataset is empty")
    scores = {key: value / count for key, value in totals.items()}
    return {"psnr": scores["psnr_y"], "ssim": scores["ssim_y"], **scores}


def baseline_predict_fns(splits=None, info=None):
    """Every baseline by name (scored by `score` like the model)."""
    return {"bicubic": bicubic_predict_fn(splits, info)}


def bicubic_predict_fn(splits=None, info=None):
    """Bicubic x4 upscaling: what every SR model must beat."""
    scale = (info or {}).get("scale", 4)

    def predict(lr):
        return bicubic_upscale(lr, scale).numpy()
    return predict
