"""Datasets for detection: `build_datasets(cfg) -> Splits`.

`--data synthetic` (the default) is the built-in shapes set; `--data
voc/2007` or `coco/2017` read TFDS; `--data PATH` reads a Pascal VOC or
COCO folder. Every split yields `(images (B, S, S, 3) float32 0..255,
targets (B, max_boxes, 5))`, targets in `boxes.BOX_FORMAT` (xyxy pixels of
the resized S x S image) plus the class id, padded with -1. Images are
resized to S x S without keeping the aspect ratio; predictions are scaled
back to the input's own pixels by the serving function and by predict.py.
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


def training_pipeline(dataset, cfg):
    """Cache, shuffle, mosaic, augment, batch, prefetch."""
    data_cfg = cfg.data
    examples = int(dataset.cardinality())
    examples = examples if examples >= 0 else None
    dataset = _cache_if_small(dataset, cfg).shuffle(
        2048, seed=cfg.run.seed, reshuffle_each_iteration=True)
    dataset = dataset.map(_as_model_input, num_parallel_calls=AUTOTUNE)
    if data_cfg.mosaic > 0:
        dataset = dataset.batch(4, drop_remainder=True).map(
            lambda images, targets: augment.mosaic_group(images, targets, data_cfg.mosaic),
            num_parallel_calls=AUTOTUNE,
        ).unbatch()
    dataset = dataset.map(augment.make_augment(data_cfg), num_parallel_calls=AUTOTUNE)
    dataset = dataset.batch(cfg.train.batch_size, drop_remainder=True)
    if examples is not None:
        # Mosaic's batch/unbatch hides the length; Keras wants it for progress
        # and schedules, and would otherwise count by running the pipeline.
        usable = examples - examples % 4 if data_cfg.mosaic > 0 else examples
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(
            usable // cfg.train.batch_size))
    return dataset.prefetch(AUTOTUNE)


def evaluation_pipeline(dataset, cfg):
    dataset = _cache_if_small(dataset, cfg).batch(cfg.train.batch_size)
    return dataset.map(_as_model_input, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


# --- Sources -----------------------------------------------------------------

def _synthetic_splits(cfg):
    size, data_cfg = cfg.model.image_size, cfg.data
    counts = (data_cfg.num_train, data_cfg.num_val, data_cfg.num_test)
    splits = {}
    for index, (name, count) in enumerate(zip(SPLIT_NAMES, counts)):
        # A seed per split: the test set does not change with num_train.
        images, targets = synthetic.make_split(
            count, size, data_cfg.num_classes, data_cfg.max_boxes, seed=[cfg.run.seed, index])
        splits[name] = tf.data.Dataset.from_tensor_slices((images, targets))
    info = {"class_names": list(synthetic.CLASS_NAMES[:data_cfg.num_classes])}
    return splits, info


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


def records_to_dataset(records, size, max_boxes):
    """Records -> dataset of (uint8 image S x S, padded target); boxes scaled to S."""
    paths, targets, dropped = [], [], 0
    for record in records:
        boxes = scale_boxes(record.boxes, size / record.width, size / record.height)
        target, extra = pack_targets(boxes, record.classes, max_boxes)
        paths.append(record.image_path)
        targets.append(target)
        dropped += extra
    targets = np.stack(targets) if targets else np.zeros((0, max_boxes, 5), np.float32)
    dataset = tf.data.Dataset.from_tensor_slices((paths, targets))
    return dataset.map(_read_and_resize(size), num_parallel_calls=AUTOTUNE), dropped


def _folder_splits(cfg, bad_samples):
    records, class_names = sources.load_folder(
        cfg.data.source, bad_samples, cfg.data.max_skipped_fraction)
    val_fraction, test_fraction = cfg.data.val_fraction, cfg.data.test_fraction
    if val_fraction <= 0 or test_fraction <= 0 or val_fraction + test_fraction >= 1:
        raise DataError(
            f"data.val_fraction={val_fraction}, data.test_fraction={test_fraction}: "
            "each must be > 0 and together < 1")
    parts = split_indices(
        len(records), [1 - val_fraction - test_fraction, val_fraction, test_fraction],
        cfg.run.seed)
    splits, dropped = {}, 0
    for name, indices in zip(SPLIT_NAMES, parts):
        if len(indices) == 0:
            raise DataError(
                f"{cfg.data.source}: {len(records)} usable images leave no {name} images")
        splits[name], extra = records_to_dataset(
            [records[i] for i in indices], cfg.model.image_size, cfg.data.max_boxes)
        dropped += extra
    return splits, {"class_names": class_names, "boxes_dropped": dropped}


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


def build_datasets(cfg):
    """Train / val / test datasets of (images, padded targets) and `info`."""
    source = cfg.data.source
    bad_samples = BadSampleCounter(cfg.run.skip_bad)
    if source == "synthetic":
        splits, info = _synthetic_splits(cfg)
    elif os.path.exists(source):
        splits, info = _folder_splits(cfg, bad_samples)
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
        info=info,
        notes=notes,
        skipped=len(bad_samples.skipped),
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
