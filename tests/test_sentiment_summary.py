"""The data summary of a sentiment run (examples per split and class, lengths
in tokens, truncation, [UNK] rate, skipped rows, derived settings) and class
weights for skewed labels (`train.class_weight`)."""

import keras
import numpy as np
import pytest

from common import config as config_lib
from common.errors import UserError
from tasks.sentiment import PRESETS, Config, data
from tasks.sentiment import model as model_lib

# A skewed review file: 36 positive, 12 negative, one bad row, one long text.
POSITIVE = ["great film", "loved the food", "very good service", "a wonderful day",
            "nice and friendly staff", "the best meal in town"]
NEGATIVE = ["awful film", "cold food", "rude staff"]


def write_skewed_csv(path):
    rows = ["text,label"]
    rows += [f"{text} {i},positive" for i in range(6) for text in POSITIVE]
    rows += [f"{text} {i},negative" for i in range(4) for text in NEGATIVE]
    rows.append(",negative")  # empty text: skipped under --skip-bad
    rows.append(" ".join(["long"] * 40) + ",negative")
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def config_for(source, **overrides):
    cfg = config_lib.from_preset(Config, PRESETS, "smoke")
    settings = {"data.source": source, "run.skip_bad": True, "model.sequence_length": 16,
                "model.vocabulary_size": 200, "data.val_fraction": 0.2,
                "data.test_fraction": 0.2, "train.batch_size": 4, **overrides}
    for key, value in settings.items():
        config_lib.set_value(cfg, key, value)
    return cfg


@pytest.fixture(scope="module")
def balanced(tmp_path_factory):
    """The skewed file read once, with balanced class weights."""
    folder = tmp_path_factory.mktemp("summary")
    path = write_skewed_csv(folder / "skewed.csv")
    # Every word of the file, so that lengths in pieces are lengths in words
    # (a vocabulary learnt from 48 rows would be mostly single letters).
    words = sorted({word for text in POSITIVE + NEGATIVE for word in text.split()})
    (folder / "vocabulary.txt").write_text("\n".join(
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "long"] + words
        + [str(digit) for digit in range(6)]) + "\n")
    cfg = config_for(path, **{"train.class_weight": "balanced",
                              "model.vocabulary": str(folder / "vocabulary.txt")})
    return cfg, data.build_datasets(cfg)


def test_summary_counts_classes_lengths_truncation_and_skips(balanced):
    _, splits = balanced
    summary = splits.summary
    parts = summary["splits"]
    # 50 rows read: 49 usable, 1 skipped; the carved splits add up.
    assert sum(part["examples"] for part in parts.values()) == 49
    assert len(summary["skipped_rows"]) == 1 and "line 50: empty text" in \
        summary["skipped_rows"][0]
    assert sum(parts[name]["per_class"]["positive"] for name in parts) == 36
    for part in parts.values():
        assert sum(part["per_class"].values()) == part["examples"]
    # The 40-word text is the only one over 14 pieces: counted, measured whole.
    long_split = [name for name, part in parts.items() if part["tokens_max"] >= 40]
    assert len(long_split) == 1 and parts[long_split[0]]["truncated"] == 1
    assert sum(part["truncated"] for part in parts.values()) == splits.info["truncated"] == 1
    assert parts["train"]["tokens_median"] in (3.0, 3.5, 4.0)
    assert parts["train"]["unknown_token_rate"] == 0.0
    derived = summary["derived"]
    assert derived["vocabulary"] == {"size": 6 + 22 + 6, "origin": "model.vocabulary"}
    assert derived["class_weights"]["imbalance"] > 1.5
    assert derived["training"]["steps_per_epoch"] == parts["train"]["examples"] // 4
    assert any(note.startswith("data: train ") for note in splits.notes)


def test_unknown_token_rate_counts_pieces_the_vocabulary_lacks():
    from common.wordpiece import WordPieceTokenizer

    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "great", "film"]
    tokenizer = WordPieceTokenizer(vocabulary, 8)
    texts = ["great film", "great awful film", "rude staff"]
    ids, cut = data.tokenize_texts(tokenizer, texts)
    lengths = data.token_lengths(vocabulary, texts)
    part = data.split_summary(ids, [1, 0, 0], lengths, cut, tokenizer, ["neg", "pos"])
    # 7 word pieces, 3 of them [UNK] (awful, rude, staff).
    assert part["unknown_token_rate"] == pytest.approx(3 / 7)
    assert part["per_class"] == {"neg": 2, "pos": 1} and part["tokens_max"] == 3


def test_balanced_class_weights_match_scikit_learn_and_weigh_the_loss(balanced):
    from sklearn.utils.class_weight import compute_class_weight

    cfg, splits = balanced
    counts = splits.summary["splits"]["train"]["per_class"]
    labels = np.repeat([0, 1], [counts["negative"], counts["positive"]])
    expected = compute_class_weight("balanced", classes=np.arange(2), y=labels)
    np.testing.assert_allclose(splits.info["class_weights"], expected, rtol=1e-6)
    assert splits.summary["derived"]["class_weights"]["option"] == "balanced"
    assert any("class weights in the loss (balanced)" in note for note in splits.notes)
    loss = model_lib.compile_args(cfg, splits.info)["loss"]
    # By hand: mean over the batch of weight[label] * cross-entropy.
    logits = np.array([[2.0, -1.0], [0.5, 0.5], [-1.0, 3.0]], np.float32)
    targets = np.array([0, 1, 1])
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    by_hand = np.mean([-expected[t] * log_softmax[i, t] for i, t in enumerate(targets)])
    assert float(loss(targets, logits)) == pytest.approx(by_hand, rel=1e-5)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert float(restored(targets, logits)) == pytest.approx(by_hand, rel=1e-5)


def test_explicit_class_weights_and_bad_values():
    classes = ["negative", "positive"]
    assert data.class_weights("1,2.5", [10, 5], classes) == [1.0, 2.5]
    assert data.class_weights("", [10, 5], classes) == []
    for bad in ("1,2,3", "heavy", "1,-1"):
        with pytest.raises(UserError, match="train.class_weight=.*negative, positive"):
            data.class_weights(bad, [10, 5], classes)


def test_sequence_length_follows_the_data_up_to_the_cap():
    # 20 texts: 3 longer than 46 pieces (15%, over the 5% tolerance).
    lengths = [10] * 17 + [60, 100, 200]
    length, reason = data.choose_sequence_length(lengths, 48, 128)
    # The 95th percentile (105 pieces) + [CLS]/[SEP], rounded up to 8.
    assert length == 112 and "raised to 112" in reason
    assert data.choose_sequence_length(lengths, 48, 96)[0] == 96
    assert data.choose_sequence_length(lengths, 48, 0) == (
        48, ("15% of the training texts are longer than model.sequence_length=48: "
             "kept (data.max_sequence_length=0)"))
    # One long text in 20 (5%) is tolerated; never shorter than configured.
    assert data.choose_sequence_length([10] * 19 + [200], 48, 128)[0] == 48


def test_a_saved_model_is_evaluated_at_the_length_it_was_trained_with(tmp_path):
    """config.json keeps the preset's length; info.json the derived one."""
    import argparse
    import json

    from tasks.sentiment.saved_run import evaluation_overrides

    (tmp_path / "info.json").write_text(json.dumps(
        {"sequence_length": 128, "classes": ["negative", "positive"]}))
    args = argparse.Namespace(overrides=[], data=None)
    overrides = evaluation_overrides(str(tmp_path / "model.keras"), args)
    assert "model.sequence_length=128" in overrides
    given = argparse.Namespace(overrides=["model.sequence_length=64"], data=None)
    assert not any(o.startswith("model.sequence_length")
                   for o in evaluation_overrides(str(tmp_path / "model.keras"), given))
