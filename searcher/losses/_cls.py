"""[CLS] distillation (Patient KD, Sun et al. 2019): at each mapped layer, the student's [CLS] hidden state against
the teacher's, both L2-normalised, through a linear projection when their hidden sizes differ (never saved).

Per example: the squared distance of the normalised vectors, summed over the layer pairs; summed over the examples.
"""

from __future__ import annotations

from dataclasses import dataclass

from searcher.dimensions import INF, Fixed, Hyperparam
from searcher.losses._base import Batch, DistillationLoss, LayerSettings, Outputs
from searcher.losses._hidden import projection_text


@dataclass(frozen=True)
class CLSSettings(LayerSettings):
    """[distill.cls]: layer_map ("uniform" by default, without the embeddings)."""


class PatientCLS(DistillationLoss):
    name = "cls"
    title = "[CLS] patient distillation (PKD)"
    hyperparams = (Hyperparam("cls_weight", float, Fixed(1.0), 0.0, INF,
                              help="weight of the [CLS] patient-distillation term ([distill] losses \"cls\")",
                              aliases=("pkd_weight", "beta")),)
    Settings = CLSSettings
    reads = "hidden"

    def setup(self, student_config, teacher_config, pairs, device):
        import torch

        super().setup(student_config, teacher_config, pairs, device)
        h_s, h_t = int(student_config.hidden_size), int(teacher_config.hidden_size)
        self.projection = torch.nn.Linear(h_s, h_t).to(device) if h_s != h_t else None
        self._modules = [self.projection] if self.projection is not None else []
        return self._modules

    def terms(self, student: Outputs, teacher: Outputs, batch: Batch) -> dict:
        import torch.nn.functional as F

        total = 0.0
        for s, t in self.pairs_in_use:
            c_s, c_t = student.hidden[s][:, 0], teacher.hidden[t][:, 0]
            if self.projection is not None:
                c_s = self.projection(c_s)
            total = total + ((F.normalize(c_s, dim=-1) - F.normalize(c_t, dim=-1)) ** 2).sum(-1).sum()
        return {self.name: self.weight(batch.hyperparams) * total}

    def formula(self, task=None) -> str:
        return "sum over layer pairs of ||norm(W cls_student) - norm(cls_teacher)||^2"

    def describe(self, hp, pairs=None) -> dict:
        out = super().describe(hp, pairs)
        if getattr(self, "projection", None) is not None:
            out["projection"] = projection_text(self.projection)
        return out
