"""Box-aware augmentation in TF ops, for tf.data on the training split.

Flip and colour jitter are the shared ones of `common/augment.py`; mosaic
and scale/translate (which drop boxes left mostly outside) are detection's.

Every function takes and returns `image (S, S, 3) float32 0..255` and the
padded target `(max_boxes, 5)` (xyxy pixels + class, -1 rows unused); boxes
move with the pixels, leave with them and are dropped when too little of
them is left in view.
"""

import tensorflow as tf

from common import augment as common_augment

FILL_VALUE = 114.0  # grey, as in YOLO's letterbox and mosaic
MIN_SIDE = 2.0  # pixels: thinner boxes are dropped
MIN_VISIBLE = 0.25  # fraction of a box that must stay inside the image


def _repack(boxes, classes, keep, max_boxes):
    """Kept rows first, then -1 padding, as a (max_boxes, 5) target."""
    rows = tf.concat([boxes, classes[:, None]], axis=-1)
    rows = tf.boolean_mask(rows, keep)[:max_boxes]
    padding = -tf.ones([max_boxes - tf.shape(rows)[0], 5], rows.dtype)
    return tf.ensure_shape(tf.concat([rows, padding], axis=0), [max_boxes, 5])


def _clip_and_filter(boxes, classes, valid, size, max_boxes):
    """Clip moved boxes to the image; drop those mostly outside or too thin."""
    size = tf.cast(size, tf.float32)
    clipped = tf.clip_by_value(boxes, 0.0, size)
    width = clipped[:, 2] - clipped[:, 0]
    height = clipped[:, 3] - clipped[:, 1]
    before = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = valid & (width >= MIN_SIDE) & (height >= MIN_SIDE) & \
        (width * height >= MIN_VISIBLE * before)
    return _repack(clipped, classes, keep, max_boxes)


def random_flip(image, target, seed=None):
    """Mirror left-right with probability 0.5 (`common.augment.random_flip`
    on the box columns; padding rows are all -1 and stay so)."""
    image, _, boxes = common_augment.random_flip(image, boxes=target[:, :4], seed=seed)
    return image, tf.concat([boxes, target[:, 4:]], axis=-1)


def random_scale_translate(image, target, scale_min, scale_max, translate, seed=None):
    """Zoom about the centre by a random factor and shift by up to `translate`
    of the image side; uncovered pixels are grey."""
    size = tf.shape(image)[0]
    side = tf.cast(size, tf.float32)
    scale = tf.exp(tf.random.uniform([], tf.math.log(scale_min), tf.math.log(scale_max),
                                     seed=seed))
    shift = tf.random.uniform([2], -translate, translate, seed=seed) * side
    centre = side / 2.0
    # Output pixel (x, y) samples input ((x - c - tx) / s + c, ...); in pixel
    # indices the centre is (side - 1) / 2, the same point as side / 2 in
    # edge coordinates.
    index_centre = (side - 1.0) / 2.0
    transform = tf.stack([
        1.0 / scale, 0.0, index_centre - (index_centre + shift[0]) / scale,
        0.0, 1.0 / scale, index_centre - (index_centre + shift[1]) / scale,
        0.0, 0.0,
    ])
    moved_image = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None], transforms=transform[None], output_shape=[size, size],
        fill_value=FILL_VALUE, interpolation="BILINEAR", fill_mode="CONSTANT",
    )[0]
    boxes = (target[:, :4] - centre) * scale + centre + tf.tile(shift, [2])
    valid = target[:, 4] >= 0
    return moved_image, _clip_and_filter(boxes, target[:, 4], valid, size, target.shape[0])


def color_jitter(image, strength, seed=None):
    """Random brightness, contrast, saturation and hue on 0..255 pixels
    (`common.augment.color_jitter` works in [0, 1]); boxes unchanged."""
    jittered = common_augment.color_jitter(
        image / 255.0, brightness=strength, contrast=strength, saturation=strength,
        hue=strength / 4.0, seed=seed)
    return jittered * 255.0


def mosaic(images, targets, seed=None):
    """One image from four: tile them 2x2 on a double-size canvas and cut a
    random window of the original size. Object scale is unchanged.

    images (4, S, S, 3), targets (4, max_boxes, 5) -> (S, S, 3), (max_boxes, 5).
    """
    size = tf.shape(images)[1]
    max_boxes = targets.shape[1]
    top = tf.concat([images[0], images[1]], axis=1)
    bottom = tf.concat([images[2], images[3]], axis=1)
    canvas = tf.concat([top, bottom], axis=0)
    offset = tf.random.uniform([2], 0, size + 1, dtype=tf.int32, seed=seed)
    window = canvas[offset[1]:offset[1] + size, offset[0]:offset[0] + size]
    side = tf.cast(size, tf.float32)
    # Quadrant origins (x, y) of images 0..3 on the canvas.
    origins = tf.constant([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]) * side
    shift = tf.tile(origins - tf.cast(offset, tf.float32)[None], [1, 2])
    boxes = tf.reshape(targets[:, :, :4] + shift[:, None, :], [-1, 4])
    classes = tf.reshape(targets[:, :, 4], [-1])
    return (tf.ensure_shape(window, images.shape[1:]),
            _clip_and_filter(boxes, classes, classes >= 0, size, max_boxes))


def mosaic_group(images, targets, probability, seed=None):
    """Four examples in, four out: each is, with `probability`, a mosaic of
    the group (in a rotated order), otherwise left as it is."""
    out_images, out_targets = [], []
    for index in range(4):
        order = [(index + k) % 4 for k in range(4)]
        mixed_image, mixed_target = mosaic(
            tf.gather(images, order), tf.gather(targets, order), seed=seed)
        use = tf.random.uniform([], seed=seed) < probability
        out_images.append(tf.where(use, mixed_image, images[index]))
        out_targets.append(tf.where(use, mixed_target, targets[index]))
    return tf.stack(out_images), tf.stack(out_targets)


def make_augment(data_cfg):
    """The per-example augmentation of the training split, from the config."""
    def augment(image, target):
        if data_cfg.scale_min != 1.0 or data_cfg.scale_max != 1.0 or data_cfg.translate > 0:
            image, target = random_scale_translate(
                image, target, data_cfg.scale_min, data_cfg.scale_max, data_cfg.translate)
        if data_cfg.flip:
            image, target = random_flip(image, target)
        if data_cfg.color_jitter > 0:
            image = color_jitter(image, data_cfg.color_jitter)
        return image, target
    return augment
