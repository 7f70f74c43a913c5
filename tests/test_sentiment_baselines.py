"""The classic text baseline: TF-IDF + logistic regression on the same splits."""

import numpy as np
import tensorflow as tf

from common.data import Splits
from tasks.sentiment import metrics


def _split(ids, labels):
    return tf.data.Dataset.from_tensor_slices((np.asarray(ids, np.int32),
                                               np.asarray(labels, np.int32))).batch(8)


def _texts(count, seed):
    """Token-id 'texts': class 1 holds token 7 followed by 9 (a bigram), class 0
    holds 9 followed by 7; both share the same words, so only word order tells."""
    rng = np.random.default_rng(seed)
    ids, labels = [], []
    for index in range(count):
        label = index % 2
        filler = list(rng.integers(20, 60, size=6))
        pair = [7, 9] if label else [9, 7]
        position = int(rng.integers(0, 6))
        ids.append([2] + filler[:position] + pair + filler[position:] + [3, 0, 0])
        labels.append(label)
    return ids, labels


def test_tfidf_logistic_regression_learns_word_order_from_bigrams():
    info = {"num_classes": 2, "classes": ["negative", "positive"],
            "vocabulary": [str(i) for i in range(64)]}
    splits = Splits(train=_split(*_texts(120, 0)), val=_split(*_texts(40, 1)),
                    test=_split(*_texts(40, 2)), info=info)
    predict = metrics.tfidf_logistic_predict_fn(splits, info)
    scores = metrics.score(predict, splits.test, info)
    assert scores["accuracy"] > 0.95  # unigrams alone could only guess (0.5)
    assert set(metrics.baseline_predict_fns(splits, info)) == {
        "majority", "bag_of_words", "tfidf_logistic_regression"}
