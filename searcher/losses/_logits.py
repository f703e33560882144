"""Soft-target distillation on the logits, with the labels' cross-entropy: the classic recipe and searcher's default.

    loss = alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))

with batchmean reduction, as the public DistillationTrainer does. Rows without a label (UNLABELED: text only the
teacher labels) contribute the distillation term alone. It compares whole examples, so the student may use another
tokenizer than the teacher.
"""

from __future__ import annotations

from typing import Optional

from searcher.losses._base import UNLABELED, Batch, DistillationLoss, Outputs

FORMULA = "alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))"


def kd_loss(student_logits, teacher_logits: Optional[object], labels, alpha: float, temperature: float):
    """The distillation loss SUMMED over the examples (divide by the batch size for batchmean).

    Summing lets micro-batches add up to exactly the loss of the whole batch. Rows labelled UNLABELED add only the
    (1 - alpha)-weighted distillation term.
    """
    import torch.nn.functional as F

    ce = F.cross_entropy(student_logits, labels, reduction="sum", ignore_index=UNLABELED)
    if teacher_logits is None or alpha >= 1.0:
        return ce
    t = temperature
    kl = F.kl_div(F.log_softmax(student_logits / t, dim=-1), F.softmax(teacher_logits / t, dim=-1), reduction="sum")
    return alpha * ce + (1.0 - alpha) * t * t * kl


class LogitKD(DistillationLoss):
    name = "logits"
    title = "soft-target KD on the logits (Hinton et al. 2015)"
    reads = "logits"
    stage = "logits"
    token_level = False

    def terms(self, student: Outputs, teacher: Outputs, batch: Batch) -> dict:
        """The task kind's terms (searcher.tasks): for single-label classification exactly `kd_loss`."""
        hp = batch.hyperparams
        if batch.task is None:
            return {self.name: kd_loss(student.logits, teacher.logits, batch.labels, hp.alpha, hp.temperature)}
        return {self.name: batch.task.kd(student.logits, teacher.logits, batch.labels, hp.alpha, hp.temperature)}

    def formula(self) -> str:
        return FORMULA
