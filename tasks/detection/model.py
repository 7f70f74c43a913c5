"""The YOLOv8 detector: the one module that imports keras-cv.

We keep keras-cv's `YOLOV8Backbone`, PA-FPN and task-aligned assigner, but
not its `YOLOV8Detector` class: that is a subclassed model with its own
`compute_loss` and a batched NMS that LiteRT can only run with Flex ops. Here
the backbone, the feature pyramid and the head are laid out as ONE Functional
model whose output is raw: per anchor, 64 box-distribution logits (4 sides x
16 bins, the "DFL" encoding) and the class logits. Decoding and NMS run on
the host (`postprocess.py`) or in the SavedModel (`serving.py`).

keras-cv builds its blocks with bare `ops.*` calls on symbolic tensors; we
replace those op nodes by equivalent layers (`_with_layers_only`), so the
graph is plain layers for QAT cloning and for `.keras` files.

To swap keras-cv out, replace `_backbone_features`, `_feature_pyramid`,
`task_aligned_assigner` and `complete_iou` below; nothing else imports it.
"""

import math

import keras
from keras import ops
from keras_cv.src.bounding_box.iou import compute_ciou
from keras_cv.src.models.object_detection.yolo_v8.yolo_v8_backbone import (
    YOLOV8Backbone,
)
from keras_cv.src.models.object_detection.yolo_v8.yolo_v8_detector import (
    apply_path_aggregation_fpn,
)
from keras_cv.src.models.object_detection.yolo_v8.yolo_v8_label_encoder import (
    YOLOV8LabelEncoder,
)
from keras_cv.src.models.object_detection.yolo_v8.yolo_v8_layers import (
    apply_conv_bn,
)

from common.errors import UserError
from tasks.detection.postprocess import BOX_CHANNELS, STRIDES

# Initial class probability (RetinaNet's prior): most anchors are background,
# so starting near 0.01 keeps the first steps from being swamped by negatives.
CLASS_PRIOR = 0.01


def _backbone_features(images, cfg):
    """P3, P4, P5 feature maps of a from-scratch YOLOv8 backbone on `images`.

    Building the backbone on our own input tensor puts its layers directly
    into the outer Functional model (no nested model), so QAT cloning and
    the LiteRT converter see every convolution.
    """
    backbone = YOLOV8Backbone(
        stackwise_channels=list(cfg.model.stackwise_channels),
        stackwise_depth=list(cfg.model.stackwise_depth),
        include_rescaling=True,
        input_tensor=images,
    )
    return [
        backbone.get_layer(backbone.pyramid_level_inputs[level]).output
        for level in ("P3", "P4", "P5")
    ]


def _feature_pyramid(features, cfg):
    return apply_path_aggregation_fpn(features, depth=cfg.model.fpn_depth, name="pa_fpn")


def _head(features, num_classes, head_channels):
    """keras-cv's YOLOv8 head, ending in class logits (no sigmoid).

    The sigmoid runs after the model (host or SavedModel): the raw output
    packs box logits and class logits, which span similar ranges, so one
    int8 scale serves both; probabilities (0..1) beside box logits (tens)
    would get only a few int8 steps.
    """
    box_channels = head_channels or max(BOX_CHANNELS, features[0].shape[-1] // 4)
    class_channels = head_channels or max(num_classes, features[0].shape[-1])
    prior_bias = -math.log((1 - CLASS_PRIOR) / CLASS_PRIOR)
    boxes, classes = [], []
    for level, feature in enumerate(features, start=3):
        name = f"head_p{level}"
        box = apply_conv_bn(feature, box_channels, 3, name=f"{name}_box_1")
        box = apply_conv_bn(box, box_channels, 3, name=f"{name}_box_2")
        box = keras.layers.Conv2D(BOX_CHANNELS, 1, name=f"{name}_box_out")(box)
        boxes.append(keras.layers.Reshape((-1, BOX_CHANNELS), name=f"{name}_box_flat")(box))

        logits = apply_conv_bn(feature, class_channels, 3, name=f"{name}_class_1")
        logits = apply_conv_bn(logits, class_channels, 3, name=f"{name}_class_2")
        logits = keras.layers.Conv2D(
            num_classes, 1, bias_initializer=keras.initializers.Constant(prior_bias),
            name=f"{name}_class_out",
        )(logits)
        classes.append(keras.layers.Reshape((-1, num_classes), name=f"{name}_class_flat")(logits))
    boxes = keras.layers.Concatenate(axis=1, name="boxes")(boxes)
    classes = keras.layers.Concatenate(axis=1, name="classes")(classes)
    return boxes, classes


@keras.saving.register_keras_serializable(package="detection")
class ChannelSlice(keras.layers.Layer):
    """Part `index` of `sections` equal parts of the last axis (one output per
    layer, so tools that wrap each layer's output keep unique names)."""

    # A slice keeps its input's values: INT8 shares the input's scale (no
    # fake-quant of its own, so no requantize op after it).
    quantization_pass_through = True

    def __init__(self, index=0, sections=2, **kwargs):
        super().__init__(**kwargs)
        self.index = index
        self.sections = sections

    def call(self, inputs):
        width = inputs.shape[-1] // self.sections
        return inputs[..., self.index * width:(self.index + 1) * width]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (input_shape[-1] // self.sections,)

    def get_config(self):
        config = super().get_config()
        config.update({"index": self.index, "sections": self.sections})
        return config


@keras.saving.register_keras_serializable(package="detection")
class Repeat(keras.layers.Layer):
    """`ops.repeat` as a layer (two of them make nearest-neighbour upsampling)."""

    # Repeating copies values: INT8 keeps the input's scale.
    quantization_pass_through = True

    def __init__(self, repeats=2, axis=1, **kwargs):
        super().__init__(**kwargs)
        self.repeats = repeats
        self.axis = axis

    def call(self, inputs):
        return ops.repeat(inputs, self.repeats, axis=self.axis)

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        if shape[self.axis] is not None:
            shape[self.axis] *= self.repeats
        return tuple(shape)

    def get_config(self):
        config = super().get_config()
        config.update({"repeats": self.repeats, "axis": self.axis})
        return config


def _operation_as_layer(operation):
    """The layer doing what a bare keras op node (from keras-cv's builders) does."""
    kind = type(operation).__name__
    if kind == "Concatenate":
        return keras.layers.Concatenate(axis=operation.axis, name=operation.name)
    if kind == "Add":
        return keras.layers.Add(name=operation.name)
    if kind == "Repeat":
        return Repeat(operation.repeats, operation.axis, name=operation.name)
    raise TypeError(f"no layer for the op {kind} ({operation.name}) in the detector graph")


def _with_layers_only(model):
    """The same graph and weights with every bare op node replaced by a layer.

    keras-cv builds its blocks with `ops.split`, `ops.concatenate`, `ops.repeat`
    and `+` on symbolic tensors; those nodes are operations, not layers, and
    layer-by-layer tools (QAT cloning, `model.layers`) skip or trip over them.
    """
    def call_function(operation, *args, **kwargs):
        if isinstance(operation, keras.layers.Layer):
            return operation(*args, **kwargs)
        kind = type(operation).__name__
        if kind == "Split":
            sections, axis = operation.indices_or_sections, operation.axis
            if not isinstance(sections, int) or axis not in (-1, len(args[0].shape) - 1):
                raise TypeError(f"unsupported split in the detector graph: {operation.name}")
            return [ChannelSlice(index, sections, name=f"{operation.name}_{index}")(args[0])
                    for index in range(sections)]
        layer = _operation_as_layer(operation)
        if kind == "Add":
            return layer(list(args))
        return layer(*args, **kwargs)

    return keras.models.clone_model(
        model, clone_function=lambda operation: operation, call_function=call_function)


def build_model(cfg, info):
    """Functional YOLOv8: images (B, S, S, 3) float 0..255 -> raw (B, A, 64 + C).

    A = anchors over strides 8, 16 and 32; per anchor 64 box-distribution
    logits, then C class logits. One output, so one Keras loss sees both and
    the same model is trained, QAT-cloned and exported to LiteRT.
    """
    size = cfg.model.image_size
    if size % STRIDES[-1]:
        raise UserError(f"model.image_size={size}: must be a multiple of {STRIDES[-1]}")
    images = keras.Input((size, size, 3), name="images")
    features = _feature_pyramid(_backbone_features(images, cfg), cfg)
    boxes, classes = _head(features, len(info["class_names"]), cfg.model.head_channels)
    raw = keras.layers.Concatenate(axis=-1, name="raw")([boxes, classes])
    return _with_layers_only(keras.Model(images, raw, name="yolo_v8_detector"))


def task_aligned_assigner(num_classes, max_anchor_matches):
    """keras-cv's TOOD task-aligned assigner (targets for the YOLOv8 loss).
    float32 under a mixed-precision policy too: the loss is float32, and a
    bfloat16 layer would cast its inputs and disagree with its own branches."""
    return YOLOV8LabelEncoder(num_classes=num_classes, max_anchor_matches=max_anchor_matches,
                              dtype="float32")


def complete_iou(boxes_a, boxes_b):
    """CIoU of matching `xyxy` boxes (keras-cv)."""
    return compute_ciou(boxes_a, boxes_b, bounding_box_format="xyxy")
