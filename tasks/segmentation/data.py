"""Segmentation data: built-in shapes, Oxford-IIIT Pet (TFDS), image+mask folders.

Every source becomes float32 images in [0, 1] of `image_size` squared and
int32 class maps of the same size.
"""

import os

import numpy as np
import tensorflow as tf

from common import augment, data as data_lib
from common.errors import DataError

SYNTHETIC_CLASSES = ["background", "circle", "rectangle", "triangle"]
PET_CLASSES = ["pet", "background", "border"]
# Seeds of the fixed built-in splits: the test set does not depend on how
# many training examples a preset asks for.
_SPLIT_SEED_OFFSETS = {"train": 0, "val": 7_919, "test": 104_729}


# --- Built-in data ----------------------------------------------------------

def _background(rng, size):
    """A smooth random texture plus pixel noise."""
    coarse = rng.uniform(0.0, 1.0, (4, 4, 3))
    texture = tf.image.resize(coarse[None], (size, size), method="bicubic")[0].numpy()
    base = rng.uniform(0.2, 0.8, 3)
    image = 0.5 * base + 0.5 * texture
    return image + rng.normal(0.0, 0.06, (size, size, 3))


def _shape_mask(kind, rng, size):
    """A boolean mask of one circle, rectangle or triangle of random size."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    radius = rng.uniform(0.10, 0.22) * size
    cx, cy = rng.uniform(radius, size - radius, 2)
    if kind == 1:
        return (cols - cx) ** 2 + (rows - cy) ** 2 <= radius ** 2
    if kind == 2:
        half_w, half_h = radius * rng.uniform(0.7, 1.0, 2)
        return (np.abs(cols - cx) <= half_w) & (np.abs(rows - cy) <= half_h)
    angle = rng.uniform(0, 2 * np.pi)
    points = [(cx + radius * 1.2 * np.cos(angle + k * 2 * np.pi / 3),
               cy + radius * 1.2 * np.sin(angle + k * 2 * np.pi / 3)) for k in range(3)]
    signs = []
    for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1]):
        signs.append((x1 - x0) * (rows - y0) - (y1 - y0) * (cols - x0) >= 0)
    return (signs[0] & signs[1] & signs[2]) | (~signs[0] & ~signs[1] & ~signs[2])


def synthetic_examples(count, size, seed, max_objects=3):
    """`count` images with 1..max_objects shapes and their exact class masks.

    Shapes have random colours (the class is in the outline, not the colour),
    random sizes and may overlap; later shapes cover earlier ones.
    """
    rng = np.random.default_rng(seed)
    images = np.empty((count, size, size, 3), np.uint8)
    masks = np.zeros((count, size, size), np.int32)
    for index in range(count):
        image = _background(rng, size)
        mask = masks[index]
        for _ in range(rng.integers(1, max_objects + 1)):
            kind = int(rng.integers(1, len(SYNTHETIC_CLASSES)))
            region = _shape_mask(kind, rng, size)
            colour = rng.uniform(0.0, 1.0, 3)
            shade = 1.0 + rng.normal(0.0, 0.05, (size, size, 1))
            image[region] = (colour * shade)[region]
            mask[region] = kind
        image += rng.normal(0.0, 0.03, image.shape)
        images[index] = np.clip(image * 255.0, 0, 255).astype(np.uint8)
    return images, masks


def _synthetic_splits(cfg):
    sizes = {"train": cfg.data.num_train, "val": cfg.data.num_val, "test": cfg.data.num_test}
    return {
        split: synthetic_examples(count, cfg.data.image_size,
                                  cfg.run.seed + _SPLIT_SEED_OFFSETS[split],
                                  cfg.data.max_objects)
        for split, count in sizes.items()
    }, SYNTHETIC_CLASSES


# --- Local folder -----------------------------------------------------------

def _resize_pair(image, mask, size):
    image = tf.image.resize(image, (size, size), method="bilinear", antialias=True)
    mask = tf.image.resize(mask[..., None], (size, size), method="nearest")[..., 0]
    return np.clip(image.numpy(), 0, 255).astype(np.uint8), mask.numpy().astype(np.int32)


def read_folder(folder, size, num_classes=0, skip_bad=False, ignore_label=255,
                max_skipped_fraction=None):
    """Images in `folder/images`, masks as same-named PNGs in `folder/masks`.

    A mask holds one class index per pixel (0 .. num_classes-1), or
    `ignore_label` for void pixels; palette PNGs give their palette indices.
    Class names come from `folder/classes.txt` (one per line) when present.
    With `max_skipped_fraction`, skipping more than that share of the images
    stops with a DataError.

    Returns images, masks, class names, notes and the number of skipped pairs.
    """
    image_dir, mask_dir = os.path.join(folder, "images"), os.path.join(folder, "masks")
    for required in (image_dir, mask_dir):
        if not os.path.isdir(required):
            raise DataError(
                f"{folder}: expected sub-folders images/ and masks/ (missing {required})"
            )
    class_file = os.path.join(folder, "classes.txt")
    class_names = None
    if os.path.exists(class_file):
        with open(class_file) as handle:
            class_names = [line.strip() for line in handle if line.strip()]
        num_classes = num_classes or len(class_names)
    if num_classes and 0 <= ignore_label < num_classes:
        raise DataError(
            f"data.ignore_label={ignore_label} is one of the {num_classes} class indices "
            f"of {folder}; set it to a value no class uses (e.g. 255) or -1")
    counter = data_lib.BadSampleCounter(skip_bad)
    image_paths = data_lib.list_images(image_dir)
    images, masks = [], []
    for image_path in image_paths:
        stem = os.path.splitext(os.path.basename(image_path))[0]
        mask_path = os.path.join(mask_dir, stem + ".png")
        try:
            if not os.path.exists(mask_path):
                raise DataError(f"{image_path}: no mask {mask_path}")
            image = data_lib.read_image(image_path, channels=3)
            mask = data_lib.read_label_map(mask_path)
            if mask.shape != image.shape[:2]:
                raise DataError(
                    f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but image "
                    f"{os.path.basename(image_path)} is {image.shape[1]}x{image.shape[0]}"
                )
            labelled = mask[mask != ignore_label]
            if num_classes and labelled.size and labelled.max() >= num_classes:
                raise DataError(
                    f"{mask_path}: mask value {int(labelled.max())} outside the class range "
                    f"0..{num_classes - 1} (and not data.ignore_label={ignore_label})"
                )
        except DataError as error:
            counter.handle(error)
            continue
        image, mask = _resize_pair(image, mask, size)
        images.append(image)
        masks.append(mask)
    if max_skipped_fraction is not None:
        counter.check_share(len(image_paths), max_skipped_fraction, folder)
    if not images:
        raise DataError(f"{folder}: no usable image/mask pairs ({counter.summary()})")
    masks = np.stack(masks)
    if not num_classes:
        labelled = masks[masks != ignore_label]
        num_classes = int(labelled.max()) + 1 if labelled.size else 1
    class_names = class_names or [f"class_{k}" for k in range(num_classes)]
    notes = [f"{folder}: {counter.summary()}"] if counter.skipped else []
    return np.stack(images), masks, class_names, notes, len(counter.skipped)


def _folder_splits(cfg):
    images, masks, class_names, notes, skipped = read_folder(
        cfg.data.source, cfg.data.image_size, cfg.data.num_classes, cfg.run.skip_bad,
        cfg.data.ignore_label, cfg.data.max_skipped_fraction)
    if len(images) < 3:
        raise DataError(f"{cfg.data.source}: need at least 3 image/mask pairs, found {len(images)}")
    train, val, test = data_lib.split_indices(len(images), [0.8, 0.1, 0.1], cfg.run.seed)
    if len(val) == 0 or len(test) == 0:
        val, test = train[-1:], train[-1:]
    return {
        "train": (images[train], masks[train]),
        "val": (images[val], masks[val]),
        "test": (images[test], masks[test]),
    }, class_names, notes, skipped


# --- TFDS -------------------------------------------------------------------

def _pet_split(split, size):
    dataset = data_lib.tfds_load("oxford_iiit_pet", split=split)

    def convert(example):
        image = tf.image.resize(example["image"], (size, size), antialias=True)
        mask = tf.image.resize(example["segmentation_mask"], (size, size), method="nearest")
        # TFDS labels pixels 1 (pet), 2 (background), 3 (border).
        mask = tf.cast(mask[..., 0], tf.int32) - 1
        return tf.cast(tf.clip_by_value(image, 0, 255), tf.uint8), mask

    return dataset.map(convert, num_parallel_calls=data_lib.AUTOTUNE)


# --- Assembly ---------------------------------------------------------------

def _to_float(image, mask):
    return tf.cast(image, tf.float32) / 255.0, mask


def _augment(image, mask):
    image, mask, _ = augment.random_flip(image, mask)
    image, mask = augment.random_affine(image, mask, max_rotation_degrees=15.0,
                                        scale_range=(0.85, 1.15))
    return augment.color_jitter(image), mask


def build_datasets(cfg):
    source = cfg.data.source
    notes, skipped = [], 0
    background_class = 0
    if source == "synthetic":
        arrays, class_names = _synthetic_splits(cfg)
        raw = {split: tf.data.Dataset.from_tensor_slices(pair) for split, pair in arrays.items()}
        counts = {split: len(pair[0]) for split, pair in arrays.items()}
    elif source == "oxford_iiit_pet":
        class_names, background_class = PET_CLASSES, 1
        raw = {
            # TFDS has train/test only: the last 10% of train is validation.
            "train": _pet_split("train[:90%]", cfg.data.image_size),
            "val": _pet_split("train[90%:]", cfg.data.image_size),
            "test": _pet_split("test", cfg.data.image_size),
        }
        counts = {}
    elif os.path.isdir(source):
        arrays, class_names, notes, skipped = _folder_splits(cfg)
        raw = {split: tf.data.Dataset.from_tensor_slices(pair) for split, pair in arrays.items()}
        counts = {split: len(pair[0]) for split, pair in arrays.items()}
        background_class = 0 if class_names[0].lower() in ("background", "class_0") else None
    else:
        raise DataError(
            f"--data {source!r}: expected 'synthetic', 'oxford_iiit_pet' or a folder "
            "with images/ and masks/"
        )
    batch = cfg.train.batch_size
    augment_fn = _augment if cfg.data.augment else None
    train_examples = raw["train"].map(_to_float, num_parallel_calls=data_lib.AUTOTUNE)
    train = data_lib.finish(train_examples, batch, training=True, seed=cfg.run.seed,
                            augment=augment_fn)
    calibration = data_lib.finish(train_examples, batch, training=False, cache=False)
    val = data_lib.finish(raw["val"].map(_to_float, num_parallel_calls=data_lib.AUTOTUNE),
                          batch, training=False)
    test = data_lib.finish(raw["test"].map(_to_float, num_parallel_calls=data_lib.AUTOTUNE),
                           batch, training=False)
    info = {
        "class_names": class_names,
        "num_classes": len(class_names),
        "image_size": cfg.data.image_size,
        "background_class": background_class,
        # Mask value left out of the loss and the metrics.
        "ignore_label": cfg.data.ignore_label,
        "num_test": counts.get("test"),
    }
    return data_lib.Splits(train=train, val=val, test=test, info=info,
                           calibration=calibration, notes=notes, skipped=skipped)
