"""Object detection with YOLOv8 (keras-cv backbone): the task contract
(see common/pipeline.py)."""

import dataclasses

from tasks.detection.config import PRESETS, Config
from tasks.detection import data as _data
from tasks.detection.data import representative_dataset
from tasks.detection.metrics import baseline_predict_fns, score
from tasks.detection.model import build_model
from tasks.detection import mobile as MOBILE
from tasks.detection import postprocess
from tasks.detection.samples import save_samples
from tasks.detection.serving import build_serving_model

NAME = "detection"
# What --data accepts (listed by `python -m tasks`).
DATA_SOURCES = ("synthetic: shapes with clutter, exact boxes (built in)",
                "voc/2007, coco/2017 (TFDS)",
                "PATH: a Pascal VOC folder (JPEGImages/ + Annotations/) or a COCO folder "
                "(images + annotations JSON)")
PRIMARY_METRIC = "map50"
CLI_FLAGS = {"--max-boxes": "data.max_boxes", "--image-size": "model.image_size"}


def build_datasets(cfg):
    """`data.build_datasets`, with the run's NMS settings in `info` (and so
    in info.json): the mobile file has NMS inside, and `MOBILE.export_mobile`
    is handed `info`, not the config."""
    splits = _data.build_datasets(cfg)
    splits.info["postprocess"] = dataclasses.asdict(cfg.postprocess)
    return splits


def compile_args(cfg, info):
    from tasks.detection.losses import YOLOv8Loss

    model_cfg = cfg.model
    return {"loss": YOLOv8Loss(
        num_classes=len(info["class_names"]), image_size=model_cfg.image_size,
        box_weight=model_cfg.box_loss_weight, class_weight=model_cfg.class_loss_weight,
        dfl_weight=model_cfg.dfl_loss_weight, max_anchor_matches=model_cfg.max_anchor_matches,
    )}


def predict_fn_from_raw(raw_fn, cfg, info):
    """Raw outputs (Keras, LiteRT float or INT8, SavedModel) -> detections,
    decoded and NMS-ed on the host by `postprocess.py`."""
    settings = cfg.postprocess

    def predict(images):
        return postprocess.postprocess(
            raw_fn(images), cfg.model.image_size,
            score_threshold=settings.score_threshold,
            iou_threshold=settings.iou_threshold,
            max_detections=settings.max_detections)
    return predict


def custom_objects():
    from tasks.detection.losses import YOLOv8Loss

    return {"YOLOv8Loss": YOLOv8Loss}


__all__ = [
    "NAME", "DATA_SOURCES", "CLI_FLAGS", "Config", "PRESETS", "PRIMARY_METRIC",
    "build_datasets", "build_model", "build_serving_model", "compile_args", "score",
    "baseline_predict_fns", "predict_fn_from_raw", "representative_dataset",
    "save_samples", "custom_objects", "MOBILE",
]
