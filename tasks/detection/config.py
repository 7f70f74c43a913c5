"""Configuration of the detection task: model, data, post-processing, presets.

Training, QAT and export hyperparameters live in the common sections
(`train`, `qat`, `export`); this file adds what is specific to detection.
"""

import dataclasses
from typing import List

from common.config import BaseConfig, DataConfig


@dataclasses.dataclass
class DetectionModelConfig:
    """A YOLOv8 detector: keras-cv's YOLOv8 backbone, PA-FPN and head."""

    # Square input side in pixels; a multiple of 32 (the coarsest stride).
    image_size: int = 128
    # Channels and CSP depth of the backbone's four stages (YOLOv8Backbone).
    stackwise_channels: List[int] = dataclasses.field(
        default_factory=lambda: [16, 32, 64, 128])
    stackwise_depth: List[int] = dataclasses.field(
        default_factory=lambda: [1, 1, 1, 1])
    # Depth of the CSP blocks in the feature pyramid (1 for s, 2 for m).
    fpn_depth: int = 1
    # Width of the head's 3x3 convolutions; 0 keeps keras-cv's rule
    # (box: max(64, P3 channels / 4), class: max(classes, P3 channels)).
    head_channels: int = 0
    # Loss weights (Ultralytics' defaults) and the task-aligned assigner's top-k.
    box_loss_weight: float = 7.5
    class_loss_weight: float = 0.5
    dfl_loss_weight: float = 1.5
    max_anchor_matches: int = 10


@dataclasses.dataclass
class DetectionDataConfig(DataConfig):
    """Where examples come from and how training examples are augmented.

    For TFDS sets num_train / num_val / num_test cap each split (0 = all);
    local folders are split by val_fraction / test_fraction.
    """

    num_train: int = 3000
    num_val: int = 200
    num_test: int = 300
    # Boxes per image after padding with -1 (extra boxes are dropped, counted).
    max_boxes: int = 20
    # Built-in set: number of shape classes (at most 5).
    num_classes: int = 5
    # A local folder whose images all share one size with the longer side up
    # to this many pixels trains at that size (rounded to a multiple of 32,
    # square) instead of being resized to model.image_size: small objects
    # keep their pixels. 0: always model.image_size.
    max_image_size: int = 256
    # Local folders: fractions held out for validation and test.
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    # TFDS data folder ("" = TFDS's default, ~/tensorflow_datasets).
    tfds_data_dir: str = ""
    # Box-aware augmentation of the training split.
    flip: bool = True
    scale_min: float = 0.8
    scale_max: float = 1.25
    translate: float = 0.1
    color_jitter: float = 0.2
    mosaic: float = 0.25  # probability that a training image is a mosaic of 4


@dataclasses.dataclass
class PostprocessConfig:
    """Decoding + class-aware non-maximum suppression."""

    # Low score threshold for mAP (the COCO evaluator ranks all detections).
    score_threshold: float = 0.01
    iou_threshold: float = 0.6
    max_detections: int = 100
    # Threshold for the pictures drawn by predict.py and the report.
    display_threshold: float = 0.3


@dataclasses.dataclass
class Config(BaseConfig):
    task: str = "detection"
    model: DetectionModelConfig = dataclasses.field(default_factory=DetectionModelConfig)
    data: DetectionDataConfig = dataclasses.field(default_factory=DetectionDataConfig)
    postprocess: PostprocessConfig = dataclasses.field(default_factory=PostprocessConfig)


PRESETS = {
    # Seconds on 2 CPU cores: a check that every stage runs end to end.
    "smoke": {
        "model.image_size": 64,
        "model.stackwise_channels": "16,32,64,64",
        "data.num_train": 768,
        "data.num_val": 32,
        "data.num_test": 64,
        "data.num_classes": 3,
        "data.mosaic": 0.0,
        "train.epochs": 10,
        "train.batch_size": 16,
        "train.learning_rate": 4e-3,
        "qat.epochs": 1,
        "qat.learning_rate": 1e-4,
        "export.representative_samples": 32,
        "export.latency_samples": 5,
        "export.debug_layers": False,  # a second conversion; the default has it
    },
    # The built-in demo: minutes on 2 CPU cores.
    "default": {
        "train.epochs": 12,
        "train.batch_size": 16,
        "train.learning_rate": 2e-3,
        # A budget in optimizer steps, so the dataset size sets the epochs:
        # the built-in 3000 images make 187 steps an epoch and pass it in
        # their 12 epochs (2244 steps); a folder of 400 images (320 to train,
        # 20 steps an epoch) trains 100 epochs, 2000 steps instead of 240; a
        # 50-image folder 100 epochs (Ultralytics' default) of 2 steps.
        "train.min_steps": 2000,
        "train.max_epochs": 100,
        "qat.epochs": 1,
        "qat.learning_rate": 1e-4,
        # float32 even on CPUs with native bfloat16 (common/precision.py):
        # bfloat16 loses quality. The default run, same seed, both ways
        # (benchmarks/results/bfloat16_detection_default_end_to_end.json):
        # test mAP@0.5 float 0.8503 vs float32's 0.8625, shipped INT8 0.8493
        # vs 0.8608 (mAP 0.634 vs 0.645), for a step 1.07x faster in CPU
        # time (1.73x wall, loaded machine) where bfloat16 is native.
        "run.bfloat16_on_cpu": False,
    },
    # Published YOLOv8 sizes (Ultralytics' s and m), 640 px, for real data.
    "yolov8_s": {
        "model.image_size": 640,
        "model.stackwise_channels": "64,128,256,512",
        "model.stackwise_depth": "1,2,2,1",
        "model.fpn_depth": 1,
        "data.max_boxes": 100,
        "train.epochs": 100,
        "train.optimizer": "adamw",
        "train.weight_decay": 5e-4,
        "train.warmup_epochs": 3,
    },
    "yolov8_m": {
        "model.image_size": 640,
        "model.stackwise_channels": "96,192,384,576",
        "model.stackwise_depth": "2,4,4,2",
        "model.fpn_depth": 2,
        "data.max_boxes": 100,
        "train.epochs": 100,
        "train.optimizer": "adamw",
        "train.weight_decay": 5e-4,
        "train.warmup_epochs": 3,
    },
}
