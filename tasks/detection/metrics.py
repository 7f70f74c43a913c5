"""COCO mAP with the reference evaluator (pycocotools), and a trivial baseline.

Ground truth and detections are built as COCO dictionaries in memory, so the
numbers are exactly those the COCO toolkit reports: `map50` is AP at IoU 0.5,
`map` the mean over IoU 0.5:0.95, both over 101 recall points and up to 100
detections per image.
"""

import contextlib
import io

import numpy as np

from tasks.detection import postprocess
from tasks.detection.boxes import unpack_targets, xyxy_to_xywh


def _coco_ground_truth(images, num_classes):
    """`images`: list of (boxes (N, 4) xyxy, classes (N,)) per image."""
    annotations = []
    for image_id, (boxes, classes) in enumerate(images):
        for box, class_id in zip(xyxy_to_xywh(boxes), classes):
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": int(class_id),
                "bbox": [float(v) for v in box],
                "area": float(box[2] * box[3]),
                "iscrowd": 0,
            })
    return {
        "images": [{"id": i} for i in range(len(images))],
        "annotations": annotations,
        "categories": [{"id": c} for c in range(num_classes)],
    }


def coco_map(ground_truth, detections, num_classes):
    """COCO box AP.

    ground_truth: per image (boxes (N, 4) xyxy, classes (N,)).
    detections: per image (boxes (K, 4) xyxy, classes (K,), scores (K,)).
    Returns {"map", "map50", "map75", "ap50_per_class": [...]} where a class
    with no ground truth gets NaN in the per-class list.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if len(ground_truth) != len(detections):
        raise ValueError(
            f"{len(ground_truth)} ground-truth images but {len(detections)} "
            "detection lists"
        )
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = _coco_ground_truth(ground_truth, num_classes)
        coco_gt.createIndex()
        results = []
        for image_id, (boxes, classes, scores) in enumerate(detections):
            for box, class_id, score in zip(xyxy_to_xywh(boxes), classes, scores):
                results.append({
                    "image_id": image_id, "category_id": int(class_id),
                    "bbox": [float(v) for v in box], "score": float(score),
                })
        has_objects = len(coco_gt.dataset["annotations"]) > 0
        if not results or not has_objects:
            return {"map": 0.0, "map50": 0.0, "map75": 0.0,
                    "ap50_per_class": [0.0] * num_classes}
        coco_dt = coco_gt.loadRes(results)
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    # precision: [IoU thresholds, recall points, classes, area ranges, max dets]
    precision = evaluator.eval["precision"][0, :, :, 0, -1]
    per_class = []
    for class_index in range(num_classes):
        values = precision[:, class_index]
        per_class.append(float(np.mean(values)) if np.all(values > -1) else float("nan"))
    stats = evaluator.stats
    return {"map": float(max(stats[0], 0.0)), "map50": float(max(stats[1], 0.0)),
            "map75": float(max(stats[2], 0.0)), "ap50_per_class": per_class}


def score(predict_fn, dataset, info):
    """Score `predict_fn` (images -> detections dict) on a batched dataset.

    Detections are `{"boxes", "classes", "scores", "num_detections"}` in the
    model's input pixels, as `postprocess.postprocess` returns them.
    """
    ground_truth, detections = [], []
    for images, targets in dataset:
        outputs = predict_fn(np.asarray(images))
        targets = np.asarray(targets)
        for index in range(len(targets)):
            ground_truth.append(unpack_targets(targets[index]))
            count = int(outputs["num_detections"][index])
            detections.append((outputs["boxes"][index, :count],
                               outputs["classes"][index, :count],
                               outputs["scores"][index, :count]))
    result = coco_map(ground_truth, detections, len(info["class_names"]))
    result["images"] = len(ground_truth)
    result["detections_per_image"] = float(
        np.mean([len(d[1]) for d in detections])) if detections else 0.0
    return result


def class_statistics(dataset, num_classes):
    """Frequency and mean box (xyxy) of each class in a batched dataset."""
    counts = np.zeros(num_classes)
    box_sums = np.zeros((num_classes, 4))
    for _, targets in dataset:
        for target in np.asarray(targets):
            boxes, classes = unpack_targets(target)
            np.add.at(counts, classes, 1)
            np.add.at(box_sums, classes, boxes)
    mean_boxes = box_sums / np.maximum(counts, 1)[:, None]
    return counts / max(counts.sum(), 1), mean_boxes


def baseline_predict_fns(splits, info):
    """Every baseline by name (scored by `score` like the model): the trivial
    `mean_box` and the classic `otsu_components` (see its docstring)."""
    return {"mean_box": mean_box_predict_fn(splits, info),
            "otsu_components": otsu_components_predict_fn(splits, info)}


def _unaugmented_training(splits):
    """The training split as the model sees it before augmentation: the
    fixed `calibration` split when the task built one, else `train`."""
    calibration = getattr(splits, "calibration", None)
    return calibration if calibration is not None else splits.train


def mean_box_predict_fn(splits, info):
    """The trivial detector: every image gets each class's mean training box,
    scored by how frequent the class is. It sees no pixels."""
    num_classes = len(info["class_names"])
    frequency, mean_boxes = class_statistics(_unaugmented_training(splits), num_classes)
    present = np.nonzero(frequency > 0)[0]

    def predict(images):
        batch = len(images)
        count = len(present)
        return {
            "boxes": np.repeat(mean_boxes[present][None], batch, 0).astype(np.float32),
            "classes": np.repeat(present[None], batch, 0),
            "scores": np.repeat(frequency[present][None], batch, 0).astype(np.float32),
            "num_detections": np.full(batch, count, np.int64),
        }
    return predict


# --- The classic baseline: threshold, connected components, a small classifier

# Training images the baseline learns its polarity and classifier from.
CLASSIC_TRAIN_IMAGES = 300
# A component matches a training box (and takes its class) at this IoU.
CLASSIC_MATCH_IOU = 0.5
_FEATURE_NAMES = ("log_area", "width", "height", "aspect", "extent", "mean", "std")


def _grey(image):
    return np.asarray(image, np.float32).mean(axis=-1)


def _components(image, brighter):
    """Per-image Otsu threshold, a 3x3 opening against specks, holes filled,
    connected components: their boxes (xyxy) and region features."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    grey = _grey(image)
    if grey.max() == grey.min():
        return np.zeros((0, 4), np.float32), np.zeros((0, len(_FEATURE_NAMES)), np.float32)
    level = threshold_otsu(grey)
    foreground = grey > level if brighter else grey < level
    foreground = ndimage.binary_fill_holes(ndimage.binary_opening(foreground, np.ones((3, 3))))
    labels, _ = ndimage.label(foreground)
    centre, spread = float(np.median(grey)), max(float(grey.std()), 1e-6)
    boxes, features = [], []
    for index, window in enumerate(ndimage.find_objects(labels), start=1):
        if window is None:
            continue
        mask = labels[window] == index
        rows, cols = window
        width, height = cols.stop - cols.start, rows.stop - rows.start
        values = grey[window][mask]
        boxes.append([cols.start, rows.start, cols.stop, rows.stop])
        features.append([np.log(mask.sum()), width, height, width / height,
                         mask.sum() / (width * height), (values.mean() - centre) / spread,
                         values.std() / spread])
    return (np.array(boxes, np.float32).reshape(-1, 4),
            np.array(features, np.float32).reshape(-1, len(_FEATURE_NAMES)))


def _objects_are_brighter(pairs):
    """Whether the labelled objects are brighter than the rest of their image
    in most training images (then the threshold keeps the bright side)."""
    votes = []
    for image, (boxes, _) in pairs:
        grey = _grey(image)
        inside = np.zeros(grey.shape, bool)
        for x1, y1, x2, y2 in np.round(boxes).astype(int):
            inside[max(y1, 0):y2, max(x1, 0):x2] = True
        if inside.any() and not inside.all():
            votes.append(grey[inside].mean() > grey[~inside].mean())
    return not votes or np.mean(votes) >= 0.5


def otsu_components_predict_fn(splits, info, max_images=CLASSIC_TRAIN_IMAGES):
    """The classic detector a practitioner tries first on objects that stand
    out from their background (cells, coins, parts on a belt), as
    CellProfiler's or ImageJ's "analyze particles" do: threshold each image
    at its own Otsu level, take the connected components as objects, box
    them, and name each with a classifier on its region measurements (size,
    shape, brightness), here a random forest fitted on the components of the
    training images matched to their labelled boxes (unmatched ones teach it
    "no object"). Its score is the forest's probability of the class. It needs
    no training of a network; a detector is only worth its cost if it beats
    this. Which side of the threshold is "object" is learnt from the
    training boxes."""
    from sklearn.ensemble import RandomForestClassifier

    from tasks.detection.boxes import iou_matrix

    num_classes = len(info["class_names"])
    pairs = []
    for images, targets in _unaugmented_training(splits):
        for image, target in zip(np.asarray(images), np.asarray(targets)):
            pairs.append((image, unpack_targets(target)))
            if len(pairs) >= max_images:
                break
        if len(pairs) >= max_images:
            break
    brighter = _objects_are_brighter(pairs)
    features, labels = [], []
    for image, (truth_boxes, truth_classes) in pairs:
        boxes, region_features = _components(image, brighter)
        if not len(boxes):
            continue
        labels_here = np.full(len(boxes), num_classes)  # num_classes: no object
        if len(truth_boxes):
            overlaps = iou_matrix(boxes, truth_boxes)
            best = overlaps.argmax(axis=1)
            matched = overlaps.max(axis=1) >= CLASSIC_MATCH_IOU
            labels_here[matched] = truth_classes[best[matched]]
        features.append(region_features)
        labels.append(labels_here)
    classifier = None
    if labels and len(np.unique(np.concatenate(labels))) > 1:
        classifier = RandomForestClassifier(n_estimators=100, min_samples_leaf=2,
                                            random_state=0)
        classifier.fit(np.concatenate(features), np.concatenate(labels))

    def classify(region_features):
        """(classes, scores) of components; all "no object" without a classifier."""
        if classifier is None or not len(region_features):
            return (np.zeros(len(region_features), np.int64),
                    np.zeros(len(region_features), np.float32))
        probabilities = np.zeros((len(region_features), num_classes + 1))
        probabilities[:, classifier.classes_] = classifier.predict_proba(region_features)
        classes = probabilities[:, :num_classes].argmax(axis=1)
        return classes, probabilities[np.arange(len(classes)), classes]

    def predict(images):
        found = []
        for image in np.asarray(images):
            boxes, region_features = _components(image, brighter)
            classes, scores = classify(region_features)
            keep = scores > 0
            found.append((boxes[keep], classes[keep], scores[keep]))
        return postprocess.pad_detections(found)
    return predict
