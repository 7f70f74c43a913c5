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


# --- nested layers: transformers, recurrent cells, every convolution --------

def _transformer_and_lstm_model():
    import keras_hub

    ids = keras.Input((8,), dtype="int32", name="ids")
    x = keras.layers.Embedding(20, 16, embeddings_initializer="random_normal",
                               name="embedding")(ids)
    mask = keras.ops.cast(keras.ops.not_equal(ids, 0), "int32")
    x = keras_hub.layers.TransformerEncoder(32, 2, activation="gelu",
                                            name="encoder")(x, padding_mask=mask)
    x = keras.layers.LSTM(8, unroll=True, name="lstm")(x)
    return keras.Model(ids, keras.layers.Dense(2, name="head")(x))


def _token_batches():
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 20, (32, 8)).astype("int32")
    ids[::2, 5:] = 0  # half the rows padded
    return ids


@pytest.fixture(scope="module")
def quantized_transformer(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = _transformer_and_lstm_model()
    quantized = qat.quantize_model(model)
    ids = _token_batches()
    qat.calibrate(quantized, tf.data.Dataset.from_tensor_slices((ids, ids)).batch(8), 4)
    return model, quantized, ids, tmp_path_factory.mktemp("transformer")


def test_every_matmul_inside_a_transformer_and_an_lstm_is_fake_quantized(
        quantized_transformer):
    _, quantized, _, _ = quantized_transformer
    encoder = quantized.get_layer("encoder")
    assert isinstance(encoder, qat.QuantizedSublayers)
    attention = encoder.layer._self_attention_layer
    assert isinstance(attention, qat._QuantizedAttention)
    assert set(qat._quantizers(attention)) == {
        "query", "key", "value", "scores", "probabilities", "context"}
    kernels = [layer for layer in quantized._flatten_layers(recursive=True)
               if qat.kernel_attributes(type(layer))]
    names = {layer.name for layer in kernels}
    assert {"query", "key", "value", "attention_output", "feedforward_intermediate_dense",
            "feedforward_output_dense", "lstm_cell", "head"} <= names
    assert all(qat.is_fake_quantized(layer) for layer in kernels)
    # gelu is no fused activation: the dense gets a range before and after it
    assert set(qat._quantizers(encoder.layer._feedforward_intermediate_dense)) == {
        "pre_activation", "output"}
    assert set(qat._quantizers(quantized.get_layer("lstm").layer.cell)) == {
        "output", "state0", "state1", "input_gate", "forget_gate", "output_gate",
        "candidate", "kept_carry", "added_carry"}


def test_nested_quantized_model_saves_and_reloads_with_safe_mode(quantized_transformer):
    _, quantized, ids, folder = quantized_transformer
    path = str(folder / "qat.keras")
    quantized.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(reloaded(ids), quantized(ids), atol=1e-6)
    ranges = [float(w) for w in reloaded.get_layer("encoder").weights
              if "range_max" in w.path]
    assert len(ranges) > 10 and all(value > 0 for value in ranges)  # calibrated, restored


def test_quantized_transformer_converts_to_int8_matmuls_with_no_requantize(
        quantized_transformer):
    from common import export, quant_report

    model, quantized, ids, folder = quantized_transformer
    path = str(folder / "qat_int8.tflite")

    def representative():
        for row in ids[:16]:  # padded rows included
            yield [row[None]]

    report = export.convert_to_tflite(quantized, path, representative)
    assert not report["float_compute_ops"], report
    assert any(name.startswith("BATCH_MATMUL/int8") for name in report["ops"])
    assert sum(n for name, n in report["ops"].items()
               if name.startswith("FULLY_CONNECTED/int8")) >= 6
    summary = quant_report.tflite_int8_summary(path)
    assert summary["mac_share_int8"] == 1.0 and not summary["shares_are_op_counts"]
    # softmax / sigmoid / tanh ranges match LiteRT's fixed output scales
    assert summary["requantize_ops"] == 0
    coverage = quant_report.fake_quant_coverage(model, quantized)
    assert coverage["mac_share"] == 1.0 and coverage["uncovered_layers"] == []
    assert "encoder/self_attention_layer:attention" in coverage["layers"]
    # The pipeline's one call: nothing to warn about here.
    summary, notes = quant_report.describe_int8(path, model, quantized)
    assert summary["tflite"]["mac_share_int8"] == 1.0
    assert summary["qat_coverage"]["mac_share"] == 1.0 and notes == []
    # Calibrated on padded rows too, the int8 file still computes what the
    # QAT model does on padded and unpadded rows alike (no collapsed range).
    from common import litert

    int8_out, qat_out = litert.LiteRTModel(path)(ids), np.asarray(quantized(ids))
    spread = np.abs(qat_out).max()
    assert np.abs(int8_out - qat_out)[::2].max() < 0.1 * spread  # padded rows
    assert np.abs(int8_out - qat_out)[1::2].max() < 0.1 * spread


def test_attention_masks_padded_keys_inside_the_int8_range():
    import keras_hub

    keras.utils.set_random_seed(1)
    inputs = keras.Input((6, 8), name="tokens")
    mask = keras.Input((6,), dtype="int32", name="mask")
    encoder = keras_hub.layers.TransformerEncoder(16, 2, name="encoder")
    model = keras.Model([inputs, mask], encoder(inputs, padding_mask=mask))
    quantized = qat.quantize_model(model)
    tokens = np.random.default_rng(0).normal(size=(8, 6, 8)).astype("float32")
    padding = np.ones((8, 6), "int32")
    padding[:, 4:] = 0
    # One batch: its extremes set the ranges, so nothing below is clipped.
    dataset = tf.data.Dataset.from_tensor_slices(((tokens, padding), tokens)).batch(8)
    qat.calibrate(quantized, dataset, steps=1)
    scores = qat._quantizers(quantized.get_layer("encoder").layer._self_attention_layer)[
        "scores"]
    bottom, top = (float(v) for v in scores.effective_range())
    # the range is the real scores' (at least 10 wide), never -1e9
    assert -50 < bottom <= top - qat.ATTENTION_SCORE_SPAN
    # what the padded keys hold does not change the real tokens' outputs
    changed = tokens.copy()
    changed[:, 4:] = 100.0
    np.testing.assert_allclose(quantized([changed, padding])[:, :4],
                               quantized([tokens, padding])[:, :4], atol=1e-3)
    float_out, quant_out = model([tokens, padding]), quantized([tokens, padding])
    assert np.abs(float_out - quant_out)[:, :4].max() < 0.05 * np.abs(float_out).max()


def test_every_convolution_type_gets_kernel_fake_quant_and_macs_match_litert(tmp_path):
    from common import export, quant_report

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2d")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise2d")(x)
    x = keras.layers.SeparableConv2D(8, 3, padding="same", name="separable2d")(x)
    x = keras.layers.Conv2DTranspose(8, 3, strides=2, padding="same", name="transpose2d")(x)
    block = keras.Sequential([keras.layers.Conv2D(4, 1, name="inner_conv"),
                              keras.layers.ReLU()], name="block")
    x = block(x)
    x = keras.layers.Reshape((256, 4), name="flatten")(x)
    x = keras.layers.Conv1D(4, 3, padding="same", name="conv1d")(x)
    x = keras.layers.DepthwiseConv1D(3, padding="same", name="depthwise1d")(x)
    x = keras.layers.SeparableConv1D(4, 3, padding="same", name="separable1d")(x)
    x = keras.layers.Reshape((4, 8, 8, 4), name="volume")(x)
    x = keras.layers.Conv3D(2, 3, padding="same", name="conv3d")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling3D(name="pool")(x))
    quantized = qat.quantize_model(model)
    coverage = quant_report.fake_quant_coverage(model, quantized)
    assert coverage["uncovered_layers"] == [] and len(coverage["layers"]) == 9
    assert "block/inner_conv:kernel" in coverage["layers"]

    images = np.random.rand(8, 8, 8, 3).astype("float32")
    qat.calibrate(quantized, tf.data.Dataset.from_tensor_slices((images, images)).batch(4), 2)
    path = str(tmp_path / "convs.tflite")
    report = export.convert_to_tflite(
        quantized, path, lambda: ([image[None]] for image in images))
    assert report["ops"]["TRANSPOSE_CONV/int8"] == 1
    summary = quant_report.tflite_int8_summary(path)
    # The Keras estimate and the LiteRT file count the same work.
    assert summary["total_macs"] == coverage["total_macs"]
    # LiteRT has no int8 CONV_3D kernel: it stays float, and says so.
    assert summary["float_compute_ops"] == [name for name in report["float_compute_ops"]]
    assert [name.split("#")[0] for name in summary["float_compute_ops"]] == ["CONV_3D"]
    float_share = coverage["layers"]["conv3d:kernel"]["macs"] / coverage["total_macs"]
    assert summary["mac_share_float"] == pytest.approx(float_share)


def test_unreachable_compute_layer_is_warned_about_and_counted(tmp_path):
    class RawMatmul(keras.layers.Layer):
        """Owns a kernel and multiplies by it directly: nothing to swap."""

        def build(self, input_shape):
            self.weight_matrix = self.add_weight(shape=(input_shape[-1], 4))

        def call(self, x):
            return keras.ops.matmul(x, self.weight_matrix)

    inputs = keras.Input((6,))
    x = keras.layers.Dense(6, name="reached")(inputs)
    model = keras.Model(inputs, RawMatmul(name="raw")(x))
    with pytest.warns(UserWarning, match="raw"):
        quantized = qat.quantize_model(model)
    from common import quant_report

    coverage = quant_report.fake_quant_coverage(model, quantized)
    assert coverage["uncovered_layers"] == ["raw:unknown"]
    assert coverage["mac_share"] == pytest.approx(36 / (36 + 24))
    # ...and the run report says so for the file made from this QAT model.
    from common import export

    rows = np.random.default_rng(0).normal(size=(8, 6)).astype("float32")
    qat.calibrate(quantized, tf.data.Dataset.from_tensor_slices((rows, rows)).batch(8), 1)
    path = str(tmp_path / "partial.tflite")
    export.convert_to_tflite(quantized, path, lambda: ([row[None]] for row in rows))
    summary, notes = quant_report.describe_int8(path, model, quantized)
    assert summary["qat_coverage"]["uncovered_layers"] == ["raw:unknown"]
    assert any("QAT did not reach 1 compute layer(s) (40.0% of multiply-accumulates"
               in note and "raw:unknown" in note for note in notes)


def test_decoder_attention_subclass_and_gru_are_reached_and_convert(tmp_path):
    """keras-hub's TransformerDecoder uses a MultiHeadAttention subclass
    (CachedMultiHeadAttention): the swap is made for any subclass."""
    import keras_hub

    from common import export, quant_report

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 16), name="frames")
    x = keras_hub.layers.TransformerDecoder(32, 2, name="decoder")(inputs, use_causal_mask=True)
    x = keras.layers.GRU(8, unroll=True, name="gru")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(x))
    quantized = qat.quantize_model(model)
    coverage = quant_report.fake_quant_coverage(model, quantized)
    assert coverage["mac_share"] == 1.0 and "decoder/self_attention:attention" in coverage["layers"]
    assert isinstance(quantized.get_layer("decoder").layer._self_attention_layer,
                      qat._QuantizedAttention)
    frames = np.random.default_rng(0).normal(size=(16, 8, 16)).astype("float32")
    qat.calibrate(quantized, tf.data.Dataset.from_tensor_slices((frames, frames)).batch(16), 1)
    path = str(tmp_path / "decoder.tflite")
    report = export.convert_to_tflite(quantized, path, lambda: ([f[None]] for f in frames))
    assert report["float_compute_ops"] == []
    assert quant_report.tflite_int8_summary(path)["requantize_ops"] == 0


# --- the fine-tune continues the float run ------------------------------------

def test_fine_tune_starts_where_the_float_schedule_ended():
    from common import config

    train = config.TrainConfig(learning_rate=1e-3, schedule="cosine", epochs=10)
    # cosine decays to alpha = 1% of the peak
    assert qat.final_learning_rate(train, 20) == pytest.approx(1e-5, rel=0.01)
    train.schedule = "constant"
    assert qat.final_learning_rate(train, 20) == pytest.approx(1e-3)


def test_frozen_batch_norm_keeps_float_statistics_while_fine_tuning(tmp_path):
    from common import training

    keras.utils.set_random_seed(0)
    model = _float_model()
    quantized = qat.quantize_model(model)
    qat.freeze_batch_norm(quantized)
    x = np.random.rand(16, 12, 12, 3).astype("float32") * 3.0
    dataset = tf.data.Dataset.from_tensor_slices((x, np.zeros(16, "int32"))).batch(8)
    qat.calibrate(quantized, dataset, steps=2)
    before = [w.numpy().copy() for w in quantized.get_layer("stem_bn").weights]
    # The calibrated start is the best epoch until an epoch beats it.
    stage = str(tmp_path / "qat")
    start = qat.record_start_as_best(quantized, stage, "val_accuracy", lambda m: 0.5)
    assert start == 0.5
    checkpoint = training.make_callbacks(stage, "val_accuracy", "max")
    assert any(getattr(c, "best", None) == 0.5 for c in checkpoint)
    assert qat.record_start_as_best(quantized, stage, "val_accuracy", lambda m: 0.9) is None
    quantized.compile(keras.optimizers.Adam(1e-2),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    kernel = quantized.get_layer("head").get_weights()[0].copy()
    quantized.fit(dataset, epochs=1, verbose=0)
    for weight, value in zip(quantized.get_layer("stem_bn").weights, before):
        np.testing.assert_array_equal(weight.numpy(), value)  # moving stats and scales
    assert not np.array_equal(quantized.get_layer("head").get_weights()[0], kernel)


def test_a_layer_called_twice_gets_one_range_per_call():
    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    dense = keras.layers.Dense(4, name="d")
    model = keras.Model([a, b], keras.layers.Add(name="add")([dense(a), dense(b)]))
    names = [layer.name for layer in qat.quantize_model(model).layers]
    assert {"d_fq", "d_call1_fq"} <= set(names) and len(names) == len(set(names))
