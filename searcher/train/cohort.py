"""Cohorts: K trials of one student shape trained together, in one step, as one population of stacked parameters.

Each member is a trial's own student (built with its own seed, exactly as alone) and its own losses; their
parameters are stacked along a new first axis (`torch.func.stack_module_state`) and one forward, backward and
optimizer step trains all of them: the forward is `torch.func.functional_call` of one member's module under
`torch.vmap`, so every matrix product runs K models at once, and a small student that leaves a GPU idle alone fills
it in a cohort (PyTorch's "Model ensembling" recipe, as ModelBatch and HFTA do for plain training).

What differs per member is a tensor of K values: learning rate and its linear schedule (warmup included),
temperature, alpha, weight decay, the layer-wise losses' weights, gradient clipping, the fp16 loss scale, and the
optimizer's moments. The AdamW update below is torch's AdamW written over the stacked axis (the same arithmetic, in
the same order); clipping is `clip_grad_norm_` per member. What members must share is what shapes a step: the
student's architecture and dropout, the batch size, the epochs, the training rows and the data seed (searcher's
trials share the study's seed, so the batches are the ones each member would have seen alone).

With dropout off and in fp32 a member's losses and metrics equal the same trial trained alone up to float rounding
(tests/test_cohort.py holds them to 1e-5). With dropout on, each member draws its own masks (vmap's "different"
randomness): members are independent, but a member's masks are not the ones its seed would draw alone, so its
result is an equally valid run, not the identical one.

A member that is pruned or diverges (a non-finite loss) leaves the stack and stops costing compute. Evaluation runs
each member's own model through the same code as a trial alone (searcher.train.distill.evaluate). Knows nothing of
Optuna.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import math
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import numpy as np
import torch

from searcher import timing
from searcher.errors import NonFiniteLossError
from searcher.hyperparams import Hyperparams
from searcher.losses import Batch, DistillationLoss, Needs, Outputs
from searcher.tasks.metrics import BUILTIN_SET
from searcher.train import distill
from searcher.train.batching import epoch_batches
from searcher.train.models import forward_inputs, ready_for_compile
from searcher.train.outputs import hidden_layers, outputs as model_outputs
from searcher.train.runtime import Runtime
from searcher.data.tokens import Encoded

# fp16: torch.amp.GradScaler's defaults, per member
INIT_SCALE, GROWTH, BACKOFF, GROWTH_INTERVAL = 2.0 ** 16, 2.0, 0.5, 2000


@dataclass
class Member:
    """One trial of a cohort: its student (built as alone), hyperparameters and losses."""

    model: torch.nn.Module
    hp: Hyperparams
    losses: list[DistillationLoss]


# the hyperparameters that decide a trial's batches: every member of a cohort sees the same ones
SHARED = ("batch_size", "epochs", "seed", "augment")


def key(model: torch.nn.Module, hp: Hyperparams) -> tuple:
    """What members of one cohort must share: the student's architecture (its config, dropout included) and what
    decides the batches (SHARED). Trials with equal keys can train together; Cohort refuses others."""
    config = {k: v for k, v in model.config.to_dict().items() if k not in ("_name_or_path", "transformers_version")}
    return (type(model).__name__, repr(sorted(config.items())), *(getattr(hp, name) for name in SHARED))


def capable(model: torch.nn.Module) -> bool:
    """Whether a student can train in a cohort: a transformers model (its config describes its shape) that does not
    say otherwise (a student family may set `supports_cohorts = False`)."""
    return getattr(model, "supports_cohorts", True) and hasattr(model, "config") and hasattr(model.config, "to_dict")


class _Learner(torch.nn.Module):
    """A member's student and what its losses train beside it (projections), as one module to stack. Its forward
    runs a function while `functional_call` has swapped every parameter of both for a member's."""

    def __init__(self, model, losses):
        super().__init__()
        self.model = model
        self.extra = torch.nn.ModuleList(m for loss in losses for m in loss.modules)

    def forward(self, fn):
        return fn()


class Cohort:
    """Train `members` together; `epochs()` yields, after every epoch, {member index: EpochResult or the
    NonFiniteLossError that stopped it}; `stop(i)` takes member i out (pruned). At the end (or when the caller stops
    iterating) each member's model holds its trained weights."""

    def __init__(self, members: list[Member], train_data: Encoded, teacher_logits, validation: Encoded,
                 validation_teacher_logits, runtime: Runtime, metrics: Callable = BUILTIN_SET, teacher=None,
                 teacher_config=None, intermediate_epochs: int = 0):
        keys = [key(m.model, m.hp) for m in members]
        differs = next((i for i, k in enumerate(keys) if k != keys[0]), None)
        if differs is not None:
            raise ValueError(f"cohort member {differs} does not share member 0's architecture and batches "
                             f"({', '.join(SHARED)}); group members by cohort.key")
        self.members, self.runtime, self.metrics = members, runtime, metrics
        self.train_data, self.validation = train_data, validation
        self.teacher_logits, self.validation_teacher_logits = teacher_logits, validation_teacher_logits
        self.teacher, self.teacher_config, self.intermediate_epochs = teacher, teacher_config, intermediate_epochs
        self.active = list(range(len(members)))  # member indices, in stack order
        self._stopped: set[int] = set()

    def stop(self, index: int) -> None:
        self._stopped.add(index)

    # --- setup -------------------------------------------------------------------------------------------------

    def _setup(self) -> None:
        device, hps = self.runtime.device, [m.hp for m in self.members]
        learners = []
        for m in self.members:
            torch.manual_seed(m.hp.seed)  # as a trial alone: its projections are initialised from its seed
            m.model.to(device)
            distill.prepare_losses(m.losses, m.model, self.teacher_config, device)
            learners.append(_Learner(m.model, m.losses).to(device))
        self.learners = learners
        params, buffers = torch.func.stack_module_state(learners)
        self.params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
        self.buffers = {k: v.detach().clone() for k, v in buffers.items()}
        # the module every member runs as: a copy of member 0's without storage ("meta" tensors in deepcopy's memo, so
        # no second copy of its weights is ever made), with the losses that use its projections; every parameter and
        # buffer is swapped for a member's by functional_call; its word embedding gives rows looked up for all members
        storage_free = {id(t): (torch.nn.Parameter(torch.empty_like(t, device="meta"), t.requires_grad)
                                if isinstance(t, torch.nn.Parameter) else torch.empty_like(t, device="meta"))
                        for t in (*learners[0].parameters(), *learners[0].buffers())}
        self.base, self.base_losses = copy.deepcopy((learners[0], self.members[0].losses), storage_free)
        if self.runtime.compile:
            ready_for_compile(self.base.model)
        self.embedding = _Embedding.of(self.base, self.params)
        self._terms_of_stage: dict = {}  # the vmapped loss function of each stage's losses ([train] compile: compiled)
        self.state = {k: (torch.zeros_like(v), torch.zeros_like(v)) for k, v in self.params.items()}
        # the fused AdamW kernel (as a trial alone uses) where the device has it: per member, its own step counts
        self._fused = device.split(":")[0] in ("cpu", "cuda")
        self._steps_done = 0
        self._step_counts = [[torch.zeros((), dtype=torch.float32, device=device) for _ in self.params]
                             for _ in self.members]
        # as distill._param_groups: no weight decay on biases, LayerNorm weights, nor on the losses' projections
        self.decays = {k: k.startswith("model.") and v.ndim > 2 and "LayerNorm" not in k and "layer_norm" not in k
                       for k, v in self.params.items()}
        self.clipped = {k: k.startswith("model.") for k in self.params}  # clip_grad_norm_ sees the student alone
        steps_per_epoch = math.ceil(len(self.train_data) / hps[0].batch_size)
        self.total_steps = steps_per_epoch * hps[0].epochs
        t = lambda values: torch.tensor(values, dtype=torch.float32, device=device)  # noqa: E731
        self.hyper = {
            "lr": t([h.learning_rate for h in hps]), "weight_decay": t([h.weight_decay for h in hps]),
            "warmup": t([distill.warmup_steps(h.warmup_ratio, self.total_steps) for h in hps]),
            "max_grad_norm": t([h.max_grad_norm for h in hps]), "steps": t([0.0] * len(hps)),
            "scale": t([INIT_SCALE if self.runtime.amp == "fp16" else 1.0] * len(hps)),
            "growth": t([0.0] * len(hps)),
        }
        # what the loss reads per member: the trial's own values where they differ, as tensors under vmap
        self.searched = {name: t([float(getattr(h, name)) for h in hps])
                         for name in ("alpha", "temperature", *(hp.name for loss in self.members[0].losses
                                                                for hp in loss.hyperparams))}

    def _drop(self, indices: list[int]) -> None:
        """Take these members (indices into `self.active`) out of the stack: they stop costing compute."""
        keep = torch.tensor([i for i in range(len(self.active)) if i not in indices], device=self.runtime.device)
        self.params = {k: v.detach()[keep].clone().requires_grad_(True) for k, v in self.params.items()}
        self.buffers = {k: v[keep] for k, v in self.buffers.items()}
        self.state = {k: (m[keep], v[keep]) for k, (m, v) in self.state.items()}
        self.hyper = {k: v[keep] for k, v in self.hyper.items()}
        self.searched = {k: v[keep] for k, v in self.searched.items()}
        self.active = [m for i, m in enumerate(self.active) if i not in indices]

    def _write_back(self) -> None:
        """Each active member's model holds its current weights (to evaluate, save and export it as alone)."""
        with torch.no_grad():
            for row, index in enumerate(self.active):
                for name, p in self.learners[index].named_parameters():
                    p.copy_(self.params[name][row])

    # --- the step ------------------------------------------------------------------------------------------------

    def _losses_of(self, stage: list[DistillationLoss], needs: Needs, inputs: dict, y, t, teacher: Optional[Outputs]):
        """The named loss terms of every active member on one micro-batch, each a (K,) tensor summed over rows."""
        params, buffers = self.params, self.buffers
        if self.embedding is not None:
            params = {k: v for k, v in params.items() if k != self.embedding.name}
            buffers = {**buffers, self.embedding.given: self.embedding.look_up(self.params, inputs["input_ids"])}
        key = (tuple(map(id, stage)), needs)
        if key not in self._terms_of_stage:
            self._terms_of_stage[key] = distill.compiled(functools.partial(self._terms, stage, needs),
                                                         self.runtime.compile)
        with _vmap_context(self.runtime):
            return self._terms_of_stage[key](params, buffers, self.searched, inputs, y, t, teacher)

    def _terms(self, stage: list[DistillationLoss], needs: Needs, params: dict, buffers: dict, searched: dict,
               inputs: dict, y, t, teacher: Optional[Outputs]):
        """Every member's loss terms: one member's forward and losses under vmap, with the member's parameters,
        buffers and searched values (a function of tensors: what [train] compile compiles)."""
        hp0, task = self.members[0].hp, self.metrics.kind
        student_needs = needs.student
        model = self.base.model

        def loss_terms(hp):
            with self.runtime.autocast():
                out = model(**forward_inputs(model, inputs),
                            output_hidden_states=bool(hidden_layers(student_needs)))
                student = (model_outputs(model, out.hidden_states, out.logits.float(), inputs["attention_mask"],
                                         student_needs) if not student_needs.empty else Outputs(out.logits.float()))
            target = dataclasses.replace(teacher, logits=t) if teacher is not None else Outputs(logits=t)
            named = {}
            for loss in stage:  # in float32, as the logits above: autocast covers the forward only
                named.update(loss.terms(student, target, Batch(y, hp, task)))
            return named

        def one(params, buffers, searched):
            hp = dataclasses.replace(hp0, **searched)
            return torch.func.functional_call(self.base, (params, buffers), (lambda: loss_terms(hp),))

        return torch.vmap(one, randomness="different")(params, buffers, searched)

    def _step(self, data: distill.Batches, index: int, stage, needs: Needs, terms: dict) -> torch.Tensor:
        n = data.size(index)
        total = None
        for inputs, y, t, part in data.parts(index):
            teacher = self.teacher.outputs(part, inputs, data.to_device) if not needs.teacher.empty else None
            named = self._losses_of(stage, needs, inputs, y, t, teacher)
            loss = sum(v.float() for v in named.values()) / n  # (K,)
            (loss * self.hyper["scale"]).sum().backward()
            if self.embedding is not None:
                self.embedding.accumulate(self.params, inputs["input_ids"], first=total is None)
            total = loss.detach() if total is None else total + loss.detach()
            for name, value in named.items():
                terms[name] = terms.get(name, 0.0) + value.detach().float() / n
        self._update()
        return total

    @torch.no_grad()
    def _update(self) -> None:
        """One AdamW step per member, after per-member unscaling and clipping. Without fp16 every member steps: each
        member's rows go through torch's fused AdamW kernel (the one a trial alone uses, so the arithmetic is the
        same), with its learning rate from the schedule computed on the host (no device read). With fp16 a member
        may skip a step, and the update below is torch's AdamW written over the stacked axis."""
        h, K = self.hyper, len(self.active)
        view = lambda v, p: v.view(K, *([1] * (p.ndim - 1)))  # noqa: E731
        grads = {k: p.grad for k, p in self.params.items()}
        if self.runtime.amp != "fp16" and self._fused:
            self._clip(grads, view)
            self._fused_step(grads)
            return
        ok = None
        if self.runtime.amp == "fp16":  # GradScaler per member: a member whose gradients overflowed skips its step
            for g in grads.values():
                g.div_(view(h["scale"], g))
            ok = torch.stack([torch.isfinite(g).reshape(K, -1).all(1) for g in grads.values()]).all(0)
            for g in grads.values():
                torch.where(view(ok, g), g, 0.0, out=g)
        coef = self._clip(grads, view, apply=False)
        steps = h["steps"] + (ok.float() if ok is not None else 1.0)
        lr = h["lr"] * _linear(h["steps"], h["warmup"], self.total_steps)  # the schedule's value before this step
        if ok is not None:  # a skipped member's step changes nothing: no decay, no moment update, no move
            lr = lr * ok
        beta1, beta2 = distill.ADAMW["betas"]
        bias1, bias2 = 1 - beta1 ** steps, (1 - beta2 ** steps).sqrt()
        step_size, decay = lr / bias1, 1 - lr * h["weight_decay"]
        for k, p in self.params.items():
            g, (m, v) = grads[k], self.state[k]
            if self.clipped[k]:
                g.mul_(view(coef, p))
            if self.decays[k]:
                p.mul_(view(decay, p))
            if ok is not None:
                keep = view(ok, p)
                m.copy_(torch.where(keep, m.lerp(g, 1 - beta1), m))
                v.copy_(torch.where(keep, v * beta2 + (1 - beta2) * g * g, v))
            else:
                m.lerp_(g, 1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            denom = v.sqrt().div_(view(bias2, p)).add_(distill.ADAMW["eps"])
            p.sub_(m.mul(view(step_size, p)).div_(denom))
            p.grad = None
        h["steps"] = steps
        if ok is not None:
            h["growth"] = torch.where(ok, h["growth"] + 1, 0.0)
            grow = h["growth"] >= GROWTH_INTERVAL
            h["scale"] = torch.where(ok, torch.where(grow, h["scale"] * GROWTH, h["scale"]), h["scale"] * BACKOFF)
            h["growth"] = torch.where(grow, 0.0, h["growth"])

    def _clip(self, grads: dict, view, apply: bool = True):
        """clip_grad_norm_ per member over the student's gradients (a member with max_grad_norm 0: no clipping)."""
        h, K = self.hyper, len(self.active)
        clipped = [g for k, g in grads.items() if self.clipped[k]]
        norms = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.reshape(K, -1), dim=1)
                                                      for g in clipped]), dim=0)
        coef = torch.where(h["max_grad_norm"] > 0, (h["max_grad_norm"] / (norms + 1e-6)).clamp(max=1.0), 1.0)
        if apply:
            for k, g in grads.items():
                if self.clipped[k]:
                    g.mul_(view(coef, g))
        return coef

    def _fused_step(self, grads: dict) -> None:
        beta1, beta2 = distill.ADAMW["betas"]
        self._steps_done += 1
        names = list(self.params)
        for row, index in enumerate(self.active):
            hp, steps = self.members[index].hp, self._step_counts[index]
            warmup = distill.warmup_steps(hp.warmup_ratio, self.total_steps)
            lr = hp.learning_rate * _linear_factor(self._steps_done - 1, warmup, self.total_steps)
            torch._foreach_add_(steps, 1)
            for decays, weight_decay in ((True, hp.weight_decay), (False, 0.0)):
                chosen = [i for i, k in enumerate(names) if self.decays[k] == decays]
                if not chosen:
                    continue
                torch._fused_adamw_(
                    [self.params[names[i]][row] for i in chosen], [grads[names[i]][row] for i in chosen],
                    [self.state[names[i]][0][row] for i in chosen], [self.state[names[i]][1][row] for i in chosen],
                    [], [steps[i] for i in chosen], amsgrad=False, lr=lr, beta1=beta1, beta2=beta2,
                    weight_decay=weight_decay, eps=distill.ADAMW["eps"], maximize=False, grad_scale=None,
                    found_inf=None)
        for p in self.params.values():
            p.grad = None

    # --- epochs --------------------------------------------------------------------------------------------------

    def epochs(self) -> Iterator[dict]:
        self._setup()
        hp0, runtime = self.members[0].hp, self.runtime
        micro = runtime.micro_for(hp0.batch_size)
        data = distill.Batches(self.train_data, self.teacher_logits, runtime)
        rng = np.random.default_rng(hp0.seed)  # the batches every member would see alone
        losses0 = self.base_losses
        step = 0
        try:
            for epoch in range(1, hp0.epochs + 1):
                stopped = [i for i, m in enumerate(self.active) if m in self._stopped]
                if stopped:
                    self._drop(stopped)
                if not self.active:
                    return
                started = time.perf_counter()
                self.base.train()
                stage = distill.stage_losses(losses0, epoch, self.intermediate_epochs)
                needs = Needs()
                for loss in stage:
                    needs = needs | loss.needs(loss.pairs_in_use)
                epoch_loss = torch.zeros(len(self.active), device=runtime.device)
                terms: dict = {}
                n = data.epoch(epoch_batches(self.train_data.lengths, hp0.batch_size, rng, runtime.group_by_length),
                               micro)
                out: dict = {}
                with timing.phase("training"):
                    for i in range(n):
                        epoch_loss += self._step(data, i, stage, needs, terms)
                        step += 1
                        if (i + 1) % distill.SYNC_EVERY == 0 or i + 1 == n:
                            bad, keep = self._diverged(epoch_loss, epoch, step)
                            if bad:
                                out |= bad
                                epoch_loss = epoch_loss[keep]
                                terms = {k: v[keep] for k, v in terms.items()}
                            if not self.active:
                                break
                if not self.active:
                    yield out
                    return
                self._write_back()
                losses_now = epoch_loss.tolist()
                terms_now = {k: (v.tolist() if isinstance(v, torch.Tensor) else [v] * len(self.active))
                             for k, v in terms.items()}
                for row, index in enumerate(self.active):
                    member = self.members[index]
                    scores = distill.evaluate(member.model, self.validation, self.validation_teacher_logits,
                                              member.hp, runtime, self.metrics)
                    out[index] = distill.epoch_result(epoch, step, losses_now[row] / n,
                                                      {k: v[row] / n for k, v in terms_now.items()}, scores,
                                                      member.losses, started, runtime)
                yield out
        finally:
            if hasattr(self, "params"):
                self._write_back()

    def _diverged(self, epoch_loss: torch.Tensor, epoch: int, step: int) -> tuple[dict, list[int]]:
        """Members whose loss stopped being finite: each gets its NonFiniteLossError and leaves the stack; returns
        those errors by member and the rows that stay."""
        values = epoch_loss.tolist()
        bad = [row for row, v in enumerate(values) if not math.isfinite(v)]
        out = {}
        for row in bad:
            hp = self.members[self.active[row]].hp
            out[self.active[row]] = NonFiniteLossError(
                f"training loss became {values[row]} at epoch {epoch} (by step {step}; "
                f"learning_rate={hp.learning_rate:g}, batch_size={hp.batch_size})")
        keep = [row for row in range(len(values)) if row not in bad]
        if bad:
            self._drop(bad)
        return out, keep


class _GivenRows(torch.nn.Module):
    """Stands in for the word embedding in a cohort's base module: returns its `rows` buffer, which functional_call
    sets to a member's rows (looked up for all members at once, outside vmap)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("rows", torch.empty(0, device="meta"), persistent=False)

    def forward(self, *args, **kwargs):
        return self.rows


class _Embedding:
    """The students' word embedding, looked up outside vmap and given to each member's forward.

    Under vmap the embedding's backward writes the stacked gradient [K, vocabulary, hidden] into a new tensor on every
    step (a zero fill and two full copies: 62 MB for 8 BERT-vocabulary L1/H64 students, into freshly mapped pages
    on a CPU, which made a CPU cohort cost more than its trials one at a time). Here the rows are gathered once for
    all members (a leaf the forward starts from, given to the base module as a buffer), and their gradients are added
    into one gradient buffer kept across steps: the same sums as nn.Embedding's backward (rows of the padding index
    get none), without the copies."""

    def __init__(self, name: str, given: str, padding_idx: Optional[int]):
        self.name, self.given, self.padding_idx = name, given, padding_idx
        self.grad: Optional[torch.Tensor] = None
        self.rows: Optional[torch.Tensor] = None

    @classmethod
    def of(cls, base: torch.nn.Module, params: dict) -> Optional["_Embedding"]:
        """Where the base module's student has a plain, unshared nn.Embedding for its words, it is replaced there by
        _GivenRows and its parameter's name is returned with it; None otherwise (the cohort then trains the
        embedding under vmap like every other parameter)."""
        get = getattr(base.model, "get_input_embeddings", None)
        module = get() if get is not None else None
        if (type(module) is not torch.nn.Embedding or module.max_norm is not None or module.scale_grad_by_freq
                or module.sparse):
            return None
        names = [k for k, p in base.named_parameters(remove_duplicate=False) if p is module.weight]
        if len(names) != 1 or names[0] not in params:
            return None  # tied to another module's weight: its gradient has more than one source
        path = names[0].rsplit(".", 1)[0]
        base.set_submodule(path, _GivenRows())
        return cls(names[0], f"{path}.rows", module.padding_idx)

    def look_up(self, params: dict, input_ids: torch.Tensor) -> torch.Tensor:
        """Every member's embedding rows of a micro-batch, (K, batch, width, hidden), a leaf whose gradient is kept."""
        self.rows = params[self.name].detach()[:, input_ids].requires_grad_(True)
        return self.rows

    def accumulate(self, params: dict, input_ids: torch.Tensor, first: bool) -> None:
        """After a micro-batch's backward: add its rows' gradients into the weight's gradient (zeroed by the first
        micro-batch of a step), as nn.Embedding's backward does."""
        weight = params[self.name]
        if self.grad is None or self.grad.shape != weight.shape:  # first step, or members left the stack
            self.grad = torch.zeros_like(weight)
        elif first:
            self.grad.zero_()
        K, hidden = weight.shape[0], weight.shape[-1]
        index = input_ids.reshape(-1)
        grad = self.rows.grad.reshape(K, -1, hidden)
        if self.padding_idx is not None:  # no host sync: the padding rows add zeros
            grad = grad.masked_fill((index == self.padding_idx)[None, :, None], 0.0)
        self.grad.index_add_(1, index, grad.to(self.grad.dtype))
        self.rows = None
        weight.grad = self.grad


def _linear_factor(steps: int, warmup: int, total: int) -> float:
    """transformers' get_linear_schedule_with_warmup factor after `steps` steps (what a trial alone uses), per member
    on the host: that schedule is a LambdaLR over one optimizer, and a cohort's members step in one kernel call each."""
    if steps < warmup:
        return steps / max(1, warmup)
    return max(0.0, (total - steps) / max(1, total - warmup))


def _linear(steps, warmup, total: int):
    """transformers' get_linear_schedule_with_warmup factor at `steps` steps done, per member."""
    warm = steps / warmup.clamp(min=1)
    decay = ((total - steps) / (total - warmup).clamp(min=1)).clamp(min=0)
    return torch.where(steps < warmup, warm, decay)


@contextlib.contextmanager
def _vmap_context(runtime: Runtime):
    """Under vmap, sdpa's CPU flash kernel has no batching rule (torch falls back to a slow loop over members, with
    a warning): on a CPU the math kernel (matrix products vmap batches) runs instead. vmap's own performance
    warnings for ops it loops over are kept out of users' logs."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    kernels = ([SDPBackend.MATH] if not runtime.is_cuda else
               [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])
    with warnings.catch_warnings(), sdpa_kernel(kernels):
        warnings.filterwarnings("ignore", message="There is a performance drop")
        yield
