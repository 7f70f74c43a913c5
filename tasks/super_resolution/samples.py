"""Pictures of test tiles for the run report: LR, bicubic, float, INT8, HR."""

import os

import numpy as np

from common import visualize
from tasks.super_resolution.data import bicubic_upscale


def save_samples(predict_fn, splits, info, out_dir, int8_predict_fn=None, count=3):
    pairs = [(low.numpy(), high.numpy()) for low, high in splits.test.unbatch()]
    # Evenly spread over the split, so different test images show up.
    chosen = [pairs[int(i)] for i in np.linspace(0, len(pairs) - 1, min(count, len(pairs)))]
    low = np.stack([pair[0] for pair in chosen])
    high = np.stack([pair[1] for pair in chosen])
    scale = info.get("scale", 4)
    columns = {
        "input (nearest)": np.repeat(np.repeat(low, scale, axis=1), scale, axis=2),
        "bicubic": bicubic_upscale(low, scale).numpy(),
        "float": np.clip(np.asarray(predict_fn(low)), 0.0, 1.0),
    }
    if int8_predict_fn is not None:
        columns["INT8 (QAT)"] = np.clip(np.asarray(int8_predict_fn(low)), 0.0, 1.0)
    columns["original"] = high
    rows = [[columns[title][index] for title in columns] for index in range(len(low))]
    path = os.path.join(out_dir, "samples.png")
    return [visualize.save_grid(rows, list(columns), path)]
