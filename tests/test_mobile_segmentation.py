"""The segmentation mobile file, loaded by MediaPipe's ImageSegmenter.

A small U-Net, fake-quantized and calibrated (no training: agreement between
two runtimes of one file does not need a good model, only one whose classes
vary over the image), exported once for the module.
"""

import json

import numpy as np
import pytest
import tensorflow as tf

import tasks.segmentation as task
from common import config, export, litert, mobile, qat
from common.errors import UserError
from tasks.segmentation import data as seg_data
from tasks.segmentation import mobile as seg_mobile

SIZE = 16
CLASSES = list(seg_data.SYNTHETIC_CLASSES)


def small_info(**changes):
    info = {"num_classes": len(CLASSES), "class_names": CLASSES, "image_size": SIZE,
            "channels": 3, "normalization": "scale"}
    info.update(changes)
    return info


def small_qat_model(info):
    cfg = config.from_preset(task.Config, task.PRESETS, "smoke")
    cfg.model.filters, cfg.model.depth = 4, 1
    model = task.build_model(cfg, info)
    quantized = qat.quantize_model(model)
    qat.calibrate(quantized, dataset(info["channels"]), steps=2)
    return quantized


def dataset(channels=3):
    images, masks = seg_data.synthetic_examples(16, SIZE, seed=11)
    pixels = images.astype(np.float32) / 255.0
    if channels == 1:
        pixels = pixels.mean(-1, keepdims=True)
    return tf.data.Dataset.from_tensor_slices((pixels, masks)).batch(8)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mobile-segmentation")
    info = small_info()
    quantized = small_qat_model(info)
    calibration = export.representative_from_dataset(dataset(), 8)
    path = folder / seg_mobile.FILE_NAME
    metadata = json.loads(seg_mobile.export_mobile(quantized, info, path, calibration))
    return path, metadata, quantized


def test_mediapipe_masks_equal_the_litert_path_of_the_same_file(exported):
    path, _, _ = exported
    images, _ = seg_data.synthetic_examples(8, SIZE, seed=23)  # uint8, as a camera gives
    expected = litert.LiteRTModel(path)(images.astype(np.float32) / 255.0).argmax(-1)
    segmenter = seg_mobile.MediaPipeSegmenter(path)
    try:
        answered = segmenter(images.astype(np.float32) / 255.0)
    finally:
        segmenter.close()
    assert answered.shape == expected.shape == (8, SIZE, SIZE)
    # The untrained model must use several classes, or equal masks prove little.
    assert len(np.unique(expected)) >= 2
    np.testing.assert_array_equal(answered, expected)


def test_mobile_file_is_the_int8_model_with_float_edges(exported):
    path, _, quantized = exported
    report = export.tflite_op_report(path)
    # Every compute op int8; float only at the two edges MediaPipe needs.
    assert report["float_compute_ops"] == [] and report["float_ops"] == []
    assert report["ops"].get("QUANTIZE/float32") == 1
    assert report["ops"].get("DEQUANTIZE/int8") == 1
    assert any(key.startswith("CONV_2D/int8") for key in report["ops"])
    # It computes what the fake-quant Keras model computes (the same ranges).
    images, _ = seg_data.synthetic_examples(4, SIZE, seed=5)
    pixels = images.astype(np.float32) / 255.0
    mobile_classes = litert.LiteRTModel(path)(pixels).argmax(-1)
    keras_classes = np.asarray(quantized(pixels, training=False)).argmax(-1)
    assert (mobile_classes == keras_classes).mean() > 0.95


def test_metadata_has_labels_normalisation_and_softmax(exported):
    path, metadata, _ = exported
    subgraph = metadata["subgraph_metadata"][0]
    units = subgraph["input_tensor_metadata"][0]["process_units"]
    assert units[0]["options"] == {"mean": [0.0], "std": [255.0]}
    assert subgraph["output_tensor_metadata"][0]["associated_files"][0]["name"] == "labels.txt"
    assert "SOFTMAX" in json.dumps(subgraph.get("custom_metadata", []))
    # The runtime reads the same labels back from the file.
    segmenter = seg_mobile.MediaPipeSegmenter(path)
    try:
        assert segmenter.labels == CLASSES
    finally:
        segmenter.close()
    # Custom metadata (the segmenter options) needs parser 1.5.0.
    assert metadata["min_parser_version"] == "1.5.0"


def test_label_count_must_match_the_output_classes(exported, tmp_path):
    _, _, quantized = exported
    path = tmp_path / "wrong.tflite"
    with pytest.raises(UserError, match="outputs 4 classes but the label file would have 3"):
        seg_mobile.export_mobile(quantized, small_info(class_names=CLASSES[:3]), path,
                                 export.representative_from_dataset(dataset(), 2))
    with pytest.raises(UserError, match="no class names"):
        seg_mobile.export_mobile(quantized, small_info(class_names=[]), path,
                                 export.representative_from_dataset(dataset(), 2))
    assert not path.exists()


def test_standardized_data_is_refused_not_exported_wrong(exported, tmp_path):
    _, _, quantized = exported
    with pytest.raises(UserError, match="standardization"):
        seg_mobile.mobile_edge(quantized, small_info(normalization="standardize"))


def test_missing_mediapipe_says_how_to_install(monkeypatch):
    real_import = mobile.importlib.import_module

    def refuse(name, *args):
        if name == "mediapipe":
            raise ImportError("No module named 'mediapipe'")
        return real_import(name, *args)

    monkeypatch.setattr(mobile.importlib, "import_module", refuse)
    with pytest.raises(UserError, match=r"pip install -e '\.\[mobile\]'"):
        mobile.require_mediapipe()
