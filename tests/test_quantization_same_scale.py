"""QAT files have no more requantize ops than their post-training twins.

LiteRT's int8 CONCATENATION (like its pools, pads, slices and resizes) needs
one scale for all inputs and the output. Post-training conversion picks that
scale itself; QAT fixes every range it fake-quantizes, so the ranges it
trains around a concatenation must already agree, or the converter inserts a
requantize op (an int8 -> int8 QUANTIZE) before each input that differs.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from common import export, qat, quant_report


def _unet_like():
    """Skip connection through a pool, nearest and bilinear upsampling, a
    concatenation of both with the skip, and a dense block whose input feeds
    two concatenations (ESRGAN's residual dense block in small)."""
    inputs = keras.Input((16, 16, 3), name="image")
    skip = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="enc")(inputs)
    x = keras.layers.MaxPooling2D(name="pool")(skip)
    x = keras.layers.Conv2D(8, 3, padding="same", name="mid")(x)
    x = keras.layers.LeakyReLU(0.2, name="mid_act")(x)
    nearest = keras.layers.UpSampling2D(name="up_nearest")(x)
    bilinear = keras.layers.UpSampling2D(interpolation="bilinear", name="up_bilinear")(x)
    x = keras.layers.Concatenate(name="cat_up")([nearest, bilinear, skip])
    x = keras.layers.Conv2D(8, 1, name="reduce")(x)
    first = keras.layers.LeakyReLU(0.2, name="dense_act1")(
        keras.layers.Conv2D(4, 3, padding="same", name="dense_conv1")(x))
    joined = keras.layers.Concatenate(name="dense_cat2")([x, first])
    second = keras.layers.LeakyReLU(0.2, name="dense_act2")(
        keras.layers.Conv2D(4, 3, padding="same", name="dense_conv2")(joined))
    x = keras.layers.Concatenate(name="dense_cat3")([x, first, second])
    return keras.Model(inputs, keras.layers.Conv2D(3, 3, padding="same", name="out")(x))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = _unet_like()
    images = np.random.default_rng(0).random((16, 16, 16, 3)).astype("float32")
    quantized = qat.quantize_model(model)
    qat.calibrate(quantized, tf.data.Dataset.from_tensor_slices((images, images)).batch(4), 4)
    folder = tmp_path_factory.mktemp("same_scale")
    paths = {"qat": str(folder / "qat.tflite"), "ptq": str(folder / "ptq.tflite")}

    def representative():
        for image in images[:8]:
            yield [image[None]]

    export.convert_to_tflite(quantized, paths["qat"], representative)
    export.convert_to_tflite(model, paths["ptq"], representative)
    return model, quantized, images, paths


def test_concatenated_tensors_share_one_range_and_pass_throughs_get_none(converted):
    _, quantized, _, _ = converted
    names = [layer.name for layer in quantized.layers]
    # Pools and both resizes keep their input's range: none of their own.
    assert not {"pool_fq", "up_nearest_fq", "up_bilinear_fq"} & set(names)
    shared = {layer.name: layer for layer in quantized.layers
              if isinstance(layer, qat.SharedActivationFakeQuant)}
    # mid_act feeds the concatenation through both resizes, enc directly and
    # through the pool; the dense block's input and activations feed two
    # concatenations: two groups, each one range.
    assert sorted(shared) == ["cat_up_shared_fq", "dense_cat2_shared_fq"]
    assert shared["cat_up_shared_fq"].slots == 3  # enc, mid_act, cat_up
    assert shared["dense_cat2_shared_fq"].slots == 5  # reduce, act1, cat2, act2, cat3
    assert "enc_fq" not in names and "cat_up_fq" not in names


def test_qat_file_has_no_more_requantize_ops_than_post_training(converted):
    _, _, _, paths = converted
    qat_summary = quant_report.tflite_int8_summary(paths["qat"])
    ptq_summary = quant_report.tflite_int8_summary(paths["ptq"])
    assert qat_summary["mac_share_int8"] == 1.0
    assert qat_summary["requantize_ops"] <= ptq_summary["requantize_ops"]
    assert qat_summary["requantize_ops"] == 0


def test_shared_range_is_the_union_of_each_tensors_own_moving_range():
    layer = qat.SharedActivationFakeQuant(slots=2, momentum=0.5)
    layer(np.array([-1.0, 1.0], "float32"), slot=0, training=True)
    layer(np.array([0.0, 4.0], "float32"), slot=1, training=True)
    np.testing.assert_allclose(layer.range_min.numpy(), [-1.0, 0.0])
    np.testing.assert_allclose(layer.range_max.numpy(), [1.0, 4.0])
    # slot 1 moves on its own; slot 0's range is untouched
    layer(np.array([0.0, 2.0], "float32"), slot=1, training=True)
    np.testing.assert_allclose(layer.range_max.numpy(), [1.0, 3.0])
    low, high = (float(v) for v in layer.effective_range())
    assert (low, high) == (-1.0, 3.0)
    # Both slots quantize with the union: 2.5 is kept, not clipped to 1.
    out = np.asarray(layer(np.array([2.5], "float32"), slot=0, training=False))
    assert out[0] == pytest.approx(2.5, abs=4.0 / 255)


def test_shared_ranges_save_and_reload(converted, tmp_path):
    _, quantized, images, _ = converted
    path = str(tmp_path / "qat.keras")
    quantized.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(reloaded(images[:2]), quantized(images[:2]), atol=1e-6)
