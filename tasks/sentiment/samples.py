"""Pictures for the run report: confusion matrices and example predictions."""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from common.arrays import softmax  # noqa: E402
from tasks.sentiment.metrics import confusion_matrix  # noqa: E402
from common.wordpiece import CLS, PAD, SEP, SUFFIX  # noqa: E402


def ids_to_text(token_ids, vocabulary):
    """WordPiece ids back to readable text (lowercased, spaced punctuation)."""
    words = []
    for index in np.asarray(token_ids).tolist():
        piece = vocabulary[index]
        if piece in (PAD, CLS, SEP):
            continue
        if piece.startswith(SUFFIX) and words:
            words[-1] += piece[len(SUFFIX):]
        else:
            words.append(piece)
    return " ".join(words)


def save_confusion_matrices(matrices, class_names, path):
    """One heat map per model, counts written in the cells."""
    count = len(matrices)
    size = max(3.0, 0.6 * len(class_names) + 2.0)
    figure, axes = plt.subplots(1, count, figsize=(size * count, size), squeeze=False)
    for axis, (title, matrix) in zip(axes[0], matrices.items()):
        matrix = np.asarray(matrix)
        axis.imshow(matrix, cmap="Blues")
        axis.set_title(title)
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
        ticks = np.arange(len(class_names))
        axis.set_xticks(ticks, class_names, rotation=45, ha="right")
        axis.set_yticks(ticks, class_names)
        threshold = matrix.max() / 2 if matrix.size else 0
        for row in range(matrix.shape[0]):
            for column in range(matrix.shape[1]):
                axis.text(column, row, str(matrix[row, column]), ha="center",
                          va="center",
                          color="white" if matrix[row, column] > threshold else "black")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def save_prediction_table(rows, path):
    """A picture of a few test sentences with truth and predictions."""
    figure, axis = plt.subplots(figsize=(12, 0.22 * len(rows) + 0.3))
    axis.axis("off")
    lines = []
    for text, truth, predicted in rows:
        short = text if len(text) <= 80 else text[:77] + "..."
        mark = "ok " if predicted.split(" ")[0] == truth else "BAD"
        lines.append(f"{mark} true {truth:<10} pred {predicted:<28} {short}")
    axis.text(0, 1, "\n".join(lines), family="monospace", fontsize=9, va="top")
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path


def save_samples(predict_fn, splits, info, out_dir, int8_predict_fn=None, count=12):
    classes = info["classes"]
    matrices = {"float": confusion_matrix(predict_fn, splits.test, len(classes))}
    if int8_predict_fn is not None:
        matrices["INT8"] = confusion_matrix(int8_predict_fn, splits.test, len(classes))
    paths = [save_confusion_matrices(matrices, classes,
                                     os.path.join(out_dir, "confusion_matrix.png"))]
    token_ids, labels = next(iter(splits.test.unbatch().batch(count)))
    token_ids, labels = token_ids.numpy(), labels.numpy()
    probabilities = softmax(predict_fn(token_ids))
    int8_probabilities = (softmax(int8_predict_fn(token_ids))
                          if int8_predict_fn is not None else None)
    rows = []
    for index in range(len(labels)):
        best = int(probabilities[index].argmax())
        predicted = f"{classes[best]} {probabilities[index, best]:.2f}"
        if int8_probabilities is not None:
            best8 = int(int8_probabilities[index].argmax())
            predicted += f" / int8 {classes[best8]} {int8_probabilities[index, best8]:.2f}"
        rows.append((ids_to_text(token_ids[index], info["vocabulary"]),
                     classes[int(labels[index])], predicted))
    paths.append(save_prediction_table(rows, os.path.join(out_dir, "samples.png")))
    return paths
