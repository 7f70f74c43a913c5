
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


def test_mixup_blends_inputs_and_targets_with_the_same_weight():
    tf.random.set_seed(0)
    inputs = tf.constant([[0.0], [1.0], [0.0], [1.0]])
    targets = tf.constant([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    mixed_inputs, mixed_targets = data.mixup(inputs, targets, alpha=0.4)
    # for these pairs the input value equals the weight on class 1
    np.testing.assert_allclose(mixed_inputs[:, 0], mixed_targets[:, 1], atol=1e-6)
    np.testing.assert_allclose(tf.reduce_sum(mixed_targets, -1), 1.0, atol=1e-6)


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
