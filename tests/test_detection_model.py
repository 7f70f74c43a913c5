"""The YOLOv8 graph, its loss, and its fit for QAT cloning."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tasks.detection as task
from common import qat
from common.config import from_preset
from tasks.detection import losses, postprocess
from tasks.detection.boxes import iou_matrix, pack_targets

INFO = {"class_names": ["circle", "square", "triangle"]}


@pytest.fixture(scope="module")
def smoke():
    cfg = from_preset(task.Config, task.PRESETS, "smoke")
    keras.utils.set_random_seed(0)
    return cfg, task.build_model(cfg, INFO)


def test_graph_is_layers_only_with_raw_packed_output(smoke, tmp_path):
    cfg, model = smoke
    anchors = len(postprocess.anchor_grid(64)[0])
    assert model.output.shape == (None, anchors, postprocess.BOX_CHANNELS + 3)
    # keras-cv's backbone is in there (its SPPF block), flattened into this
    # one model: no nested Model for QAT's layer-by-layer clone to skip ...
    assert [layer.pool_size for layer in model.layers
            if layer.name.startswith("stack4_spp_fast_pool")] == [(5, 5)] * 3
    assert not [layer.name for layer in model.layers if isinstance(layer, keras.Model)]
    # ... and no bare op nodes are left for layer-by-layer tools to trip on.
    assert all(isinstance(op, keras.layers.Layer) for op in model.operations)
    images = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, custom_objects=task.custom_objects(), safe_mode=True)
    np.testing.assert_allclose(loaded(images), model(images), atol=1e-5)


def test_image_size_must_fit_the_strides():
    cfg = from_preset(task.Config, task.PRESETS, "smoke")
    cfg.model.image_size = 100
    with pytest.raises(ValueError, match="multiple of 32"):
        task.build_model(cfg, INFO)


def test_loss_drives_raw_outputs_to_the_true_boxes():
    # Optimizing the raw output tensor itself through loss, decoding and NMS
    # must recover the object: the loss and the decoder agree on the encoding.
    size, truth_box = 64, [12.0, 20.0, 40.0, 44.0]
    anchors = len(postprocess.anchor_grid(size)[0])
    target, _ = pack_targets([truth_box], [2], max_boxes=4)
    loss = losses.YOLOv8Loss(num_classes=3, image_size=size)
    rng = np.random.default_rng(0)
    raw = tf.Variable(np.concatenate([
        rng.normal(0, 0.1, (1, anchors, postprocess.BOX_CHANNELS)),
        np.full((1, anchors, 3), -2.0)], -1).astype(np.float32))
    optimizer = keras.optimizers.Adam(0.1)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            value = loss(target[None], raw)
        optimizer.apply_gradients([(tape.gradient(value, raw), raw)])
        return value

    first = float(step())
    for _ in range(150):
        last = float(step())
    assert last < 0.3 * first
    found = postprocess.postprocess(raw.numpy(), size, score_threshold=0.3)
    assert found["classes"][0, 0] == 2 and found["scores"][0, 0] > 0.5
    assert iou_matrix(found["boxes"][0, :1], [truth_box])[0, 0] > 0.85


def test_fake_quant_clone_tracks_the_float_model(smoke):
    cfg, model = smoke
    images = tf.constant(np.random.default_rng(1).uniform(0, 255, (4, 64, 64, 3)), tf.float32)
    targets = tf.constant(-np.ones((4, 20, 5)), tf.float32)
    quantized = qat.quantize_model(model)
    qat.calibrate(quantized, tf.data.Dataset.from_tensors((images, targets)), steps=1)
    float_out, quant_out = model(images).numpy(), quantized(images).numpy()
    # Per-tensor int8 over the packed output: errors of a few steps at most.
    span = float_out.max() - float_out.min()
    assert np.abs(quant_out - float_out).mean() < 0.02 * span
    # Every convolution of the clone (backbone, neck and head) runs its kernel
    # through fake-quant; a missed one would stay float in the INT8 file.
    convolutions = [layer for layer in quantized.layers
                    if isinstance(layer, keras.layers.Conv2D)]
    assert len(convolutions) == sum(isinstance(layer, keras.layers.Conv2D)
                                    for layer in model.layers) > 50
    assert all(qat.is_fake_quantized(layer) for layer in convolutions)
    # The packed output is fake-quantized per tensor: at most 256 levels.
    assert len(np.unique(quant_out)) <= 256 < len(np.unique(float_out))
