"""Boxes with class names and scores drawn onto copies of images."""

import numpy as np
from PIL import Image, ImageDraw

from common import visualize


def colours(num_classes):
    # Skip the palette's dark grey (class 0 there is "background").
    return visualize.palette(num_classes + 1)[1:]


def draw_detections(image, boxes, classes, scores, class_names, threshold=0.0, scale=1):
    """A uint8 copy of `image` (upscaled by `scale`) with one labelled box per
    detection scoring at least `threshold`; `scores=None` draws ground truth."""
    picture = Image.fromarray(np.asarray(image, np.uint8))
    if scale != 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    canvas = ImageDraw.Draw(picture)
    palette = colours(len(class_names))
    for index, (box, class_id) in enumerate(zip(boxes, classes)):
        score = None if scores is None else float(scores[index])
        if class_id < 0 or (score is not None and score < threshold):
            continue
        colour = tuple(int(c) for c in palette[int(class_id) % len(palette)])
        x1, y1, x2, y2 = (float(v) * scale for v in box)
        canvas.rectangle([x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)], outline=colour, width=2)
        label = class_names[int(class_id)] + ("" if score is None else f" {score:.2f}")
        text_box = canvas.textbbox((x1, y1), label)
        text_top = max(0, y1 - (text_box[3] - text_box[1]) - 2)
        canvas.rectangle([x1, text_top, x1 + text_box[2] - text_box[0] + 2,
                          text_top + text_box[3] - text_box[1] + 2], fill=colour)
        canvas.text((x1 + 1, text_top), label, fill=(255, 255, 255))
    return np.asarray(picture)
