"""Losses of the two training stages: L1, and the VGG19 perceptual loss.

The perceptual loss compares VGG19 features before the activation of
`block5_conv4` (ESRGAN: features before activation keep more information
and give sharper edges than after the ReLU). The VGG19 weights are never
downloaded: the user passes the Keras applications "notop" file with
`--vgg-weights PATH`.
"""

import os

import keras
from keras import ops

from common.errors import UserError

VGG_LAYER = "block5_conv4"
# Caffe-style VGG input: BGR, 0..255, ImageNet mean subtracted.
_BGR_MEAN = (103.939, 116.779, 123.68)


def l1_loss(targets, generated):
    return ops.mean(ops.abs(targets - generated))


def load_vgg_features(weights_path, layer=VGG_LAYER):
    """A frozen VGG19 feature extractor up to `layer`, before its activation."""
    if not weights_path or not os.path.isfile(weights_path):
        raise UserError(
            f"--vgg-weights {weights_path!r}: file not found (expected the Keras "
            "VGG19 weights without the top, e.g. "
            "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5)")
    vgg = keras.applications.VGG19(include_top=False, weights=None,
                                   input_shape=(None, None, 3))
    try:
        vgg.load_weights(weights_path)
    except Exception as error:  # h5py and Keras raise several types
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"--vgg-weights {weights_path}: not VGG19 'notop' weights "
                        f"({first_line})") from None
    target = vgg.get_layer(layer)
    # Features before the ReLU: the Functional graph calls the layer again,
    # so changing its activation changes this extractor's output.
    target.activation = keras.activations.linear
    extractor = keras.Model(vgg.input, target.output, name="vgg19_features")
    extractor.trainable = False
    return extractor


class PerceptualLoss:
    """Mean absolute difference of VGG19 features of two [0, 1] RGB batches."""

    def __init__(self, weights_path, layer=VGG_LAYER):
        self.extractor = load_vgg_features(weights_path, layer)

    @staticmethod
    def preprocess(images):
        bgr = ops.flip(images * 255.0, axis=-1)
        return bgr - ops.convert_to_tensor(_BGR_MEAN, dtype=bgr.dtype)

    def __call__(self, targets, generated):
        real = self.extractor(self.preprocess(targets), training=False)
        fake = self.extractor(self.preprocess(generated), training=False)
        return ops.mean(ops.abs(ops.stop_gradient(real) - fake))
