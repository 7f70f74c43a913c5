"""Knowledge distillation (Hinton et al., 2015) for any classifier.

A trained teacher's softened probabilities teach a smaller student:

    L = alpha * CE(y, student) + (1 - alpha) * T^2 * KL(p_teacher^T || p_student^T)

where p^T = softmax(logits / T). The T^2 factor keeps the soft term's
gradients at the same scale as the hard term's when T changes.

`Distiller` is a `keras.Model` that wraps the two models; it overrides only
`compute_loss`, so Keras's own train / test steps (any backend, XLA,
distribution strategies, callbacks) run unchanged. After `fit`, use
`distiller.student`; the teacher is frozen and never updated.

    distiller = Distiller(student, teacher, alpha=0.5, temperature=2.0)
    distiller.compile(optimizer="adam",
                      metrics=[keras.metrics.SparseCategoricalAccuracy()])
    distiller.fit(train_dataset, validation_data=val_dataset, epochs=5)
    student = distiller.student
"""

import keras
from keras import ops

from common.errors import UserError


def check_distillation_args(alpha, temperature):
    if not 0.0 <= alpha <= 1.0:
        raise UserError(f"distillation alpha={alpha}: expected a weight in [0, 1]")
    if temperature <= 0.0:
        raise UserError(f"distillation temperature={temperature}: expected > 0")


def distillation_loss(labels, student_logits, teacher_logits, alpha=0.5,
                      temperature=2.0):
    """Per-example distillation loss, shape [batch].

    `labels` are class indices [batch] (or [batch, 1]), or one-hot / soft
    targets [batch, classes]; both logits are [batch, classes].
    """
    student_logits = ops.cast(student_logits, "float32")
    teacher_logits = ops.stop_gradient(ops.cast(teacher_logits, "float32"))
    num_classes = student_logits.shape[-1]
    if len(labels.shape) == len(student_logits.shape) and labels.shape[-1] == num_classes:
        hard = keras.losses.categorical_crossentropy(
            ops.cast(labels, "float32"), student_logits, from_logits=True)
    else:
        labels = ops.reshape(ops.cast(labels, "int32"), [-1])
        hard = keras.losses.sparse_categorical_crossentropy(
            labels, student_logits, from_logits=True)
    teacher_log_probs = ops.log_softmax(teacher_logits / temperature, axis=-1)
    student_log_probs = ops.log_softmax(student_logits / temperature, axis=-1)
    soft = ops.sum(ops.exp(teacher_log_probs) * (teacher_log_probs - student_log_probs),
                   axis=-1)
    return alpha * hard + (1.0 - alpha) * temperature ** 2 * soft


class Distiller(keras.Model):
    """Trains `student` on labels and on a frozen `teacher`'s soft outputs.

    Both models take the same inputs and return class logits. The model's
    output (and so every compiled metric) is the student's.
    """

    def __init__(self, student, teacher, alpha=0.5, temperature=2.0, **kwargs):
        super().__init__(**kwargs)
        check_distillation_args(alpha, temperature)
        self.student = student
        self.teacher = teacher
        self.teacher.trainable = False
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        # Both models already have their weights; callbacks such as
        # BackupAndRestore refuse an unbuilt model.
        if student.built and teacher.built:
            self.built = True

    def call(self, inputs, training=False):
        return self.student(inputs, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                     training=True):
        teacher_logits = self.teacher(x, training=False)
        per_example = distillation_loss(y, y_pred, teacher_logits, self.alpha,
                                        self.temperature)
        if sample_weight is not None:
            weight = ops.reshape(ops.cast(sample_weight, "float32"), [-1])
            loss = ops.sum(per_example * weight) / ops.maximum(ops.sum(weight), 1e-9)
        else:
            loss = ops.mean(per_example)
        # Regularisation losses of the student (the teacher is frozen).
        if self.student.losses:
            loss = loss + ops.sum(self.student.losses)
        return loss

