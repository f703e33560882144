"""Multi-label classification: any set of labels per row (lists, or strings split on [data] label_delimiter), the
label set from the data, sigmoid outputs, a decision threshold (0.5, or tuned on the validation split and
recorded), BCE at temperature T against the teacher's probabilities plus alpha times BCE to the gold labels, and
micro/macro F1 and subset accuracy built in (TextBrewer issue 50's recipe)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from searcher.errors import DataError
from searcher.tasks._base import TaskKind, labels_only

THRESHOLDS = np.round(np.linspace(0.05, 0.95, 19), 2)  # what a tuned threshold is chosen among
# below this many validation rows, the threshold that scores best on them mostly fits their noise
MIN_TUNING_ROWS = 200
EPS = 1e-7


def _counts(p: np.ndarray, r: np.ndarray):
    r = r.astype(bool)
    p = p.astype(bool)
    return (p & r).sum(0), (p & ~r).sum(0), (~p & r).sum(0)


def _micro_f1(p: np.ndarray, r: np.ndarray) -> float:
    tp, fp, fn = (x.sum() for x in _counts(p, r))
    return float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else 1.0


def _macro_f1(p: np.ndarray, r: np.ndarray) -> float:
    tp, fp, fn = _counts(p, r)
    denom = 2 * tp + fp + fn
    present = denom > 0  # labels that neither occur nor are predicted have no F1
    return float(np.mean(2 * tp[present] / denom[present])) if present.any() else 1.0


def _subset_accuracy(p: np.ndarray, r: np.ndarray) -> float:
    return float(np.mean((p.astype(bool) == r.astype(bool)).all(axis=1))) if len(r) else 0.0


class MultiLabel(TaskKind):
    name = "multi_label"
    title = "multi-label text classification"
    formula = ("alpha * BCE(student, labels) + (1 - alpha) * T^2 * BCE(sigmoid(student / T), sigmoid(teacher / T)), "
               "each the mean over labels")
    problem_type = "multi_label_classification"
    activation = "sigmoid"
    metrics = {"micro_f1": _micro_f1, "macro_f1": _macro_f1, "subset_accuracy": _subset_accuracy}
    directions = {name: "maximize" for name in metrics}
    default_objective = "micro_f1"
    label_loss_title = "BCE"
    baseline_title = "always predicting the most frequent label set (or none)"
    pipeline_kwargs = ', top_k=None, function_to_apply="sigmoid"'
    uses_threshold = True

    def label_shape(self, width: int) -> tuple:
        return (width,)

    def read_labels(self, columns, data, class_names, label_order):
        sets = {split: [self._set(v, data, split) for v in values] for split, values in columns.items()}
        present = sorted({name for rows in sets.values() for row in rows for name in row})
        if data.label_names:
            names = tuple(data.label_names)
        elif label_order and set(present) <= set(label_order):
            names = tuple(label_order)  # the teacher's order, so its outputs line up
        else:
            names = tuple(present)
        missing = sorted(set(present) - set(names))
        if missing:
            raise DataError(f"labels {missing[:5]} in the data are not among the label names {list(names)[:10]}; "
                            f"fix [data] label_names")
        index = {n: i for i, n in enumerate(names)}
        out = {}
        for split, rows in sets.items():
            hot = np.zeros((len(rows), len(names)), np.float32)
            for i, row in enumerate(rows):
                hot[i, [index[n] for n in row]] = 1.0
            out[split] = hot
        return names, out

    @staticmethod
    def _set(value, data, split: str) -> list[str]:
        if value is None:
            return []
        if isinstance(value, (list, tuple)):
            return sorted({str(v) for v in value})
        if isinstance(value, str):
            if not data.label_delimiter:
                raise DataError(f"the {split} split's labels are strings; for several labels per row set [data] "
                                f"label_delimiter (e.g. \",\") or give them as lists (JSON, Parquet)")
            return sorted({part.strip() for part in value.split(data.label_delimiter) if part.strip()})
        raise DataError(f"the {split} split's label {value!r} is not a list of labels or a delimited string")

    def check_train(self, labels: np.ndarray, label_names: Sequence[str]) -> None:
        if len(label_names) < 2:
            raise DataError(f"the data has {len(label_names)} label(s); a multi-label study needs at least two")

    def predict(self, logits: np.ndarray, threshold: Optional[float] = None) -> np.ndarray:
        t = threshold if threshold is not None else (self.threshold if self.threshold is not None else 0.5)
        return (1.0 / (1.0 + np.exp(-logits)) > t).astype(np.int64)

    def tune(self, logits: np.ndarray, labels: np.ndarray) -> Optional[float]:
        if self.threshold is not None:
            return None
        best = max(THRESHOLDS, key=lambda t: (_micro_f1(self.predict(logits, t), labels), -abs(t - 0.5)))
        return float(best)

    def constants(self, train_labels: np.ndarray, eval_labels: np.ndarray) -> list[np.ndarray]:
        """The training split's most frequent label set for every row, and no label at all."""
        rows = train_labels[self.labeled(train_labels)].astype(np.int64)
        none = np.zeros(eval_labels.shape, np.int64)
        if not len(rows):
            return [none]
        sets, counts = np.unique(rows, axis=0, return_counts=True)
        return [np.tile(sets[counts.argmax()], (len(eval_labels), 1)), none]

    def mean_probabilities(self, stack: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Each label on its own: the mean probability, back to a logit."""
        p = np.clip((weights / (1 + np.exp(-stack))).sum(0), EPS, 1 - EPS)
        return np.log(p) - np.log1p(-p)

    def tuning_warning(self, rows: int) -> Optional[str]:
        if self.threshold is not None or rows >= MIN_TUNING_ROWS:
            return None
        return (f"a decision threshold tuned on {rows} validation rows is unreliable (the best of {len(THRESHOLDS)} "
                f"thresholds on so few rows mostly fits their noise; {MIN_TUNING_ROWS} or more are advised): set "
                f"[data] threshold to a number, or give a larger validation split")

    def kd(self, student, teacher, labels, alpha: float, temperature: float):
        """Per example the mean over labels of alpha * BCE(student, gold) + (1 - alpha) * T^2 * BCE(sigmoid(student / T),
        sigmoid(teacher / T)), summed over the examples; rows without gold labels (NaN) add the second term alone."""
        import torch
        import torch.nn.functional as F

        labeled = ~torch.isnan(labels).any(dim=-1)
        gold = F.binary_cross_entropy_with_logits(student, torch.nan_to_num(labels), reduction="none").mean(-1)
        gold = (gold * labeled).sum()
        if labels_only(teacher, alpha):
            return gold
        t = temperature
        soft = F.binary_cross_entropy_with_logits(student / t, torch.sigmoid(teacher / t), reduction="none")
        return alpha * gold + (1.0 - alpha) * t * t * soft.mean(-1).sum()
