"""Metrics: what a trial is scored by, each declared once.

- Built in (offline, numpy): accuracy and macro-averaged F1, precision and recall (sklearn's definitions over the
  labels that occur, zero_division=0).
- Any other name in `[study] objectives` or `[metrics] report` is an `evaluate` metric, loaded once per process with
  `evaluate.load(NAME)` (a local script or folder, or a Hub id when online); `[metrics.NAME]` says how to load and
  call it (`load`, `config_name`, `key`, `kwargs`). It is recorded under NAME everywhere (records, leaderboard,
  dashboard, card), which is by default the key the module returns.
- Measured objectives are not computed from predictions: `latency_ms`, `params_millions` and `size_mb` of the student.

Adding a metric is one declaration: a study-file name (or a `[metrics.NAME]` table), or one entry in BUILTIN here.
Results are plain Python floats: numpy scalars must never reach Optuna user attrs, JSON or YAML.
This module imports evaluate only when a non-built-in metric is loaded.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Optional, Sequence

import numpy as np

from searcher.errors import ConfigError, first_line

# measured on the student, not computed from predictions; all are minimized
MEASURED = ("latency_ms", "params_millions", "size_mb")
# what a deployed form is measured in besides the metrics (searcher.export.measure): "METRIC@FORMAT" objectives
FORMAT_MEASURES = {"latency_ms": "minimize", "size_mb": "minimize", "throughput": "maximize"}


def split_objective(name: str) -> tuple[str, Optional[str]]:
    """("accuracy", "onnx-int8") for "accuracy@onnx-int8"; (name, None) for a plain objective."""
    metric, _, form = name.partition("@")
    return metric, (form or None)


def natural_direction(metric: str) -> Optional[str]:
    """The direction a known metric must be optimized in (None: an evaluate metric; the study file says)."""
    if metric in BUILTIN:
        return "maximize"
    if metric in MEASURED:
        return "minimize"
    return FORMAT_MEASURES.get(metric)


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


def _macro(name: str) -> Callable[[np.ndarray, np.ndarray], float]:
    def compute(predictions: np.ndarray, references: np.ndarray) -> float:
        scores = _per_label(predictions, references)[name]
        return float(scores.mean()) if len(scores) else 0.0

    return compute


BUILTIN: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": lambda p, r: float(np.mean(p == r)) if len(r) else 0.0,
    "f1": _macro("f1"),
    "precision": _macro("precision"),
    "recall": _macro("recall"),
}
TITLES = {"accuracy": "Accuracy", "f1": "F1", "precision": "Precision", "recall": "Recall",
          "loss": "Distillation loss", "cross_entropy": "Cross-entropy"}


def title(name: str) -> str:
    """How a card labels a metric (the Trainer's style: 'Accuracy', 'F1', 'Matthews Correlation')."""
    return TITLES.get(name) or name.replace("_", " ").title()


# ---------------------------------------------------------------------------------------------------------------
# The study file's side: which metrics a study computes


@dataclass(frozen=True)
class MetricSpec:
    """How to load and call one `evaluate` metric ([metrics.NAME] in the study file; all optional)."""

    name: str
    load: Optional[str] = None  # evaluate.load's argument (default: the name)
    config_name: Optional[str] = None  # e.g. evaluate.load("glue", "cola")
    key: Optional[str] = None  # which key of the result, when the module returns several (default: the name)
    kwargs: str = "{}"  # compute() keyword arguments, as JSON (kept hashable and printable)

    @property
    def compute_kwargs(self) -> dict:
        return json.loads(self.kwargs)


def check_name(name: str, where: str) -> None:
    """A metric name that is neither built in nor measured is an `evaluate` metric; catch obvious typos early."""
    if name in BUILTIN or name in MEASURED or name in FORMAT_MEASURES:
        return
    close = difflib.get_close_matches(name, list(BUILTIN) + list(MEASURED), n=1, cutoff=0.8)
    if close:
        raise ConfigError(f"{where}: unknown metric {name!r}; did you mean {close[0]!r}? (other names are loaded "
                          f"with evaluate.load; add a [metrics.{name}] table to load one on purpose)")


@dataclass
class Metric:
    name: str
    compute: Callable[[np.ndarray, np.ndarray], float]
    source: str = "built-in"


@lru_cache(maxsize=None)
def _evaluate_module(load: str, config_name: Optional[str]):
    import evaluate

    return evaluate.load(load, config_name) if config_name else evaluate.load(load)


def load(spec: MetricSpec) -> Metric:
    """An `evaluate` metric, loaded once per process and probed once, so a wrong key fails before training."""
    source = spec.load or spec.name
    where = f"[metrics.{spec.name}]" if spec.load or spec.key or spec.config_name else f"metric {spec.name!r}"
    try:
        module = _evaluate_module(source, spec.config_name)
    except Exception as e:  # offline Hub ids, bad paths, broken scripts: all say the same to the user
        raise ConfigError(f"{where}: evaluate.load({source!r}) failed ({first_line(e)}); point [metrics.{spec.name}] "
                          f"load at a local metric script or folder, or go online for a Hub metric") from e
    key = spec.key or spec.name
    kwargs = spec.compute_kwargs

    def compute(predictions: np.ndarray, references: np.ndarray) -> float:
        result = module.compute(predictions=[int(x) for x in predictions], references=[int(x) for x in references],
                                **kwargs)
        if not isinstance(result, dict):
            raise ConfigError(f"{where}: the module returned {type(result).__name__}, not a dict of scores")
        if key not in result:
            if len(result) == 1 and not spec.key:
                return float(next(iter(result.values())))
            raise ConfigError(f"{where}: the module returns {sorted(result)}; set [metrics.{spec.name}] key to one "
                              f"of them")
        return float(result[key])

    try:  # a probe on two labels: a module that needs other arguments says so now, not after an epoch of training
        compute(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]))
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"{where}: computing it failed ({first_line(e)}); set [metrics.{spec.name}] kwargs "
                          f"(compute() arguments) or fix the module") from e
    return Metric(spec.name, compute, source)


@dataclass
class MetricSet:
    """The metrics a study computes on every evaluation: the built-ins, then its own, in a fixed order."""

    extra: list[Metric] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return list(BUILTIN) + [m.name for m in self.extra]

    def __call__(self, predictions: Sequence[int], references: Sequence[int]) -> dict[str, float]:
        p = np.asarray(predictions, dtype=np.int64)
        r = np.asarray(references, dtype=np.int64)
        out = {name: fn(p, r) for name, fn in BUILTIN.items()}
        for m in self.extra:
            out[m.name] = m.compute(p, r)
        return out


def for_study(objectives: Sequence[str], report: Sequence[str], specs: dict[str, MetricSpec]) -> MetricSet:
    """The MetricSet of a study: every non-built-in objective and reported metric, loaded (and probed) once."""
    names = [split_objective(n)[0] for n in list(objectives) + list(report)]
    wanted = [n for n in names if n not in BUILTIN and n not in MEASURED and n not in FORMAT_MEASURES]
    return MetricSet([load(specs.get(n) or MetricSpec(n)) for n in dict.fromkeys(wanted)])


BUILTIN_SET = MetricSet()


def classification_metrics(predictions, references) -> dict[str, float]:
    """The built-in metrics alone (teachers' scores, and studies that add none)."""
    return BUILTIN_SET(predictions, references)
