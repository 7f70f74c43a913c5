"""The built-in dataset: shapes on cluttered backgrounds, with exact boxes.

Each image holds 1-6 objects of up to five shape classes, of varied size
(from 12 px up to almost half the image) and colour, that may overlap
(each stays at least half visible), on a noisy gradient background with
distracting lines and specks. Boxes are read from the drawn pixel masks, so
they are exact. Everything comes from one seed: the same seed gives the same
images.
"""

import numpy as np

from tasks.detection.boxes import area, pack_targets

CLASS_NAMES = ("circle", "square", "triangle", "plus", "ring")
MIN_OBJECT_SIZE = 12
MAX_OBJECTS = 6


def _shape_mask(kind, xs, ys, center_x, center_y, radius_x, radius_y, angle):
    """Boolean mask of one shape on the pixel-centre grid (xs, ys)."""
    dx, dy = xs - center_x, ys - center_y
    if kind == "circle":
        return (dx / radius_x) ** 2 + (dy / radius_y) ** 2 <= 1.0
    if kind == "square":
        return (np.abs(dx) <= radius_x) & (np.abs(dy) <= radius_y)
    if kind == "ring":
        distance = (dx / radius_x) ** 2 + (dy / radius_y) ** 2
        return (distance <= 1.0) & (distance >= 0.5 ** 2)
    if kind == "plus":
        bar = 0.34
        return ((np.abs(dx) <= radius_x) & (np.abs(dy) <= bar * radius_y)) | \
            ((np.abs(dx) <= bar * radius_x) & (np.abs(dy) <= radius_y))
    if kind == "triangle":
        angles = angle + np.array([0.0, 2.0, 4.0]) * np.pi / 3.0
        vx = center_x + radius_x * np.cos(angles)
        vy = center_y + radius_y * np.sin(angles)
        inside = np.ones_like(xs, dtype=bool)
        for i in range(3):
            j = (i + 1) % 3
            k = (i + 2) % 3
            edge = (vx[j] - vx[i]) * (ys - vy[i]) - (vy[j] - vy[i]) * (xs - vx[i])
            third = (vx[j] - vx[i]) * (vy[k] - vy[i]) - (vy[j] - vy[i]) * (vx[k] - vx[i])
            inside &= edge * np.sign(third) >= 0
        return inside
    raise ValueError(f"unknown shape {kind!r}; expected one of {CLASS_NAMES}")


def _background(rng, size):
    base = rng.uniform(30, 220, size=3)
    gradient = rng.uniform(-40, 40, size=(2, 3))
    ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    image = (base[None, None, :]
             + ramp[None, :, None] * gradient[0][None, None, :]
             + ramp[:, None, None] * gradient[1][None, None, :])
    return image + rng.normal(0, 6, size=(size, size, 3))


def _draw_clutter(rng, image, ys, xs):
    """Lines and specks that are not objects."""
    size = image.shape[0]
    for _ in range(rng.integers(2, 7)):
        x0, y0, x1, y1 = rng.uniform(0, size, size=4)
        length = max(np.hypot(x1 - x0, y1 - y0), 1.0)
        # Distance from each pixel to the segment.
        t = np.clip(((xs - x0) * (x1 - x0) + (ys - y0) * (y1 - y0)) / length ** 2, 0, 1)
        distance = np.hypot(xs - (x0 + t * (x1 - x0)), ys - (y0 + t * (y1 - y0)))
        image[distance <= rng.uniform(0.5, 1.5)] = rng.uniform(0, 255, size=3)
    for _ in range(rng.integers(3, 12)):
        cx, cy = rng.uniform(0, size, size=2)
        radius = rng.uniform(1.0, 3.0)
        image[np.hypot(xs - cx, ys - cy) <= radius] = rng.uniform(0, 255, size=3)


def _contrasting_colour(rng, background_mean):
    for _ in range(20):
        colour = rng.uniform(0, 255, size=3)
        if np.linalg.norm(colour - background_mean) > 90:
            return colour
    return 255.0 - background_mean


def _overlaps_too_much(box, boxes):
    """True when `box` would hide, or be hidden by, more than half an object."""
    for other in boxes:
        top_left = np.maximum(box[:2], other[:2])
        bottom_right = np.minimum(box[2:], other[2:])
        intersection = np.prod(np.clip(bottom_right - top_left, 0, None))
        if intersection > 0.5 * min(area(box), area(other)):
            return True
    return False


def make_image(rng, size, num_classes):
    """One image (size, size, 3) uint8 with its boxes (N, 4) and classes (N,)."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    image = _background(rng, size)
    _draw_clutter(rng, image, ys, xs)
    background_mean = image.mean(axis=(0, 1))
    boxes, classes = [], []
    max_size = 0.45 * size
    for _ in range(rng.integers(1, MAX_OBJECTS + 1)):
        for _attempt in range(10):
            # Log-uniform sizes: as many small objects as large ones.
            extent = np.exp(rng.uniform(np.log(MIN_OBJECT_SIZE), np.log(max_size)))
            aspect = np.exp(rng.uniform(np.log(0.75), np.log(1.33)))
            radius_x = extent * np.sqrt(aspect) / 2.0
            radius_y = extent / np.sqrt(aspect) / 2.0
            center_x = rng.uniform(radius_x + 1, size - radius_x - 1)
            center_y = rng.uniform(radius_y + 1, size - radius_y - 1)
            class_id = int(rng.integers(0, num_classes))
            mask = _shape_mask(CLASS_NAMES[class_id], xs, ys, center_x, center_y,
                               radius_x, radius_y, rng.uniform(0, 2 * np.pi))
            rows, cols = np.nonzero(mask)
            if len(rows) == 0:
                continue
            box = np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1],
                           dtype=np.float32)
            if min(box[2] - box[0], box[3] - box[1]) < MIN_OBJECT_SIZE * 0.6:
                continue
            if _overlaps_too_much(box, boxes):
                continue
            colour = _contrasting_colour(rng, background_mean)
            image[mask] = colour + rng.normal(0, 8, size=(len(rows), 3))
            boxes.append(box)
            classes.append(class_id)
            break
    image = np.clip(image, 0, 255).astype(np.uint8)
    return image, np.array(boxes, np.float32).reshape(-1, 4), np.array(classes, np.int64)


def make_split(num_images, size, num_classes, max_boxes, seed):
    """Images (N, size, size, 3) uint8 and padded targets (N, max_boxes, 5)."""
    if not 1 <= num_classes <= len(CLASS_NAMES):
        raise ValueError(
            f"data.num_classes={num_classes}: the built-in set has 1 to "
            f"{len(CLASS_NAMES)} classes"
        )
    rng = np.random.default_rng(seed)
    images = np.zeros((num_images, size, size, 3), np.uint8)
    targets = np.zeros((num_images, max_boxes, 5), np.float32)
    for index in range(num_images):
        images[index], boxes, classes = make_image(rng, size, num_classes)
        targets[index], _ = pack_targets(boxes, classes, max_boxes)
    return images, targets
