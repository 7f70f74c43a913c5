"""Quantization-aware training for Keras 3 Functional models.

tensorflow-model-optimization refuses Keras 3 models, so we do what it does
underneath: clone the float model with fake-quant on every kernel and on the
activations LiteRT keeps, copy the weights, fine-tune briefly, and let the
LiteRT converter turn the FakeQuant ranges into int8 kernels.

- Convolution kernels (Conv1D/2D/3D): per output channel, symmetric, narrow
  range.
- Depthwise, separable-depthwise and transposed-convolution kernels: per
  tensor (TensorFlow's per-channel fake-quant only quantizes the last axis,
  which is the depth multiplier / input channel there, not the output
  channel).
- Dense / EinsumDense / recurrent kernels: per tensor (per-channel Dense fails
  conversion: "'tfl.transpose' op has mismatched quantized axes").
- Activations: per tensor, min/max kept as moving averages in non-trainable
  variables, after the inputs and after each layer whose output LiteRT keeps.
  Nothing goes between a convolution and the BatchNormalization or ReLU that
  the converter folds into it.

Layers that keep their matmuls in sublayers (keras-hub TransformerEncoder /
TransformerDecoder, MultiHeadAttention, LSTM / GRU, Sequential blocks, custom
layers built from Dense / Conv sublayers) are wrapped in `QuantizedSublayers`:
after the wrapped layer is built, each sublayer's class is swapped in place for
a subclass whose kernels pass through fake-quant and whose outputs get ranges
(attention: the scaled query, key, value, the scores, the probabilities and
the context). The swap is redone whenever the wrapper is built, so a saved
QAT model reloads (safe_mode) with the same variables. Nested Functional
models (a keras-hub backbone inside a classifier) are quantized recursively.

Attention masking: Keras masks scores with -1e9, which no int8 scale can
span together with the real scores. Here masked scores take the bottom of the
scores' trained range instead (`ActivationFakeQuant.min_span` keeps that bottom
at least 10 below the top), so the float QAT model computes exactly what the
int8 model does and padded batches calibrate like any others.
"""

import os
import sys
import warnings

import keras
from keras import ops

from common import keras_fixes  # noqa: F401  (Keras saves and loads QAT models)

# Activation functions the converter fuses into the preceding conv / dense /
# add, so the fake-quant belongs after them, not before.
FUSABLE_ACTIVATIONS = ("relu", "relu6", "linear")
KERNEL_LAYERS = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
    keras.layers.Dense,
    keras.layers.EinsumDense,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
)
# Layers whose output needs no range of its own: LiteRT runs them with the
# input's quantization parameters (its int8 kernels of reshapes, pads,
# slices, pools and resizes require one scale for input and output, and
# their outputs never leave the input's range), so a range of their own
# would only add a requantize op.
PASS_THROUGH_LAYERS = (
    keras.layers.InputLayer,
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.Reshape,
    keras.layers.Flatten,
    keras.layers.Permute,
    keras.layers.RepeatVector,
    keras.layers.MaxPooling1D,
    keras.layers.MaxPooling2D,
    keras.layers.MaxPooling3D,
    keras.layers.AveragePooling1D,
    keras.layers.AveragePooling2D,
    keras.layers.AveragePooling3D,
    keras.layers.ZeroPadding1D,
    keras.layers.ZeroPadding2D,
    keras.layers.ZeroPadding3D,
    keras.layers.Cropping1D,
    keras.layers.Cropping2D,
    keras.layers.Cropping3D,
    keras.layers.UpSampling1D,
    keras.layers.UpSampling2D,  # nearest and bilinear: RESIZE_* keep the scale
    keras.layers.UpSampling3D,
    keras.layers.Resizing,
)
# A custom layer that only moves values around (slices, repeats, resizes)
# can say so with a class attribute `quantization_pass_through = True`.

# Layers whose int8 kernel needs one scale for all inputs and the output
# (CONCATENATION, MAXIMUM, MINIMUM). Their inputs, their output and every
# tensor tied to those through pass-through layers share one range
# (`SharedActivationFakeQuant`); separate ranges would make the converter
# insert a requantize op before each input whose range differs.
SAME_SCALE_LAYERS = (keras.layers.Concatenate, keras.layers.Maximum, keras.layers.Minimum)

# Attention scores: masked positions take the bottom of the range, so keep
# that bottom far enough below the top that exp(bottom - top) is ~0.
ATTENTION_SCORE_SPAN = 10.0  # exp(-10) = 4.5e-5 per masked key
# LiteRT's int8 SOFTMAX always outputs scale 1/256, zero point -128: training
# with the same range avoids a requantize after every softmax.
SOFTMAX_RANGE = (0.0, 255.0 / 256.0)
# The same for the other activations LiteRT computes with a fixed output scale.
FIXED_OUTPUT_RANGES = {"softmax": SOFTMAX_RANGE, "sigmoid": SOFTMAX_RANGE,
                       "tanh": (-1.0, 127.0 / 128.0)}


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
class ActivationFakeQuant(keras.layers.Layer):
    """Per-tensor fake quantization with moving-average min/max.

    The first training batch sets the range; later batches move it with
    `momentum`, as TFMOT's `MovingAverageQuantizer` does. With `min_span` the
    bottom of the range stays at least that far below the top; with
    `fixed_range` (min, max) the range is that and never moves.
    """

    def __init__(self, momentum=0.99, min_span=None, fixed_range=None, **kwargs):
        # Ranges and fake-quant run in float32 whatever the precision policy.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.momentum = momentum
        self.min_span = min_span
        self.fixed_range = tuple(fixed_range) if fixed_range is not None else None

    def build(self, input_shape=None):
        self.range_min = self.add_weight(
            name="range_min", shape=(), initializer="zeros", trainable=False
        )
        self.range_max = self.add_weight(
            name="range_max", shape=(), initializer="zeros", trainable=False
        )
        self.seen = self.add_weight(
            name="seen", shape=(), initializer="zeros", trainable=False
        )

    def effective_range(self, range_min=None, range_max=None):
        """The (min, max) the fake-quant uses: never empty, `min_span` wide."""
        if self.fixed_range is not None:
            return self.fixed_range
        range_min = self.range_min if range_min is None else range_min
        range_max = self.range_max if range_max is None else range_max
        if self.min_span is not None:
            range_min = ops.minimum(range_min, range_max - self.min_span)
        # An untrained range (0, 0) would zero everything; keep a tiny span.
        range_max = ops.maximum(range_max, range_min + 1e-6)
        return range_min, range_max

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
            range_min, range_max = self.effective_range(new_min, new_max)
        else:
            range_min, range_max = self.effective_range()
        outputs = keras.quantizers.fake_quant_with_min_max_vars(
            values, range_min, range_max, num_bits=8
        )
        return ops.cast(outputs, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"momentum": self.momentum, "min_span": self.min_span,
                       "fixed_range": self.fixed_range})
        return config


@keras.saving.register_keras_serializable(package="common")
class SharedActivationFakeQuant(ActivationFakeQuant):
    """One range for several tensors that LiteRT must give one int8 scale.

    Called once per tensor, each call with its own `slot`: every slot keeps
    its own moving-average min/max (so a narrow tensor does not pull a wide
    one's range in), and every call fake-quantizes with their union, which
    is the one scale the converter then gives all of them.
    """

    def __init__(self, slots=1, **kwargs):
        super().__init__(**kwargs)
        self.slots = int(slots)

    def build(self, input_shape=None):
        shape = (self.slots,)
        self.range_min = self.add_weight(name="range_min", shape=shape,
                                         initializer="zeros", trainable=False)
        self.range_max = self.add_weight(name="range_max", shape=shape,
                                         initializer="zeros", trainable=False)
        self.seen = self.add_weight(name="seen", shape=shape, initializer="zeros",
                                    trainable=False)

    def effective_range(self, range_min=None, range_max=None):
        range_min = self.range_min if range_min is None else range_min
        range_max = self.range_max if range_max is None else range_max
        return super().effective_range(ops.min(range_min), ops.max(range_max))

    def call(self, inputs, slot=0, training=None):
        values = ops.cast(inputs, "float32")
        range_min, range_max = self.range_min, self.range_max
        if training:
            mine = ops.equal(ops.arange(self.slots), slot)
            batch_min = ops.minimum(ops.min(values), 0.0)
            batch_max = ops.maximum(ops.max(values), 0.0)
            first = ops.equal(self.seen, 0.0)
            moved_min = self.momentum * range_min + (1 - self.momentum) * batch_min
            moved_max = self.momentum * range_max + (1 - self.momentum) * batch_max
            range_min = ops.where(mine, ops.where(first, batch_min, moved_min), range_min)
            range_max = ops.where(mine, ops.where(first, batch_max, moved_max), range_max)
            self.range_min.assign(range_min)
            self.range_max.assign(range_max)
            self.seen.assign(ops.where(mine, 1.0, self.seen))
        low, high = self.effective_range(range_min, range_max)
        outputs = keras.quantizers.fake_quant_with_min_max_vars(values, low, high, num_bits=8)
        return ops.cast(outputs, inputs.dtype)

    def get_config(self):
        config = super().get_config()
        config["slots"] = self.slots
        return config


# --- kernel fake-quant -------------------------------------------------------
#
# Which kernel attributes each layer type has, and the per-channel axis of
# each (None: per tensor). Subclasses inherit their base's entry.
KERNEL_ATTRIBUTES = {
    keras.layers.Conv1D: {"kernel": None},  # per-channel: "mismatched quantized axes"
    keras.layers.Conv2D: {"kernel": -1},
    keras.layers.Conv3D: {"kernel": -1},
    keras.layers.Conv1DTranspose: {"kernel": None},
    keras.layers.Conv2DTranspose: {"kernel": None},
    keras.layers.Conv3DTranspose: {"kernel": None},
    keras.layers.DepthwiseConv1D: {"kernel": None},
    keras.layers.DepthwiseConv2D: {"kernel": None},
    keras.layers.SeparableConv1D: {"depthwise_kernel": None, "pointwise_kernel": None},
    keras.layers.SeparableConv2D: {"depthwise_kernel": None, "pointwise_kernel": -1},
    keras.layers.Dense: {"kernel": None},
    keras.layers.EinsumDense: {"kernel": None},
    keras.layers.LSTMCell: {"kernel": None, "recurrent_kernel": None},
    keras.layers.GRUCell: {"kernel": None, "recurrent_kernel": None},
    keras.layers.SimpleRNNCell: {"kernel": None, "recurrent_kernel": None},
}


def kernel_attributes(layer_class):
    """{attribute: axis} of the kernels of `layer_class`, or None."""
    for klass in layer_class.__mro__:
        if klass in KERNEL_ATTRIBUTES:
            return KERNEL_ATTRIBUTES[klass]
    return None


def _fake_quant_property(base_class, name, axis):
    """A property serving attribute `name` through kernel fake-quant.

    Dense / EinsumDense / Conv define `kernel` as a property of their own
    (over `_kernel`); the others store the variable as a plain attribute,
    which this property keeps in the instance dictionary.
    """
    inherited = getattr(base_class, name, None)
    if isinstance(inherited, property):
        def get(self):
            return _symmetric_fake_quant(inherited.fget(self), axis)
        return property(get, inherited.fset)

    def get(self):
        if name not in self.__dict__:  # not built yet: as a plain attribute would
            raise AttributeError(name)
        return _symmetric_fake_quant(self.__dict__[name], axis)

    def set(self, value):
        self.__dict__[name] = value
    return property(get, set)


def _quantizers(layer):
    """The activation quantizers a swap attached to `layer` ({} if none).

    Held outside Keras tracking: they belong to the `QuantizedSublayers`
    wrapper (which saves them) or to nobody for top-level layers.
    """
    return layer.__dict__.get("_activation_quantizers", {})


class _DenseOutputs:
    """Dense / EinsumDense with optional output (and pre-activation) ranges."""

    def call(self, inputs, training=None):
        quantizers = _quantizers(self)
        if not quantizers:
            return super().call(inputs, training=training)
        if isinstance(self, keras.layers.EinsumDense):
            x = ops.einsum(self.equation, inputs, self.kernel)
        else:
            x = ops.matmul(inputs, self.kernel)
        if self.bias is not None:
            x = ops.add(x, self.bias)
        if "pre_activation" in quantizers:
            x = quantizers["pre_activation"](x)
        if self.activation is not None:
            x = self.activation(x)
        return quantizers["output"](x)


class _LayerNormOutputs:
    """LayerNormalization with ranges on its input (a residual sum) and output."""

    def call(self, inputs, *args, **kwargs):
        quantizers = _quantizers(self)
        if "input" in quantizers:
            inputs = quantizers["input"](inputs)
        outputs = super().call(inputs, *args, **kwargs)
        return quantizers["output"](outputs) if "output" in quantizers else outputs


class _CellOutputs:
    """An RNN cell with ranges on its output and each new state."""

    def call(self, inputs, states, training=None):
        outputs, new_states = super().call(inputs, states, training=training)
        quantizers = _quantizers(self)
        if not quantizers:
            return outputs, new_states
        quantized_outputs = quantizers["output"](outputs)
        flat = keras.tree.flatten(new_states)
        quantized_states = [
            quantized_outputs if state is outputs else quantizers[f"state{index}"](state)
            for index, state in enumerate(flat)
        ]
        return quantized_outputs, keras.tree.pack_sequence_as(new_states, quantized_states)


class _LSTMCellOutputs(_CellOutputs):
    """LSTMCell with ranges on its gates and carry products as well, so
    LiteRT keeps the cell's elementwise math in int8 too."""

    def _compute_carry_and_output_fused(self, z, c_tm1):
        quantizers = _quantizers(self)
        if "input_gate" not in quantizers:
            return super()._compute_carry_and_output_fused(z, c_tm1)
        input_gate = quantizers["input_gate"](self.recurrent_activation(z[0]))
        forget_gate = quantizers["forget_gate"](self.recurrent_activation(z[1]))
        candidate = quantizers["candidate"](self.activation(z[2]))
        output_gate = quantizers["output_gate"](self.recurrent_activation(z[3]))
        carry = (quantizers["kept_carry"](forget_gate * c_tm1)
                 + quantizers["added_carry"](input_gate * candidate))
        return carry, output_gate


class _QuantizedAttention:
    """MultiHeadAttention with ranges on every tensor of the dot product.

    Always the explicit path (the fused `dot_product_attention` leaves no
    place for ranges). Masked scores take the bottom of the scores' range
    instead of -1e9: the int8 model can represent it, so training, padded
    calibration and LiteRT agree.
    """

    def _compute_attention(self, query, key, value, attention_mask=None,
                           training=None, return_attention_scores=False,
                           use_causal_mask=False):
        quantizers = _quantizers(self)
        if use_causal_mask:
            causal_mask = self._compute_causal_mask(query, value)
            attention_mask = causal_mask if attention_mask is None else ops.logical_and(
                ops.cast(attention_mask, "bool"), causal_mask)
        query = quantizers["query"](
            ops.multiply(query, ops.cast(self._inverse_sqrt_key_dim, query.dtype)))
        key = quantizers["key"](key)
        value = quantizers["value"](value)
        scores = quantizers["scores"](ops.einsum(self._dot_product_equation, key, query))
        if attention_mask is not None:
            mask_expansion_axis = -len(self._attention_axes) * 2 - 1
            for _ in range(len(scores.shape) - len(attention_mask.shape)):
                attention_mask = ops.expand_dims(attention_mask, axis=mask_expansion_axis)
            bottom, _ = quantizers["scores"].effective_range()
            scores = ops.where(ops.cast(attention_mask, "bool"), scores,
                               ops.cast(bottom, scores.dtype))
        probabilities = quantizers["probabilities"](self._softmax(scores))
        dropped = self._dropout_layer(probabilities, training=training) \
            if self._dropout > 0.0 else probabilities
        context = quantizers["context"](
            ops.einsum(self._combine_equation, dropped, value))
        return context, probabilities


_SWAPPED_CLASSES = {}


def _swapped_class(layer_class):
    """`layer_class` with kernel fake-quant (and its activation hooks).

    Made on demand for any subclass (keras-hub's CachedMultiHeadAttention,
    a custom Dense): these classes are never serialized, the wrapper redoes
    the swap on load.
    """
    if layer_class in _SWAPPED_CLASSES:
        return _SWAPPED_CLASSES[layer_class]
    bases = [layer_class]
    if issubclass(layer_class, (keras.layers.Dense, keras.layers.EinsumDense)):
        bases.insert(0, _DenseOutputs)
    elif issubclass(layer_class, keras.layers.LayerNormalization):
        bases.insert(0, _LayerNormOutputs)
    elif issubclass(layer_class, keras.layers.MultiHeadAttention):
        bases.insert(0, _QuantizedAttention)
    elif issubclass(layer_class, keras.layers.LSTMCell):
        bases.insert(0, _LSTMCellOutputs)
    elif issubclass(layer_class, (keras.layers.GRUCell, keras.layers.SimpleRNNCell)):
        bases.insert(0, _CellOutputs)
    attributes = {
        name: _fake_quant_property(layer_class, name, axis)
        for name, axis in (kernel_attributes(layer_class) or {}).items()
    }
    attributes["_fake_quant_kernels"] = tuple(attributes)
    swapped = type(f"Quantized{layer_class.__name__}", tuple(bases), attributes)
    _SWAPPED_CLASSES[layer_class] = swapped
    return swapped


def _registered(layer_class):
    """A serializable quantized class for a top-level layer of `layer_class`."""
    quantized = _swapped_class(layer_class)
    return keras.saving.register_keras_serializable(package="common")(quantized)


# Top-level layers of these exact types are cloned straight into their
# quantized class (the Functional graph puts activation ranges around them).
QUANTIZED_CLASSES = {klass: _registered(klass) for klass in KERNEL_LAYERS}
QuantizedConv1D = QUANTIZED_CLASSES[keras.layers.Conv1D]
QuantizedConv2D = QUANTIZED_CLASSES[keras.layers.Conv2D]
QuantizedConv3D = QUANTIZED_CLASSES[keras.layers.Conv3D]
QuantizedDense = QUANTIZED_CLASSES[keras.layers.Dense]
QuantizedEinsumDense = QUANTIZED_CLASSES[keras.layers.EinsumDense]
QuantizedDepthwiseConv2D = QUANTIZED_CLASSES[keras.layers.DepthwiseConv2D]


def is_fake_quantized(layer):
    """Whether `layer`'s kernels (if any) run under fake-quant."""
    return bool(getattr(type(layer), "_fake_quant_kernels", ()))


def _layer_tree(layer):
    """`layer` and its sublayers, parents first, each once."""
    return layer._flatten_layers(include_self=True, recursive=True)


def _has_compute(layer):
    return any(kernel_attributes(type(sub)) or isinstance(sub, keras.layers.MultiHeadAttention)
               for sub in _layer_tree(layer))


def _quantize_layer_tree(root):
    """Swap the classes of `root`'s sublayers in place; returns the
    activation quantizers made for them, in a repeatable order."""
    made = []

    def quantizer(layer, role, **kwargs):
        fake_quant = ActivationFakeQuant(name=f"{layer.name}_{role}_fq", **kwargs)
        fake_quant.build()
        made.append(fake_quant)
        return fake_quant

    # q/k/v projections feed the attention's own ranges; the root's output
    # range is the enclosing graph's business.
    no_output_range = {id(root)}
    for layer in _layer_tree(root):
        if isinstance(layer, ActivationFakeQuant):
            continue
        layer_class = type(layer)
        quantizers = {}
        if isinstance(layer, keras.layers.MultiHeadAttention):
            for role in ("query", "key", "value", "context"):
                quantizers[role] = quantizer(layer, role)
            quantizers["scores"] = quantizer(layer, "scores", min_span=ATTENTION_SCORE_SPAN)
            quantizers["probabilities"] = quantizer(layer, "probabilities",
                                                    fixed_range=SOFTMAX_RANGE)
            no_output_range.update(
                id(getattr(layer, name, None))
                for name in ("_query_dense", "_key_dense", "_value_dense", "_gate_dense"))
        elif isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense)):
            if id(layer) not in no_output_range:
                if _activation_name(layer) not in FUSABLE_ACTIVATIONS:
                    quantizers["pre_activation"] = quantizer(layer, "pre_activation")
                quantizers["output"] = quantizer(
                    layer, "output", fixed_range=_fixed_output_range(layer))
        elif isinstance(layer, keras.layers.LayerNormalization):
            quantizers["input"] = quantizer(layer, "input")
            quantizers["output"] = quantizer(layer, "output")
        elif isinstance(layer, (keras.layers.LSTMCell, keras.layers.GRUCell,
                                keras.layers.SimpleRNNCell)):
            quantizers["output"] = quantizer(layer, "output")
            for index in range(len(keras.tree.flatten(layer.state_size))):
                quantizers[f"state{index}"] = quantizer(layer, f"state{index}")
            if isinstance(layer, keras.layers.LSTMCell) and layer.implementation != 1:
                gate_range = FIXED_OUTPUT_RANGES.get(
                    getattr(layer.recurrent_activation, "__name__", ""))
                candidate_range = FIXED_OUTPUT_RANGES.get(
                    getattr(layer.activation, "__name__", ""))
                for role in ("input_gate", "forget_gate", "output_gate"):
                    quantizers[role] = quantizer(layer, role, fixed_range=gate_range)
                quantizers["candidate"] = quantizer(layer, "candidate",
                                                    fixed_range=candidate_range)
                quantizers["kept_carry"] = quantizer(layer, "kept_carry")
                quantizers["added_carry"] = quantizer(layer, "added_carry")
        elif not kernel_attributes(layer_class):
            continue
        if layer_class not in _SWAPPED_CLASSES.values():
            layer.__class__ = _swapped_class(layer_class)
        # Not an attribute Keras tracks: the wrapper owns and saves them.
        layer.__dict__["_activation_quantizers"] = quantizers
    return made


def _output_is_quantized(layer):
    """Whether the last tensor `layer` computes already gets a range inside."""
    if isinstance(layer, (keras.layers.MultiHeadAttention, keras.layers.LayerNormalization,
                          keras.layers.RNN)):
        return True
    if type(layer).__name__ in ("TransformerEncoder", "TransformerDecoder"):
        return not getattr(layer, "normalize_first", False)
    return False


@keras.saving.register_keras_serializable(package="common")
class QuantizedSublayers(keras.layers.Layer):
    """Runs `layer` with fake-quant swapped into its sublayers.

    The swap happens when the wrapper is built (cloning or loading), after
    `layer` is built, so the saved config is the plain layer's and the saved
    variables are the layer's plus the activation ranges.
    """

    def __init__(self, layer, **kwargs):
        if isinstance(layer, dict):
            layer = keras.saving.deserialize_keras_object(layer)
        kwargs.setdefault("name", layer.name)
        kwargs.setdefault("dtype", layer.dtype_policy)
        super().__init__(**kwargs)
        self.layer = layer
        self.output_is_quantized = _output_is_quantized(layer)

    def _quantize(self):
        self.quantizers = _quantize_layer_tree(self.layer)

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
        self._quantize()

    def build_from_config(self, config):
        if not self.layer.built:
            self.layer.build_from_config(config)
        self._quantize()
        self.built = True

    def get_build_config(self):
        return self.layer.get_build_config()

    def call(self, *args, training=None, **kwargs):
        if self.layer._call_has_training_arg:
            kwargs["training"] = training
        return self.layer(*args, **kwargs)

    def compute_output_spec(self, *args, **kwargs):
        kwargs.pop("training", None)
        return self.layer.compute_output_spec(*args, **kwargs)

    def get_config(self):
        config = super().get_config()
        config["layer"] = keras.saving.serialize_keras_object(self.layer)
        return config


def _activation_name(layer):
    activation = getattr(layer, "activation", None)
    if activation is None:
        return "linear"
    name = getattr(activation, "__name__", str(activation))
    return name


def _fixed_output_range(layer):
    """The output range LiteRT fixes for `layer`'s activation, or None."""
    if isinstance(layer, keras.layers.Softmax):
        return SOFTMAX_RANGE
    return FIXED_OUTPUT_RANGES.get(_activation_name(layer))


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
    if _is_pass_through(layer):
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


def _is_pass_through(layer):
    return isinstance(layer, PASS_THROUGH_LAYERS) or bool(
        getattr(layer, "quantization_pass_through", False))


def _model_nodes(model):
    """Operation name -> the nodes of `model`'s own graph that call it (a
    layer reused from another graph also has nodes outside `model`)."""
    nodes = {}
    for depth_nodes in model._nodes_by_depth.values():
        for node in depth_nodes:
            nodes.setdefault(node.operation.name, []).append(node)
    return nodes


def _tensor_key(tensor):
    """(producing operation, output index) of a Keras tensor."""
    history = tensor._keras_history
    return (history.operation.name, history.tensor_index)


def _float_tensors(structure):
    return [t for t in keras.tree.flatten(structure)
            if isinstance(t, keras.KerasTensor) and "float" in str(t.dtype)]


def _same_scale_groups(model, model_nodes):
    """Tensor key -> (group root, group name), for tensors LiteRT must give
    one scale.

    A concatenation (or maximum / minimum) ties its inputs and output
    together; a pass-through layer ties its output to its input. A group is
    named after its first concatenation. Tensors in no tie are left out.
    """
    parent = {}

    def find(key):
        while parent.setdefault(key, key) != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    merges = []
    for operation in model.operations:
        nodes = model_nodes.get(operation.name, [])
        if len(nodes) != 1 or isinstance(operation, keras.layers.InputLayer):
            continue  # a layer called twice keeps ranges of its own
        merging = isinstance(operation, SAME_SCALE_LAYERS)
        if not (merging or (isinstance(operation, keras.layers.Layer)
                            and _is_pass_through(operation))):
            continue
        tensors = _float_tensors((nodes[0].output_tensors, nodes[0].input_tensors))
        for tensor in tensors[1:]:
            parent[find(_tensor_key(tensor))] = find(_tensor_key(tensors[0]))
        if merging and tensors:
            merges.append((operation.name, _tensor_key(tensors[0])))
    names = {}
    for name, key in merges:
        names.setdefault(find(key), name)
    return {key: (find(key), names.get(find(key), key[0])) for key in parent}


def _ranges_set_inside(layer):
    """Whether the clone of `layer` puts the ranges on its outputs itself."""
    if _is_functional(layer):
        return True
    if type(layer) in QUANTIZED_CLASSES or not isinstance(layer, keras.layers.Layer):
        return False
    return _has_compute(layer) and _output_is_quantized(layer)


def _range_plan(model, nested):
    """Which output tensors of `model`'s layers get an activation range of
    the enclosing graph, and which of them share one.

    Returns (ranged, shared): `ranged` {layer name: fixed range or None} for
    layers whose float outputs get a range; `shared` {tensor key: (group
    name, slot, slot count)} for ranged tensors that LiteRT must give one
    scale together with another ranged tensor.
    """
    consumers = _consumers(model)
    layers_by_name = {op.name: op for op in model.operations}
    output_names = {t._keras_history.operation.name for t in model.outputs}
    model_nodes = _model_nodes(model)
    ranged, ranged_keys = {}, []
    for operation in model.operations:
        if not isinstance(operation, keras.layers.Layer):
            continue  # a bare op node (ops.split, +): no range
        if isinstance(operation, keras.layers.InputLayer):
            if not nested:  # a nested model's inputs got ranges outside it
                ranged[operation.name] = None
                ranged_keys += [(operation.name, 0)] if _float_tensors(operation.output) \
                    else []
            continue
        if _ranges_set_inside(operation):
            continue
        consumer_layers = [layers_by_name[n] for n in consumers.get(operation.name, ())
                           if n in layers_by_name]
        if not _output_needs_range(operation, consumer_layers,
                                   operation.name in output_names):
            continue
        ranged[operation.name] = _fixed_output_range(operation)
        nodes = model_nodes.get(operation.name, [])
        if ranged[operation.name] is None and len(nodes) == 1:
            ranged_keys += [_tensor_key(t) for t in _float_tensors(nodes[0].output_tensors)]
    groups = _same_scale_groups(model, model_nodes)
    members = {}
    for key in ranged_keys:
        if key in groups:
            members.setdefault(groups[key], []).append(key)
    shared = {}
    for (_, name), keys in members.items():
        if len(keys) > 1:
            for slot, key in enumerate(keys):
                shared[key] = (name, slot, len(keys))
    return ranged, shared


def _is_functional(layer):
    from keras.src.models.functional import Functional

    return isinstance(layer, Functional)


def _wrap(layer):
    """`QuantizedSublayers` around a copy of `layer`, weights copied."""
    copy = layer.__class__.from_config(layer.get_config())
    wrapper = QuantizedSublayers(copy)
    build_config = layer.get_build_config()
    if build_config is None:
        raise ValueError(f"layer {layer.name!r} was never built; call the model once first")
    wrapper.build_from_config(build_config)
    copy.set_weights(layer.get_weights())
    return wrapper


def range_name(layer_name, call=0, output=None):
    """The name of the activation range `quantize_model` puts after output
    `output` (None: the only one) of call `call` of layer `layer_name`:
    `<layer>_fq` / `<layer>_fq<output>` for the first call, and
    `<layer>_call<call>_fq...` for the later calls of a layer the graph calls
    more than once (each call's output is a tensor of its own, with its own
    range and its own unique name)."""
    call_part = f"_call{call}" if call else ""
    output_part = "" if output is None else str(output)
    return f"{layer_name}{call_part}_fq{output_part}"


def quantize_model(model, _nested=False):
    """A fake-quant clone of a Functional `model`, with its weights copied.

    Compute layers QAT cannot reach are named in a warning; see
    `common.quant_report.fake_quant_coverage` for the numbers.
    """
    if not _is_functional(model):
        raise ValueError(
            f"quantize_model needs a Functional model; {getattr(model, 'name', model)!r} "
            f"is {type(model).__name__}"
        )
    layers_by_name = {op.name: op for op in model.operations}
    ranged, shared = _range_plan(model, _nested)
    input_quantizers = {}
    shared_quantizers = {}
    # Clones whose weights are copied already (wrappers, nested models).
    prepared = set()

    def clone_function(layer):
        quantized_class = QUANTIZED_CLASSES.get(type(layer))
        if quantized_class is not None:
            return quantized_class.from_config(layer.get_config())
        if _is_functional(layer):
            clone = quantize_model(layer, _nested=True)
        elif isinstance(layer, keras.layers.Layer) and _has_compute(layer):
            clone = _wrap(layer)
        else:
            return layer.__class__.from_config(layer.get_config())
        prepared.add(id(clone))
        return clone

    def fake_quant(tensor, key, name, fixed_range=None):
        if key in shared:  # one range with the tensors LiteRT gives the same scale
            group, slot, slots = shared[key]
            if group not in shared_quantizers:
                shared_quantizers[group] = SharedActivationFakeQuant(
                    slots=slots, name=f"{group}_shared_fq")
            return shared_quantizers[group](tensor, slot=slot)
        return ActivationFakeQuant(name=name, fixed_range=fixed_range)(tensor)

    def quantize_input(tensor):
        name = tensor._keras_history.operation.name
        if "float" not in str(tensor.dtype) or name not in ranged:
            return tensor
        if id(tensor) not in input_quantizers:
            input_quantizers[id(tensor)] = fake_quant(tensor, (name, 0), f"{name}_fq")
        return input_quantizers[id(tensor)]

    calls_made = {}

    def call_function(layer, *args, **kwargs):
        if not isinstance(layer, keras.layers.Layer):
            return layer(*args, **kwargs)  # a bare op node (ops.split, +): no weights
        call = calls_made.get(layer.name, 0)
        calls_made[layer.name] = call + 1
        args = keras.tree.map_structure(
            lambda t: quantize_input(t)
            if keras.KerasTensor is type(t) and isinstance(
                t._keras_history.operation, keras.layers.InputLayer)
            else t,
            args,
        )
        outputs = layer(*args, **kwargs)
        if layer.name not in ranged:
            return outputs  # ranges set inside, or none needed
        flat = keras.tree.flatten(outputs)
        names = [range_name(layer.name, call, None if len(flat) == 1 else index)
                 for index in range(len(flat))]
        quantized_outputs = [
            fake_quant(t, (layer.name, index), name, ranged[layer.name])
            if "float" in str(t.dtype) else t
            for index, (name, t) in enumerate(zip(names, flat))
        ]
        return keras.tree.pack_sequence_as(outputs, quantized_outputs)

    quantized = keras.models.clone_model(
        model, clone_function=clone_function, call_function=call_function
    )
    for layer in quantized.layers:
        if layer.name in layers_by_name and id(layer) not in prepared:
            layer.set_weights(layers_by_name[layer.name].get_weights())
    if not _nested:
        _warn_about_uncovered(model, quantized)
    return quantized


def _warn_about_uncovered(model, quantized):
    from common import quant_report

    coverage = quant_report.fake_quant_coverage(model, quantized)
    if coverage["uncovered_layers"]:
        message = (
            f"QAT could not reach {len(coverage['uncovered_layers'])} compute "
            f"layer(s) of {model.name!r} ({100 * (1 - coverage['mac_share']):.1f}% of "
            f"multiply-accumulates); they stay float during QAT and get "
            f"post-training ranges: {', '.join(coverage['uncovered_layers'])}")
        warnings.warn(message, stacklevel=3)
        print(f"warning: {message}", file=sys.stderr)


def _all_layers(model):
    """Every layer of `model`, nested ones included, each once."""
    return model._flatten_layers(include_self=False, recursive=True)


def calibrate(quantized_model, dataset, steps=10):
    """Set activation ranges from a few batches before fine-tuning.

    Running the model with `training=True` updates only the range variables
    (no optimizer step); BatchNormalization statistics are restored afterwards.
    """
    batch_norm_state = [
        (v, v.numpy()) for layer in _all_layers(quantized_model)
        if isinstance(layer, keras.layers.BatchNormalization)
        for v in layer.non_trainable_variables
    ]
    for inputs, _ in dataset.take(steps):
        quantized_model(inputs, training=True)
    for variable, value in batch_norm_state:
        variable.assign(value)


# --- fine-tuning that continues the float run ---------------------------------

def final_learning_rate(train_config, steps_per_epoch):
    """The learning rate the float run's schedule ended at."""
    from common import training

    epochs = training.epochs_for_budget(train_config, steps_per_epoch)
    passes, grouped = training.group_short_epochs(train_config, steps_per_epoch, epochs)
    epochs = passes * grouped
    schedule = training.make_schedule(train_config, steps_per_epoch, epochs=epochs)
    if callable(schedule):
        return float(schedule(max(1, steps_per_epoch * epochs) - 1))
    return float(schedule)


def freeze_batch_norm(quantized_model):
    """BatchNormalization layers keep the float run's statistics and scales.

    A frozen (non-trainable) Keras 3 BatchNormalization runs in inference
    mode: fine-tuning then sees the normalization the converter folds into
    the int8 kernels, not the statistics of each small batch.
    """
    for layer in _all_layers(quantized_model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def record_start_as_best(quantized_model, stage_dir, monitor, score):
    """Save the calibrated, not yet fine-tuned model as the best epoch so
    far (epoch 0), in the record `common.training`'s best checkpoint reads:
    a fine-tuned epoch is then kept only if it beats the start on `monitor`
    (`score(model)` gives its value). A record already there (a resumed
    fine-tune) is kept."""
    from common import training

    if training.best_record(stage_dir) is not None:
        return None
    value = float(score(quantized_model))
    training.save_best(quantized_model, stage_dir,
                       {"value": value, "epoch": 0, "monitor": monitor})
    return value


def custom_objects():
    """The classes QAT adds, for `custom_objects` when loading a QAT model."""
    objects = {cls.__name__: cls for cls in QUANTIZED_CLASSES.values()}
    objects["ActivationFakeQuant"] = ActivationFakeQuant
    objects["SharedActivationFakeQuant"] = SharedActivationFakeQuant
    objects["QuantizedSublayers"] = QuantizedSublayers
    return objects
