"""Sentiment configuration: BERT options, data options and presets."""

import dataclasses

from common import config

# The published compact BERT sizes (Turc et al., 2019, "Well-Read Students
# Learn Better") and BERT-base: layers, hidden size, heads, feed-forward size.
BERT_SIZES = {
    "tiny": {"model.num_layers": 2, "model.hidden_dim": 128, "model.num_heads": 2,
             "model.intermediate_dim": 512},
    "mini": {"model.num_layers": 4, "model.hidden_dim": 256, "model.num_heads": 4,
             "model.intermediate_dim": 1024},
    "small": {"model.num_layers": 4, "model.hidden_dim": 512, "model.num_heads": 8,
              "model.intermediate_dim": 2048},
    "medium": {"model.num_layers": 8, "model.hidden_dim": 512, "model.num_heads": 8,
               "model.intermediate_dim": 2048},
    "base": {"model.num_layers": 12, "model.hidden_dim": 768, "model.num_heads": 12,
             "model.intermediate_dim": 3072},
}


@dataclasses.dataclass
class ModelOptions:
    # BERT encoder size (ignored with `init`: the checkpoint's config wins).
    num_layers: int = 2
    hidden_dim: int = 128
    num_heads: int = 2
    intermediate_dim: int = 512
    dropout: float = 0.1
    # Tokens per text including [CLS] and [SEP]; longer texts are truncated.
    sequence_length: int = 64
    # Size of the WordPiece vocabulary built from the training text when no
    # checkpoint (`init`) or teacher supplies one.
    vocabulary_size: int = 4000
    # A vocabulary file (one token per line, or a run's info.json) to use
    # instead; evaluate sets it to the trained model's.
    vocabulary: str = ""
    # Start from a pre-trained BERT's weights and vocabulary: a keras-hub
    # preset name ("bert_tiny_en_uncased", from the local kagglehub cache or
    # downloaded when online) or a preset folder on disk (config.json,
    # model.weights.h5, assets/tokenizer/vocabulary.txt). See checkpoint.py.
    init: str = ""
    # Masked-language-model pre-training on the task's own training text
    # before fine-tuning (useful without `init`); 0 turns it off.
    pretrain_epochs: int = 0
    pretrain_learning_rate: float = 1e-3
    # Fraction of tokens masked for pre-training (BERT: 0.15).
    mask_rate: float = 0.15
    # The n-gram branch: a TF-IDF + logistic-regression model on token
    # unigrams and bigrams (hashed into this many bigram buckets) inside the
    # classifier, its logits added to BERT's with a weight chosen on the
    # validation split (0 = BERT alone); fitted after BERT trains. 0 turns
    # it off. See ngrams.py.
    ngram_buckets: int = 0
    # Knowledge distillation: a trained teacher (`model.keras` of an earlier
    # run; its folder's vocabulary.txt is reused), the weight of the
    # hard-label loss and the softmax temperature.
    teacher: str = ""
    alpha: float = 0.5
    temperature: float = 2.0


@dataclasses.dataclass
class DataOptions(config.DataConfig):
    # `source`: "synthetic" (the built-in reviews), "glue/sst2" (TFDS), or a
    # CSV / TSV file, or a folder holding train.* and optionally
    # val.* / dev.* / validation.* and test.* files.
    num_train: int = 6000
    num_val: int = 500
    num_test: int = 1000
    # Column names in a CSV / TSV; "" looks for text/sentence/review/content
    # and label/sentiment/class/target.
    text_column: str = ""
    label_column: str = ""
    # Field delimiter of a CSV / TSV; "" detects it (",", tab, ";", "|").
    delimiter: str = ""
    encoding: str = "utf-8"
    # Class names, comma-separated: fixes their order, names integer labels,
    # and makes any other label an error. "" takes them from the data.
    classes: str = ""
    # Fractions carved out of a single file (or of the training file when
    # there is no validation / test file).
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    # Sequence length from the data: when more than 5% of the training texts
    # are longer than model.sequence_length, the model reads the 95th
    # percentile of their lengths instead (rounded up to 8), at most this
    # many tokens; 0 keeps model.sequence_length. Never shorter than
    # model.sequence_length, and off for a trained model's vocabulary
    # (model.vocabulary: evaluate reads the length it was trained with).
    max_sequence_length: int = 128


@dataclasses.dataclass
class TrainOptions(config.TrainConfig):
    # Class weights in the loss, for skewed labels: "" (every example counts
    # the same), "balanced" (a class's weight is examples / (classes * its
    # training examples), as scikit-learn's class_weight="balanced"), or one
    # weight per class in class order, "1,3.5". The classification loss of
    # the float and QAT stages uses them; the report records them.
    class_weight: str = ""
    # A budget in optimizer steps for the float stage, MLM pre-training and
    # fine-tuning together (0: none). Data with more steps per epoch than
    # the configured epochs can afford keeps the epochs but shortens each to
    # max_steps / (pretrain + fine-tuning epochs) steps (a pass continues
    # where the last stopped), so training time does not grow with the data.
    max_steps: int = 0


@dataclasses.dataclass
class Config(config.BaseConfig):
    task: str = "sentiment"
    train: TrainOptions = dataclasses.field(default_factory=TrainOptions)
    model: ModelOptions = dataclasses.field(default_factory=ModelOptions)
    data: DataOptions = dataclasses.field(default_factory=DataOptions)


# Shared by the demo and the size presets: the built-in reviews, BERT's
# AdamW with warm-up. Learning rates suit training from random weights (or
# after `--pretrain-epochs`); fine-tuning a downloaded checkpoint (`--init`)
# wants BERT's 2e-5 .. 1e-4: pass --learning-rate.
_TRAINING = {
    "data.num_train": 6000, "data.num_val": 500, "data.num_test": 1000,
    "model.sequence_length": 48, "train.batch_size": 32,
    "train.optimizer": "adamw", "train.weight_decay": 0.01,
    "train.warmup_epochs": 1,
    # BERT's gradient clipping: post-LayerNorm BERTs trained from random
    # weights collapse to chance at too high a rate without it (measured:
    # mini at 5e-4 fell to 57% after epoch 4).
    "train.clipnorm": 1.0,
    # QAT reaches every matmul inside keras-hub's TransformerEncoder (attention
    # projections, scores, context, feed-forward) and masks padded keys inside
    # the int8 range, so padded batches calibrate. A short, gentle fine-tune:
    # the converged BERT loses nothing to fake-quant, and longer QAT drifts
    # (measured on the default preset, test accuracy: float 96.2%; QAT INT8
    # 96.3% after 40 steps at 2e-5, 96.2% after one epoch at 1e-5, 96.0% after
    # two at 5e-5; post-training INT8 96.3%).
    "qat.enabled": True,
    "qat.epochs": 1,
    "qat.steps_per_epoch": 40,
    "qat.learning_rate": 2e-5,
}


def _size(name, **overrides):
    preset = dict(_TRAINING)
    preset.update(BERT_SIZES[name])
    preset.update(overrides)
    return preset


PRESETS = {
    # Seconds on 2 CPU cores: proves the flow, not the quality.
    "smoke": {
        "data.num_train": 256, "data.num_val": 64, "data.num_test": 64,
        "model.num_layers": 1, "model.hidden_dim": 32, "model.num_heads": 2,
        "model.intermediate_dim": 64, "model.sequence_length": 32,
        "model.vocabulary_size": 400, "train.epochs": 2, "train.batch_size": 32,
        "qat.epochs": 1, "export.representative_samples": 32,
        "export.latency_samples": 5, "model.ngram_buckets": 4096,
    },
    # The built-in demo: BERT-tiny from random weights, first pre-trained as
    # a masked language model on the training text for 2 epochs, then
    # fine-tuned for 6 (in the time 8 fine-tuning epochs took before; see
    # README "Presets"). With --init the pre-training is skipped.
    # At most 1,500 optimizer steps (the built-in 6,000 reviews: 8 epochs of
    # 187), so a larger dataset trains in about the time of the demo.
    # With the n-gram branch (TF-IDF + logistic regression inside the model,
    # weighted against BERT on validation; see ngrams.py).
    "default": _size("tiny", **{"train.epochs": 6, "model.pretrain_epochs": 2,
                                "train.learning_rate": 5e-4, "train.max_steps": 1500,
                                "model.ngram_buckets": 65536}),
    # The compact BERT sizes (Turc et al., 2019) and BERT-base.
    "tiny": _size("tiny", **{"train.epochs": 8, "train.learning_rate": 5e-4}),
    "mini": _size("mini", **{"train.epochs": 8, "train.learning_rate": 2e-4}),
    "small": _size("small", **{"train.epochs": 6, "train.learning_rate": 1e-4}),
    "medium": _size("medium", **{"train.epochs": 6, "train.learning_rate": 1e-4}),
    "base": _size("base", **{"train.epochs": 5, "train.learning_rate": 5e-5,
                             "model.sequence_length": 128}),
}
