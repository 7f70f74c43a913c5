import numpy as np
import pytest
from PIL import Image

from common import config
from common.errors import DataError
from tasks.segmentation import Config, PRESETS, build_datasets
from tasks.segmentation import data as seg_data


def _cfg(**overrides):
    cfg = config.from_preset(Config, PRESETS, "smoke")
    config.apply_overrides(cfg, overrides)
    return cfg


def test_synthetic_masks_are_exact_and_every_class_appears():
    images, masks = seg_data.synthetic_examples(40, 32, seed=0)
    assert images.dtype == np.uint8 and images.shape == (40, 32, 32, 3)
    assert set(np.unique(masks)) == {0, 1, 2, 3}
    # a shape's pixels differ from the background around it
    foreground = masks[0] > 0
    assert np.abs(images[0][foreground].mean(0) - images[0][~foreground].mean(0)).max() > 5


def test_synthetic_data_is_repeatable_and_the_test_split_is_fixed():
    first = build_datasets(_cfg())
    again = build_datasets(_cfg(**{"data.num_train": 64}))
    test_a = np.concatenate([m.numpy() for _, m in first.test])
    test_b = np.concatenate([m.numpy() for _, m in again.test])
    np.testing.assert_array_equal(test_a, test_b)
    other_seed = build_datasets(_cfg(**{"run.seed": 5}))
    assert not np.array_equal(test_a, np.concatenate([m.numpy() for _, m in other_seed.test]))


def test_splits_have_fixed_shapes_and_float_images():
    splits = build_datasets(_cfg())
    images, masks = next(iter(splits.train))
    assert images.shape == (8, 32, 32, 3) and masks.shape == (8, 32, 32)
    assert 0.0 <= float(images.numpy().min()) and float(images.numpy().max()) <= 1.0
    assert splits.info["num_classes"] == 4 and splits.info["num_test"] == 48


def _write_folder(root, count=6, size=(20, 24), classes=3):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for index in range(count):
        image = rng.integers(0, 255, size + (3,), dtype=np.uint8)
        mask = rng.integers(0, classes, size, dtype=np.uint8)
        Image.fromarray(image).save(root / "images" / f"sample{index}.jpg")
        Image.fromarray(mask).save(root / "masks" / f"sample{index}.png")
    return root


def test_folder_loader_reads_pairs_and_class_names(tmp_path):
    folder = _write_folder(tmp_path / "set")
    (folder / "classes.txt").write_text("background\nroad\ncar\n")
    splits = build_datasets(_cfg(**{"data.source": str(folder)}))
    assert splits.info["class_names"] == ["background", "road", "car"]
    images, masks = next(iter(splits.test))
    assert images.shape[1:] == (32, 32, 3) and masks.shape[1:] == (32, 32)


def test_folder_errors_name_the_file(tmp_path):
    folder = _write_folder(tmp_path / "set")
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(folder / "masks" / "sample1.png")
    with pytest.raises(DataError, match=r"sample1.png: mask is 5x5 but image sample1.jpg is 24x20"):
        seg_data.read_folder(str(folder), 32)
    Image.fromarray(np.full((20, 24), 9, np.uint8)).save(folder / "masks" / "sample1.png")
    with pytest.raises(DataError, match=r"sample1.png: mask value 9 outside the class range 0..2"):
        seg_data.read_folder(str(folder), 32, num_classes=3)
    (folder / "images" / "sample2.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"sample2.jpg: cannot decode image"):
        seg_data.read_folder(str(folder), 32, num_classes=10)


def test_skip_bad_counts_and_keeps_the_rest(tmp_path):
    folder = _write_folder(tmp_path / "set")
    (folder / "images" / "sample2.jpg").write_bytes(b"garbage")
    (folder / "masks" / "sample4.png").unlink()
    read = seg_data.read_folder(str(folder), 32, skip_bad=True)
    assert len(read.images) == 4 and read.skipped == 2
    assert "skipped 2 bad samples" in read.notes[0]
    # 2 of 6 is a third of the set: over the limit, the run stops instead.
    with pytest.raises(DataError, match=r"skipped 2 of 6 samples \(33%\)"):
        seg_data.read_folder(str(folder), 32, skip_bad=True, max_skipped_fraction=0.1)


def test_the_skipped_count_reaches_the_splits(tmp_path):
    folder = _write_folder(tmp_path / "set", count=12)
    (folder / "masks" / "sample4.png").unlink()
    splits = build_datasets(_cfg(**{"data.source": str(folder), "run.skip_bad": True}))
    assert splits.skipped == 1 and "skipped 1 bad samples" in splits.notes[0]
    assert build_datasets(_cfg()).skipped == 0


def _write_palette_mask(path, indices):
    """A Pascal VOC style mask: palette PNG, void pixels 255."""
    image = Image.fromarray(indices.astype(np.uint8), mode="P")
    # VOC's colours: class 1 dark red, 2 dark green, void cream.
    image.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0, 0, 0] * 252 + [224, 224, 192])
    image.save(path)


def test_palette_masks_give_class_indices_and_void_stays_void(tmp_path):
    folder = _write_folder(tmp_path / "set", count=4, size=(16, 16))
    indices = np.zeros((16, 16), np.int32)
    indices[2:8, 2:8] = 1
    indices[9:14, 9:14] = 2
    indices[8, :] = 255  # void border
    for index in range(4):
        _write_palette_mask(folder / "masks" / f"sample{index}.png", indices)
    read = seg_data.read_folder(str(folder), 16)
    # Indices, not the palette colours' luminance; 255 is not a 256th class.
    assert set(np.unique(read.masks)) == {0, 1, 2, 255}
    np.testing.assert_array_equal(read.masks[0], indices)
    assert read.class_names == ["class_0", "class_1", "class_2"]
    # With a class count, 255 is still allowed as void (not "outside the range").
    seg_data.read_folder(str(folder), 16, num_classes=3)
    splits = build_datasets(_cfg(**{"data.source": str(folder), "data.image_size": 16}))
    assert splits.info["num_classes"] == 3 and splits.info["ignore_label"] == 255


def test_an_ignore_label_that_is_a_class_is_refused(tmp_path):
    folder = _write_folder(tmp_path / "set")
    with pytest.raises(DataError, match="data.ignore_label=2 is one of the 3 class indices"):
        seg_data.read_folder(str(folder), 32, num_classes=3, ignore_label=2)


def test_empty_or_wrong_folders_are_refused(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(DataError, match="no images found"):
        seg_data.read_folder(str(tmp_path), 32)
    with pytest.raises(DataError, match="expected sub-folders images/ and masks/"):
        seg_data.read_folder(str(tmp_path / "images"), 32)
    with pytest.raises(DataError, match="--data 'nowhere'"):
        build_datasets(_cfg(**{"data.source": "nowhere"}))


def test_calibration_examples_are_training_data_in_a_fixed_order():
    from common import pipeline
    import tasks.segmentation as task

    cfg = _cfg(**{"data.augment": True, "export.representative_samples": 5})
    splits = build_datasets(cfg)
    first = [example[0] for example in pipeline.representative_dataset(task, splits, cfg)()]
    again = [example[0] for example in pipeline.representative_dataset(task, splits, cfg)()]
    assert len(first) == 5 and first[0].shape == (1, 32, 32, 3)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    train_images, _ = seg_data.synthetic_examples(1, 32, seed=cfg.run.seed)
    np.testing.assert_allclose(first[0][0], train_images[0] / 255.0, atol=1e-6)


# --- Issue 13: size, channels and normalisation follow a local folder --------

def _write_grey_folder(root, count=10, size=24, brightness=None):
    """Greyscale PNG crops with a bright square object; `brightness` gives
    each image's background level (the exposure)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(1)
    for index in range(count):
        mask = np.zeros((size, size), np.uint8)
        top, left = rng.integers(0, size // 2, 2)
        mask[top:top + size // 3, left:left + size // 3] = 1
        level = 100 if brightness is None else brightness[index % len(brightness)]
        image = level + 40 * mask + rng.normal(0, 5, (size, size))
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(
            root / "images" / f"crop{index}.png")
        Image.fromarray(mask).save(root / "masks" / f"crop{index}.png")
    return root


def test_a_grey_folder_keeps_its_own_size_and_one_channel(tmp_path):
    from tasks.segmentation import build_model

    folder = _write_grey_folder(tmp_path / "grey")
    cfg = _cfg(**{"data.source": str(folder)})  # smoke: image_size 32, depth 2
    splits = build_datasets(cfg)
    assert splits.info["image_size"] == 24 and splits.info["channels"] == 1
    images, masks = next(iter(splits.test))
    assert images.shape[1:] == (24, 24, 1) and masks.shape[1:] == (24, 24)
    summary = splits.summary
    assert summary["image_sizes"] == {"24x24": 10} and summary["file_modes"] == {"L": 10}
    assert summary["examples"] == {"train": 8, "val": 1, "test": 1}
    train_pixels = summary["pixels_per_class"]["train"]
    assert sum(train_pixels.values()) == 8 * 24 * 24 and train_pixels["class_1"] == 8 * 64
    assert "every image is 24x24: trained at that size" in summary["derived"]["image_size_reason"]
    assert "greyscale: 1 input channel" in splits.notes[0]
    assert build_model(cfg, splits.info).input_shape == (None, 24, 24, 1)
    # Forcing colour, or turning the native size off, is one setting each.
    forced = build_datasets(_cfg(**{"data.source": str(folder), "data.channels": 3,
                                    "data.max_image_size": 0}))
    assert forced.info["channels"] == 3 and forced.info["image_size"] == 32
    assert next(iter(forced.test))[0].shape[1:] == (32, 32, 3)
    with pytest.raises(DataError, match="data.channels=2; expected 0 .from the data., 1 or 3"):
        build_datasets(_cfg(**{"data.source": str(folder), "data.channels": 2}))
    # Built-in colour data can be turned grey too.
    grey_shapes = build_datasets(_cfg(**{"data.channels": 1}))
    assert next(iter(grey_shapes.test))[0].shape[1:] == (32, 32, 1)


def test_the_image_size_rule():
    choose = seg_data.choose_image_size
    assert choose([(96, 96)] * 3, 64, 128, 8) == (96, "every image is 96x96: trained at that "
                                                      "size (data.max_image_size=128)")
    size, reason = choose([(100, 100)], 64, 128, 8)
    assert size == 96 and "nearest multiple of 8" in reason
    size, reason = choose([(256, 256)], 64, 128, 8)
    assert size == 64 and "larger than data.max_image_size=128" in reason
    size, reason = choose([(96, 96), (80, 80)], 64, 128, 8)
    assert size == 64 and "2 different sizes: resized to data.image_size=64" in reason
    assert "not square" in choose([(96, 80)], 64, 128, 8)[1]
    assert choose([(96, 96)], 64, 0, 8)[0] == 64


def test_auto_normalization_standardizes_images_of_differing_exposure(tmp_path):
    varied = _write_grey_folder(tmp_path / "varied", brightness=[20, 60, 120, 180])
    splits = build_datasets(_cfg(**{"data.source": str(varied)}))
    assert splits.info["normalization"] == "standardize"
    statistics = splits.summary["intensity"]
    assert statistics["mean_spread"] > seg_data.MEAN_SPREAD_LIMIT
    assert any("chose per-image standardization" in note for note in splits.notes)
    images = np.concatenate([batch.numpy() for batch, _ in splits.val])
    np.testing.assert_allclose(images.mean(axis=(1, 2, 3)), 0.0, atol=1e-4)
    np.testing.assert_allclose(images.std(axis=(1, 2, 3)), 1.0, atol=1e-3)

    even = _write_grey_folder(tmp_path / "even")
    splits = build_datasets(_cfg(**{"data.source": str(even)}))
    assert splits.info["normalization"] == "scale"
    assert "kept pixel / 255" in splits.summary["derived"]["normalization_reason"]
    images = next(iter(splits.val))[0].numpy()
    assert images.min() >= 0.0 and images.max() <= 1.0 and images.mean() > 0.3
    # An explicit choice wins; a wrong one names itself.
    forced = build_datasets(_cfg(**{"data.source": str(varied), "data.normalization": "scale"}))
    assert forced.info["normalization"] == "scale"
    with pytest.raises(DataError, match="data.normalization='zscore'; expected one of auto"):
        build_datasets(_cfg(**{"data.source": str(varied), "data.normalization": "zscore"}))


def test_serving_inputs_match_the_training_inputs(tmp_path):
    """`model_inputs` (for serving and predict) turns the uint8 RGB files into
    exactly what the test split feeds the model."""
    folder = _write_grey_folder(tmp_path / "varied", brightness=[20, 60, 120, 180])
    splits = build_datasets(_cfg(**{"data.source": str(folder)}))
    from common import data as data_lib

    # The one test image, drawn as the folder loader draws the splits.
    test_index = int(data_lib.split_indices(10, [0.8, 0.1, 0.1], seed=0)[2][0])
    path = folder / "images" / f"crop{test_index}.png"
    rgb = np.asarray(Image.open(path).convert("RGB"))[None]
    served = seg_data.model_inputs(rgb, splits.info).numpy()
    expected = next(iter(splits.test))[0].numpy()
    assert served.shape == expected.shape == (1, 24, 24, 1)
    np.testing.assert_allclose(served, expected, atol=0.02)


def test_synthetic_data_keeps_colour_and_scale_and_summarises():
    splits = build_datasets(_cfg())
    assert splits.info["channels"] == 3 and splits.info["normalization"] == "scale"
    summary = splits.summary
    assert summary["examples"] == {"train": 512, "val": 32, "test": 48}
    assert summary["image_sizes"] == {"32x32": 592}
    assert set(summary["pixels_per_class"]["test"]) == {"background", "circle", "rectangle",
                                                       "triangle"}
    assert 0 < summary["intensity"]["mean"] < 255
    assert summary["derived"]["steps_per_epoch"] == 64 and summary["derived"]["epochs"] == 10


def test_the_default_step_budget_leaves_the_demo_alone_and_grows_small_folders():
    from common import training

    cfg = config.from_preset(Config, PRESETS, "default")
    assert training.epochs_for_budget(cfg.train, 1536 // 16) == cfg.train.epochs == 14
    # 52 training images: 3 steps an epoch; the budget gives them max_epochs.
    assert training.epochs_for_budget(cfg.train, 3) == cfg.train.max_epochs
    assert 3 * cfg.train.max_epochs >= 300
