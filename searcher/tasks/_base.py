"""The task-kind seam: what differs between single-label classification, multi-label classification and regression,
owned in one place per kind (one module each, registered in searcher.tasks, as optuna's samplers are laid out).

A kind says how labels are read from the data and how a row only the teacher labels is marked, how wide the model's
output is and its transformers `problem_type`, how predictions come from outputs, which metrics are built in (and
the default objective), the distillation terms of the logit loss (the kind owns its formula: searcher.losses.LogitKD
asks the kind), how several teachers' outputs combine, whether it takes a decision threshold or a temperature, and
what the card, its front matter and the pipeline usage say. Everything else (data loading, the loop, export, cards) asks the kind instead
of assuming integer labels and an argmax.

This module must not import torch at import time (the study file's checks read the declarations).
"""

from __future__ import annotations

import abc
from typing import Callable, ClassVar, Optional, Sequence

import numpy as np

Metric = Callable[[np.ndarray, np.ndarray], float]


def labels_only(teacher, alpha) -> bool:
    """Whether a kind's logit loss reduces to its label loss: no teacher, or alpha 1 given as a number (a tensor of
    alphas, one per trial of a cohort, keeps the distillation term, weighted by zero where alpha is 1)."""
    return teacher is None or (not hasattr(alpha, "dim") and alpha >= 1.0)


class TaskKind(abc.ABC):
    name: ClassVar[str]  # the study file's [data] task
    title: ClassVar[str]  # for the card and the log
    formula: ClassVar[str]  # its logit loss as the card and the records write it
    problem_type: ClassVar[str]  # transformers' config.problem_type
    activation: ClassVar[str]  # what turns outputs into scores, as Model2Vec's head config names it
    metrics: ClassVar[dict[str, Metric]]  # built in, computed on every evaluation: name -> (predictions, labels)
    directions: ClassVar[dict[str, str]]  # the direction each built-in metric must be optimized in
    default_objective: ClassVar[str]
    label_loss_title: ClassVar[str]  # what the card calls the plain label loss on the validation split
    baseline_title: ClassVar[str]  # the constant prediction `baseline` scores, for the log and the card
    uses_temperature: ClassVar[bool] = True  # whether [search] temperature means anything for this kind
    uses_threshold: ClassVar[bool] = False  # whether it takes a decision threshold ([data] threshold)
    exclusive_classes: ClassVar[bool] = False  # one class per row: each output column is one class of a softmax
    named_outputs: ClassVar[bool] = True  # the outputs are named labels (a teacher's must line up with the data's)
    has_probabilities: ClassVar[bool] = True  # its outputs are probabilities after a link ([teacher] combine)
    named_on_card: ClassVar[bool] = True  # the card says the kind (the default kind goes without saying)
    pipeline_kwargs: ClassVar[str] = ""  # extra arguments the card's pipeline() call needs, e.g. function_to_apply
    pipeline_tag: ClassVar[str] = "text-classification"  # the Hub's pipeline tag and the model-index task type
    pipeline_title: ClassVar[str] = "Text Classification"  # the model-index task name

    def __init__(self, threshold: Optional[float] = None):
        self.threshold = threshold  # multi-label: the decision threshold (None: tuned on the validation split)

    # --- labels ------------------------------------------------------------------------------------------------

    @abc.abstractmethod
    def read_labels(self, columns: dict[str, list], data, class_names: Optional[Sequence[str]],
                    label_order: Optional[Sequence[str]]) -> tuple[tuple[str, ...], dict[str, np.ndarray]]:
        """(label names, {split: labels}) from the raw label values of each split. `data` is the [data] section,
        `class_names` a ClassLabel feature's names, `label_order` the teacher's label names (when real)."""

    def unlabeled(self, n: int, width: int) -> np.ndarray:
        """Labels of n rows only the teacher labels (transfer text, augmented copies): no label term for them."""
        return np.full((n, width) if self.label_shape(width) else n, np.nan, np.float32)

    def label_shape(self, width: int) -> tuple:
        """The shape of one row's label beyond the row axis: () for one value per row."""
        return ()

    def labeled(self, labels: np.ndarray) -> np.ndarray:
        """Which rows carry a gold label (bool, one per row)."""
        return ~np.isnan(labels.reshape(len(labels), -1)).any(axis=1)

    def width(self, label_names: Sequence[str]) -> int:
        """The model's output width."""
        return len(label_names)

    def check_train(self, labels: np.ndarray, label_names: Sequence[str]) -> None:
        """Refuse training labels this kind cannot learn from (DataError)."""

    # --- predictions -------------------------------------------------------------------------------------------

    @abc.abstractmethod
    def predict(self, logits: np.ndarray, threshold: Optional[float] = None) -> np.ndarray:
        """What the metrics compare with the labels: class ids, 0/1 label sets, or scores."""

    def tune(self, logits: np.ndarray, labels: np.ndarray) -> Optional[float]:
        """The decision threshold chosen on these rows (multi-label with a tuned threshold); None otherwise."""
        return None

    def tuning_warning(self, rows: int) -> Optional[str]:
        """What to warn of when `tune` will choose on a validation split of `rows` rows (None: nothing)."""
        return None

    def baseline(self, train_labels: np.ndarray, eval_labels: np.ndarray) -> dict[str, float]:
        """Every built-in metric on `eval_labels` of the best constant prediction (`constants`): what a model that
        learned nothing of the task scores, and so what a teacher must beat to have anything to teach."""
        out: dict[str, float] = {}
        for predictions in self.constants(train_labels, eval_labels):
            for name, fn in self.metrics.items():
                value = float(fn(predictions, eval_labels))
                better = max if self.directions[name] == "maximize" else min
                out[name] = better(out[name], value) if name in out else value
        return out

    @abc.abstractmethod
    def constants(self, train_labels: np.ndarray, eval_labels: np.ndarray) -> list[np.ndarray]:
        """The constant predictions (as `predict` gives them, one per row of `eval_labels`) a model that learned
        nothing could make: the majority class, the most frequent label set, the mean score."""

    def scores(self, logits: np.ndarray, labels: np.ndarray, extra: Sequence = (),
               threshold: Optional[float] = None) -> dict[str, float]:
        """Every built-in metric and the study's own (searcher.tasks.metrics.Metric) on one split, plain floats."""
        predictions = self.predict(logits, threshold)
        out = {name: float(fn(predictions, labels)) for name, fn in self.metrics.items()}
        for m in extra:
            out[m.name] = float(m.compute(predictions, labels))
        return out

    # --- distillation ------------------------------------------------------------------------------------------

    @abc.abstractmethod
    def kd(self, student, teacher, labels, alpha: float, temperature: float):
        """alpha * (label loss) + (1 - alpha) * (distillation loss against the teacher's outputs), SUMMED over the
        examples; rows without a label add the distillation term alone. `teacher` None: the label loss alone."""

    def combine(self, stack: np.ndarray, weights: np.ndarray, how: str) -> np.ndarray:
        """Several teachers' outputs (stacked on the first axis) as one target, float32; `weights` (one per teacher,
        shaped to broadcast) sum to 1. "logits": their weighted mean; "probabilities": the weighted mean of what
        each says the probabilities are, as logits again (`mean_probabilities`)."""
        if how == "logits" or not self.has_probabilities:
            return (weights * stack).sum(0)
        return self.mean_probabilities(stack, weights)

    def mean_probabilities(self, stack: np.ndarray, weights: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{self.title} has no probabilities to average")

    def threshold_text(self, tuned: Optional[float]) -> Optional[str]:
        """The decision threshold as the card says it (None: the kind has none)."""
        if not self.uses_threshold:
            return None
        if tuned is not None:
            return f"{tuned:g} (tuned on the validation split)"
        return f"{self.threshold if self.threshold is not None else 0.5:g}"

    def parity(self, expected: np.ndarray, got: np.ndarray, tolerance: float) -> dict:
        """An exported model's outputs against PyTorch's on the same rows."""
        diff = float(np.abs(expected - got).max()) if len(expected) else 0.0
        equal = bool((self.predict(expected) == self.predict(got)).all())
        return {"rows": len(expected), "predictions_equal": equal, "max_abs_logit_diff": diff,
                "ok": equal and diff <= tolerance}
