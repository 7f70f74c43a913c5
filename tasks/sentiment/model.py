"""BERT text classifier (keras-hub `BertBackbone`), its MLM pre-training
model, and the TF Serving endpoints with the core-TF tokenizer inside."""

import keras
import numpy as np
import tensorflow as tf

from common import serving
from common.errors import UserError
from common.wordpiece import WordPieceTokenizer


@keras.saving.register_keras_serializable(package="sentiment")
class BertInputs(keras.layers.Layer):
    """Token ids -> the segment ids and padding mask `BertBackbone` expects.

    One sentence per example, so every segment id is 0; [PAD] is id 0 in
    every BERT vocabulary, so the mask is `ids != 0`. Computing both inside
    the model keeps the LiteRT model's only input the token ids.
    """

    def call(self, token_ids):
        token_ids = keras.ops.cast(token_ids, "int32")
        segment_ids = keras.ops.zeros_like(token_ids)
        padding_mask = keras.ops.cast(keras.ops.not_equal(token_ids, 0), "int32")
        return segment_ids, padding_mask

    def compute_output_spec(self, token_ids):
        # Two distinct tensors: returning one object twice would wire the
        # same output into both backbone inputs.
        return (keras.KerasTensor(token_ids.shape, dtype="int32"),
                keras.KerasTensor(token_ids.shape, dtype="int32"))


def bert_features(backbone, token_ids):
    """Run `backbone` on token ids inside a Functional graph."""
    segment_ids, padding_mask = BertInputs(name="bert_inputs")(token_ids)
    return backbone({"token_ids": token_ids, "segment_ids": segment_ids,
                     "padding_mask": padding_mask})


def build_backbone(cfg, info):
    """A randomly initialised BERT of the configured size, or `--init PATH`."""
    options = cfg.model
    import keras_hub

    if options.init:
        # A folder on disk, or a preset name resolved to its cached (or just
        # downloaded) folder: from_preset never goes to the network itself.
        from tasks.sentiment import checkpoint

        backbone = keras_hub.models.BertBackbone.from_preset(
            checkpoint.resolve(options.init))
        if options.sequence_length > backbone.max_sequence_length:
            raise UserError(
                f"model.sequence_length={options.sequence_length} is longer than "
                f"the checkpoint's {backbone.max_sequence_length} positions")
        if backbone.vocabulary_size != len(info["vocabulary"]):
            raise UserError(
                f"--init {options.init}: the checkpoint has "
                f"{backbone.vocabulary_size} token embeddings but its vocabulary "
                f"file {len(info['vocabulary'])} entries")
        return backbone
    if options.hidden_dim % options.num_heads:
        raise UserError(
            f"model.hidden_dim={options.hidden_dim} must be divisible by "
            f"model.num_heads={options.num_heads}")
    return keras_hub.models.BertBackbone(
        vocabulary_size=len(info["vocabulary"]),
        num_layers=options.num_layers,
        num_heads=options.num_heads,
        hidden_dim=options.hidden_dim,
        intermediate_dim=options.intermediate_dim,
        dropout=options.dropout,
        max_sequence_length=options.sequence_length,
        name="backbone",
    )


def build_model(cfg, info):
    """Token ids [batch, sequence_length] -> class logits [batch, classes].

    BERT's classifier: the pooled [CLS] output, dropout, one Dense layer (as
    keras-hub's `BertTextClassifier`, without its preprocessor).
    """
    # === Inputs ===
    token_ids = keras.Input((cfg.model.sequence_length,), dtype="int32",
                            name="token_ids")
    # === Encoder ===
    backbone = build_backbone(cfg, info)
    features = bert_features(backbone, token_ids)
    # === Head ===
    x = keras.layers.Dropout(cfg.model.dropout, name="classifier_dropout")(
        features["pooled_output"])
    logits = keras.layers.Dense(
        info["num_classes"], name="logits", dtype="float32",
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02))(x)
    if cfg.model.ngram_buckets > 0:
        # The n-gram branch (TF-IDF + logistic regression, see ngrams.py):
        # zero until fitted after BERT's training.
        from tasks.sentiment.ngrams import NgramLogits

        ngram_logits = NgramLogits(len(info["vocabulary"]), cfg.model.ngram_buckets,
                                   info["num_classes"], name="ngram_logits",
                                   dtype="float32")(token_ids)
        logits = keras.layers.Add(name="logits_sum", dtype="float32")([logits, ngram_logits])
    return keras.Model(token_ids, logits, name="bert_classifier")


def backbone_of(model):
    for layer in model.layers:
        if layer.__class__.__name__ == "BertBackbone":
            return layer
    raise UserError(f"model {model.name!r} has no BertBackbone layer")


def build_mlm_model(backbone, cfg, max_predictions):
    """Masked-language-model head on `backbone`, sharing its weights.

    Inputs: `token_ids` (with [MASK]s) and `mask_positions`; output: logits
    over the vocabulary at those positions. The output projection is tied to
    the token embedding, as in BERT.
    """
    import keras_hub

    token_ids = keras.Input((cfg.model.sequence_length,), dtype="int32",
                            name="token_ids")
    mask_positions = keras.Input((max_predictions,), dtype="int32",
                                 name="mask_positions")
    features = bert_features(backbone, token_ids)
    logits = keras_hub.layers.MaskedLMHead(
        token_embedding=backbone.token_embedding,
        intermediate_activation="gelu",
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        name="mlm_head",
        dtype="float32",
    )(features["sequence_output"], mask_positions=mask_positions)
    return keras.Model({"token_ids": token_ids, "mask_positions": mask_positions},
                       logits, name="bert_masked_lm")


@keras.saving.register_keras_serializable(package="sentiment")
class ClassWeightedCrossentropy(keras.losses.Loss):
    """Cross-entropy on integer labels, each example scaled by its class's
    weight (`train.class_weight`): on skewed labels the rare classes count
    as much in the loss as the frequent ones. With label smoothing."""

    def __init__(self, class_weights, label_smoothing=0.0, from_logits=True,
                 name="class_weighted_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.class_weights = [float(w) for w in class_weights]
        self.label_smoothing = float(label_smoothing)
        self.from_logits = from_logits

    def call(self, y_true, y_pred):
        labels = keras.ops.reshape(keras.ops.cast(y_true, "int32"), [-1])
        one_hot = keras.ops.one_hot(labels, len(self.class_weights))
        losses = keras.losses.categorical_crossentropy(
            one_hot, y_pred, from_logits=self.from_logits,
            label_smoothing=self.label_smoothing)
        weights = keras.ops.take(keras.ops.convert_to_tensor(self.class_weights), labels)
        return losses * keras.ops.cast(weights, losses.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(class_weights=self.class_weights,
                      label_smoothing=self.label_smoothing, from_logits=self.from_logits)
        return config


def compile_args(cfg, info):
    from common.training import sparse_categorical_loss

    weights = info.get("class_weights")
    if weights:
        loss = ClassWeightedCrossentropy(weights, cfg.train.label_smoothing)
    else:
        loss = sparse_categorical_loss(info["num_classes"], cfg.train.label_smoothing)
    return {
        "loss": loss,
        "metrics": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    }


def make_tokenizer(cfg, info):
    return WordPieceTokenizer(info["vocabulary"], cfg.model.sequence_length)


def build_serving_model(model, cfg, info):
    """TF Serving endpoint: raw UTF-8 strings in, label names and
    probabilities out.

    The tokenizer runs inside the SavedModel on core TF ops only (no
    tensorflow-text), so stock TF Serving can load it. Its lookup table is
    attached to `model` so the export tracks it.

    `text` is a batch (N,) of strings; an empty batch answers empty outputs
    (`probabilities` of shape (0, num_classes)). Requests over
    `export.serving_max_batch` texts, or with a text over
    `export.serving_max_text_bytes` UTF-8 bytes, are refused with
    InvalidArgumentError before tokenizing (`common/serving.py`).
    """
    limits = cfg.export
    tokenizer = make_tokenizer(cfg, info)
    # ExportArchive tracks the model; a tf.Module attribute of it comes along.
    model._serving_tokenizer = tokenizer
    classes = tf.constant(info["classes"])

    def classify(text):
        text = serving.check_shape(text, ("batch",), "text")
        text = serving.check_batch(text, limits.serving_max_batch)
        text = serving.check_text(text, limits.serving_max_text_bytes)
        token_ids = tokenizer(text)
        logits = model(token_ids, training=False)
        probabilities = tf.nn.softmax(logits, axis=-1)
        best = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        return {
            "label": tf.gather(classes, best),
            "probability": tf.reduce_max(probabilities, axis=-1),
            "probabilities": probabilities,
            "class_index": best,
        }

    return {"serving_default": (classify, [serving.request_spec(tf.string, "text")])}



def representative_dataset(splits, cfg):
    """INT8 calibration sequences with no padding: training text packed
    end to end, `[CLS] pieces... [SEP]`, `export.representative_samples` of
    them, deterministic.

    Why no padding: Keras masks attention with `where(mask, scores, -1e9)`,
    and LiteRT's int8 SELECT shares one scale between its inputs and output.
    Calibrated on padded text, that range runs down to -1e9 and every real
    attention score rounds to the same value (measured on BERT-tiny:
    float 94.0%, INT8 55.2%). Calibrated without padding, the range
    is the real scores', the -1e9 clamps to its bottom (still ~0 after the
    softmax) and INT8 matches float (93.9%).

    The QAT model does not need this (`common.qat` masks padded keys with the
    bottom of the scores' trained range, so padded batches calibrate it; see
    tests/test_sentiment_model.py), but the post-training INT8 export of the
    float model, reported beside it, still does.
    """
    vocabulary = splits.info["vocabulary"]
    special = {vocabulary.index(token) for token in ("[PAD]", "[CLS]", "[SEP]")}
    cls_id, sep_id = vocabulary.index("[CLS]"), vocabulary.index("[SEP]")
    room = cfg.model.sequence_length - 2
    wanted = cfg.export.representative_samples
    # The training text in one fixed order (the training split reshuffles
    # on every pass), so the same run calibrates the same ranges.
    source = splits.calibration if splits.calibration is not None else splits.train

    def generator():
        pieces, produced = [], 0
        while produced < wanted:
            for token_ids, _ in source:
                for row in token_ids.numpy():
                    pieces.extend(int(t) for t in row if int(t) not in special)
                    while len(pieces) >= room and produced < wanted:
                        sequence = [cls_id] + pieces[:room] + [sep_id]
                        del pieces[:room]
                        produced += 1
                        yield [np.array([sequence], np.int32)]
                if produced >= wanted:
                    return
            if produced == 0 and not pieces:
                raise UserError("the training split has no tokens to calibrate INT8 with")
    return generator
