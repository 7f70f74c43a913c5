"""The n-gram branch (tasks/sentiment/ngrams.py): TF-IDF + logistic
regression computed inside the Keras graph from token ids."""

import keras
import numpy as np
import pytest

from tasks.sentiment import ngrams

VOCABULARY, BUCKETS = 50, 64


def texts(count, seed):
    """Token ids [count, 12] whose label is whether bigram (7, 8) occurs
    (each of 7 and 8 alone occurs in both classes), padded with 0."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((count, 12), np.int64)
    labels = rng.integers(0, 2, count)
    for row, label in enumerate(labels):
        length = rng.integers(5, 12)
        ids[row, :length] = rng.integers(10, VOCABULARY, length)
        if label:
            ids[row, 1:3] = (7, 8)
        else:
            ids[row, 1], ids[row, 3] = 8, 7
    return ids, labels


def test_features_count_each_ngram_once_and_skip_padding():
    ids = np.array([[5, 6, 5, 6, 0, 0]])
    present = ngrams.features(ids, VOCABULARY, BUCKETS).toarray()[0]
    bigram = VOCABULARY + (5 * VOCABULARY + 6) % BUCKETS
    assert np.flatnonzero(present).tolist() == sorted(
        {5, 6, bigram, VOCABULARY + (6 * VOCABULARY + 5) % BUCKETS})
    assert present.max() == 1.0 and present[0] == 0.0  # "none" is never a feature


def test_the_layer_computes_what_scikit_learn_fitted():
    from sklearn.feature_extraction.text import TfidfTransformer
    from sklearn.linear_model import LogisticRegression

    train, val = texts(300, seed=0), texts(100, seed=1)
    tables = ngrams.fit_linear(train, val, VOCABULARY, BUCKETS, num_classes=2)
    # Only the order tells the classes apart (bigram 7 8 vs 8 _ 7; hashed
    # bigrams collide at 64 buckets): the linear model learns it.
    assert tables["val_accuracy"] > 0.8
    layer = ngrams.NgramLogits(VOCABULARY, BUCKETS, 2)
    layer.build(val[0].shape)
    for name in ("weighted", "idf_squared", "bias"):
        getattr(layer, name).assign(tables[name])
    in_graph = np.asarray(layer(val[0]))
    np.testing.assert_allclose(in_graph, ngrams.numpy_logits(tables, val[0], VOCABULARY, BUCKETS),
                               rtol=1e-4, atol=1e-4)
    # The same probabilities as scikit-learn's own pipeline at that strength.
    tfidf = TfidfTransformer()
    classifier = LogisticRegression(C=tables["strength"], max_iter=3000).fit(
        tfidf.fit_transform(ngrams.features(train[0], VOCABULARY, BUCKETS)), train[1])
    expected = classifier.predict_proba(tfidf.transform(ngrams.features(val[0], VOCABULARY,
                                                                         BUCKETS)))
    probabilities = np.exp(in_graph) / np.exp(in_graph).sum(-1, keepdims=True)
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)


def test_how_the_two_combine_is_fitted_on_held_out_examples():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 1000)
    signs = np.stack([-(2 * labels - 1.0), 2 * labels - 1.0], -1)
    noise, other = rng.normal(size=(1000, 2)), rng.normal(size=(1000, 2))
    # BERT informative (about 92% right), n-grams noise: the n-grams get
    # (almost) no weight.
    (bert, ngram, _), accuracy = ngrams.fit_mix(signs + noise, 3 * other, labels)
    assert bert > 0.5 and ngram < 0.05
    assert abs(accuracy["together"] - accuracy["bert"]) < 0.01
    # BERT noise, n-grams 80% right but sure of every answer (logits +-20):
    # BERT gets (almost) nothing and the n-grams are scaled down to what 80%
    # right is worth (2 * 20 * b = log(0.8 / 0.2)).
    wrong = rng.random(1000) < 0.2
    (bert, ngram, _), accuracy = ngrams.fit_mix(3 * noise, 20 * np.where(wrong[:, None], -signs,
                                                                          signs), labels)
    assert bert < 0.05 and ngram == pytest.approx(np.log(4) / 40, rel=0.2)
    assert accuracy["together"] == accuracy["ngrams"] > accuracy["bert"] + 0.2


def test_fit_branch_writes_the_weighted_tables_into_the_model(tmp_path):
    train, val = texts(300, seed=0), texts(100, seed=1)
    token_ids = keras.Input((12,), dtype="int32")
    # A "BERT" that knows nothing: the branch should take over.
    bert = keras.layers.Dense(2, name="logits")(keras.layers.GlobalAveragePooling1D()(
        keras.layers.Embedding(VOCABULARY, 2, embeddings_initializer="zeros")(token_ids)))
    branch = ngrams.NgramLogits(VOCABULARY, BUCKETS, 2, name="ngram_logits")(token_ids)
    model = keras.Model(token_ids, keras.layers.Add()([bert, branch]))
    assert np.abs(np.asarray(model(val[0]))).max() == 0.0  # zero until fitted
    fitted = ngrams.fit_branch(model, train, val, {"num_classes": 2})
    assert fitted["ngram_weight"] > 0 and fitted["val_accuracy"]["together"] > 0.8
    assert fitted["val_accuracy"]["bert"] < 0.6
    predicted = np.asarray(model(val[0])).argmax(-1)
    assert (predicted == val[1]).mean() == fitted["val_accuracy"]["together"]
    # The fitted tables are weights of the model: saved and loaded with it.
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=False)
    np.testing.assert_allclose(np.asarray(loaded(val[0])), np.asarray(model(val[0])), atol=1e-6)


@pytest.mark.parametrize("classes", [3])
def test_more_classes_and_a_class_missing_from_training(classes):
    ids, labels = texts(200, seed=2)
    tables = ngrams.fit_linear((ids, labels), (ids, labels), VOCABULARY, BUCKETS, classes)
    logits = ngrams.numpy_logits(tables, ids, VOCABULARY, BUCKETS)
    assert logits.shape == (200, classes)
    assert (logits.argmax(-1) != 2).all()  # class 2 never seen: never predicted
