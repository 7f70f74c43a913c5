"""The detector for MediaPipe's ObjectDetector, decoding and NMS inside.

    python -m tasks.detection.export runs/detection-default/model_qat.keras --mobile

The file is the QAT INT8 YOLOv8 with the host post-processing
(`postprocess.py`) appended as LiteRT builtin ops, so MediaPipe's
ObjectDetector runs it with no glue code:

- input: float pixels (1, S, S, 3) in 0..255, what the model was trained on
  (the metadata's normalisation is mean 0, std 1);
- the network: int8, with the ranges QAT trained (converted without a
  representative dataset, so only the fake-quantized tensors are int8);
- decoding (the DFL softmax over 16 bins per box side, anchor centres and
  strides) in float32, exactly as the host does it;
- candidate ranking on the int8 class logits (TOPK_V2, exact and stable on
  ties, as the host's stable argsort), then class-aware greedy NMS as one
  NON_MAX_SUPPRESSION_V5 (builtin, float) padded to `max_detections`;
- outputs in the layout ObjectDetector reads for models with NMS inside
  (that of TFLite_Detection_PostProcess): locations (1, K, 4) as
  ymin, xmin, ymax, xmax in 0..1, classes (1, K), scores (1, K) (sigmoid
  probabilities) and the number of detections (1,), all float32.

Score threshold, IoU threshold and K are the run's `postprocess` settings,
the ones the host path uses; the file keeps them (an app can raise the score
threshold in ObjectDetectorOptions, not lower it).
"""

import dataclasses

import numpy as np

from common import mobile
from common.errors import UserError
from tasks.detection import postprocess
from tasks.detection.config import PostprocessConfig

FILE_NAME = "model_mobile.tflite"
# Output names, in the order ObjectDetector's metadata pairs them with the
# file's output tensors (location, category, score, number of detections).
OUTPUT_NAMES = ("detection_boxes", "detection_classes", "detection_scores",
                "num_detections")


def settings_from(info, postprocess_settings=None):
    """The NMS settings: given ones, else those recorded in `info`, else the
    config's defaults (what the host path of a run without overrides uses)."""
    if postprocess_settings is None:
        postprocess_settings = info.get("postprocess") or {}
    if dataclasses.is_dataclass(postprocess_settings):
        postprocess_settings = dataclasses.asdict(postprocess_settings)
    defaults = dataclasses.asdict(PostprocessConfig())
    unknown = sorted(set(postprocess_settings) - set(defaults))
    if unknown:
        raise UserError(f"detection mobile export: unknown postprocess settings {unknown}; "
                        f"expected some of {sorted(defaults)}")
    merged = dict(defaults, **postprocess_settings)
    if not 0.0 <= merged["iou_threshold"] <= 1.0:
        raise UserError(f"detection mobile export: postprocess.iou_threshold="
                        f"{merged['iou_threshold']}: expected a value in [0, 1]")
    if int(merged["max_detections"]) < 1:
        raise UserError(f"detection mobile export: postprocess.max_detections="
                        f"{merged['max_detections']}: expected at least 1")
    return merged


def detect_in_graph(raw, image_size, settings):
    """TF ops: raw outputs (1, A, 64 + C) -> the four ObjectDetector outputs.

    Written so that the converter keeps the arithmetic float: the int8 raw
    output only passes through ops that move int8 values unchanged (reshape,
    slice, max, argmax, top-k, gather); the first arithmetic op on each path
    (a subtraction) has no trained range, so the converter dequantizes
    before it. Softmax or sigmoid on the int8 tensors would otherwise run
    in int8 (their output ranges are fixed) and lose the host's precision.
    """
    import tensorflow as tf

    points, strides = postprocess.anchor_grid(image_size)
    anchors = len(points)
    raw = raw[0]
    box_logits = tf.reshape(raw[:, :postprocess.BOX_CHANNELS], [anchors, 4, postprocess.REG_MAX])
    class_logits = raw[:, postprocess.BOX_CHANNELS:]

    # DFL decoding, as postprocess.decode_boxes. The softmax is spelled out:
    # the converter turns softmax(x - max(x)) back into an int8 SOFTMAX.
    exponentials = tf.exp(box_logits - tf.reduce_max(box_logits, axis=-1, keepdims=True))
    bins = tf.range(postprocess.REG_MAX, dtype=tf.float32)
    distances = tf.reduce_sum(exponentials * bins, axis=-1) / tf.reduce_sum(
        exponentials, axis=-1)
    distances = distances * strides[:, None]
    boxes = tf.concat([points - distances[:, :2], points + distances[:, 2:]], axis=-1)

    # Candidates best first, ties in anchor order (postprocess.candidates).
    best = tf.reduce_max(class_logits, axis=-1)
    classes = tf.argmax(class_logits, axis=-1, output_type=tf.int32)
    count = min(anchors, postprocess.MAX_CANDIDATES)
    top, order = tf.math.top_k(best, k=count, sorted=True)
    # Above the threshold exactly when top - threshold > 0 (IEEE subtraction
    # keeps the sign), compared in float as the host does.
    threshold = postprocess.logit_threshold(settings["score_threshold"])
    margin = top - threshold
    boxes = tf.gather(boxes, order)
    classes = tf.cast(tf.gather(classes, order), tf.float32)
    # NMS sorts by score and is not stable on ties: strictly decreasing
    # stand-in scores make it visit the candidates in the host's order;
    # 0 marks those under the threshold (score_threshold 0.5 drops them).
    rank = tf.where(margin > 0.0, tf.range(count, 0, -1, dtype=tf.float32), 0.0)
    shifted = boxes + classes[:, None] * postprocess.class_offset(image_size)
    max_detections = int(settings["max_detections"])
    keep, _, kept = tf.raw_ops.NonMaxSuppressionV5(
        boxes=shifted, scores=rank, max_output_size=max_detections,
        iou_threshold=float(settings["iou_threshold"]), score_threshold=0.5,
        soft_nms_sigma=0.0, pad_to_max_output_size=True)
    valid = tf.range(max_detections) < kept
    kept_boxes = tf.clip_by_value(tf.gather(boxes, keep), 0.0, float(image_size))
    kept_boxes = kept_boxes / float(image_size)
    x1, y1, x2, y2 = tf.unstack(kept_boxes, axis=-1)
    locations = tf.where(valid[:, None], tf.stack([y1, x1, y2, x2], axis=-1), 0.0)
    # LOGISTIC has a fixed output range: followed by an op that moves values
    # unchanged (a select), the converter would round it to int8 steps; a
    # multiplication by the 0/1 padding mask keeps it float.
    scores = tf.sigmoid(tf.gather(margin, keep) + threshold) * tf.cast(valid, tf.float32)
    return {
        OUTPUT_NAMES[0]: locations[None],
        OUTPUT_NAMES[1]: tf.where(valid, tf.gather(classes, keep), 0.0)[None],
        OUTPUT_NAMES[2]: scores[None],
        OUTPUT_NAMES[3]: tf.cast(kept, tf.float32)[None],
    }


def check_model(qat_model, info):
    """(image size, number of classes) of a detector MediaPipe can take, or a
    UserError naming what does not fit."""
    shape = tuple(qat_model.inputs[0].shape[1:])
    if len(shape) != 3 or shape[0] != shape[1] or shape[2] != 3 or shape[0] is None:
        raise UserError(f"detection mobile export: the model takes {shape}; expected "
                        "square RGB images (S, S, 3) of a fixed size")
    image_size = int(shape[0])
    if image_size != int(info.get("image_size", image_size)):
        raise UserError(f"detection mobile export: the model takes {image_size} px images "
                        f"but the run's info.json says image_size={info['image_size']}")
    anchors = len(postprocess.anchor_grid(image_size)[0])
    output = tuple(qat_model.outputs[0].shape[1:])
    if len(output) != 2 or output[0] != anchors or output[1] <= postprocess.BOX_CHANNELS:
        raise UserError(f"detection mobile export: the model outputs {output}; expected "
                        f"({anchors} anchors, {postprocess.BOX_CHANNELS} box logits + "
                        "classes), the raw YOLOv8 head of build_model")
    return image_size, output[1] - postprocess.BOX_CHANNELS


def export_mobile(qat_model, info, path, representative_dataset=None,
                  postprocess_settings=None):
    """Write the ObjectDetector file at `path`; returns its metadata as JSON.

    The QAT model's own ranges quantize it (the representative dataset of
    the pipeline's signature is not needed: every tensor the int8 network
    keeps has a trained range, and the post-processing stays float).
    `postprocess_settings`: the run's `cfg.postprocess` (default: recorded in
    `info["postprocess"]`, else the config defaults).
    """
    import tensorflow as tf

    image_size, num_classes = check_model(qat_model, info)
    writers = mobile.writer_module("object_detector")
    # Checked before converting: a label file that does not match is an error.
    labels = mobile.labels_for_outputs(info.get("class_names"), num_classes,
                                       "detection mobile export")
    settings = settings_from(info, postprocess_settings)

    def detect(images):
        return detect_in_graph(qat_model(images, training=False), image_size, settings)

    spec = tf.TensorSpec([1, image_size, image_size, 3], tf.float32, name="images")
    flatbuffer = mobile.convert_with_trained_ranges(qat_model, detect, spec)
    flatbuffer = mobile.order_outputs(flatbuffer, OUTPUT_NAMES)
    return mobile.write_populated(writers.MetadataWriter.create_for_models_with_nms(
        bytearray(flatbuffer), input_norm_mean=[0.0], input_norm_std=[1.0],
        labels=labels), path)


def pixel_box(box, width, height):
    """MediaPipe's whole-pixel box -> xyxy, read at the middle of what it
    stands for.

    ObjectDetector truncates the origin and the size of each box to whole
    pixels, so x1 lies in [origin, origin + 1) and x2 in [origin + size,
    origin + size + 2); the middles, origin + 0.5 and origin + size + 1, are
    within 1 px of the file's box (taking the integers as they are puts x2
    up to 2 px short, which costs mAP on small images).
    """
    x1, y1 = box.origin_x + 0.5, box.origin_y + 0.5
    x2, y2 = box.origin_x + box.width + 1.0, box.origin_y + box.height + 1.0
    return [min(x1, width), min(y1, height), min(x2, width), min(y2, height)]


class MediaPipeDetector:
    """The mobile file run by MediaPipe's ObjectDetector, as a predict_fn:
    float images (N, S, S, 3) in 0..255 -> the detections dict of
    `postprocess.postprocess` (boxes xyxy in the image's pixels).

    Images go in as uint8 pixels (what a phone camera gives). MediaPipe
    answers with whole-pixel boxes (origin, width, height), read back by
    `pixel_box`.
    """

    def __init__(self, path, class_names, max_detections=None):
        mobile.require_mediapipe()
        from mediapipe.tasks.python import vision
        from mediapipe.tasks.python.core import base_options

        options = vision.ObjectDetectorOptions(
            base_options=base_options.BaseOptions(model_asset_path=str(path)),
            running_mode=vision.RunningMode.IMAGE)
        self.detector = vision.ObjectDetector.create_from_options(options)
        self.max_detections = max_detections
        # MediaPipe 1.2.3 names the category but leaves its index empty.
        self.class_index = {str(name): index for index, name in enumerate(class_names)}

    def detect(self, pixels):
        """One uint8 RGB image (H, W, 3) -> (boxes (K, 4) xyxy, classes, scores)."""
        result = self.detector.detect(mobile.mediapipe_image(pixels))
        boxes, classes, scores = [], [], []
        height, width = pixels.shape[:2]
        for detection in result.detections:
            corners = pixel_box(detection.bounding_box, width, height)
            # MediaPipe merges detections whose boxes are the same pixels into
            # one with several categories: each is a detection of its own.
            for category in detection.categories:
                boxes.append(corners)
                classes.append(self.class_index[category.category_name])
                scores.append(category.score)
        return (np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(classes, np.int64),
                np.asarray(scores, np.float32))

    def __call__(self, images):
        pixels = np.clip(np.round(np.asarray(images, np.float32)), 0, 255).astype(np.uint8)
        found = [self.detect(image) for image in pixels]
        return postprocess.pad_detections(found, self.max_detections or 1)

    def close(self):
        self.detector.close()


def predict_fn(path, info):
    """A predict_fn for `metrics.score` that runs the file through MediaPipe
    (call `.close()` when done)."""
    return MediaPipeDetector(path, info["class_names"])


def scoring_dataset(splits, cfg):
    """What the MediaPipe predict_fn is scored on: the usual test split
    (float images in 0..255, sent to MediaPipe as uint8 pixels)."""
    return splits.test
