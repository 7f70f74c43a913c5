"""Loaders: the built-in set, Pascal VOC and COCO folders, TFDS examples, and
one-line errors (or skip-and-count) for bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from common.config import from_preset
from common.data import BadSampleCounter
from common.errors import DataError
from tasks.detection import Config, PRESETS, build_datasets, sources, synthetic
from tasks.detection.data import choose_image_size, tfds_example_to_pair, training_budget


def _config(**overrides):
    cfg = from_preset(Config, PRESETS, "smoke")
    for key, value in overrides.items():
        section, name = key.split("__")
        setattr(getattr(cfg, section), name, value)
    return cfg


# --- built-in set -------------------------------------------------------------

def test_builtin_set_is_repeatable_with_exact_varied_boxes():
    images, targets = synthetic.make_split(60, 96, 5, 10, seed=[0, 0])
    again, _ = synthetic.make_split(60, 96, 5, 10, seed=[0, 0])
    other, _ = synthetic.make_split(60, 96, 5, 10, seed=[1, 0])
    assert images.dtype == np.uint8 and np.array_equal(images, again)
    assert not np.array_equal(images, other)
    valid = targets[..., 4] >= 0
    counts = valid.sum(1)
    assert counts.min() >= 1 and counts.max() <= synthetic.MAX_OBJECTS
    assert set(targets[valid][:, 4].astype(int)) == set(range(5))
    widths = (targets[..., 2] - targets[..., 0])[valid]
    assert widths.min() < 16 and widths.max() > 30  # small and large objects
    assert targets[valid][:, :4].min() >= 0 and targets[valid][:, :4].max() <= 96
    assert np.all(targets[~valid] == -1)


def test_build_datasets_shapes_and_fixed_test_split():
    cfg = _config(data__num_train=32, data__num_val=8, data__num_test=8)
    splits = build_datasets(cfg)
    images, targets = next(iter(splits.train))
    assert images.shape == (16, 64, 64, 3) and images.dtype == tf.float32
    assert targets.shape == (16, cfg.data.max_boxes, 5)
    assert splits.info["class_names"] == ["circle", "square", "triangle"]
    assert splits.info["box_format"] == "xyxy"
    first = [t.numpy() for _, t in splits.test]
    second = [t.numpy() for _, t in splits.test]
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    epoch_one = next(iter(splits.train))[0].numpy()
    epoch_two = next(iter(splits.train))[0].numpy()
    assert not np.array_equal(epoch_one, epoch_two)  # shuffled and augmented


# --- folders ---------------------------------------------------------------------

def _write_image(path, width=40, height=30, colour=(200, 30, 30)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.full((height, width, 3), colour, np.uint8)).save(path)


VOC_XML = """<annotation><filename>{filename}</filename>
<size><width>40</width><height>30</height></size>
<object><name>{name}</name><difficult>0</difficult>
<bndbox><xmin>{xmin}</xmin><ymin>3</ymin><xmax>{xmax}</xmax><ymax>20</ymax></bndbox></object>
</annotation>"""


def _voc_folder(root, count=10):
    with open(os.path.join(root, "labels.txt"), "w") as handle:
        handle.write("cat\ndog\n")
    os.makedirs(os.path.join(root, "Annotations"))
    for index in range(count):
        _write_image(os.path.join(root, "JPEGImages", f"{index}.jpg"))
        _write_voc(root, index, VOC_XML.format(
            filename=f"{index}.jpg", name="cat" if index % 2 else "dog", xmin=5, xmax=24))


def _write_voc(root, index, text):
    with open(os.path.join(root, "Annotations", f"{index}.xml"), "w") as handle:
        handle.write(text)


def test_voc_folder_loads_boxes_in_pixel_edges(tmp_path):
    root = str(tmp_path)
    _voc_folder(root)
    records, names = sources.load_voc_folder(root, BadSampleCounter(False))
    assert names == ["cat", "dog"] and len(records) == 10
    # VOC's 1-based inclusive xmin=5..xmax=24 covers pixel edges 4..24.
    np.testing.assert_allclose(records[1].boxes, [[4, 2, 24, 20]])
    assert records[1].classes.tolist() == [0] and records[0].classes.tolist() == [1]
    # data.max_image_size=0: resized to model.image_size whatever the folder's size.
    splits = build_datasets(_config(data__source=root, data__val_fraction=0.2,
                                    data__test_fraction=0.2, data__max_image_size=0))
    images, targets = next(iter(splits.test))
    assert images.shape[1:] == (64, 64, 3)
    # Resized 40x30 -> 64x64: x * 1.6, y * 64/30.
    np.testing.assert_allclose(targets[0, 0, :4], [6.4, 2 * 64 / 30, 38.4, 20 * 64 / 30],
                               rtol=1e-5)
    assert targets[0, 1, 4] == -1
    # By default the folder keeps its own size (40 px -> 32, the stride's
    # multiple), and the summary says what it found and chose.
    cfg = _config(data__source=root, data__val_fraction=0.2, data__test_fraction=0.2)
    summary = build_datasets(cfg).summary
    assert cfg.model.image_size == 32 == summary["derived"]["image_size"]
    assert summary["examples"] == {"train": 6, "val": 2, "test": 2}
    assert summary["image_sizes"] == {"40x30": 10}
    boxes = summary["boxes"]["train"]
    assert sum(boxes["boxes_per_class"].values()) == 6 and boxes["boxes_per_image"]["max"] == 1
    assert boxes["box_width"]["median"] == pytest.approx(20 * 32 / 40)
    assert summary["intensity"]["per_image_mean"]["min"] > 0
    assert summary["derived"]["steps_per_epoch"] == 1  # 4 of 6 (mosaic's fours), one batch


def test_a_folder_of_one_size_up_to_the_maximum_trains_at_that_size():
    assert choose_image_size([(256, 256)] * 3, 128, 256) == (
        256, "every image is 256x256: trained at that size (data.max_image_size=256)")
    size, reason = choose_image_size([(200, 150)] * 2, 128, 256)
    assert size == 192 and "square, a multiple of the stride 32" in reason
    for sizes, maximum, why in (([(256, 256), (300, 200)], 256, "2 different sizes"),
                                ([(640, 480)], 256, "larger than data.max_image_size=256"),
                                ([(96, 96)], 0, "data.max_image_size=0")):
        size, reason = choose_image_size(sizes, 128, maximum)
        assert size == 128 and why in reason and "model.image_size=128" in reason


def test_the_step_budget_sets_the_epochs_from_the_folder_size():
    cfg = from_preset(Config, PRESETS, "default")
    cfg.data.source = "my_folder"
    # The built-in 3000 images: 187 steps an epoch keep the preset's 12 epochs.
    assert training_budget(cfg, 3000)["epochs"] == 12
    # Issue 13's 400-image folder (320 to train): 100 epochs, not 240 steps.
    assert training_budget(cfg, 320) == {
        "steps_per_epoch": 20, "batch_size": 16, "epochs": 100, "optimizer_steps": 2000,
        "min_steps": 2000, "max_epochs": 100}
    # Fewer training images than a batch: one batch of all of them.
    assert training_budget(cfg, 10)["batch_size"] == 8  # mosaic takes them in fours
    with pytest.raises(DataError, match="3 training images; mosaic needs at least 4"):
        training_budget(cfg, 3)


@pytest.mark.parametrize("xml, message, named_file", [
    ("<annotation><object>", "malformed XML", "1.xml"),
    (VOC_XML.format(filename="0.jpg", name="cat", xmin=5, xmax=60),
     "outside its 40x30 image", "1.xml"),
    (VOC_XML.format(filename="0.jpg", name="cat", xmin=20, xmax=10), "x2 <= x1", "1.xml"),
    (VOC_XML.format(filename="0.jpg", name="horse", xmin=5, xmax=24),
     "unknown class 'horse'", "1.xml"),
    (VOC_XML.format(filename="../../secret.jpg", name="cat", xmin=5, xmax=24),
     "points outside the dataset folder", "1.xml"),
    (VOC_XML.format(filename="broken.jpg", name="cat", xmin=5, xmax=24),
     "cannot decode image", "broken.jpg"),
    (VOC_XML.format(filename="0.jpg", name="cat", xmin="nan", xmax=24),
     "NaN or infinite coordinate", "1.xml"),
    (VOC_XML.format(filename="0.jpg", name="cat", xmin=5, xmax="inf"),
     "NaN or infinite coordinate", "1.xml"),
])
def test_voc_bad_input_names_file_and_problem(tmp_path, xml, message, named_file):
    root = str(tmp_path)
    _voc_folder(root, count=3)
    with open(os.path.join(root, "JPEGImages", "broken.jpg"), "wb") as handle:
        handle.write(b"not an image")
    _write_voc(root, 1, xml)
    with pytest.raises(DataError, match=message) as error:
        sources.load_voc_folder(root, BadSampleCounter(False))
    assert named_file in str(error.value) and "\n" not in str(error.value)
    counter = BadSampleCounter(True)
    records, _ = sources.load_voc_folder(root, counter)
    assert len(records) == 2 and len(counter.skipped) == 1


def _coco_folder(root, images=6, annotations=None, categories=None):
    entries = []
    for index in range(images):
        _write_image(os.path.join(root, "images", f"{index}.png"), 50, 40)
        entries.append({"id": index + 1, "file_name": f"images/{index}.png",
                        "width": 50, "height": 40})
    data = {
        "images": entries,
        "annotations": annotations if annotations is not None else [
            {"id": i + 1, "image_id": i + 1, "category_id": 7 if i % 2 else 3,
             "bbox": [10, 5, 20, 30], "iscrowd": 0} for i in range(images)],
        "categories": categories or [{"id": 7, "name": "car"}, {"id": 3, "name": "bike"}],
    }
    with open(os.path.join(root, "annotations.json"), "w") as handle:
        json.dump(data, handle)
    return data


def test_coco_folder_maps_categories_and_skips_crowds(tmp_path):
    root = str(tmp_path)
    data = _coco_folder(root)
    data["annotations"].append({"id": 99, "image_id": 1, "category_id": 7,
                                "bbox": [0, 0, 50, 40], "iscrowd": 1})
    with open(os.path.join(root, "annotations.json"), "w") as handle:
        json.dump(data, handle)
    records, names = sources.load_coco_folder(root, BadSampleCounter(False))
    assert names == ["bike", "car"]  # sorted by category id: 3, 7
    np.testing.assert_allclose(records[0].boxes, [[10, 5, 30, 35]])
    assert records[0].classes.tolist() == [0] and records[1].classes.tolist() == [1]
    splits = build_datasets(_config(data__source=root, data__val_fraction=0.2,
                                    data__test_fraction=0.2))
    assert splits.info["class_names"] == ["bike", "car"]
    _, targets = next(iter(splits.val))
    assert targets.shape[1:] == (20, 5)


@pytest.mark.parametrize("change, message", [
    ({"bbox": [45, 5, 20, 30]}, "outside its 50x40 image"),
    ({"bbox": [10, 5, 0, 30]}, "x2 <= x1"),
    ({"bbox": "10,5"}, "is not \\[x, y, width, height\\]"),
    ({"category_id": 42}, "unknown category_id 42"),
    # Every comparison with NaN is false: without a finiteness check these pass.
    ({"bbox": [float("nan"), 5, 20, 30]}, "NaN or infinite coordinate"),
    ({"bbox": [10, 5, float("inf"), 30]}, "NaN or infinite coordinate"),
    ({"bbox": [10, 5, 20, float("nan")]}, "NaN or infinite coordinate"),
    ({"category_id": "3"}, "category_id '3' is not an integer"),
    ({"category_id": [3]}, "category_id \\[3\\] is not an integer"),
])
def test_coco_bad_annotation_names_image(tmp_path, change, message):
    root = str(tmp_path)
    annotations = [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 5, 20, 30]}]
    annotations[0].update(change)
    _coco_folder(root, images=3, annotations=annotations)
    with pytest.raises(DataError, match=message) as error:
        sources.load_coco_folder(root, BadSampleCounter(False))
    assert "images/0.png" in str(error.value)
    counter = BadSampleCounter(True)
    assert len(sources.load_coco_folder(root, counter)[0]) == 2 and len(counter.skipped) == 1


def test_coco_file_outside_folder_undecodable_image_and_broken_json(tmp_path):
    root = str(tmp_path / "coco")
    data = _coco_folder(root, images=3)
    data["images"][0]["file_name"] = "../outside.png"
    with open(os.path.join(root, "images", "1.png"), "wb") as handle:
        handle.write(b"\x89PNG broken")
    with open(os.path.join(root, "annotations.json"), "w") as handle:
        json.dump(data, handle)
    with pytest.raises(DataError, match="points outside the dataset folder"):
        sources.load_coco_folder(root, BadSampleCounter(False))
    counter = BadSampleCounter(True)
    records, _ = sources.load_coco_folder(root, counter)
    assert len(records) == 1 and len(counter.skipped) == 2
    assert "1.png: cannot decode image" in counter.skipped[1]
    with open(os.path.join(root, "annotations.json"), "w") as handle:
        handle.write('{"images": [')
    with pytest.raises(DataError, match="annotations.json: malformed JSON"):
        sources.load_coco_folder(root, BadSampleCounter(True))


def _rewrite(root, data):
    with open(os.path.join(root, "annotations.json"), "w") as handle:
        json.dump(data, handle)


@pytest.mark.parametrize("field, value, message, skipped, kept", [
    # A string id would silently match no annotation (they use integers).
    ("image id", "1", "image id '1' is not an integer", 1, 2),
    ("image id", 1.5, "image id 1.5 is not an integer", 1, 2),
    ("image id", [1], "image id \\[1\\] is not an integer", 1, 2),
    # Two images with one id: whose annotations are whose is unknown.
    ("image id", 2, "image id 2 is used by 2 images", 2, 1),
    # Mixed types: an annotation naming its image by a string.
    ("annotation image_id", "2", "annotation image_id '2' is not an integer", 1, 3),
    ("category id", 3, "category id 3 is used twice", 1, 3),
    ("category id", "seven", "category id 'seven' is not an integer", 1, 3),
])
def test_coco_odd_ids_are_data_errors_and_skippable(tmp_path, field, value, message,
                                                   skipped, kept):
    root = str(tmp_path)
    annotations = [{"id": i + 1, "image_id": i + 1, "category_id": 3,
                    "bbox": [10, 5, 20, 30]} for i in range(3)]
    data = _coco_folder(root, images=3, annotations=annotations)
    if field == "image id":
        data["images"][0]["id"] = value
    elif field == "annotation image_id":
        data["annotations"][1]["image_id"] = value
    else:
        data["categories"][0]["id"] = value  # the first category is "car", id 7
    _rewrite(root, data)
    with pytest.raises(DataError, match=message) as error:
        sources.load_coco_folder(root, BadSampleCounter(False))
    assert "annotations.json" in str(error.value) and "\n" not in str(error.value)
    counter = BadSampleCounter(True)
    records, _ = sources.load_coco_folder(root, counter)
    assert len(counter.skipped) == skipped and len(records) == kept


def test_images_checked_and_trained_on_with_one_decoder(tmp_path):
    """TIFF decodes with PIL (the check) but not with tf.io: training must
    read it the same way the check did, not fail an epoch later."""
    root = str(tmp_path)
    data = _coco_folder(root, images=10)
    for index, entry in enumerate(data["images"]):
        name = f"images/{index}.tif"
        Image.fromarray(np.full((40, 50, 3), 20 * index, np.uint8)).save(
            os.path.join(root, name))
        entry["file_name"] = name
    _rewrite(root, data)
    splits = build_datasets(_config(data__source=root, data__val_fraction=0.2,
                                    data__test_fraction=0.2))
    images = np.concatenate([batch.numpy() for batch, _ in splits.test])
    assert images.shape == (2, 64, 64, 3)
    # Each image is a flat grey 20 * index: the decoded pixels are the file's.
    assert all(len(np.unique(image)) == 1 and image.flat[0] % 20 == 0 for image in images)


def test_decompression_bomb_is_a_data_error_and_skippable(tmp_path, monkeypatch):
    root = str(tmp_path)
    _coco_folder(root, images=3)
    Image.fromarray(np.zeros((120, 120, 3), np.uint8)).save(
        os.path.join(root, "images", "1.png"))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)  # refuses > 10000 pixels
    with pytest.raises(DataError, match="1.png: image too large to decode safely"):
        sources.load_coco_folder(root, BadSampleCounter(False))
    counter = BadSampleCounter(True)
    records, _ = sources.load_coco_folder(root, counter)
    assert len(records) == 2 and len(counter.skipped) == 1


def test_skipped_count_reaches_the_splits_and_too_many_stop_the_run(tmp_path):
    root = str(tmp_path)
    data = _coco_folder(root, images=10)
    data["annotations"][0]["bbox"] = [float("nan"), 5, 20, 30]
    _rewrite(root, data)
    cfg = _config(data__source=root, data__val_fraction=0.2, data__test_fraction=0.2,
                  run__skip_bad=True)
    splits = build_datasets(cfg)
    assert splits.skipped == 1
    assert any("skipped 1 bad samples" in note for note in splits.notes)
    data["annotations"][1]["bbox"] = [10, 5, float("inf"), 30]
    _rewrite(root, data)
    with pytest.raises(DataError, match=r"skipped 2 of 10 samples \(20%\), more than "
                                        r"data.max_skipped_fraction=0.1"):
        build_datasets(cfg)
    cfg.data.max_skipped_fraction = 0.25
    assert build_datasets(cfg).skipped == 2


def test_tfds_example_becomes_padded_xyxy_target():
    example = {
        "image": tf.zeros((100, 200, 3), tf.uint8),
        "objects": {
            "bbox": tf.constant([[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0]]),
            "label": tf.constant([4, 2], tf.int64),
            "is_crowd": tf.constant([False, True]),
        },
    }
    image, target = tfds_example_to_pair(example, size=64, max_boxes=3)
    assert image.shape == (64, 64, 3) and image.dtype == tf.uint8
    np.testing.assert_allclose(target[0], [0.2 * 64, 0.1 * 64, 0.6 * 64, 0.5 * 64, 4], rtol=1e-6)
    assert np.all(target.numpy()[1:] == -1)  # the crowd box is dropped


def test_bad_folder_fails_with_one_line_from_the_command_line(tmp_path):
    root = str(tmp_path)
    _voc_folder(root, count=3)
    _write_voc(root, 2, VOC_XML.format(filename="2.jpg", name="zebra", xmin=5, xmax=24))
    result = subprocess.run(
        [sys.executable, "-m", "tasks.detection.train", "--data", root, "--preset", "smoke",
         "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=600)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "2.xml" in last and "unknown class 'zebra'" in last
    assert "Traceback" not in result.stderr


def test_tfds_source_maps_splits_and_caps_counts(monkeypatch):
    # No TFDS data on disk in CI: stand in for the prepared set.
    from tasks.detection import data

    requested = []

    def fake_load(name, split, data_dir=None):
        requested.append((name, split))
        example = {"image": tf.zeros((30, 40, 3), tf.uint8),
                   "objects": {"bbox": tf.constant([[0.1, 0.1, 0.5, 0.5]]),
                               "label": tf.constant([3], tf.int64)}}
        return tf.data.Dataset.from_tensors(example).repeat(50)

    monkeypatch.setattr(data, "tfds_load", fake_load)
    monkeypatch.setattr(data, "_tfds_class_names", lambda name, data_dir: ["a", "b", "c", "d"])
    cfg = _config(data__source="voc/2007", data__num_train=32, data__num_val=0,
                  data__num_test=8)
    splits = build_datasets(cfg)
    assert requested == [("voc/2007", "train"), ("voc/2007", "validation"),
                         ("voc/2007", "test")]
    assert splits.info["class_names"] == ["a", "b", "c", "d"]
    assert sum(len(t) for _, t in splits.test) == 8  # capped
    assert sum(len(t) for _, t in splits.val) == 50  # 0 = the whole split
    _, targets = next(iter(splits.test))
    np.testing.assert_allclose(targets[0, 0], [6.4, 6.4, 32, 32, 3], rtol=1e-5)
    with pytest.raises(DataError, match="expected 'synthetic', a TFDS name"):
        build_datasets(_config(data__source="mnist/3"))
