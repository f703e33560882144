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

Shaped for a GPU: the split's tokens, labels and teacher logits are moved to the device once and each batch is a
gather there (`Batches`); padded widths are bucketed so shapes repeat (`[train] compile` compiles the forward and
loss per width); the loss is accumulated on the device and read once per SYNC_EVERY steps (and at the end of each
epoch); the learning rate is a device tensor; fp16 runs through one `GradScaler(enabled=...)` path (a step the
scaler skips does not advance the schedule). Many trials of one shape train together in searcher.train.cohort.

This module knows nothing of Optuna: `epochs` yields each epoch's result and the caller stops the iteration to
stop training (that is how the objective prunes).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import numpy as np
import torch
from transformers import get_linear_schedule_with_warmup

from searcher import timing
from searcher.data.rows import StackedLogits
from searcher.train.batching import TokenRows, epoch_batches, epoch_parts
from searcher.errors import NonFiniteLossError
from searcher.hyperparams import Hyperparams
from searcher.train.inference import logits_of
from searcher.train.models import forward_inputs, ready_for_compile
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


def recipe(losses: Optional[list[DistillationLoss]] = None, task=None) -> dict:
    """What the loop does, as the card and the trial record state it."""
    formula = " + ".join(loss.weighted_formula(task) for loss in losses) if losses else LOSS
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
        # dominates its parameters. The learning rate is a tensor, so the schedule changes a value on the device
        # and a compiled step never bakes a Python float in.
        fused = runtime.device.split(":")[0] in ("cpu", "cuda")
        lr = torch.tensor(hp.learning_rate, device=runtime.device) if fused else hp.learning_rate
        self.optimizer = torch.optim.AdamW(groups, lr=lr, fused=fused, **ADAMW)
        # the Trainer's own schedule (lr_scheduler_type "linear"); cohorts compute the same factor per member
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, warmup_steps(hp.warmup_ratio, steps_total),
                                                         steps_total)
        self.scaler = runtime.grad_scaler()
        self.scale = self.scaler.get_scale() if self.scaler.is_enabled() else None  # before the first step: no sync
        if runtime.compile:
            ready_for_compile(model)
        self.forward = compiled(self._forward, runtime.compile)

    def set_losses(self, losses: list[DistillationLoss]) -> None:
        """The losses of the current stage, and the outputs they read from each model."""
        self.losses = losses
        self.needs = Needs()
        for loss in losses:
            self.needs = self.needs | loss.needs(loss.pairs_in_use)

    def _forward(self, inputs: dict, y, t, teacher: Optional[Outputs]) -> tuple:
        """The student's loss on one micro-batch: its named terms, each summed over the examples."""
        student_needs = self.needs.student
        with self.runtime.autocast():
            out = self.model(**forward_inputs(self.model, inputs),
                             output_hidden_states=bool(hidden_layers(student_needs)))
            student = model_outputs(self.model, out.hidden_states, out.logits.float(), inputs["attention_mask"],
                                    student_needs) if not student_needs.empty else Outputs(out.logits.float())
        teacher = teacher if teacher is not None else Outputs(logits=t)
        teacher.logits = t
        named = {}
        for loss in self.losses:  # in float32, as the logits above: autocast covers the forward only
            named.update(loss.terms(student, teacher, Batch(y, self.hp, self.task)))
        return named

    def __call__(self, batch: "Batches", index: int, terms: dict) -> torch.Tensor:
        """Train on effective batch `index` of the epoch; returns its loss as a device tensor (no host sync, except
        fp16's below). Each term's share is added to `terms` (device tensors, read once per epoch)."""
        total = torch.zeros((), device=self.runtime.device)
        n = batch.size(index)
        for inputs, y, t, part in batch.parts(index):
            teacher = None
            if not self.needs.teacher.empty:
                teacher = self.teacher.outputs(part, inputs, batch.to_device)
            named = self.forward(inputs, y, t, teacher)
            loss = sum(v.float() for v in named.values()) / n
            self.scaler.scale(loss).backward()
            total += loss.detach()
            for name, value in named.items():
                terms[name] = terms.get(name, 0.0) + value.detach().float() / n
        self.scaler.unscale_(self.optimizer)
        if self.hp.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.hp.max_grad_norm)
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


def compiled(fn, how):
    """`fn` through torch.compile when the study asks ([train] compile: true for the default backend, or a backend's
    name), else as it is. Widths are bucketed (searcher.train.batching.width_for), so a study compiles a handful of
    shapes; `dynamic=False` keeps each one specialised."""
    if not how:
        return fn
    return torch.compile(fn, backend="inductor" if how is True else how, dynamic=False)


# Teacher logits larger than this stay on the host and are gathered there batch by batch (a memory-mapped transfer
# set can be many GB); below it they are moved to the training device once.
DEVICE_TARGETS_BYTES = 4 * 2 ** 30


class Batches:
    """One epoch's batches on the training device: the split's tokens, labels and teacher logits are moved there once
    (searcher.train.batching.TokenRows); each epoch copies only its row order, and a micro-batch is a gather there."""

    def __init__(self, data: Encoded, teacher_logits, runtime: Runtime):
        self.runtime, self.device = runtime, runtime.device
        self.rows = TokenRows(data, self.device)
        self.labels = torch.from_numpy(np.ascontiguousarray(data.labels)).to(self.device)
        self.targets = teacher_logits  # None, or host rows read batch by batch (StackedLogits, or too large)
        if teacher_logits is not None and not isinstance(teacher_logits, StackedLogits):
            array = np.asarray(teacher_logits, dtype=np.float32)
            if array.nbytes <= DEVICE_TARGETS_BYTES:
                self.targets = torch.from_numpy(array).to(self.device)
        self.order = self.order_host = None
        self.slices: list = []

    def epoch(self, batches: list[np.ndarray], micro: int) -> int:
        self.order_host, self.slices = epoch_parts(batches, self.rows.lengths, micro)
        self.order = self.to_device(torch.from_numpy(self.order_host))
        return len(batches)

    def size(self, index: int) -> int:
        return self.slices[index][-1][1] - self.slices[index][0][0]

    def parts(self, index: int) -> Iterator[tuple]:
        """(model inputs, labels, teacher logits, row numbers on the host) of each micro-batch of batch `index`."""
        for start, stop in self.slices[index]:
            part, rows = self.order_host[start:stop], self.order[start:stop]
            inputs = self.rows.batch(rows, self.rows.width(part))
            yield inputs, self.labels[rows], self._targets(part, rows), part

    def _targets(self, part: np.ndarray, rows):
        if self.targets is None:
            return None
        if isinstance(self.targets, torch.Tensor):
            return self.targets[rows]
        return self.to_device(torch.from_numpy(np.ascontiguousarray(self.targets[part], dtype=np.float32)))

    def to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        # only a copy from pinned memory runs asynchronously (non_blocking); from pageable memory it is synchronous
        if self.runtime.is_cuda:
            tensor = tensor.pin_memory()
        return tensor.to(self.device, non_blocking=True)


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
          on_epoch: Optional[Callable[[EpochResult], None]] = None, **options) -> list[EpochResult]:
    """Distill into `model` in place for all of `hp.epochs`; returns one EpochResult per epoch (see `epochs`)."""
    results = []
    for result in epochs(model, train_data, teacher_logits, validation, validation_teacher_logits, hp, runtime,
                         **options):
        results.append(result)
        if on_epoch is not None:
            on_epoch(result)
    return results


def epochs(model: torch.nn.Module, train_data: Encoded, teacher_logits: Optional[np.ndarray],
           validation: Encoded, validation_teacher_logits: Optional[np.ndarray], hp: Hyperparams, runtime: Runtime,
           metrics: Callable = BUILTIN_SET, losses: Optional[list[DistillationLoss]] = None, teacher=None,
           teacher_config=None, intermediate_epochs: int = 0) -> Iterator[EpochResult]:
    """Distill into `model` in place, yielding each epoch's result; the caller stops training by stopping the
    iteration (that is how the objective prunes). Raises NonFiniteLossError when the loss stops being finite.

    `losses` default to the logit loss alone; layer-wise ones read the teacher's intermediate outputs from
    `teacher` (searcher.teachers.hidden.CachedTeacherStates or OnlineTeacherStates), matched by layer to
    `teacher_config`."""
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
    data = Batches(train_data, teacher_logits, runtime)
    rng = np.random.default_rng(hp.seed)

    step = 0
    for epoch in range(1, hp.epochs + 1):
        started = time.perf_counter()
        model.train()
        for m in (m for loss in losses for m in loss.modules):
            m.train()
        step_fn.set_losses(stage_losses(losses, epoch, intermediate_epochs))
        epoch_loss = torch.zeros((), device=device)
        terms: dict = {}
        n = data.epoch(epoch_batches(train_data.lengths, hp.batch_size, rng, runtime.group_by_length), micro)
        with timing.phase("training"):
            for i in range(n):
                epoch_loss += step_fn(data, i, terms)
                step += 1
                if (i + 1) % SYNC_EVERY == 0 or i + 1 == n:
                    _check_finite(float(epoch_loss), epoch, step, hp)
        scores = evaluate(model, validation, validation_teacher_logits, hp, runtime, metrics)
        yield epoch_result(epoch, step, float(epoch_loss) / n, {k: float(v) / n for k, v in terms.items()}, scores,
                           losses, started, runtime)


def epoch_result(epoch: int, step: int, train_loss: float, terms: dict, scores: dict, losses: list,
                 started: float, runtime: Runtime) -> EpochResult:
    """An epoch's result from its training loss and terms (means over its steps) and its evaluation scores."""
    threshold = scores.pop("threshold", None)
    peak = torch.cuda.max_memory_allocated(runtime.device) / 2 ** 20 if runtime.is_cuda else None
    per_term = None
    if len(losses) > 1:  # every loss has its column, zero in the epochs its stage does not train it
        per_term = {loss.name: terms.get(loss.name, 0.0) for loss in losses} | terms
    return EpochResult(epoch=epoch, step=step, train_loss=train_loss, eval_loss=scores.pop("loss"),
                       cross_entropy=scores.pop("cross_entropy"), metrics=scores,
                       seconds=time.perf_counter() - started, peak_memory_mb=peak, terms=per_term, threshold=threshold)


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
