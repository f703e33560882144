"""Regression (STS-B): one float score per row, used as given (no scaling: a student learns the teacher's scale),
predictions are the model's single output, MSE against the teacher and the labels, Pearson and Spearman
correlation, MSE and their GLUE combination built in."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from searcher.errors import DataError
from searcher.tasks._base import TaskKind, labels_only

# the largest score searcher trains on: a model learns it in float32, where squared errors beyond ~1e19 overflow
# (summed over a batch, earlier), and the loss then goes non-finite whatever the learning rate
MAX_SCORE = 1e15


def _correlation(test, p: np.ndarray, r: np.ndarray) -> float:
    """scipy.stats' correlation `test` of predictions and references; 0 where it is undefined (fewer than two rows,
    or constant predictions, which correlate with nothing: scipy warns and gives NaN there)."""
    p, r = np.asarray(p, np.float64), np.asarray(r, np.float64)
    if len(r) < 2 or p.std() == 0 or r.std() == 0:
        return 0.0
    return float(test(p, r)[0])


def _pearson(p: np.ndarray, r: np.ndarray) -> float:
    from scipy import stats  # imported when a metric is computed: the study file's checks stay instant

    return _correlation(stats.pearsonr, p, r)


def _spearman(p: np.ndarray, r: np.ndarray) -> float:
    """Ranks with ties sharing the mean of their positions, as GLUE's (scipy's) spearmanr gives them."""
    from scipy import stats

    return _correlation(stats.spearmanr, p, r)


def _mse(p: np.ndarray, r: np.ndarray) -> float:
    return float(np.mean((np.asarray(p, np.float64) - np.asarray(r, np.float64)) ** 2)) if len(r) else 0.0


class Regression(TaskKind):
    name = "regression"
    title = "text regression (one score per row)"
    formula = "alpha * (student - label)^2 + (1 - alpha) * (student - teacher)^2"
    problem_type = "regression"
    activation = "identity"
    metrics = {
        "pearson": _pearson,
        "spearmanr": _spearman,
        "mse": _mse,
        # GLUE's STS-B score: the mean of the two correlations (transformers' run_glue calls it combined_score)
        "combined_score": lambda p, r: (_pearson(p, r) + _spearman(p, r)) / 2,
    }
    directions = {"pearson": "maximize", "spearmanr": "maximize", "mse": "minimize", "combined_score": "maximize"}
    default_objective = "pearson"
    label_loss_title = "MSE"
    baseline_title = "always predicting the training mean"
    uses_temperature = False
    named_outputs = False
    has_probabilities = False
    pipeline_kwargs = ', function_to_apply="none"'

    def read_labels(self, columns, data, class_names, label_order):
        out = {}
        for split, values in columns.items():
            scores = []
            for v in values:
                try:
                    x = float(v)
                except (TypeError, ValueError):
                    raise DataError(f"the label column {data.label_column!r} of the {split} split holds {v!r}, not a "
                                    f"number; a regression study needs one score per row") from None
                if not math.isfinite(x):
                    raise DataError(f"the label column {data.label_column!r} of the {split} split holds {v!r}; "
                                    f"drop that row or fix the file")
                if abs(x) > MAX_SCORE:
                    raise DataError(f"the label column {data.label_column!r} of the {split} split holds {v!r}, too "
                                    f"large for a score searcher can train on (|score| <= {MAX_SCORE:.0e}: float32 "
                                    f"squared errors overflow beyond); rescale the scores, or drop or fix that row")
                scores.append(x)
            out[split] = np.asarray(scores, np.float32)
        names = tuple(data.label_names or (data.label_column,))
        if len(names) != 1:
            raise DataError(f"a regression study has one output; [data] label_names names {len(names)}: give one "
                            f"name or none")
        return names, out

    def width(self, label_names: Sequence[str]) -> int:
        return 1

    def check_train(self, labels: np.ndarray, label_names: Sequence[str]) -> None:
        if len(labels) and float(np.nanstd(labels)) == 0.0:
            raise DataError("every training score is the same; a regression student has nothing to learn")

    def predict(self, logits: np.ndarray, threshold: Optional[float] = None) -> np.ndarray:
        return logits[:, 0]

    def constants(self, train_labels: np.ndarray, eval_labels: np.ndarray) -> list[np.ndarray]:
        """The training split's mean score for every row (correlation 0, the MSE of the mean)."""
        return [np.full(len(eval_labels), float(np.nanmean(train_labels)), np.float64)]

    def kd(self, student, teacher, labels, alpha: float, temperature: float):
        """alpha * squared error to the gold score + (1 - alpha) * squared error to the teacher's, summed."""
        import torch

        s = student[:, 0]
        labeled = ~torch.isnan(labels)
        gold = ((s - torch.nan_to_num(labels)) ** 2 * labeled).sum()
        if labels_only(teacher, alpha):
            return gold
        return alpha * gold + (1.0 - alpha) * ((s - teacher[:, 0]) ** 2).sum()

    def parity(self, expected: np.ndarray, got: np.ndarray, tolerance: float) -> dict:
        diff = float(np.abs(expected - got).max()) if len(expected) else 0.0
        return {"rows": len(expected), "predictions_equal": diff <= tolerance, "max_abs_logit_diff": diff,
                "ok": diff <= tolerance}
