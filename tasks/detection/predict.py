"""Detect objects in images with a trained model; draws labelled boxes onto copies.

    python -m tasks.detection.predict photo.jpg other.png \\
        --model runs/detection-default/model_int8.tflite --out predictions/
"""

import os

import numpy as np
from PIL import Image

import tasks.detection as task
from common import artifacts, cli, data as data_lib
from common.errors import DataError
from tasks.detection.boxes import scale_boxes
from tasks.detection.draw import draw_detections
from tasks.detection.serving import resize_for_model


def detect_image(predict_fn, image, image_size):
    """Detections for one uint8 (H, W, 3) image, boxes in its own pixels."""
    resized = resize_for_model(image, image_size).numpy()[None]
    detections = predict_fn(resized)
    count = int(detections["num_detections"][0])
    height, width = image.shape[:2]
    boxes = scale_boxes(detections["boxes"][0, :count], width / image_size, height / image_size)
    return boxes, detections["classes"][0, :count], detections["scores"][0, :count]


def run(argv=None):
    parser = cli.predict_parser(task, __doc__.splitlines()[0],
                                default_model="runs/detection-default/model_int8.tflite")
    parser.add_argument("--threshold", type=float, default=None,
                        help="lowest score drawn (default: postprocess.display_threshold)")
    args = parser.parse_args(argv)
    cfg, info, raw_fn = artifacts.load_for_predict(task, args)
    # A run on a user's folder trains at the folder's own size (info.json).
    cfg.model.image_size = info.get("image_size", cfg.model.image_size) if info \
        else cfg.model.image_size
    if not info or "class_names" not in info:
        raise DataError(
            f"{args.model}: no info.json with class names beside the model")
    threshold = cfg.postprocess.display_threshold if args.threshold is None else args.threshold
    predict_fn = task.predict_fn_from_raw(raw_fn, cfg, info)
    written = []
    for path in args.inputs:
        image = data_lib.read_image(path, channels=3)
        boxes, classes, scores = detect_image(predict_fn, image, cfg.model.image_size)
        shown = scores >= threshold
        drawn = draw_detections(image, boxes, classes, scores, info["class_names"], threshold)
        stem = os.path.splitext(os.path.basename(path))[0]
        out_path = os.path.join(args.out, f"{stem}_detections.png")
        Image.fromarray(drawn).save(out_path)
        found = ", ".join(f"{info['class_names'][c]} {s:.2f} at {np.round(b).astype(int).tolist()}"
                          for b, c, s in zip(boxes[shown], classes[shown], scores[shown]))
        print(f"{path}: {out_path} ({int(shown.sum())} objects{': ' + found if found else ''})")
        written.append(out_path)
    return written


def main(argv=None):
    return cli.command(run, argv)


if __name__ == "__main__":
    main()
