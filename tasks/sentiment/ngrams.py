"""The n-gram branch of the default classifier: TF-IDF + logistic regression
inside the Keras model, its logits added to BERT's.

Why: on a small real dataset a BERT trained from random weights (or from MLM
on a few thousand texts) loses to TF-IDF + logistic regression, and the two
make different mistakes. So the classifier carries both: BERT as before, and
a linear model on which token unigrams and bigrams a text contains. BERT
trains alone (the branch outputs zero meanwhile); then scikit-learn fits the
linear model on the training split (regularisation chosen on validation),
and how the two combine, `a * BERT + b * n-grams + c`, is fitted on
validation examples that did not choose BERT's epoch (`fit_mix`; either
weight may go to 0). QAT and every export then carry both.

The features are computed in the graph from the token ids, so LiteRT, the
SavedModel and the mobile file need nothing else: unigram i is feature i,
bigram (a, b) is feature V + (a * V + b) mod `buckets` (hashed, so the table
has a fixed size whatever the data), padding is no feature; each feature
present counts once, weighted by its inverse document frequency, and the
vector is L2-normalised (scikit-learn's TfidfTransformer on binary counts).
`features` below computes the same vectors with NumPy, for the fit.
"""

import keras
import numpy as np

# Regularisation strengths tried (scikit-learn's C), the best on validation kept.
STRENGTHS = (0.3, 1.0, 3.0, 10.0)


def ngram_ids(token_ids, vocabulary_size, buckets):
    """[N, L] token ids -> [N, 2L - 1] feature ids (0: none), as the layer."""
    ids = np.asarray(token_ids).astype(np.int64)
    first, second = ids[:, :-1], ids[:, 1:]
    bigrams = vocabulary_size + (first * vocabulary_size + second) % buckets
    bigrams = np.where((first > 0) & (second > 0), bigrams, 0)
    return np.concatenate([ids, bigrams], axis=1)


def features(token_ids, vocabulary_size, buckets):
    """Binary presence of each feature, a sparse [N, V + buckets] matrix."""
    import scipy.sparse

    ids = ngram_ids(token_ids, vocabulary_size, buckets)
    rows = np.repeat(np.arange(len(ids)), ids.shape[1])
    present = ids.ravel() > 0
    matrix = scipy.sparse.csr_matrix(
        (np.ones(int(present.sum())), (rows[present], ids.ravel()[present])),
        shape=(len(ids), vocabulary_size + buckets))
    matrix.data[:] = 1.0  # repeated features count once
    return matrix


@keras.saving.register_keras_serializable(package="sentiment")
class NgramLogits(keras.layers.Layer):
    """Token ids [batch, length] -> class logits [batch, classes] of a linear
    model on TF-IDF-weighted unigram and bigram presence. The tables are
    fitted by `fit_branch` (not by gradient descent: non-trainable); until
    then they are zero and so is the output."""

    # Table lookups and sums, no matmul: nothing for QAT to fake-quantize
    # inside (common/quant_report.py counts it as a lookup); its output
    # gets a range like any layer's.
    quantization_lookup = True

    def __init__(self, vocabulary_size, buckets, num_classes, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size, self.buckets = int(vocabulary_size), int(buckets)
        self.num_classes = int(num_classes)

    def build(self, input_shape):
        size = self.vocabulary_size + self.buckets
        # idf * coefficient (times the mix weight) per feature and class.
        self.weighted = self.add_weight(shape=(size, self.num_classes), initializer="zeros",
                                        trainable=False, name="weighted")
        # idf squared, for the L2 norm of each text's vector.
        self.idf_squared = self.add_weight(shape=(size,), initializer="zeros",
                                           trainable=False, name="idf_squared")
        self.bias = self.add_weight(shape=(self.num_classes,), initializer="zeros",
                                    trainable=False, name="bias")
        # The mask that keeps only the first occurrence of a feature.
        length = 2 * int(input_shape[-1]) - 1
        self.earlier = keras.ops.convert_to_tensor(
            np.tril(np.ones((length, length), np.float32), -1))

    def call(self, token_ids):
        ids = keras.ops.cast(token_ids, "int32")
        first, second = ids[:, :-1], ids[:, 1:]
        bigrams = self.vocabulary_size + keras.ops.mod(
            first * self.vocabulary_size + second, self.buckets)
        bigrams = keras.ops.where((first > 0) & (second > 0), bigrams, 0)
        feature_ids = keras.ops.concatenate([ids, bigrams], axis=1)
        same = keras.ops.cast(keras.ops.equal(feature_ids[:, :, None], feature_ids[:, None, :]),
                              "float32")
        first_time = keras.ops.cast(keras.ops.sum(same * self.earlier, axis=-1) == 0, "float32")
        squared = keras.ops.sum(keras.ops.take(self.idf_squared, feature_ids) * first_time,
                                axis=1, keepdims=True)
        total = keras.ops.sum(keras.ops.take(self.weighted, feature_ids, axis=0)
                              * first_time[..., None], axis=1)
        # Feature 0 (none) has idf 0, so it adds nothing to either sum.
        return total * keras.ops.rsqrt(keras.ops.maximum(squared, 1e-12)) + self.bias

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        config = super().get_config()
        config.update(vocabulary_size=self.vocabulary_size, buckets=self.buckets,
                      num_classes=self.num_classes)
        return config


def branch_of(model):
    """The model's NgramLogits layer, or None."""
    for layer in model.layers:
        if isinstance(layer, NgramLogits):
            return layer
    return None


def _log_softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def fit_linear(train, val, vocabulary_size, buckets, num_classes, class_weights=None):
    """scikit-learn's TF-IDF (binary counts) + logistic regression on the
    hashed features; the strength best on validation. Returns the tables of
    `NgramLogits` and the linear model's own validation accuracy."""
    from sklearn.feature_extraction.text import TfidfTransformer
    from sklearn.linear_model import LogisticRegression

    (train_ids, train_labels), (val_ids, val_labels) = train, val
    tfidf = TfidfTransformer(norm="l2", use_idf=True, smooth_idf=True)
    train_features = tfidf.fit_transform(features(train_ids, vocabulary_size, buckets))
    val_features = tfidf.transform(features(val_ids, vocabulary_size, buckets))
    class_weight = dict(enumerate(class_weights)) if class_weights else None
    best = None
    for strength in STRENGTHS:
        classifier = LogisticRegression(C=strength, max_iter=3000, class_weight=class_weight)
        classifier.fit(train_features, train_labels)
        accuracy = float((classifier.predict(val_features) == val_labels).mean())
        if best is None or accuracy > best[0]:
            best = (accuracy, strength, classifier)
    accuracy, strength, classifier = best
    # Logits for every class, in class-index order; two classes get a single
    # coefficient row from scikit-learn: split it as (-z/2, z/2).
    coefficients = np.zeros((vocabulary_size + buckets, num_classes), np.float32)
    bias = np.zeros(num_classes, np.float32)
    if len(classifier.classes_) == 2:
        low, high = classifier.classes_
        coefficients[:, low], coefficients[:, high] = (-classifier.coef_[0] / 2,
                                                       classifier.coef_[0] / 2)
        bias[low], bias[high] = -classifier.intercept_[0] / 2, classifier.intercept_[0] / 2
    else:
        coefficients[:, classifier.classes_] = classifier.coef_.T
        bias[classifier.classes_] = classifier.intercept_
    # A class the training split lacks is never predicted.
    missing = np.setdiff1d(np.arange(num_classes), classifier.classes_)
    bias[missing] = -1e4
    idf = tfidf.idf_.astype(np.float32)
    idf[0] = 0.0  # feature 0 is "none"
    return {"weighted": idf[:, None] * coefficients, "idf_squared": idf ** 2, "bias": bias,
            "strength": strength, "val_accuracy": accuracy}


def numpy_logits(tables, token_ids, vocabulary_size, buckets):
    """What `NgramLogits` computes, with NumPy (for choosing the mix)."""
    present = features(token_ids, vocabulary_size, buckets)
    norms = np.sqrt(np.maximum(present @ tables["idf_squared"], 1e-12))
    return np.asarray(present @ tables["weighted"]) / norms[:, None] + tables["bias"]


def fit_mix(bert_logits, ngram_logits, labels):
    """`a * bert + b * ngrams + c` with the lowest cross-entropy on held-out
    examples (stacking): a, b >= 0 and a bias per class. Both scales are
    fitted, so a part that is overconfident (a linear model's logits on text
    it did not see often are) is scaled down rather than drowning the other.
    Returns ((a, b, c), {"bert", "ngrams", "together": accuracy})."""
    from scipy.optimize import minimize

    bert_logits = np.asarray(bert_logits, np.float64)
    ngram_logits = np.asarray(ngram_logits, np.float64)
    rows, classes = np.arange(len(labels)), bert_logits.shape[1]

    def combine(params):
        return params[0] * bert_logits + params[1] * ngram_logits + params[2:]

    def loss(params):
        return -_log_softmax(combine(params))[rows, labels].mean()

    start = np.concatenate([[1.0, 0.0], np.zeros(classes)])
    fitted = minimize(loss, start, method="L-BFGS-B",
                      bounds=[(0.0, None), (0.0, None)] + [(None, None)] * classes).x

    def accuracy(logits):
        return float((logits.argmax(-1) == labels).mean())
    return ((float(fitted[0]), float(fitted[1]), fitted[2:].astype(np.float32)),
            {"bert": accuracy(bert_logits), "ngrams": accuracy(ngram_logits),
             "together": accuracy(combine(fitted))})


def fit_branch(model, train, val, info):
    """Fit the branch of `model` (trained BERT, branch still zero) on the
    training arrays, fit how BERT's and its logits combine on the
    validation arrays (`fit_mix`), and write both into the model: BERT's
    output layer `logits` scaled by a, the branch's tables by b, plus c.
    Returns what the report notes say."""
    layer = branch_of(model)
    vocabulary_size, buckets = layer.vocabulary_size, layer.buckets
    tables = fit_linear(train, val, vocabulary_size, buckets, info["num_classes"],
                        info.get("class_weights"))
    val_ids, val_labels = val
    bert_logits = np.asarray(model.predict(val_ids, batch_size=64, verbose=0), np.float64)
    ngram_logits = numpy_logits(tables, val_ids, vocabulary_size, buckets)
    (bert_weight, ngram_weight, bias), accuracy = fit_mix(bert_logits, ngram_logits, val_labels)
    head = model.get_layer("logits")
    head.kernel.assign(head.kernel * bert_weight)
    head.bias.assign(head.bias * bert_weight)
    layer.weighted.assign(tables["weighted"] * ngram_weight)
    layer.idf_squared.assign(tables["idf_squared"])
    layer.bias.assign(tables["bias"] * ngram_weight + bias)
    return {"bert_weight": bert_weight, "ngram_weight": ngram_weight,
            "strength": tables["strength"], "val_accuracy": accuracy,
            "val_examples": int(len(val_labels))}
