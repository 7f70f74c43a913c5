"""Box formats, padded targets, and box-aware augmentation that moves boxes
exactly with the pixels."""

import numpy as np
import pytest
import tensorflow as tf

from tasks.detection import augment, boxes


def test_format_conversions_round_trip():
    xyxy = np.array([[10, 20, 50, 80], [0, 0, 1, 1]], np.float32)
    xywh = boxes.xyxy_to_xywh(xyxy)
    np.testing.assert_allclose(xywh, [[10, 20, 40, 60], [0, 0, 1, 1]])
    np.testing.assert_allclose(boxes.xywh_to_xyxy(xywh), xyxy)
    centre = boxes.xyxy_to_center(xyxy)
    np.testing.assert_allclose(centre[0], [30, 50, 40, 60])
    np.testing.assert_allclose(boxes.center_to_xyxy(centre), xyxy)
    # TFDS: relative [ymin, xmin, ymax, xmax]
    np.testing.assert_allclose(
        boxes.rel_yxyx_to_xyxy([[0.25, 0.1, 0.5, 0.3]], height=200, width=100), [[10, 50, 30, 100]])
    np.testing.assert_allclose(boxes.scale_boxes(xyxy[:1], 0.5, 2.0), [[5, 40, 25, 160]])


def test_iou_matrix_hand_computed():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    np.testing.assert_allclose(boxes.iou_matrix(a, b), [[50 / 150, 1.0, 0.0]], rtol=1e-6)


def test_pack_pads_with_minus_one_and_counts_overflow():
    target, dropped = boxes.pack_targets([[1, 2, 3, 4]] * 3, [0, 1, 2], max_boxes=2)
    assert target.shape == (2, 5) and dropped == 1
    target, dropped = boxes.pack_targets([[1, 2, 3, 4]], [2], max_boxes=4)
    assert dropped == 0 and np.all(target[1:] == -1)
    unpacked_boxes, classes = boxes.unpack_targets(target)
    np.testing.assert_allclose(unpacked_boxes, [[1, 2, 3, 4]])
    assert classes.tolist() == [2]


def _image_with_rectangles(rectangles, size=64):
    """Black image with one solid rectangle per (box, value); its target."""
    image = np.zeros((size, size, 3), np.float32)
    for (x1, y1, x2, y2), value in rectangles:
        image[y1:y2, x1:x2] = value
    target, _ = boxes.pack_targets([r[0] for r in rectangles], range(len(rectangles)), 6)
    return tf.constant(image), tf.constant(target)


def _extent(image, value):
    """The xyxy box of the pixels close to `value` (edges in pixel units)."""
    rows, cols = np.nonzero(np.abs(np.asarray(image)[..., 0] - value) < 40)
    return [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]


def test_flip_moves_boxes_with_pixels():
    image, target = _image_with_rectangles([((5, 10, 20, 30), 250)])
    for seed in range(6):  # some seeds flip, some do not: both must agree
        tf.random.set_seed(seed)
        moved_image, moved_target = augment.random_flip(image, target)
        np.testing.assert_allclose(moved_target[0, :4], _extent(moved_image, 250))
        assert np.all(moved_target.numpy()[1:] == -1)


@pytest.mark.parametrize("scale, translate", [(1.5, 0.0), (0.7, 0.15)])
def test_scale_translate_moves_boxes_with_pixels(scale, translate):
    image, target = _image_with_rectangles([((20, 24, 40, 36), 250)])
    tf.random.set_seed(3)
    moved_image, moved_target = augment.random_scale_translate(
        image, target, scale, scale, translate)
    np.testing.assert_allclose(moved_target[0, :4], _extent(moved_image, 250), atol=1.0)
    # A box pushed mostly out of view is dropped, the rest stays padded.
    image, target = _image_with_rectangles([((0, 0, 8, 8), 250), ((28, 28, 36, 36), 120)])
    moved_image, moved_target = augment.random_scale_translate(image, target, 2.0, 2.0, 0.0)
    kept = moved_target.numpy()
    assert kept[0, 4] == 1 and np.all(kept[1:] == -1)
    np.testing.assert_allclose(kept[0, :4], _extent(moved_image, 120), atol=1.0)


def test_mosaic_keeps_scale_and_tracks_every_box():
    values = [60, 120, 180, 240]
    pairs = [_image_with_rectangles([((16, 16, 48, 48), value)]) for value in values]
    images = tf.stack([p[0] for p in pairs])
    # Class id = which of the four images the box came from.
    targets = np.stack([p[1].numpy() for p in pairs])
    targets[:, 0, 4] = np.arange(4)
    targets = tf.constant(targets)
    tf.random.set_seed(1)
    image, target = augment.mosaic(images, targets)
    assert image.shape == (64, 64, 3)
    found = target.numpy()
    found = found[found[:, 4] >= 0]
    assert len(found) >= 2
    for row in found:
        np.testing.assert_allclose(row[:4], _extent(image, values[int(row[4])]), atol=0.5)
        # Cut boxes are clipped, never enlarged: at most the 32-pixel original.
        assert row[2] - row[0] <= 32 and row[3] - row[1] <= 32


def test_colour_jitter_changes_pixels_not_range():
    image = tf.random.uniform((32, 32, 3), 0, 255, seed=0)
    jittered = augment.color_jitter(image, 0.3)
    assert float(tf.reduce_min(jittered)) >= 0 and float(tf.reduce_max(jittered)) <= 255
    assert float(tf.reduce_mean(tf.abs(jittered - image))) > 1.0
