"""tf.data finishing, TFDS loading that fails fast offline, local-file helpers.

Augmentation lives in `common/augment.py`; this module is about getting
examples in and batches out.
"""

import contextlib
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


def _image_error(path, error):
    """The DataError for a file PIL cannot open or decode."""
    from PIL import Image

    if isinstance(error, FileNotFoundError):
        return DataError(f"{path}: file not found")
    if isinstance(error, Image.DecompressionBombError):
        # PIL refuses images so large they could exhaust memory.
        return DataError(f"{path}: image too large to decode safely ({error})")
    return DataError(f"{path}: cannot decode image ({error})")


@contextlib.contextmanager
def _opened_image(path):
    """A fully decoded PIL image; every way a file can fail is a `DataError`.

    The one image decoder of the data loaders: what passes the checks here is
    what training reads, so a file that passes cannot fail an epoch later.
    Errors raised by the caller's `with` body pass through unchanged.
    """
    from PIL import Image, UnidentifiedImageError

    decode_errors = (UnidentifiedImageError, Image.DecompressionBombError,
                     OSError, SyntaxError, ValueError)
    try:
        image = Image.open(path)
    except decode_errors as error:  # FileNotFoundError is an OSError
        raise _image_error(path, error) from None
    with image:
        try:
            image.load()  # decode every pixel now: truncated files fail here
        except decode_errors as error:
            raise _image_error(path, error) from None
        yield image


def read_file_bytes(path, expected):
    """The bytes of a data file, or a DataError naming the path and what
    was expected there (`expected`: "a text file", "a CSV / TSV file")."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected {expected}") from None


def read_image(path, channels=3, return_mode=False):
    """Decode an image file to a uint8 numpy array (H, W, channels).

    Greyscale, palette, RGBA and other modes are converted to `channels`; a
    missing, corrupt or oversized file raises `DataError` naming it. With
    `return_mode`, returns (array, the file's own PIL mode such as "L" or
    "RGBA"), so a caller can say what was converted.
    """
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
    with _opened_image(path) as image:
        file_mode = image.mode
        if image.mode != mode:
            image = image.convert(mode)
        array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[..., None]
    return (array, file_mode) if return_mode else array


def read_image_size(path):
    """(width, height) of an image file, after decoding it fully the way
    `read_image` does (so a file that passes here also reads there)."""
    with _opened_image(path) as image:
        return image.size


def read_label_map(path):
    """A PNG of one class index per pixel -> int32 array (H, W).

    Palette ("P") images give their palette indices, as Pascal VOC masks
    need (converting them would give the colours' luminance); greyscale
    images give their values; an RGB image is accepted only when its three
    channels are equal.
    """
    with _opened_image(path) as image:
        mode = image.mode
        if mode in ("P", "L", "I", "I;16", "1"):
            array = np.asarray(image).astype(np.int32)
        elif mode in ("LA", "PA"):
            array = np.asarray(image)[..., 0].astype(np.int32)  # alpha dropped
        elif mode in ("RGB", "RGBA"):
            channels = np.asarray(image)[..., :3].astype(np.int32)
            if not ((channels[..., 0] == channels[..., 1]).all()
                    and (channels[..., 0] == channels[..., 2]).all()):
                raise DataError(
                    f"{path}: colour ({mode}) mask; expected one class index per "
                    "pixel (a greyscale or palette PNG)")
            array = channels[..., 0]
        else:
            raise DataError(
                f"{path}: mask of image mode {mode}; expected a greyscale or "
                "palette PNG of class indices")
    return array


def check_skipped_share(skipped, total, limit, source, first_reason=None):
    """Stop when more than `limit` (a fraction) of `total` samples were skipped:
    that many bad files means broken data, not a few bad samples."""
    if total > 0 and skipped / total > limit:
        first = f" (first: {first_reason})" if first_reason else ""
        raise DataError(
            f"{source}: --skip-bad skipped {skipped} of {total} samples "
            f"({100.0 * skipped / total:.0f}%), more than "
            f"data.max_skipped_fraction={limit}; fix the data or raise the limit "
            f"with --set data.max_skipped_fraction=...{first}")


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

    def check_share(self, total, limit, source):
        """DataError when more than `limit` of `total` samples were skipped."""
        first = self.skipped[0] if self.skipped else None
        check_skipped_share(len(self.skipped), total, limit, source, first)


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
