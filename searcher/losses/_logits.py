"""Soft-target distillation on the logits, with the labels' cross-entropy: the classic recipe and searcher's default.

What the terms are is the task kind's (searcher.tasks: `TaskKind.kd`), since it depends on what the labels are; for
single-label classification

    loss = alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))

with batchmean reduction, as the public DistillationTrainer does (`kd_loss`, defined with that kind in
searcher.tasks._single and re-exported here). Rows without a label (UNLABELED: text only the teacher labels)
contribute the distillation term alone. It compares whole examples, so the student may use another tokenizer than
the teacher.
"""

from __future__ import annotations

from searcher import tasks
from searcher.losses._base import Batch, DistillationLoss, Outputs
from searcher.tasks import FORMULA, kd_loss  # noqa: F401 - re-exported: searcher.losses.kd_loss, .FORMULA


class LogitKD(DistillationLoss):
    name = "logits"
    title = "soft-target KD on the logits (Hinton et al. 2015)"
    reads = "logits"
    stage = "logits"
    token_level = False

    def terms(self, student: Outputs, teacher: Outputs, batch: Batch) -> dict:
        """The task kind's terms (single-label classification when the batch names none)."""
        hp = batch.hyperparams
        task = batch.task if batch.task is not None else tasks.kind(tasks.DEFAULT)
        return {self.name: task.kd(student.logits, teacher.logits, batch.labels, hp.alpha, hp.temperature)}

    def formula(self, task=None) -> str:
        """The task kind's formula (`task`: a searcher.tasks.TaskKind; single-label classification when None)."""
        return task.formula if task is not None else FORMULA
