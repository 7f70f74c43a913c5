"""TF Serving endpoints: images in, boxes in the input's own pixels out.

The SavedModel runs the same decoding and class-aware greedy NMS as the
numpy runner (`postprocess.py`), written in TF ops so TF Serving needs
nothing else. Candidates are ranked by score (ties: anchor order) and NMS
walks them in exactly that order, so both implementations keep the same
boxes; `tests/test_detection_postprocess.py` checks it.
"""

import tensorflow as tf

from common import serving
from tasks.detection.postprocess import (
    MAX_CANDIDATES, REG_MAX, anchor_grid, class_offset, logit_threshold,
)


def decode_boxes(box_logits, image_size):
    """(A, 64) logits -> (A, 4) xyxy pixels (TF twin of postprocess.decode_boxes)."""
    points, strides = anchor_grid(image_size)
    logits = tf.reshape(box_logits, [-1, 4, REG_MAX])
    distances = tf.reduce_sum(
        tf.nn.softmax(logits, axis=-1) * tf.range(REG_MAX, dtype=tf.float32), axis=-1)
    distances = distances * strides[:, None]
    return tf.concat([points - distances[:, :2], points + distances[:, 2:]], axis=-1)


def detect_one(box_logits, class_logits, image_size, score_threshold,
               iou_threshold, max_detections):
    """One image's raw outputs -> padded boxes, classes, scores, count."""
    boxes = decode_boxes(tf.cast(box_logits, tf.float32), image_size)
    class_logits = tf.cast(class_logits, tf.float32)
    best = tf.reduce_max(class_logits, axis=-1)
    classes = tf.argmax(class_logits, axis=-1, output_type=tf.int32)
    order = tf.argsort(best, direction="DESCENDING", stable=True)[:MAX_CANDIDATES]
    sorted_best = tf.gather(best, order)
    count = tf.reduce_sum(tf.cast(sorted_best > logit_threshold(score_threshold), tf.int32))
    order, sorted_scores = order[:count], tf.sigmoid(sorted_best[:count])
    boxes, classes = tf.gather(boxes, order), tf.gather(classes, order)
    shifted = boxes + tf.cast(classes, tf.float32)[:, None] * class_offset(image_size)
    # Strictly decreasing stand-in scores make NMS visit candidates in our
    # order even where real scores tie (common with int8 outputs).
    rank = tf.cast(tf.range(count, 0, -1), tf.float32)
    keep = tf.image.non_max_suppression(shifted, rank, max_detections, iou_threshold)
    kept = tf.shape(keep)[0]
    padding = max_detections - kept
    out_boxes = tf.clip_by_value(tf.gather(boxes, keep), 0.0, float(image_size))
    return (
        tf.pad(out_boxes, [[0, padding], [0, 0]], constant_values=-1.0),
        tf.pad(tf.gather(classes, keep), [[0, padding]], constant_values=-1),
        tf.pad(tf.gather(sorted_scores, keep), [[0, padding]]),
        kept,
    )


def detect_batch(box_logits, class_logits, image_size, score_threshold,
                 iou_threshold, max_detections):
    """Batched `detect_one`: dict of (B, K, 4), (B, K), (B, K), (B,)."""
    def one(pair):
        return detect_one(pair[0], pair[1], image_size, score_threshold,
                          iou_threshold, max_detections)

    boxes, classes, scores, counts = tf.map_fn(
        one, (box_logits, class_logits),
        fn_output_signature=(
            tf.TensorSpec([max_detections, 4], tf.float32),
            tf.TensorSpec([max_detections], tf.int32),
            tf.TensorSpec([max_detections], tf.float32),
            tf.TensorSpec([], tf.int32),
        ),
    )
    return {"boxes": boxes, "classes": classes, "scores": scores, "num_detections": counts}


def resize_for_model(image, image_size):
    """uint8 (H, W, 3) -> float (S, S, 3) exactly as the data pipeline does."""
    resized = tf.image.resize(image, [image_size, image_size], antialias=True)
    return tf.round(tf.clip_by_value(resized, 0.0, 255.0))


def build_serving_model(model, cfg, info):
    """`serving_default`: encoded image bytes (B,) of any size;
    `detect_images`: uint8 images (B, H, W, 3) of any size.

    Both return boxes (B, K, 4) as xyxy in each input image's own pixels,
    classes (B, K) int32 (-1 = padding), class_names (B, K), scores (B, K)
    and num_detections (B,); an empty batch answers those with B = 0.

    Requests over `export.serving_max_batch` images or
    `export.serving_max_pixels` pixels per image (read from each header,
    before decoding) are refused with InvalidArgumentError
    (`common/serving.py`), as are bytes that are not a PNG/JPEG/GIF/BMP.
    """
    size = cfg.model.image_size
    limits = cfg.export
    post = cfg.postprocess
    class_names = tf.constant(list(info["class_names"]) + [""])

    def detect(images_float, heights, widths):
        raw = serving.call_on_nonempty_batch(model, images_float)
        detections = detect_batch(
            raw[..., :4 * REG_MAX], raw[..., 4 * REG_MAX:], size,
            post.score_threshold, post.iou_threshold, post.max_detections)
        scale = tf.stack([widths, heights, widths, heights], axis=-1) / float(size)
        valid = detections["classes"] >= 0
        detections["boxes"] = tf.where(
            valid[..., None], detections["boxes"] * scale[:, None, :], -1.0)
        # Padding (-1) picks the trailing "" name.
        detections["class_names"] = tf.gather(
            class_names, tf.where(valid, detections["classes"], len(info["class_names"])))
        return detections

    def from_bytes(encoded_images):
        encoded_images = serving.check_shape(encoded_images, ("batch",), "images")
        encoded_images = serving.check_batch(encoded_images, limits.serving_max_batch)

        def decode(encoded):
            checked = serving.check_image_bytes(encoded, limits.serving_max_pixels)
            image = tf.io.decode_image(checked, channels=3, expand_animations=False)
            image.set_shape([None, None, 3])
            shape = tf.cast(tf.shape(image), tf.float32)
            return resize_for_model(image, size), shape[0], shape[1]

        images, heights, widths = tf.map_fn(
            decode, encoded_images,
            fn_output_signature=(tf.TensorSpec([size, size, 3], tf.float32),
                                 tf.TensorSpec([], tf.float32), tf.TensorSpec([], tf.float32)))
        return detect(images, heights, widths)

    def from_images(images):
        images = serving.check_shape(images, ("batch", "height", "width", 3), "images")
        images = serving.check_batch(images, limits.serving_max_batch)
        images = serving.check_pixels(images, limits.serving_max_pixels)
        shape = tf.cast(tf.shape(images), tf.float32)
        batch = tf.shape(images)[0]
        resized = resize_for_model(images, size)
        return detect(resized, tf.fill([batch], shape[1]), tf.fill([batch], shape[2]))

    return {
        "serving_default": (from_bytes, [serving.request_spec(tf.string, "images")]),
        "detect_images": (from_images,
                          [serving.request_spec(tf.uint8, "images")]),
    }
