"""Pictures of predictions on test images for the run report."""

import os

import numpy as np

from common import visualize


def displayable(inputs):
    """Model inputs (N, H, W, 1 or 3), in [0, 1] or standardized -> RGB in
    [0, 1] to draw: greyscale repeated, standardized images stretched."""
    images = np.asarray(inputs, np.float32)
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    if images.min() < 0.0 or images.max() > 1.0:
        low = images.min(axis=(1, 2, 3), keepdims=True)
        high = images.max(axis=(1, 2, 3), keepdims=True)
        images = (images - low) / np.maximum(high - low, 1e-6)
    return images


def save_samples(predict_fn, splits, info, out_dir, int8_predict_fn=None, count=4):
    """A grid: image, truth, float prediction (and INT8 prediction) per row."""
    images, masks = next(iter(splits.test.unbatch().batch(count)))
    inputs, masks = images.numpy(), masks.numpy()
    images = displayable(inputs)
    colours = visualize.palette(info["num_classes"])
    background = info.get("background_class")

    def overlay(image, mask):
        return visualize.overlay_mask(image, mask, colours, background_class=background)

    float_masks = np.asarray(predict_fn(inputs)).argmax(-1)
    int8_masks = np.asarray(int8_predict_fn(inputs)).argmax(-1) if int8_predict_fn else None
    rows = []
    for index in range(len(images)):
        row = [images[index],
               overlay(images[index], masks[index]),
               overlay(images[index], float_masks[index])]
        if int8_masks is not None:
            row.append(overlay(images[index], int8_masks[index]))
        rows.append(row)
    titles = ["image", "truth", "float"] + (["INT8 (QAT)"] if int8_masks is not None else [])
    legend = dict(zip(info["class_names"], colours))
    path = os.path.join(out_dir, "samples.png")
    return [visualize.save_grid(rows, titles, path, legend=legend)]
