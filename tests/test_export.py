import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from common import export, layers, litert, qat


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3), name="image")
    x = layers.conv_bn_act(inputs, 8, name="a")
    x = layers.residual_block(x, 8, name="res")
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, name="head")(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    x_train = rng.random((96, 8, 8, 3)).astype("float32")
    y_train = (x_train.mean(axis=(1, 2)).argmax(-1)).astype("int32")
    dataset = tf.data.Dataset.from_tensor_slices((x_train, y_train)).batch(16)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(dataset, epochs=3, verbose=0)
    return model, dataset, x_train


def test_int8_export_runs_in_litert_and_matches_float(trained, tmp_path):
    model, dataset, x = trained
    representative = export.representative_from_dataset(dataset, 64)
    report = export.convert_to_tflite(model, str(tmp_path / "int8.tflite"), representative)
    assert report["float_compute_ops"] == []
    assert report["ops"].get("CONV_2D/int8", 0) >= 3 and "FULLY_CONNECTED/int8" in report["ops"]
    runner = litert.LiteRTModel(str(tmp_path / "int8.tflite"))
    assert runner.input_details[runner.input_names[0]]["dtype"] == np.int8
    float_logits = model.predict(x[:32], verbose=0)
    int8_logits = runner(x[:32])
    assert int8_logits.shape == float_logits.shape and int8_logits.dtype == np.float32
    assert np.mean(int8_logits.argmax(-1) == float_logits.argmax(-1)) >= 0.9
    assert runner.median_latency_ms(x[:1], repeats=3) > 0


def test_float_export_matches_keras(trained, tmp_path):
    model, _, x = trained
    report = export.convert_to_tflite(model, str(tmp_path / "float.tflite"))
    assert "CONV_2D/float32" in report["ops"]
    np.testing.assert_allclose(litert.LiteRTModel(str(tmp_path / "float.tflite"))(x[:4]),
                               model.predict(x[:4], verbose=0), atol=1e-4)


def test_qat_model_converts_to_int8(trained, tmp_path):
    model, dataset, x = trained
    quantized = qat.quantize_model(model)
    qat.calibrate(quantized, dataset, steps=3)
    report = export.convert_to_tflite(quantized, str(tmp_path / "qat.tflite"),
                                      export.representative_from_dataset(dataset, 32))
    assert report["float_compute_ops"] == []
    agreement = np.mean(litert.LiteRTModel(str(tmp_path / "qat.tflite"))(x[:32]).argmax(-1)
                        == model.predict(x[:32], verbose=0).argmax(-1))
    assert agreement >= 0.85


def test_saved_model_versions_count_up_and_never_overwrite(trained, tmp_path):
    model, _, x = trained

    def classify(images):
        return {"classes": tf.argmax(model(images, training=False), -1)}

    endpoints = {"serving_default": (classify, [tf.TensorSpec([None, 8, 8, 3], tf.float32)])}
    first = export.export_saved_model(model, endpoints, str(tmp_path), "demo",
                                      extra_files={"config.json": "{}"})
    second = export.export_saved_model(model, endpoints, str(tmp_path), "demo")
    assert first.endswith(os.path.join("demo", "1")) and second.endswith(os.path.join("demo", "2"))
    assert sorted(os.listdir(tmp_path / "demo")) == ["1", "2"]  # no temporary folders left
    assert os.path.exists(os.path.join(first, "assets.extra", "config.json"))
    loaded = tf.saved_model.load(first)
    result = loaded.signatures["serving_default"](tf.constant(x[:2]))
    np.testing.assert_array_equal(result["classes"].numpy(),
                                  model.predict(x[:2], verbose=0).argmax(-1))
    raw = loaded.signatures["raw"]
    assert list(raw(tf.constant(x[:2])).values())[0].shape == (2, 3)


def test_half_written_exports_of_dead_processes_are_removed(trained, tmp_path):
    model, _, _ = trained
    stale = tmp_path / "demo" / ".export.tmp-999999999.abc"
    stale.mkdir(parents=True)
    (stale / "saved_model.pb").write_bytes(b"half")

    def identity(images):
        return {"out": model(images)}

    endpoints = {"serving_default": (identity, [tf.TensorSpec([None, 8, 8, 3], tf.float32)])}
    export.export_saved_model(model, endpoints, str(tmp_path), "demo")
    assert sorted(os.listdir(tmp_path / "demo")) == ["1"]


def test_tflite_write_is_atomic(trained, tmp_path, monkeypatch):
    model, _, _ = trained
    target = tmp_path / "model.tflite"
    target.write_bytes(b"previous")

    class CrashingConverter:
        def __init__(self, *args, **kwargs):
            self.target_spec = tf.lite.TargetSpec()

        def convert(self):
            raise RuntimeError("killed during conversion")

    monkeypatch.setattr(tf.lite.TFLiteConverter, "from_saved_model", CrashingConverter)
    with pytest.raises(RuntimeError):
        export.convert_to_tflite(model, str(target))
    assert target.read_bytes() == b"previous" and os.listdir(tmp_path) == ["model.tflite"]


def test_mixed_precision_models_export_as_float32(tmp_path):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        inputs = keras.Input((8, 8, 3))
        x = layers.conv_bn_act(inputs, 4, name="a")
        model = keras.Model(inputs, keras.layers.Conv2D(2, 1, dtype="float32")(x))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("a_conv").compute_dtype == "bfloat16"
    copy = export.as_float32(model)
    assert {layer.compute_dtype for layer in copy.layers} == {"float32"}
    x = np.random.rand(2, 8, 8, 3).astype("float32")
    np.testing.assert_allclose(copy(x), model(x), atol=0.05)
    report = export.convert_to_tflite(model, str(tmp_path / "m.tflite"))
    assert "CONV_2D/float32" in report["ops"]


def test_int8_description_names_float_ops_and_the_worst_layers(trained, tmp_path):
    from common import quant_report

    model, dataset, _ = trained
    representative = export.representative_from_dataset(dataset, 16)
    path = str(tmp_path / "int8.tflite")
    export.convert_to_tflite(model, path, representative)
    summary, notes = quant_report.describe_int8(path, model, representative=representative,
                                                debug_layers=True)
    assert summary["tflite"]["mac_share_int8"] == 1.0 and notes == []
    assert "qat_coverage" not in summary  # no QAT model given
    worst = summary["worst_layers"]
    assert 1 <= len(worst) <= 5
    errors = [layer["rmse_over_scale"] for layer in worst]
    assert errors == sorted(errors, reverse=True) and errors[0] > 0
    assert {layer["op"] for layer in worst} <= {"CONV_2D", "FULLY_CONNECTED", "ADD", "MEAN",
                                                "DEPTHWISE_CONV_2D", "QUANTIZE"}


def _encoder_and_step():
    """A two-part program like a seq2seq edge model: an encoder, and a step
    that reads the encoder's output and its own state."""
    source = keras.Input((6,), batch_size=1, name="source")
    memory = keras.layers.Dense(8, activation="relu", name="encoder_dense")(source)
    encoder = keras.Model(source, memory)
    step_memory = keras.Input((8,), batch_size=1, name="memory")
    state = keras.Input((8,), batch_size=1, name="state")
    mixed = keras.layers.Concatenate()([step_memory, state])
    new_state = keras.layers.Dense(8, activation="tanh", name="step_dense")(mixed)
    step = keras.Model({"memory": step_memory, "state": state}, new_state)
    return {"encode": encoder, "decode_step": step}


def test_several_signatures_convert_to_one_int8_file_and_run(tmp_path):
    keras.utils.set_random_seed(0)
    parts = _encoder_and_step()
    rng = np.random.default_rng(0)
    sources = rng.normal(size=(16, 6)).astype("float32")

    def calibration():
        for row in sources:
            memory = np.asarray(parts["encode"](row[None]))
            yield "encode", {"source": row[None]}
            yield "decode_step", {"memory": memory, "state": np.tanh(memory)}

    path = str(tmp_path / "program.tflite")
    report = export.convert_to_tflite(parts, path, calibration)
    # Both subgraphs are read: one int8 FULLY_CONNECTED in each.
    assert report["ops"].get("FULLY_CONNECTED/int8") == 2
    assert report["float_compute_ops"] == []
    runners = litert.load(path)
    assert sorted(runners) == ["decode_step", "encode"]
    memory = runners["encode"](sources[:4])
    expected = np.asarray(parts["encode"](sources[:4]))
    assert np.abs(memory - expected).max() < 0.05 * np.abs(expected).max()
    state = runners["decode_step"]({"memory": expected, "state": np.tanh(expected)})
    expected_state = np.asarray(parts["decode_step"](
        {"memory": expected, "state": np.tanh(expected)}))
    assert np.abs(state - expected_state).max() < 0.05
    assert litert.LiteRTModel(path, signature="decode_step").signature_key == "decode_step"
    with pytest.raises(ValueError, match="no signature 'decode'"):
        litert.LiteRTModel(path, signature="decode")
