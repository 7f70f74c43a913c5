import keras
import numpy as np
import pytest
import tensorflow as tf

from common import layers, qat


def _float_model():
    inputs = keras.Input((12, 12, 3), name="image")
    x = layers.conv_bn_act(inputs, 8, name="stem")
    x = layers.separable_block(x, 8, name="sep")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(4, name="head")(x)
    return keras.Model(inputs, x)


def test_kernels_are_swapped_and_weights_copied():
    model = _float_model()
    quantized = qat.quantize_model(model)
    assert isinstance(quantized.get_layer("stem_conv"), qat.QuantizedConv2D)
    assert isinstance(quantized.get_layer("sep_depthwise"), qat.QuantizedDepthwiseConv2D)
    assert isinstance(quantized.get_layer("head"), qat.QuantizedDense)
    np.testing.assert_array_equal(quantized.get_layer("head").get_weights()[0],
                                  model.get_layer("head").get_weights()[0])


def test_fake_quant_goes_after_folded_activations_not_between_conv_and_bn():
    names = [layer.name for layer in qat.quantize_model(_float_model()).layers]
    assert "image_fq" in names and "stem_act_fq" in names and "pool_fq" in names
    assert "head_fq" in names  # model outputs always get a range
    assert "stem_conv_fq" not in names and "stem_bn_fq" not in names


def test_conv_kernels_are_per_channel_dense_per_tensor():
    layer = qat.QuantizedConv2D(2, 1)
    layer.build((None, 4, 4, 1))
    kernel = np.zeros((1, 1, 1, 2), "float32")
    kernel[..., 0], kernel[..., 1] = 0.01, 1.0
    layer._kernel.assign(kernel)
    # per channel: the small channel keeps its value instead of rounding to 0
    np.testing.assert_allclose(np.asarray(layer.kernel)[..., 0], 0.01, rtol=1e-2)
    dense = qat.QuantizedDense(2)
    dense.build((None, 1))
    dense._kernel.assign(np.array([[0.001, 1.0]], "float32"))
    assert float(np.asarray(dense.kernel)[0, 0]) == 0.0  # shares one scale


def test_quantized_model_starts_close_to_the_float_model():
    keras.utils.set_random_seed(0)
    model = _float_model()
    x = np.random.rand(16, 12, 12, 3).astype("float32")
    quantized = qat.quantize_model(model)
    dataset = tf.data.Dataset.from_tensor_slices((x, np.zeros(16))).batch(8)
    qat.calibrate(quantized, dataset, steps=2)
    float_out, quant_out = model.predict(x, verbose=0), quantized.predict(x, verbose=0)
    scale = np.abs(float_out).max()
    assert np.abs(float_out - quant_out).max() < 0.1 * scale
    assert not np.array_equal(float_out, quant_out)  # it does quantize


def test_activation_ranges_follow_a_moving_average():
    layer = qat.ActivationFakeQuant(momentum=0.5)
    layer(np.array([[-1.0, 2.0]], "float32"), training=True)
    assert (float(layer.range_min), float(layer.range_max)) == (-1.0, 2.0)
    layer(np.array([[-3.0, 4.0]], "float32"), training=True)
    assert (float(layer.range_min), float(layer.range_max)) == (-2.0, 3.0)
    out = np.asarray(layer(np.array([[10.0]], "float32"), training=False))
    assert out[0, 0] == pytest.approx(3.0, abs=0.03)  # clipped to the range


def test_subclassed_models_are_refused():
    class Custom(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="Functional"):
        qat.quantize_model(Custom())


def test_bare_ops_and_multi_output_layers_are_handled():
    inputs = keras.Input((8, 8, 4), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    left, right = keras.ops.split(x, 2, axis=-1)  # bare op node, two outputs
    x = keras.layers.Concatenate(name="concat")([left + right, left])
    x = keras.layers.ZeroPadding2D(name="pad")(x)
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1, name="head")(x))
    quantized = qat.quantize_model(model)
    names = [layer.name for layer in quantized.layers]
    assert "concat_fq" in names and "pad_fq" not in names  # padding keeps the scale
    x = np.random.rand(2, 8, 8, 4).astype("float32")
    qat.calibrate(quantized, tf.data.Dataset.from_tensor_slices((x, x)).batch(2), steps=1)
    assert quantized(x).shape == (2, 10, 10, 2)


def test_pass_through_can_be_declared_by_a_custom_layer():
    class Shuffle(keras.layers.Layer):
        quantization_pass_through = True

        def call(self, x):
            return keras.ops.flip(x, axis=-1)

    inputs = keras.Input((4,))
    x = keras.layers.Dense(4, name="a")(inputs)
    x = Shuffle(name="shuffle")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="b")(x))
    names = [layer.name for layer in qat.quantize_model(model).layers]
    assert "a_fq" in names and "shuffle_fq" not in names
