import numpy as np
import tensorflow as tf

from common import augment


def _scene():
    image = np.zeros((40, 60, 3), np.float32)
    mask = np.zeros((40, 60), np.int32)
    mask[10:20, 5:25] = 1
    image[mask == 1] = 1.0
    boxes = np.array([[5, 10, 25, 20], [-1, -1, -1, -1]], np.float32)
    return tf.constant(image), tf.constant(mask), tf.constant(boxes)


def _mask_box(mask):
    rows, cols = np.nonzero(np.asarray(mask))
    return np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], np.float32)


def test_flip_moves_image_mask_and_boxes_together():
    image, mask, boxes = _scene()
    flipped_image, flipped_mask, flipped_boxes = augment.random_flip(image, mask, boxes, 1.0)
    np.testing.assert_array_equal(flipped_mask.numpy(), mask.numpy()[:, ::-1])
    np.testing.assert_allclose(flipped_boxes[0], _mask_box(flipped_mask))
    np.testing.assert_array_equal(flipped_boxes[1], [-1, -1, -1, -1])
    np.testing.assert_array_equal(flipped_image.numpy(), image.numpy()[:, ::-1])


def test_affine_keeps_boxes_on_the_moved_object():
    tf.random.set_seed(3)
    image, mask, boxes = _scene()
    for _ in range(5):
        moved_image, moved_mask, moved_boxes = augment.random_affine(
            image, mask, boxes, max_rotation_degrees=0.0, scale_range=(0.8, 1.2),
            max_translate_fraction=0.15)
        # without rotation the moved box is the moved object's bounding box
        np.testing.assert_allclose(moved_boxes[0], _mask_box(moved_mask), atol=1.6)
        np.testing.assert_array_equal(moved_boxes[1], [-1, -1, -1, -1])
        # mask classes stay classes (nearest neighbour), image stays in range
        assert set(np.unique(moved_mask)) <= {0, 1}
        assert 0.0 <= float(tf.reduce_min(moved_image)) <= float(tf.reduce_max(moved_image)) <= 1.0


def test_rotated_box_contains_the_rotated_object():
    tf.random.set_seed(5)
    image, mask, boxes = _scene()
    _, moved_mask, moved_boxes = augment.random_affine(
        image, mask, boxes, max_rotation_degrees=30.0, scale_range=(1.0, 1.0),
        max_translate_fraction=0.0)
    x1, y1, x2, y2 = _mask_box(moved_mask)
    bx1, by1, bx2, by2 = moved_boxes[0].numpy()
    assert bx1 <= x1 + 1 and by1 <= y1 + 1 and bx2 >= x2 - 1 and by2 >= y2 - 1


def test_color_jitter_stays_in_range_and_changes_pixels():
    tf.random.set_seed(0)
    image = tf.random.uniform((8, 8, 3))
    jittered = augment.color_jitter(image, brightness=0.3)
    assert float(tf.reduce_min(jittered)) >= 0.0 and float(tf.reduce_max(jittered)) <= 1.0
    assert float(tf.reduce_mean(tf.abs(jittered - image))) > 0.0
