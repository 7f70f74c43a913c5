"""Built-in photographs, HR folders, LR making, crops, tiles, bad input."""

import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from common import config
from common.errors import DataError, UserError
from tasks.super_resolution import PRESETS, Config, build_datasets
from tasks.super_resolution import data as sr_data


def _cfg(**overrides):
    cfg = config.from_preset(Config, PRESETS, "smoke")
    config.apply_overrides(cfg, overrides)
    return cfg


def _photo(seed, height, width):
    """A smooth colour image with some texture, uint8."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((1, 5, 5, 3))
    smooth = tf.image.resize(coarse, (height, width), method="bicubic")[0].numpy()
    return np.clip((smooth + rng.normal(0, 0.03, smooth.shape)) * 255, 0, 255).astype(np.uint8)


def test_builtin_photographs_load_offline_and_test_images_are_held_out():
    names = sr_data.BUILTIN_TRAIN + sr_data.BUILTIN_VAL + sr_data.BUILTIN_TEST
    assert len(set(names)) == len(names)
    for name in sr_data.BUILTIN_TEST + ("camera",):
        image = sr_data.builtin_image(name)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert min(image.shape[:2]) >= 256
    # camera is greyscale: stacked to three equal channels.
    camera = sr_data.builtin_image("camera")
    np.testing.assert_array_equal(camera[..., 0], camera[..., 2])


def test_downscale_is_antialiased_bicubic_on_8_bit_levels():
    hr = _photo(0, 64, 48).astype(np.float32) / 255.0
    lr = sr_data.downscale(hr, 4).numpy()
    assert lr.shape == (16, 12, 3)
    np.testing.assert_allclose(lr * 255.0, np.round(lr * 255.0), atol=1e-4)
    reference = tf.clip_by_value(
        tf.image.resize(hr, (16, 12), method="bicubic", antialias=True), 0, 1).numpy()
    assert np.abs(lr - reference).max() <= 0.5 / 255 + 1e-6
    assert sr_data.bicubic_upscale(lr, 4).shape == (64, 48, 3)


def test_builtin_splits_have_fixed_shapes_and_a_fixed_test_split():
    cfg = _cfg()
    splits = build_datasets(cfg)
    scale, tile, patch = 4, cfg.model.tile_size, cfg.data.hr_patch_size
    lr, hr = next(iter(splits.train_patches))
    assert lr.shape == (cfg.train.batch_size, patch // scale, patch // scale, 3)
    assert hr.shape == (cfg.train.batch_size, patch, patch, 3)
    # The LR input is the bicubic downscale of its HR crop.
    np.testing.assert_allclose(lr, sr_data.downscale(hr, scale), atol=1e-6)
    lr, hr = next(iter(splits.train))
    assert lr.shape[1:] == (tile, tile, 3) and hr.shape[1:] == (tile * 4, tile * 4, 3)
    assert splits.info["num_test"] == cfg.data.num_test
    assert splits.info["test_images"] == list(sr_data.BUILTIN_TEST)
    first = np.concatenate([h.numpy() for _, h in splits.test])
    again = np.concatenate([h.numpy() for _, h in build_datasets(_cfg(**{"run.seed": 3})).test])
    np.testing.assert_array_equal(first, again)
    assert 0.0 <= first.min() and first.max() <= 1.0


def test_training_crops_are_augmented_and_differ_between_epochs():
    images = tf.data.Dataset.from_tensors(_photo(1, 80, 80))
    crops = sr_data.random_crop_pairs(images, 32, 4, count=8, batch_size=8, seed=0)
    first = next(iter(crops))[1].numpy()
    second = next(iter(crops))[1].numpy()
    assert not np.array_equal(first, second)
    # A flip or rotation of a crop gives crops no plain crop could: checked by
    # the dihedral helper directly.
    square = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
    seen = {tuple(sr_data.random_dihedral(square).numpy().ravel()) for _ in range(60)}
    assert len(seen) > 4


def test_tiles_cover_the_image_with_the_last_tile_flush():
    hr = _photo(2, 90, 130)
    lr_tiles, hr_tiles = sr_data.image_tiles(hr, tile=8, scale=4)
    # LR 22x32 -> rows 0, 8, 14; columns 0, 8, 16, 24.
    assert len(lr_tiles) == 3 * 4
    np.testing.assert_array_equal(hr_tiles[-1], hr[88 - 32:88, 128 - 32:128])


def _write(path, array, mode=None):
    Image.fromarray(array, mode).save(path)


def test_folder_source_converts_grey_and_rgba_and_splits_train_test(tmp_path):
    for split, count in (("train", 3), ("test", 1)):
        os.makedirs(tmp_path / split)
        for index in range(count):
            _write(tmp_path / split / f"{index}.png", _photo(index, 160, 160))
    _write(tmp_path / "train" / "grey.png", _photo(9, 160, 160)[..., 0])
    rgba = np.concatenate([_photo(8, 160, 160), np.full((160, 160, 1), 255, np.uint8)], -1)
    _write(tmp_path / "train" / "alpha.png", rgba)
    splits = build_datasets(_cfg(**{"data.source": str(tmp_path)}))
    notes = " ".join(splits.notes)
    assert "grey.png: greyscale, converted to RGB" in notes
    assert "alpha.png: RGBA, alpha channel dropped" in notes
    assert splits.info["test_images"] == [str(tmp_path / "test" / "0.png")]
    assert len(splits.info["train_images"]) + 1 == 5  # one held out for validation
    lr, hr = next(iter(splits.train_patches))
    assert lr.shape[-1] == 3 and hr.shape[-1] == 3
    # The summary: photographs per split, their sizes, the smoke budget.
    summary = splits.summary
    assert summary["examples"] == {"train": 4, "val": 1, "test": 1}
    assert summary["image_sizes"]["train"] == {"160x160": 4}
    assert summary["intensity"]["greyscale_images"] == 1  # grey.png, stacked to RGB
    derived = summary["derived"]
    assert derived["steps_per_epoch"] == 64 // 8 and derived["optimizer_steps"] == 8
    assert derived["crops_per_training_image"] == 16.0  # 8 steps of 8 crops, 4 images
    assert any("crops at native resolution" in note for note in splits.notes)


def test_bad_folders_give_one_line_errors_naming_the_file(tmp_path):
    for index in range(3):
        _write(tmp_path / f"{index}.png", _photo(index, 160, 160))
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="broken.png: cannot decode image"):
        build_datasets(_cfg(**{"data.source": str(tmp_path), "data.test_fraction": 0.0,
                               "data.val_fraction": 0.0}))
    os.remove(tmp_path / "broken.png")
    _write(tmp_path / "tiny.png", _photo(5, 20, 20))
    with pytest.raises(DataError, match="tiny.png: 20x20 is smaller than"):
        build_datasets(_cfg(**{"data.source": str(tmp_path), "run.seed": 1}))
    with pytest.raises(UserError, match="expected 'builtin', 'div2k' or a folder"):
        build_datasets(_cfg(**{"data.source": str(tmp_path / "missing")}))


def test_skip_bad_leaves_out_unusable_images(tmp_path):
    for index in range(4):
        _write(tmp_path / f"{index}.png", _photo(index, 160, 160))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    # 1 of 5 files is 20%: allowed here, refused at the default 10%.
    cfg = _cfg(**{"data.source": str(tmp_path), "run.skip_bad": True,
                  "data.max_skipped_fraction": 0.25})
    splits = build_datasets(cfg)
    assert splits.skipped == 1
    assert any("skipped 1 bad samples" in note for note in splits.notes)
    cfg.data.max_skipped_fraction = 0.1
    with pytest.raises(DataError, match=r"skipped 1 of 5 samples \(20%\), more than "
                                        r"data.max_skipped_fraction=0.1.*broken.jpg"):
        build_datasets(cfg)


def test_images_are_read_by_the_common_reader(tmp_path, monkeypatch):
    # Palette images are converted (and said so); oversized ones are a
    # DataError naming the file, skipped with --skip-bad.
    for index in range(4):
        _write(tmp_path / f"{index}.png", _photo(index, 160, 160))
    Image.fromarray(_photo(7, 160, 160)).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(_photo(8, 400, 400)).save(tmp_path / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40_000)  # refuses > 80000 pixels
    cfg = _cfg(**{"data.source": str(tmp_path), "data.test_fraction": 0.2,
                  "data.val_fraction": 0.2})
    with pytest.raises(DataError, match="huge.png: image too large to decode safely"):
        build_datasets(cfg)
    cfg.run.skip_bad, cfg.data.max_skipped_fraction = True, 0.5
    splits = build_datasets(cfg)
    assert splits.skipped == 1
    assert any("palette.png: P image converted to RGB" in note for note in splits.notes)


def test_evaluation_tiles_use_the_one_tiling_rule():
    from tasks.super_resolution import tiling

    assert sr_data.tile_starts is tiling.tile_starts
    assert tiling.tile_starts(22, 8) == [0, 8, 14]  # no overlap: last tile flush


def test_div2k_fails_fast_offline_with_the_dataset_name(tmp_path, monkeypatch):
    from common import data as common_data

    # Never touch the network: the check is whether the error says how to
    # get the set when it is neither on disk nor downloadable.
    monkeypatch.setattr(common_data, "_network_reachable", lambda *args, **kwargs: False)
    cfg = _cfg(**{"data.source": "div2k", "data.tfds_data_dir": str(tmp_path)})
    with pytest.raises(UserError, match="'div2k/bicubic_x4' is not prepared.*"
                                        "network is unreachable.*tfds build div2k"):
        build_datasets(cfg)


def test_representative_tiles_are_deterministic_and_tile_shaped():
    cfg = _cfg(**{"export.representative_samples": 5})
    splits = build_datasets(cfg)
    first = [sample[0] for sample in sr_data.representative_dataset(splits, cfg)()]
    again = [sample[0] for sample in sr_data.representative_dataset(splits, cfg)()]
    assert len(first) == 5 and first[0].shape == (1, 32, 32, 3)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
