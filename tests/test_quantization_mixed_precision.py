"""Layers kept float and 16-bit activations (`export.float_layers`,
`export.int16_activations`): for when INT8 loses more than a task allows."""

import keras
import numpy as np
import pytest

from common import export, litert, quant_report
from common.errors import UserError


@pytest.fixture(scope="module")
def small_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", name="middle")(x)
    x = keras.layers.LeakyReLU(0.2, name="middle_act")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
    images = np.random.default_rng(0).random((16, 8, 8, 3)).astype("float32")

    def representative():
        for image in images:
            yield [image[None]]
    return model, images, representative


def _float_compute_op_names(report):
    return sorted(name.split("#")[0] for name in report["float_compute_ops"])


def test_chosen_layers_stay_float_and_the_rest_int8(small_model, tmp_path):
    model, images, representative = small_model
    path = str(tmp_path / "mixed.tflite")
    # "head" is the model's output: its op is named after the signature.
    report = export.convert_to_tflite(model, path, representative,
                                      float_layers=["middle", "head"])
    assert _float_compute_op_names(report) == ["CONV_2D", "FULLY_CONNECTED"]
    assert report["ops"]["CONV_2D/int8"] == 1  # the stem
    assert sorted(report["float_layers"]) == ["head", "middle"]
    assert all("middle" in node for node in report["float_layers"]["middle"])
    outputs, expected = litert.LiteRTModel(path)(images), np.asarray(model(images))
    assert np.abs(outputs - expected).max() < 0.05 * np.abs(expected).max()
    summary, notes = quant_report.describe_int8(path, model, conversion=report)
    assert summary["mixed_precision"]["float_layers"] == report["float_layers"]
    assert 0 < summary["tflite"]["mac_share_float"] < 1
    assert any("kept float by export.float_layers (middle, head" in note for note in notes)


def test_int16_activations_run_every_matmul_int16_by_int8(small_model, tmp_path):
    model, images, representative = small_model
    path = str(tmp_path / "int16.tflite")
    report = export.convert_to_tflite(model, path, representative, int16_activations=True)
    assert report["ops"]["CONV_2D/int16"] == 2 and report["ops"]["FULLY_CONNECTED/int16"] == 1
    assert report["float_compute_ops"] == []
    runner = litert.LiteRTModel(path)
    assert runner.input_details[runner.input_names[0]]["dtype"] == np.int16
    int16_error = np.abs(runner(images) - np.asarray(model(images))).max()
    int8_path = str(tmp_path / "int8.tflite")
    export.convert_to_tflite(model, int8_path, representative)
    int8_error = np.abs(litert.LiteRTModel(int8_path)(images) - np.asarray(model(images))).max()
    assert int16_error < int8_error  # 16-bit activations are closer to float
    summary, notes = quant_report.describe_int8(path, model, conversion=report)
    assert summary["tflite"]["mac_share_int16"] == 1.0
    assert summary["mixed_precision"] == {"float_layers": {}, "int16_activations": True}
    assert any("16-bit activations" in note for note in notes)


def test_unknown_float_layer_is_refused_with_the_known_names(small_model, tmp_path):
    model, _, representative = small_model
    with pytest.raises(UserError, match=r"no layer 'midle'.*middle_act"):
        export.convert_to_tflite(model, str(tmp_path / "x.tflite"), representative,
                                 float_layers=["midle"])
    with pytest.raises(UserError, match="not both"):
        export.convert_to_tflite(model, str(tmp_path / "x.tflite"), representative,
                                 float_layers=["middle"], int16_activations=True)
