"""The whole flow on the smoke preset: train, QAT, export, evaluate the INT8
file end to end, serve, predict; and NMS parity on the INT8 model's outputs.

QAT runs (one short epoch, capped at 12 steps: tracing the fake-quant graph
costs minutes on two cores), so `model_int8.tflite` is the QAT export. The
post-training INT8 export is skipped here to save its conversion (another
minute or more); the super-resolution and sentiment runs check it."""

import csv
import io
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from common.litert import LiteRTModel
import tasks.detection as task
from common import artifacts, export, pipeline
from tasks.detection import postprocess, serving, train
from tasks.detection import predict as predict_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("detection")
    out, export_dir = str(root / "run"), str(root / "saved_models")
    report = train.main(["--preset", "smoke", "--out", out, "--export-dir", export_dir,
                         "--set", "qat.steps_per_epoch=12",
                         "--set", "export.post_training_int8=false"])
    return report, out


def _test_images(count=8):
    from tasks.detection import synthetic

    # The smoke run's test split: seed 0, split index 2.
    return synthetic.make_split(count, 64, 3, 20, seed=[0, 2])


def test_report_follows_the_contract(run):
    report, out = run
    assert report["primary_metric"] == "map50"
    assert set(report["metrics"]) >= {"float", "tflite_float", "int8", "baselines", "baseline"}
    assert "ptq_int8" not in report["metrics"]
    assert set(report["metrics"]["baselines"]) == {"mean_box", "otsu_components"}
    # On clutter the classic Otsu + components detector beats a smoke model
    # (0.239 vs about 0.15); the default preset beats it (0.846 vs 0.182).
    assert report["metrics"]["baseline"]["name"] == "otsu_components"
    for key in ("map50", "map", "ap50_per_class"):
        assert key in report["metrics"]["int8"]
    assert report["stages"]["qat"]["finished"]
    for picture in ("samples.png", "training_curves.png", "metrics.png"):
        assert os.path.getsize(os.path.join(out, picture)) > 5000


def test_smoke_run_learns(run):
    report, out = run
    metrics = report["metrics"]
    assert metrics["float"]["map50"] > 0.08
    # Learning: far above the trivial baseline that sees no pixels.
    assert metrics["float"]["map50"] > 5 * metrics["baselines"]["mean_box"]["map50"]
    with open(os.path.join(out, "stages", "float", "history.csv")) as handle:
        losses = [float(row["loss"]) for row in csv.DictReader(handle)]
    assert losses[-1] < 0.7 * losses[0]


def test_qat_int8_file_is_integer_small_and_scores_like_float(run):
    report, out = run
    # The QAT file itself, read back: every convolution runs on int8.
    ops = export.tflite_op_report(os.path.join(out, report["artifacts"]["tflite_int8"]))
    assert ops["ops"] == report["int8_ops"]["tflite_int8"]["ops"]
    assert ops["float_compute_ops"] == [] and ops["float_ops"] == []
    assert [key for key in ops["ops"] if key.startswith("CONV_2D/")] == ["CONV_2D/int8"]
    assert ops["ops"]["CONV_2D/int8"] >= 50
    assert report["sizes_bytes"]["tflite_int8"] < 0.5 * report["sizes_bytes"]["tflite_float"]
    metrics = report["metrics"]
    assert metrics["tflite_float"]["map50"] == pytest.approx(metrics["float"]["map50"], abs=0.01)
    # QAT keeps float's quality: within 0.05 mAP@0.5 on 64 test images
    # (measured: float 0.155, QAT INT8 0.147, post-training INT8 0.151).
    assert abs(metrics["int8"]["map50"] - metrics["float"]["map50"]) < 0.05
    assert metrics["int8"]["map50"] > 5 * metrics["baselines"]["mean_box"]["map50"]


def test_int8_nms_agrees_with_the_saved_model_nms(run):
    _, out = run
    images, _ = _test_images()
    raw = LiteRTModel(os.path.join(out, "model_int8.tflite"))(images.astype(np.float32))
    box_logits, class_logits = postprocess.split_raw(raw)
    settings = dict(score_threshold=0.05, iou_threshold=0.6, max_detections=50)
    host = postprocess.postprocess(raw, 64, **settings)
    graph = serving.detect_batch(box_logits, class_logits, 64, **settings)
    assert host["num_detections"].sum() > 0
    np.testing.assert_array_equal(host["num_detections"], graph["num_detections"].numpy())
    np.testing.assert_array_equal(host["classes"], graph["classes"].numpy())
    np.testing.assert_allclose(host["scores"], graph["scores"].numpy(), atol=1e-6)
    np.testing.assert_allclose(host["boxes"], graph["boxes"].numpy(), atol=1e-3)


def test_saved_model_takes_bytes_or_uint8_of_any_size(run):
    report, _ = run
    loaded = tf.saved_model.load(os.path.join(run[1], report["artifacts"]["saved_model"]))
    images, _ = _test_images(1)
    big = np.asarray(Image.fromarray(images[0]).resize((150, 90), Image.BILINEAR))
    encoded = io.BytesIO()
    Image.fromarray(big).save(encoded, format="PNG")
    from_bytes = loaded.signatures["serving_default"](
        images=tf.constant([encoded.getvalue()]))
    from_pixels = loaded.signatures["detect_images"](images=tf.constant(big[None]))
    count = int(from_bytes["num_detections"][0])
    assert count > 0 and count == int(from_pixels["num_detections"][0])
    np.testing.assert_allclose(from_bytes["boxes"][0], from_pixels["boxes"][0], atol=1e-3)
    boxes = from_bytes["boxes"][0, :count].numpy()
    assert boxes[:, 0].min() >= 0 and boxes[:, 2].max() <= 150 and boxes[:, 3].max() <= 90
    assert boxes[:, 2].max() > 64  # in the 150-pixel input's coordinates, not the model's
    names = from_bytes["class_names"][0, :count].numpy().astype(str)
    assert set(names) <= {"circle", "square", "triangle"}
    # Same detections as the host pipeline on the float model.
    cfg = task.Config()
    cfg.model.image_size = 64
    host = task.predict_fn_from_raw(
        artifacts.load_raw_fn(task, os.path.join(run[1], "model.keras")), cfg,
        {"class_names": ["circle", "square", "triangle"]})
    host_boxes, host_classes, host_scores = predict_cli.detect_image(host, big, 64)
    np.testing.assert_allclose(from_bytes["scores"][0, :count], host_scores, atol=1e-4)
    np.testing.assert_allclose(boxes, host_boxes, atol=0.05)


def test_evaluate_cli_scores_the_int8_file_end_to_end(run, capsys):
    report, out = run
    capsys.readouterr()
    # What `python -m tasks.detection.evaluate FILE` runs.
    pipeline.run_evaluate(task, [os.path.join(out, "model_int8.tflite")])
    scored = json.loads(capsys.readouterr().out)
    assert scored["metrics"]["map50"] == pytest.approx(report["metrics"]["int8"]["map50"],
                                                       abs=1e-6)


def test_predict_draws_labelled_boxes(run, tmp_path):
    _, out = run
    images, _ = _test_images(1)
    Image.fromarray(images[0]).resize((128, 96)).save(tmp_path / "photo.png")
    written = predict_cli.run([str(tmp_path / "photo.png"), "--model",
                               os.path.join(out, "model_int8.tflite"), "--out", str(tmp_path),
                               "--threshold", "0.01"])
    drawn = np.asarray(Image.open(written[0]))
    original = np.asarray(Image.open(tmp_path / "photo.png"))
    assert drawn.shape == original.shape
    assert np.any(drawn != original)  # boxes and labels were drawn


def test_mobile_file_has_nms_inside_and_scores_like_the_qat_file(run):
    report, out = run
    assert report["artifacts"]["tflite_mobile"] == "model_mobile.tflite"
    assert os.path.exists(os.path.join(out, "model_mobile.tflite"))
    ops = report["int8_ops"]["tflite_mobile"]
    assert ops["float_compute_ops"] == []
    assert ops["ops"]["CONV_2D/int8"] >= 50
    assert ops["ops"]["NON_MAX_SUPPRESSION_V5/float32"] == 1
    assert not any(name.startswith(("CUSTOM", "Flex")) for name in ops["ops"])
    metrics = report["metrics"]
    qat = metrics.get("qat_int8", metrics["int8"])
    # Scored by MediaPipe's ObjectDetector on the same test split (issue 14's
    # budget: mAP@0.5 within 0.02; measured 0.1442 vs 0.1469).
    assert abs(metrics["mobile"]["map50"] - qat["map50"]) <= 0.02
