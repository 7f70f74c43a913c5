"""Segmentation metrics from one confusion matrix: Dice, IoU, pixel accuracy."""

import numpy as np

PRIMARY_METRIC = "dice"


def confusion_matrix(predict_fn, dataset, num_classes, ignore_label=None):
    """Pixel confusion matrix (rows: truth, columns: prediction) over a split.

    Pixels whose truth is `ignore_label` (void, e.g. 255 in Pascal VOC) are
    left out: they belong to no class, so they count neither way.
    """
    matrix = np.zeros((num_classes, num_classes), np.int64)
    for images, masks in dataset:
        scores = np.asarray(predict_fn(images.numpy()))
        predicted = (scores.argmax(-1) if scores.ndim == 4 else scores).astype(np.int64).ravel()
        truth = masks.numpy().astype(np.int64).ravel()
        if ignore_label is not None:
            labelled = truth != ignore_label
            truth, predicted = truth[labelled], predicted[labelled]
        matrix += np.bincount(
            truth * num_classes + predicted,
            minlength=num_classes * num_classes,
        ).reshape(num_classes, num_classes)
    return matrix


def scores_from_confusion(matrix, class_names, background_class=0):
    """Per-class Dice and IoU, their means, and pixel accuracy.

    `dice` and `mean_iou` average the classes present in the truth or the
    prediction; `dice` leaves out the background class (a model that paints
    everything background would otherwise score well).
    """
    true_positive = np.diag(matrix).astype(np.float64)
    false_positive = matrix.sum(0) - true_positive
    false_negative = matrix.sum(1) - true_positive
    present = (true_positive + false_positive + false_negative) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = 2 * true_positive / (2 * true_positive + false_positive + false_negative)
        iou = true_positive / (true_positive + false_positive + false_negative)
    foreground = present.copy()
    if background_class is not None:
        foreground[background_class] = False
    return {
        "dice": float(np.nanmean(np.where(foreground, dice, np.nan))) if foreground.any() else 0.0,
        "mean_iou": float(np.nanmean(np.where(present, iou, np.nan))),
        "pixel_accuracy": float(true_positive.sum() / max(matrix.sum(), 1)),
        "dice_per_class": {name: float(np.nan_to_num(value))
                           for name, value in zip(class_names, dice)},
        "iou_per_class": {name: float(np.nan_to_num(value))
                          for name, value in zip(class_names, iou)},
    }


def score(predict_fn, dataset, info):
    matrix = confusion_matrix(predict_fn, dataset, info["num_classes"],
                              info.get("ignore_label"))
    return scores_from_confusion(matrix, info["class_names"], info.get("background_class", 0))


def baseline_predict_fns(splits, info):
    """Every trivial or classic baseline by name (scored by `score` like the model).

    Binary tasks also get a per-image Otsu threshold, the classic answer to
    "bright objects on a dark background" (or the reverse).
    """
    baselines = {"majority_class": majority_predict_fn(splits, info)}
    if info["num_classes"] == 2:
        baselines["otsu_threshold"] = otsu_predict_fn(splits, info)
    return baselines


def _otsu_foreground(image):
    """Pixels above the image's own Otsu threshold (grey = mean of channels)."""
    from skimage.filters import threshold_otsu

    grey = np.asarray(image, np.float64).mean(-1)
    if grey.min() == grey.max():  # a flat image has no threshold
        return np.zeros(grey.shape, bool)
    return grey > threshold_otsu(grey)


def otsu_predict_fn(splits, info, max_batches=20):
    """Each image thresholded at its own Otsu level: class 1 above it and
    class 0 below, or the reverse when the training masks say the objects
    are darker than their surroundings (the polarity scoring the better
    Dice on training images, unaugmented where the splits have them)."""
    source = splits.calibration if splits.calibration is not None else splits.train
    above_is_one = np.zeros((2, 2), np.int64)  # confusion matrix of each polarity
    above_is_zero = np.zeros((2, 2), np.int64)
    ignore_label = info.get("ignore_label")
    for images, masks in source.take(max_batches):
        above = np.stack([_otsu_foreground(image) for image in images.numpy()])
        truth = masks.numpy().astype(np.int64)
        labelled = truth != ignore_label if ignore_label is not None else np.ones_like(truth, bool)
        for matrix, predicted in ((above_is_one, above.astype(np.int64)),
                                  (above_is_zero, (~above).astype(np.int64))):
            matrix += np.bincount(truth[labelled] * 2 + predicted[labelled],
                                  minlength=4).reshape(2, 2)
    background = info.get("background_class", 0)
    dice_one = scores_from_confusion(above_is_one, info["class_names"], background)["dice"]
    dice_zero = scores_from_confusion(above_is_zero, info["class_names"], background)["dice"]
    above_class = 1 if dice_one >= dice_zero else 0

    def predict(images):
        above = np.stack([_otsu_foreground(image) for image in np.asarray(images)])
        return np.where(above, above_class, 1 - above_class).astype(np.int64)
    predict.above_class = above_class  # for tests and reading the report's choice
    return predict


def majority_predict_fn(splits, info):
    """Every pixel gets the most frequent training class."""
    counts = np.zeros(info["num_classes"], np.int64)
    ignore_label = info.get("ignore_label")
    for _, masks in splits.train.take(20):
        labels = masks.numpy().ravel()
        if ignore_label is not None:
            labels = labels[labels != ignore_label]
        counts += np.bincount(labels, minlength=info["num_classes"])
    majority = int(counts.argmax())

    def predict(images):
        return np.full(np.asarray(images).shape[:3], majority, np.int64)
    return predict
