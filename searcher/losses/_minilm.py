"""Self-attention relation distillation (MiniLMv2, Wang et al. 2021): the student's last layer learns the teacher's
query-query, key-key and value-value relations. Each model's Q (or K, V) of the layer, heads side by side, is
re-split into `relation_heads` heads, R = softmax(X_h X_h^T / sqrt(d_r)), and the loss is KL(R_teacher || R_student)
for each real token: hidden sizes and head counts may differ, with no projection (both sizes divisible by the
relation heads).

Per example: summed over relation heads and real query tokens, divided by (relation heads x its tokens), summed over
the relation types; summed over the examples (and layer pairs: "last" by default, one pair).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

from searcher.dimensions import INF, Fixed, Hyperparam
from searcher.errors import ConfigError
from searcher.losses._attention import masked_log_softmax, row_kl, scores
from searcher.losses._base import Batch, DistillationLoss, LayerMap, LayerSettings, Outputs

RELATIONS = {"qq": 0, "kk": 1, "vv": 2}  # which of (queries, keys, values)


@dataclass(frozen=True)
class MiniLMSettings(LayerSettings):
    """[distill.minilm]: layer_map ("last" by default), relation_heads (default: the teacher's heads when they divide
    every hidden size of the study, else the largest count below them that does), relations."""

    layer_map: LayerMap = field(default="last", metadata={"parse": "layer_map"})
    relation_heads: Optional[int] = None
    relations: tuple[str, ...] = ("qq", "kk", "vv")


class MiniLMRelations(DistillationLoss):
    name = "minilm"
    title = "self-attention relation distillation (MiniLMv2)"
    hyperparams = (Hyperparam("relation_weight", float, Fixed(1.0), 0.0, INF,
                              help="weight of the MiniLM relation term ([distill] losses \"minilm\")",
                              aliases=("minilm_weight",)),)
    Settings = MiniLMSettings
    reads = "attention"

    def relation_heads(self, teacher_config) -> int:
        given = self.settings.relation_heads  # 0 is a value (refused by check), not "unset"
        return int(given if given is not None else teacher_config.num_attention_heads)

    def fitted(self, teacher_config, student_configs: list):
        """relation_heads unset: the teacher's head count when it divides every hidden size of the study (the
        teacher's and each student's), else the largest count below it that does (each model's Q/K/V is re-split
        into that many heads, so it must divide them all; 1 always does)."""
        if self.settings.relation_heads is not None:
            return self.settings, None
        heads = int(teacher_config.num_attention_heads)
        sizes = sorted({int(teacher_config.hidden_size), *(int(c.hidden_size) for c in student_configs)},
                       reverse=True)
        chosen = max(a for a in range(1, heads + 1) if all(h % a == 0 for h in sizes))
        why = "the teacher's head count" if chosen == heads else \
            f"the largest count up to the teacher's {heads} heads that divides every hidden size"
        return replace(self.settings, relation_heads=chosen), \
            f"relation_heads = {chosen}, {why} ({', '.join(map(str, sizes))})"

    def check(self, student_config, teacher_config) -> None:
        unknown = [r for r in self.settings.relations if r not in RELATIONS]
        if unknown or not self.settings.relations:
            raise ConfigError(f"relations must be some of {', '.join(RELATIONS)}, got {list(self.settings.relations)}")
        a = self.relation_heads(teacher_config)
        if a < 1:
            raise ConfigError(f"relation_heads must be positive, got {a}")
        for what, cfg in (("student", student_config), ("teacher", teacher_config)):
            if int(cfg.hidden_size) % a:
                raise ConfigError(f"the {what}'s hidden size {cfg.hidden_size} does not split into relation_heads = {a}"
                                  f"; set [distill.minilm] relation_heads to a divisor of both hidden sizes")

    def setup(self, student_config, teacher_config, pairs, device):
        self.heads = self.relation_heads(teacher_config)
        return super().setup(student_config, teacher_config, pairs, device)

    def terms(self, student: Outputs, teacher: Outputs, batch: Batch) -> dict:
        mask = student.mask.float()
        lengths = mask.sum(1)
        total = 0.0
        for s, t in self.pairs_in_use:
            for relation in self.settings.relations:
                x_s, x_t = student.attention[s][RELATIONS[relation]], teacher.attention[t][RELATIONS[relation]]
                r_s = masked_log_softmax(scores(x_s, x_s, self.heads), mask)
                r_t = masked_log_softmax(scores(x_t, x_t, self.heads), mask)
                total = total + (row_kl(r_t, r_s, mask).sum((1, 2)) / (self.heads * lengths)).sum()
        return {self.name: self.weight(batch.hyperparams) * total}

    def formula(self, task=None) -> str:
        return f"sum over {', '.join(self.settings.relations)} of KL(R_teacher || R_student) per relation head"

    def describe(self, hp, pairs=None) -> dict:
        out = super().describe(hp, pairs)
        if getattr(self, "heads", None):
            out["settings"]["relation_heads"] = self.heads
        return out
