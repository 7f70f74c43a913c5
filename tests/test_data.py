
import numpy as np
import pytest
import tensorflow as tf

from common import data
from common.errors import DataError, DatasetUnavailableError


def test_finish_batches_shuffles_training_and_keeps_evaluation_order():
    dataset = tf.data.Dataset.range(10).map(lambda x: (x, x))
    train = list(data.finish(dataset, 4, training=True, seed=1))
    assert [len(x) for x, _ in train] == [4, 4]  # remainder dropped: fixed shapes
    test = [int(v) for x, _ in data.finish(dataset, 4, training=False) for v in x]
    assert test == list(range(10))


def test_augmentation_only_touches_the_training_split():
    dataset = tf.data.Dataset.from_tensor_slices((tf.zeros((4, 2)), tf.zeros(4)))
    shift = lambda x, y: (x + 1.0, y)  # noqa: E731
    train = next(iter(data.finish(dataset, 4, training=True, augment=shift)))[0]
    test = next(iter(data.finish(dataset, 4, training=False, augment=shift)))[0]
    assert float(tf.reduce_min(train)) == 1.0 and float(tf.reduce_max(test)) == 0.0


def test_resolve_inside_refuses_paths_leaving_the_folder(tmp_path):
    assert data.resolve_inside(str(tmp_path), "a/b.png", "x.json").startswith(str(tmp_path))
    with pytest.raises(DataError, match=r"ann.json: path '../../etc/passwd' points outside"):
        data.resolve_inside(str(tmp_path), "../../etc/passwd", "ann.json")


def test_read_image_names_missing_and_corrupt_files(tmp_path):
    with pytest.raises(DataError, match="nothere.png: file not found"):
        data.read_image(str(tmp_path / "nothere.png"))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    with pytest.raises(DataError, match="broken.jpg: cannot decode image"):
        data.read_image(str(broken))


def test_read_image_converts_greyscale_and_rgba(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((4, 5), 7, np.uint8)).save(tmp_path / "grey.png")
    Image.fromarray(np.full((4, 5, 4), 9, np.uint8)).save(tmp_path / "rgba.png")
    assert data.read_image(str(tmp_path / "grey.png")).shape == (4, 5, 3)
    assert data.read_image(str(tmp_path / "rgba.png")).shape == (4, 5, 3)


def test_oversized_images_are_data_errors_naming_the_file(tmp_path, monkeypatch):
    from PIL import Image

    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "huge.png")
    # PIL refuses images over twice this many pixels (a decompression bomb).
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(DataError, match="huge.png: image too large to decode safely"):
        data.read_image(str(tmp_path / "huge.png"))
    with pytest.raises(DataError, match="huge.png: image too large"):
        data.read_image_size(str(tmp_path / "huge.png"))


def test_read_image_size_decodes_the_whole_file(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "whole.png")
    assert data.read_image_size(str(tmp_path / "whole.png")) == (40, 30)
    # A header that opens but pixel data cut short must fail here, not in training.
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "cut.png")
    content = (tmp_path / "cut.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(content[:len(content) // 2])
    with pytest.raises(DataError, match="cut.png: cannot decode image"):
        data.read_image_size(str(tmp_path / "cut.png"))


def test_read_image_can_report_the_file_mode(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((4, 5), 7, np.uint8)).save(tmp_path / "grey.png")
    array, mode = data.read_image(str(tmp_path / "grey.png"), return_mode=True)
    assert array.shape == (4, 5, 3) and mode == "L"


def _palette_png(path, indices):
    """A mode "P" PNG whose palette colours have luminances unlike the indices."""
    from PIL import Image

    image = Image.fromarray(indices.astype(np.uint8), mode="P")
    palette = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [0, 0, 0] * 252 + [224, 224, 192]
    image.putpalette(palette)
    image.save(path)


def test_label_maps_read_palette_indices_not_luminance(tmp_path):
    indices = np.array([[0, 1, 2], [255, 1, 0]])
    _palette_png(tmp_path / "voc.png", indices)
    label_map = data.read_label_map(str(tmp_path / "voc.png"))
    assert label_map.dtype == np.int32
    np.testing.assert_array_equal(label_map, indices)
    # Greyscale masks give their values; RGB ones only when the channels agree.
    from PIL import Image

    Image.fromarray(np.array([[0, 3]], np.uint8)).save(tmp_path / "grey.png")
    np.testing.assert_array_equal(data.read_label_map(str(tmp_path / "grey.png")), [[0, 3]])
    Image.fromarray(np.full((2, 2, 3), 2, np.uint8)).save(tmp_path / "grey_rgb.png")
    np.testing.assert_array_equal(data.read_label_map(str(tmp_path / "grey_rgb.png")),
                                  np.full((2, 2), 2))
    colours = np.zeros((2, 2, 3), np.uint8)
    colours[0, 0] = (128, 0, 0)
    Image.fromarray(colours).save(tmp_path / "colour.png")
    with pytest.raises(DataError, match="colour.png: colour \\(RGB\\) mask"):
        data.read_label_map(str(tmp_path / "colour.png"))


def test_skipping_too_large_a_share_stops_with_the_numbers():
    counter = data.BadSampleCounter(skip_bad=True)
    counter.handle(DataError("a.png: bad"))
    counter.check_share(10, 0.1, "set/")  # 1 of 10 is within 10%
    counter.handle(DataError("b.png: bad"))
    with pytest.raises(DataError, match=r"set/: --skip-bad skipped 2 of 10 samples \(20%\), "
                                        r"more than data.max_skipped_fraction=0.1.*first: a.png"):
        counter.check_share(10, 0.1, "set/")
    counter.check_share(0, 0.1, "empty/")  # nothing read: nothing to compare


def test_list_images_rejects_an_empty_folder(tmp_path):
    with pytest.raises(DataError, match="no images found"):
        data.list_images(str(tmp_path))


def test_bad_sample_counter_raises_or_counts():
    with pytest.raises(DataError):
        data.BadSampleCounter(skip_bad=False).handle(DataError("a.png: bad"))
    counter = data.BadSampleCounter(skip_bad=True)
    counter.handle(DataError("a.png: bad"))
    assert "skipped 1 bad samples (first: a.png: bad)" == counter.summary()


def test_split_indices_are_disjoint_and_deterministic():
    first = data.split_indices(50, [0.8, 0.1, 0.1], seed=4)
    again = data.split_indices(50, [0.8, 0.1, 0.1], seed=4)
    assert [len(p) for p in first] == [40, 5, 5]
    assert len(set(np.concatenate(first))) == 50
    assert all((a == b).all() for a, b in zip(first, again))


def test_tfds_fails_fast_when_offline(tmp_path, monkeypatch):
    import time

    monkeypatch.setattr(data, "_network_reachable", lambda *a, **k: False)
    start = time.time()
    with pytest.raises(DatasetUnavailableError, match="'mnist' is not prepared.*tfds build mnist"):
        data.tfds_load("mnist", split="train", data_dir=str(tmp_path))
    assert time.time() - start < 10
    with pytest.raises(DatasetUnavailableError, match="unknown TFDS dataset 'no_such_set'"):
        data.tfds_load("no_such_set", split="train", data_dir=str(tmp_path))
