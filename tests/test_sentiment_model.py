"""The BERT classifier: input wiring, learning a toy set, MLM pre-training,
INT8 LiteRT export, the TF Serving SavedModel, and `--init` checkpoints."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from common import config as config_lib, export, litert
from common.data import Splits
from tasks.sentiment import PRESETS, Config, model as model_lib, training
from common.wordpiece import WordPieceTokenizer

VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "film", "food",
              "was", "is", "good", "great", "bad", "awful", "and", "a", "very", "."]
CLASSES = ["negative", "positive"]
INFO = {"vocabulary": VOCABULARY, "classes": CLASSES, "num_classes": 2}
LENGTH = 12


def tiny_config(**overrides):
    cfg = config_lib.from_preset(Config, PRESETS, "smoke")
    config_lib.apply_overrides(cfg, {
        "model.sequence_length": LENGTH, "model.num_layers": 1, "model.hidden_dim": 32,
        "model.num_heads": 2, "model.intermediate_dim": 64, "model.dropout": 0.0})
    config_lib.apply_overrides(cfg, overrides)
    return cfg


def toy_texts(count, seed):
    """Separable by one opinion word, among random neutral words."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(count):
        label = int(rng.integers(2))
        opinion = rng.choice(["good", "great"] if label else ["bad", "awful"])
        filler = list(rng.choice(["the", "film", "food", "was", "is", "a", "and"],
                                 size=int(rng.integers(2, 7))))
        filler.insert(int(rng.integers(len(filler) + 1)), opinion)
        texts.append(" ".join(filler))
        labels.append(label)
    return texts, np.array(labels, np.int32)


def toy_arrays(count, seed):
    texts, labels = toy_texts(count, seed)
    tokenizer = WordPieceTokenizer(VOCABULARY, LENGTH)
    return tokenizer(tf.constant(texts)).numpy(), labels


@pytest.fixture(scope="module")
def trained():
    """A one-layer BERT fitted on the toy set (shared by the export tests)."""
    keras.utils.set_random_seed(0)
    cfg = tiny_config()
    model = model_lib.build_model(cfg, INFO)
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  **model_lib.compile_args(cfg, INFO))
    train_ids, train_labels = toy_arrays(512, seed=1)
    history = model.fit(train_ids, train_labels, batch_size=32, epochs=6, verbose=0)
    test_ids, test_labels = toy_arrays(128, seed=2)
    return cfg, model, history.history, (train_ids, train_labels), (test_ids, test_labels)


def accuracy(predict, ids, labels):
    return float(np.mean(np.asarray(predict(ids)).argmax(-1) == labels))


def test_inputs_reach_the_backbone_in_the_right_slots():
    import keras_hub

    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=8, dropout=0.0)
    token_ids = keras.Input((8,), dtype="int32")
    model = keras.Model(token_ids, model_lib.bert_features(
        backbone, token_ids)["sequence_output"])
    ids = np.array([[2, 7, 9, 3, 0, 0, 0, 0]], np.int32)
    expected = backbone({"token_ids": ids, "segment_ids": np.zeros_like(ids),
                         "padding_mask": (ids != 0).astype(np.int32)})["sequence_output"]
    np.testing.assert_allclose(model(ids), expected, atol=1e-6)


def test_tiny_model_learns_a_separable_toy_set(trained, tmp_path):
    cfg, model, history, _, (test_ids, test_labels) = trained
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert accuracy(model, test_ids, test_labels) >= 0.95
    # Saved and reloaded with safe_mode, it predicts the same.
    path = str(tmp_path / "model.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(reloaded(test_ids[:8]), model(test_ids[:8]), atol=1e-5)


def test_int8_litert_export_classifies_like_float(trained, tmp_path):
    cfg, model, _, (train_ids, train_labels), (test_ids, test_labels) = trained
    train = tf.data.Dataset.from_tensor_slices((train_ids, train_labels)).batch(32)
    config_lib.set_value(cfg, "export.representative_samples", 100)
    representative = model_lib.representative_dataset(
        Splits(train=train, val=train, test=train, info=INFO), cfg)
    calibration = [sample[0] for sample in representative()]
    # Calibration text is packed: full rows, no [PAD] (see representative_dataset).
    assert len(calibration) == 100
    assert all(row.shape == (1, LENGTH) and (row != 0).all() and row[0, 0] == 2
               and row[0, -1] == 3 for row in calibration)

    path = str(tmp_path / "model_int8.tflite")
    ops = export.convert_to_tflite(model, path, representative)
    assert not ops["float_compute_ops"], ops
    assert not any(name.startswith("Flex") or "DELEGATE" in name for name in ops["ops"])
    assert any(name.startswith("FULLY_CONNECTED/int8") for name in ops["ops"])
    assert any(name.startswith("BATCH_MATMUL/int8") for name in ops["ops"])
    runner = litert.LiteRTModel(path)
    float_accuracy = accuracy(model, test_ids, test_labels)
    int8_accuracy = accuracy(runner, test_ids, test_labels)
    assert int8_accuracy >= float_accuracy - 0.02 and int8_accuracy >= 0.93
    # A toy model is mostly graph, not weights; still clearly smaller.
    assert os.path.getsize(path) < 0.75 * len(export_float(model, tmp_path))


def test_calibration_reads_the_training_text_in_one_fixed_order():
    # `splits.calibration` (every training example, in order) rather than the
    # training split, which reshuffles on every pass: the same run calibrates
    # the post-training INT8 file the same way.
    cfg = tiny_config(**{"export.representative_samples": 6})
    ids, labels = toy_arrays(64, seed=3)
    in_order = tf.data.Dataset.from_tensor_slices((ids, labels)).batch(8)
    reshuffled = tf.data.Dataset.from_tensor_slices((ids, labels)).shuffle(
        64, reshuffle_each_iteration=True).batch(8)
    splits = Splits(train=reshuffled, val=in_order, test=in_order, info=INFO,
                    calibration=in_order)
    first = [sample[0] for sample in model_lib.representative_dataset(splits, cfg)()]
    again = [sample[0] for sample in model_lib.representative_dataset(splits, cfg)()]
    assert len(first) == 6
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    # Packed from the first training texts, in their order.
    leading = [int(t) for t in ids[0] if int(t) not in (0, 2, 3)]
    assert list(first[0][0, 1:1 + len(leading)]) == leading[:LENGTH - 2]


def export_float(model, tmp_path):
    path = str(tmp_path / "model_float.tflite")
    export.convert_to_tflite(model, path)
    with open(path, "rb") as handle:
        return handle.read()


LIST_OPS = r"""
import json, sys
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry
path = sys.argv[1]
loaded = tf.saved_model.load(path)
result = loaded.signatures["serving_default"](
    text=tf.constant(["the food was very good .", "the film was awful", b"bad \xff bytes", ""]))
proto = saved_model_pb2.SavedModel()
with open(path + "/saved_model.pb", "rb") as handle:
    proto.ParseFromString(handle.read())
ops = set()
for graph in proto.meta_graphs:
    ops |= {node.op for node in graph.graph_def.node}
    for function in graph.graph_def.library.function:
        ops |= {node.op for node in function.node_def}
print(json.dumps({
    "tensorflow_text_imported": "tensorflow_text" in sys.modules,
    "not_core": sorted(op for op in ops if op_def_registry.get(op) is None),
    "ops": sorted(ops),
    "label": [v.decode() for v in result["label"].numpy()],
    "probability": result["probability"].numpy().tolist(),
}))
"""


def test_saved_model_serves_raw_strings_with_core_tf_ops_only(trained, tmp_path):
    """Stock TF Serving has no tensorflow-text ops: a fresh process that
    never imports it must load and run the SavedModel."""
    cfg, model, _, _, _ = trained
    endpoints = model_lib.build_serving_model(model, cfg, INFO)
    folder = export.export_saved_model(model, endpoints, str(tmp_path), "sentiment")
    process = subprocess.run(
        [sys.executable, "-c", LIST_OPS, folder], capture_output=True, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=120)
    assert process.returncode == 0, process.stderr[-2000:]
    result = json.loads(process.stdout.strip().splitlines()[-1])
    assert not result["tensorflow_text_imported"]
    assert result["not_core"] == []
    text_ops = [op for op in result["ops"] if "Wordpiece" in op or "WithOffsets" in op
                or op in ("CaseFoldUTF8", "NormalizeUTF8", "RegexSplitWithOffsets")]
    assert text_ops == []
    assert "LookupTableFindV2" in result["ops"] and "StringSplitV2" in result["ops"]
    assert result["label"][:2] == ["positive", "negative"]
    assert all(0.5 <= p <= 1.0 for p in result["probability"])


def test_mlm_masking_follows_bert():
    ids = np.zeros([64, LENGTH], np.int32)
    ids[:, 0], ids[:, 9] = 2, 3  # [CLS] 8 words [SEP] padding
    ids[:, 1:9] = np.arange(5, 13)
    inputs, original, weights = training.mask_tokens(
        tf.constant(ids), VOCABULARY, mask_rate=0.25, num_predictions=3, seed=1)
    positions = inputs["mask_positions"].numpy()
    weights = weights.numpy()
    assert weights.sum(axis=1).tolist() == [2.0] * 64  # round(0.25 * 8 words)
    chosen = positions[weights > 0]
    assert ((chosen >= 1) & (chosen <= 8)).all()  # never [CLS], [SEP], [PAD]
    np.testing.assert_array_equal(original.numpy(), np.take_along_axis(ids, positions, 1))
    masked = inputs["token_ids"].numpy()
    changed = np.take_along_axis(masked, positions, 1)[weights > 0]
    assert 0.65 < np.mean(changed == VOCABULARY.index("[MASK]")) < 0.95
    untouched = np.ones_like(ids, bool)
    np.put_along_axis(untouched, positions, weights == 0, 1)
    np.testing.assert_array_equal(masked[untouched], ids[untouched])


def test_mlm_pretraining_lowers_the_masked_token_loss(tmp_path):
    keras.utils.set_random_seed(0)
    cfg = tiny_config(**{"model.pretrain_epochs": 4, "model.pretrain_learning_rate": 3e-3,
                         "train.batch_size": 32})
    model = model_lib.build_model(cfg, INFO)
    ids, labels = toy_arrays(384, seed=3)
    dataset = tf.data.Dataset.from_tensor_slices((ids, labels)).batch(32)
    splits = Splits(train=dataset, val=dataset.take(2), test=dataset, info=INFO)

    class Context:
        run_dir, resume = str(tmp_path), False

        def stage_dir(self, stage):
            return str(tmp_path / "stages" / stage)

        def fit(self, model, splits, cfg, compile_args, stage, epochs, learning_rate,
                monitor):
            model.compile(optimizer=keras.optimizers.Adam(learning_rate), **compile_args)
            self.history = model.fit(splits.train, epochs=epochs, verbose=0).history
            return self.history

    backbone_before = [w.copy() for w in model_lib.backbone_of(model).get_weights()]
    context = Context()
    training.pretrain_mlm(model, splits, cfg, INFO, context)
    history = context.history
    # Chance is log(vocabulary size); the toy filler words are random, so
    # ~log(7) is near the floor.
    assert history["loss"][-1] < history["loss"][0]
    assert history["loss"][-1] < 0.45 * np.log(len(VOCABULARY))
    after = model_lib.backbone_of(model).get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(backbone_before, after))


def test_init_loads_a_keras_hub_preset_folder(tmp_path):
    import keras_hub

    from tasks.sentiment import data

    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCABULARY), num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=32)
    preset = str(tmp_path / "bert_preset")
    backbone.save_to_preset(preset)
    keras_hub.models.BertTokenizer(vocabulary=VOCABULARY).save_to_preset(preset)
    cfg = tiny_config(**{"model.init": preset})
    vocabulary, origin = data.vocabulary_for(cfg, [])
    assert (vocabulary, origin) == (VOCABULARY, "init")
    model = model_lib.build_model(cfg, INFO)
    loaded = model_lib.backbone_of(model)
    for ours, theirs in zip(loaded.get_weights(), backbone.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    too_long = tiny_config(**{"model.init": preset, "model.sequence_length": 64})
    with pytest.raises(Exception, match="longer than the checkpoint's 32 positions"):
        model_lib.build_model(too_long, INFO)


def test_qat_reaches_the_encoder_and_padded_calibration_keeps_int8_accurate(
        trained, tmp_path):
    """Padded calibration wrecks post-training INT8 (Keras masks scores with
    -1e9, which the int8 scale then spans); QAT masks inside the trained
    range, so the same padded batches calibrate it and INT8 follows float."""
    from common import qat, quant_report

    cfg, model, _, (train_ids, train_labels), (test_ids, test_labels) = trained
    assert (train_ids == 0).mean() > 0.3  # the toy rows are mostly padding
    quantized = qat.quantize_model(model)
    coverage = quant_report.fake_quant_coverage(model, quantized)
    assert coverage["mac_share"] == 1.0, coverage["uncovered_layers"]
    assert any(path.endswith("self_attention_layer:attention") for path in coverage["layers"])
    train = tf.data.Dataset.from_tensor_slices((train_ids, train_labels)).batch(32)
    qat.calibrate(quantized, train, steps=5)

    path = str(tmp_path / "qat.keras")
    quantized.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(reloaded(test_ids[:8]), quantized(test_ids[:8]), atol=1e-5)

    def padded_rows():
        for row in train_ids[:100]:
            yield [row[None]]

    qat_path, ptq_path = str(tmp_path / "qat_int8.tflite"), str(tmp_path / "ptq_int8.tflite")
    ops = export.convert_to_tflite(quantized, qat_path, padded_rows)
    assert not ops["float_compute_ops"], ops
    summary = quant_report.tflite_int8_summary(qat_path)
    assert summary["mac_share_int8"] == 1.0
    export.convert_to_tflite(model, ptq_path, padded_rows)

    float_accuracy = accuracy(model, test_ids, test_labels)
    qat_accuracy = accuracy(litert.LiteRTModel(qat_path), test_ids, test_labels)
    ptq_accuracy = accuracy(litert.LiteRTModel(ptq_path), test_ids, test_labels)
    assert qat_accuracy >= float_accuracy - 0.02
    assert ptq_accuracy < qat_accuracy  # measured: 0.46 against 1.0
    runner = litert.LiteRTModel(qat_path)
    int8_logits = np.asarray(runner(test_ids[:16]))
    float_logits = np.asarray(model(test_ids[:16]))
    assert np.abs(int8_logits - float_logits).max() < 0.1 * np.abs(float_logits).max()
