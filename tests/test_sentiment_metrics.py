"""Sentiment metrics against hand computations, and the two baselines."""

import numpy as np
import tensorflow as tf

from common.data import Splits
from tasks.sentiment import metrics


def batches(ids, labels, size=16):
    return tf.data.Dataset.from_tensor_slices((ids, labels)).batch(size)


def test_scores_match_a_hand_computation():
    # true: 0 0 0 1 1 2 ; predicted: 0 0 1 1 2 2
    labels = np.array([0, 0, 0, 1, 1, 2], np.int32)
    predicted = np.array([0, 0, 1, 1, 2, 2])
    logits = np.eye(3, dtype=np.float32)[predicted]
    scores = metrics.score(lambda ids: logits[ids[:, 0]], batches(
        np.arange(6, dtype=np.int32)[:, None], labels, size=4),
        {"num_classes": 3, "classes": ["a", "b", "c"]})
    assert scores["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert scores["accuracy"] == 4 / 6
    # F1: a = 2*1*(2/3)/(1+2/3) = 0.8, b = 0.5, c = 2*0.5*1/1.5 = 2/3.
    assert np.isclose(scores["f1_per_class"]["a"], 0.8)
    assert np.isclose(scores["f1_per_class"]["b"], 0.5)
    assert np.isclose(scores["f1_per_class"]["c"], 2 / 3)
    assert np.isclose(scores["macro_f1"], (0.8 + 0.5 + 2 / 3) / 3)


def _splits(ids, labels):
    """400 / 100 / 100 rows of two-class token ids as train / val / test."""
    info = {"num_classes": 2, "classes": ["no", "yes"], "vocabulary": ["t"] * 10}
    splits = Splits(train=batches(ids[:400], labels[:400]),
                    val=batches(ids[400:500], labels[400:500]),
                    test=batches(ids[500:], labels[500:]), info=info)
    return splits, info


def test_baselines_majority_and_bag_of_words():
    rng = np.random.default_rng(0)
    # Class 1 whenever token 7 occurs; 60% of the rows are class 0.
    ids = rng.integers(5, 7, size=(600, 10)).astype(np.int32)
    labels = (rng.random(600) < 0.4).astype(np.int32)
    ids[labels == 1, rng.integers(1, 9)] = 7
    splits, info = _splits(ids, labels)
    fns = metrics.baseline_predict_fns(splits, info)
    majority = metrics.score(fns["majority"], splits.test, info)
    assert majority["accuracy"] == np.mean(labels[500:] == 0)
    bag = metrics.score(fns["bag_of_words"], splits.test, info)
    assert bag["accuracy"] > 0.95 > majority["accuracy"]


def test_only_the_bigram_baseline_sees_word_order():
    # Every text holds tokens 7 and 8 once; the label is their order
    # ("not good" vs "good not"). Word presence says nothing, bigrams all.
    rng = np.random.default_rng(1)
    labels = (rng.random(600) < 0.5).astype(np.int32)
    ids = rng.integers(5, 7, size=(600, 10)).astype(np.int32)
    for row, label in enumerate(labels):
        start = rng.integers(1, 8)
        ids[row, start:start + 2] = [7, 8] if label else [8, 7]
    splits, info = _splits(ids, labels)
    fns = metrics.baseline_predict_fns(splits, info)
    bag = metrics.score(fns["bag_of_words"], splits.test, info)
    bigrams = metrics.score(fns["tfidf_logistic_regression"], splits.test, info)
    assert bag["accuracy"] < 0.7 and bigrams["accuracy"] > 0.95
