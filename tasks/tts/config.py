"""TTS configuration: Tacotron 2 sizes, audio features, data and presets."""

import dataclasses

from common import config


@dataclasses.dataclass
class ModelOptions:
    # Defaults are the paper's sizes (Shen et al., 2018); presets shrink them.
    embedding_dim: int = 512
    encoder_convolutions: int = 3
    encoder_filters: int = 512
    encoder_kernel: int = 5
    encoder_lstm_units: int = 256          # per direction
    attention_dim: int = 128
    location_filters: int = 32
    location_kernel: int = 31
    prenet_units: int = 256
    # Tacotron 2 keeps the pre-net dropout on at inference too: it is the
    # only source of variation and stops the decoder copying its input.
    prenet_dropout: float = 0.5
    attention_rnn_units: int = 1024
    decoder_rnn_units: int = 1024
    postnet_layers: int = 5
    postnet_filters: int = 512
    postnet_kernel: int = 5
    dropout: float = 0.5                    # encoder convolutions and post-net
    # Mel frames predicted per decoder step.
    reduction: int = 2
    # Symbols per text (end symbol included) and decoder steps per text: the
    # fixed shapes of the LiteRT models. Longer texts are cut at sentence ends.
    max_text_length: int = 128
    max_decoder_steps: int = 300
    # Guided (diagonal) attention loss (Tachibana et al., 2018): weight and
    # width; 0 turns it off.
    guided_attention_weight: float = 1.0
    guided_attention_sigma: float = 0.2
    stop_threshold: float = 0.5
    # `--init RUN`: start from the weights of an earlier TTS run (its folder
    # or model.keras) of the same model sizes, e.g. the built-in corpus's
    # default run before training on a small folder of one's own voice.
    init: str = ""


@dataclasses.dataclass
class AudioOptions:
    sample_rate: int = 16000
    n_fft: int = 1024
    win_length: int = 1024
    hop_length: int = 256
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float = 8000.0
    # Vocoder: "griffin_lim" (always available).
    vocoder: str = "griffin_lim"
    griffin_lim_iterations: int = 32
    # Magnitudes are raised to this power before Griffin-Lim (>1 sharpens the
    # harmonics). 1.0: on the default model's validation speech the
    # recognizer's WER was 0.46 at 1.0, 0.54 at 1.5 (Tacotron 1's value) and
    # 0.60 at 2.0; the predicted mels are smooth, and sharpening them makes
    # them buzz.
    griffin_lim_power: float = 1.0


@dataclasses.dataclass
class DataOptions(config.DataConfig):
    # "synthetic": sentences spoken by espeak-ng, generated on first use and
    # cached; "ljspeech": TFDS; a folder in LJSpeech format (metadata.csv with
    # id|text|normalized text, wavs/<id>.wav).
    num_train: int = 1200
    num_val: int = 32
    num_test: int = 48
    # espeak-ng voice and words per minute of the built-in corpus.
    voice: str = "en-us"
    words_per_minute: int = 165
    # Files at another sample rate are resampled (false: rejected).
    resample: bool = True
    # Shares of a folder's rows for validation and test.
    val_fraction: float = 0.02
    test_fraction: float = 0.03
    # ...but at least this many utterances each, up to a tenth of the rows:
    # a WER on a 200-row folder's 3% (6 sentences) says little.
    min_val: int = 12
    min_test: int = 24
    # A folder with fewer than num_train training utterances trains beside
    # built-in corpus sentences (marked as another voice) up to num_train,
    # its own utterances repeated to make about this share (0: off).
    builtin_voice_share: float = 0.0
    # Where the built-in corpus is cached ("" : ~/.cache/edge-tasks/tts).
    cache_dir: str = ""
    # Length buckets of the training batches (mel frames).
    bucket_boundaries: str = "96,128,160,200"


@dataclasses.dataclass
class Config(config.BaseConfig):
    task: str = "tts"
    model: ModelOptions = dataclasses.field(default_factory=ModelOptions)
    data: DataOptions = dataclasses.field(default_factory=DataOptions)
    audio: AudioOptions = dataclasses.field(default_factory=AudioOptions)


# A CPU-sized Tacotron 2: the same blocks, narrower.
_SMALL = {
    "model.embedding_dim": 128, "model.encoder_filters": 128,
    "model.encoder_lstm_units": 64, "model.attention_dim": 64,
    "model.location_filters": 16, "model.location_kernel": 15,
    "model.prenet_units": 128, "model.attention_rnn_units": 256,
    "model.decoder_rnn_units": 256, "model.postnet_filters": 128,
    "model.reduction": 3, "model.max_text_length": 96, "model.max_decoder_steps": 80,
}

# QAT is off: the decoder is a custom recurrent layer QAT cannot clone;
# the INT8 file is post-training (see README.md).
_COMMON = {"qat.enabled": False}

def _preset(*parts):
    merged = {}
    for part in parts:
        merged.update(part)
    return merged


PRESETS = {
    # Seconds on 2 CPU cores: proves the flow, not the quality.
    "smoke": _preset(_COMMON, _SMALL, {
        "data.num_train": 8, "data.num_val": 4, "data.num_test": 4,
        "model.embedding_dim": 32, "model.encoder_filters": 32,
        "model.encoder_lstm_units": 16, "model.attention_dim": 16,
        "model.location_filters": 4, "model.location_kernel": 7,
        "model.prenet_units": 32, "model.attention_rnn_units": 64,
        "model.decoder_rnn_units": 64, "model.postnet_filters": 32,
        "model.max_text_length": 64, "model.max_decoder_steps": 40,
        "audio.griffin_lim_iterations": 8,
        "train.epochs": 2, "train.batch_size": 4, "train.learning_rate": 2e-3,
        "export.representative_samples": 4, "export.latency_samples": 2,
        "export.debug_layers": False,
    }),
    # The built-in demo on 2 CPU cores: the small Tacotron on the espeak-ng
    # corpus, with guided attention. 80 epochs (3,200 steps, about 40 minutes
    # here): at 40 the held-out WER was 0.47, at 80 0.11.
    "default": _preset(_COMMON, _SMALL, {
        "train.batch_size": 32, "train.learning_rate": 2e-3, "train.clipnorm": 1.0,
        "train.epochs": 80, "train.schedule": "cosine",
        # A budget in optimizer steps, so a folder's size sets the epochs:
        # the built-in corpus makes 40 steps an epoch and passes it in its 80
        # epochs; a folder of 100 utterances (a few steps an epoch) trains
        # train.max_epochs (300), grouped into epochs of 25 steps or more,
        # instead of 80 epochs of a few steps.
        "train.min_steps": 3000,
        # data.builtin_voice_share stays 0 (off): training the Asterisk
        # folder's 172 prompts (x3) beside 648 built-in sentences gave WER
        # 0.85 float / 0.80 INT8 against espeak-ng's 0.36 on 21 test prompts,
        # no better than the folder alone (tasks/tts/README.md).
        # All-int8 (post-training) lost 31% teacher-forced and 65% free-running
        # mel L1 on the trained default model (WER 0.24 vs 0.11); int8 weights
        # with float activations lost nothing measurable (WER 0.09): that file
        # ships as model_int8.tflite, the all-int8 one is scored beside it.
        "export.weight_only": True,
        "export.representative_samples": 16, "export.latency_samples": 3,
        "export.debug_layers": False,
    }),
    # The paper's sizes (LJSpeech, 22.05 kHz, 12.5 ms hop, one frame per step).
    "paper": _preset(_COMMON, {
        "data.source": "ljspeech", "audio.sample_rate": 22050,
        "audio.hop_length": 256, "audio.win_length": 1024, "audio.fmax": 8000.0,
        "model.reduction": 1, "model.max_text_length": 200,
        "model.max_decoder_steps": 1000, "train.batch_size": 64,
        "train.learning_rate": 1e-3, "train.clipnorm": 1.0, "train.epochs": 300,
        "data.bucket_boundaries": "200,400,600,800",
    }),
}
