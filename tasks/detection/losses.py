"""The YOLOv8 loss as one Keras loss on a packed target.

`y_true` is the padded target `(B, max_boxes, 5)` (xyxy pixels + class,
-1 rows unused); `y_pred` the model's raw `(B, A, 64 + C)`: box logits,
then class logits. Anchors are
matched to objects by the task-aligned assigner (TOOD), then:

- box loss: 1 - CIoU between decoded and target boxes,
- distribution focal loss (DFL): cross-entropy of each side's 16-bin
  distribution against the two bins around the target distance,
- class loss: binary cross-entropy against the alignment-weighted targets,

each weighted by the matched anchors' target scores and normalized by their
sum, as in Ultralytics and keras-cv.
"""

import keras
from keras import ops

from tasks.detection import model as detector
from tasks.detection.postprocess import BOX_CHANNELS, REG_MAX, anchor_grid


def _expected_distances(box_logits):
    """(B, A, 64) logits -> (B, A, 4) expected distance per side, in strides."""
    shape = ops.shape(box_logits)
    logits = ops.reshape(box_logits, (shape[0], shape[1], 4, REG_MAX))
    bins = ops.arange(REG_MAX, dtype="float32")
    return ops.sum(ops.softmax(logits, axis=-1) * bins, axis=-1), logits


@keras.saving.register_keras_serializable(package="detection")
class YOLOv8Loss(keras.losses.Loss):
    def __init__(self, num_classes, image_size, box_weight=7.5, class_weight=0.5,
                 dfl_weight=1.5, max_anchor_matches=10, name="yolo_v8_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = num_classes
        self.image_size = image_size
        self.box_weight = box_weight
        self.class_weight = class_weight
        self.dfl_weight = dfl_weight
        self.max_anchor_matches = max_anchor_matches
        points, strides = anchor_grid(image_size)
        self._points = points / strides[:, None]  # in units of the stride
        self._strides = strides[:, None]
        self._assigner = detector.task_aligned_assigner(num_classes, max_anchor_matches)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        points = ops.convert_to_tensor(self._points)
        strides = ops.convert_to_tensor(self._strides)
        box_logits = y_pred[..., :BOX_CHANNELS]
        class_logits = y_pred[..., BOX_CHANNELS:]
        scores = ops.sigmoid(class_logits)

        distances, distance_logits = _expected_distances(box_logits)
        predicted = ops.concatenate([points - distances[..., :2], points + distances[..., 2:]], -1)

        gt_boxes = y_true[..., :4]
        gt_classes = y_true[..., 4]
        gt_mask = ops.expand_dims(gt_classes >= 0, -1)
        target_boxes, target_scores, foreground = self._assigner(
            ops.stop_gradient(scores),
            ops.stop_gradient(predicted * strides),
            points * strides,
            gt_classes,
            gt_boxes,
            gt_mask,
        )
        target_boxes = target_boxes / strides
        normalizer = ops.maximum(ops.sum(target_scores), 1.0)
        # Each matched anchor counts by how well it is aligned with its object.
        anchor_weight = ops.sum(target_scores, axis=-1) * foreground

        ciou = detector.complete_iou(target_boxes, predicted)
        box_loss = ops.sum((1.0 - ciou) * anchor_weight, axis=-1)

        target_distances = ops.concatenate(
            [points - target_boxes[..., :2], target_boxes[..., 2:] - points], -1)
        target_distances = ops.clip(target_distances, 0.0, REG_MAX - 1 - 0.01)
        lower = ops.floor(target_distances)
        upper_weight = target_distances - lower
        log_probabilities = ops.log_softmax(distance_logits, axis=-1)
        lower_index = ops.cast(lower, "int32")
        lower_log = ops.sum(log_probabilities * ops.one_hot(lower_index, REG_MAX), -1)
        upper_log = ops.sum(log_probabilities * ops.one_hot(lower_index + 1, REG_MAX), -1)
        dfl = -((1.0 - upper_weight) * lower_log + upper_weight * upper_log)
        dfl_loss = ops.sum(ops.mean(dfl, axis=-1) * anchor_weight, axis=-1)

        class_loss = ops.binary_crossentropy(target_scores, class_logits, from_logits=True)
        class_loss = ops.sum(class_loss, axis=(1, 2))

        per_image = (self.box_weight * box_loss + self.dfl_weight * dfl_loss
                     + self.class_weight * class_loss)
        # Keras averages over the batch; the YOLOv8 normalizer is per batch.
        batch_size = ops.cast(ops.shape(y_pred)[0], "float32")
        return per_image * batch_size / normalizer

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_classes": self.num_classes,
            "image_size": self.image_size,
            "box_weight": self.box_weight,
            "class_weight": self.class_weight,
            "dfl_weight": self.dfl_weight,
            "max_anchor_matches": self.max_anchor_matches,
        })
        return config


