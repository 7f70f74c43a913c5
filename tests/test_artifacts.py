"""Loading saved models: safe mode refuses code, every format loads the same way."""

import keras
import numpy as np
import pytest

import tasks.segmentation as task
from common import artifacts
from common.errors import UserError


def test_a_keras_file_holding_a_lambda_is_refused_with_one_line(tmp_path):
    inputs = keras.Input((3,))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)
    path = str(tmp_path / "lambda.keras")
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(UserError, match=r"lambda.keras: refused to load: it holds a Lambda"):
        artifacts.load_keras(task, path)


def test_a_keras_file_naming_an_unknown_class_is_refused(tmp_path):
    @keras.saving.register_keras_serializable(package="elsewhere")
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2

    inputs = keras.Input((3,))
    path = str(tmp_path / "unknown.keras")
    keras.Model(inputs, Doubler()(inputs)).save(path)
    del keras.saving.get_custom_objects()["elsewhere>Doubler"]
    with pytest.raises(UserError, match=r"unknown.keras: cannot load as a segmentation model"):
        artifacts.load_keras(task, path)


def test_keras_and_missing_models(tmp_path):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    path = str(tmp_path / "model.keras")
    model.save(path)
    raw = artifacts.load_raw_fn(task, path)
    batch = np.ones((2, 3), np.float32)
    np.testing.assert_allclose(raw(batch), np.asarray(model(batch)), rtol=1e-6)
    with pytest.raises(UserError, match="model file not found"):
        artifacts.load_raw_fn(task, str(tmp_path / "absent.keras"))
    with pytest.raises(UserError, match="no config.json beside the model"):
        artifacts.load_run_config(task, path)
