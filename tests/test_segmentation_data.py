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
    images, _, _, notes, skipped = seg_data.read_folder(str(folder), 32, skip_bad=True)
    assert len(images) == 4 and skipped == 2 and "skipped 2 bad samples" in notes[0]
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
    _, masks, class_names, _, _ = seg_data.read_folder(str(folder), 16)
    # Indices, not the palette colours' luminance; 255 is not a 256th class.
    assert set(np.unique(masks)) == {0, 1, 2, 255}
    np.testing.assert_array_equal(masks[0], indices)
    assert class_names == ["class_0", "class_1", "class_2"]
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
