"""Distillation losses as plug-ins, laid out as optuna's samplers are: a small base class (`DistillationLoss`,
searcher.losses._base), one implementation per private module, registered here by name.

Adding a loss is one new module (a `DistillationLoss` subclass: its name, its weight as a registry entry, its
`[distill.NAME]` options, what it reads, and `terms()`) plus its line in LOSSES below; the study file's checks, the
search space, the loop, the records, the card and the importer take it from there.
This package must not import torch at import time (searcher.config reads the declarations).
"""

from searcher.losses._base import (UNLABELED, Batch, DistillationLoss, LayerMap, LayerSettings, Needs, Outputs,
                                   Settings, Side)
from searcher.losses._attention import AttentionLoss
from searcher.losses._cls import PatientCLS
from searcher.losses._hidden import HiddenMSE
from searcher.losses._logits import FORMULA, LogitKD, kd_loss
from searcher.losses._minilm import MiniLMRelations

LOSSES: dict[str, type[DistillationLoss]] = {cls.name: cls for cls in (
    LogitKD,
    HiddenMSE,
    AttentionLoss,
    MiniLMRelations,
    PatientCLS,
)}
DEFAULT = ("logits",)

__all__ = ["AttentionLoss", "PatientCLS", "HiddenMSE", "MiniLMRelations", "UNLABELED", "Batch", "DistillationLoss", "LayerMap", "LayerSettings", "Needs", "Outputs", "Settings", "Side", "FORMULA", "LogitKD",
           "kd_loss", "LOSSES", "DEFAULT"]
