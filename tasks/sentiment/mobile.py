"""The sentiment model for MediaPipe's TextClassifier.

    python -m tasks.sentiment.export runs/sentiment-default/model_qat.keras --mobile

The file is the QAT INT8 BERT classifier with MediaPipe's BERT input layout:
MediaPipe tokenizes with the WordPiece vocabulary stored in the metadata and
feeds three int32 tensors, `ids`, `mask` and `segment_ids`, of the model's
sequence length. Our model derives its padding mask and segment ids from the
ids (`model.BertInputs`: [PAD] is id 0, one sentence is segment 0), so the
file folds the other two into the ids, `max(ids * mask, segment_ids)`, which
is `ids` for everything MediaPipe's TextClassifier sends (padding positions have
id 0 and mask 0, a single text has segment 0 everywhere) and keeps all three
inputs in the graph (MediaPipe refuses a BERT model without them). The
scores are softmax probabilities; the metadata names the classes.
"""

import os
import tempfile

import keras
import numpy as np

from common import litert, mobile
from common.errors import UserError
from common.wordpiece import SPECIAL_TOKENS

FILE_NAME = "model_mobile.tflite"
INPUT_NAMES = ("ids", "mask", "segment_ids")


def mobile_edge(qat_model):
    """Three int32 inputs (ids, mask, segment ids) -> class probabilities,
    around the single-input QAT model."""
    length = int(qat_model.inputs[0].shape[1])
    ids, mask, segments = (keras.Input((length,), dtype="int32", name=name)
                           for name in INPUT_NAMES)
    # MAXIMUM, not ADD: TensorFlow's optimizer turns an int32 add into a
    # BiasAdd, which LiteRT has no builtin kernel for.
    folded = keras.ops.maximum(keras.ops.multiply(ids, mask), segments)
    logits = qat_model(folded)
    probabilities = keras.layers.Softmax(name="probabilities", dtype="float32")(logits)
    return keras.Model([ids, mask, segments], probabilities, name="bert_classifier_mobile")


def _three_input_representative(representative_dataset):
    """The INT8 calibration ids with the mask and segment ids MediaPipe sends,
    keyed by input name: the converter orders a list by the signature's own
    input order (ids, segment_ids, mask), not the Keras model's, and a mask
    fed as segment ids calibrates every range on ids of 0 and 1."""
    def generator():
        for example in representative_dataset():
            token_ids = np.asarray(example[0]).astype(np.int32)
            yield {"ids": token_ids, "mask": (token_ids != 0).astype(np.int32),
                   "segment_ids": np.zeros_like(token_ids)}
    return generator


def check_vocabulary(vocabulary, qat_model):
    """A clear error for a vocabulary MediaPipe's BERT tokenizer cannot use."""
    vocabulary = list(vocabulary or [])
    if not vocabulary:
        raise UserError("sentiment mobile export: the run's info.json has no "
                        "vocabulary; MediaPipe's BERT tokenizer needs the WordPiece "
                        "vocabulary the model was trained with")
    missing = [token for token in SPECIAL_TOKENS if token not in vocabulary]
    if missing:
        raise UserError(f"sentiment mobile export: the vocabulary lacks {missing}; "
                        "MediaPipe's BERT tokenizer needs [PAD], [UNK], [CLS], [SEP]")
    if vocabulary[0] != "[PAD]":
        raise UserError("sentiment mobile export: [PAD] must be id 0 (the model "
                        f"masks id 0); the vocabulary starts with {vocabulary[0]!r}")
    embedding_rows = _embedding_rows(qat_model)
    if embedding_rows is not None and embedding_rows != len(vocabulary):
        raise UserError(f"sentiment mobile export: the vocabulary has {len(vocabulary)} "
                        f"tokens but the model's token embedding has {embedding_rows} rows")
    return vocabulary


def _embedding_rows(model):
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if layer.name == "token_embedding" and hasattr(layer, "input_dim"):
            return int(layer.input_dim)
    return None


def export_mobile(qat_model, info, path, representative_dataset):
    """Write the TextClassifier file at `path`; returns its metadata as JSON.

    `representative_dataset` is the INT8 export's calibration generator
    (batch-1 token ids)."""
    writers = mobile.writer_module("text_classifier")
    metadata_writer = mobile.writer_module("metadata_writer")
    num_classes = int(qat_model.outputs[0].shape[-1])
    labels = mobile.labels_for_outputs(info.get("classes"), num_classes,
                                       "sentiment mobile export")
    vocabulary = check_vocabulary(info.get("vocabulary"), qat_model)
    flatbuffer = mobile.convert_float_edges(
        mobile_edge(qat_model), _three_input_representative(representative_dataset))
    names = _tensor_names(flatbuffer)
    with tempfile.TemporaryDirectory(prefix="vocabulary-") as folder:
        vocabulary_path = os.path.join(folder, "vocab.txt")
        with open(vocabulary_path, "w", encoding="utf-8") as handle:
            handle.write("\n".join(vocabulary) + "\n")
        return mobile.write_populated(writers.MetadataWriter.create_for_bert_model(
            bytearray(flatbuffer), metadata_writer.BertTokenizer(vocabulary_path),
            ids_name=names["ids"], mask_name=names["mask"],
            segment_name=names["segment_ids"], labels=labels), path)


def _tensor_names(flatbuffer):
    """The flatbuffer's input tensor name for each of INPUT_NAMES."""
    with tempfile.NamedTemporaryFile(suffix=".tflite") as handle:
        handle.write(flatbuffer)
        handle.flush()
        interpreter = litert.make_interpreter(handle.name, num_threads=1)
        runner = interpreter.get_signature_runner("serve")
        details = runner.get_input_details()
        tensors = {item["index"]: item["name"] for item in interpreter.get_tensor_details()}
        return {name: tensors[details[name]["index"]] for name in INPUT_NAMES}


def predict_fn(path, info):
    """A predict_fn for `metrics.score`: raw texts -> probabilities through
    MediaPipe (call `.close()` when done)."""
    return MediaPipeTextClassifier(path, info["classes"])


def scoring_dataset(splits, cfg):
    """What the MediaPipe predict_fn is scored on: the test split's raw texts."""
    return raw_test_texts(cfg)


def raw_test_texts(cfg, batch_size=64):
    """The test split as raw texts and labels, batched, for `metrics.score`
    with a MediaPipe predict_fn (MediaPipe tokenizes the text itself). The
    same rows, in the same order, as the token-id test split."""
    import tensorflow as tf

    from tasks.sentiment import data as sentiment_data

    rows = sentiment_data.load_text_splits(cfg).test
    texts = [text for text, _ in rows]
    labels = np.asarray([label for _, label in rows], np.int32)
    return tf.data.Dataset.from_tensor_slices((texts, labels)).batch(batch_size)


class MediaPipeTextClassifier:
    """The mobile file run by MediaPipe's TextClassifier: texts -> class
    probabilities (N, classes), in the label file's order."""

    def __init__(self, path, class_names):
        mobile.require_mediapipe()
        from mediapipe.tasks.python import text
        from mediapipe.tasks.python.core import base_options

        options = text.TextClassifierOptions(
            base_options=base_options.BaseOptions(model_asset_path=str(path)))
        self.classifier = text.TextClassifier.create_from_options(options)
        self.class_names = list(class_names)

    def classify(self, sentence):
        result = self.classifier.classify(sentence)
        scores = np.zeros(len(self.class_names), np.float32)
        for category in result.classifications[0].categories:
            scores[category.index] = category.score
        return scores

    def __call__(self, texts):
        texts = [sentence.decode("utf-8") if isinstance(sentence, bytes) else str(sentence)
                 for sentence in np.asarray(texts).reshape(-1).tolist()]
        return np.stack([self.classify(sentence) for sentence in texts])

    def close(self):
        self.classifier.close()
