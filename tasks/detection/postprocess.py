"""Host-side decoding and NMS for the raw detector outputs, in numpy only.

This is the part of the detector that ships beside the `.tflite` file: an
edge device needs LiteRT and numpy, not TensorFlow. The SavedModel runs the
same algorithm with TF ops (`serving.py`); a test checks that both agree on
the same raw outputs.

Raw outputs per image: `box_logits (A, 64)` - for each anchor, 16 logits for
each of the distances left, top, right, bottom in units of the anchor's
stride - and `class_logits (A, C)`, whose sigmoid is the score. Anchors are
the cell centres of the stride-8, 16 and 32 grids, in that order, row by row.
"""

import numpy as np

from common.arrays import softmax

STRIDES = (8, 16, 32)
REG_MAX = 16  # bins per box side
BOX_CHANNELS = 4 * REG_MAX
MAX_CANDIDATES = 1000  # best-scoring anchors that enter NMS


def anchor_grid(image_size, strides=STRIDES):
    """Anchor centres (A, 2) as (x, y) pixels and each anchor's stride (A,)."""
    points, anchor_strides = [], []
    for stride in strides:
        cells = image_size // stride
        ys, xs = np.mgrid[0:cells, 0:cells].astype(np.float32)
        centres = np.stack([xs.ravel(), ys.ravel()], axis=-1) + 0.5
        points.append(centres * stride)
        anchor_strides.append(np.full(cells * cells, stride, np.float32))
    return np.concatenate(points), np.concatenate(anchor_strides)


def decode_boxes(box_logits, image_size):
    """(..., A, 64) distribution logits -> (..., A, 4) `xyxy` pixel boxes."""
    box_logits = np.asarray(box_logits, np.float32)
    shape = box_logits.shape[:-1] + (4, REG_MAX)
    probabilities = softmax(box_logits.reshape(shape))
    distances = (probabilities * np.arange(REG_MAX, dtype=np.float32)).sum(-1)
    points, strides = anchor_grid(image_size)
    distances = distances * strides[:, None]
    return np.concatenate([points - distances[..., :2], points + distances[..., 2:]], axis=-1)


def split_raw(raw):
    """Raw output(s) -> (box_logits (B, A, 64), class_logits (B, A, C)).

    Accepts the model's packed `(B, A, 64 + C)` array, or the two parts in
    either order (as a list or dict).
    """
    if isinstance(raw, dict):
        raw = list(raw.values())
    if isinstance(raw, (list, tuple)):
        if len(raw) != 2:
            raise ValueError(f"expected 2 raw outputs (boxes, classes), got {len(raw)}")
        first, second = (np.asarray(r, np.float32) for r in raw)
        if first.shape[-1] != BOX_CHANNELS and second.shape[-1] == BOX_CHANNELS:
            first, second = second, first
        return first, second
    raw = np.asarray(raw, np.float32)
    return raw[..., :BOX_CHANNELS], raw[..., BOX_CHANNELS:]


def sigmoid(values):
    return 1.0 / (1.0 + np.exp(-values))


def logit_threshold(score_threshold):
    """The class logit above which the score exceeds `score_threshold`."""
    score_threshold = min(max(score_threshold, 1e-7), 1 - 1e-7)
    return float(np.log(score_threshold / (1.0 - score_threshold)))


def candidates(box_logits, class_logits, image_size, score_threshold,
               max_candidates=MAX_CANDIDATES):
    """One image's boxes, best classes and scores, best first.

    Ranking and thresholding use the logits themselves (the sigmoid is
    monotonic), so the TF twin sees exactly the same float32 values and
    ties keep anchor order in both.
    """
    boxes = decode_boxes(box_logits, image_size)
    classes = class_logits.argmax(-1)
    best = class_logits.max(-1)
    order = np.argsort(-best, kind="stable")
    order = order[best[order] > np.float32(logit_threshold(score_threshold))][:max_candidates]
    return boxes[order], classes[order], sigmoid(best[order])


def greedy_nms(boxes, iou_threshold, max_detections):
    """Indices kept by greedy NMS over boxes already sorted best first."""
    x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    suppressed = np.zeros(len(boxes), bool)
    keep = []
    for index in range(len(boxes)):
        if suppressed[index]:
            continue
        keep.append(index)
        if len(keep) == max_detections:
            break
        width = np.clip(np.minimum(x2[index], x2) - np.maximum(x1[index], x1), 0, None)
        height = np.clip(np.minimum(y2[index], y2) - np.maximum(y1[index], y1), 0, None)
        intersection = width * height
        iou = intersection / np.maximum(areas[index] + areas - intersection, 1e-9)
        suppressed |= iou > iou_threshold
    return np.array(keep, np.int64)


def class_offset(image_size):
    """Shift added to boxes per class so NMS never compares two classes."""
    return 4.0 * image_size


def postprocess(raw, image_size, score_threshold=0.01, iou_threshold=0.6,
                max_detections=100):
    """Raw outputs of a batch -> padded detections in model-input pixels.

    Returns {"boxes" (B, K, 4) xyxy, "classes" (B, K) int, "scores" (B, K),
    "num_detections" (B,)}, K = max_detections, padding -1 / 0.
    """
    box_logits, class_logits = split_raw(raw)
    batch = box_logits.shape[0]
    out_boxes = np.full((batch, max_detections, 4), -1.0, np.float32)
    out_classes = np.full((batch, max_detections), -1, np.int64)
    out_scores = np.zeros((batch, max_detections), np.float32)
    counts = np.zeros(batch, np.int64)
    for index in range(batch):
        boxes, classes, scores = candidates(
            box_logits[index], class_logits[index], image_size, score_threshold
        )
        shifted = boxes + (classes[:, None] * class_offset(image_size)).astype(np.float32)
        keep = greedy_nms(shifted, iou_threshold, max_detections)
        count = len(keep)
        out_boxes[index, :count] = np.clip(boxes[keep], 0, image_size)
        out_classes[index, :count] = classes[keep]
        out_scores[index, :count] = scores[keep]
        counts[index] = count
    return {"boxes": out_boxes, "classes": out_classes, "scores": out_scores,
            "num_detections": counts}


def pad_detections(found, min_width=1):
    """Per-image (boxes [n, 4], classes [n], scores [n]) -> the batched
    detections dict every scorer reads (padding past `num_detections`:
    boxes and classes -1, scores 0)."""
    width = max([len(classes) for _, classes, _ in found] + [min_width])
    result = {"boxes": np.full((len(found), width, 4), -1.0, np.float32),
              "classes": np.full((len(found), width), -1, np.int64),
              "scores": np.zeros((len(found), width), np.float32),
              "num_detections": np.array([len(c) for _, c, _ in found], np.int64)}
    for index, (boxes, classes, scores) in enumerate(found):
        result["boxes"][index, :len(boxes)] = boxes
        result["classes"][index, :len(boxes)] = classes
        result["scores"][index, :len(boxes)] = scores
    return result
