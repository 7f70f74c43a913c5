"""ESRGAN x4 super-resolution: the task contract (see common/pipeline.py).

RRDB generator, VGG-style discriminator, two training stages (PSNR-oriented
L1, then relativistic average GAN + L1 [+ VGG19 perceptual]); the fixed-tile
generator goes to LiteRT INT8, the any-size one to TF Serving.
"""

from tasks.super_resolution.config import PRESETS, Config
from tasks.super_resolution.data import build_datasets, representative_dataset
from tasks.super_resolution.metrics import PRIMARY_METRIC, baseline_predict_fns, score
from tasks.super_resolution.model import (build_model, build_serving_model, compile_args,
                                          custom_objects, edge_model)
from tasks.super_resolution.samples import save_samples
from tasks.super_resolution.stages import fit_float
from tasks.super_resolution import mobile as MOBILE  # noqa: E402

NAME = "super_resolution"
# What --data accepts (listed by `python -m tasks`).
DATA_SOURCES = ("synthetic: scikit-image's shipped photographs (built in)",
                "div2k (TFDS)",
                "PATH: a folder of high-resolution images")
CLI_FLAGS = {"--vgg-weights": "gan.vgg_weights"}

__all__ = [
    "NAME", "DATA_SOURCES", "CLI_FLAGS", "Config", "PRESETS", "PRIMARY_METRIC",
    "build_datasets", "representative_dataset", "build_model", "build_serving_model",
    "compile_args", "custom_objects", "edge_model", "score", "baseline_predict_fns", "save_samples",
    "fit_float", "MOBILE",
]
