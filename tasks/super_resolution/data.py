"""Super-resolution data: built-in photographs, DIV2K (TFDS), HR image folders.

Every source is a set of high-resolution (HR) RGB photographs; the
low-resolution (LR) input is made from the HR image by bicubic x4
downscaling with antialiasing (MATLAB `imresize` style, as the SR
benchmarks do) and rounded to 8-bit levels, as a real LR image would be.

Splits, all float32 in [0, 1], `(lr, hr)` pairs:

- `train_patches`: random HR crops of `data.hr_patch_size` (flips and 90
  degree rotations), for the PSNR and GAN stages of the full-size generator;
- `train`: random crops of one edge tile (`model.tile_size` LR), for the
  fixed-shape edge model's QAT fine-tune and INT8 calibration;
- `val`, `test`: fixed tiles of `model.tile_size` LR covering held-out
  images (never augmented); the last tile of a row or column is aligned to
  the image border, so it overlaps its neighbour.

The built-in photographs ship inside scikit-image (no network): fixed train,
validation and test lists, the test photographs never seen in training.
"""

import dataclasses
import os
import sys
from typing import Any, Optional

import numpy as np
import tensorflow as tf

from common import data as data_lib
from common.errors import DataError, UserError
from tasks.super_resolution.tiling import tile_starts

AUTOTUNE = tf.data.AUTOTUNE

# scikit-image photographs that load from the wheel itself (no pooch download).
# Greyscale ones are stacked to RGB: luminance detail is most of what x4 SR
# learns. The validation image (the right view of a stereo pair whose left
# view is trained on) only picks checkpoints; no reported number uses it.
BUILTIN_TRAIN = ("astronaut", "motorcycle_left", "immunohistochemistry",
                 "hubble_deep_field", "retina", "camera", "coins", "moon",
                 "brick", "grass", "gravel")
BUILTIN_VAL = ("motorcycle_right",)
BUILTIN_TEST = ("chelsea", "coffee", "rocket")
BUILTIN_SOURCES = ("builtin", "synthetic")
DIV2K_NAME = "div2k/bicubic_x4"


@dataclasses.dataclass
class SRSplits(data_lib.Splits):
    """`common.data.Splits` plus the small-patch split of the float stages."""

    train_patches: Optional[tf.data.Dataset] = None
    # The uint8 HR training images in a fixed order, for INT8 calibration.
    calibration_images: Any = None


# --- Images in ----------------------------------------------------------------

def builtin_image(name):
    """One scikit-image photograph as uint8 RGB (H, W, 3)."""
    import skimage.data

    if name.startswith("motorcycle_"):
        left, right, _ = skimage.data.stereo_motorcycle()
        image = left if name == "motorcycle_left" else right
    else:
        image = getattr(skimage.data, name)()
    return as_rgb(np.asarray(image), name)[0]


def as_rgb(image, source):
    """uint8 RGB from greyscale, grey+alpha, RGB or RGBA; and a note if converted."""
    if image.dtype != np.uint8:
        raise DataError(f"{source}: expected 8-bit image data, got {image.dtype}")
    if image.ndim == 2:
        image = image[..., None]
    channels = image.shape[-1] if image.ndim == 3 else 0
    if channels == 1:
        return np.repeat(image, 3, axis=-1), f"{source}: greyscale, converted to RGB"
    if channels == 2:
        return (np.repeat(image[..., :1], 3, axis=-1),
                f"{source}: greyscale with alpha, alpha dropped, converted to RGB")
    if channels == 4:
        return image[..., :3], f"{source}: RGBA, alpha channel dropped"
    if channels == 3:
        return image, None
    raise DataError(f"{source}: expected an image of 1, 3 or 4 channels, "
                    f"got shape {image.shape}")


# What converting a file of each mode to RGB loses, for the report's notes.
_CONVERSION_NOTES = {
    "L": "greyscale, converted to RGB",
    "LA": "greyscale with alpha, alpha dropped, converted to RGB",
    "RGBA": "RGBA, alpha channel dropped",
}


def read_rgb(path):
    """Decode an image file to uint8 RGB; (array, note or None).

    `common.data.read_image` decodes (the one image reader); greyscale, RGBA,
    palette and other files are converted and the note says so; a missing or
    corrupt file raises `DataError` naming it.
    """
    array, mode = data_lib.read_image(path, channels=3, return_mode=True)
    if mode == "RGB":
        return array, None
    return array, f"{path}: {_CONVERSION_NOTES.get(mode, f'{mode} image converted to RGB')}"


# --- LR from HR -----------------------------------------------------------------

def crop_to_scale(image, scale):
    """Crop an (H, W, C) image so both sides are multiples of `scale`."""
    height, width = image.shape[0] // scale * scale, image.shape[1] // scale * scale
    return image[:height, :width]


def downscale(hr, scale):
    """Bicubic x`scale` downscaling with antialiasing, rounded to 8 bits.

    `hr` is float in [0, 1], (H, W, C) or (N, H, W, C), sides multiples of
    `scale`; works eagerly and inside tf.data.
    """
    hr = tf.convert_to_tensor(hr, tf.float32)
    size = tf.shape(hr)[-3:-1] // scale
    lr = tf.image.resize(hr, size, method="bicubic", antialias=True)
    return tf.round(tf.clip_by_value(lr, 0.0, 1.0) * 255.0) / 255.0


def bicubic_upscale(lr, scale):
    """Bicubic x`scale` upscaling (the baseline), clipped to [0, 1]."""
    lr = tf.convert_to_tensor(lr, tf.float32)
    size = tf.shape(lr)[-3:-1] * scale
    return tf.clip_by_value(tf.image.resize(lr, size, method="bicubic"), 0.0, 1.0)


# --- Training crops -------------------------------------------------------------

def random_dihedral(image, seed=None):
    """Random horizontal flip, vertical flip and 90-degree rotation."""
    image = tf.image.random_flip_left_right(image, seed=seed)
    image = tf.image.random_flip_up_down(image, seed=seed)
    turns = tf.random.uniform([], 0, 4, dtype=tf.int32, seed=seed)
    return tf.image.rot90(image, turns)


def random_crop_pairs(images, hr_size, scale, count, batch_size, seed,
                      crops_per_image=4):
    """`count` random `(lr, hr)` crops from a dataset of uint8 HR images.

    Each visit of an image yields `crops_per_image` crops, then crops from
    different images are mixed by a shuffle buffer.
    """
    def crops(image):
        # Crop the uint8 photograph, then convert the crops: converting a
        # whole photograph at every visit made the input slower than the model.
        patches = [random_dihedral(
            tf.image.random_crop(image, [hr_size, hr_size, 3]))
            for _ in range(crops_per_image)]
        return tf.data.Dataset.from_tensor_slices(
            tf.image.convert_image_dtype(tf.stack(patches), tf.float32))

    def pair(hr):
        hr = tf.ensure_shape(hr, [hr_size, hr_size, 3])
        return downscale(hr, scale), hr

    dataset = (images.repeat()
               .shuffle(64, seed=seed)
               .flat_map(crops)
               .shuffle(256, seed=seed + 1)
               .take(count)
               .map(pair, num_parallel_calls=AUTOTUNE))
    # flat_map hides the length; stating it spares Keras a counting pass.
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(count))
    return dataset.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE)


# --- Evaluation tiles -------------------------------------------------------

def image_tiles(hr, tile, scale):
    """Fixed `(lr, hr)` uint8 tiles covering one uint8 HR image (no overlap
    but the last tile of a row or column, which is flush with the border)."""
    hr = crop_to_scale(hr, scale)
    lr = (downscale(hr.astype(np.float32) / 255.0, scale).numpy() * 255.0
          ).round().astype(np.uint8)
    lr_tiles, hr_tiles = [], []
    for top in tile_starts(lr.shape[0], tile):
        for left in tile_starts(lr.shape[1], tile):
            lr_tiles.append(lr[top:top + tile, left:left + tile])
            hr_tiles.append(hr[top * scale:(top + tile) * scale,
                               left * scale:(left + tile) * scale])
    return lr_tiles, hr_tiles


def tile_dataset(named_images, tile, scale, batch_size, limit, counter, split):
    """Tiles of `named_images` [(name, uint8 RGB)], as a batched float dataset.

    An image smaller than one tile is a `DataError` (skipped and counted
    with --skip-bad). Returns (dataset, number of tiles).
    """
    lr_all, hr_all = [], []
    for name, image in named_images:
        if min(image.shape[0], image.shape[1]) < tile * scale:
            counter.handle(DataError(
                f"{name}: {image.shape[1]}x{image.shape[0]} is smaller than one "
                f"{split} tile ({tile * scale}x{tile * scale} HR, i.e. "
                f"{tile}x{tile} LR); use larger images or a smaller "
                "model.tile_size (predict handles small images by padding)"))
            continue
        lr_tiles, hr_tiles = image_tiles(image, tile, scale)
        lr_all += lr_tiles
        hr_all += hr_tiles
        if limit and len(lr_all) >= limit:
            break
    if limit:
        lr_all, hr_all = lr_all[:limit], hr_all[:limit]
    if not lr_all:
        raise DataError(f"the {split} split has no image of at least "
                        f"{tile * scale}x{tile * scale} pixels")
    dataset = tf.data.Dataset.from_tensor_slices((np.stack(lr_all), np.stack(hr_all)))
    dataset = dataset.map(
        lambda lr, hr: (tf.cast(lr, tf.float32) / 255.0, tf.cast(hr, tf.float32) / 255.0),
        num_parallel_calls=AUTOTUNE)
    return dataset.batch(batch_size).prefetch(AUTOTUNE), len(lr_all)


# --- Sources ----------------------------------------------------------------

@dataclasses.dataclass
class ImageSource:
    """HR images of one source: a training image dataset and held-out images."""

    train_images: tf.data.Dataset          # uint8 (H, W, 3), any size
    val_images: Any                        # iterable of (name, uint8 RGB)
    test_images: Any
    train_names: list
    notes: list
    test_names: Optional[list] = None      # None: the names in test_images
    # Image files read (folder sources): the base of the skipped share.
    files_read: int = 0
    # The uint8 training images in memory (None when streamed), for the
    # data summary.
    train_arrays: Optional[list] = None

    def names_of_test_images(self):
        if self.test_names is not None:
            return list(self.test_names)
        return [name for name, _ in self.test_images]


def _min_train_side(cfg):
    return max(cfg.data.hr_patch_size, cfg.model.tile_size * cfg.model.scale)


def builtin_source(cfg):
    def named(names):
        return [(name, builtin_image(name)) for name in names]
    train = named(BUILTIN_TRAIN)
    return ImageSource(
        train_images=_in_memory_dataset([image for _, image in train]),
        val_images=named(BUILTIN_VAL),
        test_images=named(BUILTIN_TEST),
        train_names=list(BUILTIN_TRAIN),
        train_arrays=[image for _, image in train],
        notes=["built-in data: scikit-image photographs; greyscale ones "
               f"({', '.join(n for n in BUILTIN_TRAIN if n in _GREY_BUILTINS)}) "
               "stacked to RGB for training; test photographs "
               f"{', '.join(BUILTIN_TEST)} are never trained on"],
    )


_GREY_BUILTINS = ("camera", "coins", "moon", "brick", "grass", "gravel")


def _in_memory_dataset(images):
    def generate():
        yield from images
    return tf.data.Dataset.from_generator(
        generate, output_signature=tf.TensorSpec([None, None, 3], tf.uint8))


def _split_held_out(items, test_fraction, val_fraction, seed, source):
    """Deterministic test / val / train lists from one list (test first)."""
    if len(items) < 3:
        raise DataError(f"{source}: need at least 3 usable images (train, validation "
                        f"and test), found {len(items)}; or give train/ and test/ subfolders")
    test_count = max(1, int(round(test_fraction * len(items))))
    val_count = max(1, int(round(val_fraction * len(items))))
    order = np.random.default_rng(seed).permutation(len(items))
    pick = lambda indices: [items[i] for i in sorted(indices)]  # noqa: E731
    return {"test": pick(order[:test_count]),
            "val": pick(order[test_count:test_count + val_count]),
            "train": pick(order[test_count + val_count:])}


def folder_source(path, cfg, counter=None):
    """A folder of HR images, every file checked before training starts.

    With train/ and test/ subfolders (val/ optional) those are the splits;
    otherwise a seeded share of the usable images is held out for test and
    validation. Bad files go to `counter` (raised, or skipped and counted
    with --skip-bad); skipping more than data.max_skipped_fraction of them
    stops with a DataError.
    """
    counter = counter or data_lib.BadSampleCounter(cfg.run.skip_bad)
    notes = []
    min_side = _min_train_side(cfg)
    files_read = 0

    def load(files, split):
        nonlocal files_read
        files_read += len(files)
        loaded = []
        for file in files:
            try:
                image, note = read_rgb(file)
            except DataError as error:
                counter.handle(error)
                continue
            if note:
                notes.append(note)
            if split == "train" and min(image.shape[:2]) < min_side:
                counter.handle(DataError(
                    f"{file}: {image.shape[1]}x{image.shape[0]} is smaller than "
                    f"a training crop ({min_side}x{min_side}); use larger images "
                    "or pass --skip-bad to leave it out"))
                continue
            loaded.append((file, image))
        return loaded

    folders = {split: os.path.join(path, split) for split in ("train", "val", "test")}
    if os.path.isdir(folders["train"]) and os.path.isdir(folders["test"]):
        splits = {split: load(data_lib.list_images(folder), split)
                  for split, folder in folders.items() if os.path.isdir(folder)}
        if "val" not in splits:
            # Checkpoints are picked on a few held-out training images.
            train = splits["train"]
            if len(train) < 2:
                raise DataError(f"{folders['train']}: need at least 2 usable images "
                                "(one is held out for validation)")
            held = max(1, int(round(cfg.data.val_fraction * len(train))))
            splits["train"], splits["val"] = train[held:], train[:held]
    else:
        splits = _split_held_out(load(data_lib.list_images(path), "train"),
                                 cfg.data.test_fraction, cfg.data.val_fraction,
                                 cfg.run.seed, path)
    counter.check_share(files_read, cfg.data.max_skipped_fraction, path)
    if not splits["train"]:
        raise DataError(f"{path}: no usable training image")
    return ImageSource(
        train_images=_in_memory_dataset([image for _, image in splits["train"]]),
        val_images=splits["val"], test_images=splits["test"],
        train_names=[name for name, _ in splits["train"]], notes=notes,
        files_read=files_read, train_arrays=[image for _, image in splits["train"]],
    )


def div2k_source(cfg):
    """DIV2K HR images from TFDS: train for training, validation for val/test.

    The LR inputs are made here by the same bicubic downscaling as the other
    sources (TFDS's bicubic_x4 LR images are MATLAB-made and nearly equal).
    The first 10 validation images are the validation split, the other 90
    the test split (DIV2K's test HR images are not public).
    """
    data_dir = cfg.data.tfds_data_dir or None
    train = data_lib.tfds_load(DIV2K_NAME, "train", data_dir=data_dir)
    held_out = data_lib.tfds_load(DIV2K_NAME, "validation", data_dir=data_dir)
    return ImageSource(
        train_images=train.map(lambda example: example["hr"],
                               num_parallel_calls=AUTOTUNE),
        val_images=_TFDSImages(held_out.take(10), first_number=1),
        # Decoded one at a time: 90 2K images would not fit in memory at once.
        test_images=_TFDSImages(held_out.skip(10), first_number=11),
        test_names=[f"div2k validation #{number}" for number in range(11, 101)],
        train_names=["div2k train (800 images)"], notes=[],
    )


class _TFDSImages:
    """Re-iterable (name, uint8 HR image) pairs of a DIV2K split, decoded lazily."""

    def __init__(self, dataset, first_number):
        self.dataset = dataset
        self.first_number = first_number

    def __iter__(self):
        for offset, example in enumerate(self.dataset):
            yield f"div2k validation #{self.first_number + offset}", example["hr"].numpy()


def image_source(cfg, counter=None):
    source = cfg.data.source
    if source in BUILTIN_SOURCES:
        return builtin_source(cfg)
    if source in ("div2k", DIV2K_NAME):
        return div2k_source(cfg)
    if os.path.isdir(source):
        return folder_source(source, cfg, counter)
    raise UserError(
        f"--data {source!r}: expected 'builtin', 'div2k' or a folder of "
        "high-resolution images (optionally with train/ and test/ subfolders)")


# --- Summary -------------------------------------------------------------------

def _spread(values):
    values = np.asarray(values, np.float64)
    return {"min": round(float(values.min()), 2), "median": round(float(np.median(values)), 2),
            "max": round(float(values.max()), 2)}


def image_sizes(images):
    """{"WxH": count} of uint8 images."""
    counts = {}
    for image in images:
        key = f"{image.shape[1]}x{image.shape[0]}"
        counts[key] = counts.get(key, 0) + 1
    return counts


def intensity_statistics(images):
    """Pixel statistics (0..255) of uint8 RGB images of any sizes."""
    means, stds, grey = [], [], 0
    for image in images:
        pixels = np.asarray(image, np.float32)
        means.append(pixels.mean())
        stds.append(pixels.std())
        grey += int((image[..., 0] == image[..., 1]).all()
                    and (image[..., 1] == image[..., 2]).all())
    return {"per_image_mean": _spread(means), "per_image_std": _spread(stds),
            "greyscale_images": grey}


def training_budget(cfg, train_images):
    """What the PSNR stage will do: an epoch is `data.num_train` random crops
    whatever the number of images, so the budget in optimizer steps is the
    same for a folder of 5 photographs and one of 5,000."""
    from common import training

    steps = cfg.train.steps_per_epoch or cfg.data.num_train // cfg.train.batch_size
    epochs = training.epochs_for_budget(cfg.train, steps)
    budget = {"hr_patch_size": cfg.data.hr_patch_size,
              "lr_patch_size": cfg.data.hr_patch_size // cfg.model.scale,
              "crops_per_epoch": cfg.data.num_train, "steps_per_epoch": steps,
              "epochs": epochs, "optimizer_steps": steps * epochs,
              "tile_size": cfg.model.tile_size, "scale": cfg.model.scale}
    if train_images:
        budget["crops_per_training_image"] = round(
            steps * epochs * cfg.train.batch_size / train_images, 1)
    return budget


def data_summary(cfg, source, num_val, num_test, skipped):
    """The report's `data_summary`: images and tiles per split, image sizes,
    intensity statistics and the training budget derived from them."""
    summary = {"source": cfg.data.source, "skipped": skipped}
    held_out = {"val": source.val_images, "test": source.test_images}
    if source.train_arrays is None:  # streamed (DIV2K): no counts or statistics
        summary["note"] = "streamed from TFDS: no image counts, sizes or statistics"
        summary["tiles"] = {"val": num_val, "test": num_test}
        summary["derived"] = training_budget(cfg, None)
        return summary
    summary["examples"] = {"train": len(source.train_arrays),
                           **{split: len(images) for split, images in held_out.items()}}
    summary["tiles"] = {"val": num_val, "test": num_test}
    summary["image_sizes"] = {"train": image_sizes(source.train_arrays),
                              **{split: image_sizes([image for _, image in images])
                                 for split, images in held_out.items()}}
    summary["intensity"] = intensity_statistics(source.train_arrays)
    summary["derived"] = training_budget(cfg, len(source.train_arrays))
    return summary


def summary_notes(summary):
    """Sentences for the report about what the data gave and what follows."""
    derived = summary["derived"]
    crops = (f"{derived['crops_per_epoch']} random {derived['hr_patch_size']}x"
             f"{derived['hr_patch_size']} crops at native resolution an epoch: "
             f"{derived['steps_per_epoch']} steps x {derived['epochs']} epochs = "
             f"{derived['optimizer_steps']} optimizer steps whatever the number of images")
    if "examples" not in summary:
        return [f"data: {crops}."]
    examples = summary["examples"]
    sizes = summary["image_sizes"]["train"]
    size_text = next(iter(sizes)) if len(sizes) == 1 else f"{len(sizes)} sizes"
    return [f"data: {examples['train']} training images ({size_text}) / {examples['val']} "
            f"validation / {examples['test']} test images ({summary['tiles']['test']} test "
            f"tiles of {derived['tile_size']}x{derived['tile_size']} LR); {crops} "
            f"(about {derived['crops_per_training_image']} crops per training image)."]


# --- The task contract ----------------------------------------------------------

def validate_data_config(cfg):
    scale = cfg.model.scale
    if cfg.data.hr_patch_size % scale or cfg.data.hr_patch_size < 8 * scale:
        raise UserError(
            f"data.hr_patch_size: expected a multiple of {scale} and at least "
            f"{8 * scale}, got {cfg.data.hr_patch_size}")
    if cfg.data.num_train < cfg.train.batch_size:
        raise UserError(f"data.num_train ({cfg.data.num_train}) is smaller than one "
                        f"batch (train.batch_size {cfg.train.batch_size})")


def build_datasets(cfg):
    """The splits of the task contract, plus `train_patches` (see module doc)."""
    validate_data_config(cfg)
    scale, tile = cfg.model.scale, cfg.model.tile_size
    # One counter for the whole build: files that do not read, and held-out
    # images smaller than one evaluation tile.
    counter = data_lib.BadSampleCounter(cfg.run.skip_bad)
    source = image_source(cfg, counter)
    seed = cfg.run.seed
    train_patches = random_crop_pairs(
        source.train_images, cfg.data.hr_patch_size, scale, cfg.data.num_train,
        cfg.train.batch_size, seed)
    tile_batch = cfg.data.tile_batch_size
    train_tiles = random_crop_pairs(
        source.train_images, tile * scale, scale,
        max(cfg.data.num_tile_crops, tile_batch), tile_batch, seed + 2,
        crops_per_image=1)
    val, num_val = tile_dataset(source.val_images, tile, scale, tile_batch,
                                cfg.data.num_val, counter, "validation")
    test, num_test = tile_dataset(source.test_images, tile, scale, tile_batch,
                                  cfg.data.num_test, counter, "test")
    if source.files_read:
        # Held-out images too small for a tile are among the files read.
        counter.check_share(source.files_read, cfg.data.max_skipped_fraction,
                            cfg.data.source)
    summary = data_summary(cfg, source, num_val, num_test, len(counter.skipped))
    notes = list(source.notes)
    if counter.skipped:
        notes.append(counter.summary())
    for note in notes:
        print(f"[super_resolution] note: {note}", file=sys.stderr)
    notes += summary_notes(summary)
    info = {
        "scale": scale,
        "tile_size": tile,
        "hr_patch_size": cfg.data.hr_patch_size,
        "num_val": num_val,
        "num_test": num_test,
        "test_images": source.names_of_test_images(),
        "train_images": source.train_names,
    }
    return SRSplits(train=train_tiles, val=val, test=test, info=info,
                    notes=notes, skipped=len(counter.skipped), summary=summary,
                    train_patches=train_patches,
                    calibration_images=source.train_images)


def representative_dataset(splits, cfg, tiles_per_image=16):
    """INT8 calibration: fixed LR tiles of the training images, batch 1.

    Deterministic (the images in their fixed order, evenly spaced tiles, no
    augmentation), shaped like the edge model's input, never from the test
    split. At most `tiles_per_image` per image, so several images are seen.
    """
    count = cfg.export.representative_samples
    tile, scale = cfg.model.tile_size, cfg.model.scale

    def generator():
        produced = 0
        for image in splits.calibration_images:
            image = image.numpy()
            if min(image.shape[:2]) < tile * scale:
                continue
            lr_tiles, _ = image_tiles(image, tile, scale)
            step = max(1, len(lr_tiles) // tiles_per_image)
            for lr in lr_tiles[::step][:tiles_per_image]:
                if produced >= count:
                    return
                yield [lr[None].astype(np.float32) / 255.0]
                produced += 1
    return generator
