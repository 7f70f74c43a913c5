"""Decoding and NMS: the numpy runner (shipped with the .tflite) and the TF
version inside the SavedModel must keep the same detections."""

import numpy as np
import pytest

from tasks.detection import postprocess, serving

SIZE = 64


def _peaked_logits(distances_in_bins, anchors):
    """Box logits whose distributions put all mass on the given bins."""
    logits = np.full((anchors, 4, postprocess.REG_MAX), -30.0, np.float32)
    for side, bin_index in enumerate(distances_in_bins):
        logits[:, side, bin_index] = 30.0
    return logits.reshape(anchors, postprocess.BOX_CHANNELS)


def test_anchor_grid_covers_three_strides_row_by_row():
    points, strides = postprocess.anchor_grid(SIZE)
    assert len(points) == 8 * 8 + 4 * 4 + 2 * 2
    np.testing.assert_allclose(points[:3], [[4, 4], [12, 4], [20, 4]])
    np.testing.assert_allclose(points[8], [4, 12])  # second row of the stride-8 grid
    np.testing.assert_allclose(points[64], [8, 8])  # first stride-16 anchor
    assert strides[0] == 8 and strides[64] == 16 and strides[-1] == 32


def test_decode_turns_bins_into_stride_scaled_distances():
    anchors = len(postprocess.anchor_grid(SIZE)[0])
    logits = _peaked_logits([1, 2, 3, 4], anchors)
    boxes = postprocess.decode_boxes(logits, SIZE)
    # First anchor: centre (4, 4), stride 8.
    np.testing.assert_allclose(boxes[0], [4 - 8, 4 - 16, 4 + 24, 4 + 32], atol=1e-3)
    # First stride-32 anchor: centre (16, 16).
    np.testing.assert_allclose(boxes[80], [16 - 32, 16 - 64, 16 + 96, 16 + 128], atol=1e-3)
    np.testing.assert_allclose(
        serving.decode_boxes(logits, SIZE).numpy(), boxes, rtol=1e-5, atol=1e-4)


def test_greedy_nms_suppresses_same_class_overlaps_only():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], np.float32)
    keep = postprocess.greedy_nms(boxes, iou_threshold=0.5, max_detections=10)
    assert keep.tolist() == [0, 2]
    # The same overlap in two classes survives: the class offset separates them.
    shifted = boxes + np.array([0, 1, 0])[:, None] * postprocess.class_offset(SIZE)
    assert postprocess.greedy_nms(shifted, 0.5, 10).tolist() == [0, 1, 2]
    assert postprocess.greedy_nms(boxes, 0.5, 1).tolist() == [0]


def _random_raw(rng, batch, num_classes, quantize):
    anchors = len(postprocess.anchor_grid(SIZE)[0])
    box_logits = rng.normal(0, 3, (batch, anchors, postprocess.BOX_CHANNELS)).astype(np.float32)
    class_logits = rng.normal(-3, 2, (batch, anchors, num_classes)).astype(np.float32)
    if quantize:  # int8 outputs come in steps of the output scale: many ties
        class_logits = np.round(class_logits / 0.1).astype(np.float32) * np.float32(0.1)
    return box_logits, class_logits


@pytest.mark.parametrize("quantize", [False, True])
def test_numpy_and_tensorflow_nms_agree(quantize):
    rng = np.random.default_rng(0)
    box_logits, class_logits = _random_raw(rng, batch=4, num_classes=3, quantize=quantize)
    settings = dict(score_threshold=0.05, iou_threshold=0.5, max_detections=20)
    host = postprocess.postprocess([box_logits, class_logits], SIZE, **settings)
    graph = serving.detect_batch(box_logits, class_logits, SIZE, **settings)
    np.testing.assert_array_equal(host["num_detections"], graph["num_detections"].numpy())
    assert host["num_detections"].min() > 0
    np.testing.assert_array_equal(host["classes"], graph["classes"].numpy())
    np.testing.assert_allclose(host["scores"], graph["scores"].numpy(), atol=1e-6)
    np.testing.assert_allclose(host["boxes"], graph["boxes"].numpy(), atol=1e-3)


def test_postprocess_accepts_packed_and_split_outputs():
    rng = np.random.default_rng(1)
    box_logits, class_logits = _random_raw(rng, batch=2, num_classes=2, quantize=False)
    packed = postprocess.postprocess(np.concatenate([box_logits, class_logits], -1), SIZE)
    swapped = postprocess.postprocess([class_logits, box_logits], SIZE)
    np.testing.assert_array_equal(packed["classes"], swapped["classes"])
    np.testing.assert_allclose(packed["boxes"], swapped["boxes"])
    # Boxes stay inside the image, padding is -1.
    count = packed["num_detections"][0]
    assert packed["boxes"][0, :count].min() >= 0 and packed["boxes"][0, :count].max() <= SIZE
    assert np.all(packed["classes"][0, count:] == -1)
