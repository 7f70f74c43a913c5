"""U-Net (Ronneberger et al., 2015) from the shared blocks, and its serving model."""

import keras
import tensorflow as tf

from common import layers as blocks
from common import serving
from common.errors import UserError
from tasks.segmentation import data as seg_data

BLOCKS = ("conv", "residual", "separable")
# What the serving endpoint takes; strings name sizes that may vary.
IMAGES_SHAPE = ("batch", "height", "width", 3)


def _stage(x, filters, options, name):
    """Two convolutions at one resolution, in the configured block style."""
    common_args = dict(activation=options.activation, initializer=options.initializer)
    if options.block == "conv":
        x = blocks.conv_bn_act(x, filters, name=f"{name}_1", **common_args)
        return blocks.conv_bn_act(x, filters, name=f"{name}_2", **common_args)
    if options.block == "residual":
        return blocks.residual_block(x, filters, name=name, **common_args)
    if options.block == "separable":
        x = blocks.separable_block(x, filters, name=f"{name}_1", **common_args)
        return blocks.separable_block(x, filters, name=f"{name}_2", **common_args)
    raise UserError(f"model.block={options.block!r}; expected one of {', '.join(BLOCKS)}")


def build_model(cfg, info):
    """Encoder-decoder with skip connections; per-pixel class logits out."""
    options = cfg.model
    # The data decides the input: a local folder may keep its own size and
    # one greyscale channel (tasks/segmentation/data.py).
    size = info.get("image_size", cfg.data.image_size)
    channels = info.get("channels", 3)
    if size % (2 ** options.depth):
        raise UserError(
            f"image size {size} (data.image_size, or a folder's own size) must be "
            f"divisible by 2**model.depth={2 ** options.depth}"
        )
    # === Inputs ===
    images = keras.Input((size, size, channels), name="image")
    x = images
    # === Encoder ===
    skips = []
    for level in range(options.depth):
        x = _stage(x, options.filters * 2 ** level, options, f"encoder{level}")
        skips.append(x)
        x = keras.layers.MaxPooling2D(name=f"encoder{level}_pool")(x)
    # === Bottleneck ===
    bottom_filters = options.filters * 2 ** options.depth
    x = _stage(x, bottom_filters, options, "bottleneck")
    if options.dilated_bottleneck:
        x = blocks.dilated_block(x, bottom_filters, activation=options.activation,
                                 initializer=options.initializer, name="bottleneck_dilated")
    if options.dropout:
        x = keras.layers.Dropout(options.dropout, name="bottleneck_dropout")(x)
    # === Decoder ===
    for level in reversed(range(options.depth)):
        filters = options.filters * 2 ** level
        x = keras.layers.UpSampling2D(name=f"decoder{level}_up")(x)
        x = blocks.conv_bn_act(x, filters, 1, activation=options.activation,
                               initializer=options.initializer, name=f"decoder{level}_reduce")
        x = keras.layers.Concatenate(name=f"decoder{level}_concat")([x, skips[level]])
        x = _stage(x, filters, options, f"decoder{level}")
    # === Head ===
    logits = keras.layers.Conv2D(info["num_classes"], 1, name="logits", dtype="float32")(x)
    return keras.Model(images, logits, name="unet")


def build_serving_model(model, cfg, info):
    """TF Serving endpoints: uint8 images of any size -> classes at that size.

    `serving_default` takes a uint8 batch (N, H, W, 3); an empty batch
    (0, H, W, 3) answers empty `classes` (0, H, W) and `confidence`.
    `serve_bytes` takes one encoded PNG/JPEG/GIF/BMP image (shape [1]).
    Requests over `export.serving_max_batch` images or
    `export.serving_max_pixels` pixels per image (read from the header,
    before decoding) are refused with InvalidArgumentError
    (`common/serving.py`).
    """
    limits = cfg.export

    def segment(images):
        images = serving.check_shape(images, IMAGES_SHAPE, "images")
        images = serving.check_batch(images, limits.serving_max_batch)
        images = serving.check_pixels(images, limits.serving_max_pixels)
        height, width = tf.shape(images)[1], tf.shape(images)[2]
        # The model's size, channels (RGB -> grey for a one-channel model)
        # and normalisation, exactly as in training (info from the data).
        inputs = seg_data.model_inputs(images, info)
        logits = serving.call_on_nonempty_batch(model, inputs)
        # Upsample the scores, not the labels, so edges follow the probabilities.
        logits = tf.image.resize(logits, (height, width), method="bilinear")
        probabilities = tf.nn.softmax(logits, axis=-1)
        return {"classes": tf.argmax(logits, axis=-1, output_type=tf.int32),
                "confidence": tf.reduce_max(probabilities, axis=-1)}

    def segment_bytes(encoded):
        encoded = serving.check_shape(encoded, (1,), "image_bytes")
        checked = serving.check_image_bytes(encoded[0], limits.serving_max_pixels)
        image = tf.io.decode_image(checked, channels=3, expand_animations=False)
        return segment(image[None])

    return {
        "serving_default": (segment, [serving.request_spec(tf.uint8, "images")]),
        "serve_bytes": (segment_bytes, [serving.request_spec(tf.string, "image_bytes")]),
    }


def compile_args(cfg, info):
    # Void pixels (mask value data.ignore_label) are left out of the loss and
    # of the accuracy shown during training, as the metrics leave them out.
    ignore_label = info.get("ignore_label", cfg.data.ignore_label)
    return {
        "loss": MaskedSparseCrossentropy(info["num_classes"], ignore_label,
                                         cfg.train.label_smoothing),
        "metrics": [MaskedPixelAccuracy(ignore_label, name="pixel_accuracy")],
    }


def _labels_and_weights(y_true, ignore_label):
    """Integer labels with void pixels set to class 0, and 1/0 weights that
    leave those pixels out."""
    labels = keras.ops.cast(y_true, "int32")
    if len(labels.shape) == 4:  # (batch, height, width, 1)
        labels = keras.ops.squeeze(labels, -1)
    labelled = keras.ops.not_equal(labels, ignore_label)
    return keras.ops.where(labelled, labels, 0), keras.ops.cast(labelled, "float32")


@keras.saving.register_keras_serializable(package="segmentation")
class MaskedSparseCrossentropy(keras.losses.Loss):
    """Per-pixel cross-entropy from logits that leaves out `ignore_label` pixels.

    Each image's loss is the mean over its labelled pixels (0 for an image
    with none), so void pixels neither pull the model towards a class nor
    dilute the loss. Without void pixels it equals the plain sparse loss.
    """

    def __init__(self, num_classes, ignore_label=255, label_smoothing=0.0,
                 name="masked_sparse_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        labels, weights = _labels_and_weights(y_true, self.ignore_label)
        y_pred = keras.ops.cast(y_pred, "float32")
        if self.label_smoothing > 0:
            pixel_loss = keras.losses.categorical_crossentropy(
                keras.ops.one_hot(labels, self.num_classes), y_pred, from_logits=True,
                label_smoothing=self.label_smoothing)
        else:
            pixel_loss = keras.ops.sparse_categorical_crossentropy(
                labels, y_pred, from_logits=True)
        pixel_axes = (1, 2)
        return (keras.ops.sum(pixel_loss * weights, axis=pixel_axes)
                / keras.ops.maximum(keras.ops.sum(weights, axis=pixel_axes), 1.0))

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, ignore_label=self.ignore_label,
                      label_smoothing=self.label_smoothing)
        return config


@keras.saving.register_keras_serializable(package="segmentation")
class MaskedPixelAccuracy(keras.metrics.SparseCategoricalAccuracy):
    """Pixel accuracy over the labelled pixels (void pixels left out)."""

    def __init__(self, ignore_label=255, name="pixel_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.ignore_label = ignore_label

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels, weights = _labels_and_weights(y_true, self.ignore_label)
        if sample_weight is not None:
            weights = weights * keras.ops.cast(sample_weight, "float32")
        return super().update_state(labels, y_pred, sample_weight=weights)

    def get_config(self):
        config = super().get_config()
        config.update(ignore_label=self.ignore_label)
        return config
