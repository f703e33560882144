"""The promises every distillation loss keeps (searcher.losses.DistillationLoss), as one importable test class.

Subclass `LossPromises` and give it a `loss_class` fixture (parametrize it to check several). It builds random
outputs of a student and a teacher of other sizes (2 layers of 8 vs 4 of 12) with padded positions, and checks the
declarations, that the terms are finite, summed over the examples, blind to padding, that micro-batches add up to the
whole batch (value and gradient), and that the weight scales the loss.
"""

from __future__ import annotations

import dataclasses
import json
import math
from types import SimpleNamespace

import pytest

B, W = 3, 6
LENGTHS = (6, 4, 2)  # real tokens per example; the rest is padding
STUDENT = SimpleNamespace(num_hidden_layers=2, hidden_size=8, num_attention_heads=2)
TEACHER = SimpleNamespace(num_hidden_layers=4, hidden_size=12, num_attention_heads=2)


def mask():
    import torch

    m = torch.zeros(B, W)
    for b, n in enumerate(LENGTHS):
        m[b, :n] = 1
    return m


def side(cfg, seed: int, requires_grad: bool = False):
    """One model's outputs (logits, hidden states, attention Q/K/V of every layer) on the batch, random."""
    import torch

    from searcher.losses import Outputs

    g = torch.Generator().manual_seed(seed)
    h = cfg.hidden_size

    def t(*shape):
        return torch.randn(*shape, generator=g).requires_grad_(requires_grad)

    out = Outputs(logits=t(B, 3), mask=mask(), heads=cfg.num_attention_heads)
    out.hidden = {layer: t(B, W, h) for layer in range(cfg.num_hidden_layers + 1)}
    out.attention = {layer: (t(B, W, h), t(B, W, h), t(B, W, h)) for layer in range(1, cfg.num_hidden_layers + 1)}
    return out


def hp(**over):
    """A trial's hyperparameters with every registry entry (each loss's weight at its default)."""
    from searcher import hyperparams

    values = {h.name: h.default_value if h.default_value is not None else 0.5 for h in hyperparams.REGISTRY}
    values.update({"learning_rate": 1e-3, "batch_size": 8, "temperature": 2.0, "alpha": 0.5, **over})
    return hyperparams.from_values(values, seed=0)


def loss_for(cls, student_cfg=STUDENT, teacher_cfg=TEACHER):
    import torch

    loss = cls()
    torch.manual_seed(0)
    loss.setup(student_cfg, teacher_cfg, loss.pairs(student_cfg.num_hidden_layers, teacher_cfg.num_hidden_layers),
               "cpu")
    return loss


def total(loss, student, teacher, labels, h):
    from searcher.losses import Batch

    return sum(loss.terms(student, teacher, Batch(labels, h)).values())


def slice_rows(out, rows):
    from searcher.losses import Outputs

    rows = list(rows)
    return Outputs(logits=out.logits[rows], mask=out.mask[rows], heads=out.heads,
                   hidden={k: v[rows] for k, v in out.hidden.items()},
                   attention={k: tuple(x[rows] for x in v) for k, v in out.attention.items()})


def labels():
    import torch

    return torch.tensor([0, 2, -1])  # the last row only the teacher labels


class LossPromises:
    """Needs a `loss_class` fixture: the DistillationLoss subclass to check."""

    @pytest.fixture
    def loss_class(self):
        raise NotImplementedError("give the test class a loss_class fixture")

    def test_declares_what_it_is_reads_and_trains(self, loss_class):
        from searcher import hyperparams
        from searcher.losses import LOSSES

        cls = loss_class
        assert cls.name and cls.title and LOSSES.get(cls.name) is cls, "register it in searcher.losses.LOSSES"
        assert dataclasses.is_dataclass(cls.Settings) and cls.Settings.__dataclass_params__.frozen
        assert cls.stage in ("logits", "layers") and cls.reads in ("logits", "hidden", "attention")
        for entry in cls.hyperparams:  # its weight: a registry entry, searched and carded like the rest
            assert hyperparams.BY_NAME[entry.name] is entry and entry.low == 0 and entry.high == math.inf
        loss = loss_for(cls)
        needs = loss.needs(loss.pairs_in_use)
        assert needs.logits == (cls.reads == "logits")
        assert (cls.stage == "layers") == (not needs.student.empty), "a layer-stage loss reads intermediate outputs"
        assert loss.formula() in loss.weighted_formula()
        json.dumps(loss.describe(hp(), loss.pairs_in_use))  # records and cards store it as plain data

    def test_terms_are_finite_summed_masked_and_add_up_over_micro_batches(self, loss_class):
        import torch

        from searcher.losses import Batch

        loss = loss_for(loss_class)
        student, teacher = side(STUDENT, 1, requires_grad=True), side(TEACHER, 2)
        h, y = hp(), labels()
        terms = loss.terms(student, teacher, Batch(y, h))
        assert terms and all(v.ndim == 0 and torch.isfinite(v) and v >= 0 for v in terms.values())

        # masked positions contribute nothing: garbage in every padded position changes no term
        value = total(loss, student, teacher, y, h)
        noisy_s, noisy_t = side(STUDENT, 1), side(TEACHER, 2)
        pad = mask() == 0
        for out, seed in ((noisy_s, 5), (noisy_t, 6)):
            g = torch.Generator().manual_seed(seed)
            for x in list(out.hidden.values()) + [t for v in out.attention.values() for t in v]:
                x.data[pad] = 100 * torch.randn(int(pad.sum()), x.shape[-1], generator=g)
        assert torch.allclose(total(loss, noisy_s, noisy_t, y, h), value, rtol=1e-5, atol=1e-6)

        # gradient accumulation: the sum over micro-batches is the whole batch's loss, and so is its gradient
        leaves = [student.logits, *student.hidden.values(), *(x for v in student.attention.values() for x in v)]
        value.backward()
        whole = [None if x.grad is None else x.grad.clone() for x in leaves]
        assert any(g is not None and g.abs().sum() > 0 for g in whole)  # it trains the student
        for x in leaves:
            x.grad = None
        parts = sum(total(loss, slice_rows(student, rows), slice_rows(teacher, rows), y[list(rows)], h)
                    for rows in ((0,), (1, 2)))
        assert torch.allclose(parts, value, rtol=1e-5, atol=1e-6)
        parts.backward()
        for a, b in zip(whole, [x.grad for x in leaves]):
            assert (a is None and b is None) or torch.allclose(a, b, rtol=1e-5, atol=1e-6)

    def test_its_weight_scales_it(self, loss_class):
        import torch

        loss = loss_for(loss_class)
        student, teacher = side(STUDENT, 1), side(TEACHER, 2)
        h = hp()
        value = total(loss, student, teacher, labels(), h)
        for entry in loss_class.hyperparams:
            doubled = total(loss, student, teacher, labels(), hp(**{entry.name: 2 * getattr(h, entry.name)}))
            assert torch.allclose(doubled, 2 * value.detach(), rtol=1e-5)
