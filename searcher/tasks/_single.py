"""Single-label classification (SST-2, CLINC150, RTE): one class per row, integer ids (or names mapped to ids),
argmax predictions, cross-entropy and KL at temperature T, accuracy and macro F1/precision/recall built in."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from searcher.errors import DataError
from searcher.tasks._base import TaskKind, labels_only

UNLABELED = -1  # the label of a row only the teacher labels (transfer text, augmented copies): no label term
EPS = 1e-7
FORMULA = "alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))"


def kd_loss(student_logits, teacher_logits, labels, alpha: float, temperature: float):
    """The distillation loss SUMMED over the examples (divide by the batch size for batchmean):

        alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))

    with batchmean reduction, as the public DistillationTrainer does. Summing lets micro-batches add up to exactly the
    loss of the whole batch. Rows labelled UNLABELED add only the (1 - alpha)-weighted distillation term.
    """
    import torch
    import torch.nn.functional as F

    ce = F.cross_entropy(student_logits, labels, reduction="sum", ignore_index=UNLABELED)
    if labels_only(teacher_logits, alpha):
        return ce
    t = temperature
    # KL(p || q) = sum p log p - p log q, as F.kl_div(log q, p, reduction="sum") computes it (0 log 0 = 0), written
    # out because kl_div has no batching rule under torch.vmap (cohorts)
    p = F.softmax(teacher_logits / t, dim=-1)
    kl = (torch.xlogy(p, p) - p * F.log_softmax(student_logits / t, dim=-1)).sum()
    return alpha * ce + (1.0 - alpha) * t * t * kl


def _confusion(predictions: np.ndarray, references: np.ndarray) -> np.ndarray:
    n = int(max(predictions.max(initial=0), references.max(initial=0)) + 1)
    return np.bincount(references * n + predictions, minlength=n * n).reshape(n, n)


def _per_label(predictions: np.ndarray, references: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall and F1 of every label that occurs (in references or predictions)."""
    m = _confusion(predictions, references)
    tp = np.diag(m).astype(float)
    predicted, actual = m.sum(axis=0), m.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(actual > 0, tp / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = (predicted + actual) > 0
    return {"precision": precision[present], "recall": recall[present], "f1": f1[present]}


def _macro(name: str):
    def compute(predictions: np.ndarray, references: np.ndarray) -> float:
        scores = _per_label(predictions, references)[name]
        return float(scores.mean()) if len(scores) else 0.0

    return compute


class SingleLabel(TaskKind):
    name = "single_label"
    title = "text classification (one label per row)"
    formula = FORMULA
    problem_type = "single_label_classification"
    activation = "softmax"
    metrics = {
        "accuracy": lambda p, r: float(np.mean(p == r)) if len(r) else 0.0,
        "f1": _macro("f1"),
        "precision": _macro("precision"),
        "recall": _macro("recall"),
    }
    directions = {name: "maximize" for name in metrics}
    default_objective = "accuracy"
    label_loss_title = "Cross-entropy"
    baseline_title = "always predicting the majority class"
    exclusive_classes = True
    named_on_card = False

    def unlabeled(self, n: int, width: int) -> np.ndarray:
        return np.full(n, UNLABELED, np.int64)

    def labeled(self, labels: np.ndarray) -> np.ndarray:
        return labels != UNLABELED

    def read_labels(self, columns, data, class_names, label_order):
        all_labels = [lab for labels in columns.values() for lab in labels]
        if any(lab is None for lab in all_labels):
            raise DataError(f"the label column {data.label_column!r} has empty values; drop those rows or fix the file")
        if any(isinstance(lab, (list, tuple)) for lab in all_labels):
            raise DataError(f"the label column {data.label_column!r} holds lists of labels; set [data] task = "
                            f"\"multi_label\"")
        if any(isinstance(lab, str) for lab in all_labels):
            names = self._string_names(all_labels, data, label_order)
            to_id = {label: i for i, label in enumerate(names)}
            return names, {k: np.array([to_id[str(x)] for x in v], np.int64) for k, v in columns.items()}
        for lab in all_labels:
            if isinstance(lab, float) and not (math.isfinite(lab) and lab.is_integer()):
                raise DataError(f"the label column {data.label_column!r} holds {lab!r}, not a class id: a score "
                                f"is never truncated to a class; set [data] task = \"regression\" for scores")
        ints = [int(x) for x in all_labels]
        if ints and min(ints) < 0:
            raise DataError(f"label column {data.label_column!r} has negative labels (unlabelled rows, e.g. a GLUE "
                            f"test split); use a labelled split or exclude_labels = [\"-1\"]")
        top = max(ints) if ints else 0
        if data.label_names:
            names = tuple(data.label_names)
        elif class_names:
            names = tuple(class_names)
        elif label_order and len(label_order) > top:
            names = tuple(label_order)
        else:
            names = tuple(str(i) for i in range(top + 1))
        if top >= len(names):
            raise DataError(f"label {top} is out of range for {len(names)} label names {list(names)}; "
                            f"fix [data] label_names")
        return names, {k: np.array([int(x) for x in v], np.int64) for k, v in columns.items()}

    @staticmethod
    def _string_names(all_labels, data, label_order) -> tuple[str, ...]:
        present = sorted({str(lab) for lab in all_labels})
        teacher_order = list(label_order) if label_order and set(present) <= set(label_order) else None
        order = list(data.label_names or teacher_order or present)
        missing = sorted(set(present) - set(order))
        if missing:
            raise DataError(f"labels {missing[:5]} in the data are not among the label names {order[:10]}; "
                            f"fix [data] label_names, exclude them with exclude_labels, or use a teacher trained "
                            f"on these labels")
        return tuple(order)

    def check_train(self, labels: np.ndarray, label_names: Sequence[str]) -> None:
        if len(np.unique(labels)) < 2:
            raise DataError("the training split has fewer than two distinct labels; a classifier needs at least two")

    def predict(self, logits: np.ndarray, threshold: Optional[float] = None) -> np.ndarray:
        return logits.argmax(axis=-1)

    def constants(self, train_labels: np.ndarray, eval_labels: np.ndarray) -> list[np.ndarray]:
        """One class for every row, for each class of the data (the best of them by accuracy is the majority
        class of the evaluated rows: its rate)."""
        classes = np.unique(np.concatenate([train_labels[self.labeled(train_labels)], eval_labels]))
        return [np.full(len(eval_labels), c, np.int64) for c in classes]

    def kd(self, student, teacher, labels, alpha: float, temperature: float):
        return kd_loss(student, teacher, labels, alpha, temperature)

    def mean_probabilities(self, stack: np.ndarray, weights: np.ndarray) -> np.ndarray:
        z = stack - stack.max(-1, keepdims=True)
        probs = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
        return np.log(np.clip((weights * probs).sum(0), EPS, None))
