"""Sentiment classification with BERT: the task contract (see common/pipeline.py).

keras-hub's `BertBackbone` at the compact BERT sizes, a WordPiece tokenizer in
core TF ops (served inside the SavedModel, run on the host for LiteRT),
optional MLM pre-training and knowledge distillation.
"""

from tasks.sentiment.config import PRESETS, Config
from tasks.sentiment.data import build_datasets
from tasks.sentiment.metrics import PRIMARY_METRIC, baseline_predict_fns, score
from tasks.sentiment.model import (
    BertInputs,
    ClassWeightedCrossentropy,
    build_model,
    build_serving_model,
    compile_args,
    representative_dataset,
)
from tasks.sentiment.samples import save_samples
from tasks.sentiment.saved_run import evaluation_overrides
from tasks.sentiment.training import fit_float

NAME = "sentiment"
# The MediaPipe Tasks file (model_mobile.tflite): export, scoring through MediaPipe.
from tasks.sentiment import mobile as MOBILE  # noqa: E402
# What --data accepts (listed by `python -m tasks`).
DATA_SOURCES = ("synthetic: generated reviews with negation (built in)",
                "glue/sst2 (TFDS)",
                "PATH: a CSV / TSV file (text and label columns) or a folder of them")
CLI_FLAGS = {
    "--init": "model.init",
    "--pretrain-epochs": "model.pretrain_epochs",
    "--teacher": "model.teacher",
    "--alpha": "model.alpha",
    "--temperature": "model.temperature",
}


def custom_objects():
    from tasks.sentiment.ngrams import NgramLogits

    return {"BertInputs": BertInputs, "NgramLogits": NgramLogits,
            "ClassWeightedCrossentropy": ClassWeightedCrossentropy}


__all__ = [
    "NAME", "DATA_SOURCES", "MOBILE", "CLI_FLAGS", "Config", "PRESETS", "PRIMARY_METRIC",
    "build_datasets", "build_model", "build_serving_model", "compile_args",
    "score", "baseline_predict_fns", "save_samples",
    "fit_float", "custom_objects", "representative_dataset", "evaluation_overrides",
]
