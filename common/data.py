"""tf.data finishing, TFDS loading that fails fast offline, local-file helpers.

Augmentation lives in `common/augment.py`; this module is about getting
examples in and batches out.
"""

import dataclasses
import os
import socket
from typing import Any, Dict, List, Optional

import numpy as np
import tensorflow as tf

from common.errors import DataError, DatasetUnavailableError

AUTOTUNE = tf.data.AUTOTUNE
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


@dataclasses.dataclass
class Splits:
    """Batched `(inputs, targets)` datasets and what the model needs to know."""

    train: tf.data.Dataset
    val: tf.data.Dataset
    test: tf.data.Dataset
    info: Dict[str, Any] = dataclasses.field(default_factory=dict)
    # Training examples in a fixed order without augmentation, for INT8
    # calibration; None falls back to the validation split.
    calibration: Optional[tf.data.Dataset] = None
    # Sentences for the report about the data (truncation, dropped boxes ...).
    notes: List[str] = dataclasses.field(default_factory=list)
    # Bad samples skipped under --skip-bad (0 without it: bad data stops the run).
    skipped: int = 0
    # The data summary for the report: examples per split and class, sizes,
    # statistics, and settings derived from them.
    summary: Dict[str, Any] = dataclasses.field(default_factory=dict)


def finish(dataset, batch_size, training, seed=0, augment=None, cache=True,
           shuffle_buffer=1024, drop_remainder=None):
    """Cache, shuffle, augment, batch and prefetch one split.

    `augment(inputs, targets) -> (inputs, targets)` runs per example and only
    when `training`; the test and validation splits are never augmented.
    Training batches drop the remainder so every step has the same shape
    (XLA compiles once); evaluation keeps every example.
    """
    if cache:
        dataset = dataset.cache()
    if training:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed,
                                  reshuffle_each_iteration=True)
        if augment is not None:
            dataset = dataset.map(augment, num_parallel_calls=AUTOTUNE)
    if drop_remainder is None:
        drop_remainder = training
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    return dataset.prefetch(AUTOTUNE)


def mixup(inputs, targets, alpha=0.2, seed=None):
    """Mix a batch with a shuffled copy of itself (Zhang et al., 2018).

    Works on batched float inputs and one-hot / soft targets of any rank.
    """
    batch_size = tf.shape(inputs)[0]
    gamma_1 = tf.random.gamma([batch_size], alpha, seed=seed)
    gamma_2 = tf.random.gamma([batch_size], alpha, seed=seed)
    weight = gamma_1 / (gamma_1 + gamma_2)
    order = tf.random.shuffle(tf.range(batch_size), seed=seed)

    def blend(first, second):
        shape = tf.concat([[batch_size], tf.ones([tf.rank(first) - 1], tf.int32)], 0)
        w = tf.cast(tf.reshape(weight, shape), first.dtype)
        return w * first + (1.0 - w) * second

    return (blend(inputs, tf.gather(inputs, order)),
            blend(targets, tf.gather(targets, order)))


# --- Public datasets --------------------------------------------------------

def _network_reachable(host="storage.googleapis.com", port=443, timeout=3.0):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tfds_load(name, split, data_dir=None, **kwargs):
    """`tfds.load` that fails within seconds when the data is not on disk.

    Offline, TFDS retries DNS for minutes before giving up; here we look for
    the prepared dataset first and only try to download when the network
    answers.
    """
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as error:  # tfds raises several types for unknown names
        raise DatasetUnavailableError(
            f"unknown TFDS dataset {name!r}: {error}".splitlines()[0]
        ) from None
    prepared = os.path.isdir(builder.data_dir) and any(
        entry.endswith(".json") for entry in os.listdir(builder.data_dir)
    )
    if not prepared:
        if not _network_reachable():
            raise DatasetUnavailableError(
                f"TFDS dataset {name!r} is not prepared under "
                f"{os.path.dirname(os.path.dirname(builder.data_dir))} and the "
                "network is unreachable; build it on a connected machine "
                f"(`tfds build {name}`) and copy ~/tensorflow_datasets here, "
                "or pass --data PATH with local files"
            )
        builder.download_and_prepare()
    return builder.as_dataset(split=split, **kwargs)


# --- Local files ------------------------------------------------------------

def resolve_inside(root, relative_path, source):
    """Join `relative_path` to `root`, refusing paths that leave `root`.

    Annotation files name images by path; a path such as `../../etc/passwd`
    must not make us read outside the dataset folder.
    """
    root = os.path.realpath(root)
    full = os.path.realpath(os.path.join(root, relative_path))
    if os.path.commonpath([root, full]) != root:
        raise DataError(
            f"{source}: path {relative_path!r} points outside the dataset "
            f"folder {root}"
        )
    return full


def list_images(folder):
    """Sorted image files directly inside `folder`; an error if there are none."""
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: not a folder")
    names = sorted(
        name for name in os.listdir(folder)
        if name.lower().endswith(IMAGE_EXTENSIONS)
    )
    if not names:
        raise DataError(
            f"{folder}: no images found (expected files ending in "
            f"{', '.join(IMAGE_EXTENSIONS)})"
        )
    return [os.path.join(folder, name) for name in names]


def read_image(path, channels=3):
    """Decode an image file to a uint8 numpy array (H, W, channels).

    Greyscale and RGBA inputs are converted to `channels`; a missing or
    corrupt file raises `DataError` naming it.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            mode = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
            if image.mode != mode:
                image = image.convert(mode)
            array = np.asarray(image, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise DataError(f"{path}: cannot decode image ({error})") from None
    if array.ndim == 2:
        array = array[..., None]
    return array


class BadSampleCounter:
    """Raise on a bad sample, or count and skip it when the user asked."""

    def __init__(self, skip_bad):
        self.skip_bad = skip_bad
        self.skipped = []

    def handle(self, error):
        if not self.skip_bad:
            raise error
        self.skipped.append(str(error))

    def summary(self):
        if not self.skipped:
            return "no bad samples"
        return f"skipped {len(self.skipped)} bad samples (first: {self.skipped[0]})"


def split_indices(count, fractions, seed):
    """Deterministic disjoint index lists for the given fractions (sum <= 1)."""
    order = np.random.default_rng(seed).permutation(count)
    sizes = [int(round(fraction * count)) for fraction in fractions]
    sizes[-1] = count - sum(sizes[:-1]) if sum(fractions) >= 0.999 else sizes[-1]
    parts, start = [], 0
    for size in sizes:
        parts.append(np.sort(order[start:start + size]))
        start += size
    return parts
