"""COCO mAP with the reference evaluator (pycocotools), and a trivial baseline.

Ground truth and detections are built as COCO dictionaries in memory, so the
numbers are exactly those the COCO toolkit reports: `map50` is AP at IoU 0.5,
`map` the mean over IoU 0.5:0.95, both over 101 recall points and up to 100
detections per image.
"""

import contextlib
import io

import numpy as np

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
    """Every trivial baseline by name (scored by `score` like the model)."""
    return {"mean_box": mean_box_predict_fn(splits, info)}


def mean_box_predict_fn(splits, info):
    """The trivial detector: every image gets each class's mean training box,
    scored by how frequent the class is. It sees no pixels."""
    num_classes = len(info["class_names"])
    frequency, mean_boxes = class_statistics(splits.train, num_classes)
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
