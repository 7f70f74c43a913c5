import keras
import numpy as np
import pytest
import tensorflow as tf

from common import layers


def _model(block, *args, **kwargs):
    inputs = keras.Input((16, 16, 8))
    return keras.Model(inputs, block(inputs, *args, **kwargs))


def test_conv_bn_act_is_conv_without_bias_then_batch_norm_then_activation():
    model = _model(layers.conv_bn_act, 4, activation="relu", name="stem")
    conv, norm = model.get_layer("stem_conv"), model.get_layer("stem_bn")
    assert conv.bias is None and conv.kernel.shape == (3, 3, 8, 4)
    rng = np.random.default_rng(0)
    gamma, beta = rng.uniform(0.5, 2.0, 4), rng.normal(size=4)
    mean, variance = rng.normal(size=4), rng.uniform(0.5, 2.0, 4)
    norm.set_weights([w.astype("float32") for w in (gamma, beta, mean, variance)])
    x = rng.normal(size=(2, 16, 16, 8)).astype("float32")
    convolved = np.asarray(tf.nn.conv2d(x, np.asarray(conv.kernel), 1, "SAME"))
    normalized = gamma * (convolved - mean) / np.sqrt(variance + norm.epsilon) + beta
    assert (normalized < 0).any() and (normalized > 0).any()  # the ReLU has work to do
    np.testing.assert_allclose(model(x, training=False), np.maximum(normalized, 0),
                               atol=1e-4)
    # Training steps move the moving statistics 10% of the way to the batch's
    # (momentum 0.9, not Keras's 0.99 that lags far behind short runs).
    model(x, training=True)
    batch_mean = convolved.mean(axis=(0, 1, 2))
    np.testing.assert_allclose(norm.moving_mean, 0.9 * mean + 0.1 * batch_mean, atol=1e-4)


def test_residual_block_projects_only_when_the_shape_changes():
    same = _model(layers.residual_block, 8, name="same")
    assert "same_project" not in [layer.name for layer in same.layers]
    down = _model(layers.residual_block, 16, strides=2, name="down")
    assert down.get_layer("down_project").kernel.shape == (1, 1, 8, 16)
    assert down.output.shape == (None, 8, 8, 16)


def test_residual_block_is_identity_plus_branch():
    # With the second BN's gamma at zero the branch vanishes: relu(input).
    model = _model(layers.residual_block, 8, name="res")
    gamma = model.get_layer("res_b_bn").gamma
    gamma.assign(np.zeros(gamma.shape))
    x = np.random.randn(2, 16, 16, 8).astype("float32")
    np.testing.assert_allclose(model(x, training=False), np.maximum(x, 0), atol=1e-5)


def test_separable_block_uses_depthwise_then_pointwise():
    model = _model(layers.separable_block, 12, strides=2, name="sep")
    assert model.get_layer("sep_depthwise").kernel.shape == (3, 3, 8, 1)
    assert model.get_layer("sep_pointwise_conv").kernel.shape == (1, 1, 8, 12)
    assert model.output.shape == (None, 8, 8, 12)


def test_dilated_block_branches_see_pixels_rate_apart():
    model = _model(layers.dilated_block, 6, dilation_rates=(1, 3), name="aspp")
    assert model.output.shape == (None, 16, 16, 6)
    # One input pixel reaches a 3x3 conv output `rate` pixels away, not between.
    impulse = np.zeros((1, 16, 16, 8), "float32")
    impulse[0, 8, 8, :] = 1.0
    for rate in (1, 3):
        branch = keras.Model(model.input, model.get_layer(f"aspp_rate{rate}_conv").output)
        rows, cols = np.nonzero(np.abs(np.asarray(branch(impulse))[0]).sum(-1) > 1e-6)
        assert sorted(set(rows)) == sorted(set(cols)) == [8 - rate, 8, 8 + rate]


@pytest.mark.parametrize("name", ["relu", "swish", "silu", "sigmoid", "relu6"])
def test_activation_by_name(name):
    values = np.array([-2.0, 0.0, 2.0], "float32")
    reference = {"relu": np.maximum(values, 0), "relu6": np.clip(values, 0, 6),
                 "sigmoid": 1 / (1 + np.exp(-values)),
                 "swish": values / (1 + np.exp(-values)), "silu": values / (1 + np.exp(-values))}
    np.testing.assert_allclose(layers.get_activation(name)(values), reference[name], rtol=1e-5)


def test_initializers_by_name_have_the_expected_spread():
    fan_in = 256
    he = np.asarray(layers.get_initializer("he", seed=1)((fan_in, 512)))
    xavier = np.asarray(layers.get_initializer("xavier", seed=1)((fan_in, 512)))
    assert he.std() == pytest.approx(np.sqrt(2 / fan_in), rel=0.15)
    assert np.abs(xavier).max() <= np.sqrt(6 / (fan_in + 512)) + 1e-6


def test_unknown_names_are_rejected():
    with pytest.raises(ValueError, match="unknown activation 'mish'"):
        layers.get_activation("mish")
    with pytest.raises(ValueError, match="unknown initializer 'lecun'"):
        layers.get_initializer("lecun")
