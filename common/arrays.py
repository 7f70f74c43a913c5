"""Small numpy helpers shared by the tasks' host-side post-processing."""

import numpy as np


def softmax(logits, axis=-1):
    """Numerically stable softmax of a numpy array along `axis`."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)
