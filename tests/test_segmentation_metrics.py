import numpy as np
import pytest
import tensorflow as tf

from common.data import Splits
from tasks.segmentation import metrics

CLASSES = ["background", "a", "b"]


def _dataset(masks):
    images = np.zeros(masks.shape + (3,), np.float32)
    return tf.data.Dataset.from_tensor_slices((images, masks)).batch(2)


def _predictor(predictions):
    state = {"at": 0}

    def predict(images):
        start = state["at"]
        state["at"] += len(images)
        return predictions[start:start + len(images)]
    return predict


def test_perfect_prediction_scores_one():
    masks = np.random.default_rng(0).integers(0, 3, (4, 6, 6))
    info = {"num_classes": 3, "class_names": CLASSES, "background_class": 0}
    scores = metrics.score(_predictor(np.eye(3)[masks]), _dataset(masks), info)
    assert scores["dice"] == 1.0 and scores["mean_iou"] == 1.0 and scores["pixel_accuracy"] == 1.0


def test_hand_computed_case():
    truth = np.array([[[0, 1, 1, 2]]])      # one image, 4 pixels
    predicted = np.array([[[0, 1, 2, 2]]])
    info = {"num_classes": 3, "class_names": CLASSES, "background_class": 0}
    scores = metrics.score(_predictor(predicted), _dataset(truth), info)
    # class a: TP 1, FN 1 -> dice 2/3, IoU 1/2; class b: TP 1, FP 1 -> dice 2/3, IoU 1/2
    assert scores["dice_per_class"]["a"] == pytest.approx(2 / 3)
    assert scores["iou_per_class"]["b"] == pytest.approx(1 / 2)
    assert scores["dice"] == pytest.approx(2 / 3)            # background left out
    assert scores["mean_iou"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert scores["pixel_accuracy"] == pytest.approx(3 / 4)


def test_majority_baseline_paints_the_most_frequent_class():
    masks = np.zeros((4, 4, 4), np.int64)
    masks[:, :1] = 2
    splits = Splits(train=_dataset(masks), val=None, test=_dataset(masks))
    info = {"num_classes": 3, "class_names": CLASSES, "background_class": 0}
    predict = metrics.majority_predict_fn(splits, info)
    assert (predict(np.zeros((2, 4, 4, 3))) == 0).all()
    scores = metrics.score(predict, _dataset(masks), info)
    assert scores["dice"] == 0.0 and scores["pixel_accuracy"] == pytest.approx(0.75)
