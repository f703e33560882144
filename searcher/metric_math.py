"""Plain numpy classification scores behind searcher's offline `evaluate` metric modules (metric_modules/).

`evaluate.load("accuracy")` downloads its script from the Hub and fails offline; our modules compute the same
numbers (sklearn's definitions: macro average, zero_division=0) from a confusion matrix, without sklearn.
"""

from __future__ import annotations

import numpy as np


def metric_info(description: str):
    """The MetricInfo every module shares: integer label ids in, a float out."""
    import datasets
    import evaluate

    return evaluate.MetricInfo(
        description=description,
        citation="",
        inputs_description="predictions and references: lists of integer label ids; average: macro|weighted|micro",
        features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
    )


def confusion(predictions, references, num_labels: int | None = None) -> np.ndarray:
    pred = np.asarray(predictions, dtype=np.int64)
    ref = np.asarray(references, dtype=np.int64)
    n = int(max(pred.max(initial=0), ref.max(initial=0)) + 1) if num_labels is None else num_labels
    return np.bincount(ref * n + pred, minlength=n * n).reshape(n, n)


def per_class(predictions, references) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F1 per label, and which labels occur (in references or predictions)."""
    m = confusion(predictions, references)
    tp = np.diag(m).astype(float)
    predicted, actual = m.sum(axis=0), m.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(actual > 0, tp / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = (predicted + actual) > 0
    return precision, recall, f1, present


def averaged(scores: np.ndarray, present: np.ndarray, predictions, references, average: str) -> float:
    if average == "macro":
        return float(scores[present].mean()) if present.any() else 0.0
    if average == "weighted":
        support = np.bincount(np.asarray(references, dtype=np.int64), minlength=len(scores))[:len(scores)]
        return float((scores * support).sum() / support.sum()) if support.sum() else 0.0
    if average == "micro":
        return float(np.mean(np.asarray(predictions) == np.asarray(references)))
    raise ValueError(f"average must be 'macro', 'weighted' or 'micro', got {average!r}")
