"""Datasets for detection: `build_datasets(cfg) -> Splits`.

`--data synthetic` (the default) is the built-in shapes set; `--data
voc/2007` or `coco/2017` read TFDS; `--data PATH` reads a Pascal VOC or
COCO folder. Every split yields `(images (B, S, S, 3) float32 0..255,
targets (B, max_boxes, 5))`, targets in `boxes.BOX_FORMAT` (xyxy pixels of
the resized S x S image) plus the class id, padded with -1. Images are
resized to S x S without keeping the aspect ratio; predictions are scaled
back to the input's own pixels by the serving function and by predict.py.
S is `model.image_size`, except for a local folder whose images all share
one size up to `data.max_image_size`: it trains at that size (see
`choose_image_size`), and `build_datasets` sets `model.image_size` to it so
that the model, its loss, post-processing and exports all follow.
Local folder images are decoded by `common.data.read_image`, the decoder that
checked them when the annotations were read.

Only the training split is augmented (mosaic, scale/translate, flip, colour).
"""

import os

import numpy as np
import tensorflow as tf

from common.data import (AUTOTUNE, BadSampleCounter, Splits, read_image,
                         split_indices, tfds_load)
from common.errors import DataError
from tasks.detection import augment, sources, synthetic
from tasks.detection.boxes import BOX_FORMAT, pack_targets, scale_boxes

SPLIT_NAMES = ("train", "val", "test")
STRIDE = 32  # the coarsest feature map's stride: the input side is a multiple of it
# Decoded, resized uint8 images are kept in memory up to this size per split;
# larger sets (COCO at 640 px) are decoded again each epoch.
CACHE_LIMIT_BYTES = 2 << 30


def _as_model_input(images, targets):
    return tf.cast(images, tf.float32), targets


def _cache_if_small(dataset, cfg):
    count = int(dataset.cardinality())
    image_bytes = cfg.model.image_size ** 2 * 3
    if 0 <= count and count * image_bytes <= CACHE_LIMIT_BYTES:
        return dataset.cache()
    return dataset


def training_batch(cfg, examples):
    """(examples used per epoch, batch size) of the training split: mosaic
    takes the examples in fours, and a split smaller than one batch trains
    on one batch of all of them rather than on none."""
    usable = examples - examples % 4 if cfg.data.mosaic > 0 else examples
    return usable, max(1, min(cfg.train.batch_size, usable))


def training_pipeline(dataset, cfg):
    """Cache, shuffle, mosaic, augment, batch, prefetch."""
    data_cfg = cfg.data
    examples = int(dataset.cardinality())
    examples = examples if examples >= 0 else None
    usable, batch = training_batch(cfg, examples) if examples is not None \
        else (None, cfg.train.batch_size)
    dataset = _cache_if_small(dataset, cfg).shuffle(
        2048, seed=cfg.run.seed, reshuffle_each_iteration=True)
    dataset = dataset.map(_as_model_input, num_parallel_calls=AUTOTUNE)
    if data_cfg.mosaic > 0:
        dataset = dataset.batch(4, drop_remainder=True).map(
            lambda images, targets: augment.mosaic_group(images, targets, data_cfg.mosaic),
            num_parallel_calls=AUTOTUNE,
        ).unbatch()
    dataset = dataset.map(augment.make_augment(data_cfg), num_parallel_calls=AUTOTUNE)
    dataset = dataset.batch(batch, drop_remainder=True)
    if usable is not None:
        # Mosaic's batch/unbatch hides the length; Keras wants it for progress
        # and schedules, and would otherwise count by running the pipeline.
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(usable // batch))
    return dataset.prefetch(AUTOTUNE)


def evaluation_pipeline(dataset, cfg):
    dataset = _cache_if_small(dataset, cfg).batch(cfg.train.batch_size)
    return dataset.map(_as_model_input, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


# --- Sources -----------------------------------------------------------------

def _synthetic_splits(cfg):
    size, data_cfg = cfg.model.image_size, cfg.data
    counts = (data_cfg.num_train, data_cfg.num_val, data_cfg.num_test)
    splits, targets, images = {}, {}, {}
    for index, (name, count) in enumerate(zip(SPLIT_NAMES, counts)):
        # A seed per split: the test set does not change with num_train.
        images[name], targets[name] = synthetic.make_split(
            count, size, data_cfg.num_classes, data_cfg.max_boxes, seed=[cfg.run.seed, index])
        splits[name] = tf.data.Dataset.from_tensor_slices((images[name], targets[name]))
    info = {"class_names": list(synthetic.CLASS_NAMES[:data_cfg.num_classes])}
    built_in = {"image_size": size, "native_sizes": {f"{size}x{size}": sum(counts)},
                "image_size_reason": f"built-in images are drawn at model.image_size={size}",
                "targets": targets,
                "intensity": intensity_statistics(_evenly_spread(images["train"]))}
    return splits, info, built_in


def _decode_with_pil(path):
    # The decoder that checked the file in `sources` (common.data) reads it
    # for training too, so a file that passed the check cannot fail an
    # epoch later (tf.io decodes fewer formats than PIL).
    return read_image(os.fsdecode(path), channels=3)


def _read_and_resize(size):
    def read(path, target):
        image = tf.numpy_function(_decode_with_pil, [path], tf.uint8, stateful=False)
        image = tf.ensure_shape(image, [None, None, 3])
        image = tf.image.resize(image, [size, size], antialias=True)
        return tf.cast(tf.round(tf.clip_by_value(image, 0, 255)), tf.uint8), target
    return read


def records_to_targets(records, size, max_boxes):
    """Padded targets (N, max_boxes, 5) of records resized to S x S, and how
    many boxes beyond `max_boxes` were dropped."""
    targets, dropped = [], 0
    for record in records:
        boxes = scale_boxes(record.boxes, size / record.width, size / record.height)
        target, extra = pack_targets(boxes, record.classes, max_boxes)
        targets.append(target)
        dropped += extra
    targets = np.stack(targets) if targets else np.zeros((0, max_boxes, 5), np.float32)
    return targets, dropped


def records_to_dataset(records, size, max_boxes):
    """Records -> dataset of (uint8 image S x S, padded target); boxes scaled to S."""
    targets, dropped = records_to_targets(records, size, max_boxes)
    paths = [record.image_path for record in records]
    dataset = tf.data.Dataset.from_tensor_slices((paths, targets))
    return dataset.map(_read_and_resize(size), num_parallel_calls=AUTOTUNE), dropped


def choose_image_size(native_sizes, image_size, max_image_size, multiple=STRIDE):
    """The square side a folder trains at, and a sentence saying why.

    `native_sizes` holds the (width, height) of every image. When they all
    share one size whose longer side is at most `max_image_size`, that side
    (rounded to a `multiple` of the coarsest stride) is kept: a 256 px
    folder is not halved to the built-in 128, so its small objects stay
    detectable. Otherwise (mixed sizes, larger images, or max_image_size 0)
    every image is resized to `image_size`.
    """
    sizes = sorted(set(native_sizes))
    if len(sizes) == 1:
        width, height = sizes[0]
        side = max(width, height)
        described = f"every image is {width}x{height}"
        if max_image_size <= 0:
            reason = f"{described} and data.max_image_size=0"
        elif side > max_image_size:
            reason = f"{described}, larger than data.max_image_size={max_image_size}"
        else:
            size = max(multiple, round(side / multiple) * multiple)
            kept = "that size" if (size, size) == (width, height) else \
                f"{size}x{size} (square, a multiple of the stride {multiple})"
            return size, (f"{described}: trained at {kept} (data.max_image_size="
                          f"{max_image_size})")
    else:
        reason = f"the images have {len(sizes)} different sizes"
    return image_size, f"{reason}: resized to model.image_size={image_size}"


def _folder_splits(cfg, bad_samples):
    """Splits of a VOC / COCO folder at the size its images choose."""
    records, class_names = sources.load_folder(
        cfg.data.source, bad_samples, cfg.data.max_skipped_fraction)
    val_fraction, test_fraction = cfg.data.val_fraction, cfg.data.test_fraction
    if val_fraction <= 0 or test_fraction <= 0 or val_fraction + test_fraction >= 1:
        raise DataError(
            f"data.val_fraction={val_fraction}, data.test_fraction={test_fraction}: "
            "each must be > 0 and together < 1")
    size, size_reason = choose_image_size(
        [(record.width, record.height) for record in records], cfg.model.image_size,
        cfg.data.max_image_size)
    parts = split_indices(
        len(records), [1 - val_fraction - test_fraction, val_fraction, test_fraction],
        cfg.run.seed)
    splits, targets, dropped = {}, {}, 0
    for name, indices in zip(SPLIT_NAMES, parts):
        if len(indices) == 0:
            raise DataError(
                f"{cfg.data.source}: {len(records)} usable images leave no {name} images")
        chosen = [records[i] for i in indices]
        splits[name], extra = records_to_dataset(chosen, size, cfg.data.max_boxes)
        targets[name], _ = records_to_targets(chosen, size, cfg.data.max_boxes)
        dropped += extra
    native = {}
    for record in records:
        key = f"{record.width}x{record.height}"
        native[key] = native.get(key, 0) + 1
    training_paths = [records[i].image_path for i in parts[0]]
    folder = {"image_size": size, "image_size_reason": size_reason, "native_sizes": native,
              "targets": targets,
              "intensity": intensity_statistics(
                  read_image(path, channels=3) for path in _evenly_spread(training_paths))}
    return splits, {"class_names": class_names, "boxes_dropped": dropped}, folder


def tfds_example_to_pair(example, size, max_boxes):
    """A TFDS detection example (VOC or COCO features) -> (image, target)."""
    image = tf.image.resize(example["image"], [size, size], antialias=True)
    image = tf.cast(tf.round(tf.clip_by_value(image, 0, 255)), tf.uint8)
    objects = example["objects"]
    bbox = tf.cast(objects["bbox"], tf.float32) * float(size)  # ymin, xmin, ymax, xmax
    rows = tf.stack([bbox[:, 1], bbox[:, 0], bbox[:, 3], bbox[:, 2],
                     tf.cast(objects["label"], tf.float32)], axis=-1)
    if "is_crowd" in objects:
        rows = tf.boolean_mask(rows, tf.logical_not(objects["is_crowd"]))
    rows = rows[:max_boxes]
    padding = -tf.ones([max_boxes - tf.shape(rows)[0], 5])
    return image, tf.ensure_shape(tf.concat([rows, padding], 0), [max_boxes, 5])


def _tfds_class_names(name, data_dir):
    import tensorflow_datasets as tfds

    return list(tfds.builder(name, data_dir=data_dir).info.features["objects"]["label"].names)


def _tfds_splits(cfg):
    name = cfg.data.source
    split_names = sources.tfds_split_names(name)
    data_dir = cfg.data.tfds_data_dir or None
    counts = (cfg.data.num_train, cfg.data.num_val, cfg.data.num_test)
    splits = {}
    for key, split, count in zip(SPLIT_NAMES, split_names, counts):
        # Fails within seconds, naming the set, when it is not on disk.
        dataset = tfds_load(name, split, data_dir=data_dir)
        if count:
            dataset = dataset.take(count)
        splits[key] = dataset.map(
            lambda example: tfds_example_to_pair(
                example, cfg.model.image_size, cfg.data.max_boxes),
            num_parallel_calls=AUTOTUNE)
    return splits, {"class_names": _tfds_class_names(name, data_dir)}


# --- Summary -----------------------------------------------------------------

# Training images read for the intensity statistics (evenly spread).
STATISTICS_IMAGES = 200


def _spread(values):
    values = np.asarray(values, np.float64)
    if not values.size:
        return None
    return {"min": round(float(values.min()), 2),
            "median": round(float(np.median(values)), 2),
            "max": round(float(values.max()), 2)}


def box_statistics(targets, class_names):
    """Boxes per class, per image and their sizes, from padded targets
    (N, max_boxes, 5) in model pixels."""
    valid = targets[..., 4] >= 0
    boxes, classes = targets[valid][:, :4], targets[valid][:, 4].astype(np.int64)
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    per_image = valid.sum(axis=1)
    counts = np.bincount(classes, minlength=len(class_names))
    return {
        "boxes_per_class": {name: int(count) for name, count in zip(class_names, counts)},
        "boxes_per_image": {"mean": round(float(per_image.mean()), 2) if len(per_image) else 0.0,
                            "max": int(per_image.max()) if len(per_image) else 0,
                            "images_without_boxes": int((per_image == 0).sum())},
        "box_width": _spread(widths),
        "box_height": _spread(heights),
        # The finest feature map has stride 8: boxes thinner than that are
        # the ones a model at this input size finds hardest.
        "boxes_under_8px": int((np.minimum(widths, heights) < 8).sum()),
    }


def intensity_statistics(images):
    """Pixel statistics (0..255) of uint8 RGB images (H, W, 3) of any sizes."""
    means, stds, channel_means, grey = [], [], [], 0
    for image in images:
        pixels = np.asarray(image, np.float32)
        means.append(pixels.mean())
        stds.append(pixels.std())
        channel_means.append(pixels.reshape(-1, pixels.shape[-1]).mean(axis=0))
        # Greyscale files are read as RGB with three equal channels.
        grey += int((image[..., 0] == image[..., 1]).all()
                    and (image[..., 1] == image[..., 2]).all())
    if not means:
        return None
    return {"images_read": len(means), "greyscale_images": grey,
            "channel_mean": [round(float(v), 2) for v in np.mean(channel_means, axis=0)],
            "per_image_mean": _spread(means), "per_image_std": _spread(stds)}


def _evenly_spread(items, count=STATISTICS_IMAGES):
    step = max(1, len(items) // count)
    return items[::step][:count]


def training_budget(cfg, train_examples):
    """Steps per epoch and the epochs `common.training.fit` will run: the
    preset's budget `train.min_steps` decides them from the dataset size."""
    from common import training

    usable, batch = training_batch(cfg, train_examples)
    steps = cfg.train.steps_per_epoch or usable // batch
    if not steps:
        raise DataError(
            f"{cfg.data.source}: {train_examples} training images; mosaic needs at least "
            "4 (add images, or --set data.mosaic=0)")
    epochs = training.epochs_for_budget(cfg.train, steps)
    return {"steps_per_epoch": steps, "batch_size": batch, "epochs": epochs,
            "optimizer_steps": steps * epochs, "min_steps": cfg.train.min_steps,
            "max_epochs": cfg.train.max_epochs}


def data_summary(cfg, info, sized, notes):
    """The report's `data_summary`: examples, boxes, sizes, intensities and the
    settings derived from them; adds the sentences for the report to `notes`."""
    summary = {"source": cfg.data.source, "class_names": info["class_names"]}
    derived = {"image_size": cfg.model.image_size}
    if sized is None:  # TFDS, streamed
        summary["note"] = "streamed from TFDS: no counts or statistics"
        summary["derived"] = derived
        return summary
    targets = sized["targets"]
    summary["examples"] = {split: len(targets[split]) for split in SPLIT_NAMES}
    summary["image_sizes"] = sized["native_sizes"]
    summary["boxes"] = {split: box_statistics(targets[split], info["class_names"])
                        for split in SPLIT_NAMES}
    summary["boxes_dropped"] = info.get("boxes_dropped", 0)
    summary["intensity"] = sized["intensity"]
    derived["image_size_reason"] = sized["image_size_reason"]
    derived.update(training_budget(cfg, summary["examples"]["train"]))
    summary["derived"] = derived
    if cfg.data.source != "synthetic":
        train = summary["boxes"]["train"]
        notes.append(
            f"data: {summary['examples']['train']} training / {summary['examples']['val']} "
            f"validation / {summary['examples']['test']} test images, "
            f"{train['boxes_per_image']['mean']} boxes per training image "
            f"(median {train['box_width']['median'] if train['box_width'] else 0:.0f}x"
            f"{train['box_height']['median'] if train['box_height'] else 0:.0f} px at the "
            f"model's size); {sized['image_size_reason']}.")
    if derived["batch_size"] != cfg.train.batch_size:
        notes.append(f"data: {summary['examples']['train']} training images are fewer than "
                     f"train.batch_size={cfg.train.batch_size}: each step takes all "
                     f"{derived['batch_size']}.")
    if derived["epochs"] != cfg.train.epochs:
        notes.append(
            f"train.min_steps={cfg.train.min_steps}: {derived['steps_per_epoch']} steps per "
            f"epoch, so {derived['epochs']} epochs ({derived['optimizer_steps']} steps) "
            f"instead of train.epochs={cfg.train.epochs}.")
    return summary


# --- Assembly ---------------------------------------------------------------

def build_datasets(cfg):
    """Train / val / test datasets of (images, padded targets) and `info`.

    A local folder may choose the input size (see `choose_image_size`):
    `cfg.model.image_size` is then set to it here, before the model is
    built, so the model, loss, post-processing and exports use it; the
    run's `info.json` and SavedModel `config.json` record it.
    """
    source = cfg.data.source
    bad_samples = BadSampleCounter(cfg.run.skip_bad)
    sized = None
    if source == "synthetic":
        splits, info, sized = _synthetic_splits(cfg)
    elif os.path.exists(source):
        splits, info, sized = _folder_splits(cfg, bad_samples)
        cfg.model.image_size = sized["image_size"]
    elif source.split("/")[0] in sources.TFDS_SPLITS:
        splits, info = _tfds_splits(cfg)
    else:
        raise DataError(
            f"--data {source!r}: expected 'synthetic', a TFDS name (voc/2007, "
            "coco/2017) or an existing VOC / COCO folder")
    notes = []
    if bad_samples.skipped:
        notes.append(f"data: {bad_samples.summary()}")
    if info.get("boxes_dropped"):
        notes.append(f"data: {info['boxes_dropped']} boxes beyond data.max_boxes="
                     f"{cfg.data.max_boxes} were dropped")
    summary = data_summary(cfg, info, sized, notes)
    test_count = int(splits["test"].cardinality())
    info.update({
        "image_size": cfg.model.image_size,
        "box_format": BOX_FORMAT,
        "max_boxes": cfg.data.max_boxes,
        "source": source,
        "num_test": test_count if test_count >= 0 else None,
    })
    return Splits(
        train=training_pipeline(splits["train"], cfg),
        val=evaluation_pipeline(splits["val"], cfg),
        test=evaluation_pipeline(splits["test"], cfg),
        # The training images unaugmented, in order: the classic baseline
        # learns from them (never the augmented mosaics).
        calibration=splits["train"].batch(cfg.train.batch_size).map(
            _as_model_input, num_parallel_calls=AUTOTUNE),
        info=info,
        notes=notes,
        skipped=len(bad_samples.skipped),
        summary=summary,
    )


def representative_dataset(splits, cfg):
    """INT8 calibration images: the validation split, in order, batch 1.

    It is fixed and never augmented (the training split is shuffled and
    augmented), so calibration is repeatable; the test split stays unseen.
    """
    count = cfg.export.representative_samples

    def generator():
        for images, _ in splits.val.unbatch().batch(1).take(count):
            yield [np.asarray(images)]
    return generator
