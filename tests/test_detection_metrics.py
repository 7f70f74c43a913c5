"""COCO mAP (pycocotools) against hand-computed cases, and the baseline."""

import numpy as np
import pytest
import tensorflow as tf

from common.data import Splits
from tasks.detection import metrics

GT_BOX = [10, 10, 30, 30]


def _detections(*rows):
    """rows of (box, class, score) -> (boxes, classes, scores) arrays."""
    if not rows:
        return np.zeros((0, 4)), np.zeros(0, int), np.zeros(0)
    boxes, classes, scores = zip(*rows)
    return np.array(boxes, np.float32), np.array(classes), np.array(scores, np.float32)


def _truth(*rows):
    boxes, classes = zip(*rows)
    return np.array(boxes, np.float32), np.array(classes)


def test_perfect_detections_score_one():
    truth = [_truth((GT_BOX, 0), ([40, 40, 60, 70], 1)), _truth(([0, 0, 20, 20], 1))]
    found = [_detections((GT_BOX, 0, 0.9), ([40, 40, 60, 70], 1, 0.8)),
             _detections(([0, 0, 20, 20], 1, 0.7))]
    result = metrics.coco_map(truth, found, num_classes=2)
    assert result["map50"] == pytest.approx(1.0)
    assert result["map"] == pytest.approx(1.0)
    assert result["ap50_per_class"] == pytest.approx([1.0, 1.0])


def test_one_of_two_objects_missed():
    # Recall reaches 0.5 at precision 1: COCO's 101 recall points 0.00..0.50
    # have precision 1, the other 50 have 0 -> AP = 51 / 101.
    truth = [_truth((GT_BOX, 0)), _truth(([50, 50, 70, 70], 0))]
    found = [_detections((GT_BOX, 0, 0.9)), _detections()]
    result = metrics.coco_map(truth, found, num_classes=1)
    assert result["map50"] == pytest.approx(51 / 101)


def test_false_positive_ranked_first_halves_precision():
    # Ranked: false positive (0.9), then the true positive (0.8): precision
    # 0.5 at recall 1, interpolated to every recall point -> AP = 0.5.
    truth = [_truth((GT_BOX, 0))]
    found = [_detections(([60, 60, 80, 80], 0, 0.9), (GT_BOX, 0, 0.8))]
    assert metrics.coco_map(truth, found, 1)["map50"] == pytest.approx(0.5)
    # Ranked the other way round the false positive costs nothing.
    found = [_detections(([60, 60, 80, 80], 0, 0.1), (GT_BOX, 0, 0.8))]
    assert metrics.coco_map(truth, found, 1)["map50"] == pytest.approx(1.0)


def test_loose_box_counts_at_iou_half_only():
    # Box [10, 10, 30, 35] against [10, 10, 30, 30]: IoU = 400 / 500 = 0.8,
    # a match at thresholds 0.50 ... 0.80 (7 of 10) -> mAP 0.7, AP75 1.
    truth = [_truth((GT_BOX, 0))]
    found = [_detections(([10, 10, 30, 35], 0, 0.9))]
    result = metrics.coco_map(truth, found, 1)
    assert result["map50"] == pytest.approx(1.0)
    assert result["map75"] == pytest.approx(1.0)
    assert result["map"] == pytest.approx(0.7)
    # Box [10, 10, 30, 40]: IoU 400 / 600 = 0.67, a match at 0.50 ... 0.65 -> 4 of 10.
    found = [_detections(([10, 10, 30, 40], 0, 0.9))]
    result = metrics.coco_map(truth, found, 1)
    assert result["map75"] == pytest.approx(0.0)
    assert result["map"] == pytest.approx(0.4)


def test_wrong_class_scores_zero_and_per_class_ap():
    truth = [_truth((GT_BOX, 0), ([40, 40, 60, 60], 1))]
    found = [_detections((GT_BOX, 1, 0.9), ([40, 40, 60, 60], 1, 0.8))]
    result = metrics.coco_map(truth, found, 3)
    # Class 0 missed, class 1 found after one false positive, class 2 absent.
    assert result["ap50_per_class"][0] == pytest.approx(0.0)
    assert result["ap50_per_class"][1] == pytest.approx(0.5)
    assert np.isnan(result["ap50_per_class"][2])
    assert result["map50"] == pytest.approx(0.25)


def test_no_detections_scores_zero():
    result = metrics.coco_map([_truth((GT_BOX, 0))], [_detections()], 1)
    assert result["map50"] == 0.0 and result["map"] == 0.0


def _dataset(targets_per_image, size=64):
    targets = np.stack(targets_per_image).astype(np.float32)
    images = np.zeros((len(targets), size, size, 3), np.float32)
    return tf.data.Dataset.from_tensor_slices((images, targets)).batch(2)


def test_evaluate_and_baseline_use_the_same_scoring():
    padded = np.full((3, 5), -1.0)
    first = padded.copy()
    first[0] = [10, 10, 30, 30, 0]
    second = padded.copy()
    second[0] = [12, 10, 32, 30, 0]
    second[1] = [40, 40, 50, 60, 1]
    dataset = _dataset([first, second])
    info = {"class_names": ["a", "b"]}

    def oracle(images):  # the one batch of two images -> its ground truth
        targets = np.stack([first, second])
        return {"boxes": targets[..., :4], "classes": targets[..., 4].astype(int),
                "scores": np.where(targets[..., 4] >= 0, 0.9, 0.0),
                "num_detections": (targets[..., 4] >= 0).sum(-1)}

    assert metrics.score(oracle, dataset, info)["map50"] == pytest.approx(1.0)
    baseline = metrics.mean_box_predict_fn(Splits(dataset, dataset, dataset, info), info)
    detections = baseline(np.zeros((2, 64, 64, 3)))
    # The mean box of class 0 is [11, 10, 31, 30]; class 1 has one box.
    np.testing.assert_allclose(detections["boxes"][0, 0], [11, 10, 31, 30])
    np.testing.assert_allclose(detections["scores"][0], [2 / 3, 1 / 3], rtol=1e-6)
    scored = metrics.score(baseline, dataset, info)
    # Class 0: the mean box overlaps both truths at IoU 380 / 420 = 0.905, a
    # match at thresholds 0.50 ... 0.90 -> AP50 1, AP 0.9. Class 1: its box is
    # predicted in both images (score 1/3, a tie ranked in image order): the
    # false positive in image 1 first, then the exact hit -> AP 0.5 at every
    # threshold. mAP50 = 0.75, mAP = (0.9 + 0.5) / 2.
    assert scored["ap50_per_class"] == pytest.approx([1.0, 0.5])
    assert scored["map50"] == pytest.approx(0.75)
    assert scored["map"] == pytest.approx(0.7)
    assert scored["images"] == 2 and scored["detections_per_image"] == 2.0
