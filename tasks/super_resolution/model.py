"""ESRGAN generator (RRDB trunk, x4 nearest-upsampling head) and its critic.

Wang et al., "ESRGAN: Enhanced Super-Resolution Generative Adversarial
Networks" (2018). The generator has no batch normalisation, scales every
residual branch by `residual_scale` (0.2), and upsamples by nearest x2 +
conv twice: all standard layers, so it converts to LiteRT INT8 as it is.

Images are float32 RGB in [0, 1]; the generator's raw output is not clipped
(clipping happens on the host and in the serving function) so training
gradients are never cut off.
"""

import keras
import tensorflow as tf

from common import serving
from common.errors import UserError
from tasks.super_resolution import tiling

SKIP_MODES = ("none", "bilinear", "nearest")


# --- Blocks -----------------------------------------------------------------

@keras.saving.register_keras_serializable(package="super_resolution")
class InterpolationUpsample(keras.layers.Layer):
    """Resize by an integer factor; works on images whose size is unknown.

    `keras.layers.UpSampling2D(interpolation="bilinear")` needs the spatial
    size when the graph is traced, so the any-size SavedModel could not use
    it. With a static size this is `keras.ops.image.resize` (any backend);
    with an unknown size (TensorFlow only) `tf.image.resize`. Both become
    LiteRT's RESIZE_BILINEAR / RESIZE_NEAREST_NEIGHBOR.
    """

    # Interpolated values stay inside the input's range and LiteRT's int8
    # resizes keep the input's scale: QAT gives the output no range of its
    # own (one would cost a requantize op).
    quantization_pass_through = True

    def __init__(self, scale=4, interpolation="bilinear", **kwargs):
        super().__init__(**kwargs)
        self.scale = scale
        self.interpolation = interpolation

    def call(self, inputs):
        height, width = inputs.shape[1], inputs.shape[2]
        if height is not None and width is not None:
            return keras.ops.image.resize(
                inputs, (height * self.scale, width * self.scale),
                interpolation=self.interpolation)
        size = tf.shape(inputs)[1:3] * self.scale
        method = "nearest" if self.interpolation == "nearest" else self.interpolation
        return tf.cast(tf.image.resize(inputs, size, method=method), inputs.dtype)

    def compute_output_shape(self, input_shape):
        def scaled(length):
            return None if length is None else length * self.scale
        return (input_shape[0], scaled(input_shape[1]), scaled(input_shape[2]),
                input_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update({"scale": self.scale, "interpolation": self.interpolation})
        return config


def conv(filters, name, kernel_size=3, strides=1):
    return keras.layers.Conv2D(filters, kernel_size, strides=strides,
                               padding="same", name=name)


def leaky_relu(name):
    # ESRGAN uses negative slope 0.2 everywhere.
    return keras.layers.LeakyReLU(negative_slope=0.2, name=name)


def scaled_residual(shortcut, branch, scale, name):
    """`shortcut + scale * branch`: the residual scaling of ESRGAN."""
    branch = keras.layers.Rescaling(scale, name=f"{name}_scale")(branch)
    return keras.layers.Add(name=f"{name}_add")([shortcut, branch])


def residual_dense_block(x, features, growth, residual_scale, name):
    """Five 3x3 convs, each seeing all earlier outputs (dense connections)."""
    inputs = [x]
    for index in range(1, 5):
        joined = inputs[0] if len(inputs) == 1 else keras.layers.Concatenate(
            name=f"{name}_cat{index}")(inputs)
        y = conv(growth, f"{name}_conv{index}")(joined)
        inputs.append(leaky_relu(f"{name}_act{index}")(y))
    joined = keras.layers.Concatenate(name=f"{name}_cat5")(inputs)
    y = conv(features, f"{name}_conv5")(joined)
    return scaled_residual(x, y, residual_scale, name)


def rrdb(x, features, growth, residual_scale, name):
    """Residual-in-residual dense block: three dense blocks, one more residual."""
    y = x
    for index in range(1, 4):
        y = residual_dense_block(y, features, growth, residual_scale,
                                 f"{name}_rdb{index}")
    return scaled_residual(x, y, residual_scale, name)


# --- Generator --------------------------------------------------------------

def validate_model_config(model_cfg):
    if model_cfg.scale != 4:
        raise UserError(f"model.scale: only 4 is supported, got {model_cfg.scale}")
    if model_cfg.global_skip not in SKIP_MODES:
        raise UserError(
            f"model.global_skip: expected one of {', '.join(SKIP_MODES)}, "
            f"got {model_cfg.global_skip!r}")
    for key in ("num_blocks", "features", "growth", "tile_size"):
        if getattr(model_cfg, key) < 1:
            raise UserError(f"model.{key}: expected >= 1, got "
                            f"{getattr(model_cfg, key)}")
    if not 0 <= model_cfg.tile_overlap < model_cfg.tile_size // 2:
        raise UserError(
            f"model.tile_overlap: expected 0 <= overlap < tile_size / 2 "
            f"({model_cfg.tile_size // 2}), got {model_cfg.tile_overlap}")


def build_generator(model_cfg, input_size=None, name="rrdb_generator"):
    """RRDB generator, LR (H, W, 3) in [0, 1] -> HR (4H, 4W, 3).

    `input_size=None` keeps the spatial size open (fully convolutional);
    an int fixes a square tile (the edge model).
    """
    validate_model_config(model_cfg)
    features = model_cfg.features
    # === Layers and Functional model ===
    inputs = keras.Input((input_size, input_size, 3), name="low_resolution")
    shallow = conv(features, "conv_first")(inputs)
    x = shallow
    for index in range(model_cfg.num_blocks):
        x = rrdb(x, features, model_cfg.growth, model_cfg.residual_scale,
                 f"rrdb{index + 1}")
    x = conv(features, "conv_trunk")(x)
    x = keras.layers.Add(name="trunk_add")([shallow, x])
    for index in (1, 2):
        x = keras.layers.UpSampling2D(2, interpolation="nearest",
                                      name=f"upsample{index}")(x)
        x = conv(features, f"conv_up{index}")(x)
        x = leaky_relu(f"act_up{index}")(x)
    x = conv(features, "conv_hr")(x)
    x = leaky_relu("act_hr")(x)
    # The image itself stays float32 under mixed precision.
    outputs = keras.layers.Conv2D(3, 3, padding="same", name="conv_last",
                                  dtype="float32")(x)
    if model_cfg.global_skip != "none":
        upsampled = InterpolationUpsample(
            model_cfg.scale, interpolation=model_cfg.global_skip,
            name="input_upsample", dtype="float32")(inputs)
        outputs = keras.layers.Add(name="global_skip", dtype="float32")([upsampled, outputs])
    return keras.Model(inputs, outputs, name=name)


def custom_objects():
    return {"InterpolationUpsample": InterpolationUpsample}


def build_model(cfg, info=None):
    """The task contract: the generator with an open spatial size."""
    return build_generator(cfg.model)


def compile_args(cfg, info=None):
    """The PSNR-oriented stage (and QAT): L1, as in ESRGAN's first stage."""
    return {"loss": keras.losses.MeanAbsoluteError(name="l1")}


def edge_model(model, cfg):
    """The generator on fixed `tile_size` LR tiles, for LiteRT and QAT.

    LiteRT wants static shapes. A fresh flat Functional model with the same
    layer names and the weights copied (not `model` nested in a wrapper),
    so QAT's cloning sees every convolution.
    """
    edge = build_generator(cfg.model, input_size=cfg.model.tile_size,
                           name="rrdb_generator_tile")
    edge.set_weights(model.get_weights())
    return edge


# --- Discriminator ----------------------------------------------------------

def build_discriminator(model_cfg, hr_size, normalization="batch",
                        name="vgg_discriminator"):
    """VGG-style critic of ESRGAN ("VGG128"): conv pairs, the second strided.

    Five stages (features f, 2f, 4f, 8f, 8f) halve the size each time, then
    dense 100 -> 1 (a raw logit). `normalization="none"` for WGAN-GP, whose
    per-sample gradient penalty batch normalisation would break.
    """
    if normalization not in ("batch", "none"):
        raise UserError(f"discriminator normalization: expected batch or none, "
                        f"got {normalization!r}")
    if hr_size % 32:
        raise UserError(f"discriminator input: HR size must be a multiple of "
                        f"32, got {hr_size}")
    base = model_cfg.discriminator_features
    inputs = keras.Input((hr_size, hr_size, 3), name="high_resolution")
    x = inputs
    for stage, multiplier in enumerate((1, 2, 4, 8, 8)):
        filters = base * multiplier
        for strides in (1, 2):
            if stage == 0 and strides == 1:
                x = conv(filters, "conv0_0")(x)
            else:
                x = conv(filters, f"conv{stage}_{strides - 1}",
                         kernel_size=3 if strides == 1 else 4,
                         strides=strides)(x)
                if normalization == "batch":
                    x = keras.layers.BatchNormalization(
                        name=f"bn{stage}_{strides - 1}")(x)
            x = leaky_relu(f"act{stage}_{strides - 1}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(100, name="dense1")(x)
    x = leaky_relu("act_dense")(x)
    outputs = keras.layers.Dense(1, name="logit")(x)
    return keras.Model(inputs, outputs, name=name)


# --- Serving ----------------------------------------------------------------

def build_serving_model(model, cfg, info=None):
    """TF Serving endpoints; the generator runs on overlapping tiles of
    `model.tile_size` LR pixels (`tiling.upscale_tiled_graph`), one row of
    tiles at a time, so a large image costs time, not memory. The output
    matches the whole-image pass within a few uint8 levels along the seams
    (`tests/test_serving_limits.py`); an image within one tile is exactly
    the whole-image pass.

    - `serving_default`: a uint8 batch (N, H, W, 3) of any size -> uint8
      (N, 4H, 4W, 3); an empty batch (0, H, W, 3) answers (0, 4H, 4W, 3).
    - `serve_bytes`: one encoded image (PNG/JPEG/BMP/GIF; greyscale and RGBA
      become RGB) -> the x4 image as PNG bytes, and as uint8.

    Requests over `export.serving_max_batch` images or
    `export.serving_max_pixels` LR pixels per image (read from the header
    before decoding) are refused with InvalidArgumentError
    (`common/serving.py`).
    """
    limits = cfg.export
    scale = cfg.model.scale

    def to_uint8(sr):
        return tf.cast(tf.round(tf.clip_by_value(sr, 0.0, 1.0) * 255.0), tf.uint8)

    def upscale_one(image):
        low = tf.cast(image, tf.float32) / 255.0
        return tiling.upscale_tiled_graph(
            lambda tiles: model(tiles, training=False), low, cfg.model.tile_size,
            cfg.model.tile_overlap, scale=scale, finish=to_uint8,
            output_dtype=tf.uint8)

    def upscale(images):
        images = serving.check_shape(images, ("batch", "height", "width", 3), "images")
        images = serving.check_batch(images, limits.serving_max_batch)
        images = serving.check_pixels(images, limits.serving_max_pixels)
        shape = tf.shape(images)
        empty = tf.zeros([0, shape[1] * scale, shape[2] * scale, 3], tf.uint8)
        # map_fn cannot stack zero results of an open shape: answer empty.
        # One image at a time, so working memory is one row of tiles.
        high = tf.cond(
            shape[0] > 0,
            lambda: tf.map_fn(upscale_one, images, parallel_iterations=1,
                              fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8)),
            lambda: empty)
        return {"high_resolution": high}

    def upscale_bytes(encoded):
        encoded = serving.check_shape(encoded, (1,), "image_bytes")
        checked = serving.check_image_bytes(encoded[0], limits.serving_max_pixels)
        image = tf.io.decode_image(checked, channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        high = upscale_one(image)
        return {"high_resolution": high[None], "png": tf.io.encode_png(high)[None]}

    return {
        "serving_default": (upscale, [serving.request_spec(tf.uint8, "images")]),
        "serve_bytes": (upscale_bytes, [serving.request_spec(tf.string, "image_bytes")]),
    }
