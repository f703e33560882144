"""Task kinds as plug-ins (one module each, registered here, as optuna's samplers are laid out): what a study's
labels are and everything that follows from them (searcher.tasks._base.TaskKind).

`infer(values)` names the kind the data's labels look like, with the reason, for studies that do not say
([data] task). This package must not import torch at import time.
"""

from __future__ import annotations

import math
from typing import Optional

from searcher.tasks._base import TaskKind
from searcher.tasks._multi import MultiLabel
from searcher.tasks._regression import Regression
from searcher.tasks._single import FORMULA, UNLABELED, SingleLabel, kd_loss

KINDS: dict[str, type[TaskKind]] = {cls.name: cls for cls in (
    SingleLabel,
    MultiLabel,
    Regression,
)}
DEFAULT = "single_label"


def infer(values: list, delimiter: Optional[str] = None) -> tuple[str, str]:
    """(kind, why) from raw label values: lists (or strings with a delimiter) are multi-label, numbers that are not
    all whole are regression, anything else single-label."""
    if any(isinstance(v, (list, tuple)) for v in values):
        return "multi_label", "the labels are lists"
    if delimiter and any(isinstance(v, str) and delimiter in v for v in values):
        return "multi_label", f"the labels are strings holding {delimiter!r} ([data] label_delimiter)"
    floats = [v for v in values if isinstance(v, float)]
    if floats and any(not (math.isfinite(v) and v.is_integer()) for v in floats):
        example = next(v for v in floats if not (math.isfinite(v) and v.is_integer()))
        return "regression", f"the labels are numbers that are not all whole (e.g. {example!r})"
    return "single_label", "the labels are class ids or names"


def kind(name: str, threshold: Optional[float] = None) -> TaskKind:
    return KINDS[name](threshold=threshold)


__all__ = ["TaskKind", "MultiLabel", "Regression", "SingleLabel", "KINDS", "DEFAULT", "infer", "kind", "FORMULA",
           "UNLABELED", "kd_loss"]
