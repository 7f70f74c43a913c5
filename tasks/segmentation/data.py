"""Segmentation data: built-in shapes, Oxford-IIIT Pet (TFDS), image+mask folders.

Every source becomes float32 images of `info["image_size"]` squared with
`info["channels"]` channels, in [0, 1] or standardized per image
(`info["normalization"]`), and int32 class maps of the same size. A local
folder decides its size, channels and normalisation from its own images
(see `read_folder` and `choose_normalization`); `Splits.summary` says what
was found and chosen.
"""

import dataclasses
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

# PIL modes of single-channel images (an RGB file whose three channels are
# equal counts as greyscale too).
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")


@dataclasses.dataclass
class FolderData:
    """A local folder read into memory at the size the model will take."""

    images: np.ndarray          # uint8 (N, image_size, image_size, channels)
    masks: np.ndarray           # int32 (N, image_size, image_size)
    class_names: list
    notes: list
    skipped: int
    image_size: int
    channels: int
    # Why this size and these channels (sentences for the report).
    size_reason: str = ""
    channels_reason: str = ""
    # "WxH" of the files as read -> number of images; PIL mode -> number.
    native_sizes: dict = dataclasses.field(default_factory=dict)
    file_modes: dict = dataclasses.field(default_factory=dict)


def _resize_pair(image, mask, size):
    image = tf.image.resize(image, (size, size), method="bilinear", antialias=True)
    mask = tf.image.resize(mask[..., None], (size, size), method="nearest")[..., 0]
    return np.clip(np.round(image.numpy()), 0, 255).astype(np.uint8), \
        mask.numpy().astype(np.int32)


def choose_image_size(native_sizes, image_size, max_image_size, multiple):
    """The square side a folder trains at, and a sentence saying why.

    `native_sizes` holds the (height, width) of every image. When they are
    all one square size of at most `max_image_size`, that size is kept
    (rounded to a `multiple` the U-Net's poolings divide); otherwise every
    image is resized to `image_size`.
    """
    sizes = sorted(set(native_sizes))
    if len(sizes) == 1:
        height, width = sizes[0]
        described = f"every image is {width}x{height}"
        if height != width:
            reason = f"{described} (not square)"
        elif max_image_size <= 0:
            reason = f"{described} and data.max_image_size=0"
        elif height > max_image_size:
            reason = f"{described}, larger than data.max_image_size={max_image_size}"
        else:
            size = max(multiple, int(round(height / multiple)) * multiple)
            if size == height:
                return size, f"{described}: trained at that size (data.max_image_size=" \
                             f"{max_image_size})"
            return size, (f"{described}: trained at {size}x{size}, the nearest multiple "
                          f"of {multiple} (2**model.depth)")
    else:
        reason = f"the images have {len(sizes)} different sizes"
    return image_size, f"{reason}: resized to data.image_size={image_size}"


def _is_grey(image, file_mode):
    return file_mode in GREY_MODES or (
        (image[..., 0] == image[..., 1]).all() and (image[..., 0] == image[..., 2]).all())


def choose_channels(grey_flags, channels):
    """Model input channels for a folder (1 or 3) and a sentence saying why."""
    if channels in (1, 3):
        return channels, f"data.channels={channels}"
    if channels != 0:
        raise DataError(f"data.channels={channels}; expected 0 (from the data), 1 or 3")
    if all(grey_flags):
        return 1, "every image is greyscale: 1 input channel"
    return 3, f"{len(grey_flags) - sum(grey_flags)} of {len(grey_flags)} images are " \
              "colour: 3 input channels"


def _to_channels(image, channels):
    """uint8 (H, W, 1 or 3) -> (H, W, channels); colour to grey by luminance."""
    if image.shape[-1] == channels:
        return image
    if channels == 3:
        return np.repeat(image, 3, axis=-1)
    grey = tf.image.rgb_to_grayscale(image.astype(np.float32)).numpy()
    return np.clip(np.round(grey), 0, 255).astype(np.uint8)


def read_folder(folder, size, num_classes=0, skip_bad=False, ignore_label=255,
                max_skipped_fraction=None, max_image_size=0, channels=3, multiple=1):
    """Images in `folder/images`, masks as same-named PNGs in `folder/masks`.

    A mask holds one class index per pixel (0 .. num_classes-1), or
    `ignore_label` for void pixels; palette PNGs give their palette indices.
    Class names come from `folder/classes.txt` (one per line) when present.
    With `max_skipped_fraction`, skipping more than that share of the images
    stops with a DataError. Images keep their own size when they share one
    square size up to `max_image_size` (see `choose_image_size`), else they
    are resized to `size`; `channels` 0 follows the data (see
    `choose_channels`).

    Returns a `FolderData`.
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
    images, masks, native_sizes, grey_flags, file_modes = [], [], [], [], {}
    for image_path in image_paths:
        stem = os.path.splitext(os.path.basename(image_path))[0]
        mask_path = os.path.join(mask_dir, stem + ".png")
        try:
            if not os.path.exists(mask_path):
                raise DataError(f"{image_path}: no mask {mask_path}")
            image, file_mode = data_lib.read_image(image_path, channels=3, return_mode=True)
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
        native_sizes.append(image.shape[:2])
        grey = _is_grey(image, file_mode)
        grey_flags.append(grey)
        file_modes[file_mode] = file_modes.get(file_mode, 0) + 1
        image = image[..., :1] if grey else image
        if max(image.shape[:2]) > max(max_image_size, size):
            # Too large to keep: it will be resized whatever the others are,
            # and a folder of large photos must not fill the memory first.
            image, mask = _resize_pair(image, mask, size)
        images.append(image)
        masks.append(mask)
    if max_skipped_fraction is not None:
        counter.check_share(len(image_paths), max_skipped_fraction, folder)
    if not images:
        raise DataError(f"{folder}: no usable image/mask pairs ({counter.summary()})")
    image_size, size_reason = choose_image_size(native_sizes, size, max_image_size, multiple)
    channels, channels_reason = choose_channels(grey_flags, channels)
    for index, (image, mask) in enumerate(zip(images, masks)):
        if image.shape[:2] != (image_size, image_size):
            image, mask = _resize_pair(image, mask, image_size)
        images[index], masks[index] = _to_channels(image, channels), mask
    masks = np.stack(masks)
    if not num_classes:
        labelled = masks[masks != ignore_label]
        num_classes = int(labelled.max()) + 1 if labelled.size else 1
    class_names = class_names or [f"class_{k}" for k in range(num_classes)]
    notes = [f"{folder}: {counter.summary()}"] if counter.skipped else []
    counts = {}
    for height, width in native_sizes:
        counts[f"{width}x{height}"] = counts.get(f"{width}x{height}", 0) + 1
    return FolderData(np.stack(images), masks, class_names, notes, len(counter.skipped),
                      image_size, channels, size_reason, channels_reason, counts, file_modes)


def _folder_splits(cfg):
    folder = read_folder(
        cfg.data.source, cfg.data.image_size, cfg.data.num_classes, cfg.run.skip_bad,
        cfg.data.ignore_label, cfg.data.max_skipped_fraction, cfg.data.max_image_size,
        cfg.data.channels, 2 ** cfg.model.depth)
    images, masks = folder.images, folder.masks
    if len(images) < 3:
        raise DataError(f"{cfg.data.source}: need at least 3 image/mask pairs, found {len(images)}")
    train, val, test = data_lib.split_indices(len(images), [0.8, 0.1, 0.1], cfg.run.seed)
    if len(val) == 0 or len(test) == 0:
        val, test = train[-1:], train[-1:]
    arrays = {
        "train": (images[train], masks[train]),
        "val": (images[val], masks[val]),
        "test": (images[test], masks[test]),
    }
    return arrays, folder


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


# --- Normalisation ----------------------------------------------------------

NORMALIZATIONS = ("auto", "scale", "standardize")
# "auto" standardizes a folder whose images' mean brightness spreads more than
# half their typical contrast, or whose contrast differs more than twice
# between images (10th to 90th percentile): a fixed scale would then ask the
# model to learn every exposure, and per-image standardization removes it.
MEAN_SPREAD_LIMIT = 0.5
CONTRAST_RATIO_LIMIT = 2.0


def intensity_statistics(images):
    """Brightness and contrast of uint8 images (N, H, W, C), on the 0..255 scale.

    `mean_spread` is the standard deviation of the per-image means divided by
    the median per-image standard deviation; `contrast_ratio` is the 90th
    over the 10th percentile of the per-image standard deviations.
    """
    flat = np.asarray(images, np.float32).reshape(len(images), -1)
    means, stds = flat.mean(1), flat.std(1)
    typical_std = max(float(np.median(stds)), 1e-6)

    def spread(values):
        return {"min": round(float(values.min()), 2), "median": round(float(np.median(values)), 2),
                "max": round(float(values.max()), 2)}
    return {
        "mean": round(float(flat.mean()), 2), "std": round(float(flat.std()), 2),
        "per_image_mean": spread(means), "per_image_std": spread(stds),
        "mean_spread": round(float(means.std()) / typical_std, 3),
        "contrast_ratio": round(float(np.percentile(stds, 90))
                                / max(float(np.percentile(stds, 10)), 1e-6), 3),
    }


def choose_normalization(normalization, statistics, from_folder):
    """"scale" or "standardize", and a sentence saying why."""
    if normalization not in NORMALIZATIONS:
        raise DataError(f"data.normalization={normalization!r}; expected one of "
                        f"{', '.join(NORMALIZATIONS)}")
    if normalization != "auto":
        return normalization, f"data.normalization={normalization}"
    if not from_folder or statistics is None:
        return "scale", "data.normalization=auto: built-in or public data, pixel / 255"
    spread, ratio = statistics["mean_spread"], statistics["contrast_ratio"]
    measured = (f"the training images' mean brightness spreads {spread:.2f}x their typical "
                f"contrast and their contrast varies {ratio:.1f}x")
    if spread > MEAN_SPREAD_LIMIT or ratio > CONTRAST_RATIO_LIMIT:
        return "standardize", (f"data.normalization=auto chose per-image standardization: "
                               f"{measured} (limits {MEAN_SPREAD_LIMIT}, "
                               f"{CONTRAST_RATIO_LIMIT})")
    return "scale", (f"data.normalization=auto kept pixel / 255: {measured} (below "
                     f"{MEAN_SPREAD_LIMIT}, {CONTRAST_RATIO_LIMIT})")


def normalize(images, normalization):
    """Float images in [0, 1] (one or a batch) -> what the model takes.

    TensorFlow ops, so the serving graph can do exactly what training did.
    """
    if normalization == "standardize":
        return tf.image.per_image_standardization(images)
    return images


def model_inputs(images, info):
    """uint8 images (N, H, W, 1 or 3) of any size -> the model's input:
    `info["channels"]` channels, `info["image_size"]` squared, normalised as
    in training. For serving and predict."""
    images = tf.cast(images, tf.float32) / 255.0
    channels = info.get("channels", 3)
    if channels == 1 and images.shape[-1] != 1:  # RGB, or not known until run time
        images = tf.image.rgb_to_grayscale(images)
    elif channels == 3 and images.shape[-1] == 1:
        images = tf.image.grayscale_to_rgb(images)
    size = info["image_size"]
    images = tf.image.resize(images, (size, size), antialias=True)
    return normalize(images, info.get("normalization", "scale"))


# --- Summary -----------------------------------------------------------------

def pixels_per_class(masks, class_names, ignore_label):
    counts = np.bincount(masks[masks != ignore_label].ravel(), minlength=len(class_names))
    result = {name: int(count) for name, count in zip(class_names, counts)}
    void = int((masks == ignore_label).sum())
    if void:
        result["void"] = void
    return result


def data_summary(arrays, class_names, ignore_label, statistics):
    """Examples and pixels per class per split, and intensity statistics."""
    return {
        "examples": {split: len(pair[0]) for split, pair in arrays.items()},
        "pixels_per_class": {split: pixels_per_class(pair[1], class_names, ignore_label)
                             for split, pair in arrays.items()},
        "intensity": statistics,
    }


def _training_budget(cfg, train_examples):
    """Steps per epoch and the epochs `common.training.fit` will run."""
    from common import training

    steps = cfg.train.steps_per_epoch or train_examples // cfg.train.batch_size
    if not steps:
        return {}
    return {"steps_per_epoch": steps, "epochs": training.epochs_for_budget(cfg.train, steps),
            "min_steps": cfg.train.min_steps}


# --- Assembly ---------------------------------------------------------------

def _to_float(image, mask):
    return tf.cast(image, tf.float32) / 255.0, mask


def _augment(image, mask):
    image, mask, _ = augment.random_flip(image, mask)
    image, mask = augment.random_affine(image, mask, max_rotation_degrees=15.0,
                                        scale_range=(0.85, 1.15))
    return augment.color_jitter(image), mask


def _finished_splits(raw, cfg, normalization, to_grey):
    """Batched train / val / test / calibration datasets from per-example ones."""
    def finish_input(image, mask):
        if to_grey:  # built-in or TFDS colour images, data.channels=1
            image = tf.image.rgb_to_grayscale(image)
        return normalize(image, normalization), mask

    def augment_then_finish(image, mask):
        # Augment on the [0, 1] scale colour jitter expects, normalise after.
        return finish_input(*_augment(image, mask))

    batch = cfg.train.batch_size
    scaled = {split: dataset.map(_to_float, num_parallel_calls=data_lib.AUTOTUNE)
              for split, dataset in raw.items()}
    finished = {split: dataset.map(finish_input, num_parallel_calls=data_lib.AUTOTUNE)
                for split, dataset in scaled.items()}
    if cfg.data.augment:
        train = data_lib.finish(scaled["train"], batch, training=True, seed=cfg.run.seed,
                                augment=augment_then_finish)
    else:
        train = data_lib.finish(finished["train"], batch, training=True, seed=cfg.run.seed)
    return {
        "train": train,
        "val": data_lib.finish(finished["val"], batch, training=False),
        "test": data_lib.finish(finished["test"], batch, training=False),
        "calibration": data_lib.finish(finished["train"], batch, training=False, cache=False),
    }


def _folder_notes(folder, counts, normalization_reason):
    return [
        f"data: {counts['train']} training / {counts['val']} validation / "
        f"{counts['test']} test images; {folder.size_reason}; {folder.channels_reason}.",
        f"data: {normalization_reason}.",
    ]


def build_datasets(cfg):
    source = cfg.data.source
    notes, skipped, arrays, folder = [], 0, None, None
    background_class = 0
    image_size, channels = cfg.data.image_size, cfg.data.channels or 3
    summary = {"source": source}
    if source == "synthetic":
        arrays, class_names = _synthetic_splits(cfg)
        summary["image_sizes"] = {f"{image_size}x{image_size}":
                                  sum(len(pair[0]) for pair in arrays.values())}
    elif source == "oxford_iiit_pet":
        class_names, background_class = PET_CLASSES, 1
        raw = {
            # TFDS has train/test only: the last 10% of train is validation.
            "train": _pet_split("train[:90%]", cfg.data.image_size),
            "val": _pet_split("train[90%:]", cfg.data.image_size),
            "test": _pet_split("test", cfg.data.image_size),
        }
        summary["note"] = "streamed from TFDS: no pixel counts or statistics"
    elif os.path.isdir(source):
        arrays, folder = _folder_splits(cfg)
        class_names, notes, skipped = folder.class_names, folder.notes, folder.skipped
        image_size, channels = folder.image_size, folder.channels
        background_class = 0 if class_names[0].lower() in ("background", "class_0") else None
        summary.update(image_sizes=folder.native_sizes, file_modes=folder.file_modes)
    else:
        raise DataError(
            f"--data {source!r}: expected 'synthetic', 'oxford_iiit_pet' or a folder "
            "with images/ and masks/"
        )
    if channels not in (1, 3):
        raise DataError(f"data.channels={cfg.data.channels}; expected 0 (from the data), 1 or 3")
    statistics = intensity_statistics(arrays["train"][0]) if arrays else None
    normalization, normalization_reason = choose_normalization(
        cfg.data.normalization, statistics, folder is not None)
    if arrays:
        raw = {split: tf.data.Dataset.from_tensor_slices(pair) for split, pair in arrays.items()}
        summary.update(data_summary(arrays, class_names, cfg.data.ignore_label, statistics))
    counts = summary.get("examples", {})
    derived = {"image_size": image_size, "channels": channels, "normalization": normalization,
               "normalization_reason": normalization_reason}
    if folder is not None:
        derived.update(image_size_reason=folder.size_reason,
                       channels_reason=folder.channels_reason)
        notes = notes + _folder_notes(folder, counts, normalization_reason)
    derived.update(_training_budget(cfg, counts["train"]) if counts else {})
    if derived.get("epochs", cfg.train.epochs) != cfg.train.epochs:
        notes.append(f"train.min_steps={cfg.train.min_steps}: {derived['steps_per_epoch']} "
                     f"steps per epoch, so {derived['epochs']} epochs instead of "
                     f"train.epochs={cfg.train.epochs}.")
    summary["derived"] = derived
    splits = _finished_splits(raw, cfg, normalization,
                              to_grey=channels == 1 and folder is None)
    info = {
        "class_names": class_names,
        "num_classes": len(class_names),
        # What the model takes (serving and predict read these three too).
        "image_size": image_size,
        "channels": channels,
        "normalization": normalization,
        "background_class": background_class,
        # Mask value left out of the loss and the metrics.
        "ignore_label": cfg.data.ignore_label,
        "num_test": counts.get("test"),
    }
    return data_lib.Splits(train=splits["train"], val=splits["val"], test=splits["test"],
                           info=info, calibration=splits["calibration"], notes=notes,
                           skipped=skipped, summary=summary)
