"""Per-example image augmentation that moves masks and boxes with the image.

Images are float32 (H, W, C) in [0, 1]; masks are (H, W) or (H, W, 1)
integer class maps (resampled with nearest neighbour so classes stay
classes); boxes are (N, 4) `xyxy` in pixels, padded rows are -1 and stay -1.
All functions run inside `tf.data.Dataset.map`.
"""

import math

import tensorflow as tf


def _is_padding(boxes):
    return tf.reduce_all(boxes < 0, axis=-1, keepdims=True)


def random_flip(image, mask=None, boxes=None, probability=0.5, seed=None):
    """Horizontal flip of image, mask and boxes together."""
    flip = tf.random.uniform([], seed=seed) < probability
    width = tf.cast(tf.shape(image)[1], tf.float32)
    image = tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image)
    if mask is not None:
        mask = tf.cond(flip, lambda: tf.reverse(mask, [1]), lambda: mask)
    if boxes is not None:
        flipped = tf.stack([width - boxes[:, 2], boxes[:, 1],
                            width - boxes[:, 0], boxes[:, 3]], axis=-1)
        flipped = tf.where(_is_padding(boxes), boxes, flipped)
        boxes = tf.cond(flip, lambda: flipped, lambda: boxes)
    return image, mask, boxes


def color_jitter(image, brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02,
                 seed=None):
    """Random brightness, contrast, saturation and hue; result kept in [0, 1]."""
    if brightness:
        image = tf.image.random_brightness(image, brightness, seed=seed)
    if contrast:
        image = tf.image.random_contrast(image, 1 - contrast, 1 + contrast, seed=seed)
    if image.shape[-1] == 3:
        if saturation:
            image = tf.image.random_saturation(image, 1 - saturation, 1 + saturation,
                                               seed=seed)
        if hue:
            image = tf.image.random_hue(image, hue, seed=seed)
    return tf.clip_by_value(image, 0.0, 1.0)


def _affine_matrix(height, width, angle, scale, shift_x, shift_y):
    """3x3 matrix mapping output pixel coordinates to input coordinates
    (rotation by `angle` and zoom by `scale` about the centre, then shift)."""
    center_x, center_y = (width - 1) / 2.0, (height - 1) / 2.0
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    # input = R^-1 * (output - centre - shift) + centre
    a0, a1 = cos, sin
    b0, b1 = -sin, cos
    tx = center_x - a0 * (center_x + shift_x) - a1 * (center_y + shift_y)
    ty = center_y - b0 * (center_x + shift_x) - b1 * (center_y + shift_y)
    return tf.stack([a0, a1, tx, b0, b1, ty, 0.0, 0.0])


def _warp(image, transform, interpolation, fill_value=0.0):
    dtype = image.dtype
    batched = tf.cast(image[None], tf.float32)
    output = tf.raw_ops.ImageProjectiveTransformV3(
        images=batched, transforms=transform[None],
        output_shape=tf.shape(image)[:2], fill_value=fill_value,
        interpolation=interpolation, fill_mode="CONSTANT",
    )[0]
    return tf.cast(output, dtype)


def random_affine(image, mask=None, max_rotation_degrees=10.0,
                  scale_range=(0.9, 1.1), max_translate_fraction=0.1,
                  mask_fill=0):
    """Rotate, zoom and shift image and mask by one random transform.

    New image area is black; new mask area gets `mask_fill` (background).
    (Detection moves boxes with its own scale/translate in
    `tasks/detection/augment.py`, which also drops boxes left mostly outside.)
    """
    height = tf.cast(tf.shape(image)[0], tf.float32)
    width = tf.cast(tf.shape(image)[1], tf.float32)
    angle = tf.random.uniform([], -1.0, 1.0) * max_rotation_degrees * math.pi / 180.0
    scale = tf.random.uniform([], scale_range[0], scale_range[1])
    shift_x = tf.random.uniform([], -1.0, 1.0) * max_translate_fraction * width
    shift_y = tf.random.uniform([], -1.0, 1.0) * max_translate_fraction * height
    transform = _affine_matrix(height, width, angle, scale, shift_x, shift_y)
    image = _warp(image, transform, "BILINEAR")
    if mask is not None:
        squeeze = mask.shape.rank == 2
        mask3 = mask[..., None] if squeeze else mask
        mask3 = _warp(mask3, transform, "NEAREST", fill_value=float(mask_fill))
        mask = mask3[..., 0] if squeeze else mask3
    return image, mask

