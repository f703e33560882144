"""The textbook peer: chapter 8 of "Natural Language Processing with Transformers" (the recipe the public
distilled cards were made with), ported faithfully to transformers 5.

A `Trainer` subclass whose `compute_loss` calls the teacher at every step (alpha * CE + (1 - alpha) * T^2 * KL,
batchmean), searched with `Trainer.hyperparameter_search(backend="optuna")`. Everything else is the Trainer's
default: its data collator (dynamic padding), evaluation each epoch, fp32 on CPU. No checkpoints are saved
(save_strategy="no"), which is the peer's fair advantage over searcher, which saves every complete trial.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import Trainer, TrainingArguments


@dataclass
class DistillationTrainingArguments(TrainingArguments):
    alpha: float = field(default=0.5)
    temperature: float = field(default=2.0)


class TeacherClock:
    """Time spent in the teacher's forward passes (so the report can take it off the peer's ledger)."""

    seconds = 0.0
    calls = 0


class DistillationTrainer(Trainer):
    # transformers 5: a custom loss is divided by the accumulation steps only when this is False (STACK.md); the
    # peer runs without accumulation, so it makes no difference, but it is the correct setting for this loss.
    loss_is_scaled_for_ga = False

    def __init__(self, *args, teacher_model=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher_model = teacher_model
        self.teacher_model.eval()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs_stu = model(**inputs)
        loss_ce = outputs_stu.loss
        logits_stu = outputs_stu.logits
        started = time.perf_counter()
        with torch.no_grad():
            teacher_inputs = {k: v for k, v in inputs.items() if k != "labels"}
            logits_tea = self.teacher_model(**teacher_inputs).logits
        TeacherClock.seconds += time.perf_counter() - started
        TeacherClock.calls += 1
        loss_fct = nn.KLDivLoss(reduction="batchmean")
        t = self.args.temperature
        loss_kd = t ** 2 * loss_fct(F.log_softmax(logits_stu / t, dim=-1), F.softmax(logits_tea / t, dim=-1))
        loss = self.args.alpha * loss_ce + (1.0 - self.args.alpha) * loss_kd
        return (loss, outputs_stu) if return_outputs else loss


def accuracy(eval_pred) -> dict:
    predictions, labels = eval_pred
    return {"accuracy": float(np.mean(np.argmax(predictions, axis=-1) == labels))}
