"""Translation configuration: Transformer options, decoding, data, presets."""

import dataclasses

from common import config

# "Attention Is All You Need" (Vaswani et al., 2017), table 3: base and big;
# a deep variant with a 24-layer pre-norm encoder (deep encoders train only
# with the normalisation first: Wang et al., 2019, "Learning Deep Transformer
# Models for Machine Translation").
TRANSFORMER_SIZES = {
    "base": {"model.encoder_layers": 6, "model.decoder_layers": 6, "model.hidden_dim": 512,
             "model.num_heads": 8, "model.intermediate_dim": 2048, "model.dropout": 0.1},
    "big": {"model.encoder_layers": 6, "model.decoder_layers": 6, "model.hidden_dim": 1024,
            "model.num_heads": 16, "model.intermediate_dim": 4096, "model.dropout": 0.3},
    "deep": {"model.encoder_layers": 24, "model.decoder_layers": 6, "model.hidden_dim": 512,
             "model.num_heads": 8, "model.intermediate_dim": 2048, "model.dropout": 0.1,
             "model.normalize_first": True},
}


@dataclasses.dataclass
class ModelOptions:
    encoder_layers: int = 2
    decoder_layers: int = 2
    hidden_dim: int = 128
    num_heads: int = 4
    intermediate_dim: int = 512
    dropout: float = 0.1
    # Post-norm as in the paper; pre-norm for deep stacks.
    normalize_first: bool = False
    # "sinusoidal" (the paper) or "learned" position embeddings.
    positions: str = "sinusoidal"
    # One vocabulary for both languages (needed to share embeddings) or one
    # per language.
    joint_vocabulary: bool = True
    # Source and target token embeddings are one matrix (the paper).
    shared_embeddings: bool = True
    # WordPiece vocabulary size learnt from the training text (per language
    # when not joint).
    vocabulary_size: int = 2000
    # Vocabulary files to use instead of learning them (evaluate sets them to
    # the trained model's): one token per line, or a run's info.json.
    source_vocabulary: str = ""
    target_vocabulary: str = ""
    # Tokens per sentence including [CLS] and [SEP]; the LiteRT models and
    # the decoder cache have exactly these lengths.
    max_source_length: int = 32
    max_target_length: int = 32
    # A sentence longer than the maximum: "truncate" (its end is dropped and
    # it is counted in the report) or "reject" (a DataError naming it).
    too_long: str = "truncate"
    # Decoding used by evaluate, the report and predict: "greedy" or "beam".
    decoding: str = "beam"
    beam_size: int = 4
    # GNMT length penalty ((5 + length) / 6) ** alpha (Wu et al., 2016); the
    # paper used 0.6.
    length_penalty: float = 0.6


@dataclasses.dataclass
class DataOptions(config.DataConfig):
    # "synthetic" (the built-in English -> Spanish corpus),
    # "ted_hrlr_translate/pt_to_en", "wmt14_translate/de-en" (TFDS), a TSV
    # file (source TAB target, optional header), or two aligned text files
    # "SOURCE_FILE,TARGET_FILE" (one sentence per line).
    num_train: int = 8000
    num_val: int = 400
    num_test: int = 600
    # Fractions carved out of a single file for validation and test.
    val_fraction: float = 0.05
    test_fraction: float = 0.05
    # Cap on training pairs read from a big source (TFDS WMT has 4.5M); 0: all.
    max_train_pairs: int = 200_000


@dataclasses.dataclass
class Config(config.BaseConfig):
    task: str = "translation"
    model: ModelOptions = dataclasses.field(default_factory=ModelOptions)
    data: DataOptions = dataclasses.field(default_factory=DataOptions)


# Shared by every preset: label smoothing 0.1 and Adam (Keras's betas), one
# warm-up epoch and cosine decay. The paper's inverse square root
# ("inverse_sqrt") did worse on the smoke preset's validation loss within
# 12 epochs (README, "Schedule"), so it is an option, not the default.
_TRAINING = {
    "train.label_smoothing": 0.1,
    "train.optimizer": "adam",
    "train.schedule": "cosine",
    "train.warmup_epochs": 1,
    "train.clipnorm": 1.0,
    "qat.enabled": True,
    "qat.epochs": 1,
    "qat.learning_rate": 5e-5,
}


def _preset(**overrides):
    preset = dict(_TRAINING)
    preset.update(overrides)
    return preset


PRESETS = {
    # Seconds on 2 CPU cores: proves the flow, not the quality.
    "smoke": _preset(**{
        "data.num_train": 1000, "data.num_val": 48, "data.num_test": 48,
        "model.encoder_layers": 1, "model.decoder_layers": 1, "model.hidden_dim": 32,
        "model.num_heads": 2, "model.intermediate_dim": 64, "model.dropout": 0.0,
        "model.vocabulary_size": 500, "model.max_source_length": 24,
        "model.max_target_length": 28, "model.beam_size": 2,
        "train.epochs": 12, "train.batch_size": 32, "train.learning_rate": 5e-3,
        "qat.steps_per_epoch": 10, "export.representative_samples": 16,
        "export.latency_samples": 3, "export.debug_layers": False,
    }),
    # The built-in demo on 2 CPU cores.
    "default": _preset(**{
        "model.encoder_layers": 2, "model.decoder_layers": 2, "model.hidden_dim": 128,
        "model.num_heads": 4, "model.intermediate_dim": 256, "model.dropout": 0.1,
        "model.vocabulary_size": 1500, "model.max_source_length": 24,
        "model.max_target_length": 28,
        "train.epochs": 12, "train.batch_size": 64, "train.learning_rate": 1e-3,
        # A step budget, not an epoch count: the built-in corpus is 125 steps
        # an epoch (12 epochs), a folder of 800 pairs 11 (137 epochs).
        "train.min_steps": 1500, "train.max_epochs": 150,
        "qat.steps_per_epoch": 60, "export.representative_samples": 64,
        "export.debug_layers": False,
    }),
    # The paper's sizes (for real data and an accelerator), with its
    # inverse-square-root schedule (peak 7e-4 = 512^-0.5 * 4000^-0.5 for
    # base; warm-up one epoch, not the paper's 4,000 steps). Not measured
    # here: no accelerator and no network for the TFDS corpora.
    "base": _preset(**TRANSFORMER_SIZES["base"], **{"train.schedule": "inverse_sqrt",
        "model.vocabulary_size": 32000, "model.max_source_length": 128,
        "model.max_target_length": 128, "train.batch_size": 64,
        "train.learning_rate": 7e-4, "train.epochs": 20}),
    "big": _preset(**TRANSFORMER_SIZES["big"], **{"train.schedule": "inverse_sqrt",
        "model.vocabulary_size": 32000, "model.max_source_length": 128,
        "model.max_target_length": 128, "train.batch_size": 64,
        "train.learning_rate": 3e-4, "train.epochs": 20}),
    "deep": _preset(**TRANSFORMER_SIZES["deep"], **{"train.schedule": "inverse_sqrt",
        "model.vocabulary_size": 32000, "model.max_source_length": 128,
        "model.max_target_length": 128, "train.batch_size": 64,
        "train.learning_rate": 5e-4, "train.epochs": 20}),
}
