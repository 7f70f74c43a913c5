"""Box formats and the padded target layout.

Inside this package every box is `BOX_FORMAT` = "xyxy": absolute pixel
coordinates `[x1, y1, x2, y2]` of the image the model sees, with pixel edges
as integers (a box covering pixels 3..5 is `[3, y1, 6, y2]`).

A target is one fixed-shape array `(max_boxes, 5)` per image: the box and
then the class id; unused rows are all -1. Fixed shapes keep ragged tensors
out of the model's path and let XLA compile once.
"""

import numpy as np

BOX_FORMAT = "xyxy"
PAD_VALUE = -1.0


def xywh_to_xyxy(boxes):
    """COCO `[x, y, width, height]` -> `[x1, y1, x2, y2]`."""
    boxes = np.asarray(boxes, dtype=np.float32)
    return np.concatenate([boxes[..., :2], boxes[..., :2] + boxes[..., 2:4]], axis=-1)


def xyxy_to_xywh(boxes):
    boxes = np.asarray(boxes, dtype=np.float32)
    return np.concatenate([boxes[..., :2], boxes[..., 2:4] - boxes[..., :2]], axis=-1)


def rel_yxyx_to_xyxy(boxes, height, width):
    """TFDS `[ymin, xmin, ymax, xmax]` in 0..1 -> absolute `xyxy` pixels."""
    boxes = np.asarray(boxes, dtype=np.float32)
    return np.stack([boxes[..., 1] * width, boxes[..., 0] * height,
                     boxes[..., 3] * width, boxes[..., 2] * height], axis=-1)


def center_to_xyxy(boxes):
    """`[cx, cy, width, height]` -> `xyxy`."""
    boxes = np.asarray(boxes, dtype=np.float32)
    half = boxes[..., 2:4] / 2.0
    return np.concatenate([boxes[..., :2] - half, boxes[..., :2] + half], axis=-1)


def xyxy_to_center(boxes):
    boxes = np.asarray(boxes, dtype=np.float32)
    size = boxes[..., 2:4] - boxes[..., :2]
    return np.concatenate([boxes[..., :2] + size / 2.0, size], axis=-1)


def scale_boxes(boxes, scale_x, scale_y):
    """Boxes of an image resized by (scale_x, scale_y)."""
    factors = np.array([scale_x, scale_y, scale_x, scale_y], dtype=np.float32)
    return np.asarray(boxes, dtype=np.float32) * factors


def area(boxes):
    boxes = np.asarray(boxes, dtype=np.float32)
    return np.clip(boxes[..., 2] - boxes[..., 0], 0, None) * \
        np.clip(boxes[..., 3] - boxes[..., 1], 0, None)


def iou_matrix(boxes_a, boxes_b):
    """IoU of every box in `boxes_a` (N, 4) with every box in `boxes_b` (M, 4)."""
    a = np.asarray(boxes_a, dtype=np.float32)[:, None, :]
    b = np.asarray(boxes_b, dtype=np.float32)[None, :, :]
    top_left = np.maximum(a[..., :2], b[..., :2])
    bottom_right = np.minimum(a[..., 2:], b[..., 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=-1)
    union = area(a) + area(b) - intersection
    return intersection / np.maximum(union, 1e-9)


def pack_targets(boxes, classes, max_boxes):
    """Boxes (N, 4) and classes (N,) -> a `(max_boxes, 5)` target padded with -1.

    Returns the target and how many boxes did not fit.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    classes = np.asarray(classes, dtype=np.float32).reshape(-1)
    target = np.full((max_boxes, 5), PAD_VALUE, dtype=np.float32)
    kept = min(len(boxes), max_boxes)
    target[:kept, :4] = boxes[:kept]
    target[:kept, 4] = classes[:kept]
    return target, len(boxes) - kept


def unpack_targets(target):
    """A padded `(max_boxes, 5)` target -> (boxes (N, 4), classes (N,) int)."""
    target = np.asarray(target)
    valid = target[:, 4] >= 0
    return target[valid, :4], target[valid, 4].astype(np.int64)
