"""Pictures of detections on test images for the run report."""

import os

import numpy as np

from common import visualize
from tasks.detection.boxes import unpack_targets
from tasks.detection.draw import draw_detections


def save_samples(predict_fn, splits, info, out_dir, int8_predict_fn=None, count=4,
                 threshold=0.3):
    """A grid: ground truth, float detections (and INT8 detections) per row."""
    # The float model sees a whole first batch of the test split, the shape
    # the evaluation just ran it on: a Keras model's traced predict function
    # takes it as it is, where a batch of `count` images traced the
    # detector again (3.1 -> 0.9 s for this picture on two loaded cores).
    # The first `count` images are drawn.
    images, targets = next(iter(splits.test))
    images, targets = np.asarray(images), np.asarray(targets)
    predictions = [("float", predict_fn(images))]
    images, targets = images[:count], targets[:count]
    if int8_predict_fn is not None:
        predictions.append(("INT8 (QAT)", int8_predict_fn(images)))
    names = info["class_names"]
    # Small images are drawn twice as large so the labels stay readable.
    scale = max(1, 256 // images.shape[1])
    rows = []
    for index in range(len(images)):
        boxes, classes = unpack_targets(targets[index])
        row = [draw_detections(images[index], boxes, classes, None, names, scale=scale)]
        for _, detections in predictions:
            found = int(detections["num_detections"][index])
            row.append(draw_detections(
                images[index], detections["boxes"][index, :found],
                detections["classes"][index, :found], detections["scores"][index, :found],
                names, threshold=threshold, scale=scale))
        rows.append(row)
    titles = ["truth"] + [f"{name} (score >= {threshold})" for name, _ in predictions]
    path = os.path.join(out_dir, "samples.png")
    return [visualize.save_grid(rows, titles, path)]
