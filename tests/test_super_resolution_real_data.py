"""Issue 13: a small folder of real photographs, default preset, first try.

The photographs ship inside installed packages and none of them is in the
built-in training set: scikit-learn's `china.jpg` and `flower.jpg` and
matplotlib's `grace_hopper.jpg` to train, scikit-image's `chelsea.png` to
pick checkpoints, and scikit-image's `coffee.png` and `rocket.jpg` to test.
The folder uses the train/ val/ test/ layout, so no photograph is split
across train and test.
"""

import json
import os
import shutil
import time

import matplotlib
import pytest
import skimage
import sklearn
from PIL import Image

from common import pipeline, training
import tasks.super_resolution as task

pytestmark = pytest.mark.slow


def _shipped(package, *parts):
    return os.path.join(os.path.dirname(package.__file__), *parts)


PHOTOGRAPHS = {
    "train": [_shipped(sklearn, "datasets", "images", "china.jpg"),
              _shipped(sklearn, "datasets", "images", "flower.jpg"),
              _shipped(matplotlib, "mpl-data", "sample_data", "grace_hopper.jpg")],
    "val": [_shipped(skimage, "data", "chelsea.png")],
    "test": [_shipped(skimage, "data", "coffee.png"), _shipped(skimage, "data", "rocket.jpg")],
}


def write_photo_folder(root):
    """root/train, root/val, root/test with the shipped photographs, unchanged."""
    for split, paths in PHOTOGRAPHS.items():
        (root / split).mkdir(parents=True)
        for path in paths:
            shutil.copy(path, root / split / os.path.basename(path))
    return root


def test_the_photographs_ship_and_are_not_built_in_training_images(tmp_path):
    folder = write_photo_folder(tmp_path / "photos")
    from tasks.super_resolution.data import BUILTIN_TRAIN, BUILTIN_VAL
    for split, paths in PHOTOGRAPHS.items():
        for path in paths:
            name = os.path.splitext(os.path.basename(path))[0]
            assert name not in BUILTIN_TRAIN + BUILTIN_VAL
            with Image.open(folder / split / os.path.basename(path)) as image:
                assert min(image.size) >= 256  # one evaluation tile of 64x64 LR


def test_default_preset_beats_bicubic_on_a_small_photo_folder(tmp_path):
    folder = write_photo_folder(tmp_path / "photos")
    started = time.time()
    # The default preset with a fifth of its PSNR stage (4 of 20 epochs, 256
    # of 1280 steps: the whole stage costs about 20 CPU-minutes) and no GAN
    # stage (the exported generator is the PSNR-stage one either way,
    # gan.export=psnr). Only the `prepare` and `float` stages run: QAT and
    # export are tests/test_super_resolution_end_to_end.py's.
    _, splits, model = pipeline.run_float_stage(
        task, ["--data", str(folder), "--out", str(tmp_path / "run"),
               "--export-dir", str(tmp_path / "saved_models"), "--epochs", "4",
               "--set", "gan.epochs=0"])
    seconds = time.time() - started
    info = splits.info
    trained = task.score(lambda lr: model.predict(lr, verbose=0), splits.test, info)
    bicubic = task.score(task.baseline_predict_fns(splits, info)["bicubic"], splits.test, info)
    measured = {"float": round(trained["psnr"], 3), "bicubic": round(bicubic["psnr"], 3)}
    # The numbers the README quotes; `pytest -s` shows them.
    print("\nsmall photo folder:", json.dumps(dict(measured, seconds=round(seconds))))

    summary = splits.summary
    assert summary["examples"] == {"train": 3, "val": 1, "test": 2}
    assert summary["image_sizes"]["test"] == {"600x400": 1, "640x427": 1}
    assert summary["tiles"]["test"] == 12
    derived = summary["derived"]
    assert derived["steps_per_epoch"] == 64 and derived["epochs"] == 4
    # It learns: validation PSNR-Y rises epoch after epoch (checkpoints follow it) ...
    history = training.read_history(str(tmp_path / "run" / "stages" / "psnr"))
    assert history["val_psnr"][-1] > history["val_psnr"][0] + 0.3
    # ... and after a fifth of the default budget it is past bicubic on the
    # unseen photographs (measured: +0.07 dB; the built-in set's full
    # default reaches +0.79 dB).
    assert trained["psnr"] > bicubic["psnr"]
