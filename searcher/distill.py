"""The distillation loop: train one student against cached teacher logits and evaluate it every epoch.

    loss = alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))

with batchmean reduction, AdamW (betas 0.9/0.999, eps 1e-8), a linear schedule and gradient clipping at 1.0: the
recipe of the public DistillationTrainer (transformers.Trainer defaults), so our students are comparable to theirs.

An effective batch of any size is split into micro-batches whose summed losses are divided by the size of the whole
batch, so the gradient equals one big batch (up to float rounding). The teacher is never called here: its logits
arrive as an array, computed once per (teacher, data, max_length) by searcher.teacher.

This module knows nothing of Optuna: it reports each epoch to an optional `on_epoch` callback, which may raise
to stop training (that is how the objective prunes).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from searcher.data import Encoded, collate, epoch_batches, micro_batches
from searcher.errors import NonFiniteLossError
from searcher.metrics import classification_metrics
from searcher.runtime import Runtime


@dataclass(frozen=True)
class Hyperparams:
    """Everything one training run needs to know, whether searched or fixed."""

    learning_rate: float
    batch_size: int
    temperature: float
    alpha: float
    epochs: int
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    seed: int = 0
    max_grad_norm: float = 1.0


@dataclass(frozen=True)
class EpochResult:
    epoch: int
    step: int  # optimizer steps so far
    train_loss: float  # mean over this epoch's optimizer steps
    eval_loss: float  # the same distillation loss on the validation split
    metrics: dict  # accuracy, f1, precision, recall (plain floats)
    seconds: float  # training + evaluation time of this epoch


def kd_loss(student_logits: torch.Tensor, teacher_logits: Optional[torch.Tensor], labels: torch.Tensor,
            alpha: float, temperature: float) -> torch.Tensor:
    """The distillation loss SUMMED over the examples (divide by the batch size for batchmean).

    Summing lets micro-batches add up to exactly the loss of the whole batch.
    """
    ce = F.cross_entropy(student_logits, labels, reduction="sum")
    if teacher_logits is None or alpha >= 1.0:
        return ce
    t = temperature
    kl = F.kl_div(F.log_softmax(student_logits / t, dim=-1), F.softmax(teacher_logits / t, dim=-1), reduction="sum")
    return alpha * ce + (1.0 - alpha) * t * t * kl


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    # as transformers.Trainer does: no weight decay on biases and LayerNorm weights
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _linear_schedule(optimizer, warmup_steps: int, total_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train(model: torch.nn.Module, train_data: Encoded, teacher_logits: Optional[np.ndarray],
          validation: Encoded, validation_teacher_logits: Optional[np.ndarray], hp: Hyperparams, runtime: Runtime,
          on_epoch: Optional[Callable[[EpochResult], None]] = None) -> list[EpochResult]:
    """Distill into `model` in place; returns one EpochResult per finished epoch."""
    device = runtime.device
    torch.manual_seed(hp.seed)
    model.to(device)
    optimizer = torch.optim.AdamW(_param_groups(model, hp.weight_decay), lr=hp.learning_rate,
                                  betas=(0.9, 0.999), eps=1e-8)
    steps_per_epoch = math.ceil(len(train_data) / hp.batch_size)
    total_steps = steps_per_epoch * hp.epochs
    scheduler = _linear_schedule(optimizer, int(hp.warmup_ratio * total_steps), total_steps)
    scaler = runtime.grad_scaler()
    micro = runtime.micro_for(hp.batch_size)
    labels = torch.from_numpy(train_data.labels)
    targets = torch.from_numpy(np.asarray(teacher_logits, dtype=np.float32)) if teacher_logits is not None else None
    lengths = train_data.lengths
    rng = np.random.default_rng(hp.seed)

    results: list[EpochResult] = []
    step = 0
    for epoch in range(1, hp.epochs + 1):
        started = time.perf_counter()
        model.train()
        epoch_loss = 0.0
        batches = epoch_batches(lengths, hp.batch_size, rng, runtime.group_by_length)
        for batch in batches:
            n = len(batch)
            batch_loss = torch.zeros((), device=device)
            for part in micro_batches(batch, lengths, micro):
                inputs = {k: v.to(device, non_blocking=True) for k, v in collate(train_data, part).items()}
                y = labels[part].to(device, non_blocking=True)
                t = targets[part].to(device, non_blocking=True) if targets is not None else None
                with runtime.autocast():
                    logits = model(**inputs).logits
                loss = kd_loss(logits.float(), t, y, hp.alpha, hp.temperature) / n
                (scaler.scale(loss) if scaler is not None else loss).backward()
                batch_loss += loss.detach()
            value = float(batch_loss)
            if not math.isfinite(value):
                raise NonFiniteLossError(f"training loss became {value} at epoch {epoch}, step {step + 1} "
                                         f"(learning_rate={hp.learning_rate:g}, batch_size={hp.batch_size})")
            if scaler is not None:
                scaler.unscale_(optimizer)
            if hp.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), hp.max_grad_norm)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            epoch_loss += value
            step += 1

        eval_loss, predictions = predict(model, validation, validation_teacher_logits, hp, runtime)
        result = EpochResult(
            epoch=epoch,
            step=step,
            train_loss=epoch_loss / len(batches),
            eval_loss=eval_loss,
            metrics=classification_metrics(predictions, validation.labels),
            seconds=time.perf_counter() - started,
        )
        results.append(result)
        if on_epoch is not None:
            on_epoch(result)
    return results


@torch.no_grad()
def logits_of(model: torch.nn.Module, enc: Encoded, runtime: Runtime, batch_size: int) -> np.ndarray:
    """Logits for every example, in the split's order, as float32. Batches are sorted by length (less padding)."""
    model.eval()
    order = np.argsort(enc.lengths, kind="stable")
    out = np.empty((len(enc), model.config.num_labels), dtype=np.float32)
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        inputs = {k: v.to(runtime.device, non_blocking=True) for k, v in collate(enc, idx).items()}
        with runtime.autocast():
            logits = model(**inputs).logits
        out[idx] = logits.float().cpu().numpy()
    return out


def predict(model: torch.nn.Module, enc: Encoded, teacher_logits: Optional[np.ndarray], hp: Hyperparams,
            runtime: Runtime) -> tuple[float, np.ndarray]:
    """(mean distillation loss, predicted label ids) on a split."""
    logits = logits_of(model, enc, runtime, runtime.eval_for(hp.batch_size))
    s = torch.from_numpy(logits)
    t = torch.from_numpy(np.asarray(teacher_logits, dtype=np.float32)) if teacher_logits is not None else None
    loss = kd_loss(s, t, torch.from_numpy(enc.labels), hp.alpha, hp.temperature) / len(enc)
    return float(loss), logits.argmax(axis=-1)
