"""RRDB blocks, the generator, the discriminator, serving and the edge model."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from common import config
from common.errors import UserError
from tasks.super_resolution import PRESETS, Config
from tasks.super_resolution import model as sr_model


def _cfg(**overrides):
    cfg = config.from_preset(Config, PRESETS, "smoke")
    config.apply_overrides(cfg, overrides)
    return cfg


def _block_model(block, features=8, growth=4, residual_scale=0.2):
    inputs = keras.Input((None, None, features))
    return keras.Model(inputs, block(inputs, features, growth, residual_scale, "b"))


def test_dense_block_is_dense_and_scales_its_residual():
    model = _block_model(sr_model.residual_dense_block)
    # Conv k (k = 1..5) sees the block input plus all k-1 earlier outputs.
    for index, channels in enumerate((8, 12, 16, 20, 24), start=1):
        assert model.get_layer(f"b_conv{index}").kernel.shape[2] == channels
    x = np.random.default_rng(0).normal(size=(1, 6, 7, 8)).astype("float32")
    branch = keras.Model(model.input, model.get_layer("b_conv5").output)(x)
    np.testing.assert_allclose(model(x), x + 0.2 * np.asarray(branch), atol=1e-5)


def test_rrdb_chains_three_dense_blocks_inside_a_scaled_residual():
    model = _block_model(sr_model.rrdb)
    names = [layer.name for layer in model.layers]
    assert {"b_rdb1_conv5", "b_rdb2_conv5", "b_rdb3_conv5"} <= set(names)
    x = np.random.default_rng(1).normal(size=(2, 5, 5, 8)).astype("float32")
    inner = keras.Model(model.input, model.get_layer("b_rdb3_add").output)(x)
    np.testing.assert_allclose(model(x), x + 0.2 * np.asarray(inner), atol=1e-5)
    # Zero last convs make every dense block the identity: x + 0.2 * x.
    for block in (1, 2, 3):
        layer = model.get_layer(f"b_rdb{block}_conv5")
        layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    np.testing.assert_allclose(model(x), 1.2 * x, atol=1e-5)


def test_generator_upscales_x4_any_size_without_batch_norm():
    cfg = _cfg()
    generator = sr_model.build_generator(cfg.model)
    for height, width in ((7, 9), (16, 16)):
        out = generator(np.zeros((2, height, width, 3), "float32"))
        assert out.shape == (2, 4 * height, 4 * width, 3)
    assert not any(isinstance(layer, keras.layers.BatchNormalization)
                   for layer in generator.layers)
    rrdbs = {layer.name.split("_")[0] for layer in generator.layers
             if layer.name.startswith("rrdb")}
    assert rrdbs == {"rrdb1"}


def test_paper_preset_is_23_blocks_of_64_features():
    cfg = config.from_preset(Config, PRESETS, "esrgan")
    assert (cfg.model.num_blocks, cfg.model.features, cfg.model.growth) == (23, 64, 32)
    assert cfg.model.global_skip == "none" and cfg.model.residual_scale == 0.2
    generator = sr_model.build_generator(cfg.model)
    # ESRGAN's RRDB_PSNR_x4 generator has 16.7 M parameters.
    assert abs(generator.count_params() - 16.7e6) < 0.1e6


def test_global_skip_starts_from_the_interpolated_input():
    cfg = _cfg(**{"model.global_skip": "bilinear"})
    generator = sr_model.build_generator(cfg.model)
    last = generator.get_layer("conv_last")
    last.set_weights([np.zeros_like(w) for w in last.get_weights()])
    x = np.random.default_rng(2).random((1, 8, 8, 3)).astype("float32")
    expected = tf.image.resize(x, (32, 32), method="bilinear")
    np.testing.assert_allclose(generator(x), expected, atol=1e-5)


def test_interpolation_upsample_static_and_unknown_size_agree():
    layer = sr_model.InterpolationUpsample(4, "bilinear")
    x = np.random.default_rng(3).random((1, 5, 6, 3)).astype("float32")

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3])])
    def dynamic(images):
        return layer(images)
    np.testing.assert_allclose(dynamic(x), layer(x), atol=1e-6)
    assert layer(x).shape == (1, 20, 24, 3)
    np.testing.assert_allclose(layer(x), tf.image.resize(x, (20, 24), "bilinear"), atol=1e-6)
    # Its config rebuilds the same upsampling (what loading a .keras file does).
    clone = sr_model.InterpolationUpsample.from_config(layer.get_config())
    np.testing.assert_allclose(clone(x), layer(x), atol=0)
    nearest = sr_model.InterpolationUpsample(4, "nearest")
    np.testing.assert_array_equal(nearest(x), np.repeat(np.repeat(x, 4, 1), 4, 2))


def test_edge_model_is_flat_fixed_size_and_equal_to_the_generator():
    cfg = _cfg()
    generator = sr_model.build_generator(cfg.model)
    edge = sr_model.edge_model(generator, cfg)
    tile = cfg.model.tile_size
    assert tuple(edge.input.shape) == (None, tile, tile, 3)
    assert not any(isinstance(layer, keras.Model) for layer in edge.layers)
    x = np.random.default_rng(4).random((1, tile, tile, 3)).astype("float32")
    np.testing.assert_allclose(edge(x), generator(x), atol=1e-5)


def test_generator_round_trips_through_keras_file(tmp_path):
    cfg = _cfg()
    generator = sr_model.build_generator(cfg.model)
    path = str(tmp_path / "g.keras")
    generator.save(path)
    loaded = keras.saving.load_model(path, custom_objects=sr_model.custom_objects(),
                                     safe_mode=True)
    x = np.random.default_rng(5).random((1, 10, 12, 3)).astype("float32")
    np.testing.assert_allclose(loaded(x), generator(x), atol=1e-6)


def test_discriminator_gives_one_logit_and_rejects_odd_sizes():
    cfg = _cfg()
    critic = sr_model.build_discriminator(cfg.model, 64)
    assert critic(np.zeros((3, 64, 64, 3), "float32")).shape == (3, 1)
    plain = sr_model.build_discriminator(cfg.model, 64, normalization="none")
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in plain.layers)
    with pytest.raises(UserError, match="multiple of 32"):
        sr_model.build_discriminator(cfg.model, 48)


def test_bad_model_settings_are_named():
    with pytest.raises(UserError, match="model.scale"):
        sr_model.build_generator(_cfg(**{"model.scale": 2}).model)
    with pytest.raises(UserError, match="model.global_skip"):
        sr_model.build_generator(_cfg(**{"model.global_skip": "bicubic"}).model)
    with pytest.raises(UserError, match="model.tile_overlap"):
        sr_model.build_generator(_cfg(**{"model.tile_overlap": 16}).model)


def test_serving_endpoints_take_any_size_uint8_and_encoded_images():
    cfg = _cfg()
    generator = sr_model.build_generator(cfg.model)
    endpoints = sr_model.build_serving_model(generator, cfg)
    upscale, _ = endpoints["serving_default"]
    images = np.random.default_rng(6).integers(0, 255, (2, 9, 13, 3), dtype=np.uint8)
    result = upscale(tf.constant(images))["high_resolution"]
    assert result.shape == (2, 36, 52, 3) and result.dtype == tf.uint8
    grey = tf.io.encode_png(tf.constant(images[0, :, :, :1]))
    from_bytes, _ = endpoints["serve_bytes"]
    decoded = tf.io.decode_png(from_bytes(tf.reshape(grey, [1]))["png"][0])
    assert decoded.shape == (36, 52, 3)
