"""Hidden-state MSE (TinyBERT, Jiao et al. 2020): each mapped student layer's hidden states against the teacher's,
the embeddings included (0 <- 0), through one linear projection trained with the student when their hidden sizes
differ (TinyBERT's "fit_dense"; never saved with the student).

Per example: the squared error summed over its real tokens and the hidden size, divided by (its tokens x the
teacher's hidden size); summed over the examples and the layer pairs. TextBrewer's hidden_mse divides by the
batch's tokens instead; per-example normalising keeps the gradient-accumulation equality exact (every example
weighs the same in any split of the batch).
"""

from __future__ import annotations

from dataclasses import dataclass

from searcher.dimensions import INF, Fixed, Hyperparam
from searcher.losses._base import Batch, DistillationLoss, LayerSettings, Outputs


@dataclass(frozen=True)
class HiddenSettings(LayerSettings):
    """[distill.hidden_mse]: layer_map ("uniform" by default: TinyBERT's k = L_T / L_S, embeddings to embeddings)."""


def projection_text(layer) -> str:
    return f"Linear({layer.in_features} -> {layer.out_features})"


class HiddenMSE(DistillationLoss):
    name = "hidden_mse"
    title = "hidden-state MSE (TinyBERT)"
    hyperparams = (Hyperparam("hidden_weight", float, Fixed(1.0), 0.0, INF,
                              help="weight of the hidden-state MSE term ([distill] losses \"hidden_mse\")",
                              aliases=("hidden_mse_weight", "hidn_weight")),)
    Settings = HiddenSettings
    embeddings = True
    reads = "hidden"

    def setup(self, student_config, teacher_config, pairs, device):
        import torch

        super().setup(student_config, teacher_config, pairs, device)
        h_s, h_t = int(student_config.hidden_size), int(teacher_config.hidden_size)
        self.projection = torch.nn.Linear(h_s, h_t).to(device) if h_s != h_t else None
        self._modules = [self.projection] if self.projection is not None else []
        return self._modules

    def terms(self, student: Outputs, teacher: Outputs, batch: Batch) -> dict:
        mask = student.mask.float()
        total = 0.0
        for s, t in self.pairs_in_use:
            h_s, h_t = student.hidden[s], teacher.hidden[t]
            if self.projection is not None:
                h_s = self.projection(h_s)
            per_token = ((h_s - h_t) ** 2).sum(-1) * mask
            total = total + (per_token.sum(1) / (mask.sum(1) * h_t.shape[-1])).sum()
        return {self.name: self.weight(batch.hyperparams) * total}

    def formula(self, task=None) -> str:
        return "sum over layer pairs of MSE(W h_student, h_teacher) over real tokens"

    def describe(self, hp, pairs=None) -> dict:
        out = super().describe(hp, pairs)
        if getattr(self, "projection", None) is not None:
            out["projection"] = projection_text(self.projection)
        return out
