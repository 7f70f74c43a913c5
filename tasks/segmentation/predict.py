"""Segment images with a trained model; writes a class-index mask and an overlay per image.

    python -m tasks.segmentation.predict photo.jpg other.png \\
        --model runs/segmentation-default/model_int8.tflite --out predictions/
"""

import os

import numpy as np
import tensorflow as tf
from PIL import Image

import tasks.segmentation as task
from common import artifacts, cli, data as data_lib, visualize
from tasks.segmentation import data as seg_data


def segment_image(raw_fn, image, info):
    """Class map at the image's own size for one uint8 (H, W, 3) image."""
    inputs = seg_data.model_inputs(image[None], info).numpy()
    logits = np.asarray(raw_fn(inputs))
    logits = tf.image.resize(logits, image.shape[:2], method="bilinear").numpy()
    return logits[0].argmax(-1).astype(np.uint8)


def run(argv=None):
    parser = cli.predict_parser(task, __doc__.splitlines()[0],
                                default_model="runs/segmentation-default/model.keras")
    args = parser.parse_args(argv)
    cfg, info, raw_fn = artifacts.load_for_predict(task, args)
    num_classes = info["num_classes"] if info else None
    # A run's info.json says what the model takes; a bare file gets the
    # configured size, colour and pixel / 255.
    model_info = info or {"image_size": cfg.data.image_size, "channels": 3,
                          "normalization": "scale"}
    written = []
    for path in args.inputs:
        image = data_lib.read_image(path, channels=3)
        mask = segment_image(raw_fn, image, model_info)
        stem = os.path.splitext(os.path.basename(path))[0]
        mask_path = os.path.join(args.out, f"{stem}_mask.png")
        Image.fromarray(mask).save(mask_path)
        colours = visualize.palette(num_classes or int(mask.max()) + 1)
        overlay_path = os.path.join(args.out, f"{stem}_overlay.png")
        Image.fromarray(visualize.overlay_mask(image, mask, colours)).save(overlay_path)
        counts = np.bincount(mask.ravel(), minlength=len(colours))
        names = info["class_names"] if info else [str(k) for k in range(len(colours))]
        share = ", ".join(f"{names[k]} {100 * c / mask.size:.1f}%" for k, c in enumerate(counts) if c)
        print(f"{path}: {mask_path} ({share})")
        written.append(mask_path)
    return written


def main(argv=None):
    return cli.command(run, argv)


if __name__ == "__main__":
    main()
