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


def test_void_pixels_are_left_out_of_the_confusion_matrix():
    truth = np.array([[[0, 1, 255, 255]]])
    # Whatever is predicted on void pixels must not count.
    predicted = np.array([[[0, 1, 2, 0]]])
    info = {"num_classes": 3, "class_names": CLASSES, "background_class": 0,
            "ignore_label": 255}
    matrix = metrics.confusion_matrix(_predictor(predicted), _dataset(truth), 3, 255)
    assert matrix.sum() == 2 and matrix[0, 0] == 1 and matrix[1, 1] == 1
    scores = metrics.score(_predictor(predicted), _dataset(truth), info)
    assert scores["pixel_accuracy"] == 1.0 and scores["dice"] == 1.0


def test_majority_baseline_ignores_void_pixels():
    masks = np.full((4, 4, 4), 255, np.int64)  # mostly void
    masks[:, 0] = 2
    splits = Splits(train=_dataset(masks), val=None, test=_dataset(masks))
    info = {"num_classes": 3, "class_names": CLASSES, "background_class": 0,
            "ignore_label": 255}
    predict = metrics.majority_predict_fn(splits, info)
    assert (predict(np.zeros((1, 4, 4, 3))) == 2).all()



def _objects_on_background(count, object_level, background_level, seed=0):
    """Greyscale images (N, 16, 16, 1) with one square object each; every
    image has its own exposure (gain and offset) and a little noise."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((count, 16, 16), np.int64)
    images = np.zeros((count, 16, 16, 1), np.float32)
    for index in range(count):
        top, left = rng.integers(0, 10, 2)
        masks[index, top:top + 6, left:left + 6] = 1
        gain, offset = rng.uniform(0.2, 1.0), rng.uniform(-0.5, 0.5)
        levels = np.where(masks[index] == 1, object_level, background_level)
        images[index, ..., 0] = offset + gain * (levels + rng.normal(0, 0.05, (16, 16)))
    return images, masks


def _splits(images, masks):
    dataset = tf.data.Dataset.from_tensor_slices((images, masks)).batch(4)
    return Splits(train=dataset, val=dataset, test=dataset, calibration=dataset)


@pytest.mark.parametrize("object_level, background_level, above_class",
                         [(1.0, 0.0, 1), (0.0, 1.0, 0)])
def test_otsu_baseline_finds_objects_brighter_or_darker_than_the_background(
        object_level, background_level, above_class):
    info = {"num_classes": 2, "class_names": ["background", "object"], "background_class": 0}
    images, masks = _objects_on_background(8, object_level, background_level)
    predict = metrics.baseline_predict_fns(_splits(images, masks), info)["otsu_threshold"]
    # The polarity comes from the training masks.
    assert predict.above_class == above_class
    test_images, test_masks = _objects_on_background(8, object_level, background_level, seed=1)
    scores = metrics.score(predict, _dataset_of(test_images, test_masks), info)
    assert scores["dice"] > 0.95
    # A flat image has no threshold: all background, no error.
    assert (predict(np.zeros((1, 16, 16, 1))) == 1 - above_class).all()


def test_otsu_is_offered_for_two_classes_only():
    masks = np.zeros((4, 4, 4), np.int64)
    info = {"num_classes": 3, "class_names": CLASSES, "background_class": 0}
    splits = Splits(train=_dataset(masks), val=None, test=_dataset(masks))
    assert set(metrics.baseline_predict_fns(splits, info)) == {"majority_class"}


def _dataset_of(images, masks):
    return tf.data.Dataset.from_tensor_slices((images, masks)).batch(4)

def _loss_and_accuracy(ignore_label=255, label_smoothing=0.0):
    from tasks.segmentation.model import MaskedPixelAccuracy, MaskedSparseCrossentropy

    return (MaskedSparseCrossentropy(3, ignore_label, label_smoothing),
            MaskedPixelAccuracy(ignore_label))


def test_training_loss_and_accuracy_leave_void_pixels_out():
    import keras

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 4, 4, 3)).astype("float32")
    labels = rng.integers(0, 3, (2, 4, 4)).astype("int32")
    loss, accuracy = _loss_and_accuracy()
    # Without void pixels: exactly Keras's sparse cross-entropy.
    keras_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    np.testing.assert_allclose(float(loss(labels, logits)), float(keras_loss(labels, logits)),
                               rtol=1e-5)
    # Void pixels: their logits do not matter, and the loss is the mean over
    # the labelled pixels only (not pulled towards class 0, not diluted).
    void = labels.copy()
    void[:, :2] = 255
    changed = logits.copy()
    changed[:, :2] = rng.normal(size=changed[:, :2].shape) * 10
    np.testing.assert_allclose(float(loss(void, logits)), float(loss(void, changed)),
                               rtol=1e-6)
    per_image = [float(keras_loss(labels[i, 2:], logits[i, 2:])) for i in range(2)]
    np.testing.assert_allclose(float(loss(void, logits)), np.mean(per_image), rtol=1e-5)
    assert np.isfinite(float(_loss_and_accuracy(label_smoothing=0.1)[0](void, logits)))
    # Accuracy: a perfect prediction on the labelled pixels scores 1.
    perfect = np.eye(3, dtype="float32")[np.where(void == 255, 0, void)]
    perfect[void == 255] = [0.0, 0.0, 1.0]  # "wrong" on void pixels: must not count
    accuracy.update_state(void, perfect)
    assert float(accuracy.result()) == 1.0


def test_compile_args_use_the_configured_ignore_label():
    from common import config
    from tasks.segmentation import PRESETS, Config
    from tasks.segmentation.model import compile_args

    cfg = config.from_preset(Config, PRESETS, "smoke")
    args = compile_args(cfg, {"num_classes": 3, "ignore_label": 7})
    assert args["loss"].ignore_label == 7
    assert args["metrics"][0].ignore_label == 7 and args["metrics"][0].name == "pixel_accuracy"
    assert cfg.data.ignore_label == 255
