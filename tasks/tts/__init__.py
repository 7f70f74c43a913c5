"""Text to speech with Tacotron 2: the task contract (see common/pipeline.py).

Characters -> Tacotron 2 (location-sensitive attention, pre-net dropout at
inference, post-net) -> 80-band log-mel -> Griffin-Lim (tf.signal). The
LiteRT program is three signatures of one `.tflite` (encode, decode_step,
postnet) driven by a host loop (`inference.py`); the SavedModel speaks
text to a waveform inside the graph.
"""

from tasks.tts.config import PRESETS, Config
from tasks.tts.data import build_datasets
from tasks.tts.edge import representative_dataset
from tasks.tts.inference import predict_fn_from_raw
from tasks.tts.metrics import (
    PRIMARY_METRIC,
    PRIMARY_METRIC_MODE,
    REFERENCE_BASELINES,
    baseline_predict_fns,
    score,
)
from tasks.tts.model import build_model, compile_args, custom_objects, edge_model
from tasks.tts.samples import save_samples
from tasks.tts.serving import build_serving_model

NAME = "tts"
# What --data accepts (listed by `python -m tasks`).
DATA_SOURCES = ("synthetic: template sentences spoken by espeak-ng, generated on first use "
                "and cached (built in)",
                "ljspeech (TFDS)",
                "PATH: an LJSpeech-format folder (metadata.csv id|text|normalized text, "
                "wavs/<id>.wav)")
EDGE_SIGNATURES = ("encode", "decode_step", "postnet")
# The checkpoint follows the validation loss: scoring the recognizer on the
# validation split every epoch would cost more than the epoch.
MONITOR = ("val_loss", "min")
# The LiteRT INT8 path's mel L1 (teacher-forced and free-running) stays
# within 10% of float, or the report says so and names the fallbacks.
INT8_BUDGET = {"mel_l1_teacher_forced": 0.10, "mel_l1": 0.10}
CLI_FLAGS = {
    "--reduction": "model.reduction",
    "--guided-attention": "model.guided_attention_weight",
    "--init": "model.init",
}

__all__ = [
    "CLI_FLAGS",
    "EDGE_SIGNATURES",
    "INT8_BUDGET",
    "MONITOR",
    "NAME",
    "PRESETS",
    "PRIMARY_METRIC",
    "PRIMARY_METRIC_MODE",
    "REFERENCE_BASELINES",
    "Config",
    "baseline_predict_fns",
    "build_datasets",
    "build_model",
    "build_serving_model",
    "compile_args",
    "custom_objects",
    "edge_model",
    "predict_fn_from_raw",
    "representative_dataset",
    "save_samples",
    "score",
]
