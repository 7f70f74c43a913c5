"""The sentiment mobile file, loaded by MediaPipe's TextClassifier.

A one-layer BERT trained for seconds on a toy vocabulary, fake-quantized,
calibrated and exported once for the module.
"""

import json
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from common import config as config_lib, export, litert, qat
from common.errors import UserError
from common.wordpiece import WordPieceTokenizer
from tasks.sentiment import PRESETS, Config, model as model_lib
from tasks.sentiment import mobile as sentiment_mobile

VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "film", "food",
              "was", "is", "good", "great", "bad", "awful", "and", "a", "very", ".",
              "##s", "un", "##good"]
CLASSES = ["negative", "positive"]
INFO = {"vocabulary": VOCABULARY, "classes": CLASSES, "num_classes": 2}
LENGTH = 12
TEXTS = ["the film was good", "The food is AWFUL.", "a very bad film and awful food",
         "films ungood", "great", "zebra crossing", "the the the the the the the the "
         "the the the the the", "Food was great . very great"]


def toy_set(count, seed):
    """Separable by one opinion word among neutral ones (as in test_sentiment_model)."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(count):
        label = int(rng.integers(2))
        words = list(rng.choice(["the", "film", "food", "was", "is", "a", "and"],
                                size=int(rng.integers(2, 7))))
        words.insert(int(rng.integers(len(words) + 1)),
                     rng.choice(["good", "great"] if label else ["bad", "awful"]))
        texts.append(" ".join(words))
        labels.append(label)
    return token_ids(texts), np.array(labels, np.int32)


def tiny_trained_model():
    """A few epochs on the toy set: an untrained BERT scores every text the
    same to within one step of the int8 softmax, which would make equal
    answers prove nothing."""
    cfg = config_lib.from_preset(Config, PRESETS, "smoke")
    config_lib.apply_overrides(cfg, {
        "model.sequence_length": LENGTH, "model.num_layers": 1, "model.hidden_dim": 32,
        "model.num_heads": 2, "model.intermediate_dim": 64, "model.dropout": 0.0,
        "model.vocabulary_size": len(VOCABULARY)})
    keras.utils.set_random_seed(3)
    model = model_lib.build_model(cfg, INFO)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), **model_lib.compile_args(cfg, INFO))
    ids, labels = toy_set(256, seed=1)
    model.fit(ids, labels, batch_size=32, epochs=4, verbose=0)
    return model, ids, labels


def token_ids(texts):
    return WordPieceTokenizer(VOCABULARY, LENGTH)(tf.constant(texts)).numpy()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model, ids, labels = tiny_trained_model()
    quantized = qat.quantize_model(model)
    qat.calibrate(quantized, tf.data.Dataset.from_tensor_slices((ids, labels)).batch(32),
                  steps=3)

    def calibration():
        for row in ids[:32]:
            yield [row[None]]

    path = tmp_path_factory.mktemp("mobile-sentiment") / sentiment_mobile.FILE_NAME
    metadata = json.loads(sentiment_mobile.export_mobile(quantized, INFO, path, calibration))
    return path, metadata, quantized, calibration


def test_mediapipe_scores_equal_the_litert_path_of_the_same_file(exported):
    path, _, _, _ = exported
    ids = token_ids(TEXTS)
    runner = litert.LiteRTModel(path)
    expected = np.asarray(runner({"ids": ids, "mask": (ids != 0).astype(np.int32),
                                  "segment_ids": np.zeros_like(ids)}))
    classifier = sentiment_mobile.MediaPipeTextClassifier(path, CLASSES)
    try:
        answered = classifier(TEXTS)
    finally:
        classifier.close()
    # MediaPipe's tokenizer (vocabulary from the metadata) gave the same ids
    # as ours: the same int8 graph then gives the same probabilities.
    np.testing.assert_allclose(answered, expected, atol=1e-6)
    np.testing.assert_array_equal(answered.argmax(-1), expected.argmax(-1))
    assert np.ptp(expected[:, 0]) > 1e-3  # the texts do get different scores


def test_metadata_carries_the_vocabulary_and_labels(exported):
    _, metadata, _, _ = exported
    subgraph = metadata["subgraph_metadata"][0]
    units = json.dumps(subgraph["input_process_units"])
    assert "BertTokenizerOptions" in units and "vocab.txt" in units
    assert sorted(t["name"] for t in subgraph["input_tensor_metadata"]) == \
        ["ids", "mask", "segment_ids"]
    assert "labels.txt" in json.dumps(subgraph["output_tensor_metadata"])
    assert metadata["min_parser_version"] == "1.1.0"  # tokenizer process units


def test_mobile_file_computes_what_the_qat_model_computes(exported):
    path, _, quantized, _ = exported
    report = export.tflite_op_report(path)
    # Builtin ops only (no Flex, no custom op), int8 attention and feed-forward.
    assert not any(op.startswith(("FlexOp", "CUSTOM")) for op in report["ops"])
    assert report["ops"].get("BATCH_MATMUL/int8", 0) >= 2
    ids = token_ids(TEXTS)
    probabilities = np.asarray(litert.LiteRTModel(path)(
        {"ids": ids, "mask": (ids != 0).astype(np.int32), "segment_ids": np.zeros_like(ids)}))
    expected = tf.nn.softmax(quantized(ids, training=False)).numpy()
    np.testing.assert_allclose(probabilities, expected, atol=0.05)


def _calibrated_scales(path):
    """{tensor name: scale} of the single-scale int8 tensors of a `.tflite`,
    the names without the mobile file's wrapper prefix."""
    interpreter = litert.make_interpreter(path, num_threads=1)
    scales = {}
    for tensor in interpreter.get_tensor_details():
        values = tensor["quantization_parameters"]["scales"]
        if len(values) == 1 and "layer_norm" in tensor["name"]:
            name = re.sub(r"^serve_|bert_classifier_mobile_?\d*/|;.*$", "", tensor["name"])
            scales[name] = float(values[0])
    return scales


def test_mobile_file_is_calibrated_like_the_int8_file(exported, tmp_path):
    # Ranges the QAT model does not learn (LayerNorm internals) come from the
    # calibration ids; the mobile file's three inputs must receive them as
    # the single-input INT8 file does, or its ranges are too narrow.
    path, _, quantized, calibration = exported
    int8_path = tmp_path / "int8.tflite"
    export.convert_to_tflite(quantized, str(int8_path), calibration)
    mobile_scales, int8_scales = _calibrated_scales(path), _calibrated_scales(int8_path)
    shared = sorted(set(mobile_scales) & set(int8_scales))
    assert len(shared) >= 8
    for name in shared:
        assert mobile_scales[name] == pytest.approx(int8_scales[name], rel=1e-4), name


def test_missing_vocabulary_or_labels_is_a_clear_error(exported, tmp_path):
    _, _, quantized, calibration = exported
    path = tmp_path / "bad.tflite"
    with pytest.raises(UserError, match="no vocabulary"):
        sentiment_mobile.export_mobile(quantized, dict(INFO, vocabulary=[]), path, calibration)
    with pytest.raises(UserError, match="lacks \\['\\[UNK\\]'\\]"):
        sentiment_mobile.export_mobile(
            quantized, dict(INFO, vocabulary=[t for t in VOCABULARY if t != "[UNK]"]),
            path, calibration)
    with pytest.raises(UserError, match="vocabulary has 22 tokens but the model's token "
                                        "embedding has 21 rows"):
        sentiment_mobile.export_mobile(
            quantized, dict(INFO, vocabulary=VOCABULARY + ["extra"]), path, calibration)
    with pytest.raises(UserError, match="outputs 2 classes but the label file would have 3"):
        sentiment_mobile.export_mobile(
            quantized, dict(INFO, classes=CLASSES + ["neutral"]), path, calibration)
    assert not path.exists()
