"""Semantic segmentation with a U-Net: the task contract (see common/pipeline.py)."""

from tasks.segmentation.config import PRESETS, Config
from tasks.segmentation.data import build_datasets
from tasks.segmentation.metrics import PRIMARY_METRIC, baseline_predict_fns, score
from tasks.segmentation.model import build_model, build_serving_model, compile_args
from tasks.segmentation.samples import save_samples

NAME = "segmentation"
# The MediaPipe Tasks file (model_mobile.tflite): export, scoring through MediaPipe.
from tasks.segmentation import mobile as MOBILE  # noqa: E402
# What --data accepts (listed by `python -m tasks`).
DATA_SOURCES = ("synthetic: shapes on noisy textures, exact masks (built in)",
                "oxford_iiit_pet (TFDS)",
                "PATH: a folder with images/ and same-named PNG masks/")

__all__ = [
    "NAME", "DATA_SOURCES", "MOBILE", "Config", "PRESETS", "PRIMARY_METRIC", "build_datasets",
    "build_model", "build_serving_model", "compile_args", "score",
    "baseline_predict_fns", "save_samples",
]
