"""Quantization-aware training for Keras 3 Functional models.

tensorflow-model-optimization refuses Keras 3 models, so we do what it does
underneath: clone the float model with fake-quant on every kernel and on the
activations LiteRT keeps, copy the weights, fine-tune briefly, and let the
LiteRT converter turn the FakeQuant ranges into int8 kernels.

- Conv2D / Conv1D kernels: per output channel, symmetric, narrow range.
- DepthwiseConv2D kernels: per tensor (the per-channel op only quantizes the
  last axis, which is the depth multiplier here, not the channel).
- Dense / EinsumDense kernels: per tensor (per-channel Dense fails conversion:
  "'tfl.transpose' op has mismatched quantized axes").
- Activations: per tensor, min/max kept as moving averages in non-trainable
  variables, after the inputs and after each layer whose output LiteRT keeps.
  Nothing goes between a convolution and the BatchNormalization or ReLU that
  the converter folds into it.
"""

import keras
from keras import ops

# Activation functions the converter fuses into the preceding conv / dense /
# add, so the fake-quant belongs after them, not before.
FUSABLE_ACTIVATIONS = ("relu", "relu6", "linear")
KERNEL_LAYERS = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Dense,
    keras.layers.EinsumDense,
    keras.layers.DepthwiseConv2D,
)
# Layers whose output needs no range of its own: they pass values through
# unchanged (LiteRT keeps the input's quantization parameters).
PASS_THROUGH_LAYERS = (
    keras.layers.InputLayer,
    keras.layers.Dropout,
    keras.layers.Reshape,
    keras.layers.Flatten,
    keras.layers.MaxPooling1D,
    keras.layers.MaxPooling2D,
    keras.layers.SpatialDropout2D,
    keras.layers.GaussianNoise,
    keras.layers.ZeroPadding2D,
    keras.layers.Cropping2D,
    keras.layers.UpSampling2D,
)
# A custom layer that only moves values around (slices, repeats) can say so
# with a class attribute `quantization_pass_through = True`.


def _symmetric_fake_quant(kernel, axis):
    """Symmetric narrow-range int8 fake quantization of a kernel."""
    if axis is None:
        limit = ops.max(ops.abs(kernel))
    else:
        reduce_axes = [a for a in range(len(kernel.shape)) if a != axis % len(kernel.shape)]
        limit = ops.max(ops.abs(kernel), axis=reduce_axes)
    limit = ops.maximum(limit, 1e-8)
    return keras.quantizers.fake_quant_with_min_max_vars(
        kernel, -limit, limit, num_bits=8, narrow_range=True, axis=axis
    )


@keras.saving.register_keras_serializable(package="common")
class QuantizedConv1D(keras.layers.Conv1D):
    @property
    def kernel(self):
        return _symmetric_fake_quant(super().kernel, axis=-1)


@keras.saving.register_keras_serializable(package="common")
class QuantizedConv2D(keras.layers.Conv2D):
    @property
    def kernel(self):
        return _symmetric_fake_quant(super().kernel, axis=-1)


@keras.saving.register_keras_serializable(package="common")
class QuantizedDense(keras.layers.Dense):
    @property
    def kernel(self):
        return _symmetric_fake_quant(super().kernel, axis=None)


@keras.saving.register_keras_serializable(package="common")
class QuantizedEinsumDense(keras.layers.EinsumDense):
    @property
    def kernel(self):
        return _symmetric_fake_quant(super().kernel, axis=None)


@keras.saving.register_keras_serializable(package="common")
class QuantizedDepthwiseConv2D(keras.layers.DepthwiseConv2D):
    def call(self, inputs):
        outputs = ops.depthwise_conv(
            inputs,
            _symmetric_fake_quant(self.kernel, axis=None),
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
            data_format=self.data_format,
        )
        if self.use_bias:
            outputs = ops.add(outputs, self.bias)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs


QUANTIZED_CLASSES = {
    keras.layers.Conv1D: QuantizedConv1D,
    keras.layers.Conv2D: QuantizedConv2D,
    keras.layers.Dense: QuantizedDense,
    keras.layers.EinsumDense: QuantizedEinsumDense,
    keras.layers.DepthwiseConv2D: QuantizedDepthwiseConv2D,
}


@keras.saving.register_keras_serializable(package="common")
class ActivationFakeQuant(keras.layers.Layer):
    """Per-tensor fake quantization with moving-average min/max.

    The first training batch sets the range; later batches move it with
    `momentum`, as TFMOT's `MovingAverageQuantizer` does.
    """

    def __init__(self, momentum=0.99, **kwargs):
        # Ranges and fake-quant run in float32 whatever the precision policy.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.momentum = momentum

    def build(self, input_shape):
        self.range_min = self.add_weight(
            name="range_min", shape=(), initializer="zeros", trainable=False
        )
        self.range_max = self.add_weight(
            name="range_max", shape=(), initializer="zeros", trainable=False
        )
        self.seen = self.add_weight(
            name="seen", shape=(), initializer="zeros", trainable=False
        )

    def call(self, inputs, training=None):
        values = ops.cast(inputs, "float32")
        if training:
            batch_min = ops.minimum(ops.min(values), 0.0)
            batch_max = ops.maximum(ops.max(values), 0.0)
            first = ops.equal(self.seen, 0.0)
            new_min = ops.where(
                first, batch_min,
                self.momentum * self.range_min + (1 - self.momentum) * batch_min,
            )
            new_max = ops.where(
                first, batch_max,
                self.momentum * self.range_max + (1 - self.momentum) * batch_max,
            )
            self.range_min.assign(new_min)
            self.range_max.assign(new_max)
            self.seen.assign(1.0)
            range_min, range_max = new_min, new_max
        else:
            range_min, range_max = self.range_min, self.range_max
        # An untrained range (0, 0) would zero everything; keep a tiny span.
        range_max = ops.maximum(range_max, range_min + 1e-6)
        outputs = keras.quantizers.fake_quant_with_min_max_vars(
            values, range_min, range_max, num_bits=8
        )
        return ops.cast(outputs, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"momentum": self.momentum})
        return config


def _activation_name(layer):
    activation = getattr(layer, "activation", None)
    if activation is None:
        return "linear"
    name = getattr(activation, "__name__", str(activation))
    return name


def _consumers(model):
    """Layer name -> names of the layers that read its output."""
    consumers = {layer.name: set() for layer in model.operations}
    for layer in model.operations:
        for node in layer._inbound_nodes:
            for tensor in node.input_tensors:
                producer = tensor._keras_history.operation
                consumers.setdefault(producer.name, set()).add(layer.name)
    return consumers


def _output_needs_range(layer, consumer_layers, is_model_output):
    """Whether LiteRT keeps this layer's output as a tensor of its own."""
    if is_model_output:
        return True
    if isinstance(layer, keras.layers.UpSampling2D) and layer.interpolation != "nearest":
        return True  # bilinear interpolation makes new values
    if isinstance(layer, PASS_THROUGH_LAYERS) or getattr(
            layer, "quantization_pass_through", False):
        return False
    produces_foldable = isinstance(
        layer, KERNEL_LAYERS + (keras.layers.BatchNormalization, keras.layers.Add)
    ) and _activation_name(layer) == "linear"
    if produces_foldable and consumer_layers:
        folds = all(
            isinstance(c, keras.layers.BatchNormalization)
            or (isinstance(c, keras.layers.Activation)
                and _activation_name(c) in FUSABLE_ACTIVATIONS)
            or isinstance(c, keras.layers.ReLU)
            for c in consumer_layers
        )
        # BN only folds into a convolution / dense, not into an add.
        if folds and isinstance(layer, keras.layers.Add):
            folds = not any(
                isinstance(c, keras.layers.BatchNormalization) for c in consumer_layers
            )
        if folds:
            return False
    return True


def quantize_model(model):
    """A fake-quant clone of a Functional `model`, with its weights copied."""
    from keras.src.models.functional import Functional

    if not isinstance(model, Functional):
        raise ValueError(
            f"quantize_model needs a Functional model; {getattr(model, 'name', model)!r} "
            f"is {type(model).__name__}"
        )
    consumers = _consumers(model)
    layers_by_name = {op.name: op for op in model.operations}
    output_names = {t._keras_history.operation.name for t in model.outputs}
    input_quantizers = {}

    def clone_function(layer):
        quantized_class = QUANTIZED_CLASSES.get(type(layer))
        if quantized_class is None:
            return layer.__class__.from_config(layer.get_config())
        return quantized_class.from_config(layer.get_config())

    def quantize_input(tensor):
        if "float" not in str(tensor.dtype):
            return tensor
        key = id(tensor)
        if key not in input_quantizers:
            name = tensor._keras_history.operation.name
            input_quantizers[key] = ActivationFakeQuant(name=f"{name}_fq")(tensor)
        return input_quantizers[key]

    def call_function(layer, *args, **kwargs):
        if not isinstance(layer, keras.layers.Layer):
            return layer(*args, **kwargs)  # a bare op node (ops.split, +): no weights
        args = keras.tree.map_structure(
            lambda t: quantize_input(t)
            if keras.KerasTensor is type(t) and isinstance(
                t._keras_history.operation, keras.layers.InputLayer)
            else t,
            args,
        )
        outputs = layer(*args, **kwargs)
        original = layers_by_name[layer.name]
        consumer_layers = [layers_by_name[n] for n in consumers.get(layer.name, ())]
        if not _output_needs_range(original, consumer_layers, layer.name in output_names):
            return outputs
        flat = keras.tree.flatten(outputs)
        names = [f"{layer.name}_fq"] if len(flat) == 1 else \
            [f"{layer.name}_fq{index}" for index in range(len(flat))]
        quantized_outputs = [
            ActivationFakeQuant(name=name)(t) if "float" in str(t.dtype) else t
            for name, t in zip(names, flat)
        ]
        return keras.tree.pack_sequence_as(outputs, quantized_outputs)

    quantized = keras.models.clone_model(
        model, clone_function=clone_function, call_function=call_function
    )
    for layer in quantized.layers:
        if layer.name in layers_by_name:
            layer.set_weights(layers_by_name[layer.name].get_weights())
    return quantized


def calibrate(quantized_model, dataset, steps=10):
    """Set activation ranges from a few batches before fine-tuning.

    Running the model with `training=True` updates only the range variables
    (no optimizer step); BatchNormalization statistics are restored afterwards.
    """
    batch_norm_state = [
        (v, v.numpy()) for layer in quantized_model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
        for v in layer.non_trainable_variables
    ]
    for inputs, _ in dataset.take(steps):
        quantized_model(inputs, training=True)
    for variable, value in batch_norm_state:
        variable.assign(value)


def custom_objects():
    """The classes QAT adds, for `custom_objects` when loading a QAT model."""
    objects = {cls.__name__: cls for cls in QUANTIZED_CLASSES.values()}
    objects["ActivationFakeQuant"] = ActivationFakeQuant
    return objects
