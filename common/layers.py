"""Classic convolutional blocks that Keras and keras-hub do not provide.

Each block is a function that adds standard Keras layers to a Functional
graph rather than a custom layer: `keras.models.clone_model` (and so QAT)
does not look inside custom layers, and plain layers load with `safe_mode`
on and no custom objects. Attention, positions and transformer blocks come
from `keras.layers` / `keras_hub.layers`, not from here.
"""

import keras

ACTIVATIONS = {
    "relu": "relu",
    "relu6": "relu6",
    "swish": "swish",
    "silu": "swish",
    "sigmoid": "sigmoid",
    "leaky_relu": "leaky_relu",
    "gelu": "gelu",
    "linear": "linear",
}

# Keras's default (0.99) makes the moving statistics lag far behind the
# weights in short runs; 0.9 tracks them within a few dozen steps.
BATCH_NORM_MOMENTUM = 0.9

INITIALIZERS = {
    "glorot_uniform": "glorot_uniform",
    "xavier": "glorot_uniform",
    "glorot_normal": "glorot_normal",
    "he_normal": "he_normal",
    "he": "he_normal",
    "he_uniform": "he_uniform",
}


def get_activation(name):
    """A Keras activation by name: relu, relu6, swish/silu, sigmoid, ..."""
    if name not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {name!r}; expected one of {', '.join(sorted(ACTIVATIONS))}"
        )
    return keras.activations.get(ACTIVATIONS[name])


def get_initializer(name, seed=None):
    """A Keras initializer by name: xavier/glorot_*, he/he_*."""
    if name not in INITIALIZERS:
        raise ValueError(
            f"unknown initializer {name!r}; expected one of {', '.join(sorted(INITIALIZERS))}"
        )
    return keras.initializers.get({"class_name": INITIALIZERS[name],
                                   "config": {"seed": seed}})


def _activation_layer(activation, name):
    return keras.layers.Activation(ACTIVATIONS[activation] if activation in ACTIVATIONS
                                   else get_activation(activation), name=name)


def conv_bn_act(x, filters, kernel_size=3, strides=1, dilation_rate=1,
                activation="relu", initializer="he_normal", name=None):
    """Conv2D (no bias) -> BatchNormalization -> activation.

    The convolution has no bias because BatchNormalization's beta replaces it;
    the LiteRT converter folds the BN into the convolution.
    """
    get_activation(activation)
    x = keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same",
        dilation_rate=dilation_rate, use_bias=False,
        kernel_initializer=get_initializer(initializer),
        name=f"{name}_conv" if name else None,
    )(x)
    x = keras.layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM, name=f"{name}_bn" if name else None)(x)
    return _activation_layer(activation, f"{name}_act" if name else None)(x)


def separable_block(x, filters, kernel_size=3, strides=1, activation="relu",
                    initializer="he_normal", name=None):
    """Depthwise-separable convolution (MobileNet): depthwise -> BN -> act ->
    pointwise -> BN -> act."""
    get_activation(activation)
    x = keras.layers.DepthwiseConv2D(
        kernel_size, strides=strides, padding="same", use_bias=False,
        depthwise_initializer=get_initializer(initializer),
        name=f"{name}_depthwise" if name else None,
    )(x)
    x = keras.layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM, name=f"{name}_depthwise_bn" if name else None)(x)
    x = _activation_layer(activation, f"{name}_depthwise_act" if name else None)(x)
    return conv_bn_act(x, filters, 1, activation=activation, initializer=initializer,
                       name=f"{name}_pointwise" if name else None)


def dilated_block(x, filters, dilation_rates=(1, 2, 4), activation="relu",
                  initializer="he_normal", name=None):
    """Parallel dilated 3x3 convolutions, concatenated and fused by a 1x1
    convolution (the ASPP idea: a wide receptive field at full resolution)."""
    branches = [
        conv_bn_act(x, filters, 3, dilation_rate=rate, activation=activation,
                    initializer=initializer,
                    name=f"{name}_rate{rate}" if name else None)
        for rate in dilation_rates
    ]
    x = keras.layers.Concatenate(name=f"{name}_concat" if name else None)(branches)
    return conv_bn_act(x, filters, 1, activation=activation, initializer=initializer,
                       name=f"{name}_fuse" if name else None)


def residual_block(x, filters, strides=1, activation="relu", initializer="he_normal",
                   name=None):
    """The ResNet basic block: two 3x3 conv-BN, plus the input (projected by a
    1x1 conv-BN when the shape changes), then the activation."""
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = keras.layers.Conv2D(
            filters, 1, strides=strides, use_bias=False,
            kernel_initializer=get_initializer(initializer),
            name=f"{name}_project" if name else None,
        )(x)
        shortcut = keras.layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM, 
            name=f"{name}_project_bn" if name else None)(shortcut)
    x = conv_bn_act(x, filters, 3, strides=strides, activation=activation,
                    initializer=initializer, name=f"{name}_a" if name else None)
    x = keras.layers.Conv2D(
        filters, 3, padding="same", use_bias=False,
        kernel_initializer=get_initializer(initializer),
        name=f"{name}_b_conv" if name else None,
    )(x)
    x = keras.layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM, name=f"{name}_b_bn" if name else None)(x)
    x = keras.layers.Add(name=f"{name}_add" if name else None)([x, shortcut])
    return _activation_layer(activation, f"{name}_out" if name else None)(x)
