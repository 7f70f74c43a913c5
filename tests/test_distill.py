"""Knowledge distillation: the loss against a hand computation, and a
Distiller that moves a student towards a frozen teacher."""

import keras
import numpy as np
import pytest

from common.distill import Distiller, distillation_loss
from common.errors import UserError


def softmax(logits):
    exp = np.exp(logits - logits.max(-1, keepdims=True))
    return exp / exp.sum(-1, keepdims=True)


def hand_loss(labels, student, teacher, alpha, temperature):
    """L = a*CE(y, student) + (1-a)*T^2*KL(softmax(t/T) || softmax(s/T))."""
    p_student = softmax(student)
    cross_entropy = -np.log(p_student[np.arange(len(labels)), labels])
    p_teacher_t, p_student_t = softmax(teacher / temperature), softmax(student / temperature)
    kl = np.sum(p_teacher_t * (np.log(p_teacher_t) - np.log(p_student_t)), axis=-1)
    return alpha * cross_entropy + (1 - alpha) * temperature ** 2 * kl


@pytest.mark.parametrize("alpha,temperature", [(0.5, 2.0), (0.1, 4.0), (1.0, 1.0), (0.0, 3.0)])
def test_loss_matches_a_hand_computation(alpha, temperature):
    rng = np.random.default_rng(0)
    student = rng.normal(size=(6, 3)).astype(np.float32) * 2
    teacher = rng.normal(size=(6, 3)).astype(np.float32) * 3
    labels = rng.integers(0, 3, size=6)
    expected = hand_loss(labels, student, teacher, alpha, temperature)
    got = np.asarray(distillation_loss(labels, student, teacher, alpha, temperature))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # One-hot labels give the same loss as class indices.
    one_hot = np.eye(3, dtype=np.float32)[labels]
    np.testing.assert_allclose(
        np.asarray(distillation_loss(one_hot, student, teacher, alpha, temperature)),
        expected, rtol=1e-5, atol=1e-6)


def test_soft_term_vanishes_when_student_equals_teacher():
    logits = np.array([[2.0, -1.0, 0.5]], np.float32)
    labels = np.array([0])
    soft_only = distillation_loss(labels, logits, logits, alpha=0.0, temperature=3.0)
    np.testing.assert_allclose(np.asarray(soft_only), [0.0], atol=1e-6)


def test_bad_alpha_or_temperature_is_refused():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    with pytest.raises(UserError, match="alpha"):
        Distiller(model, model, alpha=1.5)
    with pytest.raises(UserError, match="temperature"):
        Distiller(model, model, temperature=0.0)


def test_distiller_moves_the_student_towards_a_frozen_teacher(tmp_path):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(512, 4)).astype(np.float32)
    labels = (inputs[:, 0] + inputs[:, 1] > 0).astype(np.int32)
    teacher = keras.Sequential([keras.Input((4,)), keras.layers.Dense(16, activation="relu"),
                                keras.layers.Dense(2)])
    teacher.compile(optimizer=keras.optimizers.Adam(1e-2),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(inputs, labels, epochs=20, batch_size=64, verbose=0)
    teacher_weights = [w.copy() for w in teacher.get_weights()]

    student = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    gap_before = np.mean(np.abs(softmax(np.asarray(student(inputs)))
                                - softmax(np.asarray(teacher(inputs)))))
    distiller = Distiller(student, teacher, alpha=0.0, temperature=2.0)
    distiller.compile(optimizer=keras.optimizers.Adam(3e-2),
                      metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    history = distiller.fit(inputs, labels, epochs=15, batch_size=64, verbose=0,
                            callbacks=[backup]).history
    gap_after = np.mean(np.abs(softmax(np.asarray(student(inputs)))
                               - softmax(np.asarray(teacher(inputs)))))
    assert history["loss"][-1] < 0.3 * history["loss"][0]
    assert gap_after < 0.3 * gap_before
    # Only soft targets (alpha=0), yet the student learnt the task.
    assert history["accuracy"][-1] > 0.9
    for before, after in zip(teacher_weights, teacher.get_weights()):
        np.testing.assert_array_equal(before, after)
