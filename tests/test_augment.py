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


def test_affine_moves_image_and_mask_together():
    tf.random.set_seed(3)
    image, mask, _ = _scene()
    for _ in range(5):
        moved_image, moved_mask = augment.random_affine(
            image, mask, max_rotation_degrees=20.0, scale_range=(0.8, 1.2),
            max_translate_fraction=0.15)
        # mask classes stay classes (nearest neighbour), image stays in range
        assert set(np.unique(moved_mask)) <= {0, 1}
        assert 0.0 <= float(tf.reduce_min(moved_image)) <= float(tf.reduce_max(moved_image)) <= 1.0
        # the white object and its mask moved together: they still overlap
        white = moved_image.numpy()[..., 0] > 0.5
        labelled = moved_mask.numpy() == 1
        assert (white & labelled).sum() >= 0.8 * labelled.sum() > 0


def test_color_jitter_stays_in_range_and_changes_pixels():
    tf.random.set_seed(0)
    image = tf.random.uniform((8, 8, 3))
    jittered = augment.color_jitter(image, brightness=0.3)
    assert float(tf.reduce_min(jittered)) >= 0.0 and float(tf.reduce_max(jittered)) <= 1.0
    assert float(tf.reduce_mean(tf.abs(jittered - image))) > 0.0


def test_detection_reuses_the_shared_flip_and_colour_jitter(monkeypatch):
    from tasks.detection import augment as detection_augment

    calls = []

    def spy(name):
        original = getattr(augment, name)

        def wrapped(*args, **kwargs):
            calls.append(name)
            return original(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(augment, "random_flip", spy("random_flip"))
    monkeypatch.setattr(augment, "color_jitter", spy("color_jitter"))
    image = tf.random.uniform((16, 16, 3), 0, 255, seed=1)
    target = tf.constant([[2.0, 3.0, 6.0, 9.0, 1.0], [-1, -1, -1, -1, -1]])
    flipped_image, flipped_target = detection_augment.random_flip(image, target)
    jittered = detection_augment.color_jitter(image, 0.3)
    assert calls == ["random_flip", "color_jitter"]
    # The detection wrappers keep their contract: 0..255 pixels, class column
    # and padding rows untouched.
    assert float(tf.reduce_max(jittered)) <= 255.0 and float(tf.reduce_max(jittered)) > 1.0
    np.testing.assert_array_equal(flipped_target[:, 4], [1.0, -1.0])
    np.testing.assert_array_equal(flipped_target[1], [-1, -1, -1, -1, -1])
