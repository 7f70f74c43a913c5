"""The detection mobile file, loaded by MediaPipe's ObjectDetector.

The file's contract is the raw YOLOv8 head (per anchor of the stride-8, 16
and 32 grids: 64 box-distribution logits, then class logits); what is under
test is what the export appends (decoding, NMS, ObjectDetector's layout and
metadata), not the backbone. So the module exports, once, a detector of a
few convolutions with that head, fake-quantized and calibrated but not
trained: agreement between runtimes needs many overlapping boxes of varied
classes and scores (its random head gives them, ties included), not a good
model. The full YOLOv8 graph costs minutes to trace and convert on two
cores; the detection end-to-end run scores its mobile file through
MediaPipe (metrics.mobile) against the INT8 file.
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from common import export, litert, qat
from common.errors import UserError
from tasks.detection import mobile as detection_mobile
from tasks.detection import postprocess, synthetic
from tasks.detection.model import CLASS_PRIOR

SIZE = 64
CLASSES = list(synthetic.CLASS_NAMES[:3])
INFO = {"class_names": CLASSES, "image_size": SIZE}
FILTERS = (8, 16, 16, 24, 24)
BIN_SLOPE, HEAD_STDDEV = 0.4, 1.0


def tiny_detector(num_classes=len(CLASSES)):
    """Strided convolutions to the three pyramid levels, a 1x1 head on each,
    packed like `model.build_model`'s output (anchors row by row, stride 8
    then 16 then 32)."""
    images = keras.Input((SIZE, SIZE, 3), name="images")
    features = keras.layers.Rescaling(1.0 / 255)(images)
    levels = []
    for index, filters in enumerate(FILTERS):
        features = keras.layers.Conv2D(filters, 3, strides=2, padding="same",
                                       activation="relu", name=f"conv{index}")(features)
        if index >= 2:  # strides 8, 16, 32
            levels.append(features)
    # Class logits start at the detector's prior (model.CLASS_PRIOR); box
    # logits favour the low bins, so boxes are a few strides wide, and the
    # wide kernel makes them vary from anchor to anchor (an untrained head
    # with small weights spreads every side over all 16 bins: whole-image
    # boxes).
    prior = np.log(CLASS_PRIOR / (1 - CLASS_PRIOR))
    bins = np.tile(-BIN_SLOPE * np.arange(postprocess.REG_MAX), 4)
    bias = np.r_[bins, np.full(num_classes, prior)].astype(np.float32)
    heads = []
    for level, feature in zip((3, 4, 5), levels):
        head = keras.layers.Conv2D(
            postprocess.BOX_CHANNELS + num_classes, 1, name=f"head_p{level}",
            kernel_initializer=keras.initializers.RandomNormal(stddev=HEAD_STDDEV),
            bias_initializer=keras.initializers.Constant(bias))(feature)
        heads.append(keras.layers.Reshape((-1, postprocess.BOX_CHANNELS + num_classes))(head))
    return keras.Model(images, keras.layers.Concatenate(axis=1, name="raw")(heads))


def shapes(count, seed):
    images, targets = synthetic.make_split(count, SIZE, len(CLASSES), 20, seed=seed)
    return images.astype(np.float32), targets


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    keras.utils.set_random_seed(4)
    model = tiny_detector()
    images, targets = shapes(32, seed=[5, 0])
    quantized = qat.quantize_model(model)
    qat.calibrate(quantized, tf.data.Dataset.from_tensor_slices((images, targets)).batch(16),
                  steps=2)
    path = tmp_path_factory.mktemp("mobile-detection") / detection_mobile.FILE_NAME
    metadata = json.loads(detection_mobile.export_mobile(quantized, INFO, path))
    return path, metadata, quantized


def run_file(path, images):
    """The file's four outputs in LiteRT, and its int8 raw head output
    (read from the same run), per image."""
    interpreter = litert.interpreter_class()(
        model_path=str(path), num_threads=1, experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    runner = interpreter.get_signature_runner("serve")
    anchors = len(postprocess.anchor_grid(SIZE)[0])
    raw_tensor = [item for item in interpreter.get_tensor_details()
                  if tuple(item["shape"]) == (1, anchors, postprocess.BOX_CHANNELS + 3)
                  and item["dtype"] == np.int8]
    assert len(raw_tensor) == 1, [item["name"] for item in raw_tensor]
    scale, zero_point = raw_tensor[0]["quantization"]
    results = []
    for image in images:
        outputs = runner(images=image[None])
        raw = (interpreter.get_tensor(raw_tensor[0]["index"]).astype(np.float32)
               - zero_point) * scale
        results.append((outputs, raw))
    return results


def test_decoding_and_nms_inside_equal_the_host_path_on_the_same_int8_outputs(exported):
    path, _, _ = exported
    images, _ = shapes(8, seed=[5, 2])
    settings = detection_mobile.settings_from(INFO)
    total, suppressed, classes = 0, 0, set()
    for outputs, raw in run_file(path, images):
        host = postprocess.postprocess(raw, SIZE, settings["score_threshold"],
                                       settings["iou_threshold"], settings["max_detections"])
        count = int(outputs["num_detections"][0])
        box_logits, class_logits = postprocess.split_raw(raw)
        candidates = postprocess.candidates(box_logits[0], class_logits[0], SIZE,
                                            settings["score_threshold"])
        total, suppressed = total + count, suppressed + len(candidates[1]) - count
        classes.update(host["classes"][0, :count].tolist())
        assert count == host["num_detections"][0]
        np.testing.assert_array_equal(outputs["detection_classes"][0, :count],
                                      host["classes"][0, :count])
        np.testing.assert_allclose(outputs["detection_scores"][0, :count],
                                   host["scores"][0, :count], atol=1e-6)
        ymin, xmin, ymax, xmax = np.moveaxis(outputs["detection_boxes"][0, :count] * SIZE, -1, 0)
        np.testing.assert_allclose(np.stack([xmin, ymin, xmax, ymax], -1),
                                   host["boxes"][0, :count], atol=1e-3)
        # Padding: zero scores past the count.
        assert not outputs["detection_scores"][0, count:].any()
    # Enough detections, of several classes, with boxes NMS removed, for the
    # equality to mean something.
    assert total >= 16 and suppressed >= 16 and len(classes) >= 2


# MediaPipe truncates box origins and sizes to whole pixels; read back at the
# middle (detection_mobile.pixel_box), x1 / y1 are within 0.5 px, x2 / y2
# within 1 px.
PIXELS = np.array([0.5, 0.5, 1.0, 1.0])


def match(expected, answered, pixels=PIXELS, score_tolerance=1e-5):
    """Pair each expected detection with an answered one of the same class,
    score and box (each corner within `pixels`), one to one; the unpaired ones."""
    left = list(range(len(answered[1])))
    unpaired = []
    for box, class_id, score in zip(*expected):
        found = [index for index in left if answered[1][index] == class_id
                 and abs(answered[2][index] - score) <= score_tolerance
                 and np.all(np.abs(answered[0][index] - box) <= pixels)]
        if found:
            left.remove(found[0])
        else:
            unpaired.append((box, class_id, score))
    return unpaired, left


def test_mediapipe_answers_like_litert_running_the_same_file(exported):
    path, _, _ = exported
    images, _ = shapes(8, seed=[5, 2])
    detector = detection_mobile.predict_fn(path, INFO)
    try:
        answered = detector(images)
    finally:
        detector.close()
    classes_seen, fractional = set(), 0
    for index, (outputs, _) in enumerate(run_file(path, images)):
        count = int(outputs["num_detections"][0])
        ymin, xmin, ymax, xmax = np.moveaxis(outputs["detection_boxes"][0, :count] * SIZE, -1, 0)
        expected = (np.stack([xmin, ymin, xmax, ymax], -1),
                    outputs["detection_classes"][0, :count].astype(int),
                    outputs["detection_scores"][0, :count])
        found = answered["num_detections"][index]
        assert found == count
        mediapipe = (answered["boxes"][index, :found], answered["classes"][index, :found],
                     answered["scores"][index, :found])
        unpaired, extra = match(expected, mediapipe)
        assert unpaired == [] and extra == []
        classes_seen.update(expected[1].tolist())
        fractional += int(np.sum(np.abs(expected[0] - np.round(expected[0])) > 0.1))
    # Several classes, and corners between pixels (not only whole-image boxes).
    assert len(classes_seen) >= 2 and fractional >= 8


def test_whole_pixel_boxes_are_read_at_the_middle_of_what_they_stand_for():
    from mediapipe.tasks.python.components.containers.bounding_box import BoundingBox

    # A box 19.17..37.05 x 17.19..34.97 comes back from ObjectDetector as
    # origin (19, 17), size (17, 17): both truncated.
    box = BoundingBox(origin_x=19, origin_y=17, width=17, height=17)
    read = detection_mobile.pixel_box(box, 64, 64)
    assert read == [19.5, 17.5, 37.0, 35.0]
    assert np.abs(np.array(read) - [19.17, 17.19, 37.05, 34.97]).max() <= 1.0
    edge = BoundingBox(origin_x=9, origin_y=37, width=54, height=26)
    assert detection_mobile.pixel_box(edge, 64, 64)[2:] == [64.0, 64.0]


def test_the_file_is_builtin_ops_with_an_int8_network_and_float_post_processing(exported):
    path, _, quantized = exported
    report = export.tflite_op_report(path)
    ops = report["ops"]
    assert not any(name.startswith(("CUSTOM", "FlexOp", "DELEGATE")) for name in ops), ops
    # Every convolution int8; decoding and NMS float.
    assert report["float_compute_ops"] == []
    assert ops.get("CONV_2D/int8") == len(FILTERS) + 3  # body and the three heads
    assert ops.get("NON_MAX_SUPPRESSION_V5/float32") == 1
    assert ops.get("QUANTIZE/float32") == 1  # the float input MediaPipe feeds
    assert "SOFTMAX/int8" not in ops and "LOGISTIC/int8" not in ops
    # The network computes what the fake-quant Keras model computes.
    images, _ = shapes(2, seed=[5, 2])
    raw = np.concatenate([raw for _, raw in run_file(path, images)])
    expected = np.asarray(quantized(images, training=False))
    span = expected.max() - expected.min()
    assert np.abs(raw - expected).mean() < 0.01 * span


def test_metadata_pairs_the_detection_outputs_and_names_the_classes(exported):
    path, metadata, _ = exported
    subgraph = metadata["subgraph_metadata"][0]
    units = subgraph["input_tensor_metadata"][0]["process_units"]
    assert units[0]["options"] == {"mean": [0.0], "std": [1.0]}  # pixels 0..255, as trained
    outputs = subgraph["output_tensor_metadata"]
    assert [item["name"] for item in outputs] == [
        "location", "category", "score", "number of detections"]
    assert outputs[0]["content"]["content_properties"]["index"] == [1, 0, 3, 2]
    assert outputs[1]["associated_files"][0]["name"] == "labels.txt"
    # Each metadata entry describes the file's output tensor in the same place.
    interpreter = litert.make_interpreter(str(path), num_threads=1)
    shapes_by_position = [tuple(item["shape"]) for item in interpreter.get_output_details()]
    assert shapes_by_position == [(1, 100, 4), (1, 100), (1, 100), (1,)]


def test_label_count_and_model_shape_must_fit(exported, tmp_path):
    _, _, quantized = exported
    path = tmp_path / "wrong.tflite"
    with pytest.raises(UserError, match="outputs 3 classes but the label file would have 2"):
        detection_mobile.export_mobile(quantized, dict(INFO, class_names=CLASSES[:2]), path)
    with pytest.raises(UserError, match="no class names"):
        detection_mobile.export_mobile(quantized, dict(INFO, class_names=[]), path)
    with pytest.raises(UserError, match="image_size=96"):
        detection_mobile.export_mobile(quantized, dict(INFO, image_size=96), path)
    with pytest.raises(UserError, match="iou_threshold=1.5"):
        detection_mobile.export_mobile(quantized, INFO, path,
                                       postprocess_settings={"iou_threshold": 1.5})
    classifier = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Flatten(),
                                   keras.layers.Dense(3)])
    with pytest.raises(UserError, match="raw YOLOv8 head"):
        detection_mobile.export_mobile(classifier, INFO, path)
    assert not path.exists()
