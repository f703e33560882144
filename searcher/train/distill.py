"""The distillation loop: train one student against its teacher's targets and evaluate it every epoch.

The loss is the sum of the terms the study's distillation losses give (searcher.losses: by default the logit loss

    alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))

with batchmean reduction), with AdamW (betas 0.9/0.999, eps 1e-8), a linear schedule and gradient clipping: the recipe
of the public DistillationTrainer (transformers.Trainer defaults), so our students are comparable to theirs. Rows
without a label (label -1: transfer text labelled only by the teacher) contribute the distillation terms alone.
With a stage schedule (TinyBERT), the first epochs train the layer-wise losses only and the rest the logit loss only.

An effective batch of any size is split into micro-batches whose summed losses are divided by the size of the whole
batch, so the gradient equals one big batch (up to float rounding): every loss term is a per-example loss summed.
The teacher's logits arrive as an array, computed once per (teacher, data, max_length) by searcher.teachers.loading; its
intermediate outputs, for layer-wise losses, from searcher.teachers.hidden (cached, or the teacher beside the student).

On a GPU the host waits as little as it can: the loss is accumulated on the device and read once per SYNC_EVERY
steps (and at the end of each epoch), batches are pinned and copied without blocking, and fp16 runs through one
`GradScaler(enabled=...)` path (a step the scaler skips does not advance the schedule).

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

from searcher import timing
from searcher.data.rows import Stacked
from searcher.train.batching import collate, epoch_batches, micro_batches
from searcher.errors import NonFiniteLossError
from searcher.hyperparams import Hyperparams
from searcher.train.inference import logits_of
from searcher.train.outputs import hidden_layers, outputs as model_outputs
from searcher.losses import FORMULA as LOSS, Batch, DistillationLoss, LogitKD, Needs, Outputs, kd_loss
from searcher.tasks.metrics import BUILTIN_SET
from searcher.train.runtime import Runtime
from searcher.data.tokens import Encoded

# The optimizer, schedule and loss as they run: the card and the records describe them from these, so a change
# here changes what the cards say.
ADAMW = {"betas": (0.9, 0.999), "eps": 1e-8}
SCHEDULE = "linear"
SYNC_EVERY = 50  # optimizer steps between reads of the loss on the host (one device sync each)


def recipe(losses: Optional[list[DistillationLoss]] = None) -> dict:
    """What the loop does, as the card and the trial record state it."""
    formula = " + ".join(loss.weighted_formula() for loss in losses) if losses else LOSS
    return {"optimizer": f"AdamW with betas=({ADAMW['betas'][0]},{ADAMW['betas'][1]}) and epsilon={ADAMW['eps']:g}",
            "lr_scheduler_type": SCHEDULE, "loss": formula, "kl_reduction": "batchmean"}


@dataclass(frozen=True)
class EpochResult:
    epoch: int
    step: int  # optimizer steps so far
    train_loss: float  # mean over this epoch's optimizer steps
    eval_loss: float  # the same distillation loss on the validation split
    metrics: dict  # accuracy, f1, precision, recall, and the study's own metrics (plain floats)
    seconds: float  # training + evaluation time of this epoch
    cross_entropy: Optional[float] = None  # the student's plain cross-entropy on the validation split
    peak_memory_mb: Optional[float] = None  # CUDA only: the most memory allocated so far in this run
    terms: Optional[dict] = None  # each loss term's mean over this epoch's steps, when there are several
    threshold: Optional[float] = None  # multi-label with a tuned threshold: the one chosen on the validation split


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    # as transformers.Trainer does: no weight decay on biases and LayerNorm weights
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_steps(warmup_ratio: float, total_steps: int) -> int:
    """Rounded up, as the Trainer does: any warmup ratio above zero warms up for at least one step."""
    return math.ceil(warmup_ratio * total_steps)


def _linear_schedule(optimizer, warmup: int, total_steps: int):
    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class _Step:
    """One optimizer step over an effective batch: backward per micro-batch, clip, step, schedule."""

    def __init__(self, model, hp: Hyperparams, runtime: Runtime, steps_total: int, losses: list[DistillationLoss],
                 teacher=None, task=None):
        self.model, self.hp, self.runtime = model, hp, runtime
        self.task = task  # searcher.tasks.TaskKind: what the labels are (its terms make the logit loss)
        self.teacher = teacher  # the teacher's intermediate outputs (searcher.teachers.hidden), for layer-wise losses
        self.set_losses(losses)
        extra = [p for loss in losses for m in loss.modules for p in m.parameters()]  # projections: trained, not saved
        groups = _param_groups(model, hp.weight_decay)
        if extra:
            groups.append({"params": extra, "weight_decay": 0.0})
        # the fused kernel, as the Trainer's default optimizer (adamw_torch_fused): the same update, one kernel for all
        # parameters; on a CPU about 8x faster than the per-tensor loop for a student whose 30,522-row embedding
        # dominates its parameters
        fused = runtime.device.split(":")[0] in ("cpu", "cuda")
        self.optimizer = torch.optim.AdamW(groups, lr=hp.learning_rate, fused=fused, **ADAMW)
        self.scheduler = _linear_schedule(self.optimizer, warmup_steps(hp.warmup_ratio, steps_total), steps_total)
        self.scaler = runtime.grad_scaler()
        self.scale = self.scaler.get_scale() if self.scaler.is_enabled() else None  # before the first step: no sync

    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        # only a copy from pinned memory runs asynchronously (non_blocking); from pageable memory it is synchronous
        if self.runtime.is_cuda:
            tensor = tensor.pin_memory()
        return tensor.to(self.runtime.device, non_blocking=True)

    def set_losses(self, losses: list[DistillationLoss]) -> None:
        """The losses of the current stage, and the outputs they read from each model."""
        self.losses = losses
        self.needs = Needs()
        for loss in losses:
            self.needs = self.needs | loss.needs(loss.pairs_in_use)

    def __call__(self, data: Encoded, labels: torch.Tensor, targets: Optional[torch.Tensor], batch: np.ndarray,
                 micro: int, terms: dict) -> torch.Tensor:
        """Train on one effective batch; returns its loss as a device tensor (no host sync, except fp16's below).
        Each term's share is added to `terms` (device tensors, read once per epoch)."""
        device, hp, n = self.runtime.device, self.hp, len(batch)
        total = torch.zeros((), device=device)
        student_needs = self.needs.student
        for part in micro_batches(batch, data.lengths, micro):
            inputs = {k: v.to(device, non_blocking=True)
                      for k, v in collate(data, part, pin_memory=self.runtime.is_cuda).items()}
            y = self._to_device(labels[part])
            t = self._to_device(_rows(targets, part)) if targets is not None else None
            with self.runtime.autocast():
                out = self.model(**inputs, output_hidden_states=bool(hidden_layers(student_needs)))
                student = model_outputs(self.model, out.hidden_states, out.logits.float(), inputs["attention_mask"],
                                        student_needs) if not student_needs.empty else Outputs(out.logits.float())
            teacher = Outputs(logits=t)
            if not self.needs.teacher.empty:
                teacher = self.teacher.outputs(part, inputs, self._to_device)
                teacher.logits = t
            named = {}
            for loss in self.losses:  # in float32, as the logits above: autocast covers the forward only
                named.update(loss.terms(student, teacher, Batch(y, hp, self.task)))
            loss = sum(v.float() for v in named.values()) / n
            self.scaler.scale(loss).backward()
            total += loss.detach()
            for name, value in named.items():
                terms[name] = terms.get(name, 0.0) + value.detach().float() / n
        self.scaler.unscale_(self.optimizer)
        if hp.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), hp.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self._stepped():
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total

    def _stepped(self) -> bool:
        """Whether the optimizer stepped: the fp16 scaler skips a step whose gradients hold inf/NaN and lowers its
        scale, and the schedule must not advance then (as the Trainer does). fp16 only, one host sync per step (the
        Trainer's accelerate makes the same comparison); bf16 and fp32 never skip and never read anything."""
        if self.scale is None:
            return True
        before, self.scale = self.scale, self.scaler.get_scale()
        return self.scale >= before


def _targets(teacher_logits):
    """The teacher's logits as the loop reads them: an in-memory array becomes one float32 tensor; a Stacked view
    (memory-mapped teacher-labelled text) is read batch by batch."""
    if teacher_logits is None or isinstance(teacher_logits, Stacked):
        return teacher_logits
    return torch.from_numpy(np.asarray(teacher_logits, dtype=np.float32))


def _rows(targets, part: np.ndarray) -> torch.Tensor:
    return targets[part] if isinstance(targets, torch.Tensor) else torch.from_numpy(targets[part])


def prepare_losses(losses: list[DistillationLoss], model, teacher_config, device: str) -> None:
    """Each loss's layer pairs for this student and teacher, and what it trains beside the student (projections)."""
    s_layers = int(getattr(model.config, "num_hidden_layers", 0) or 0)
    t_layers = int(getattr(teacher_config, "num_hidden_layers", 0) or 0) if teacher_config is not None else 0
    for loss in losses:
        loss.setup(model.config, teacher_config, loss.pairs(s_layers, t_layers), device)


def stage_losses(losses: list[DistillationLoss], epoch: int, intermediate_epochs: int) -> list[DistillationLoss]:
    """The losses an epoch trains with: TinyBERT's schedule trains the layer-wise losses alone for the first
    `intermediate_epochs` epochs, then the logit loss alone; without one, every loss every epoch."""
    if not intermediate_epochs:
        return losses
    stage = "layers" if epoch <= intermediate_epochs else "logits"
    return [loss for loss in losses if loss.stage == stage]


def train(model: torch.nn.Module, train_data: Encoded, teacher_logits: Optional[np.ndarray],
          validation: Encoded, validation_teacher_logits: Optional[np.ndarray], hp: Hyperparams, runtime: Runtime,
          on_epoch: Optional[Callable[[EpochResult], None]] = None,
          metrics: Callable = BUILTIN_SET, losses: Optional[list[DistillationLoss]] = None, teacher=None,
          teacher_config=None, intermediate_epochs: int = 0) -> list[EpochResult]:
    """Distill into `model` in place; returns one EpochResult per finished epoch.

    `losses` default to the logit loss alone; layer-wise ones read the teacher's intermediate outputs from
    `teacher` (searcher.teachers.hidden.CachedTeacher or OnlineTeacher), matched by layer to `teacher_config`."""
    device = runtime.device
    torch.manual_seed(hp.seed)
    model.to(device)
    losses = losses if losses is not None else [LogitKD()]
    prepare_losses(losses, model, teacher_config, device)
    if runtime.is_cuda:
        torch.cuda.reset_peak_memory_stats(device)
    steps_per_epoch = math.ceil(len(train_data) / hp.batch_size)
    step_fn = _Step(model, hp, runtime, steps_per_epoch * hp.epochs, losses, teacher, metrics.kind)
    micro = runtime.micro_for(hp.batch_size)
    labels = torch.from_numpy(train_data.labels)
    targets = _targets(teacher_logits)
    rng = np.random.default_rng(hp.seed)

    results: list[EpochResult] = []
    step = 0
    for epoch in range(1, hp.epochs + 1):
        started = time.perf_counter()
        model.train()
        for m in (m for loss in losses for m in loss.modules):
            m.train()
        step_fn.set_losses(stage_losses(losses, epoch, intermediate_epochs))
        epoch_loss = torch.zeros((), device=device)
        terms: dict = {}
        batches = epoch_batches(train_data.lengths, hp.batch_size, rng, runtime.group_by_length)
        with timing.phase("training"):
            for i, batch in enumerate(batches, start=1):
                epoch_loss += step_fn(train_data, labels, targets, batch, micro, terms)
                step += 1
                if i % SYNC_EVERY == 0 or i == len(batches):
                    _check_finite(float(epoch_loss), epoch, step, hp)
        scores = evaluate(model, validation, validation_teacher_logits, hp, runtime, metrics)
        threshold = scores.pop("threshold", None)
        peak = torch.cuda.max_memory_allocated(runtime.device) / 2 ** 20 if runtime.is_cuda else None
        per_term = {name: float(value) / len(batches) for name, value in terms.items()} if len(losses) > 1 else None
        if per_term is not None:  # every loss has its column, zero in the epochs its stage does not train it
            per_term = {loss.name: per_term.get(loss.name, 0.0) for loss in losses} | per_term
        results.append(EpochResult(epoch=epoch, step=step, train_loss=float(epoch_loss) / len(batches),
                                   eval_loss=scores.pop("loss"), cross_entropy=scores.pop("cross_entropy"),
                                   metrics=scores, seconds=time.perf_counter() - started, peak_memory_mb=peak,
                                   terms=per_term, threshold=threshold))
        if on_epoch is not None:
            on_epoch(results[-1])
    return results


def _check_finite(value: float, epoch: int, step: int, hp: Hyperparams) -> None:
    if not math.isfinite(value):
        raise NonFiniteLossError(f"training loss became {value} at epoch {epoch} (by step {step}; "
                                 f"learning_rate={hp.learning_rate:g}, batch_size={hp.batch_size})")


def evaluate(model, enc: Encoded, teacher_logits: Optional[np.ndarray], hp: Hyperparams, runtime: Runtime,
             metrics: Callable = BUILTIN_SET, threshold: Optional[float] = None) -> dict:
    """A split's scores: the distillation loss ("loss"), the plain label loss ("cross_entropy": cross-entropy, MSE
    or BCE by task kind), and every metric. A multi-label study with a tuned threshold chooses it here (returned
    as "threshold") unless one is given (the validation split's, for the test split)."""
    with timing.phase("evaluation"):
        return _evaluate(model, enc, teacher_logits, hp, runtime, metrics, threshold)


def _evaluate(model, enc: Encoded, teacher_logits: Optional[np.ndarray], hp: Hyperparams, runtime: Runtime,
              metrics: Callable, threshold: Optional[float]) -> dict:
    logits = logits_of(model, enc, runtime, runtime.eval_for(hp.batch_size))
    kind = getattr(metrics, "kind", None)
    out = {"loss": split_loss(logits, teacher_logits, enc.labels, hp, kind),
           "cross_entropy": split_loss(logits, None, enc.labels, hp, kind)}
    if threshold is None and kind is not None:
        threshold = kind.tune(logits, enc.labels)
        if threshold is not None:
            out["threshold"] = threshold
    return {**out, **metrics(logits, enc.labels, threshold)}


def split_loss(logits: np.ndarray, teacher_logits: Optional[np.ndarray], labels: np.ndarray,
               hp: Hyperparams, kind=None) -> float:
    """The mean distillation loss of a split (the plain label loss when `teacher_logits` is None)."""
    s = torch.from_numpy(logits)
    t = torch.from_numpy(np.asarray(teacher_logits, dtype=np.float32)) if teacher_logits is not None else None
    alpha = hp.alpha if t is not None else 1.0
    y = torch.from_numpy(np.asarray(labels))
    value = kind.kd(s, t, y, alpha, hp.temperature) if kind is not None else kd_loss(s, t, y, alpha, hp.temperature)
    return float(value / max(1, len(labels)))
