"""The super-resolution mobile file: a plain LiteRT model with uint8 pixels
in and out, and metadata documenting its tensors.

A small generator, fake-quantized and calibrated on photograph crops (no
training: the file must compute what the QAT model computes, which an
untrained generator with its interpolated global skip shows as well as a
trained one), exported once for the module.
"""

import json

import keras
import numpy as np
import pytest
import skimage.data
import tensorflow as tf

from common import config, export, litert, qat
from common.errors import UserError
from tasks.super_resolution import PRESETS, Config
from tasks.super_resolution import mobile as sr_mobile
from tasks.super_resolution import model as sr_model

TILE, SCALE = 8, 4


def low_res_tiles(count, seed):
    """Crops of a real photograph, in [0, 1] on 8-bit levels (as a phone's)."""
    photo = skimage.data.astronaut()
    rng = np.random.default_rng(seed)
    tops = rng.integers(0, photo.shape[0] - TILE, count)
    lefts = rng.integers(0, photo.shape[1] - TILE, count)
    return np.stack([photo[top:top + TILE, left:left + TILE]
                     for top, left in zip(tops, lefts)]).astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    # Seeded: the weights were whatever the worker's random state gave, and
    # one draw in CI differed from the file by 1.75 levels on average (seeds
    # 0-5 here: 0.58-1.02).
    keras.utils.set_random_seed(0)
    cfg = config.from_preset(Config, PRESETS, "smoke")
    cfg.model.tile_size = TILE
    cfg.model.tile_overlap = 2
    edge = sr_model.build_generator(cfg.model, input_size=TILE)
    quantized = qat.quantize_model(edge)
    tiles = low_res_tiles(32, seed=1)
    qat.calibrate(quantized, tf.data.Dataset.from_tensor_slices((tiles, tiles)).batch(8),
                  steps=4)
    path = tmp_path_factory.mktemp("mobile-sr") / sr_mobile.FILE_NAME
    metadata = json.loads(sr_mobile.export_mobile(quantized, {"scale": SCALE}, path))
    return path, metadata, quantized


def test_mobile_file_computes_what_the_qat_model_computes_on_pixels(exported):
    path, _, quantized = exported
    tiles = low_res_tiles(6, seed=7)
    upscaler = sr_mobile.predict_fn(path)
    answered = upscaler(tiles)
    upscaler.close()
    assert answered.shape == (6, TILE * SCALE, TILE * SCALE, 3)
    expected = np.round(np.clip(np.asarray(quantized(tiles, training=False)), 0, 1) * 255)
    # Whole 8-bit levels out (the app copies them into a bitmap as they are).
    levels = answered * 255.0
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)
    # Same int8 ranges: the file differs from the fake-quant model by rounding
    # only, a level or two, while the picture spans most of the 0-255 range.
    difference = np.abs(levels - expected)
    assert difference.mean() < 1.5 and np.percentile(difference, 99) <= 6
    assert expected.max() - expected.min() > 100


def test_tensors_are_uint8_pixels_and_the_generator_is_int8(exported):
    path, _, _ = exported
    model = litert.LiteRTModel(path)
    (input_detail,) = model.input_details.values()
    (output_detail,) = model.output_details.values()
    assert input_detail["dtype"] == np.uint8 and list(input_detail["shape"]) == [1, TILE, TILE, 3]
    assert output_detail["dtype"] == np.uint8
    assert list(output_detail["shape"]) == [1, TILE * SCALE, TILE * SCALE, 3]
    assert sorted(model.input_details) == [sr_mobile.INPUT_NAME]
    assert sorted(model.output_details) == [sr_mobile.OUTPUT_NAME]
    report = export.tflite_op_report(path)
    convolutions = {key: count for key, count in report["ops"].items()
                    if key.startswith("CONV_2D")}
    assert convolutions and all(key.startswith("CONV_2D/int8") for key in convolutions)


def test_metadata_documents_the_tensors_scale_and_tile(exported):
    path, metadata, _ = exported
    subgraph = metadata["subgraph_metadata"][0]
    assert subgraph["input_tensor_metadata"][0]["name"] == sr_mobile.INPUT_NAME
    assert subgraph["output_tensor_metadata"][0]["name"] == sr_mobile.OUTPUT_NAME
    assert "uint8" in subgraph["input_tensor_metadata"][0]["description"]
    facts = sr_mobile.read_facts(path)
    assert (facts["scale"], facts["tile_size"]) == (SCALE, TILE)
    assert facts["output_shape"] == [1, TILE * SCALE, TILE * SCALE, 3]


def test_a_model_that_is_not_a_fixed_tile_is_refused(exported, tmp_path):
    _, _, quantized = exported
    path = tmp_path / "wrong.tflite"
    with pytest.raises(UserError, match="not the x2 RGB tile"):
        sr_mobile.export_mobile(quantized, {"scale": 2}, path)
    inputs = keras.Input((None, None, 3))
    any_size = keras.Model(inputs, keras.layers.UpSampling2D(4)(inputs))
    with pytest.raises(UserError, match="fixed square RGB tile"):
        sr_mobile.export_mobile(any_size, {"scale": 4}, path)
    assert not path.exists()


def test_a_file_without_the_metadata_is_named(tmp_path):
    inputs = keras.Input((TILE, TILE, 3), batch_size=1)
    plain = tmp_path / "plain.tflite"
    plain.write_bytes(tf.lite.TFLiteConverter.from_keras_model(
        keras.Model(inputs, keras.layers.UpSampling2D(SCALE)(inputs))).convert())
    with pytest.raises(UserError, match="plain.tflite: no super_resolution metadata"):
        sr_mobile.read_facts(plain)
