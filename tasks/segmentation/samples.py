"""Pictures of predictions on test images for the run report."""

import os

import numpy as np

from common import visualize


def save_samples(predict_fn, splits, info, out_dir, int8_predict_fn=None, count=4):
    """A grid: image, truth, float prediction (and INT8 prediction) per row."""
    images, masks = next(iter(splits.test.unbatch().batch(count)))
    images, masks = images.numpy(), masks.numpy()
    colours = visualize.palette(info["num_classes"])
    background = info.get("background_class")

    def overlay(image, mask):
        return visualize.overlay_mask(image, mask, colours, background_class=background)

    float_masks = np.asarray(predict_fn(images)).argmax(-1)
    int8_masks = np.asarray(int8_predict_fn(images)).argmax(-1) if int8_predict_fn else None
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
