"""Attention distillation (TinyBERT, Jiao et al. 2020): each mapped student layer's self-attention against the
teacher's, head by head, so both must have the same number of heads.

kind = "mse" (TinyBERT): MSE between the pre-softmax scores Q K^T / sqrt(d), on real query and key tokens only
(TinyBERT zeroes the masked entries); kind = "kl": KL(teacher's attention || student's) for each real query token.
Per example: summed over heads and real (query, key) entries, divided by (heads x its tokens^2) for "mse" and by
(heads x its tokens) for "kl"; summed over the examples and the layer pairs. The scores are computed from each
model's queries and keys (searcher.teachers.hidden), which works under sdpa attention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from searcher.dimensions import INF, Fixed, Hyperparam
from searcher.errors import ConfigError
from searcher.losses._base import Batch, DistillationLoss, LayerSettings, Outputs


@dataclass(frozen=True)
class AttentionSettings(LayerSettings):
    """[distill.attention]: layer_map ("uniform" by default) and kind ("mse" on scores, as TinyBERT; "kl")."""

    kind: Literal["mse", "kl"] = "mse"


def split_heads(x, heads: int):
    """(B, W, H) -> (B, heads, W, H / heads)."""
    b, w, h = x.shape
    return x.view(b, w, heads, h // heads).transpose(1, 2)


def scores(q, k, heads: int):
    """Q K^T / sqrt(d_head) per head: (B, heads, W, W)."""
    qh, kh = split_heads(q, heads), split_heads(k, heads)
    return qh @ kh.transpose(-1, -2) / math.sqrt(qh.shape[-1])


def masked_log_softmax(s, mask):
    """log softmax over real key tokens (masked keys get no probability)."""
    return (s.masked_fill(mask[:, None, None, :] == 0, float("-inf"))).log_softmax(-1)


def row_kl(log_p_teacher, log_p_student, mask):
    """KL(teacher || student) of each real query row, (B, heads, W), zero on padded rows and keys."""
    p = log_p_teacher.exp()
    diff = (log_p_teacher - log_p_student).masked_fill(mask[:, None, None, :] == 0, 0.0)
    return (p * diff).sum(-1) * mask[:, None, :]


class AttentionLoss(DistillationLoss):
    name = "attention"
    title = "attention distillation (TinyBERT)"
    hyperparams = (Hyperparam("attention_weight", float, Fixed(1.0), 0.0, INF,
                              help="weight of the attention term ([distill] losses \"attention\")",
                              aliases=("att_weight",)),)
    Settings = AttentionSettings
    reads = "attention"

    def check(self, student_config, teacher_config) -> None:
        s, t = int(student_config.num_attention_heads), int(teacher_config.num_attention_heads)
        if s != t:
            raise ConfigError(f"the attention loss compares head by head, and the student has {s} heads, the teacher "
                              f"{t}; use the \"minilm\" loss (relation heads, any head count) or students with {t} "
                              f"heads")

    def terms(self, student: Outputs, teacher: Outputs, batch: Batch) -> dict:
        mask = student.mask.float()
        lengths = mask.sum(1)
        heads = student.heads
        total = 0.0
        for s, t in self.pairs_in_use:
            (q_s, k_s, _), (q_t, k_t, _) = student.attention[s], teacher.attention[t]
            s_s, s_t = scores(q_s, k_s, heads), scores(q_t, k_t, teacher.heads)
            if self.settings.kind == "mse":
                valid = mask[:, None, :, None] * mask[:, None, None, :]
                per = (((s_s - s_t) ** 2) * valid).sum((1, 2, 3)) / (heads * lengths ** 2)
            else:
                kl = row_kl(masked_log_softmax(s_t, mask), masked_log_softmax(s_s, mask), mask)
                per = kl.sum((1, 2)) / (heads * lengths)
            total = total + per.sum()
        return {self.name: self.weight(batch.hyperparams) * total}

    def formula(self, task=None) -> str:
        return ("sum over layer pairs of MSE(QK^T/sqrt(d) student, teacher) per head" if self.settings.kind == "mse"
                else "sum over layer pairs of KL(attention teacher || attention student) per head")
