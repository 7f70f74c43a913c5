"""U-Net (Ronneberger et al., 2015) from the shared blocks, and its serving model."""

import keras
import tensorflow as tf

from common import layers as blocks
from common.errors import UserError

BLOCKS = ("conv", "residual", "separable")


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
    size = cfg.data.image_size
    if size % (2 ** options.depth):
        raise UserError(
            f"data.image_size={size} must be divisible by 2**model.depth={2 ** options.depth}"
        )
    # === Inputs ===
    images = keras.Input((size, size, 3), name="image")
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

    `serving_default` takes a uint8 batch (N, H, W, 3); `serve_bytes` takes
    encoded PNG/JPEG strings, one image each.
    """
    size = cfg.data.image_size

    def segment(images):
        height, width = tf.shape(images)[1], tf.shape(images)[2]
        resized = tf.image.resize(tf.cast(images, tf.float32) / 255.0, (size, size),
                                  antialias=True)
        logits = model(resized, training=False)
        # Upsample the scores, not the labels, so edges follow the probabilities.
        logits = tf.image.resize(logits, (height, width), method="bilinear")
        probabilities = tf.nn.softmax(logits, axis=-1)
        return {"classes": tf.argmax(logits, axis=-1, output_type=tf.int32),
                "confidence": tf.reduce_max(probabilities, axis=-1)}

    def segment_bytes(encoded):
        image = tf.io.decode_image(encoded[0], channels=3, expand_animations=False)
        return segment(image[None])

    return {
        "serving_default": (segment, [tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")]),
        "serve_bytes": (segment_bytes, [tf.TensorSpec([1], tf.string, name="image_bytes")]),
    }


def compile_args(cfg, info):
    from common.training import sparse_categorical_loss

    return {
        "loss": sparse_categorical_loss(info["num_classes"], cfg.train.label_smoothing),
        "metrics": [keras.metrics.SparseCategoricalAccuracy(name="pixel_accuracy")],
    }
