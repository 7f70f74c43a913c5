"""Machine translation with the Transformer: the task contract (see common/pipeline.py).

The encoder-decoder of "Attention Is All You Need" from keras-hub layers, a
WordPiece vocabulary in core TF ops (served inside the SavedModel), greedy
and beam search with a key/value cache on the host, and an edge program of
two LiteRT signatures (encode, decode_step) that runs INT8 without Flex ops.
"""

from tasks.translation.calibration import representative_dataset
from tasks.translation.config import PRESETS, Config
from tasks.translation.data import build_datasets
from tasks.translation.decoding import predict_fn_from_raw
from tasks.translation.metrics import PRIMARY_METRIC, baseline_predict_fns, score
from tasks.translation.model import (
    CachedDecoderCall,
    MaskedSmoothedCrossentropy,
    MaskedTokenAccuracy,
    PaddingMask,
    SourceTargetEmbedding,
    StepIndex,
    build_model,
    build_serving_model,
    compile_args,
    edge_model,
)
from tasks.translation.samples import save_samples
from tasks.translation.saved_run import evaluation_overrides

NAME = "translation"
# What --data accepts (listed by `python -m tasks`).
DATA_SOURCES = (("synthetic: a generated parallel corpus with word order, agreement, "
                 "inflection, numbers and dates (built in)"),
                "ted_hrlr_translate/pt_to_en, wmt14_translate/de-en (TFDS)",
                "PATH: a TSV file (source TAB target) or two aligned text files")
EDGE_SIGNATURES = ("encode", "decode_step")
# The best epoch is chosen by validation BLEU (a full decode of the
# validation split each epoch, batched: about 0.3 s for 46 pairs here), not
# by the teacher-forced loss: on 700 real pairs the loss was lowest at epoch
# 22 of 137 while BLEU kept rising (test BLEU 16.4 by loss, 24.6 by BLEU).
MONITOR = ("val_bleu", "max")
CLI_FLAGS = {
    "--beam-size": "model.beam_size",
    "--decoding": "model.decoding",
    "--length-penalty": "model.length_penalty",
}


def custom_objects():
    return {cls.__name__: cls for cls in (
        SourceTargetEmbedding, PaddingMask, StepIndex, MaskedSmoothedCrossentropy,
        MaskedTokenAccuracy, CachedDecoderCall)}


__all__ = [
    "CLI_FLAGS",
    "EDGE_SIGNATURES",
    "MONITOR",
    "NAME",
    "PRESETS",
    "PRIMARY_METRIC",
    "Config",
    "baseline_predict_fns",
    "build_datasets",
    "build_model",
    "build_serving_model",
    "compile_args",
    "custom_objects",
    "edge_model",
    "evaluation_overrides",
    "predict_fn_from_raw",
    "representative_dataset",
    "save_samples",
    "score",
]
